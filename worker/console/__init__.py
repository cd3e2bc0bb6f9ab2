"""The operator console: server-rendered pages under `/console` of the intake (README "The console")."""

from worker.console.app import ConsoleDeps, add_console

__all__ = ["ConsoleDeps", "add_console"]
