"""The rules for the values that name people and groups, one for every entrance and every comparison.

Two rules decide who gets terminated, so they live here once and every module uses them:

- **When two logins are the same person.** `login_key`: stripped, then `str.lower()`, the comparison the
  resolver makes against Box's answers. Never `casefold()`: it folds `straße` into `strasse`, and those are
  two Box users; merging them would leave one of them with every session.
- **What a login looks like.** `login_problem`: one `@` between a local part and a dotted domain, no blank, at
  most `MAX_LOGIN_CHARS`: Box's logins are e-mail addresses. And no character outside ASCII that `login_key`
  turns into ASCII (U+212A KELVIN SIGN lower-cases to `k`, U+0130 to `i` and a dot above): such a login would
  compare equal to another string, `\u212aim@` to `kim@`, so one person's alert would end another's sessions.
  Every entrance checks it: `worker.jobs.targets` for every job, the adapters and readers before that, so a
  batch's other events still go through.
- **What a Box id is.** Digits only (ASCII), 1 to `MAX_ID_DIGITS` of them, no leading zero: Box's ids are
  decimal strings, written one way.
  Anything else (`..`, `.`, `me`, `abc`, 5,000 digits) is refused at the entrance that received it, so no value
  from an alert can become a path Box did not mean, such as `/users/me` (the service account) or `/2.0/`.
"""

from __future__ import annotations

import unicodedata

# Box's ids are 64-bit numbers at most: 20 decimal digits.
MAX_ID_DIGITS = 20
MAX_LOGIN_CHARS = 254  # the longest e-mail address SMTP allows


def login_key(login: str) -> str:
    """The form in which two logins (or group names) name the same Box identity: stripped and `lower()`ed."""
    return login.strip().lower()


def box_id_problem(value: str) -> str | None:
    """Why `value` is not a Box id, in words that follow its field's name, or None when it is one."""
    if not value.isascii() or not value.isdigit():
        return "is not a Box id (digits only)"
    if len(value) > MAX_ID_DIGITS:
        return f"is not a Box id (at most {MAX_ID_DIGITS} digits, got {len(value)})"
    if value.startswith("0") and value != "0":
        # Box writes ids without leading zeros; `0017738362` would be a second spelling of one id, never merged
        # with `17738362` and never matching Box's answer.
        return "is not a Box id (no leading zeros)"
    return None


def is_box_id(value: str) -> bool:
    """Whether `value` is a Box id: 1 to MAX_ID_DIGITS ASCII digits."""
    return box_id_problem(value) is None


def login_problem(value: str) -> str | None:
    """Why a login does not look like an e-mail address, or could be mistaken for another one; or None."""
    if any(ch.isspace() for ch in value):
        return "it contains a space"
    if (merged := _becomes_ascii(value)) is not None:
        named = f"U+{ord(merged):04X} {unicodedata.name(merged, '')}".strip()
        return f"it holds {named}, which compares as {merged.lower()!r}: a second spelling of another login"
    if value.count("@") != 1:
        return "it needs exactly one @"
    local, domain = value.split("@")
    if not local:
        return "nothing before the @"
    if "." not in domain or not all(domain.split(".")):
        return "the domain after the @ needs a dot, e.g. example.com"
    if len(value) > MAX_LOGIN_CHARS:
        return f"longer than {MAX_LOGIN_CHARS} characters"
    return None


def _becomes_ascii(value: str) -> str | None:
    """The first character outside ASCII that `login_key` lower-cases into one holding ASCII, or None.
    `str.lower()` maps each character on its own (a final sigma's context only picks another Greek letter), so
    checking them one by one is the rule itself."""
    return next((ch for ch in value if not ch.isascii() and any(c.isascii() for c in ch.lower())), None)
