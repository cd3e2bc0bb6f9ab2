"""The SIEM adapters: every sample parses to the exact envelope, and the edge cases each sender brings."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from worker.event_stream.shield import ShieldFacts
from worker.intake.adapters import DEFAULT_PATHS, Envelope, NoIdentityFound, PayloadError, adapter_for, check_paths
from worker.intake.adapters.box_shield import BoxShieldAdapter
from worker.intake.adapters.datadog import DatadogAdapter
from worker.intake.adapters.generic import GenericAdapter
from worker.intake.adapters.okta import OktaAdapter
from worker.intake.adapters.sentinel import SentinelAdapter
from worker.intake.adapters.splunk import SplunkAdapter

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "siem"
JDOE = {"type": "user", "login": "jdoe@example.com"}
RROE = {"type": "user", "login": "rroe@example.com"}
SPLUNK_SID = "scheduler__admin__search__RMD5a1b2c3d4e5f60718_at_1764350100_412"


def sample(name: str) -> Any:
    """A fresh copy of one sample payload, free to modify."""
    return json.loads((SAMPLES / name).read_text())


EXPECTED: dict[tuple[str, str], list[Envelope]] = {
    ("generic", "generic.json"): [Envelope(
        targets=[JDOE, {"type": "user", "id": "17738362"}, {"type": "group", "name": "Contractors"}],
        reason="Credential stuffing from 203.0.113.7", severity="high",
        source_event_id="6f1d2c3e-0b7a-4f6e-9a41-5d2f0c9b8e11", link=None, dry_run=False)],
    ("splunk", "splunk.json"): [Envelope(
        targets=[JDOE], reason="Box - impossible travel", severity=None,
        source_event_id=f"{SPLUNK_SID}:1764350123:jdoe@example.com",
        link=f"https://splunk.example.com:8000/app/search/@go?sid={SPLUNK_SID}")],
    ("sentinel", "sentinel-incident.json"): [Envelope(
        targets=[JDOE], reason="Suspicious sign-in followed by mass download", severity="High",
        source_event_id="8c0a51d6-2f0b-4f3e-8d63-2a7a3e4c9f10",
        link="https://portal.azure.com/#asset/Microsoft_Azure_Security_Insights/Incident/subscriptions/"
             "00000000-0000-0000-0000-000000000000/incidents/8c0a51d6")],
    ("sentinel", "sentinel-alert.json"): [Envelope(
        targets=[JDOE], reason="Anomalous token usage", severity="Medium",
        source_event_id="b2e6d1f0-31c4-4d0a-a0c5-7d1e9b2f3a44", link=None)],
    ("elastic", "elastic.json"): [Envelope(
        targets=[JDOE, RROE], reason="Box session from TOR exit node", severity=None,
        source_event_id="c7f3a0e2-5b1d-4e8a-9f6c-2d3b4a5e6f70:a1b2c3,d4e5f6",
        link="https://kibana.example.com/app/security/rules/id/c7f3a0e2")],
    ("datadog", "datadog.json"): [Envelope(
        targets=[JDOE], reason="[Triggered] Box: login from new country", severity=None,
        source_event_id="7331992021450913145", link=None)],
    ("panther", "panther.json"): [Envelope(
        targets=[JDOE], reason="Box login from a new country by jdoe@example.com", severity="HIGH",
        source_event_id="9f3e2d1c0b8a7968574635241302f1e0", link="https://example.runpanther.net/alerts/9f3e2d1c0b")],
    ("sumologic", "sumologic.json"): [Envelope(
        targets=[JDOE, RROE], reason="Box brute force", severity=None, source_event_id=None,
        link="https://service.sumologic.com/ui/#/search/abc")],
    ("okta", "okta-event-hook.json"): [Envelope(
        targets=[JDOE], reason="Deactivate Okta user (user.lifecycle.deactivate)", severity="INFO",
        source_event_id="d3a8b7c6-4f35-11ef-8a2b-1d2e3f4a5b6c", link=None)],
    ("box-shield", "box-shield-alert.json"): [Envelope(
        targets=[{"type": "user", "id": "17738362"}], reason="Suspicious Sessions: Suspicious Session",
        severity="medium", source_event_id="97f1b31f-f143-4777-81f8-1b557b39ca33",
        link="https://cloud.app.box.com/master/shield/alerts/500",
        shield=ShieldFacts(category="Suspicious Sessions", priority="medium", risk_score=77,
                           rule_name="Suspicious Session"))],
}


@pytest.mark.parametrize(("source", "name"), sorted(EXPECTED))
def test_every_sample_parses_to_the_exact_envelope(source: str, name: str) -> None:
    assert adapter_for(source).parse(sample(name)) == EXPECTED[(source, name)]


def test_every_sample_file_is_covered() -> None:
    assert {path.name for path in SAMPLES.glob("*.json")} == {name for _, name in EXPECTED}


def test_registry_knows_every_url_source_and_refuses_others() -> None:
    sources = {"generic", "splunk", "sentinel", "elastic", "datadog", "panther", "sumologic", "okta", "box-shield"}
    assert set(DEFAULT_PATHS) == sources
    assert {adapter_for(source).source for source in sources} == sources
    with pytest.raises(KeyError):
        adapter_for("qradar")


@pytest.mark.parametrize(("source", "paths"), [
    ("splunk", ["result..user"]), ("splunk", []), ("splunk", "result.user"), ("okta", ["target[type=User].id"]),
    ("generic", ["targets[]"]),
])
def test_check_paths_refuses_what_the_adapter_would_refuse(source: str, paths: list[str]) -> None:
    with pytest.raises(ValueError):
        check_paths(source, paths)


def test_check_paths_accepts_good_overrides() -> None:
    check_paths("splunk", ["result.actor_upn"])
    check_paths("okta", ["data.events[].target[type=User].alternateId"])
    with pytest.raises(KeyError):
        check_paths("qradar", ["x"])


def test_default_paths_table() -> None:
    assert DEFAULT_PATHS["splunk"] == ("result.user", "result.user_email", "result.src_user")
    assert DEFAULT_PATHS["box-shield"] == ("additional_details.shield_alert.user.id",
                                           "additional_details.shield_alert.user.email")
    assert DEFAULT_PATHS["okta"] == ("data.events[].target[type=User].alternateId",)


# --- Splunk -------------------------------------------------------------------------------------------------

def test_splunk_identity_under_a_custom_path_replaces_the_defaults() -> None:
    payload = sample("splunk.json")
    payload["result"]["actor_upn"] = "Ann.Lee@example.com "
    [envelope] = SplunkAdapter().parse(payload, paths=["result.actor_upn"])
    assert envelope.targets == [{"type": "user", "login": "Ann.Lee@example.com"}]


def test_splunk_custom_paths_do_not_fall_back_on_the_defaults() -> None:
    with pytest.raises(NoIdentityFound) as raised:
        SplunkAdapter().parse(sample("splunk.json"), paths=["result.actor_upn"])
    assert raised.value.tried == ["result.actor_upn"]


def test_splunk_without_identity_names_the_paths_tried() -> None:
    payload = sample("splunk.json")
    del payload["result"]["user"]
    with pytest.raises(NoIdentityFound) as raised:
        SplunkAdapter().parse(payload)
    assert raised.value.tried == ["result.user", "result.user_email", "result.src_user"]
    assert str(raised.value) == "no identity found; tried result.user, result.user_email, result.src_user"


def test_splunk_src_user_is_only_a_fallback() -> None:
    payload = sample("splunk.json")
    payload["result"]["src_user"] = "admin@example.com"
    assert SplunkAdapter().parse(payload)[0].targets == [JDOE]
    del payload["result"]["user"]
    assert SplunkAdapter().parse(payload)[0].targets == [{"type": "user", "login": "admin@example.com"}]


def test_splunk_row_without_time_and_multivalue_user() -> None:
    payload = sample("splunk.json")
    del payload["result"]["_time"]
    payload["result"]["user"] = ["jdoe@example.com", "JDOE@example.com", "rroe@example.com"]
    [envelope] = SplunkAdapter().parse(payload)
    assert envelope.source_event_id == f"{SPLUNK_SID}::jdoe@example.com,rroe@example.com"
    assert envelope.targets == [JDOE, RROE]


def test_splunk_rows_without_time_naming_different_people_are_different_events() -> None:
    alice, bob = sample("splunk.json"), sample("splunk.json")
    for payload, who in ((alice, "alice@example.com"), (bob, "bob@example.com")):
        del payload["result"]["_time"]
        payload["result"]["user"] = who
    assert SplunkAdapter().parse(alice)[0].source_event_id != SplunkAdapter().parse(bob)[0].source_event_id


def test_splunk_without_sid_leaves_the_event_id_to_the_idempotency_key() -> None:
    payload = sample("splunk.json")
    del payload["sid"]
    assert SplunkAdapter().parse(payload)[0].source_event_id is None


def test_splunk_sid_of_the_wrong_type_is_a_payload_error() -> None:
    payload = sample("splunk.json")
    payload["sid"] = {"id": 1}
    with pytest.raises(PayloadError) as raised:
        SplunkAdapter().parse(payload)
    assert raised.value.field == "sid"


def test_a_payload_that_is_not_an_object_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="payload must be a JSON object"):
        SplunkAdapter().parse(["jdoe@example.com"])


def test_bad_paths_from_settings_are_refused() -> None:
    for paths in (["result..user"], [], "result.user", ["result.user["]):
        with pytest.raises(ValueError):
            SplunkAdapter().parse(sample("splunk.json"), paths=paths)


# --- Sentinel -----------------------------------------------------------------------------------------------

def account(name: str, suffix: str | None, **extra: object) -> dict[str, object]:
    """A Sentinel incident's Account entity."""
    properties: dict[str, object] = {"accountName": name, **extra}
    if suffix is not None:
        properties["upnSuffix"] = suffix
    return {"id": f"/entities/{name}", "kind": "Account", "properties": properties}


