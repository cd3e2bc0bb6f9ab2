"""Bulk offboarding files (CSV uploads and JSON lists), validated whole before anything is enqueued.

During layoffs IT admins upload hundreds or thousands of rows at once. One wrong row must never half-run a
file, so `parse_csv` and `parse_json` either return every target or raise `InvalidOffboardFile` listing every
problem at once, each with its line (CSV) or item number (JSON). Nothing here talks to Box or Redis.

The CSV columns follow the Box CLI's bulk files: `user_id`, `user_login`, `group_id`, plus `group_name` and an
optional `reason`. Each row names exactly one user or one group; the result is boxcut's generic target form,
e.g. `{"type": "user", "login": "a@example.com", "reason": "layoff"}`.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from worker.errors import InvalidOffboardFile, RowProblem
from worker.identity import box_id_problem, login_key, login_problem

TARGET_COLUMNS = ("user_id", "user_login", "group_id", "group_name")
COLUMNS = (*TARGET_COLUMNS, "reason")
USER_COLUMNS = ("user_id", "user_login")
GROUP_COLUMNS = ("group_id", "group_name")

MAX_ROWS = 100_000
MAX_LISTED_PROBLEMS = 100
MAX_GROUP_NAME_CHARS = 255
MAX_REASON_CHARS = 500
_SHOWN_VALUE_CHARS = 60

# Where each column lands in a target spec.
_SPEC_FIELDS = {
    "user_id": ("user", "id"),
    "user_login": ("user", "login"),
    "group_id": ("group", "id"),
    "group_name": ("group", "name"),
}
_EXPECTED = ", ".join(COLUMNS)

Unit = Literal["line", "item"]
# How a problem's place is worded: (one place, the thing that is bad, the whole input).
_WORDING: dict[str, tuple[str, str, str]] = {"line": ("line", "row", "file"), "item": ("item", "item", "request")}


@dataclass(frozen=True)
class OffboardTarget:
    """One user or group to offboard, in boxcut's generic target form, and every line that named it."""

    spec: dict[str, str]
    lines: tuple[int, ...]


@dataclass(frozen=True)
class OffboardFile:
    """A validated offboarding file: its targets in first-seen order, how many rows it had, how many merged."""

    targets: list[OffboardTarget]
    rows: int
    merged: int

    @property
    def specs(self) -> list[dict[str, str]]:
        """The targets' specs (copies), ready for a `JobRequest`."""
        return [dict(target.spec) for target in self.targets]


def refusal(problems: list[RowProblem], *, unit: Unit = "line") -> InvalidOffboardFile:
    """The refusal of a whole file: one summary line, then one line per problem (at most MAX_LISTED_PROBLEMS)."""
    place, noun, whole = _WORDING[unit]
    count = len(problems)
    if all(p.line > 0 for p in problems):
        summary = f"{count} bad {noun}{'' if count == 1 else 's'}; nothing was submitted"
    else:
        summary = f"{count} problem{'' if count == 1 else 's'}; nothing was submitted"
    lines = [summary]
    for p in problems[:MAX_LISTED_PROBLEMS]:
        lines.append(f"{place} {p.line}: {p.problem}" if p.line > 0 else f"{whole}: {p.problem}")
    if count > MAX_LISTED_PROBLEMS:
        lines.append(f"... and {count - MAX_LISTED_PROBLEMS} more")
    return InvalidOffboardFile(problems, unit=unit, message="\n".join(lines))


# ---------------------------------------------------------------------------------------------------------
# Checking one row (shared by CSV and JSON)


def _show(value: str) -> str:
    """A value quoted for a message: repr() so newlines cannot break the one-problem-per-line layout."""
    if len(value) > _SHOWN_VALUE_CHARS:
        return repr(value[: _SHOWN_VALUE_CHARS - 3]) + "..."
    return repr(value)


def _check_id(column: str, value: str) -> str | None:
    """Why a value is not a Box id, or None."""
    problem = box_id_problem(value)
    return f"{column} {_show(value)} {problem}" if problem else None


