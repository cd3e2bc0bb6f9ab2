"""The documentation's shell examples run as pasted, against a real `boxcut dev` (issue 25).

Every ```` ```sh ```` block of README.md and docs/**/*.md tagged `<!-- example: dev ... -->` on the line before
it (the convention: tests/doc_examples.py) is one test, named `README.md:LINE` by its opening fence. Its exit
status must be the tag's `exit=N` (default 0) and its output (stdout and stderr) must hold each `expect="..."`.
Finding no tagged block at all fails, so a docs change that drops every tag is noticed.

How a reader runs them, and so how this runs them: `make run` (`.venv/bin/boxcut dev`) in the repository's
folder, which writes `./boxcut-dev.env` there; then, in another shell in that same folder, `. ./boxcut-dev.env`
and the examples, with paths relative to the repository (`tests/samples/...`).

Here, one `boxcut dev` for the whole module, started with `.venv/bin/boxcut dev` (what `make run` runs) in a
folder of its own that stands for the repository: it holds a symbolic link to each top-level entry git tracks
(and `.venv` to the venv running the tests), so examples find the repository's files by the same relative
paths, while `boxcut-dev.env`, a `.env` and anything an example writes at the top stay in the temporary folder.
So a developer's own `make run` in the checkout, its `boxcut-dev.env` and its `.env` are neither read nor
replaced. Its Redis is the tests' Redis (`redis_url`); its key prefix and archive are its own.

Each block is a script run by plain `bash` (no `-e`: as when pasted, a block's status is its last command's), in
that folder, with `. ./boxcut-dev.env` run before it (a block may source it again, as the docs show), the venv's
bin first on PATH, no BOX_ or BOXCUT_ variable but the file's, and 60 s to end. Blocks run in document order:
README.md first, then the pages under docs/ sorted by path; then the runner's own examples
(tests/integration/examples_self_test.md), so the runner is shown to work whatever the docs hold; last, the dev
stack is stopped and must leave no key, no process and no `boxcut-dev.env` behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.doc_examples import BadExample, Example, collect, documented
from tests.integration.harness import REPO
from worker.cli.dev_stack import ENV_FILE_NAME

pytestmark = pytest.mark.integration

SELF_TEST = Path(__file__).with_name("examples_self_test.md")
BLOCK_TIMEOUT = 60
START_TIMEOUT = 120
# What the env file exports without a BOXCUT_ prefix: never taken from the shell that runs the tests.
UNPREFIXED = ("TOKEN", "OPERATOR_TOKEN", "INTAKE_URL", "BOXSIM_URL")


@dataclass
class Stack:
    """The module's `boxcut dev`: its process, the folder it runs in and what its env file says."""

    proc: subprocess.Popen[bytes]
    folder: Path
    log: Path
    scripts: Path
    env: dict[str, str] = field(repr=False)  # what each block starts from (the env file adds the stack's own)
    exported: dict[str, str] = field(repr=False)  # what sourcing the env file sets (it holds tokens)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> tuple[int, bool]:
        """Stop it as a person does (one signal to `boxcut dev`, which stops its children): its exit status, and
        whether a process of its own (a worker, the intake, a pool process) outlived it, killed then."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=90)
            deadline = time.monotonic() + 10
            while _group_alive(self.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            return code, _group_alive(self.proc.pid)
        finally:
            _kill_group(self.proc.pid)


def _params(documents: Sequence[Path], where: str) -> list[Any]:
    """One parameter per tagged block; a single failing one when no block is tagged or a tag cannot be read."""
    try:
        examples = collect(REPO, documents)
    except BadExample as bad:
        return [pytest.param(str(bad), id="unreadable-example-tag")]
    if not examples:
        return [pytest.param(f"no block tagged <!-- example: dev --> in {where}", id="no-tagged-example")]
    return [pytest.param(example, id=example.id) for example in examples]


@pytest.fixture(scope="module")
def dev_stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("examples")
    folder, data, scripts = base / "repo", base / "data", base / "scripts"
    for made in (folder, data, scripts):
        made.mkdir()
    _mirror_repository(folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOX_", "BOXCUT_")) and k not in UNPREFIXED}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        # the checkout under test, whatever checkout the venv's editable install names
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        XDG_DATA_HOME=str(data),  # the embedded archive of this stack only
    )
    log = base / "dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("boxcut")), "dev"], cwd=folder,
                                # the event stream read every 2 s, not 10: the Box Shield examples wait less
                                env={**env, "BOXCUT_REDIS_URL": redis_url, "BOXCUT_EVENTS_POLL_SECONDS": "2"},
                                stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    stack = Stack(proc, folder, log, scripts, env, {})
    try:
        stack.exported = _wait_until_up(stack)
        yield stack
    finally:
        stack.stop()
        prefix = stack.exported.get("BOXCUT_KEY_PREFIX")
        if prefix:  # whatever a failed test left: the test Redis is shared
            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)


@pytest.mark.parametrize("example", _params(documented(REPO), "README.md or docs/**/*.md"))
def test_documented_example(example: Example | str, dev_stack: Stack) -> None:
    _check(example, dev_stack)


@pytest.mark.parametrize("example", _params([SELF_TEST], SELF_TEST.name))
def test_the_runners_own_example(example: Example | str, dev_stack: Stack) -> None:
    _check(example, dev_stack)


def test_the_dev_stack_stops_and_leaves_nothing_behind(dev_stack: Stack, redis_url: str) -> None:
    code, outlived = dev_stack.stop()
    assert code == 0 and not outlived, dev_stack.log_tail()
    assert not (dev_stack.folder / ENV_FILE_NAME).exists()
    prefix = dev_stack.exported["BOXCUT_KEY_PREFIX"]
    assert prefix.startswith("boxcut-dev-")
    assert list(redis.Redis.from_url(redis_url).scan_iter(match=f"{prefix}*", count=1000)) == []


# -- running a block ------------------------------------------------------------------------------------------


def _check(example: Example | str, stack: Stack) -> None:
    if isinstance(example, str):
        pytest.fail(example)
    assert stack.proc.poll() is None, f"boxcut dev is no longer running:\n{stack.log_tail()}"
    script = stack.scripts / f"{example.id.replace('/', '_').replace(':', '-')}-{uuid.uuid4().hex[:6]}.sh"
    script.write_text(f". ./{ENV_FILE_NAME}\n{example.script}", encoding="utf-8")
    code, output = _run(script, stack)
    shown = (f"{example.id}\n--- the block\n{example.script}--- its output (exit status {code})\n{output}\n"
             f"--- boxcut dev's log, last lines\n{stack.log_tail()}")
    assert code == example.exit_code, f"exit status {code}, the tag says {example.exit_code}: {shown}"
    missing = [text for text in example.expect if text not in output]
    assert not missing, f"the output lacks {missing}: {shown}"


def _run(script: Path, stack: Stack) -> tuple[int | str, str]:
    """Run a block with plain bash in the stack's folder; its exit status (or `timeout`) and output."""
    proc = subprocess.Popen(["bash", str(script)], cwd=stack.folder, env=stack.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, _ = proc.communicate()
        return f"none: still running after {BLOCK_TIMEOUT} s", out.decode(errors="replace")
    _kill_group(proc.pid)  # anything it left running in the background
    return proc.returncode, out.decode(errors="replace")


# -- the stack's folder -----------------------------------------------------------------------------------------


def _mirror_repository(folder: Path) -> None:
    """Link each top-level entry git tracks into `folder`, and `.venv` to the tests' venv."""
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True).stdout
    tops = {entry.split("/", 1)[0] for entry in tracked.decode().split("\0") if entry}
    for name in sorted(tops - {".env", ENV_FILE_NAME, ".venv"}):
        if (REPO / name).exists():
            (folder / name).symlink_to(REPO / name)
    (folder / ".venv").symlink_to(sys.prefix)


def _wait_until_up(stack: Stack) -> dict[str, str]:
    """Wait for `boxcut-dev.env` and an intake that answers; what the file exports, as a shell sourcing it sees."""
    deadline = time.monotonic() + START_TIMEOUT
    env_file = stack.folder / ENV_FILE_NAME
    while True:
        assert stack.proc.poll() is None, f"boxcut dev ended with {stack.proc.returncode}:\n{stack.log_tail()}"
        assert time.monotonic() < deadline, f"boxcut dev not up within {START_TIMEOUT} s:\n{stack.log_tail()}"
        if env_file.exists() and "stop with Ctrl-C" in stack.log.read_text(errors="replace"):
            break
        time.sleep(0.3)
    out = subprocess.run(["bash", "-c", f". ./{ENV_FILE_NAME} && env -0"], cwd=stack.folder, env=stack.env,
                         capture_output=True, check=True).stdout.decode()
    sourced = dict(entry.split("=", 1) for entry in out.split("\0") if "=" in entry)
    exported = {k: v for k, v in sourced.items() if stack.env.get(k) != v and k != "_"}
    assert requests.get(f"{exported['INTAKE_URL']}/healthz", timeout=10).status_code == 200
    return exported


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
