"""The operator console: server-rendered pages under `/console` of the intake (docs/console.md)."""

from worker.console.app import ConsoleDeps, add_console

__all__ = ["ConsoleDeps", "add_console"]