def _check_value(column: str, value: str) -> str | None:
    """Why one non-empty, stripped value is unacceptable in its column, or None."""
    if column in ("user_id", "group_id"):
        return _check_id(column, value)
    if column == "user_login":
        flaw = login_problem(value)
        return f"user_login {_show(value)} is not an e-mail address ({flaw})" if flaw else None
    if column == "group_name" and len(value) > MAX_GROUP_NAME_CHARS:
        return f"group_name is {len(value)} characters long; at most {MAX_GROUP_NAME_CHARS} are allowed"
    if column == "reason" and len(value) > MAX_REASON_CHARS:
        return f"reason is {len(value)} characters long; at most {MAX_REASON_CHARS} are allowed"
    return None


def _naming_problems(named: list[str], noun: str) -> list[str]:
    """Why the target columns a row fills do not name exactly one user or group."""
    users = [c for c in named if c in USER_COLUMNS]
    groups = [c for c in named if c in GROUP_COLUMNS]
    if users and groups:
        return [f"names both a user ({users[0]}) and a group ({groups[0]}): give one per {noun}"]
    if len(users) > 1:
        return [f"gives both user_id and user_login: give one, so the {noun} cannot name two people"]
    if len(groups) > 1:
        return [f"gives both group_id and group_name: give one, so the {noun} cannot name two groups"]
    return []


def _check_row(values: Mapping[str, str], noun: str) -> tuple[dict[str, str] | None, list[str]]:
    """The target spec one row names, or the problems that stop it naming one."""
    filled = {column: value.strip() for column, value in values.items() if value.strip()}
    named = [column for column in TARGET_COLUMNS if column in filled]
    if not named:
        if "reason" in filled:
            return None, ["gives a reason but names no user or group"]
        return None, [f"empty {noun}: names no user or group"]
    problems = _naming_problems(named, noun)
    problems += [p for column, value in filled.items() if (p := _check_value(column, value))]
    if problems:
        return None, problems
    kind, key = _SPEC_FIELDS[named[0]]
    spec = {"type": kind, key: filled[named[0]]}
    if "reason" in filled:
        spec["reason"] = filled["reason"]
    return spec, []


def _names_something(values: Mapping[str, str]) -> bool:
    """Whether any target column of a row holds a value."""
    return any(values.get(column, "").strip() for column in TARGET_COLUMNS)


def _merge_key(spec: Mapping[str, str]) -> tuple[str, str, str]:
    """What makes two specs the same target: logins compare by `login_key` (as resolution does), the rest exactly."""
    key = next(k for k in ("id", "login", "name") if k in spec)  # _check_row puts exactly one in a spec
    return spec["type"], key, login_key(spec[key]) if key == "login" else spec[key]


@dataclass
class _Collector:
    """Gathers a file's targets (merging repeats) and its problems while rows are read."""

    unit: Unit
    rows: int = 0
    merged: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    _specs: dict[tuple[str, str, str], dict[str, str]] = field(default_factory=dict)
    _lines: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)

    def add(self, line: int, values: Mapping[str, str], problems: list[str]) -> None:
        """Check one data row; `problems` are ones the reader already found (e.g. an unknown column)."""
        self.rows += 1
        spec, found = _check_row(values, _WORDING[self.unit][1])
        if problems and spec is None and not _names_something(values):
            found = []  # "names no user or group" only repeats the reader's problem (e.g. the name is in a stray cell)
        if problems or found:
            self.problems.append(RowProblem(line, "; ".join(problems + found)))
        elif spec is not None:
            self._keep(line, spec)

    def _keep(self, line: int, spec: dict[str, str]) -> None:
        """Record a good row's target, merging it into an earlier one that names the same target."""
        key = _merge_key(spec)
        if key not in self._specs:
            self._specs[key], self._lines[key] = spec, [line]
            return
        # A repeat: same target. Different reasons are not worth refusing a layoff file over; the first wins.
        self.merged += 1
        self._lines[key].append(line)
        if "reason" in spec:
            self._specs[key].setdefault("reason", spec["reason"])

    def bad_row(self, line: int, problem: str) -> None:
        """Count a data row that could not even be read as values (bad quoting, not a JSON object)."""
        self.rows += 1
        self.fail(line, problem)

    def fail(self, line: int, problem: str) -> None:
        """Note a problem that is not a data row's (the header, the input as a whole)."""
        self.problems.append(RowProblem(line, problem))

    def result(self, empty: str) -> OffboardFile:
        """The parsed file, or InvalidOffboardFile with every problem; `empty` says why no rows is refused."""
        if not self.problems and self.rows == 0:
            self.fail(0, f"no {_WORDING[self.unit][1]}s: {empty}")
        if self.problems:
            raise refusal(sorted(self.problems, key=lambda p: p.line), unit=self.unit)
        targets = [OffboardTarget(spec, tuple(self._lines[key])) for key, spec in self._specs.items()]
        return OffboardFile(targets=targets, rows=self.rows, merged=self.merged)


