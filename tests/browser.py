"""What the browser tests share: a real OpenID Connect provider (panva's oidc-provider, tests/oidc/provider.mjs, on
Node.js), Debian's Chromium driven by Playwright, screenshots, PKCE, and a catcher of OAuth redirects.

The fixtures that wrap these (tests/integration/conftest.py: `oidc_provider`, `browser`, `page`) fail, never skip,
when a piece is missing: scripts/ensure-node-deps installs the provider's packages, scripts/ensure-chromium the
browser (`make test` and .ci/run run both). Playwright never downloads a browser here (`playwright install` cannot
reach its host): it launches the system's chromium by its path.

Signing in at the provider with Playwright (its own page, no password, no consent screen):

    page.goto(authorization_url)          # or whatever sends the browser there (the console's sign-in link)
    page.fill("#login", "alice")          # or "victor"; an unknown name shows `#error` ("unknown user: NAME")
    page.click("#sign-in")                # back at the client's redirect URI with ?code=...&state=...&iss=...

`#cancel` instead aborts: the client gets `error=access_denied`. Accounts: alice ("Alice Approver",
groups ["boxcut-approvers"]) and victor ("Victor Viewer", groups ["boxcut-viewers"]); the ID token carries name,
email and groups.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright

ROOT = Path(__file__).resolve().parents[1]
OIDC_DIR = ROOT / "tests" / "oidc"
PROVIDER_SCRIPT = OIDC_DIR / "provider.mjs"
SCREENSHOTS = ROOT / "build" / "screenshots"

DEFAULT_CLIENT_ID = "boxcut-console"
DEFAULT_CLIENT_SECRET = "boxcut-console-secret"

# Debian's chromium, headless, quiet: no first-run, sync, component updates or background requests; and a proxy
# that nobody answers, so nothing but loopback (which Chromium never sends through a proxy) is reachable.
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--proxy-server=http://127.0.0.1:9",
)


class MissingTool(RuntimeError):
    """A piece the browser tests need is not installed; the message says which script installs it."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- the OpenID Connect provider ---------------------------------------------------------------------------------


@dataclass
class Provider:
    """A running tests/oidc/provider.mjs: its issuer (`http://127.0.0.1:PORT`), its one client, its process."""

    issuer: str
    client_id: str
    client_secret: str
    process: subprocess.Popen[str]
    redirect_uris: tuple[str, ...] = ()
    log: Path | None = None  # the provider's stderr (a temporary file, removed by stop())
    _output: list[str] = field(default_factory=list, repr=False)

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def logs(self) -> str:
        """What the provider printed so far (stdout, then stderr)."""
        err = self.log.read_text(errors="replace") if self.log and self.log.exists() else ""
        return "".join(self._output) + err

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.log is not None:
            self.log.unlink(missing_ok=True)


