"""`python -m tests.soak [--seconds 180] [--seed N] [...]`: a soak with faults, then its invariants; exits 1 when
any is broken (tests/soak/runner.py says what it does)."""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
from pathlib import Path

from tests.soak.faults import KINDS
from tests.soak.runner import run


def main() -> None:
    # A SIGTERM (a CI timeout, `kill`) ends the run as Ctrl-C does: the stack, its Redis servers and Sentinels are
    # stopped on the way out instead of left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180.0, help="how long the workload and faults run")
    parser.add_argument("--seed", type=int, default=None, help="the seed of the schedule (default: a new one, printed)")
    parser.add_argument("--rate", type=float, default=5.0, help="workload steps a second")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the run's logs and Redis files in this folder (default: a temporary one, removed)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between faults, on average")
    parser.add_argument("--only", default=",".join(KINDS), help="the fault kinds to draw, comma-separated")
    args = parser.parse_args()
    kinds = tuple(k.strip() for k in args.only.split(",") if k.strip())
    if args.seconds < 10 or args.rate <= 0 or args.every < 1:
        parser.error("--seconds must be at least 10, --rate positive and --every at least 1")
    if not kinds or set(kinds) - set(KINDS):
        parser.error(f"--only takes fault kinds among {', '.join(KINDS)}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**9)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
        violations = run(seconds=args.seconds, seed=seed, rate=args.rate, tmp=args.keep.resolve(), kinds=kinds,
                         every=args.every)
    else:
        with tempfile.TemporaryDirectory(prefix="boxcut-soak-") as tmp:
            violations = run(seconds=args.seconds, seed=seed, rate=args.rate, tmp=Path(tmp), kinds=kinds,
                             every=args.every)
    sys.exit(1 if violations else 0)


if __name__ == "__main__":
    main()
