"""Redis Sentinel: the one URL that names the Sentinels and the service they watch (BOXCUT_REDIS_URL).

    redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/service[/db]

The password (or BOXCUT_REDIS_PASSWORD) is the Redis servers' own; Sentinels that ask for one of their own take
BOXCUT_REDIS_SENTINEL_PASSWORD. Each Sentinel's port defaults to 26379, the database to 0. The job store asks the
Sentinels for the current primary (redis-py's Sentinel client) and so does the Celery broker (kombu's
`sentinel://` transport, tasks/broker.py): both follow a failover by themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from config.secret import Secret

SCHEME = "redis+sentinel"
DEFAULT_PORT = 26379

# host or [IPv6] host, then an optional port
_NODE = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:\[\]/,@]+)(?::(?P<port>\d{1,5}))?$")
_SERVICE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class SentinelURLError(ValueError):
    """A Sentinel URL that cannot be used; the message says what is wrong and never holds the password."""


@dataclass(frozen=True)
class SentinelConfig:
    """Where the Sentinels are, which service (primary) they watch, and how to log in to its Redis servers."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: Secret | None = None
    sentinel_password: Secret | None = None

    def kombu_url(self) -> str:
        """The broker URL kombu's Sentinel transport reads: the first Sentinel, with the Redis servers' login and
        the database. The others go in the transport option `sentinels` (tasks/broker.py says why not in the URL)."""
        login = ""
        if self.password is not None or self.username is not None:
            password = self.password.reveal() if self.password is not None else ""
            login = f"{_quote(self.username or '')}:{_quote(password)}@"
        host, port = self.sentinels[0]
        return f"sentinel://{login}{_netloc(host, port)}/{self.db}"

    def describe(self) -> str:
        """The Sentinels and service as they may be printed: no password."""
        nodes = ",".join(_netloc(host, port) for host, port in self.sentinels)
        return f"{SCHEME}://{nodes}/{self.service}/{self.db}"


def is_sentinel_url(url: str) -> bool:
    return url.startswith(f"{SCHEME}://")


def parse_sentinel_url(url: str, *, sentinel_password: Secret | None = None) -> SentinelConfig:
    """The SentinelConfig a `redis+sentinel://` URL names; SentinelURLError says what is wrong with it, quoting
    no part of the login. Split by hand, not by urlsplit, which ends the login at a '/' or '#' in a password."""
    prefix = f"{SCHEME}://"
    if not url.startswith(prefix):
        raise SentinelURLError(f"expected {prefix}")
    login, _, rest = url[len(prefix):].rpartition("@")
    nodes, _, path = rest.partition("/")
    if any(mark in rest for mark in "?#"):
        raise SentinelURLError("takes no query or fragment: redis+sentinel://host:port,host:port/service/db")
    username, _, password = login.partition(":")
    service, db = _path(path)
    return SentinelConfig(
        sentinels=tuple(_node(text) for text in nodes.split(",")),
        service=service,
        db=db,
        username=unquote(username) or None,
        password=Secret(unquote(password)) if password else None,
        sentinel_password=sentinel_password,
    )


def _node(text: str) -> tuple[str, int]:
    match = _NODE.match(text.strip())
    if match is None:
        raise SentinelURLError(f"a Sentinel must be host or host:port, got {text!r}")
    port = int(match["port"] or DEFAULT_PORT)
    if not 1 <= port <= 65535:
        raise SentinelURLError(f"a Sentinel's port must be from 1 to 65535, got {port}")
    return match["host"].strip("[]"), port


def _path(path: str) -> tuple[str, int]:
    pieces = [p for p in path.split("/") if p]
    if not pieces:
        raise SentinelURLError("names no service: redis+sentinel://host:port,host:port/service[/db]")
    if len(pieces) > 2:
        raise SentinelURLError(f"expected /service or /service/db after the Sentinels, got '/{path}'")
    service = unquote(pieces[0])
    if not _SERVICE.match(service):
        raise SentinelURLError(f"a service name is letters, digits, '.', '_' or '-', got {service!r}")
    if len(pieces) == 1:
        return service, 0
    if not (pieces[1].isascii() and pieces[1].isdigit()):
        raise SentinelURLError(f"the database must be a number (0, 1, …), got {pieces[1]!r}")
    return service, int(pieces[1])


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _quote(text: str) -> str:
    return quote(text, safe="")
