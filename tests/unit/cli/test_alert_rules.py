"""deploy/prometheus/boxcut-rules.yml: every rule is whole, names only metrics boxcut serves, and the capacity and
archive alerts use `boxcut doctor`'s thresholds; `promtool check rules` takes the file and `promtool test rules
deploy/prometheus/boxcut-rules.test.yml` passes, with every alert tested quiet before its `for:`, firing after it
and quiet again once its condition stops. Without promtool these fail, never skip: scripts/ensure-promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
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


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not on PATH: run scripts/ensure-promtool (Debian's prometheus package ships it)")
    return subprocess.run([promtool, *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_checks_the_rules() -> None:
    done = _promtool("check", "rules", "deploy/prometheus/boxcut-rules.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout, done.stdout


def test_promtool_tests_of_the_rules_pass() -> None:
    done = _promtool("test", "rules", "deploy/prometheus/boxcut-rules.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout, done.stdout


_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def _seconds(duration: str) -> float:
    """A Prometheus duration (`90s`, `10m`, `1h30m`) in seconds."""
    parts = _DURATION.findall(duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)


def _shows_the_whole_life(cases: list[dict[str, Any]], hold: float) -> bool:
    """In one test (the same input series): quiet at `before` < `for:`, firing at `fired` >= `for:`, quiet at some
    time after that. Firing at `fired` means the condition held over [fired - for, fired]: with `before` in there
    too, the quiet case is one while the condition holds, not one before it starts."""
    quiet = [_seconds(c["eval_time"]) for c in cases if not c.get("exp_alerts")]
    fired = [_seconds(c["eval_time"]) for c in cases if c.get("exp_alerts")]
    return any(
        before < hold <= firing and firing - hold <= before and any(after > firing for after in quiet)
        for firing in fired for before in quiet)


def test_every_alert_is_tested_quiet_before_its_for_firing_after_it_and_quiet_once_it_stops() -> None:
    assert TESTS["rule_files"] == ["boxcut-rules.yml"]
    for name, rule in _rules().items():
        assert "for" in rule, f"{name}: no `for:` (a condition that flickers for a scrape would page someone)"
        hold = _seconds(rule["for"])
        shown = [test for test in TESTS["tests"]
                 if _shows_the_whole_life([c for c in test["alert_rule_test"] if c["alertname"] == name], hold)]
        assert shown, (f"{name}: no test in boxcut-rules.test.yml with no alert at an eval_time before its for: "
                       f"({rule['for']}) while the condition holds, the alert after it, and none once it stops")


def test_the_shape_check_catches_a_test_missing_a_case() -> None:
    whole: list[dict[str, Any]] = [
        {"eval_time": "9m", "exp_alerts": []}, {"eval_time": "11m", "exp_alerts": [{}]},
        {"eval_time": "25m", "exp_alerts": []}]
    assert _shows_the_whole_life(whole, 600)
    for missing in range(3):
        assert not _shows_the_whole_life(whole[:missing] + whole[missing + 1:], 600)
    assert not _shows_the_whole_life(whole, 1200)  # 11m is before a 20-minute for:
    late: list[dict[str, Any]] = [
        {"eval_time": "1m", "exp_alerts": []}, {"eval_time": "30m", "exp_alerts": [{}]},
        {"eval_time": "40m", "exp_alerts": []}]
    assert not _shows_the_whole_life(late, 600)  # quiet at 1m says nothing: the condition may start at 20m
