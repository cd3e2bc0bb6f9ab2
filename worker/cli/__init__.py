"""The `boxcut` command line: the top layer, which builds every other part from settings and runs it."""

from worker.cli.commands import main

__all__ = ["main"]
