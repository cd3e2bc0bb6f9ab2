"""Which `Host` headers, origins and URLs name this machine: by what they say, never by what a name resolves to
(DNS rebinding makes any name resolve to 127.0.0.1)."""

from __future__ import annotations

import pytest

from worker.intake.loopback import is_loopback_authority, is_loopback_origin, is_loopback_url


@pytest.mark.parametrize(("authority", "loopback"), [
    ("localhost", True), ("localhost:1", True), ("127.0.0.1:65535", True), ("127.9.9.9", True), ("[::1]", True),
    ("[::1]:8000", True), ("", False), ("::1", False), ("localhost.", False), ("localhost:", False),
    ("localhost:80x", False), ("evil.example@127.0.0.1", False), ("127.0.0.1.nip.io", False), ("[::1", False),
    ("[127.0.0.1]", False), ("[::1]x", False), ("10.0.0.1:8000", False), ("0.0.0.0", False),
    ("localhost:\uff18\uff10", False),
])
def test_which_host_headers_name_this_machine(authority: str, loopback: bool) -> None:
    assert is_loopback_authority(authority) is loopback


@pytest.mark.parametrize(("origin", "loopback"), [
    ("http://localhost:3000", True), ("https://[::1]", True), ("HTTP://127.0.0.1", True), ("null", False),
    ("file://", False), ("ftp://localhost", False), ("http://localhost/path", False),
    ("http://127.0.0.1@evil.example", False), ("localhost:3000", False),
])
def test_which_origins_are_this_machines(origin: str, loopback: bool) -> None:
    assert is_loopback_origin(origin) is loopback


def test_which_box_urls_are_this_machines() -> None:
    assert is_loopback_url("http://127.0.0.1:8765/2.0") and is_loopback_url("http://localhost:8765/oauth2/token")
    assert not is_loopback_url("https://api.box.com/2.0") and not is_loopback_url("http://[::1")