def test_sentinel_incident_with_two_accounts_gives_two_targets() -> None:
    payload = sample("sentinel-incident.json")
    payload["object"]["properties"]["relatedEntities"].append(account("rroe", "example.com"))
    assert SentinelAdapter().parse(payload)[0].targets == [JDOE, RROE]


def test_sentinel_account_without_upn_suffix_is_skipped() -> None:
    payload = sample("sentinel-incident.json")
    entities = payload["object"]["properties"]["relatedEntities"]
    entities.append(account("svc-sync", None, aadUserId="9d9d9d9d-0000-0000-0000-000000000000"))
    assert SentinelAdapter().parse(payload)[0].targets == [JDOE]


def test_sentinel_with_only_aad_accounts_finds_no_identity() -> None:
    payload = sample("sentinel-incident.json")
    entities = payload["object"]["properties"]["relatedEntities"]
    entities[0]["properties"].pop("upnSuffix")
    with pytest.raises(NoIdentityFound) as raised:
        SentinelAdapter().parse(payload)
    assert raised.value.tried == list(DEFAULT_PATHS["sentinel"])
    assert "object.properties.relatedEntities[kind=Account]" in str(raised.value)
    assert "without a UPN" in str(raised.value)


def test_sentinel_falls_back_on_a_upn_in_additional_data() -> None:
    payload = sample("sentinel-incident.json")
    properties = payload["object"]["properties"]["relatedEntities"][0]["properties"]
    properties.pop("upnSuffix")
    properties["additionalData"] = {"UserPrincipalName": "jane.doe@example.com"}
    assert SentinelAdapter().parse(payload)[0].targets == [{"type": "user", "login": "jane.doe@example.com"}]


