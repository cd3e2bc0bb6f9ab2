"""Text in Slack messages: boxcut's own as mrkdwn, a sender's as plain_text that Slack shows as written.

A sender's text (a reason, an event id, who asked, a login, an approval reason that quotes one) reaches the
channel where approvals are decided, so it must not format, mention or link there. Slack's `plain_text` objects
apply no mrkdwn (no `*bold*`, no `<url|label>`, no `<!channel>`), and `"emoji": false` leaves `:name:` as typed.
Slack may still turn a bare URL or domain into a link in any text, so links in a sender's text are defanged the
way incident reports write them: `https://evil.example/x` becomes `hxxps[:]//evil[.]example/x`.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

# Slack refuses a plain_text or mrkdwn object over 3,000 characters, a section field over 2,000.
SENDER_TEXT_CHARS = 500

# `scheme://`: the separator is broken (and `http` becomes `hxxp`), so no client reads a URL there.
_SCHEME = re.compile(r"\b([a-z][a-z0-9+.-]*):(?=//)", re.IGNORECASE)
_HTTP = re.compile(r"\bh(tt)(ps?)\b(?=\[:\])", re.IGNORECASE)
# A dot between two letters or digits (`evil.example`, `10.0.0.1`; the ideographic and full-width dots too, which
# browsers read as dots in host names): no host name or address survives whole.
_DOT_IN_A_NAME = re.compile(r"(?<=[^\W_])[.\u3002\uff0e\uff61](?=[^\W_])")
# Line breaks would let a sender lay out lines of its own ("approved by the security team"); bidi and other
# invisible controls would let it show text in another order than it is.
_LINE_BREAKS = frozenset("\n\r\t\v\f\x85\u2028\u2029")
_INVISIBLE = frozenset({"Cc", "Cf"})


def labelled(label: str, text: str | None) -> dict[str, Any]:
    """A plain_text object of boxcut's `label` over a sender's `text` (see `shown`)."""
    return plain_text(f"{label}\n{shown(text)}")


def shown(text: str | None, *, empty: str = "-") -> str:
    """A sender's text as a Slack message may show it: on one line, defanged, cut; `empty` when there is none."""
    return cut(defang(one_line(text))) if text else empty


def one_line(text: str) -> str:
    """`text` with line breaks as spaces and invisible controls (bidi overrides, zero widths) shown as U+FFFD."""
    return "".join(" " if c in _LINE_BREAKS else "\ufffd" if unicodedata.category(c) in _INVISIBLE else c
                   for c in text)


def plain_text(text: str) -> dict[str, Any]:
    """A plain_text object: no mrkdwn, and `:name:` left as typed."""
    return {"type": "plain_text", "text": text, "emoji": False}


def defang(text: str) -> str:
    """`text` with every URL scheme separator and every dot inside a name broken, so Slack links none of them."""
    text = _SCHEME.sub(r"\1[:]", text)
    text = _HTTP.sub(r"hxx\2", text)
    return _DOT_IN_A_NAME.sub("[.]", text)


def cut(text: str, limit: int = SENDER_TEXT_CHARS) -> str:
    """`text` no longer than `limit` characters, marked with `…` where it was cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def escape_mrkdwn(text: str) -> str:
    """Text as Slack's mrkdwn shows it literally: `&`, `<` and `>` escaped (no link or mention is made of it)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
