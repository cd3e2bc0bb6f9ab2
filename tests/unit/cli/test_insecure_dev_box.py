"""`boxcut intake --insecure-dev` refuses to start while credentials for a real Box are set: anyone on this machine
could post jobs there unchecked, and they would end real people's sessions. The simulator's (boxsim's, on
loopback) are not real: the mode stays for trying boxcut out against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from config import SettingsError
from worker.cli import commands, serve

REPO = Path(__file__).resolve().parents[3]
# A start that is refused ends in a few seconds; one still running after this is serving.
START_SECONDS = 20
BOXSIM = {"BOX_API_BASE_URL": "http://127.0.0.1:8765/2.0", "BOX_OAUTH_URL": "http://127.0.0.1:8765/oauth2/token"}
CLIENT_CREDENTIALS = {"BOX_CLIENT_ID": "client-id", "BOX_CLIENT_SECRET": "client-secret", "BOX_ENTERPRISE_ID": "42"}


def _jwt_config(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "box-jwt.json"
    path.write_text(json.dumps({"enterpriseID": "42", "boxAppSettings": {
        "clientID": "client-id", "clientSecret": "client-secret",
        "appAuth": {"publicKeyID": "key-1", "privateKey": "not a real key", "passphrase": ""}}}))
    return {"BOX_JWT_CONFIG_FILE": str(path)}


def _start_insecure_dev(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`boxcut intake --insecure-dev` as a person starts it, with only `env` set (and no `.env`: run in `cwd`)."""
    base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "HOME": str(cwd),
            "BOXCUT_REDIS_URL": "redis://127.0.0.1:1/0"}
    try:
        return subprocess.run([sys.executable, "-m", "worker.cli", "intake", "--insecure-dev", "--port", "0"],
                              env={**base, **env}, cwd=cwd, capture_output=True, text=True, timeout=START_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`boxcut intake --insecure-dev` started and served with {sorted(env)} set")


@pytest.mark.parametrize(("credentials", "named"), [
    (lambda _tmp: {"BOX_DEVELOPER_TOKEN": "a-developer-token"}, "BOX_DEVELOPER_TOKEN"),
    (lambda _tmp: CLIENT_CREDENTIALS, "BOX_CLIENT_ID"),
    (_jwt_config, "BOX_JWT_CONFIG_FILE"),
    # The API on loopback, but the token fetched from Box's own endpoint with real credentials: still real.
    (lambda _tmp: {**CLIENT_CREDENTIALS, "BOX_API_BASE_URL": BOXSIM["BOX_API_BASE_URL"]}, "BOX_CLIENT_ID"),
], ids=["developer-token", "client-credentials", "jwt", "api-on-loopback-token-from-box"])
def test_insecure_dev_refuses_to_start_beside_real_box_credentials(credentials: Callable[[Path], dict[str, str]],
                                                                   named: str, tmp_path: Path) -> None:
    run = _start_insecure_dev(credentials(tmp_path), tmp_path)
    assert run.returncode == 64, run.stderr
    assert named in run.stderr and "--insecure-dev refuses to start with real Box credentials" in run.stderr
    assert "INSECURE DEV MODE" not in run.stderr  # refused before it announced itself


@pytest.fixture
def uvicorn_runs(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    import uvicorn

    runs: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: runs.append(app))
    for name in [*CLIENT_CREDENTIALS, *BOXSIM, "BOX_DEVELOPER_TOKEN", "BOX_JWT_CONFIG_FILE"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOXCUT_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.chdir(REPO / "tests")  # no `.env` there
    return runs


def test_insecure_dev_starts_beside_the_simulators_credentials(uvicorn_runs: list[Any],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**CLIENT_CREDENTIALS, **BOXSIM}.items():
        monkeypatch.setenv(name, value)
    run = CliRunner().invoke(commands.main, ["intake", "--insecure-dev", "--port", "8123"])
    assert run.exit_code == 0, run.output
    assert len(uvicorn_runs) == 1


def test_each_insecure_worker_process_refuses_real_box_credentials_too(uvicorn_runs: list[Any],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOX_DEVELOPER_TOKEN", "a-developer-token")
    with pytest.raises(SettingsError, match=r"^BOX_DEVELOPER_TOKEN: --insecure-dev refuses"):
        serve.insecure_dev_intake_app_from_environment()
    serve.intake_app_from_environment()  # the mode with credentials checked is unaffected
