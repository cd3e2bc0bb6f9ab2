"""The settings of approval from Slack: the signing secret (inline or `_FILE`) and who may approve there."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import Settings, SettingsError, load_settings


def settings(**env: str) -> Settings:
    return load_settings(env, env_file=None)


def test_approval_from_slack_is_off_by_default() -> None:
    loaded = settings()
    assert loaded.slack_signing_secret is None and dict(loaded.slack_approvers) == {}


def test_approvers_map_slack_user_ids_alone_or_within_a_team_to_names() -> None:
    loaded = settings(BOXCUT_SLACK_SIGNING_SECRET="shh",
                      BOXCUT_SLACK_APPROVERS=" U012ABC:alice , T0TEAM/U034DEF:bob,W0GRID:carol.o-k@x")
    assert dict(loaded.slack_approvers) == {"U012ABC": "alice", "T0TEAM/U034DEF": "bob", "W0GRID": "carol.o-k@x"}
    assert loaded.slack_signing_secret is not None and loaded.slack_signing_secret.reveal() == "shh"
    assert "shh" not in repr(loaded)


def test_the_signing_secret_may_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "slack-signing-secret"
    secret.write_text("from-a-file\n")
    loaded = settings(BOXCUT_SLACK_SIGNING_SECRET_FILE=str(secret), BOXCUT_SLACK_APPROVERS="U012ABC:alice")
    assert loaded.slack_signing_secret is not None and loaded.slack_signing_secret.reveal() == "from-a-file"


def test_a_signing_secret_without_approvers_stops_the_start() -> None:
    with pytest.raises(SettingsError, match="BOXCUT_SLACK_APPROVERS: missing"):
        settings(BOXCUT_SLACK_SIGNING_SECRET="shh")


def test_approvers_without_the_secret_are_kept_the_intakes_route_being_off() -> None:
    # Workers read the approvers (they put buttons on notices) and may not be given the intake's secret.
    loaded = settings(BOXCUT_SLACK_APPROVERS="U012ABC:alice")
    assert loaded.slack_signing_secret is None and dict(loaded.slack_approvers) == {"U012ABC": "alice"}


@pytest.mark.parametrize("entry", ["U012ABC", "alice", "U012ABC:", ":alice", "u012abc:alice", "U012ABC:al ice",
                                   "U012ABC:alice:x", "T0/U012ABC/X:alice", "U012ABC:-alice"])
def test_a_malformed_approver_stops_the_start_naming_the_variable(entry: str) -> None:
    with pytest.raises(SettingsError, match=r"^BOXCUT_SLACK_APPROVERS: expected SLACK_USER_ID:name"):
        settings(BOXCUT_SLACK_APPROVERS=entry)


def test_a_slack_user_named_twice_stops_the_start() -> None:
    with pytest.raises(SettingsError, match="U012ABC is named twice"):
        settings(BOXCUT_SLACK_APPROVERS="U012ABC:alice,U012ABC:bob")