def check_node_deps() -> str:
    """The path of `node`, once tests/oidc's packages are installed; MissingTool otherwise."""
    node = shutil.which("node")
    if node is None:
        raise MissingTool("no node: the tests' OpenID Connect provider runs on Node.js; install Node.js 20 or later, "
                          "then run scripts/ensure-node-deps (make test does)")
    if not (OIDC_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        raise MissingTool(f"{OIDC_DIR / 'node_modules'} has no oidc-provider: run scripts/ensure-node-deps "
                          "(make test does)")
    return node


def start_oidc_provider(
    redirect_uri: str | Sequence[str],
    *,
    client_id: str = DEFAULT_CLIENT_ID,
    client_secret: str = DEFAULT_CLIENT_SECRET,
    post_logout_redirect_uris: Sequence[str] = (),
    token_auth_method: str = "client_secret_basic",
    port: int = 0,
    timeout: float = 30.0,
) -> Provider:
    """Starts tests/oidc/provider.mjs with one confidential client whose redirect URIs are `redirect_uri` (one or
    several) and waits for its `ready ISSUER` line. Port 0 (the default) lets the provider pick a free port itself.
    Stop it with `.stop()` (the `oidc_provider` fixture does)."""
    node = check_node_deps()
    uris = (redirect_uri,) if isinstance(redirect_uri, str) else tuple(redirect_uri)
    env = {
        **os.environ,
        "OIDC_CLIENT_ID": client_id,
        "OIDC_CLIENT_SECRET": client_secret,
        "OIDC_REDIRECT_URIS": " ".join(uris),
        "OIDC_POST_LOGOUT_REDIRECT_URIS": " ".join(post_logout_redirect_uris),
        "OIDC_TOKEN_AUTH_METHOD": token_auth_method,
        "OIDC_PORT": str(port),
    }
    log_fd, log_name = tempfile.mkstemp(prefix="oidc-provider-", suffix=".log")
    with os.fdopen(log_fd, "w") as log:
        process = subprocess.Popen([node, str(PROVIDER_SCRIPT)], cwd=OIDC_DIR, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    output: list[str] = []
    ready = threading.Event()
    issuer: list[str] = []

    def read() -> None:  # drains stdout for the process's whole life, so it never blocks on a full pipe
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            found = re.match(r"ready (http://\S+)", line)
            if found and not issuer:
                issuer.append(found.group(1))
                ready.set()
        ready.set()  # the process ended

    threading.Thread(target=read, name="oidc-provider-stdout", daemon=True).start()
    provider = Provider(issuer="", client_id=client_id, client_secret=client_secret, process=process,
                        redirect_uris=uris, log=Path(log_name), _output=output)
    if not ready.wait(timeout) or not issuer:
        provider.stop()
        raise RuntimeError(f"the OpenID Connect provider did not start within {timeout:.0f} s "
                           f"(exit code {process.poll()}):\n{provider.logs()[-3000:]}")
    provider.issuer = issuer[0]
    return provider


@contextlib.contextmanager
def oidc_provider(redirect_uri: str | Sequence[str], **options: Any) -> Iterator[Provider]:
    """start_oidc_provider(...) as a context manager: stopped at the end."""
    provider = start_oidc_provider(redirect_uri, **options)
    try:
        yield provider
    finally:
        provider.stop()


# --- PKCE and a redirect catcher ---------------------------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    """A fresh PKCE code_verifier and its S256 code_challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class Redirects:
    """A tiny HTTP server on loopback standing in for a client's redirect URI: each request's query is kept."""

    url: str  # e.g. http://127.0.0.1:PORT/callback
    hits: list[dict[str, str]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def last(self, timeout: float = 10.0) -> dict[str, str]:
        if not self.arrived.wait(timeout):
            raise AssertionError(f"nothing came to {self.url} within {timeout:.0f} s")
        return self.hits[-1]


@contextlib.contextmanager
def catch_redirects(path: str = "/callback") -> Iterator[Redirects]:
    """Serves `http://127.0.0.1:<free port><path>` in a thread, answering every GET with a small page (title
    "callback", `#query` listing the parameters' names) and recording its query parameters."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
            if parts.path == path:
                redirects.hits.append(query)
                redirects.arrived.set()
            body = (f"<!DOCTYPE html><html><head><title>callback</title></head><body><h1>callback</h1>"
                    f"<pre id=\"query\">{sorted(query)}</pre></body></html>").encode()
            self.send_response(200 if parts.path == path else 404)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    redirects = Redirects(url=f"http://127.0.0.1:{server.server_address[1]}{path}")
    thread = threading.Thread(target=server.serve_forever, name="redirect-catcher", daemon=True)
    thread.start()
    try:
        yield redirects
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- Chromium through Playwright -----------------------------------------------------------------------------------


def chromium_path() -> str:
    found = shutil.which("chromium")
    if found is None:
        raise MissingTool("no chromium: run scripts/ensure-chromium (make test does); Playwright launches the "
                          "system's chromium, never a browser of its own")
    return found


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's chromium (by its path), headless, through Playwright."""
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=list(CHROMIUM_ARGS))


def screenshot_name(name: str) -> str:
    """A file-safe form of a test's name (parametrized ids included)."""
    return re.sub(r"[^\w.-]+", "_", name).strip("_") or "screenshot"


def save_screenshots(page: Page, name: str, tmp_path: Path | None = None) -> list[Path]:
    """A full-page screenshot to `tmp_path/<name>.png` (when given) and to `build/screenshots/<name>.png`."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    file = f"{screenshot_name(name)}.png"
    targets = [*([tmp_path / file] if tmp_path is not None else []), SCREENSHOTS / file]
    image = page.screenshot(full_page=True)
    for target in targets:
        target.write_bytes(image)
    return targets
