"""The Box Shield rule table: matching, the default table, the settings that carry it, and its refusals."""

from __future__ import annotations

import pytest

from config import SettingsError, load_settings
from config.shield_rules import DEFAULT_RULES, ShieldAction, ShieldRule, decide, parse_rules
from worker.errors import AdapterError
from worker.event_stream.shield import ShieldAlert, ShieldFacts, decided
from worker.jobs.submit import JobRequest, build_job

TERMINATE, APPROVE, RECORD = ShieldAction.TERMINATE, ShieldAction.APPROVE, ShieldAction.RECORD


@pytest.mark.parametrize(("category", "priority", "score", "action"), [
    ("Ransomware Activity", "low", 5, TERMINATE),
    ("Ransomware Activity", None, None, TERMINATE),
    ("Suspicious Sessions", "critical", 10, TERMINATE),
    ("Suspicious Sessions", "high", 10, TERMINATE),
    ("suspicious sessions", "HIGH", None, TERMINATE),  # Box's case varies; the table's does not matter
    ("Suspicious Sessions", "medium", 99, APPROVE),
    ("Malicious Content", "critical", 100, APPROVE),
    ("Anomalous Download", "high", 50, APPROVE),
    ("Anomalous Download", "medium", 99, RECORD),
    ("Suspicious Locations", "critical", 80, APPROVE),
    ("Suspicious Locations", "low", 80, RECORD),
    ("A Category Box Adds Later", "critical", 100, RECORD),
    (None, None, None, RECORD),
])
def test_the_default_table(category: str | None, priority: str | None, score: int | None,
                           action: ShieldAction) -> None:
    assert decide(DEFAULT_RULES, category=category, priority=priority, risk_score=score).action is action


def test_the_first_rule_that_matches_decides_and_minimums_need_the_value() -> None:
    rules = parse_rules('[{"category": "Anomalous Download", "risk_score": 80, "action": "terminate"},'
                        ' {"priority": "medium", "action": "record"}]')
    assert decide(rules, category="Anomalous Download", priority="low", risk_score=80).action is TERMINATE
    assert decide(rules, category="Anomalous Download", priority="low", risk_score=79).row is None
    assert decide(rules, category="Anomalous Download", priority="medium", risk_score=None).row == 2
    # An alert without a priority or score matches no minimum; no rule matching means a person decides.
    unmatched = decide(rules, category="Anomalous Download", priority=None, risk_score=None)
    assert (unmatched.action, unmatched.row) == (APPROVE, None)
    assert "no rule of BOXCUT_SHIELD_RULES matched" in unmatched.why()


def test_rule_in_words() -> None:
    rule = ShieldRule(TERMINATE, "Suspicious Sessions", priority="high", risk_score=70)
    assert rule.describe() == ("category Suspicious Sessions, priority high or above, risk score 70 or above "
                               "→ terminate")


@pytest.mark.parametrize(("text", "problem"), [
    ("{", "not JSON"),
    ("[]", "expected a JSON list of rules"),
    ('[{"action": "kill"}]', "rule 1: action must be one of terminate, approve, record"),
    ('[{"action": "record"}, {"action": "record", "priority": "urgent"}]', "rule 2: priority must be one of"),
    ('[{"action": "record", "risk_score": 101}]', "rule 1: risk_score must be a whole number from 0 to 100"),
    ('[{"action": "record", "risk_score": true}]', "rule 1: risk_score must be a whole number"),
    ('[{"action": "record", "category": ""}]', "rule 1: category must be"),
    ('[{"action": "record", "severity": "high"}]', "rule 1: unknown field 'severity'"),
    ('["terminate"]', "rule 1: expected a JSON object"),
])
def test_a_bad_table_is_refused_at_start_naming_the_rule(text: str, problem: str) -> None:
    with pytest.raises(SettingsError, match="BOXCUT_SHIELD_RULES") as refused:
        load_settings({"BOXCUT_SHIELD_RULES": text}, env_file=None)
    assert problem in str(refused.value)


def test_settings_carry_the_table_and_default_to_the_documented_one() -> None:
    assert load_settings({}, env_file=None).shield_rules == DEFAULT_RULES
    custom = load_settings({"BOXCUT_SHIELD_RULES": '[{"action": "terminate"}]'}, env_file=None)
    assert custom.shield_rules == (ShieldRule(TERMINATE),)


def alert(category: str, priority: str, score: int) -> dict[str, object]:
    return {"event_id": "e-1", "event_type": "SHIELD_ALERT", "additional_details": {"shield_alert": {
        "rule_category": category, "priority": priority, "risk_score": score, "rule_name": "R",
        "user": {"id": 17738362, "email": "jdoe@example.com"}}}}


def test_an_alert_the_table_terminates_is_a_plain_queued_job_on_the_users_id() -> None:
    job = build_job(ShieldAlert.of(alert("Ransomware Activity", "high", 90)).request(DEFAULT_RULES,
                                                                                    requested_by="x"))
    assert (job.state.value, job.approval, job.note) == ("queued", None, None)
    assert [t.input for t in job.targets] == [{"type": "user", "id": "17738362"}]
    assert (job.source, job.source_event_id, job.severity) == ("box-shield", "e-1", "high")


def test_an_alert_the_table_sends_for_approval_asks_for_it_with_the_rule() -> None:
    job = build_job(ShieldAlert.of(alert("Suspicious Sessions", "low", 20)).request(DEFAULT_RULES,
                                                                                   requested_by="x"))
    assert job.state.value == "queued" and job.approval is not None and job.approval.required is True
    assert not job.approval.approved
    assert "BOXCUT_SHIELD_RULES rule 3" in job.approval.reasons[0]


def test_an_alert_the_table_records_is_a_final_job_whose_targets_say_nothing_was_sent() -> None:
    job = build_job(ShieldAlert.of(alert("Suspicious Locations", "low", 20)).request(DEFAULT_RULES,
                                                                                    requested_by="x"))
    assert job.state.value == "recorded" and job.state.is_final
    assert [t.status.value for t in job.targets] == ["recorded"]
    assert job.note is not None and "nothing was looked up or sent to Box" in job.note


def test_a_relayed_alert_is_decided_by_the_same_table() -> None:
    plain = JobRequest(targets=[{"type": "user", "id": "1"}], source="box-shield")
    facts = ShieldFacts(category="Ransomware Activity", priority=None, risk_score=None)
    assert decided(plain, facts, DEFAULT_RULES) == plain
    recorded = decided(plain, ShieldFacts("Anomalous Download", "low", 1), DEFAULT_RULES)
    assert recorded.record_only and recorded.approval is None


@pytest.mark.parametrize(("user", "problem"), [
    ({"id": "12/../me"}, "not a Box id"), ({"name": "Nobody"}, "no identity found"), (None, "no identity found"),
])
def test_an_alert_that_names_nobody_usable_is_refused(user: object, problem: str) -> None:
    event = alert("Ransomware Activity", "high", 90)
    event["additional_details"]["shield_alert"]["user"] = user  # type: ignore[index]
    with pytest.raises(AdapterError, match=problem):
        ShieldAlert.of(event)


def test_an_alert_falls_back_on_the_email_only_without_an_id() -> None:
    event = alert("Ransomware Activity", "high", 90)
    event["additional_details"]["shield_alert"]["user"] = {"email": "jdoe@example.com"}  # type: ignore[index]
    assert ShieldAlert.of(event).target == {"type": "user", "login": "jdoe@example.com"}
