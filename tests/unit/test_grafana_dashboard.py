"""deploy/grafana/boxcut.json: an importable dashboard (uid `boxcut`, a `${DS_PROMETHEUS}` input) whose every query
names only metrics boxcut exports, taken from the code itself (the worker's counters, the gauges its /metrics reads
from Redis, the intake's counters), and parses as PromQL (`promtool check rules` on the queries as recording rules;
without promtool this fails, never skips: scripts/ensure-promtool)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import fakeredis
import pytest
import yaml

from config import load_settings
from worker import connections
from worker import metrics as worker_counters
from worker.cli import doctor, worker_metrics
from worker.intake.metrics import IntakeMetrics
from worker.jobs import headroom

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((REPO / "deploy" / "grafana" / "boxcut.json").read_text())
METRICS_MODULES = ("worker/metrics.py", "worker/cli/worker_metrics.py", "worker/intake/metrics.py")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count", ""),
            "gauge": ("",)}
# What a query may use besides metric names: PromQL's keywords, and the dashboard's variables' values (for
# promtool's check; Grafana puts them in).
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
            "inf", "nan"}
VARIABLES = {"$job": ".*", "$rate_limit_per_minute": "900", "$__rate_interval": "5m", "$__interval": "1m",
             "$__range": "1h"}


def _families() -> dict[str, str]:
    """Every metric family boxcut exports, with its type: the worker's counters and histogram, the gauges its
    /metrics reads from Redis at scrape time (collected here from fakeredis, Redis's headroom measured as nothing),
    and the intake's counters."""
    families: dict[str, str] = {}
    for value in vars(worker_counters).values():
        if hasattr(value, "collect") and hasattr(value, "_name"):
            families.update((family.name, family.type) for family in value.collect())
    families.update((family.name, family.type) for family in IntakeMetrics().registry.collect())
    settings = load_settings({"BOXCUT_REDIS_URL": "redis://127.0.0.1:1/0"}, env_file=None)
    with mock.patch.object(connections, "redis_client", return_value=fakeredis.FakeRedis()):
        state = worker_metrics._SharedState(settings)
    # fakeredis has no INFO memory or MEMORY USAGE: the headroom's figures are stubbed, its gauges' names are real.
    with mock.patch.object(headroom, "measure", return_value=mock.MagicMock(days_left=None)), \
            mock.patch.object(headroom, "waiting_to_settle", return_value=0):
        families.update((family.name, family.type) for family in state._gauges())
    return families


def _exported() -> set[str]:
    """The series names Prometheus gets: a counter `x` as `x_total`, a histogram as `x_bucket`, `x_sum`, `x_count`."""
    return {name + suffix for name, kind in _families().items() for suffix in SUFFIXES[kind]}


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row holds its panels


def _queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of the dashboard, its variables' included."""
    queries = [(panel["title"], target["expr"]) for panel in _panels(DASHBOARD["panels"])
               for target in panel.get("targets", [])]
    for variable in DASHBOARD["templating"]["list"]:
        if variable["type"] == "query":
            query = re.fullmatch(r"label_values\((?:(.+),\s*)?\w+\)", variable["definition"])
            assert query, variable["definition"]
            if query.group(1):
                queries.append((f"${variable['name']}", query.group(1)))
    return queries


def _metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once strings, label matchers, ranges, grouping
    clauses, variables, numbers, functions and keywords are taken out."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    bare = re.sub(r"\{[^{}]*\}", " ", bare)
    bare = re.sub(r"\[[^\]]*\]", " ", bare)
    bare = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    bare = re.sub(r"\$\{[^}]*\}|\$\w+", " ", bare)
    bare = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:ms|[smhdwy])?(?![\w:])", " ", bare)
    names = set()
    for found in re.finditer(r"[A-Za-z_:][\w:]*", bare):
        if re.match(r"\s*\(", bare[found.end():]) or found.group().lower() in KEYWORDS:
            continue  # a function or an aggregation, or a keyword
        names.add(found.group())
    return names


