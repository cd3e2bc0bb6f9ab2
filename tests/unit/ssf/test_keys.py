"""A transmitter's keys from its jwks_uri: fetched over HTTP with limits, cached, fetched again for a rotated-in
kid at most once a minute, and kept when the transmitter is briefly unreachable."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from config.ssf_transmitters import Transmitter
from tests.ssf_tokens import rsa_key, set_claims, sign
from worker.ssf.keys import KeysUnavailable, TransmitterKeys, fetch_jwks
from worker.ssf.verifier import SetRefused, SetVerifier

OLD, NEW = rsa_key("old"), rsa_key("new")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Jwks:
    """A fake fetch: the JWKS it serves now, or an error; and how often it was asked."""

    def __init__(self, *keys: Any) -> None:
        self.document: object = {"keys": [k.jwk() for k in keys]}
        self.fetches = 0
        self.down = False

    def __call__(self, uri: str) -> object:
        self.fetches += 1
        if self.down:
            raise ConnectionError("unreachable")
        return self.document


def _transmitter() -> Transmitter:
    return Transmitter(issuer="https://idp.example.test", audiences=("aud",), algorithms=("RS256",),
                       jwks_uri="https://idp.example.test/jwks")


def test_keys_are_cached_and_a_rotated_in_kid_is_fetched_at_most_once_a_minute() -> None:
    jwks, clock = Jwks(OLD), Clock()
    keys = TransmitterKeys(cache_seconds=300, refetch_seconds=60, fetch=jwks, clock=clock)
    transmitter = _transmitter()
    assert keys.key(transmitter, "old") is not None and keys.key(transmitter, "old") is not None
    assert jwks.fetches == 1
    assert keys.key(transmitter, "new") is None and jwks.fetches == 1  # fetched just now: not again
    jwks.document = {"keys": [OLD.jwk(), NEW.jwk()]}
    clock.now += 61
    assert keys.key(transmitter, "new") is not None and jwks.fetches == 2
    for _ in range(50):
        keys.key(transmitter, "forged-kid")
    assert jwks.fetches == 2  # a flood of unknown kids is not a flood of fetches
    clock.now += 301
    keys.key(transmitter, "old")
    assert jwks.fetches == 3  # the cache time passed


def test_an_unreachable_jwks_keeps_the_keys_it_had_and_without_any_refuses_as_invalid_key() -> None:
    jwks, clock = Jwks(OLD), Clock()
    keys = TransmitterKeys(cache_seconds=300, fetch=jwks, clock=clock)
    transmitter = _transmitter()
    assert keys.key(transmitter, "old") is not None
    jwks.down = True
    clock.now += 301
    assert keys.key(transmitter, "old") is not None
    empty = TransmitterKeys(fetch=jwks, clock=clock)
    with pytest.raises(KeysUnavailable):
        empty.key(transmitter, "old")
    verifier = SetVerifier((_transmitter(),), empty)
    with pytest.raises(SetRefused) as refused:
        verifier.verify(sign(set_claims(audience="aud"), OLD, kid="old"))
    assert refused.value.err == "invalid_key"


def test_a_fetched_jwks_is_checked_like_a_configured_one() -> None:
    jwks = Jwks()
    jwks.document = {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "old"}]}  # an HMAC key: never
    with pytest.raises(KeysUnavailable):
        TransmitterKeys(fetch=jwks).key(_transmitter(), "old")


@pytest.fixture
def server() -> Iterator[tuple[str, list[bytes]]]:
    bodies = [json.dumps({"keys": [OLD.jwk()]}).encode()]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/trickle":  # a byte at a time, each inside the read timeout
                self.send_response(200)
                self.end_headers()
                for _ in range(100):  # 5 s in all, and the read gives up after 0.5 s
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.05)
                return
            body = bodies[0]
            self.send_response(302 if self.path == "/moved" else 200)
            if self.path == "/moved":
                self.send_header("Location", "/jwks")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", bodies
    httpd.shutdown()


def test_fetch_reads_a_jwks_over_http_refuses_a_redirect_and_a_huge_body(server: tuple[str, list[bytes]]) -> None:
    url, bodies = server
    assert fetch_jwks(url + "/jwks") == {"keys": [OLD.jwk()]}
    with pytest.raises(Exception, match="302"):
        fetch_jwks(url + "/moved")
    bodies[0] = b"{" + b" " * (600 * 1024) + b"}"
    with pytest.raises(ValueError, match="larger than"):
        fetch_jwks(url + "/jwks")


def test_doctor_names_each_transmitter_and_whether_its_keys_can_be_fetched(
        server: tuple[str, list[bytes]], tmp_path: Any) -> None:
    from config import load_settings
    from tests.ssf_tokens import Transmitter as FileTransmitter
    from worker.cli.doctor import _check_shared_signals

    url, _ = server
    reachable = FileTransmitter([OLD], issuer="https://up.example.test")
    reachable.extra = {"jwks": None, "jwks_uri": url + "/jwks"}
    unreachable = FileTransmitter([OLD], issuer="https://down.example.test")
    unreachable.extra = {"jwks": None, "jwks_uri": url + "/moved"}
    inline = FileTransmitter([OLD, NEW], issuer="https://inline.example.test")
    document = {"transmitters": [{k: v for k, v in t.entry().items() if v is not None}
                                 for t in (reachable, unreachable, inline)]}
    path = tmp_path / "transmitters.json"
    path.write_text(json.dumps(document))
    lines: list[str] = []
    _check_shared_signals(load_settings({"BOXCUT_SSF_TRANSMITTERS": str(path)}, env_file=None), lines.append)
    assert lines[0] == f"ok   shared signals: https://up.example.test: 1 key(s) from {url}/jwks, RS256"
    assert lines[1].startswith("warn shared signals: https://down.example.test: cannot fetch its JWKS")
    assert "answered 302" in lines[1] and lines[1].endswith("its SETs are refused invalid_key")
    assert lines[2] == "ok   shared signals: https://inline.example.test: 2 key(s) configured, RS256"


def test_a_failed_first_fetch_is_remembered_so_unknown_kids_cannot_make_a_fetch_each() -> None:
    jwks, clock = Jwks(OLD), Clock()
    jwks.down = True
    keys = TransmitterKeys(refetch_seconds=60, fetch=jwks, clock=clock)
    for kid in ("a", "b", "c", "old"):
        with pytest.raises(KeysUnavailable):
            keys.key(_transmitter(), kid)
    assert jwks.fetches == 1
    jwks.down = False
    clock.now += 61
    assert keys.key(_transmitter(), "old") is not None and jwks.fetches == 2


def test_keys_are_not_trusted_forever_while_their_endpoint_fails() -> None:
    jwks, clock = Jwks(OLD), Clock()
    keys = TransmitterKeys(cache_seconds=300, max_stale_seconds=3600, fetch=jwks, clock=clock)
    assert keys.key(_transmitter(), "old") is not None
    jwks.down = True
    clock.now += 3000
    assert keys.key(_transmitter(), "old") is not None  # an outage is ridden out
    clock.now += 700
    with pytest.raises(KeysUnavailable, match="no longer trusted"):
        keys.key(_transmitter(), "old")


def test_one_transmitters_slow_endpoint_does_not_hold_up_anothers() -> None:
    slow_started, release = threading.Event(), threading.Event()

    def fetch(uri: str) -> object:
        if "slow" in uri:
            slow_started.set()
            release.wait(10)
        return {"keys": [OLD.jwk()]}

    keys = TransmitterKeys(fetch=fetch)
    slow = Transmitter(issuer="https://slow.example.test", audiences=("aud",), algorithms=("RS256",),
                       jwks_uri="https://slow.example.test/jwks")
    threading.Thread(target=keys.key, args=(slow, "old"), daemon=True).start()
    assert slow_started.wait(5)
    try:
        assert keys.key(_transmitter(), "old") is not None  # not behind the slow fetch's lock
    finally:
        release.set()


def test_fetch_gives_up_on_a_server_that_trickles_its_bytes(server: tuple[str, list[bytes]],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from config import defaults

    url, _ = server
    monkeypatch.setattr(defaults, "SSF_JWKS_DEADLINE_SECONDS", 0.5)
    started = time.monotonic()
    with pytest.raises(ValueError, match="took longer than"):
        fetch_jwks(url + "/trickle")
    assert time.monotonic() - started < 3
