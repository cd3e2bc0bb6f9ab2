"""The console in a real browser: headless Chromium (Playwright) signs in through a real OpenID Connect provider
(tests/oidc/provider.mjs, panva's oidc-provider), against a real intake, worker, Redis and boxsim.

Each test leaves a full-page screenshot in build/screenshots/ (the `page` fixture) and named ones at its key
moments (`console-*.png`)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from tests.browser import Provider, save_screenshots
from tests.integration.harness import Stack, free_port, running_stack, until
from worker.jobs import evidence_signing
from worker.jobs.model import JobState

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.integration

OPERATOR_TOKEN = "console-operator-" + secrets.token_hex(8)
USERS_ENDPOINT = "/2.0/users/terminate_sessions"


class Console:
    """The stack, its intake with the console on, and the provider it signs in through."""

    def __init__(self, stack: Stack, url: str, provider: Provider, tmp: Path) -> None:
        self.stack, self.url, self.provider, self.tmp = stack, url, provider, tmp

    def sign_in(self, page: Page, login: str, *, start: str = "/console/approvals") -> None:
        """Sign in at the provider as `login`, starting from a console page (which sends the browser to sign-in)."""
        page.goto(self.url + start)
        assert page.url.startswith(f"{self.url}/console/signin"), page.url
        page.click("#oidc-signin")
        page.wait_for_selector("#login")
        assert page.url.startswith(self.provider.issuer), page.url  # at the provider, not the console
        page.fill("#login", login)
        page.click("#sign-in")
        page.wait_for_url(f"{self.url}{start}*")
        assert page.locator(".who .name").inner_text() in {"Alice Approver", "Victor Viewer"}

    def awaiting(self, *logins: str) -> str:
        """A job that waits for approval: it names more users than BOXCUT_APPROVAL_THRESHOLD (1)."""
        job_id = self.stack.submit([{"type": "user", "login": login} for login in logins], reason="console test")
        assert self.stack.wait(job_id).state is JobState.AWAITING_APPROVAL
        return job_id

    def shot(self, page: Page, name: str) -> None:
        save_screenshots(page, name, self.tmp)


@pytest.fixture(scope="module")
def console(redis_url: str, tmp_path_factory: pytest.TempPathFactory,
            oidc_provider: Callable[..., Provider]) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp("console")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    provider = oidc_provider(f"{url}/console/auth/callback")
    key = tmp / "report-signing-key.pem"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    with running_stack(redis_url, tmp, extra_env={"BOXCUT_APPROVAL_THRESHOLD": "1"}) as stack:
        stack.start_intake(port=port, extra_env={
            "BOXCUT_INTAKE_TOKENS": "console-intake-token",
            "BOXCUT_OPERATOR_TOKENS": f"oncall:{OPERATOR_TOKEN}",
            "BOXCUT_CONSOLE": "on",
            "BOXCUT_CONSOLE_SESSION_SECRET": secrets.token_hex(32),
            "BOXCUT_PUBLIC_URL": url,  # plain http on loopback: the one case the cookie is not Secure
            "BOXCUT_OIDC_ISSUER": provider.issuer,
            "BOXCUT_OIDC_CLIENT_ID": provider.client_id,
            "BOXCUT_OIDC_CLIENT_SECRET": provider.client_secret,
            "BOXCUT_CONSOLE_APPROVERS": "boxcut-approvers",
            "BOXCUT_CONSOLE_VIEWERS": "boxcut-viewers",
            "BOXCUT_REPORT_SIGNING_KEY_FILE": str(key),
        })
        yield Console(stack, url, provider, tmp)


def test_alice_signs_in_through_the_provider_and_approves_a_job(console: Console, page: Page) -> None:
    job_id = console.awaiting("alice@example.com", "bob@example.com")
    console.sign_in(page, "alice")
    row = page.locator(f'tr[data-job="{job_id}"]')
    assert row.count() == 1
    assert "exceed BOXCUT_APPROVAL_THRESHOLD (1)" in row.inner_text()
    page.reload()  # the sign-in's message shown once
    console.shot(page, "console-approvals")

    # A forged approval from this very browser, with its session cookie but without the form's CSRF token.
    forged = page.request.post(f"{console.url}/console/jobs/{job_id}/approve", form={"back": "/console/approvals"})
    assert forged.status == 403 and "Nothing was changed" in forged.text()
    assert console.stack.store().state(job_id) is JobState.AWAITING_APPROVAL

    row.locator("button.approve").click()
    page.wait_for_url(f"{console.url}/console/approvals")
    assert f"Approved {job_id}" in page.locator(".flash-ok").inner_text()
    assert console.stack.wait(job_id).state is JobState.SUCCEEDED

    page.goto(f"{console.url}/console/jobs/{job_id}")
    assert page.locator(".page-head .state").inner_text() == "succeeded"
    timeline = page.locator("#audit").inner_text()
    assert "console:Alice Approver" in timeline and "awaiting_approval → resolving" in timeline
    assert page.locator(".actor", has_text="console:Alice Approver").count() >= 1
    assert "Request is successful" in page.locator("main").inner_text()  # Box's answer, as it gave it
    assert page.locator("#report-check").inner_text().startswith("✓ verifies against the configured key")
    with page.expect_download() as download:
        page.click("#report-download")
    saved = console.tmp / "report.json"
    download.value.save_as(saved)
    assert evidence_signing.verify(saved.read_bytes(), trusted=evidence_signing.load_trusted_key(
        (console.tmp / "report-signing-key.pem").read_bytes())).job_id == job_id
    console.shot(page, "console-job-approved")


def test_victor_sees_no_approve_button_and_a_forged_post_is_refused(console: Console, page: Page) -> None:
    job_id = console.awaiting("carol@example.com", "dave@example.com")
    console.sign_in(page, "victor")
    assert page.locator(".who .role").inner_text() == "viewer"
    row = page.locator(f'tr[data-job="{job_id}"]')
    assert row.count() == 1 and "carol@example.com" not in row.inner_text()  # the row lists the job, not logins
    assert page.locator("button.approve").count() == 0 and page.locator("button.cancel").count() == 0
    page.goto(f"{console.url}/console/jobs/{job_id}")
    assert "carol@example.com" in page.locator("main").inner_text()
    assert page.locator("button.approve").count() == 0
    console.shot(page, "console-viewer-job")

    forged = page.request.post(f"{console.url}/console/jobs/{job_id}/approve", form={"back": "/console/approvals"})
    assert forged.status == 403
    token = page.locator('input[name="csrf"]').first.get_attribute("value")
    with_token = page.request.post(f"{console.url}/console/jobs/{job_id}/approve", form={"csrf": token or ""})
    assert with_token.status == 403 and "viewer" in with_token.text()  # a viewer's own form is refused too
    time.sleep(1)
    assert console.stack.store().state(job_id) is JobState.AWAITING_APPROVAL


def test_the_now_page_shows_a_429_pause_as_it_happens(console: Console, page: Page) -> None:
    # Token sign-in, the small installs' way in.
    page.goto(f"{console.url}/console/now")
    page.fill("#token", OPERATOR_TOKEN)
    page.click(".token-form button[type=submit]")
    page.wait_for_url(f"{console.url}/console/now")
    assert page.locator(".who .name").inner_text() == "oncall"
    pause = page.locator('.tile[data-key="pause"]')
    assert pause.locator(".value").inner_text() == "none"

    console.stack.sim.add_faults([{"method": "POST", "path": USERS_ENDPOINT, "times": 1, "status": 429,
                                   "headers": {"retry-after": "20"}}])
    jobs = [console.stack.submit([{"type": "user", "login": login}], reason="429 drill")
            for login in ("erin@example.com", "frank@example.com", "jdoe@example.com")]
    # No reload: the page's own polling (static/console.js) brings the pause in.
    until(lambda: "paused" in pause.locator(".value").inner_text(), "the now page to show the 429 pause",
          timeout=30, interval=0.5)
    assert "alert" in (pause.get_attribute("class") or "")
    assert "Box answered 429" in pause.locator(".detail").inner_text()
    until(lambda: page.locator('.tile[data-key="waiting"] .value').inner_text() != "0",
          "the now page to show targets waiting", timeout=15, interval=0.5)
    assert page.locator('.tile[data-key="workers"] .value').inner_text() == "1"
    assert page.locator("#hour-chart rect").count() == 60
    page.reload()  # the sign-in's message shown once; the pause is still there, drawn by the server this time
    assert "paused" in pause.locator(".value").inner_text()
    console.shot(page, "console-now")
    console.stack.sim.clear_faults()
    for job_id in jobs:  # the pause ends and every job ends
        assert console.stack.wait(job_id, timeout=90).state is JobState.SUCCEEDED


def test_pages_load_nothing_from_elsewhere_and_break_no_policy(console: Console, page: Page) -> None:
    problems: list[str] = []
    console.sign_in(page, "alice", start="/console/now")  # (the provider's own pages are not the console's)
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("response", lambda answer: problems.append(f"{answer.status}: {answer.url}") if answer.status >= 400
            else None)
    # A request cut short by the next navigation (ERR_ABORTED: the favicon, say) is not a failure of the page.
    page.on("requestfailed", lambda request: None if request.failure == "net::ERR_ABORTED"
            else problems.append(f"failed: {request.url}: {request.failure}"))
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    for path in ("/console/now", "/console/approvals", "/console/jobs"):
        page.goto(console.url + path)
        page.wait_for_load_state("networkidle")
    page.goto(f"{console.url}/console/now")
    page.wait_for_timeout(5000)  # one poll of now.json, drawn by the script under the policy
    assert not problems, problems  # a Content-Security-Policy violation is a console error
    outside = [u for u in requested if not u.startswith((console.url, console.provider.issuer, "data:"))]
    assert outside == []
    assert any(u.endswith("/console/now.json") for u in requested)

