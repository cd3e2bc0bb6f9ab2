"""A transmitter's JWKS endpoint that answers slowly, or not at all, cannot hold the receiver: the whole fetch
(connect, headers, body) ends by its deadline, over real HTTP, and a SET arriving while a fetch runs is answered
at once, from the keys still trusted or with `invalid_key`, never parked behind that fetch."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config import defaults
from config.ssf_transmitters import Transmitter
from tests.ssf_tokens import Transmitter as FileTransmitter
from tests.ssf_tokens import TricklingJwks, rsa_key, set_claims, sign
from tests.unit.intake_fixtures import make_intake
from worker.ssf.keys import KeysUnavailable, TransmitterKeys, fetch_jwks

KEY = rsa_key("rsa-1")


@pytest.fixture
def trickling() -> Iterator[TricklingJwks]:
    with TricklingJwks(seconds=8) as endpoint:  # far past the deadline below
        yield endpoint


@pytest.fixture
def deadline(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(defaults, "SSF_JWKS_DEADLINE_SECONDS", 1.5)
    return 1.5


def test_the_whole_fetch_ends_by_its_deadline_even_while_headers_trickle_in(trickling: TricklingJwks,
                                                                              deadline: float) -> None:
    started = time.monotonic()
    with pytest.raises(ValueError, match="took longer than"):
        fetch_jwks(trickling.url)
    assert time.monotonic() - started < deadline + 0.5


def test_the_deadline_covers_a_connect_that_is_never_answered(deadline: float) -> None:
    with socket.socket() as listener:  # a backlog of 0, filled by a first connection nobody accepts
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler = [_connect_without_waiting(port) for _ in range(3)]
        started = time.monotonic()
        with pytest.raises(ValueError, match="took longer than"):  # the deadline, before the connect timeout
            fetch_jwks(f"http://127.0.0.1:{port}/jwks")
        assert time.monotonic() - started < deadline + 0.5
        for connection in filler:
            connection.close()


def _connect_without_waiting(port: int) -> socket.socket:
    connection = socket.socket()
    connection.setblocking(False)
    connection.connect_ex(("127.0.0.1", port))
    return connection


def push(intake: Any, token: str) -> Any:
    return intake.client.post("/v1/ssf/events", content=token.encode(),
                              headers={"Content-Type": "application/secevent+jwt"})


def test_a_set_arriving_during_a_slow_fetch_is_answered_at_once_and_the_fetching_one_by_the_deadline(
        tmp_path: Path, trickling: TricklingJwks, deadline: float) -> None:
    transmitter = FileTransmitter([KEY], extra={"jwks": None, "jwks_uri": trickling.url})
    path = tmp_path / "transmitters.json"
    path.write_text(json.dumps({"transmitters": [{k: v for k, v in transmitter.entry().items() if v is not None}]}))
    intake = make_intake({"BOXCUT_SSF_TRANSMITTERS": str(path)})
    first: dict[str, Any] = {}

    def first_set() -> None:
        started = time.monotonic()
        first["answer"] = push(intake, sign(set_claims(), KEY))
        first["seconds"] = time.monotonic() - started

    fetching = threading.Thread(target=first_set, daemon=True)
    fetching.start()
    assert trickling.connected.wait(5)  # the first SET's fetch is under way, and trickling
    started = time.monotonic()
    second = push(intake, sign(set_claims(), KEY))
    assert time.monotonic() - started < 0.5, "the second SET waited for the first one's fetch"
    assert second.status_code == 400 and second.json()["err"] == "invalid_key", second.text
    fetching.join(deadline + 3)
    assert not fetching.is_alive() and first["seconds"] < deadline + 0.5
    assert first["answer"].status_code == 400 and first["answer"].json()["err"] == "invalid_key"
    summaries, _ = intake.store.list_jobs()
    assert summaries == []


def test_during_a_refetch_the_keys_still_trusted_answer_at_once() -> None:
    fetching, release = threading.Event(), threading.Event()
    calls = 0

    def fetch(uri: str) -> object:
        nonlocal calls
        calls += 1
        if calls > 1:  # the refetch: held until the test lets it go
            fetching.set()
            release.wait(10)
        return {"keys": [KEY.jwk()]}

    now = [1000.0]
    keys = TransmitterKeys(cache_seconds=300, fetch=fetch, clock=lambda: now[0])
    transmitter = Transmitter(issuer="https://idp.example.test", audiences=("aud",), algorithms=("RS256",),
                              jwks_uri="https://idp.example.test/jwks")
    assert keys.key(transmitter, "rsa-1") is not None
    now[0] += 301  # the cache is due: the next SET fetches again
    threading.Thread(target=keys.key, args=(transmitter, "rsa-1"), daemon=True).start()
    try:
        assert fetching.wait(5)
        started = time.monotonic()
        assert keys.key(transmitter, "rsa-1") is not None  # from the keys at hand
        with pytest.raises(KeysUnavailable, match="being fetched"):
            keys.key(transmitter, "rotated-in")  # perhaps what the running fetch brings: refused, not parked
        assert time.monotonic() - started < 0.5
    finally:
        release.set()
