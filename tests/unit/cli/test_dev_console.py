"""`boxcut dev` serves the operator console too, over plain http on loopback, unless the settings say otherwise or
nobody could sign in."""

from __future__ import annotations

import pytest

from config import load_settings
from worker.cli.dev_stack import DevStack

URL = "http://127.0.0.1:8000"


def _turned_on(env: dict[str, str]) -> tuple[bool, DevStack]:
    stack = DevStack(load_settings(env, env_file=None), env=dict(env))
    return stack._turn_console_on(URL), stack


def test_the_console_is_on_by_default_with_its_public_url_on_loopback() -> None:
    on, stack = _turned_on({})
    assert on and stack.env["BOXCUT_CONSOLE"] == "on" and stack.env["BOXCUT_PUBLIC_URL"] == URL


def test_a_loopback_public_url_of_ones_own_is_kept() -> None:
    on, stack = _turned_on({"BOXCUT_PUBLIC_URL": "http://localhost:8000"})
    assert on and stack.env["BOXCUT_PUBLIC_URL"] == "http://localhost:8000"


def test_a_public_url_elsewhere_leaves_the_console_off_and_says_why() -> None:
    """Its cookie would be Secure and its origin that address's: nobody could sign in to the loopback stack."""
    on, stack = _turned_on({"BOXCUT_PUBLIC_URL": "https://boxcut.example.com"})
    assert not on and "BOXCUT_CONSOLE" not in stack.env
    said = "console off: BOXCUT_PUBLIC_URL names https://boxcut.example.com"
    assert any(line.startswith(said) for line in stack.lines)


@pytest.mark.parametrize("env", [{"BOXCUT_CONSOLE": "off"}, {"BOXCUT_CONSOLE_TOKEN_SIGNIN": "off"}])
def test_the_console_stays_off_when_asked_or_when_nobody_could_sign_in(env: dict[str, str]) -> None:
    on, stack = _turned_on(env)
    assert not on and stack.env.get("BOXCUT_CONSOLE") in (None, "off") and "BOXCUT_PUBLIC_URL" not in stack.env
