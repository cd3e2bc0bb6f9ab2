"""How boxcut's processes log: JSON lines a SIEM can ship, or text for a person, with what a line is about.

`configure` sets the root logger of a process (worker, pool processes, beat, intake, CLI) to one handler:
JSON lines (python-json-logger) by default when stderr is not a terminal, text when it is, or as
`BOXCUT_LOG_FORMAT` says. `context(job_id=..., call_id=...)` names what the code inside it works on; every line
logged meanwhile, by boxcut, Celery or a library, carries those fields (JSON keys; `key=value` after a text
line). Context lives in a ContextVar, so threads and asyncio tasks keep their own.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_CONTEXT: ContextVar[dict[str, Any]] = ContextVar("boxcut_log_context", default={})  # noqa: B039 (never mutated)


@contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Fields every line logged inside carries (None values are left out); nested contexts add to outer ones."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def bind(**fields: Any) -> None:
    """Add fields until `unbind` (for code that starts and ends in separate callbacks, e.g. Celery's signals)."""
    _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})


def unbind(*names: str) -> None:
    _CONTEXT.set({k: v for k, v in _CONTEXT.get().items() if k not in names})


def fields() -> dict[str, Any]:
    """The context now (for tests and for code that hands it on)."""
    return dict(_CONTEXT.get())


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = _CONTEXT.get()
        record.context = context  # type: ignore[attr-defined]  # for the text formatter
        for name, value in context.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context: dict[str, Any] = getattr(record, "context", {})
        return line + "".join(f" {k}={v}" for k, v in context.items()) if context else line


def _json_formatter() -> logging.Formatter:
    # `time`: ISO 8601 in UTC, from the record's creation.
    return JsonFormatter("%(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level", "name": "logger"},
                         reserved_attrs=[*_RESERVED, "context"], timestamp="time")


# LogRecord's own attributes, kept out of the JSON unless named in the format (python-json-logger's default list).
_RESERVED = [*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "asctime", "taskName"]


def choose_format(wanted: str | None, stream: TextIO) -> str:
    """`wanted` when given, else text on a terminal and JSON elsewhere."""
    if wanted:
        return wanted
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def configure(*, level: str | int = "INFO", fmt: str | None = None, stream: TextIO | None = None) -> str:
    """Give the root logger one handler in the chosen format, replacing any; returns the format chosen."""
    stream = stream or sys.stderr
    chosen = choose_format(fmt, stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_json_formatter() if chosen == "json" else _TextFormatter(TEXT_FORMAT))
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)
    return chosen


# Libraries whose INFO lines are noise in an operator's output: Alembic says at import which plugins it set up
# (a log line on stderr after `boxcut status`), and each migration step (`boxcut migrate` says what it did).
QUIET_LIBRARIES = ("alembic",)
