"""The operator console: server-rendered pages under `/console` of the intake (docs/console.md)."""

from worker.console.app import add_console
from worker.console.deps import ConsoleDeps

__all__ = ["ConsoleDeps", "add_console"]
