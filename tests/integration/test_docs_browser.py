"""`/docs` works offline: headless Chromium, with every address but loopback unreachable, renders the intake's
operations from assets the intake serves itself."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.integration.harness import running_stack

pytestmark = pytest.mark.integration


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("no chromium: run scripts/ensure-chromium (make test does)")
    return found


def _render(url: str, *extra: str) -> str:
    # A proxy nobody answers: any address outside loopback (a CDN) fails; Chromium reaches loopback directly.
    command = [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--proxy-server=http://127.0.0.1:9",
               "--virtual-time-budget=15000", *extra, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=90).stdout


def test_docs_render_the_operations_with_no_network(redis_url: str, tmp_path: Path) -> None:
    with running_stack(redis_url, tmp_path, extra_env={"BOXCUT_INTAKE_TOKENS": "docs-token"}, worker=False) as stack:
        url = stack.start_intake()
        page = requests.get(f"{url}/docs", timeout=10).text
        dom = _render(f"{url}/docs", "--dump-dom")
        redoc = _render(f"{url}/redoc", "--dump-dom")
        _render(f"{url}/docs", "--window-size=1280,1600", f"--screenshot={tmp_path / 'docs.png'}")
    assert not re.findall(r"(?:src|href)=\"https?://", page)  # nothing fetched from elsewhere
    paths = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert {"/v1/alerts", "/v1/alerts/{source}", "/v1/jobs/{job_id}", "/v1/offboarding"} <= paths, dom[-2000:]
    assert re.search(r'<button class="btn authorize', dom), "no Authorize button: the document declares no scheme"
    assert "/v1/alerts" in redoc and "boxcut intake" in redoc
    assert (tmp_path / "docs.png").stat().st_size > 10_000
