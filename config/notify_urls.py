"""The receivers of boxcut's notifications (BOXCUT_NOTIFY_URLS): each an http(s) URL, Slack's or not.

A URL's path and query are often its secret (a Slack incoming webhook is `https://hooks.slack.com/services/T…/B…/
…`), so a `NotifyURL` never prints them: it shows as `scheme://host[:port]/…` with a short fingerprint of the
whole URL, which tells two URLs on one host apart in a job record without saying either.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

SLACK_HOST = "hooks.slack.com"
SLACK_PREFIX = "slack:"


@dataclass(frozen=True)
class NotifyURL:
    """One receiver: where to POST (kept out of reprs) and whether it takes Slack's body."""

    url: str = field(repr=False)
    slack: bool = False

    @property
    def shown(self) -> str:
        """The URL as it may be logged or recorded: scheme, host and port; never its path or query."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}/…"

    @property
    def fingerprint(self) -> str:
        """The first 12 hex digits of the whole URL's SHA-256: the same URL, the same fingerprint."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:12]

    def describe(self) -> str:
        return f"{self.shown} ({'slack, ' if self.slack else ''}#{self.fingerprint})"


def parse_notify_urls(text: str) -> tuple[NotifyURL, ...]:
    """The URLs of a comma- or newline-separated list; `slack:` before one marks a Slack-compatible receiver.
    Raises ValueError (never naming a URL's path or query) for one that is not an http(s) URL with a host."""
    urls = []
    for position, item in enumerate((i.strip() for i in re.split(r"[,\n]", text)), start=1):
        if not item or item.startswith("#"):
            continue
        slack = item.lower().startswith(SLACK_PREFIX)
        url = item[len(SLACK_PREFIX):].strip() if slack else item
        host = _host(url, position)
        urls.append(NotifyURL(url=url, slack=slack or host == SLACK_HOST))
    return tuple(urls)


def _host(url: str, position: int) -> str:
    """The URL's host, checking that it is an http(s) URL with one."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError(f"URL #{position} is not a URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"URL #{position} must start with https:// or http:// (or slack:https://)")
    if not parts.hostname:
        raise ValueError(f"URL #{position} names no host")
    return parts.hostname.lower()