def test_sentinel_alert_with_two_accounts_and_an_aad_only_one() -> None:
    payload = sample("sentinel-alert.json")
    payload["Entities"] += [
        {"$id": "4", "Name": "rroe", "UPNSuffix": "example.com", "Type": "account"},
        {"$id": "5", "Name": "svc", "AadUserId": "0000", "Type": "account"},
    ]
    assert SentinelAdapter().parse(payload)[0].targets == [JDOE, RROE]


def test_sentinel_alert_entities_as_a_json_string() -> None:
    payload = sample("sentinel-alert.json")
    payload["Entities"] = json.dumps(payload["Entities"])
    assert SentinelAdapter().parse(payload)[0].targets == [JDOE]


# --- Elastic ------------------------------------------------------------------------------------------------

def test_elastic_falls_back_on_user_name_only_when_it_looks_like_an_email() -> None:
    payload = sample("elastic.json")
    del payload["alerts"][0]["user"]["email"]
    payload["alerts"][0]["user"]["name"] = "ann@example.com"
    del payload["alerts"][1]["user"]["email"]
    assert adapter_for("elastic").parse(payload)[0].targets == [{"type": "user", "login": "ann@example.com"}]


def test_elastic_bare_usernames_are_no_identity() -> None:
    payload = sample("elastic.json")
    for alert in payload["alerts"]:
        del alert["user"]["email"]
    with pytest.raises(NoIdentityFound, match=r"tried alerts\[\]\.user\.email, alerts\[\]\.user\.name"):
        adapter_for("elastic").parse(payload)


