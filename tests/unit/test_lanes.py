"""The test lanes of the Makefile (`make check`, `make integration`, `make drills`) run every test file once:
a test folder no lane names would never run, in CI or anywhere."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LANES = ("unit", "integration", "drills")


def lane_folders(makefile: str) -> dict[str, list[str]]:
    """Each lane's folders: the paths its `pytest` line names."""
    folders: dict[str, list[str]] = {}
    for lane in LANES:
        recipe = re.search(rf"^{lane}:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
        assert recipe, f"the Makefile has no `{lane}` target"
        [pytest_line] = [line for line in recipe.group(1).splitlines() if "/pytest " in line]
        folders[lane] = [word for word in pytest_line.split() if word.startswith("tests/")]
    return folders


def test_every_test_file_is_in_exactly_one_lane() -> None:
    folders = lane_folders((REPO / "Makefile").read_text())
    named = [folder for lane in folders.values() for folder in lane]
    assert len(named) == len(set(named)), folders
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        relative = path.relative_to(REPO).as_posix()
        lanes = [lane for lane, lane_dirs in folders.items() if any(relative.startswith(f"{d}/") for d in lane_dirs)]
        assert len(lanes) == 1, f"{relative} runs in {lanes or 'no lane'}"


def test_make_test_runs_every_lane_and_the_docs() -> None:
    makefile = (REPO / "Makefile").read_text()
    test_target = re.search(r"^test:(.*)$", makefile, re.MULTILINE)
    check_target = re.search(r"^check:(.*)$", makefile, re.MULTILINE)
    assert test_target and check_target
    assert set(check_target.group(1).split()) >= {"lint", "typecheck", "unit"}
    assert set(test_target.group(1).split()) >= {"check", "docs", "integration", "drills"}
