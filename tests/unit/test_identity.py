"""The two rules that decide who is who: when two logins are one person, and what a Box id is."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from config import Settings
from worker.identity import MAX_ID_DIGITS, box_id_problem, is_box_id, login_key, login_problem
from worker.intake.adapters.base import dedupe_targets, user_targets
from worker.intake.schemas import SECOND_SPELLINGS
from worker.jobs.model import Target
from worker.jobs.offboarding_file import parse_csv
from worker.run.policy import Policy


def test_logins_compare_as_lower_case_never_casefolded() -> None:
    assert login_key("  JDoe@Example.COM ") == "jdoe@example.com"
    assert login_key("STRAẞE@example.com") != login_key("strasse@example.com")
    assert login_key("straße@example.com") != login_key("strasse@example.com")
    assert login_key("Straße@example.com") == login_key("straße@example.com")


@pytest.mark.parametrize("merge", [
    lambda logins: [t["login"] for t in user_targets(logins)],
    lambda logins: [t["login"] for t in dedupe_targets({"type": "user", "login": x} for x in logins)],
    lambda logins: [t.spec["login"] for t in parse_csv(("user_login\n" + "\n".join(logins)).encode()).targets],
], ids=["user_targets", "dedupe_targets", "offboarding file"])
def test_every_merge_keeps_two_people_whose_logins_only_casefold_alike(merge: Callable[[list[str]], list[str]]) -> None:
    logins = ["straße@example.com", "strasse@example.com", "STRASSE@example.com", "Straße@example.com"]
    assert merge(logins) == ["straße@example.com", "strasse@example.com"]


def test_protection_lists_use_the_same_rule() -> None:
    policy = Policy.from_settings(Settings(protected_users=("Straße@example.com",)))
    kept = Target.from_input({"type": "user", "login": "STRASSE@example.com"})
    listed = Target.from_input({"type": "user", "login": "straße@EXAMPLE.com"})
    assert policy.protection(kept) is None
    assert policy.protection(listed) is not None


@pytest.mark.parametrize("value", ["0", "17738362", "9" * MAX_ID_DIGITS])
def test_box_ids_are_one_to_twenty_ascii_digits(value: str) -> None:
    assert is_box_id(value) and box_id_problem(value) is None


@pytest.mark.parametrize("value", ["", ".", "..", "me", "abc", "-1", "+1", " 1", "1 ", "1.0", "1e3", "12/..",
                                   "9" * (MAX_ID_DIGITS + 1), "1" * 5000, "\uff11\uff12", "\u0661\u0662"])
def test_anything_else_is_not_a_box_id(value: str) -> None:
    assert not is_box_id(value)
    assert "not a Box id" in (box_id_problem(value) or "")


def test_an_id_with_a_leading_zero_is_a_second_spelling_and_refused() -> None:
    assert is_box_id("0")
    assert box_id_problem("0017738362") == "is not a Box id (no leading zeros)"


@pytest.mark.parametrize(("login", "problem"), [
    ("jdoe@example.com", None), ("j.doe+x@mail.example.com", None),
    ("jdoe @example.com", "it contains a space"), ("jdoe", "it needs exactly one @"),
    ("a@b@example.com", "it needs exactly one @"), ("@example.com", "nothing before the @"),
    ("jdoe@localhost", "the domain after the @ needs a dot, e.g. example.com"),
    ("jdoe@example..com", "the domain after the @ needs a dot, e.g. example.com"),
    ("j" * 243 + "@example.com", "longer than 254 characters"), ("j" * 242 + "@example.com", None),
])
def test_a_login_looks_like_an_email_address_or_says_why_not(login: str, problem: str | None) -> None:
    assert login_problem(login) == problem


def _login(ch: str) -> str:
    return f"a{ch}b@example.com"


def test_a_login_is_refused_exactly_when_a_character_of_it_lower_cases_to_ascii_across_all_of_unicode() -> None:
    """Every code point past ASCII, surrogates aside: computed, not a list of the examples known today."""
    refused_for_ascii, accepted = [], []
    for code in range(0x80, 0x110000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        ch = chr(code)
        becomes_ascii = any(c.isascii() for c in ch.lower())
        problem = login_problem(_login(ch))
        if ch.isspace():  # refused as blank, and no space lower-cases to ASCII
            assert problem == "it contains a space" and not becomes_ascii
        elif becomes_ascii:
            assert problem is not None and f"U+{code:04X}" in problem, (hex(code), problem)
            refused_for_ascii.append(ch)
        else:
            assert problem is None, (hex(code), problem)
            accepted.append(ch)
    assert {"\u212a", "\u0130"} <= set(refused_for_ascii)  # KELVIN SIGN, and I WITH DOT ABOVE ('i' + U+0307)
    assert "\u212b" in accepted  # ANGSTROM SIGN lower-cases to 'å': no ASCII login is spelled by it
    # The intake's OpenAPI document refuses the same characters (a regex cannot compute them).
    assert set(refused_for_ascii) == set(SECOND_SPELLINGS)

    # More strongly: no accepted login compares equal to a login spelled in ASCII there, so a non-ASCII spelling
    # never names an ASCII login's owner; login_key changes only the character itself, and keeps it non-ASCII.
    ascii_logins = [_login(chr(code)) for code in range(0x21, 0x7F)]
    ascii_keys = {login_key(login) for login in ascii_logins if login_problem(login) is None}
    for ch in accepted:
        key = login_key(_login(ch))
        assert key == _login(ch.lower()) and not ch.lower().isascii() and key not in ascii_keys, hex(ord(ch))


@pytest.mark.parametrize("login", ["\u212aim@example.com", "kim@\u212aelvin.example.com", "\u0130nci@example.com"])
def test_a_second_spelling_of_an_ascii_login_is_refused_and_says_which_character(login: str) -> None:
    assert login_key(login).isascii() or "\u0307" in login_key(login)  # what it would have merged with
    problem = login_problem(login) or ""
    assert "second spelling of another login" in problem and ("KELVIN SIGN" in problem or "U+0130" in problem)
