"""Microsoft Sentinel, in both shapes: an incident forwarded by a Logic App, and the alert trigger's alert.

The identity paths lead to account entities. An entity gives the login `accountName@upnSuffix` (incident) or
`Name@UPNSuffix` (alert), else a UPN in its `additionalData`; an entity with neither (say only an `aadUserId`)
is no Box login and is skipped. A path that leads to a string takes it as the login.
"""

from __future__ import annotations

from collections.abc import Sequence

from worker.errors import NoIdentityFound
from worker.intake.adapters.base import (
    Envelope,
    as_object,
    decoded_field,
    default_reason,
    resolve_paths,
    text_at,
    user_targets,
)
from worker.intake.adapters.fieldpath import first_found, nodes_at, scalar_text

DEFAULT_PATHS: tuple[str, ...] = ("object.properties.relatedEntities[kind=Account]", "Entities[Type=account]")

# Keys of `additionalData` that hold a user principal name, compared ignoring case.
_UPN_KEYS = ("userprincipalname", "upn")


class SentinelAdapter:
    """Reads account entities from a Sentinel incident (`object`) or alert (`Entities`)."""

    source = "sentinel"

    def parse(self, payload: object, *, paths: Sequence[str] | None = None) -> list[Envelope]:
        """One envelope per incident or alert, one target per account with a UPN."""
        # The alert trigger may hand `Entities` over as a string of JSON, as the SecurityAlert table stores it.
        body = decoded_field(as_object(payload), "Entities")
        tried = resolve_paths(paths, DEFAULT_PATHS)
        logins = first_found(body, tried, read=_account_logins)
        if not logins:
            skipped = any(nodes_at(body, path) for path in tried)
            raise NoIdentityFound(tried, note="accounts without a UPN are not Box logins" if skipped else None)
        if "object" in body:
            return [_incident(body, logins)]
        return [_alert(body, logins)]


def _incident(body: dict[str, object], logins: list[str]) -> Envelope:
    return Envelope(
        targets=user_targets(logins),
        reason=text_at(body, "object.properties.title") or default_reason("sentinel"),
        severity=text_at(body, "object.properties.severity"),
        source_event_id=text_at(body, "object.name"),
        link=text_at(body, "object.properties.incidentUrl"),
    )


def _alert(body: dict[str, object], logins: list[str]) -> Envelope:
    return Envelope(
        targets=user_targets(logins),
        reason=text_at(body, "AlertDisplayName") or default_reason("sentinel"),
        severity=text_at(body, "Severity"),
        source_event_id=text_at(body, "SystemAlertId"),
        link=text_at(body, "AlertLink"),
    )


def _account_logins(payload: object, path: str) -> list[str]:
    found: list[str] = []
    for node in nodes_at(payload, path):
        login = scalar_text(node) if isinstance(node, str) else _entity_login(node)
        if login:
            found.append(login)
    return found


def _entity_login(entity: object) -> str | None:
    """The UPN of one account entity (incident or alert shape), or None when it has none."""
    if not isinstance(entity, dict):
        return None
    # Incident entities keep their fields under `properties`; alert entities keep them at the top.
    fields = entity.get("properties")
    if not isinstance(fields, dict):
        fields = entity
    name = scalar_text(fields.get("accountName", fields.get("Name")))
    suffix = scalar_text(fields.get("upnSuffix", fields.get("UPNSuffix")))
    if name and "@" in name:
        return name
    if name and suffix:
        return f"{name}@{suffix}"
    return _upn_in(fields.get("additionalData", fields.get("AdditionalData")))


def _upn_in(additional: object) -> str | None:
    if not isinstance(additional, dict):
        return None
    for key, value in additional.items():
        text = scalar_text(value) if isinstance(value, str) else None
        if isinstance(key, str) and key.casefold() in _UPN_KEYS and text and "@" in text:
            return text
    return None
