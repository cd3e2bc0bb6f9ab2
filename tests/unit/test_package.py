"""The package as shipped: its licence, its lock and its version."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from click.testing import CliRunner
from packaging.requirements import Requirement

from worker.cli import main

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_licence_is_apache_2_in_the_metadata_and_in_full_in_the_repo() -> None:
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_the_lock_pins_every_runtime_dependency_at_an_exact_version_that_satisfies_pyproject() -> None:
    lock = (REPO / "requirements.lock").read_text()
    pinned = {_normal(m.group(1)): m.group(2) for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", lock, re.M)}
    for spec in PROJECT["dependencies"]:
        requirement = Requirement(spec)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = _normal(requirement.name)
        assert name in pinned, f"{name} is not in requirements.lock: run make lock"
        assert requirement.specifier.contains(pinned[name]), f"{name}=={pinned[name]} does not satisfy {spec}"


def test_version_prints_the_packages_version() -> None:
    answer = CliRunner().invoke(main, ["--version"])
    assert answer.exit_code == 0 and answer.output.strip() == f"boxcut {PROJECT['version']}"
