"""The shell examples of the documentation that run against `boxcut dev`, found by their tag.

The convention (tests/integration/test_examples.py runs what it finds):

    <!-- example: dev exit=1 expect="succeeded" expect="job j-" -->
    ```sh
    boxcut terminate --user jdoe@example.com --reason 'trying boxcut' --wait
    ```

A ```` ```sh ```` fence (or ```` ```bash ````, or `~~~`) whose line just before is the comment `<!-- example: dev
... -->`. Attributes, all optional: `exit=N` the exit status the block ends with (default 0; a block's status is
its last command's, as when pasted), and `expect="text"` (or `expect='text'`), any number of them, each a piece
of text its output (stdout and stderr) must hold. A block inside a list item is indented: the fence's indentation
is taken off its lines. A tag that is not followed by such a fence, an unknown attribute or an unclosed fence is a
`BadExample`, so a typo never passes as an untested example. Untagged blocks are not examples.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

TAG = re.compile(r"^\s*<!--\s*example:\s*dev(?P<attributes>(?:\s.*?)?)\s*-->\s*$")
ATTRIBUTE = re.compile(r"""\s*(?:exit=(?P<exit>\d+)|expect="(?P<double>[^"]*)"|expect='(?P<single>[^']*)')(?=\s|$)""")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>\S*)\s*$")
SHELLS = ("sh", "bash", "shell")


class BadExample(ValueError):
    """A tag the runner cannot turn into an example: says where (`path:line`) and why."""


@dataclass(frozen=True)
class Example:
    """One tagged block: where it is, what it runs and what it must end with."""

    document: str  # the document's path as shown in a test id (relative to the repository)
    line: int  # the 1-based line of the opening fence
    script: str
    exit_code: int = 0
    expect: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.document}:{self.line}"


def parse(text: str, document: str) -> list[Example]:
    """The tagged examples of one Markdown text, in order."""
    lines = text.splitlines()
    examples = []
    for number, line in enumerate(lines, start=1):
        tag = TAG.match(line)
        if tag is None:
            continue
        where = f"{document}:{number}"
        exit_code, expect = _attributes(tag["attributes"], where)
        opening = FENCE.match(lines[number]) if number < len(lines) else None
        if opening is None or opening["info"] not in SHELLS:
            raise BadExample(f"{where}: the example tag is not followed on the next line by a ```sh fence")
        script, closed = [], False
        for body in lines[number + 1:]:
            closing = FENCE.match(body)
            if closing and closing["fence"][0] == opening["fence"][0] and len(closing["fence"]) >= len(
                    opening["fence"]) and not closing["info"]:
                closed = True
                break
            script.append(_dedent(body, opening["indent"]))
        if not closed:
            raise BadExample(f"{where}: the example's fence is never closed")
        examples.append(Example(document, number + 1, "\n".join(script) + "\n", exit_code, expect))
    return examples


def collect(root: Path, documents: Iterable[Path]) -> list[Example]:
    """The examples of `documents` in the order given, each named by its path relative to `root`."""
    found = []
    for path in documents:
        found += parse(path.read_text(encoding="utf-8"), path.resolve().relative_to(root.resolve()).as_posix())
    return found


# The documentation site's home page: README.md with its `docs/` links made relative to docs/ (`mirror_of_readme`;
# a unit test holds the two equal), so its examples are README.md's and run once, there.
SITE_HOME = "docs/index.md"


def documented(root: Path) -> list[Path]:
    """Where the documentation is: README.md first, then the pages under docs/, sorted (but the site's home page,
    README.md's mirror)."""
    return [root / "README.md", *sorted(p for p in (root / "docs").rglob("*.md") if p != root / SITE_HOME)]


def mirror_of_readme(readme: str) -> str:
    """The site's home page as README.md makes it: the same text, its links into docs/ relative to docs/."""
    return readme.replace("](docs/", "](")


def _attributes(text: str, where: str) -> tuple[int, tuple[str, ...]]:
    exit_code, expect, position = 0, [], 0
    while position < len(text):
        found = ATTRIBUTE.match(text, position)
        if found is None:
            if text[position:].strip():
                raise BadExample(f"{where}: cannot read the example tag's attributes from {text[position:].strip()!r}"
                                 " (exit=N, expect=\"text\")")
            break
        if found["exit"] is not None:
            exit_code = int(found["exit"])
        else:
            expect.append(found["double"] if found["double"] is not None else found["single"])
        position = found.end()
    return exit_code, tuple(expect)


def _dedent(line: str, indent: str) -> str:
    """A block line without the fence's indentation (a line indented less loses what it has)."""
    if line.startswith(indent):
        return line[len(indent):]
    return line.lstrip(" \t")
