"""boxsim command line: starts on port 0, writes the port file, answers health, stops on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[3]


def wait_for_port(port_file: Path, process: subprocess.Popen[str], timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_file.exists():
            return int(port_file.read_text())
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise AssertionError("boxsim did not write its port file")


def test_cli_starts_on_port_0_answers_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "boxsim.port"
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps([{"path": "/2.0/users", "status": 503}]))
    command = [
        sys.executable,
        "-m",
        "boxsim",
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--users",
        "5",
        "--faults",
        str(faults),
        "--developer-token",
        "cli-dev-token",
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = wait_for_port(port_file, process)
        health = requests.get(f"http://127.0.0.1:{port}/_boxsim/health", timeout=5)
        users_url = f"http://127.0.0.1:{port}/2.0/users"
        statuses = [
            requests.get(users_url, headers={"Authorization": "Bearer cli-dev-token"}, timeout=5) for _ in range(2)
        ]
        process.send_signal(signal.SIGTERM)
        stdout, _stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert health.status_code == 200 and health.json()["simulated"] is True
    assert [r.status_code for r in statuses] == [503, 200]
    assert statuses[1].json()["total_count"] == 5
    assert process.returncode == 0
    assert stdout.strip() == f"boxsim (SIMULATED Box API) listening on http://127.0.0.1:{port}/2.0"
    assert not port_file.exists()


def test_cli_refuses_an_invalid_fault_file(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps([{"path": "/2.0/users"}]))

    result = subprocess.run(
        [sys.executable, "-m", "boxsim", "--port", "0", "--faults", str(faults)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert "a fault needs a status, latency_ms or drop" in result.stderr
