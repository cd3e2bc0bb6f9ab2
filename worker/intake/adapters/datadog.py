"""Datadog's webhook: a payload template the user writes; the user is a `user:<login>` tag or a `user` field.

A path whose last key is `tags` is read as Datadog tags: a comma-separated string (`$TAGS`) or a list, of
which the `user:` entries count. Any other path is read as plain values.
"""

from __future__ import annotations

from collections.abc import Sequence

from worker.intake.adapters.base import (
    Envelope,
    as_object,
    default_reason,
    required_logins,
    resolve_paths,
    text_at,
    user_targets,
)
from worker.intake.adapters.fieldpath import nodes_at, values_at

# Tried in order: the `user:` tags, then a top-level `user` as a fallback.
DEFAULT_PATHS: tuple[str, ...] = ("tags", "user")

_USER_TAG = "user"


class DatadogAdapter:
    """Reads `user:` tags (string or list) or a `user` field from a Datadog webhook."""

    source = "datadog"

    def parse(self, payload: object, *, paths: Sequence[str] | None = None) -> list[Envelope]:
        """One envelope per Datadog notification; NoIdentityFound without a `user:` tag or `user` field."""
        body = as_object(payload)
        tried = resolve_paths(paths, DEFAULT_PATHS)
        logins = required_logins(body, tried, read=_read)
        return [Envelope(
            targets=user_targets(logins),
            reason=text_at(body, "alert_title") or text_at(body, "title") or default_reason(self.source),
            severity=None,
            source_event_id=text_at(body, "id"),
            link=text_at(body, "link"),
        )]


def _read(payload: object, path: str) -> list[str]:
    if path.rsplit(".", 1)[-1].removesuffix("[]") == "tags":
        return _user_tags(payload, path)
    return values_at(payload, path)


def _user_tags(payload: object, path: str) -> list[str]:
    """The values of `user:` tags found at `path`, whether the tags come as one string or as a list."""
    entries: list[str] = []
    for node in nodes_at(payload, path):
        if isinstance(node, str):
            entries.extend(node.split(","))
        elif isinstance(node, list):
            entries.extend(item for item in node if isinstance(item, str))
    found: list[str] = []
    for entry in entries:
        key, colon, value = entry.partition(":")
        if colon and key.strip().casefold() == _USER_TAG and value.strip():
            found.append(value.strip())
    return found
