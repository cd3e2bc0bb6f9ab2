"""Guarded writes: an XADD whose id is `$prev` repeats the entry before it in a second stream under its id."""

from __future__ import annotations

import time

import fakeredis
import pytest

from worker.transactions import GuardedWrite, GuardFailed


def test_an_entry_written_to_two_streams_has_one_id() -> None:
    client = fakeredis.FakeRedis()
    ahead = int(time.time() * 1000) + 60_000
    client.xadd("main", {"k": "v"}, id=f"{ahead}-0")  # '*' in the two streams could no longer coincide
    write = GuardedWrite()
    write.write("XADD", "main", "*", "k", "v")
    write.write("XADD", "own", "$prev", "k", "v")
    write.apply(client)
    [(main_id, _)] = client.xrange("main", min=f"({ahead}-0")
    [(own_id, _)] = client.xrange("own")
    assert main_id == own_id == f"{ahead}-1".encode()


def test_an_id_the_second_stream_cannot_take_falls_back_to_a_new_one() -> None:
    client = fakeredis.FakeRedis()
    ahead = int(time.time() * 1000) + 60_000
    client.xadd("own", {"k": "old"}, id=f"{ahead}-5")  # written before ids were shared, and later
    write = GuardedWrite()
    write.write("XADD", "main", "*", "k", "v")
    write.write("XADD", "own", "$prev", "k", "v")
    write.apply(client)
    assert client.xlen("own") == 2 and client.xlen("main") == 1


def test_a_failed_guard_writes_neither_stream() -> None:
    client = fakeredis.FakeRedis()
    write = GuardedWrite().hash_field_is("job", "state", "queued")
    write.write("XADD", "main", "*", "k", "v")
    write.write("XADD", "own", "$prev", "k", "v")
    with pytest.raises(GuardFailed):
        write.apply(client)
    assert client.xlen("main") == client.xlen("own") == 0