def test_elastic_without_alert_ids_has_no_event_id() -> None:
    payload = sample("elastic.json")
    for alert in payload["alerts"]:
        del alert["_id"]
    assert adapter_for("elastic").parse(payload)[0].source_event_id is None


# --- Datadog ------------------------------------------------------------------------------------------------

def test_datadog_tags_as_a_list() -> None:
    payload = sample("datadog.json")
    payload["tags"] = ["env:prod", "user:jdoe@example.com", " user:rroe@example.com ", "team:sec"]
    assert DatadogAdapter().parse(payload)[0].targets == [JDOE, RROE]


def test_datadog_tags_as_a_string_with_spaces_and_two_users() -> None:
    payload = sample("datadog.json")
    payload["tags"] = "env:prod, user:jdoe@example.com ,service:box,user:rroe@example.com"
    assert DatadogAdapter().parse(payload)[0].targets == [JDOE, RROE]


def test_datadog_falls_back_on_a_top_level_user() -> None:
    payload = sample("datadog.json")
    payload["tags"] = "env:prod,service:box"
    payload["user"] = "rroe@example.com"
    assert DatadogAdapter().parse(payload)[0].targets == [RROE]


def test_datadog_without_a_user_names_tags_and_user() -> None:
    payload = sample("datadog.json")
    payload["tags"] = "env:prod"
    with pytest.raises(NoIdentityFound) as raised:
        DatadogAdapter().parse(payload)
    assert str(raised.value) == "no identity found; tried tags, user"


# --- Panther, Sumo Logic ------------------------------------------------------------------------------------

def test_panther_falls_back_on_email_then_actor() -> None:
    payload = sample("panther.json")
    payload["alertContext"] = {"actor": "rroe@example.com"}
    assert adapter_for("panther").parse(payload)[0].targets == [RROE]


def test_sumologic_results_quoted_as_a_string_are_decoded() -> None:
    payload = sample("sumologic.json")
    payload["ResultsJson"] = json.dumps(payload["ResultsJson"])
    assert adapter_for("sumologic").parse(payload)[0].targets == [JDOE, RROE]


def test_sumologic_results_string_that_is_not_json_is_a_payload_error() -> None:
    payload = sample("sumologic.json")
    payload["ResultsJson"] = "[{user: jdoe}"
    with pytest.raises(PayloadError) as raised:
        adapter_for("sumologic").parse(payload)
    assert raised.value.field == "ResultsJson"


def test_sumologic_event_id_is_never_derived_from_the_body() -> None:
    first = adapter_for("sumologic").parse(sample("sumologic.json"))
    again = adapter_for("sumologic").parse(sample("sumologic.json"))
    assert first[0].source_event_id is None and again[0].source_event_id is None


