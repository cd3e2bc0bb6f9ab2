"""The compose stack is the product, tested without a Docker engine: docker-compose.yml validates against the
Compose Specification's schema, every service runs a real command, and those commands, started here with the
compose environment and secrets (a private Redis with a password, boxsim for Box), answer a signed alert end to
end."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import redis
import requests
import yaml

from boxsim import BoxSim, SimConfig
from config import catalogue, load_settings
from tests.drills.private_redis import PrivateRedis
from tests.integration.harness import FAST_ENV, REPO, free_port, until
from tests.integration.test_intake_e2e import SAMPLES
from worker.cli import main
from worker.jobs.model import JobState
from worker.jobs.store import JobStore

pytestmark = pytest.mark.integration

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SCHEMA = json.loads((REPO / "tests" / "compose" / "compose-spec.json").read_text())
BOXCUT_SERVICES = ("worker", "notifier", "intake", "beat")
# The services whose commands are boxcut's: the long-running ones, and the one-shot migration before them.
BOXCUT_COMMANDS = ("migrate", *BOXCUT_SERVICES)


def test_the_compose_file_validates_against_the_compose_specification() -> None:
    validator = jsonschema.Draft201909Validator(SCHEMA)
    assert [e.message for e in validator.iter_errors(COMPOSE)] == []
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["worker"]["restart_policy"] = "always"  # not a service key: the schema must say so
    assert list(validator.iter_errors(broken))


def test_the_stack_has_every_service_pinned_checked_and_secret() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"redis", "postgres", "migrate", "worker", "notifier", "intake", "beat", "flower"}
    assert re.fullmatch(r"redis:\d+\.\d+(-alpine)?", services["redis"]["image"])  # a pinned minor version
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command and "--maxmemory-policy noeviction" in redis_command
    assert "--maxmemory " in redis_command and "--requirepass" in redis_command
    assert all("healthcheck" in services[name] for name in ("redis", "postgres", "worker", "intake"))
    assert services["flower"]["profiles"] == ["flower"]
    assert "env_file" not in json.dumps(services)  # .env is optional: read through ${…} when present
    for name in BOXCUT_COMMANDS:
        env = services[name]["environment"]
        assert not [k for k in env if "SECRET" in k or "TOKENS" in k or "PASSWORD" in k if not k.endswith("_FILE")]
        assert set(services[name]["secrets"]) <= set(COMPOSE["secrets"])
        assert "BOXCUT_ARCHIVE_URL" not in env  # the URL holds the password: only as a file
        assert env["BOXCUT_ARCHIVE_URL_FILE"] == "/run/secrets/archive_url"
        assert "archive_url" in services[name]["secrets"]
    assert re.search(r"^FROM python:\d+\.\d+\.\d+-slim-\w+ AS build$", (REPO / "Dockerfile").read_text(), re.M)


def test_the_archive_is_a_pinned_postgres_with_a_volume_a_secret_password_and_a_healthcheck() -> None:
    postgres = COMPOSE["services"]["postgres"]
    assert re.fullmatch(r"postgres:\d+\.\d+(-alpine)?", postgres["image"])  # an exact minor release, not `16`
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "POSTGRES_PASSWORD" not in postgres["environment"] and postgres["secrets"] == ["postgres_password"]
    assert COMPOSE["secrets"]["postgres_password"] == {"file": "./secrets/postgres_password"}
    assert COMPOSE["secrets"]["archive_url"] == {"file": "./secrets/archive_url"}
    volume = postgres["volumes"][0].split(":")
    assert volume[1] == "/var/lib/postgresql/data" and volume[0] in COMPOSE["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    user, database = postgres["environment"]["POSTGRES_USER"], postgres["environment"]["POSTGRES_DB"]
    assert f"-U {user} -d {database}" in " ".join(postgres["healthcheck"]["test"])


def test_the_boxcut_services_wait_for_postgres_and_the_migration_which_runs_once() -> None:
    services = COMPOSE["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["boxcut", "migrate"] and migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in (*BOXCUT_SERVICES, "flower"):
        assert services[name]["depends_on"] == {"redis": {"condition": "service_healthy"},
                                                "postgres": {"condition": "service_healthy"},
                                                "migrate": {"condition": "service_completed_successfully"}}
        assert services[name]["restart"] == "unless-stopped"


def test_make_secrets_writes_an_archive_url_with_the_postgres_password(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "secrets").mkdir()
    script = tmp_path / "scripts" / "make-secrets"
    script.write_bytes((REPO / "scripts" / "make-secrets").read_bytes())
    script.chmod(0o755)
    made = subprocess.run([str(script)], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    secrets_dir = tmp_path / "secrets"
    assert {p.name for p in secrets_dir.iterdir()} >= set(COMPOSE["secrets"])
    password = (secrets_dir / "postgres_password").read_text().strip()
    postgres = COMPOSE["services"]["postgres"]["environment"]
    assert len(password) >= 32 and (secrets_dir / "archive_url").read_text() == (
        f"postgresql://{postgres['POSTGRES_USER']}:{password}@postgres:5432/{postgres['POSTGRES_DB']}\n")
    settings = load_settings({"BOXCUT_ARCHIVE_URL_FILE": str(secrets_dir / "archive_url")}, env_file=None)
    assert settings.archive_location == f"postgresql://boxcut:{password}@postgres:5432/boxcut"
    again = subprocess.run([str(script)], capture_output=True, text=True, timeout=60)  # keeps what exists
    assert again.returncode == 0 and again.stdout == ""
    assert (secrets_dir / "postgres_password").read_text().strip() == password
    (secrets_dir / "postgres_password").write_text("another\n")  # the two would disagree: said, not started
    mismatch = subprocess.run([str(script)], capture_output=True, text=True, timeout=60)
    assert mismatch.returncode == 1 and "another password than secrets/postgres_password" in mismatch.stderr


@pytest.mark.parametrize("service", BOXCUT_COMMANDS)
def test_every_services_command_is_a_real_boxcut_command(service: str) -> None:
    program, *args = COMPOSE["services"][service]["command"]
    assert program == "boxcut"
    with main.make_context("boxcut", list(args)) as ctx:
        name, command, rest = main.resolve_command(ctx, list(args))
        assert command is not None
        command.make_context(name or "", rest, parent=ctx)  # unknown options or bad values raise here


def test_the_celery_commands_name_boxcuts_importable_app() -> None:
    services = COMPOSE["services"]
    assert " ".join(services["worker"]["healthcheck"]["test"]).count("celery -A tasks inspect ping") == 1
    assert services["flower"]["command"][:3] == ["celery", "-A", "tasks"]
    env = {**os.environ, "BOXCUT_REDIS_URL": "redis://x:1/0"}  # importing the app connects to nothing
    imported = subprocess.run([sys.executable, "-c", "import tasks.celery as c; print(type(c.app).__name__)"],
                              cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert imported.stdout.strip() == "Celery", imported.stderr


@pytest.fixture
def compose_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path, password="compose-redis-password")
    server.start()
    yield server
    server.shutdown()


def _compose_env(service: str, *, redis_port: int, secrets_dir: Path, sim: BoxSim) -> dict[str, str]:
    """The service's compose environment, as this machine runs it: hosts and secret paths made local."""
    env = {k: str(v) for k, v in COMPOSE["services"][service]["environment"].items()}
    resolved = {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", v) for k, v in env.items()}
    resolved = {k: v.replace("/run/secrets/", f"{secrets_dir}/") for k, v in resolved.items()}
    resolved["BOXCUT_REDIS_URL"] = resolved["BOXCUT_REDIS_URL"].replace("redis:6379", f"127.0.0.1:{redis_port}")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BOX_", "BOXCUT_"))}
    return {**base, **FAST_ENV, **resolved, "BOX_CLIENT_ID": sim.config.client_id,
            "BOX_ENTERPRISE_ID": sim.config.enterprise_id, "BOX_API_BASE_URL": sim.base_url,
            "BOX_OAUTH_URL": sim.oauth_url}


def _command(service: str, *, intake_port: int, metrics_port: int) -> list[str]:
    args = [str(a) for a in COMPOSE["services"][service]["command"][1:]]
    text = " ".join(args).replace("--port 8000", f"--port {intake_port}").replace("--host 0.0.0.0",
                                                                                 "--host 127.0.0.1")
    text = text.replace("--metrics-port 9808", f"--metrics-port {metrics_port}")
    return [sys.executable, "-m", "worker.cli", *text.split()]


def test_the_compose_services_commands_answer_a_signed_alert_end_to_end(
        compose_redis: PrivateRedis, postgres_databases: Callable[[], str], tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    sim = BoxSim(SimConfig(port=0)).start()
    values = {"redis_password": compose_redis.password or "", "box_client_secret": sim.config.client_secret,
              "intake_tokens": "compose-intake-token", "operator_tokens": "compose-operator-token",
              "report_signing_key": subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519"], check=True,
                                                   capture_output=True, text=True).stdout,
              # The archive: a fresh PostgreSQL database of this test's own, as the `postgres` service is.
              "postgres_password": "unused-here", "archive_url": postgres_databases()}
    for name in COMPOSE["secrets"]:
        (secrets_dir / name).write_text(values[name] + "\n")
    intake_port, metrics_port = free_port(), free_port()
    processes: list[subprocess.Popen[bytes]] = []
    # `migrate` first, as compose runs it: the schema at head, or no boxcut service starts.
    migrated = subprocess.run(_command("migrate", intake_port=intake_port, metrics_port=metrics_port),
                              env=_compose_env("migrate", redis_port=compose_redis.port, secrets_dir=secrets_dir,
                                               sim=sim),
                              cwd=REPO, capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0 and "-> " in migrated.stdout, migrated.stdout + migrated.stderr
    try:
        for service in BOXCUT_SERVICES:
            log = (tmp_path / f"{service}.log").open("wb")
            processes.append(subprocess.Popen(
                _command(service, intake_port=intake_port, metrics_port=metrics_port),
                env=_compose_env(service, redis_port=compose_redis.port, secrets_dir=secrets_dir, sim=sim),
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        url = f"http://127.0.0.1:{intake_port}"
        job = _post_and_wait(url, compose_redis)
        metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        alive = [p.poll() is None for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=45)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        sim.stop()
    logs = {s: (tmp_path / f"{s}.log").read_text(errors="replace") for s in BOXCUT_SERVICES}
    assert job["state"] == JobState.SUCCEEDED.value, logs
    assert all(alive), logs
    assert 'boxcut_jobs_finished_total{state="succeeded"} 1.0' in metrics
    assert 'boxcut_jobs_in_redis{form="working"} 1.0' in metrics and "boxcut_redis_days_left " in metrics
    assert "beat: Starting" in logs["beat"]
    assert not [s for s, text in logs.items() if "compose-redis-password" in text or "compose-intake-token" in text]


def _post_and_wait(url: str, redis_server: PrivateRedis) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "the intake never became ready"
        time.sleep(0.2)
    payload = json.loads((SAMPLES / "panther.json").read_text())
    answer = requests.post(f"{url}/v1/alerts/panther", json=payload, timeout=10,
                           headers={"Authorization": "Bearer compose-intake-token"})
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    store = JobStore(redis_server.client(), key_prefix="boxcut:")
    while time.monotonic() < deadline + 60:
        record = requests.get(f"{url}/v1/jobs/{job_id}", timeout=10,
                              headers={"Authorization": "Bearer compose-operator-token"}).json()
        if record["state"] in {s.value for s in JobState if s.is_final}:
            return dict(record)
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end: {store.load(job_id).to_dict()}")


def test_the_env_example_names_every_variable_the_compose_file_reads() -> None:
    read = {name for file in ("docker-compose.yml", "docker-compose.sentinel.yml")
            for name in re.findall(r"\$\{([A-Z_]+):-", (REPO / file).read_text())}
    example = (REPO / ".env.example").read_text()
    assert read and not [name for name in read if not re.search(rf"^#? ?{name}=", example, re.M)]


def test_every_setting_in_the_env_example_reaches_the_containers() -> None:
    example = (REPO / ".env.example").read_text()
    named = set(re.findall(r"^#? ?((?:BOXCUT|BOX)_[A-Z_]+)=", example, re.M))
    passed = set(COMPOSE["services"]["worker"]["environment"])
    passed |= {n.removesuffix("_FILE") for n in passed if n.endswith("_FILE")}
    # what config/catalogue.py declares compose does not pass (.env.example says so beside each), and compose's own
    outside_compose = {name for s in catalogue.SETTINGS if not s.passed_by_compose for name in s.names}
    assert named and sorted(named - passed - outside_compose) == []
    assert sorted(outside_compose & passed) == []  # a declaration that says "not passed" of one that is


class _Override(dict):  # type: ignore[type-arg]
    """A mapping tagged `!override` in a compose file: it replaces the one it is merged over."""


class _ComposeLoader(yaml.SafeLoader):
    """YAML as Compose reads it, with its `!override` tag."""


_ComposeLoader.add_constructor("!override", lambda loader, node: _Override(loader.construct_mapping(node, deep=True)))
SENTINEL_VARIANT = yaml.load((REPO / "docker-compose.sentinel.yml").read_text(), Loader=_ComposeLoader)


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge of an override file, for mappings (what these files use): keys of the override win, and a
    mapping tagged `!override` replaces the one under it whole."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and not isinstance(value, _Override) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = copy.deepcopy(dict(value) if isinstance(value, _Override) else value)
    return merged


def test_the_sentinel_variant_validates_and_points_every_boxcut_service_at_the_sentinels() -> None:
    validator = jsonschema.Draft201909Validator(SCHEMA)
    merged = _merged(COMPOSE, SENTINEL_VARIANT)
    assert [e.message for e in validator.iter_errors(SENTINEL_VARIANT)] == []
    assert [e.message for e in validator.iter_errors(merged)] == []
    services = merged["services"]
    assert {"redis", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"} <= set(services)
    assert services["redis-replica"]["command"] == ["boxcut-redis-node", "replicaof redis 6379"]
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):  # a name of its own and a volume for what it learns
        assert services[name]["hostname"] == name and services[name]["volumes"] == [f"{name}-data:/data"]
    for name in (*BOXCUT_SERVICES, "flower"):
        env = {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v)) for k, v in services[name]["environment"].items()}
        settings = load_settings({k: v for k, v in env.items() if not k.endswith("_FILE")}, env_file=None)
        assert settings.sentinel is not None and settings.sentinel.service == "boxcut"
        assert [host for host, _ in settings.sentinel.sentinels] == ["sentinel-1", "sentinel-2", "sentinel-3"]
        assert settings.redis_wait_replicas == 1 and "redis_password" in services[name]["secrets"]
        assert env["BOXCUT_REDIS_SENTINEL_PASSWORD_FILE"] == "/run/secrets/redis_password"
        # Not on `redis`, which may be gone for good after a failover: on the Sentinels, and the archive as in the
        # main file (PostgreSQL up, its schema migrated).
        assert set(services[name]["depends_on"]) == {"sentinel-1", "sentinel-2", "sentinel-3", "postgres", "migrate"}
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert env["BOXCUT_ARCHIVE_URL_FILE"] == "/run/secrets/archive_url"
        assert "archive_url" in services[name]["secrets"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}  # needs no Redis


def test_the_sentinel_variants_scripts_run_a_primary_a_replica_and_a_sentinel_that_all_ask_a_password(
        tmp_path: Path) -> None:
    """deploy/redis-node.sh and deploy/sentinel.sh, as the variant's services run them (here with their folders,
    ports and the primary's address made local): the replica syncs, the Sentinel logs in to the primary and asks
    a password of its own, and a restart keeps the config file the first start wrote."""
    secret = tmp_path / "redis_password"
    secret.write_text("compose-sentinel-password\n")
    primary, replica, sentinel = free_port(), free_port(), free_port()
    processes = []

    def start(script: str, name: str, *args: str, **env: str) -> None:
        (tmp_path / name).mkdir(exist_ok=True)
        with (tmp_path / f"{name}.log").open("wb") as log:
            processes.append(subprocess.Popen(["sh", str(REPO / "deploy" / script), *args], stdout=log,
                                              stderr=subprocess.STDOUT, env={**os.environ, **env,
                                              "REDIS_PASSWORD_FILE": str(secret)}))

    def node(port: int, name: str, *role: str) -> None:
        start("redis-node.sh", name, *role, REDIS_DATA=str(tmp_path / name), REDIS_PORT=str(port))

    try:
        node(primary, "primary")
        node(replica, "replica", f"replicaof 127.0.0.1 {primary}")
        start("sentinel.sh", "sentinel", SENTINEL_DATA=str(tmp_path / "sentinel"), SENTINEL_PORT=str(sentinel),
              SENTINEL_PRIMARY=f"127.0.0.1 {primary}")
        login = {"password": "compose-sentinel-password", "socket_timeout": 2, "decode_responses": True}
        until(lambda: redis.Redis(port=replica, **login).info("replication").get("master_link_status") == "up",
               "the replica synced",
              ignoring=(redis.RedisError,))
        watching = redis.Redis(port=sentinel, **login)
        until(lambda: watching.sentinel_master("boxcut").get("flags") == "master", "the Sentinel logged in",
              ignoring=(redis.RedisError,))
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=sentinel, socket_timeout=2).sentinel_masters()
        written = (tmp_path / "primary" / "redis.conf").read_text()
        assert "requirepass compose-sentinel-password" in written and "appendonly yes" in written
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
    node(primary, "primary")  # a restart reads the file back, as Redis left it, and writes none
    try:
        until(lambda: bool(redis.Redis(port=primary, **login).ping()), "the primary back", ignoring=(redis.RedisError,))
        assert (tmp_path / "primary" / "redis.conf").read_text() == written
    finally:
        processes[-1].terminate()
        processes[-1].wait(timeout=30)

