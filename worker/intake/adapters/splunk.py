"""Splunk's webhook alert action: one search result row (`result`) plus the search's `sid` and name."""

from __future__ import annotations

from collections.abc import Sequence

from worker.identity import login_key
from worker.intake.adapters.base import (
    Envelope,
    as_object,
    default_reason,
    required_logins,
    resolve_paths,
    text_at,
    user_targets,
)

# Tried in order, each a fallback for the one before, never an addition: in Splunk's CIM `src_user` is the
# account that *initiated* a change, often an admin, and cutting that person off would be cutting the wrong one.
DEFAULT_PATHS: tuple[str, ...] = ("result.user", "result.user_email", "result.src_user")


class SplunkAdapter:
    """Reads the identity from the result row Splunk sends; the event id is the search id plus that row."""

    source = "splunk"

    def parse(self, payload: object, *, paths: Sequence[str] | None = None) -> list[Envelope]:
        """One envelope for the row Splunk sent; NoIdentityFound if no path holds an identity."""
        body = as_object(payload)
        tried = resolve_paths(paths, DEFAULT_PATHS)
        logins = required_logins(body, tried)
        return [Envelope(
            targets=user_targets(logins),
            reason=text_at(body, "search_name") or default_reason(self.source),
            severity=None,
            source_event_id=_event_id(body, logins),
            link=text_at(body, "results_link"),
        )]


def _event_id(body: dict[str, object], logins: list[str]) -> str | None:
    """`sid:_time:identities` of the row sent (`_time` may be empty); None without a sid."""
    sid = text_at(body, "sid")
    if sid is None:
        return None
    # Splunk posts only the first result row and gives rows no id. With "for each result" triggering one search
    # run (one sid) posts several rows, so the sid alone would swallow every row after the first as a duplicate;
    # the row's _time and the people it names tell them apart (rows of `stats` or `table` searches often have no
    # _time), and both are the same when Splunk re-sends the same row. No body hash: two genuine alerts with the
    # same body must both act.
    who = ",".join(sorted({login_key(login) for login in logins}))
    return f"{sid}:{text_at(body, 'result._time') or ''}:{who}"
