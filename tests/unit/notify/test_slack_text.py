"""A sender's text as a Slack message shows it: links defanged, on one line, no invisible reordering."""

from __future__ import annotations

import pytest

from worker.notify.slack_text import defang, labelled, one_line, shown


@pytest.mark.parametrize(("text", "defanged"), [
    ("https://evil.example/x", "hxxps[:]//evil[.]example/x"),
    ("HTTP://10.0.0.1:8080", "hxxP[:]//10[.]0[.]0[.]1:8080"),
    ("ftp://files", "ftp[:]//files"),
    ("visit www.evil.example.", "visit www[.]evil[.]example."),
    ("evil\u3002example and evil\uff0eexample", "evil[.]example and evil[.]example"),
    ("kim@example.com", "kim@example[.]com"),
    ("the end. Next", "the end. Next"),
])
def test_links_are_defanged(text: str, defanged: str) -> None:
    assert defang(text) == defanged


def test_a_sender_gets_no_lines_or_invisible_reordering_of_its_own() -> None:
    assert one_line("phished\n\nboxcut: approved\u202eexe.txt") == "phished  boxcut: approved\ufffdexe.txt"


def test_a_senders_text_is_cut_and_labelled_as_plain_text_with_emoji_off() -> None:
    assert shown(None) == "-" and shown("") == "-" and len(shown("x" * 5000)) == 500
    assert labelled("Reason", "a :fire:\nb") == {"type": "plain_text", "text": "Reason\na :fire: b", "emoji": False}