def test_the_metric_names_are_found_in_promql() -> None:
    expr = ('sum by (endpoint) (rate(boxcut_nope_total{status=~"5..", job=~"$job"}[5m])) * 60 '
            '/ on (instance) group_left up offset 1h > bool 0.5 and histogram_quantile(0.9, sum by (le) '
            '(rate(boxcut_x_bucket[$__rate_interval]))) / $rate_limit_per_minute')
    assert _metric_names(expr) == {"boxcut_nope_total", "up", "boxcut_x_bucket"}
    assert _metric_names("boxcut_box_429_pauses_total") == {"boxcut_box_429_pauses_total"}


def test_the_exported_metrics_come_from_the_code() -> None:
    exported = _exported()
    assert {"boxcut_box_calls_total", "boxcut_submitted_to_accepted_seconds_bucket", "boxcut_targets_waiting",
            "boxcut_redis_days_left", "boxcut_jobs_created_total"} <= exported
    assert "boxcut_box_calls" not in exported and "boxcut_targets_waiting_total" not in exported
    # Every metric name the metrics modules write is one collected here, and no other module defines metrics.
    written = {name for path in METRICS_MODULES
               for name in re.findall(r'"(boxcut_[a-z0-9_]+)"', (REPO / path).read_text())}
    assert written == set(_families())
    elsewhere = [str(path.relative_to(REPO)) for path in sorted((REPO / "worker").rglob("*.py"))
                 if "prometheus_client" in path.read_text() and str(path.relative_to(REPO)) not in METRICS_MODULES]
    assert not elsewhere, f"metrics defined in {elsewhere}: add the module to this test's collection"


def test_every_query_names_only_metrics_boxcut_exports() -> None:
    exported = _exported()
    queries = _queries()
    assert len(queries) >= 20
    for title, expr in queries:
        names = _metric_names(expr)
        unknown = names - exported
        assert not unknown, f"panel {title!r} queries {sorted(unknown)}, which boxcut does not export"


def test_the_wall_shows_the_figures_an_operator_needs() -> None:
    used = {name for _, expr in _queries() for name in _metric_names(expr)}
    assert {
        "boxcut_calls_in_flight", "boxcut_targets_waiting", "boxcut_box_calls_total", "boxcut_box_429_pauses_total",
        "boxcut_rate_limit_wait_seconds_total", "boxcut_brake_engagements_total", "boxcut_brake_jobs_held_total",
        "boxcut_event_stream_read_age_seconds", "boxcut_notifications_total", "boxcut_redis_used_bytes",
        "boxcut_redis_max_bytes", "boxcut_redis_days_left", "boxcut_jobs_waiting_to_settle",
    } <= used


def test_the_dashboard_imports_with_a_prometheus_input() -> None:
    assert DASHBOARD["uid"] == "boxcut" and DASHBOARD["id"] is None and 36 <= DASHBOARD["schemaVersion"] <= 41
    assert [(i["name"], i["type"], i["pluginId"]) for i in DASHBOARD["__inputs"]] == [
        ("DS_PROMETHEUS", "datasource", "prometheus")]
    panels = list(_panels(DASHBOARD["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["title"] and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            for target in [panel, *panel["targets"]]:
                assert target["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
            refs = [target["refId"] for target in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]


def test_the_capacity_thresholds_are_doctors() -> None:
    panels = {panel["title"]: panel for panel in _panels(DASHBOARD["panels"])}

    def steps(title: str) -> list[Any]:
        return [step["value"] for step in panels[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]]

    assert steps("Days until Redis is full") == [None, doctor.DAYS_LEFT_WARNING]
    assert steps("Jobs waiting to settle") == [None, doctor.WAITING_TO_SETTLE_WARNING]
    assert steps("Redis memory used")[-1] == headroom.FULL_FRACTION


def test_every_query_is_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not on PATH: run scripts/ensure-promtool (Debian's prometheus package ships it)")
    rules = []
    for index, (_title, expr) in enumerate(_queries()):
        for variable in sorted(VARIABLES, key=len, reverse=True):
            expr = expr.replace(variable, VARIABLES[variable])
        assert "$" not in expr, expr
        rules.append({"record": f"boxcut_dashboard:query_{index}", "expr": expr})
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
