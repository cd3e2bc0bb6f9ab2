"""Which adapter reads which `POST /v1/alerts/{source}`, and every source's default identity paths."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from worker.intake.adapters import (
    box_shield,
    datadog,
    elastic,
    generic,
    okta,
    panther,
    sentinel,
    splunk,
    sumologic,
)
from worker.intake.adapters.base import Adapter, resolve_paths

ADAPTERS: dict[str, type[Adapter]] = {
    "generic": generic.GenericAdapter,
    "splunk": splunk.SplunkAdapter,
    "sentinel": sentinel.SentinelAdapter,
    "elastic": elastic.ElasticAdapter,
    "datadog": datadog.DatadogAdapter,
    "panther": panther.PantherAdapter,
    "sumologic": sumologic.SumoLogicAdapter,
    "okta": okta.OktaAdapter,
    "box-shield": box_shield.BoxShieldAdapter,
}

# Where each source's identities are looked for unless settings say otherwise (docs/intake.md shows this table).
DEFAULT_PATHS: dict[str, tuple[str, ...]] = {
    "generic": generic.DEFAULT_PATHS,
    "splunk": splunk.DEFAULT_PATHS,
    "sentinel": sentinel.DEFAULT_PATHS,
    "elastic": elastic.DEFAULT_PATHS,
    "datadog": datadog.DEFAULT_PATHS,
    "panther": panther.DEFAULT_PATHS,
    "sumologic": sumologic.DEFAULT_PATHS,
    "okta": okta.DEFAULT_PATHS,
    "box-shield": box_shield.DEFAULT_PATHS,
}


def adapter_for(source: str, *, okta_event_types: Iterable[str] | None = None) -> Adapter:
    """The adapter for a URL source name (`generic` for `POST /v1/alerts`); KeyError for an unknown one."""
    if source not in ADAPTERS:
        raise KeyError(f"unknown alert source {source!r}; known: {', '.join(sorted(ADAPTERS))}")
    if source == "okta" and okta_event_types is not None:
        return okta.OktaAdapter(okta_event_types)
    return ADAPTERS[source]()


def check_paths(source: str, paths: Sequence[str]) -> None:
    """Refuse (ValueError) identity paths the source's adapter would refuse, so settings can fail at start-up."""
    if source not in ADAPTERS:
        raise KeyError(f"unknown alert source {source!r}")
    if source == "generic":
        raise ValueError("the generic envelope's targets are fixed by the contract; paths do not apply")
    chosen = resolve_paths(paths, DEFAULT_PATHS[source])
    if source == "okta":
        okta.inside_event(chosen)
