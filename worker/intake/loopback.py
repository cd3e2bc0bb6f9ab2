"""Loopback: which hosts, `Host` headers, origins and URLs name this machine, for `--insecure-dev`.

A name is loopback when it is `localhost` or a loopback address (127.0.0.0/8, ::1), never because it resolves to
one: DNS rebinding makes any name resolve to 127.0.0.1, and that is the attack these checks stop.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOCALHOST = "localhost"
_WEB_SCHEMES = frozenset({"http", "https"})


def is_loopback_host(host: str) -> bool:
    """Whether a bare host (a name, an IPv4 address or an IPv6 address without brackets) is this machine's."""
    if host.lower() == LOCALHOST:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_authority(authority: str) -> bool:
    """Whether a `Host` header (`host`, `host:port`, `[v6]`, `[v6]:port`) names this machine."""
    host = _host_of_authority(authority)
    return host is not None and is_loopback_host(host)


def is_loopback_origin(origin: str) -> bool:
    """Whether an `Origin` header is a web page served from this machine (`http(s)://loopback[:port]`).

    `null` (a sandboxed frame, a file, a redirect across origins) is no page of this machine's."""
    scheme, separator, authority = origin.partition("://")
    return bool(separator) and scheme.lower() in _WEB_SCHEMES and is_loopback_authority(authority)


def is_loopback_url(url: str) -> bool:
    """Whether an http(s) URL points at this machine (the Box simulator, say)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in _WEB_SCHEMES and parts.hostname is not None and is_loopback_host(parts.hostname)


def _host_of_authority(authority: str) -> str | None:
    """The host of `host[:port]` or `[v6][:port]`; None when it is anything else (a userinfo, a path, a bad port).

    Parsed strictly by hand: `urlsplit` would read `evil.example@127.0.0.1` as the loopback host."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return None
        host, rest = authority[1:end], authority[end + 1:]
        if ":" not in host:  # brackets hold an IPv6 address, nothing else
            return None
    else:
        host, colon, port = authority.partition(":")
        rest = colon + port
    if rest and not (rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit()):
        return None
    return host or None
