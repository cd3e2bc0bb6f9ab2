"""Sender adapters: turn each SIEM's own webhook payload into boxcut's generic envelope.

One module per sender. Each adapter's `parse` returns a list of `Envelope`s and raises `NoIdentityFound` or
`PayloadError` (both answered 422). `adapter_for(source)` picks the adapter for `POST /v1/alerts/{source}`;
`DEFAULT_PATHS` lists where each source's identities are looked for unless settings give other paths, which
`check_paths` vets at start-up.
"""

from worker.errors import AdapterError, NoIdentityFound, PayloadError
from worker.intake.adapters.base import Adapter, Envelope
from worker.intake.adapters.registry import ADAPTERS, DEFAULT_PATHS, adapter_for, check_paths

__all__ = [
    "ADAPTERS",
    "DEFAULT_PATHS",
    "Adapter",
    "AdapterError",
    "Envelope",
    "NoIdentityFound",
    "PayloadError",
    "adapter_for",
    "check_paths",
]