# --- Okta ---------------------------------------------------------------------------------------------------

def okta_event(uuid: str, event_type: str, login: str | None) -> dict[str, object]:
    """One System Log event as an Okta event hook sends it."""
    targets = [{"id": "00gGroup", "type": "UserGroup", "alternateId": "unknown", "displayName": "Everyone"}]
    if login is not None:
        targets.insert(0, {"id": f"00u{uuid}", "type": "User", "alternateId": login, "displayName": login})
    return {"uuid": uuid, "eventType": event_type, "displayMessage": f"message {uuid}", "severity": "INFO",
            "actor": {"id": "00u1admin", "type": "User", "alternateId": "it-admin@example.com"},
            "target": targets}


def okta_batch(*events: dict[str, object]) -> dict[str, object]:
    """An event hook delivery holding `events`."""
    body = copy.deepcopy(sample("okta-event-hook.json"))
    body["data"]["events"] = list(events)
    return body


def test_okta_batch_keeps_only_the_chosen_event_types_one_envelope_each() -> None:
    batch = okta_batch(
        okta_event("u1", "user.lifecycle.deactivate", "jdoe@example.com"),
        okta_event("u2", "user.session.start", "ann@example.com"),
        okta_event("u3", "user.lifecycle.suspend", "rroe@example.com"),
    )
    envelopes = OktaAdapter().parse(batch)
    assert [(e.source_event_id, e.targets, e.reason) for e in envelopes] == [
        ("u1", [JDOE], "message u1 (user.lifecycle.deactivate)"),
        ("u3", [RROE], "message u3 (user.lifecycle.suspend)"),
    ]


def test_okta_batch_with_no_chosen_event_is_an_empty_list_not_an_error() -> None:
    batch = okta_batch(okta_event("u2", "user.session.start", "ann@example.com"))
    assert OktaAdapter().parse(batch) == []


def test_okta_event_types_are_configurable() -> None:
    batch = okta_batch(okta_event("u1", "user.lifecycle.deactivate", "jdoe@example.com"),
                       okta_event("u2", "user.session.start", "ann@example.com"))
    envelopes = adapter_for("okta", okta_event_types=["user.session.start"]).parse(batch)
    assert [e.source_event_id for e in envelopes] == ["u2"]


def test_okta_kept_event_without_a_user_target_finds_no_identity() -> None:
    batch = okta_batch(okta_event("u1", "user.lifecycle.suspend", None))
    with pytest.raises(NoIdentityFound) as raised:
        OktaAdapter().parse(batch)
    assert raised.value.tried == ["data.events[].target[type=User].alternateId"]


def test_okta_batch_keeps_the_events_that_name_someone_when_another_names_nobody() -> None:
    # Okta does not deliver a batch again after a 4xx: refusing it whole would lose jdoe's deactivation.
    batch = okta_batch(okta_event("u1", "user.lifecycle.suspend", None),
                       okta_event("u2", "user.lifecycle.deactivate", "jdoe@example.com"))
    assert [e.source_event_id for e in OktaAdapter().parse(batch)] == ["u2"]


def test_okta_batch_without_events_list_is_a_payload_error() -> None:
    with pytest.raises(PayloadError) as raised:
        OktaAdapter().parse({"data": {"events": {"uuid": "x"}}})
    assert raised.value.field == "data.events"


def test_okta_paths_must_start_inside_the_events() -> None:
    with pytest.raises(ValueError, match=r"data\.events\[\]"):
        OktaAdapter().parse(sample("okta-event-hook.json"), paths=["target[type=User].alternateId"])


# --- Box Shield ---------------------------------------------------------------------------------------------

def test_box_shield_names_the_user_by_id_first_and_falls_back_on_the_email() -> None:
    payload = sample("box-shield-alert.json")
    assert BoxShieldAdapter().parse(payload)[0].targets == [{"type": "user", "id": "17738362"}]
    del payload["additional_details"]["shield_alert"]["user"]["id"]
    assert BoxShieldAdapter().parse(payload)[0].targets == [JDOE]


