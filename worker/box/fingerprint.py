"""Which Box, and which app in it, a process talks to, as a short hash that may be stored and shown.

The token cache is keyed by it, so a token that one Box (boxsim, say) issued is never handed to a worker talking to
another; workers compare it (worker/run/fleet.py), so one pointed elsewhere than its peers is noticed. It covers
the API and OAuth URLs, the auth mode, the client id and the enterprise, never a secret.
"""

from __future__ import annotations

import hashlib

from config.settings import Settings


def box_fingerprint(settings: Settings) -> str:
    """16 hex digits naming the Box API, token endpoint and client these settings use."""
    client_id, enterprise_id = _client(settings)
    parts = (settings.box_api_base_url, settings.box_oauth_url, settings.box_auth_mode.value, client_id, enterprise_id)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _client(settings: Settings) -> tuple[str, str]:
    """The client id and enterprise id of the configured app (JWT's come from its config file)."""
    if settings.box_jwt is not None:
        return settings.box_jwt.client_id, settings.box_jwt.enterprise_id
    return settings.box_client_id or "", settings.box_enterprise_id or ""
