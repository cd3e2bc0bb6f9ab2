"""`boxcut dev`'s `boxcut-dev.env`: a shell that sources it reaches the same stack (intake, tokens, Redis, keys,
broker, boxsim), the file is its owner's only, is replaced at each start and goes when the stack stops."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from config import load_settings
from worker.cli.dev_stack import ENV_FILE_NAME, DevStack, IntakeAccess

SHARED = {"BOXCUT_REDIS_URL": "redis://10.0.0.5:6379/0", "BOXCUT_BROKER_URL": "amqp://guest:guest@rabbit:5672//"}
BOX = {"BOX_API_BASE_URL": "http://127.0.0.1:8765/2.0", "BOX_OAUTH_URL": "http://127.0.0.1:8765/oauth2/token",
       "BOX_CLIENT_ID": "boxsim-client-id", "BOX_CLIENT_SECRET": "boxsim-client-secret",
       "BOX_ENTERPRISE_ID": "boxsim-enterprise"}


def _stack(env: dict[str, str], *, intake_token: str | None = "dev-intake-abc",
           operator_token: str | None = "dev-operator-'quoted' $HOME") -> DevStack:
    """A stack as `start` leaves it with boxsim (nothing started: only what the file is made from)."""
    stack = DevStack(load_settings(env, env_file=None), env=dict(env))
    stack.isolate()
    stack.box_env = dict(BOX)
    stack.env.update(BOX)
    stack.boxsim_url, stack.simulated_box = "http://127.0.0.1:8765", True
    stack.intake = IntakeAccess("http://127.0.0.1:8000", intake_token, operator_token)
    return stack


def _sourced(path: Path) -> dict[str, str]:
    """The variables a clean shell has after `. ./boxcut-dev.env` in the file's folder, with stale ones set."""
    script = f"export TOKEN=stale BOXCUT_BROKER_URL=amqp://stale//; . ./{path.name}; env -0"
    out = subprocess.run(["bash", "-c", script], cwd=path.parent, env={"PATH": "/usr/bin:/bin"},
                         capture_output=True, check=True).stdout.decode()
    return dict(entry.split("=", 1) for entry in out.split("\0") if "=" in entry)


def test_a_shell_that_sources_it_reaches_the_same_stack(tmp_path: Path) -> None:
    stack = _stack(SHARED)
    path = stack.write_env_file(tmp_path)
    assert path == tmp_path / ENV_FILE_NAME
    env = _sourced(path)
    assert env["TOKEN"] == "dev-intake-abc" and env["OPERATOR_TOKEN"] == "dev-operator-'quoted' $HOME"
    assert env["INTAKE_URL"] == "http://127.0.0.1:8000" and env["BOXSIM_URL"] == "http://127.0.0.1:8765"
    assert env["BOXCUT_KEY_PREFIX"] == stack.settings.key_prefix and stack.own_prefix
    assert {name: env[name] for name in BOX} == BOX
    # A `boxcut` command in that shell: the stack's Redis, keys, the Redis as broker (never the stale RabbitMQ)
    # and boxsim; every BOXCUT_ name in the file is one of its settings (load_settings takes them all).
    shell = load_settings(env, env_file=None)
    assert shell.redis_url == stack.settings.redis_url and shell.key_prefix == stack.settings.key_prefix
    assert shell.broker_is_redis and shell.box_api_base_url == BOX["BOX_API_BASE_URL"] and shell.has_box_credentials
    names = {line.split("=", 1)[0].removeprefix("export ") for line in path.read_text().splitlines()
             if line.startswith("export ")}
    assert {n for n in names if n.startswith("BOXCUT_")} == {"BOXCUT_REDIS_URL", "BOXCUT_KEY_PREFIX",
                                                              "BOXCUT_BROKER_URL"}
    assert "BOXCUT_INTAKE_TOKENS" not in names and "BOXCUT_OPERATOR_TOKENS" not in names


def test_it_is_its_owners_only_replaced_at_each_start_and_removed_at_stop(tmp_path: Path) -> None:
    old = tmp_path / ENV_FILE_NAME
    old.write_text("export TOKEN=old\n")
    old.chmod(0o644)
    stack = _stack(SHARED)
    path = stack.write_env_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and "TOKEN=old" not in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [ENV_FILE_NAME]  # no temporary file left behind
    stack.stop()
    assert not path.exists()


def test_stopping_leaves_the_file_of_a_later_stack_in_the_same_folder(tmp_path: Path) -> None:
    first, second = _stack(SHARED), _stack(SHARED, intake_token="dev-intake-second")
    first.write_env_file(tmp_path)
    path = second.write_env_file(tmp_path)
    first.stop()
    assert _sourced(path)["TOKEN"] == "dev-intake-second"
    second.stop()
    assert not path.exists()


def test_configured_tokens_are_written_and_said_to_be_configured(tmp_path: Path) -> None:
    env = {**SHARED, "BOXCUT_INTAKE_TOKENS": "splunk:intake-one,intake-two",
           "BOXCUT_OPERATOR_TOKENS": "operator:alice:op-secret", "BOXCUT_KEY_PREFIX": "mine:"}
    stack = _stack(env, intake_token=None, operator_token=None)
    path = stack.write_env_file(tmp_path)
    text = path.read_text()
    assert "the first of BOXCUT_INTAKE_TOKENS, as configured" in text
    assert "the first of BOXCUT_OPERATOR_TOKENS, as configured" in text
    sourced = _sourced(path)
    assert sourced["TOKEN"] == "intake-one" and sourced["OPERATOR_TOKEN"] == "alice:op-secret"
    # a chosen prefix keeps its broker: RabbitMQ, as the worker has it
    assert sourced["BOXCUT_KEY_PREFIX"] == "mine:" and sourced["BOXCUT_BROKER_URL"] == SHARED["BOXCUT_BROKER_URL"]


def test_an_intake_with_hmac_secrets_only_leaves_token_unset(tmp_path: Path) -> None:
    stack = _stack({**SHARED, "BOXCUT_INTAKE_HMAC_SECRETS": "hmac-key"}, intake_token=None)
    path = stack.write_env_file(tmp_path)
    assert "HMAC-signed alerts only" in path.read_text() and "hmac-key" not in path.read_text()
    assert "TOKEN" not in _sourced(path)
