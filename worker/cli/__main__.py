"""`python -m worker.cli`: the same program as `boxcut`."""

from worker.cli.commands import main

main()
