"""Every command with Redis down says so in one line naming the Redis URL (never its password), exit 69."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from worker.cli import commands


@pytest.mark.parametrize("args", [["jobs"], ["status", "j-0123456789abcdef"], ["cancel", "j-0123456789abcdef"],
                                  ["terminate", "--user", "a@example.com"]])
def test_a_command_with_redis_down_prints_one_line_and_exits_69(args: list[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOXCUT_REDIS_URL", "redis://:sekret-pass@127.0.0.1:1/0")
    run = CliRunner().invoke(commands.main, args)
    assert run.exit_code == commands.EXIT_UNAVAILABLE == 69, run.output
    lines = run.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("boxcut: Redis at redis://127.0.0.1:1/0 does not answer")
    assert "sekret-pass" not in run.output and "Traceback" not in run.output


def test_other_errors_are_not_dressed_up_as_redis_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "_store", lambda _settings: (_ for _ in ()).throw(ValueError("boom")))
    run = CliRunner().invoke(commands.main, ["jobs"])
    assert isinstance(run.exception, ValueError)
