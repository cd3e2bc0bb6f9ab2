"""The per-process runtime: what a process builds once (again after a fork), and the service account's id, asked of
Box once for every process."""

from __future__ import annotations

from typing import Any, cast

import fakeredis

from worker.box.answers import BoxUser
from worker.box.client import BoxClient
from worker.runtime import ServiceAccount


class _Box:
    def __init__(self) -> None:
        self.asked = 0

    def current_user(self) -> BoxUser:
        self.asked += 1
        return BoxUser(id="900", login="svc@boxdevedition.com")


def _account(box: _Box, client: Any, key: str = "t:box:service_account:abc") -> ServiceAccount:
    return ServiceAccount(cast(BoxClient, box), client, key=key)


def test_the_service_account_is_asked_of_box_once_for_every_process_sharing_redis() -> None:
    client, box = fakeredis.FakeRedis(), _Box()
    assert [_account(box, client)() for _ in range(3)] == ["900"] * 3  # three processes, one question
    assert box.asked == 1


def test_another_app_or_box_asks_again_under_its_own_key() -> None:
    client, box = fakeredis.FakeRedis(), _Box()
    _account(box, client)()
    _account(box, client, key="t:box:service_account:other")()
    assert box.asked == 2


def test_a_per_process_value_is_built_once_and_again_after_a_fork(monkeypatch: Any) -> None:
    import os

    from worker.runtime import PerProcess

    built: list[int] = []
    value = PerProcess(lambda: built.append(1) or len(built))
    assert (value(), value()) == (1, 1)  # built once in this process
    pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: pid + 1)  # a forked child sees another pid
    assert (value(), value()) == (2, 2)
