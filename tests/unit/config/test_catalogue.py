"""The catalogue of settings (config/catalogue.py) agrees with what boxcut reads, with the Settings object, with the
generated reference, and with every variable the repository sets; an unknown BOXCUT_* name stops the start."""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from config import catalogue, reference
from config.settings import Settings, SettingsError, _Reader, load_settings

REPO = Path(__file__).resolve().parents[3]
NAME = re.compile(r"(?:BOXCUT|BOX)_[A-Z0-9_]*[A-Z0-9]")

# Read by the reader but no setting of boxcut's: where the user keeps data (the embedded archive's directory).
USER_ENVIRONMENT = {"XDG_DATA_HOME", "HOME"}


class _Recording(Mapping[str, str]):
    """An environment that records every name read from it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env, self.read = env, set[str]()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self.env[name]

    def get(self, name: str, default: object = None) -> object:  # type: ignore[override]
        self.read.add(name)
        return self.env.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)


def _read_names() -> set[str]:
    env = _Recording({})
    _Reader(env).settings()
    return env.read


def test_every_settings_field_is_filled_by_a_declaration() -> None:
    fields = {field.name for field in dataclasses.fields(Settings)}
    declared = {name for setting in catalogue.SETTINGS for name in setting.fields}
    assert sorted(fields - declared - catalogue.UNDECLARED_FIELDS) == []
    assert sorted(declared - fields) == []  # a declaration naming a field Settings lacks
    assert sorted(catalogue.UNDECLARED_FIELDS & declared) == []


def test_a_generic_declarations_default_is_the_fields_default() -> None:
    fields = {field.name: field for field in dataclasses.fields(Settings)}
    differ = []
    for setting in catalogue.SETTINGS:
        if not setting.generic:
            continue
        field = fields[setting.fields[0]]
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        if setting.kind not in (catalogue.Kind.SECRET, catalogue.Kind.CREDENTIALS) and default != setting.default:
            differ.append((setting.name, setting.default, default))
    assert differ == []


def test_with_nothing_set_the_settings_are_the_declared_defaults() -> None:
    settings = load_settings({}, env_file=None)
    assert [(s.name, getattr(settings, s.fields[0])) for s in catalogue.SETTINGS
            if s.generic and s.kind is not catalogue.Kind.CREDENTIALS
            and getattr(settings, s.fields[0]) != s.default] == []


def test_every_name_the_reader_reads_is_declared_and_every_declared_name_is_read() -> None:
    read = _read_names()
    assert sorted(read - catalogue.KNOWN_NAMES - USER_ENVIRONMENT) == []
    boxcuts = {name for s in catalogue.SETTINGS if s.kind is not catalogue.Kind.COMPOSE for name in s.names}
    assert sorted(boxcuts - read) == []


def test_every_variable_name_in_the_config_sources_is_declared() -> None:
    named = set()
    for source in (REPO / "config").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.fullmatch(node.value):
                named.add(node.value)
    assert len(named) > 50
    assert sorted(named - catalogue.KNOWN_NAMES) == []


# Places that set variables for boxcut: the tests, benchmarks, scripts, the dev stack, CI and the compose files.
SETTERS = ("tests", "bench", "scripts", "worker/cli/dev_stack.py", ".ci", "deploy", "Dockerfile",
           "docker-compose.yml", "docker-compose.sentinel.yml")
# BOXCUT_-named things that are no variables: Python constants of the compose test.
NOT_VARIABLES = {"BOXCUT_SERVICES", "BOXCUT_COMMANDS"}


def _files(place: Path) -> Iterator[Path]:
    if place.is_file():
        yield place
    elif place.is_dir():
        yield from (path for path in sorted(place.rglob("*")) if path.is_file() and "__pycache__" not in path.parts)


def test_every_boxcut_name_the_repository_sets_is_a_setting() -> None:
    unknown: dict[str, str] = {}
    for place in SETTERS:
        for path in _files(REPO / place):
            if path.name == Path(__file__).name:
                continue  # this file names misspellings on purpose
            text = path.read_text(encoding="utf-8", errors="replace")
            for name in set(re.findall(r"\bBOXCUT_[A-Z0-9_]*[A-Z0-9]\b(?!_)", text)):
                if name not in NOT_VARIABLES and catalogue.unknown_setting({name: ""}) is not None:
                    unknown[name] = str(path.relative_to(REPO))
            for name in set(re.findall(r"\bBOX_[A-Z0-9_]*[A-Z0-9]\b(?!_)", text)):
                if name not in catalogue.KNOWN_NAMES:
                    unknown[name] = str(path.relative_to(REPO))
    assert unknown == {}


@pytest.mark.parametrize("relative", sorted(reference.outputs(), key=str))
def test_the_generated_reference_is_up_to_date(relative: Path) -> None:
    assert (REPO / relative).read_text(encoding="utf-8") == reference.outputs()[relative], (
        f"run `{reference.COMMAND}`")


def test_the_check_fails_on_a_stale_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert reference.main(["--write", "--root", str(tmp_path)]) == 0
    assert reference.main(["--check", "--root", str(tmp_path)]) == 0
    page = tmp_path / "docs" / "configuration.md"
    page.write_text(page.read_text().replace("BOXCUT_BATCH_SIZE", "BOXCUT_BATCHSIZE", 1))
    assert reference.main(["--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("docs/configuration.md is out of date") and "BATCH" in err[0]


def test_the_reference_lists_every_setting() -> None:
    page, example = reference.page(), reference.env_example()
    for setting in catalogue.SETTINGS:
        assert f"| `{setting.name}` |" in page
        assert re.search(rf"^# {setting.name}=", example, re.M), setting.name
    assert page.splitlines()[0].startswith(f"<!-- Generated by `{reference.COMMAND}`")


# -- unknown names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "nearest"), [
    ("BOXCUT_BATCHSIZE", "BOXCUT_BATCH_SIZE"),
    ("BOXCUT_PROTECTED_USER", "BOXCUT_PROTECTED_USERS"),
    ("BOXCUT_REDIS_PASSWORD_FIEL", "BOXCUT_REDIS_PASSWORD_FILE"),
    ("BOXCUT_IDENTITY_PATHS_SPLUNKK", "BOXCUT_IDENTITY_PATHS_SPLUNK"),
])
def test_an_unknown_name_stops_the_start_naming_the_nearest(name: str, nearest: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({name: "5"}, env_file=None)
    assert str(raised.value) == f"{name}: unknown setting; did you mean {nearest}?"
    assert raised.value.variable == name


def test_an_unknown_name_in_the_env_file_stops_the_start_too(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("BOXCUT_DRYRUN=true\n")
    with pytest.raises(SettingsError, match=r"^BOXCUT_DRYRUN: unknown setting; did you mean BOXCUT_DRY_RUN\?$"):
        load_settings({}, env_file=env_file)


def test_a_name_like_none_says_where_the_settings_are_listed() -> None:
    with pytest.raises(SettingsError, match=r"^BOXCUT_XYZZY: unknown setting; docs/configuration\.md lists"):
        load_settings({"BOXCUT_XYZZY": ""}, env_file=None)


def test_only_a_secrets_file_form_is_known() -> None:
    assert load_settings({"BOXCUT_SLACK_SIGNING_SECRET_FILE": ""}, env_file=None).slack_signing_secret is None
    with pytest.raises(SettingsError, match=r"^BOXCUT_BATCH_SIZE_FILE: unknown setting"):
        load_settings({"BOXCUT_BATCH_SIZE_FILE": "/x"}, env_file=None)


def test_test_names_compose_names_and_other_tools_names_pass() -> None:
    settings = load_settings({"BOXCUT_TEST_REDIS_URL": "redis://x", "BOXCUT_TEST_ANYTHING": "1",
                              "BOXCUT_INTAKE_PORT": "8001", "BOXCUT_IMAGE_TAG": "v1", "BOXCUT_FLOWER_PORT": "5556",
                              "REDIS_MAXMEMORY": "2gb", "TOKEN": "t", "OPERATOR_TOKEN": "o",
                              "INTAKE_URL": "http://127.0.0.1:8000", "BOXSIM_URL": "http://127.0.0.1:8765",
                              "BOX_SOMETHING_ELSE": "x"}, env_file=None)
    assert settings.batch_size == 100


# What Kubernetes sets in every pod for a Service named boxcut or boxcut-intake (service links, on by default), and
# Docker's legacy links for a container named boxcut: never settings, never refused.
PLATFORM = {
    "BOXCUT_SERVICE_HOST": "10.0.0.7", "BOXCUT_SERVICE_PORT": "8000", "BOXCUT_SERVICE_PORT_HTTP": "8000",
    "BOXCUT_PORT": "tcp://10.0.0.7:8000", "BOXCUT_PORT_8000_TCP": "tcp://10.0.0.7:8000",
    "BOXCUT_PORT_8000_TCP_ADDR": "10.0.0.7", "BOXCUT_PORT_8000_TCP_PORT": "8000", "BOXCUT_PORT_8000_TCP_PROTO": "tcp",
    "BOXCUT_INTAKE_SERVICE_HOST": "10.0.0.8", "BOXCUT_INTAKE_PORT_8000_TCP": "tcp://10.0.0.8:8000",
    "BOXCUT_REDIS_PORT_6379_UDP_ADDR": "10.0.0.9", "BOXCUT_NAME": "/web/boxcut",
    "BOXCUT_ENV_BOXCUT_REDIS_URL": "redis://redis:6379/0",
}


def test_what_kubernetes_and_docker_set_beside_a_service_named_boxcut_is_no_unknown_setting() -> None:
    assert load_settings(PLATFORM, env_file=None).batch_size == load_settings({}, env_file=None).batch_size


@pytest.mark.parametrize(("name", "value"), [("BOXCUT_PORT", "8000"), ("BOXCUT_NAME", "boxcut"),
                                             ("BOXCUT_SERVICE_HOSTS", "10.0.0.7")])
def test_a_platform_like_name_with_another_value_is_still_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{name}: unknown setting"):
        load_settings({name: value}, env_file=None)