def _too_many(unit: Unit) -> InvalidOffboardFile:
    """The refusal for input over MAX_ROWS: one problem, since the rows will be split and renumbered anyway."""
    noun, whole = _WORDING[unit][1], _WORDING[unit][2]
    return refusal(
        [RowProblem(0, f"more than {MAX_ROWS:,} {noun}s; split the {whole} into smaller ones")], unit=unit
    )


# ---------------------------------------------------------------------------------------------------------
# CSV


def _line_of(data: bytes, offset: int) -> int:
    """The physical line (1-based) a byte offset falls on."""
    return data.count(b"\n", 0, offset) + 1


def _refuse(line: int, problem: str) -> InvalidOffboardFile:
    """A refusal of a CSV file as a whole for one problem (it cannot be read as text at all)."""
    return refusal([RowProblem(line, problem)])


_SAVE_AS = "save it from the spreadsheet as 'CSV UTF-8 (comma delimited)'"


def _decode(data: bytes) -> str:
    """The file's text; a workbook, UTF-16, binary or non-UTF-8 file is refused with where it went wrong."""
    if data.startswith(b"PK\x03\x04"):
        raise _refuse(0, f"this is an Excel workbook (.xlsx) or a zip archive, not a CSV file; {_SAVE_AS}")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise _refuse(0, f"the file is UTF-16 text, not UTF-8; {_SAVE_AS}")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise _refuse(_line_of(data, nul), f"NUL byte at byte offset {nul}: this is a binary file, not a CSV file")
    # Strip the BOM ourselves (rather than decode utf-8-sig) so a decoding error's offset is the file's offset.
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = start + err.start
        problem = f"not UTF-8: byte 0x{data[offset]:02x} at byte offset {offset} cannot be decoded; {_SAVE_AS}"
        raise _refuse(_line_of(data, offset), problem) from None


@dataclass(frozen=True)
class _Record:
    """One CSV record: the physical line it starts on and its cells, or why it could not be read."""

    line: int
    cells: list[str]
    error: str | None = None


def _records(text: str) -> Iterator[_Record]:
    """The file's non-blank records, each with the line it starts on; quoting errors become records too."""
    # strict: a stray quote is an error at its line instead of silently gluing rows into one value.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    last = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield _Record(last + 1, [], _quoting_problem(str(err), last + 1, reader.line_num))
        else:
            if cells:  # csv gives [] for a line with nothing on it: a blank line, ignored
                yield _Record(last + 1, cells)
        last = reader.line_num


def _quoting_problem(error: str, first: int, last: int) -> str:
    """A csv quoting error, worded for someone who edits the file in a spreadsheet or text editor."""
    if "unexpected end of data" in error:
        return "a quoted value opened on this line is never closed (a missing \")"
    span = f" (the record runs to line {last})" if last > first else ""
    return f"cannot read the row: {error}{span}"


@dataclass(frozen=True)
class _Header:
    """Where each known column is, and which columns hold nothing boxcut reads."""

    index: dict[str, int]
    ignored: frozenset[int]  # columns with an unknown name: already reported at the header's line


def _not_a_header(cells: list[str]) -> str:
    """Why the first line is not a header, with a hint when it is a semicolon- or tab-separated one."""
    hint = ""
    if len(cells) == 1 and (";" in cells[0] or "\t" in cells[0]):
        hint = " (the file looks separated by semicolons or tabs; boxcut reads comma-separated files)"
    return (f"the first line must be a header naming the columns; it names none of "
            f"{', '.join(TARGET_COLUMNS)}{hint}")


