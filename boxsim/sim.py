"""BoxSim: a simulated Box API served over local HTTP, with a Python handle for tests and tools."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_public_key

from boxsim.config import SimConfig
from boxsim.directory import Directory, generate
from boxsim.faults import FaultRule
from boxsim.ratelimit import RateLimiter
from boxsim.server import SimHTTPServer
from boxsim.state import SimState
from boxsim.tokens import TokenStore

POLL_INTERVAL_SECONDS = 0.05  # how quickly stop() is noticed by the serving loop


def build_directory(config: SimConfig) -> Directory:
    """Return the directory a config asks for: a seed (or the default one) plus any generated users."""
    if config.seed_file is not None:
        directory = Directory.from_seed_file(config.seed_file)
    elif config.generate_users or config.generate_groups:
        directory = Directory()
    else:
        directory = Directory.default()
    return generate(config.generate_users, config.generate_groups, into=directory)


def build_state(config: SimConfig) -> SimState:
    """Return fresh simulator state for a config."""
    tokens = TokenStore(config.token_ttl_seconds)
    if config.developer_token:
        tokens.add_static(config.developer_token)
    public_key = None
    if config.jwt_public_key_pem:
        public_key = load_pem_public_key(config.jwt_public_key_pem.encode("utf-8"))
    return SimState(
        config=config,
        directory=build_directory(config),
        tokens=tokens,
        limiter=RateLimiter(config.rate_limit_per_minute),
        jwt_public_key=public_key,
    )


class BoxSim:
    """A running (or startable) simulated Box API; use start()/stop() or `with BoxSim(config) as sim:`."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config if config is not None else SimConfig()
        self._state = build_state(self.config)
        self._server: SimHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> BoxSim:
        """Bind the port and serve in a background thread; return self."""
        if self._server is not None:
            raise RuntimeError("BoxSim is already started")
        server = SimHTTPServer((self.config.host, self.config.port), self._state)
        host = "127.0.0.1" if self.config.host in ("", "0.0.0.0") else self.config.host
        self._state.origin = f"http://{host}:{server.server_address[1]}"
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL_SECONDS}, name="boxsim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and release the port; safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> BoxSim:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _require_started(self) -> SimState:
        """Return the state, insisting that the server is bound (URLs need the port)."""
        if self._server is None:
            raise RuntimeError("BoxSim is not started; call start() first")
        return self._state

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return int(self._require_started().origin.rsplit(":", 1)[1])

    @property
    def base_url(self) -> str:
        """The API base URL, e.g. http://127.0.0.1:PORT/2.0."""
        return self._require_started().base_url

    @property
    def oauth_url(self) -> str:
        """The token endpoint URL, e.g. http://127.0.0.1:PORT/oauth2/token."""
        return self._require_started().token_url

    @property
    def admin_url(self) -> str:
        """The admin endpoints' base URL, e.g. http://127.0.0.1:PORT/_boxsim."""
        return f"{self._require_started().origin}/_boxsim"

    @property
    def directory(self) -> Directory:
        """The served directory; add users and groups to it while running."""
        return self._state.directory

    def requests(self, path: str | None = None, method: str | None = None) -> list[dict[str, Any]]:
        """Return the request log (copies), optionally only one path and/or method."""
        return self._state.log.entries(path=path, method=method)

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._state.log.clear()

    def add_faults(self, rules: Iterable[FaultRule | Mapping[str, Any]]) -> None:
        """Append fault rules (FaultRule objects or their JSON form) to the queue."""
        self._state.faults.add(rules)

    def clear_faults(self) -> None:
        """Drop every pending fault rule."""
        self._state.faults.clear()

    def pending_faults(self) -> list[dict[str, Any]]:
        """Return the fault rules not yet used up."""
        return self._state.faults.pending()

    def expire_tokens(self) -> int:
        """Expire every issued token (and the developer token) now; return how many were valid."""
        return self._state.tokens.expire_all()

    def issue_token(self) -> str:
        """Issue an access token directly, skipping the token endpoint (for tests that need one)."""
        return self._state.tokens.issue()

    def set_rate_limit(self, per_minute: int) -> None:
        """Change the per-token requests-per-minute limit (0 = off); counting starts afresh."""
        self._state.limiter.set_limit(per_minute)

    def terminated_user_ids(self) -> dict[str, int]:
        """Return how often each user id's sessions were accepted for termination (ids and logins)."""
        return self._state.terminations.user_ids()

    def terminated_user_logins(self) -> dict[str, int]:
        """Return how often each login was named in an accepted user termination."""
        return self._state.terminations.user_logins()

    def terminated_group_ids(self) -> dict[str, int]:
        """Return how often each group id's sessions were accepted for termination."""
        return self._state.terminations.group_ids()

    def add_events(self, events: list[dict[str, Any]], *, duplicate: bool = False) -> list[dict[str, Any]]:
        """Log enterprise events (full ones, or shorthands: see boxsim.events.build_event); returns them as logged."""
        state = self._require_started()
        return state.events.add(events, directory=state.directory, duplicate=duplicate)

    def clear_terminations(self) -> None:
        """Forget every recorded termination."""
        self._state.terminations.clear()
