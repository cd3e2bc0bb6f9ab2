"""Prometheus metrics of the intake, in a registry of each app's own (tests build many apps)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, generate_latest


@dataclass
class IntakeMetrics:
    """Requests by source and outcome, jobs created, duplicates, and authentication failures."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter("boxcut_intake_requests", "Alert requests by source and outcome",
                                ["source", "outcome"], registry=self.registry)
        self.jobs_created = Counter("boxcut_jobs_created", "Jobs created by the intake", ["source"],
                                    registry=self.registry)
        self.duplicates = Counter("boxcut_intake_duplicates", "Deliveries of an event already seen", ["source"],
                                  registry=self.registry)
        self.auth_failures = Counter("boxcut_intake_auth_failures", "Requests refused for their credentials",
                                     ["endpoint"], registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
