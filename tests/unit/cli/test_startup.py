"""`boxcut --help` starts fast: the heavy modules are imported by the commands that use them, not at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HEAVY = ("celery", "kombu", "fastapi", "starlette", "uvicorn", "redis", "requests", "prometheus_client",
         "tasks.app", "worker.jobs.store", "worker.jobs.submit", "worker.intake.app", "worker.box.client")

_PROBE = """
import json, sys
from worker.cli.commands import main
try:
    main(sys.argv[1:], prog_name="boxcut")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after(*args: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=60, check=True)
    return set(json.loads(run.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("args", [("--help",), ("status", "--help"), ("intake", "--help"), ("worker", "--help")])
def test_help_imports_none_of_the_heavy_modules(args: tuple[str, ...]) -> None:
    loaded = _modules_after(*args)
    assert not [m for m in HEAVY if m in loaded or any(name.startswith(m + ".") for name in loaded)]


def test_intake_help_describes_workers() -> None:
    from click.testing import CliRunner

    from worker.cli.commands import main

    run = CliRunner().invoke(main, ["intake", "--help"])
    assert run.exit_code == 0
    assert "--workers" in run.output and "[default: 1" in run.output and "uvicorn" in run.output