def test_box_shield_list_of_events_gives_one_envelope_each_and_skips_other_events() -> None:
    second = sample("box-shield-alert.json")
    second["event_id"] = "e-2"
    second["additional_details"]["shield_alert"]["user"] = {"id": 99, "email": "rroe@example.com"}
    other = {"type": "event", "event_id": "e-3", "event_type": "LOGIN", "additional_details": None}
    envelopes = BoxShieldAdapter().parse([sample("box-shield-alert.json"), second, other])
    assert [(e.source_event_id, e.targets) for e in envelopes] == [
        ("97f1b31f-f143-4777-81f8-1b557b39ca33", [{"type": "user", "id": "17738362"}]),
        ("e-2", [{"type": "user", "id": "99"}])]


def test_box_shield_alert_without_user_names_the_paths_tried() -> None:
    payload = sample("box-shield-alert.json")
    del payload["additional_details"]["shield_alert"]["user"]
    with pytest.raises(NoIdentityFound) as raised:
        BoxShieldAdapter().parse(payload)
    assert str(raised.value) == ("no identity found; tried additional_details.shield_alert.user.id, "
                                 "additional_details.shield_alert.user.email")


# --- the generic envelope -----------------------------------------------------------------------------------

def envelope_with(**changes: object) -> dict[str, Any]:
    """The generic sample with some fields replaced."""
    return {**sample("generic.json"), **changes}


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"targets": {"type": "user", "login": "a@example.com"}}, "targets", "targets must be a list"),
    ({"targets": [{"type": "user"}]}, "targets[0]", "targets[0] needs an id or a login"),
    ({"targets": [JDOE, {"type": "user", "login": {"email": "a@example.com"}}]}, "targets[1].login",
     "targets[1].login must be a string"),
    ({"targets": [{"type": "group", "login": "a@example.com"}]}, "targets[0]", "targets[0] needs an id or a name"),
    ({"targets": [{"type": "device", "id": "1"}]}, "targets[0].type", 'targets[0].type must be "user" or "group"'),
    ({"targets": [{"type": "user", "id": "1", "login": "a@example.com"}]}, "targets[0]",
     "targets[0] gives both id and login; give one"),
    ({"targets": [{"type": "user", "login": "  "}]}, "targets[0].login", "targets[0].login must not be empty"),
    ({"targets": ["a@example.com"]}, "targets[0]", "targets[0] must be an object"),
    ({"dry_run": "false"}, "dry_run", "dry_run must be true or false"),
    ({"reason": 42}, "reason", "reason must be a string"),
    ({"id": ["x"]}, "id", "id must be a string or an integer"),
])
def test_generic_envelope_errors_name_the_field(changes: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(PayloadError) as raised:
        GenericAdapter().parse(envelope_with(**changes))
    assert raised.value.field == field
    assert str(raised.value) == message


def test_generic_envelope_normalises_ids_dry_run_and_repeats() -> None:
    payload = envelope_with(dry_run=True, id=7, targets=[
        {"type": "user", "id": 17738362}, {"type": "user", "login": " jdoe@example.com"},
        {"type": "user", "login": "JDoe@Example.com"}, {"type": "group", "id": "55"},
        {"type": "user", "id": "17738362"},
    ])
    [envelope] = GenericAdapter().parse(payload)
    assert envelope.targets == [{"type": "user", "id": "17738362"}, JDOE, {"type": "group", "id": "55"}]
    assert envelope.dry_run is True and envelope.source_event_id == "7"


@pytest.mark.parametrize("targets", [None, []])
def test_generic_envelope_without_targets_finds_no_identity(targets: object) -> None:
    with pytest.raises(NoIdentityFound, match=r"tried targets\[\]"):
        GenericAdapter().parse(envelope_with(targets=targets))


def test_generic_envelope_takes_no_paths() -> None:
    with pytest.raises(ValueError):
        GenericAdapter().parse(sample("generic.json"), paths=["users[]"])