def _read_header(cells: list[str], line: int, out: _Collector) -> _Header | None:
    """The header's columns; None when rows cannot be read with it (problems go to `out`)."""
    names = [cell.strip().lower() for cell in cells]
    if not any(name in TARGET_COLUMNS for name in names):
        out.fail(line, _not_a_header(cells))
        return None
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        out.fail(line, "; ".join(f"column {name!r} appears more than once" for name in repeated))
        return None
    unknown = [name for name in names if name and name not in COLUMNS]
    if unknown:
        shown = ", ".join(_show(name) for name in unknown)
        out.fail(line, f"unknown column{'s' if len(unknown) > 1 else ''} {shown}; expected {_EXPECTED}")
    index = {name: i for i, name in enumerate(names) if name in COLUMNS}
    ignored = frozenset(i for i, name in enumerate(names) if name in unknown)
    return _Header(index, ignored)


def _row_values(cells: list[str], header: _Header) -> tuple[dict[str, str], list[str]]:
    """A row's values by column (missing trailing cells are empty), and a problem for a stray value."""
    values = {name: cells[i] if i < len(cells) else "" for name, i in header.index.items()}
    known = set(header.index.values()) | header.ignored
    stray = [i for i, cell in enumerate(cells) if i not in known and cell.strip()]
    return values, [f"value in an unknown column {stray[0] + 1}"] if stray else []


def parse_csv(data: bytes) -> OffboardFile:
    """Read and validate a whole offboarding CSV file; raises InvalidOffboardFile listing every problem."""
    out = _Collector(unit="line")
    records = _records(_decode(data))
    first = next(records, None)
    if first is None:
        out.fail(0, "no rows: the file is empty")
    elif first.error is not None:
        out.fail(first.line, f"cannot read the header: {first.error}")
    elif (header := _read_header(first.cells, first.line, out)) is not None:
        _read_rows(records, header, out)
    return out.result("the file has a header but no data rows")


def _read_rows(records: Iterator[_Record], header: _Header, out: _Collector) -> None:
    """Check every data record after the header into `out`; stops early past MAX_ROWS."""
    for record in records:
        if out.rows >= MAX_ROWS:
            raise _too_many("line")
        if record.error is not None:
            out.bad_row(record.line, record.error)
            continue
        values, problems = _row_values(record.cells, header)
        out.add(record.line, values, problems)


# ---------------------------------------------------------------------------------------------------------
# JSON


def _item_values(item: dict[object, object]) -> tuple[dict[str, str], list[str]]:
    """One JSON object's values as strings, and why any key or value is unacceptable."""
    values: dict[str, str] = {}
    problems: list[str] = []
    unknown = [str(key) for key in item if key not in COLUMNS]
    if unknown:
        shown = ", ".join(_show(key) for key in unknown)
        problems.append(f"unknown key{'s' if len(unknown) > 1 else ''} {shown}; expected {_EXPECTED}")
    for key in COLUMNS:
        value = item.get(key)
        if value is None:  # absent or null: the key gives nothing, as an empty CSV cell
            continue
        if isinstance(value, str):
            values[key] = value
        elif key in ("user_id", "group_id") and isinstance(value, int) and not isinstance(value, bool):
            values[key] = str(value)
        else:
            kind = "a string or a whole number" if key in ("user_id", "group_id") else "a string"
            problems.append(f"{key} must be {kind}, not {_json_type(value)}")
    return values, problems


def _json_type(value: object) -> str:
    """A JSON value's type, as a person reading the problem would call it."""
    names = {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "a list",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def parse_json(items: object) -> OffboardFile:
    """Validate a decoded JSON body (a list of objects keyed like the CSV columns); raises InvalidOffboardFile."""
    if not isinstance(items, list):
        raise refusal(
            [RowProblem(0, f"must be a list of objects such as [{{\"user_login\": \"a@example.com\"}}], "
                           f"not {_json_type(items)}")],
            unit="item",
        )
    if len(items) > MAX_ROWS:
        raise _too_many("item")
    out = _Collector(unit="item")
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            out.bad_row(number, f"must be an object such as {{\"user_login\": \"a@example.com\"}}, "
                                f"not {_json_type(item)}")
            continue
        values, problems = _item_values(item)
        out.add(number, values, problems)
    return out.result("the list is empty")
