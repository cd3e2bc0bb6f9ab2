"""Settings: typed values, NAME_FILE secrets, and one clear line naming a bad variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config import BoxAuthMode, SettingsError, load_settings


def test_defaults_need_nothing() -> None:
    settings = load_settings({}, env_file=None)
    assert settings.batch_size == 100 and settings.approval_threshold == 25
    assert settings.box_api_base_url == "https://api.box.com/2.0"
    assert settings.box_auth_mode is BoxAuthMode.NONE


def test_client_credentials_and_lists() -> None:
    settings = load_settings({"BOX_CLIENT_ID": "cid", "BOX_CLIENT_SECRET": "s3cret", "BOX_ENTERPRISE_ID": "42",
                              "BOXCUT_PROTECTED_USERS": " ceo@example.com, 17 ,,", "BOXCUT_DRY_RUN": "yes"},
                             env_file=None)
    assert settings.box_auth_mode is BoxAuthMode.CLIENT_CREDENTIALS
    assert settings.protected_users == ("ceo@example.com", "17")
    assert settings.dry_run is True
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"BOXCUT_BATCH_SIZE": "abc"}, "BOXCUT_BATCH_SIZE"),
        ({"BOXCUT_BATCH_SIZE": "0"}, "BOXCUT_BATCH_SIZE"),
        ({"BOXCUT_DRY_RUN": "maybe"}, "BOXCUT_DRY_RUN"),
        ({"BOXCUT_REDIS_URL": "localhost:6379"}, "BOXCUT_REDIS_URL"),
        ({"BOX_API_BASE_URL": "ftp://box"}, "BOX_API_BASE_URL"),
        ({"BOX_CLIENT_ID": "cid"}, "BOX_CLIENT_SECRET"),
        ({"BOX_CLIENT_ID": "cid", "BOX_CLIENT_SECRET": "s"}, "BOX_ENTERPRISE_ID"),
        ({"BOX_CLIENT_SECRET_FILE": "/nonexistent/secret"}, "BOX_CLIENT_SECRET_FILE"),
        ({"BOXCUT_VISIBILITY_TIMEOUT": "60"}, "BOXCUT_VISIBILITY_TIMEOUT"),
    ],
)
def test_a_bad_setting_names_its_variable_in_one_line(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env, env_file=None)
    assert str(caught.value).startswith(f"{variable}: ") and "\n" not in str(caught.value)


def test_secret_from_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-a-file\n")
    settings = load_settings({"BOX_CLIENT_ID": "cid", "BOX_CLIENT_SECRET_FILE": str(tmp_path / "secret"),
                              "BOX_ENTERPRISE_ID": "1"}, env_file=None)
    assert settings.box_client_secret is not None and settings.box_client_secret.reveal() == "from-a-file"


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("BOXCUT_BATCH_SIZE=7\nBOXCUT_APPROVAL_THRESHOLD=3\n")
    settings = load_settings({"BOXCUT_APPROVAL_THRESHOLD": "9"}, env_file=env_file)
    assert (settings.batch_size, settings.approval_threshold) == (7, 9)


def test_jwt_config_file(tmp_path: Path) -> None:
    config = {"boxAppSettings": {"clientID": "cid", "clientSecret": "csec",
                                 "appAuth": {"publicKeyID": "kid1", "privateKey": "-----BEGIN...", "passphrase": "pp"}},
              "enterpriseID": "99"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    settings = load_settings({"BOX_JWT_CONFIG_FILE": str(path)}, env_file=None)
    assert settings.box_auth_mode is BoxAuthMode.JWT
    assert settings.box_jwt is not None and settings.box_jwt.enterprise_id == "99"
    assert "csec" not in repr(settings) and "pp" not in repr(settings.box_jwt.passphrase)


def test_jwt_config_that_is_not_boxs_names_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"nope": 1}))
    with pytest.raises(SettingsError, match=r"^BOX_JWT_CONFIG_FILE: .*lacks"):
        load_settings({"BOX_JWT_CONFIG_FILE": str(path)}, env_file=None)


def test_the_redis_password_comes_from_its_own_setting_or_a_docker_secret(tmp_path: Path) -> None:
    secret = tmp_path / "redis_password"
    secret.write_text("p@ss/w\n")
    env = {"BOXCUT_REDIS_URL": "redis://redis:6379/0", "BOXCUT_REDIS_PASSWORD_FILE": str(secret)}
    assert load_settings(env, env_file=None).redis_url == "redis://:p%40ss%2Fw@redis:6379/0"
    with pytest.raises(SettingsError, match="names a password"):
        load_settings({"BOXCUT_REDIS_URL": "redis://:x@redis:6379/0", "BOXCUT_REDIS_PASSWORD": "y"}, env_file=None)


def test_a_redis_password_keeps_the_user_is_idempotent_and_is_never_displayed() -> None:
    from config.settings import displayable_url

    env = {"BOXCUT_REDIS_URL": "redis://boxcut@redis:6379/0", "BOXCUT_REDIS_PASSWORD": "pw"}
    joined = load_settings(env, env_file=None).redis_url
    assert joined == "redis://boxcut:pw@redis:6379/0"
    assert load_settings({**env, "BOXCUT_REDIS_URL": joined}, env_file=None).redis_url == joined  # a child's env
    assert load_settings({**env, "BOXCUT_BROKER_URL": "redis://boxcut@redis:6379/0"}, env_file=None).broker_is_redis
    assert displayable_url(joined) == "redis://boxcut:***@redis:6379/0"
    odd = {"BOXCUT_REDIS_URL": "redis://us%40er@redis:6379/0", "BOXCUT_REDIS_PASSWORD": "p@ss w"}
    joined = load_settings(odd, env_file=None).redis_url
    assert joined == "redis://us%40er:p%40ss%20w@redis:6379/0"  # encoded once, not twice
    assert load_settings({**odd, "BOXCUT_REDIS_URL": joined}, env_file=None).redis_url == joined


def test_with_rabbitmq_a_task_run_must_stay_under_its_consumer_timeout() -> None:
    env = {"BOXCUT_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/", "BOXCUT_RUN_BUDGET_SECONDS": "1800",
           "BOXCUT_VISIBILITY_TIMEOUT": "7200"}
    with pytest.raises(SettingsError, match="consumer_timeout"):
        load_settings(env, env_file=None)
    assert not load_settings({**env, "BOXCUT_RUN_BUDGET_SECONDS": "300"}, env_file=None).broker_is_redis


def test_the_brakes_settings_and_per_source_limits_by_whole_source_or_route() -> None:
    defaults_only = load_settings({}, env_file=None)
    assert (defaults_only.brake_users, defaults_only.brake_total_users, defaults_only.brake_window_seconds) == \
        (25, 100, 600)
    settings = load_settings({"BOXCUT_BRAKE_USERS": "0", "BOXCUT_BRAKE_SOURCE_USERS":
                              "okta=60, ssf:https://idp.example.com/a=b=5"}, env_file=None)
    assert settings.brake_users == 0
    assert dict(settings.brake_source_users) == {"okta": 60, "ssf:https://idp.example.com/a=b": 5}


@pytest.mark.parametrize(("env", "variable"), [
    ({"BOXCUT_BRAKE_USERS": "-1"}, "BOXCUT_BRAKE_USERS"),
    ({"BOXCUT_BRAKE_TOTAL_USERS": "many"}, "BOXCUT_BRAKE_TOTAL_USERS"),
    ({"BOXCUT_BRAKE_WINDOW_SECONDS": "0"}, "BOXCUT_BRAKE_WINDOW_SECONDS"),
    ({"BOXCUT_BRAKE_SOURCE_USERS": "okta"}, "BOXCUT_BRAKE_SOURCE_USERS"),
    ({"BOXCUT_BRAKE_SOURCE_USERS": "okta=lots"}, "BOXCUT_BRAKE_SOURCE_USERS"),
    ({"BOXCUT_BRAKE_SOURCE_USERS": "=5"}, "BOXCUT_BRAKE_SOURCE_USERS"),
    # A source allowed as many as all sources together would engage the brake for every source by itself.
    ({"BOXCUT_BRAKE_SOURCE_USERS": "okta=100"}, "BOXCUT_BRAKE_SOURCE_USERS"),
    ({"BOXCUT_BRAKE_SOURCE_USERS": "okta=30", "BOXCUT_BRAKE_TOTAL_USERS": "20"}, "BOXCUT_BRAKE_SOURCE_USERS"),
])
def test_a_bad_brake_setting_names_its_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env, env_file=None)
    assert str(caught.value).startswith(f"{variable}: ")
