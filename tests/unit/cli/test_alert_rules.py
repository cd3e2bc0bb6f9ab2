"""deploy/prometheus/boxcut-rules.yml: every rule is whole, names only metrics boxcut serves, and the capacity and
archive alerts use `boxcut doctor`'s thresholds. (`promtool test rules deploy/prometheus/boxcut-rules.test.yml`
checks how they fire.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from worker.cli import doctor
from worker.jobs import headroom

REPO = Path(__file__).resolve().parents[3]
RULES = yaml.safe_load((REPO / "deploy" / "prometheus" / "boxcut-rules.yml").read_text())
TESTS = yaml.safe_load((REPO / "deploy" / "prometheus" / "boxcut-rules.test.yml").read_text())
SERVED_BY = ("worker/cli/worker_metrics.py", "worker/metrics.py", "worker/intake/metrics.py")


def _rules() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in RULES["groups"] for rule in group["rules"]}


def _served() -> set[str]:
    """The metric families boxcut's code defines (counters without their `_total`, histograms without suffixes)."""
    return {name for path in SERVED_BY for name in re.findall(r'"(boxcut_[a-z0-9_]+)"', (REPO / path).read_text())}


def test_every_rule_is_whole_and_names_only_metrics_boxcut_serves() -> None:
    served = _served()
    for name, rule in _rules().items():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, name
        assert rule["labels"]["severity"] in {"warning", "critical"} and rule["annotations"]["summary"], name
        named = set(re.findall(r"\b(boxcut_[a-z0-9_]+)", rule["expr"]))
        unknown = {m for m in named if re.sub(r"_(total|count|sum|bucket)$", "", m) not in served}
        assert named and not unknown, (name, unknown)


def test_the_capacity_and_archive_alerts_use_doctors_thresholds_and_say_the_risk() -> None:
    rules = _rules()
    assert rules["BoxcutRedisWillFill"]["expr"].strip() == f"boxcut_redis_days_left < {doctor.DAYS_LEFT_WARNING}"
    assert rules["BoxcutRedisWillFill"]["for"] == "1h"
    fits = rules["BoxcutHotWindowDoesNotFit"]["expr"]
    assert f"> {headroom.FULL_FRACTION} * boxcut_redis_max_bytes" in fits and "and boxcut_redis_max_bytes > 0" in fits
    assert "boxcut_redis_used_bytes" in fits and 'boxcut_jobs_in_redis{form="hot"}' in fits
    archive = rules["BoxcutArchiveBehind"]
    assert archive["expr"].strip() == f"boxcut_jobs_waiting_to_settle > {doctor.WAITING_TO_SETTLE_WARNING}"
    assert archive["for"] == "30m"
    for name in ("BoxcutRedisWillFill", "BoxcutHotWindowDoesNotFit"):
        assert "Redis will refuse writes and containment stops" in " ".join(rules[name]["annotations"]["description"]
                                                                            .split())


def test_the_promtool_tests_load_the_rules_and_test_each_new_alert() -> None:
    assert TESTS["rule_files"] == ["boxcut-rules.yml"]
    tested = {case["alertname"] for test in TESTS["tests"] for case in test["alert_rule_test"]}
    assert {"BoxcutRedisWillFill", "BoxcutHotWindowDoesNotFit", "BoxcutArchiveBehind"} <= tested
