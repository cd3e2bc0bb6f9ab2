"""Command line: run a boxsim server until SIGINT or SIGTERM (`python -m boxsim --help`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from boxsim.config import SimConfig
from boxsim.sim import BoxSim

DEFAULT_PORT = 8765


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for the boxsim command."""
    parser = argparse.ArgumentParser(prog="boxsim", description="Run a local SIMULATED Box API.")
    defaults = SimConfig()
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--seed", type=Path, help="seed JSON file (default: the bundled seed)")
    parser.add_argument("--users", type=int, default=0, help="generate N users (added after any --seed)")
    parser.add_argument("--groups", type=int, default=0, help="generate N groups over the generated users")
    parser.add_argument("--rate-limit-per-minute", type=int, default=0, help="per token; 0 = off")
    parser.add_argument("--token-ttl", type=int, default=defaults.token_ttl_seconds, help="seconds")
    parser.add_argument("--client-id", default=defaults.client_id)
    parser.add_argument("--client-secret", default=defaults.client_secret)
    parser.add_argument("--enterprise-id", default=defaults.enterprise_id)
    parser.add_argument("--developer-token", help="a fixed access token to accept as well")
    parser.add_argument("--jwt-public-key", type=Path, help="PEM public key that verifies JWT assertions")
    parser.add_argument("--jwt-public-key-id", help="the kid JWT assertions must carry")
    parser.add_argument("--faults", type=Path, help="JSON file holding a list of fault rules to queue")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="INFO logs one line per request",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """Turn parsed arguments into a SimConfig."""
    public_key = args.jwt_public_key.read_text(encoding="utf-8") if args.jwt_public_key else None
    return SimConfig(
        host=args.host,
        port=args.port,
        client_id=args.client_id,
        client_secret=args.client_secret,
        enterprise_id=args.enterprise_id,
        jwt_public_key_pem=public_key,
        jwt_public_key_id=args.jwt_public_key_id,
        developer_token=args.developer_token,
        token_ttl_seconds=args.token_ttl,
        rate_limit_per_minute=args.rate_limit_per_minute,
        seed_file=args.seed,
        generate_users=args.users,
        generate_groups=args.groups,
    )


def load_fault_file(path: Path) -> list[dict[str, Any]]:
    """Read a JSON list of fault rules."""
    rules = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(rules, list):
        raise ValueError(f"{path}: expected a JSON list of fault rules")
    return rules


def write_port_file(path: Path, port: int) -> None:
    """Write the port atomically, so a tool polling for the file never reads half of it."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(f"{port}\n", encoding="utf-8")
    os.replace(partial, path)


def serve_until_signalled(sim: BoxSim, port_file: Path | None) -> None:
    """Serve until SIGINT or SIGTERM arrives, then stop cleanly (and remove the port file)."""
    stopping = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        """Ask the main loop to stop; the real work happens outside the signal handler."""
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        if port_file:
            write_port_file(port_file, sim.port)
        print(f"boxsim (SIMULATED Box API) listening on {sim.base_url}", flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        sim.stop()
        if port_file:
            port_file.unlink(missing_ok=True)  # a stale port file would point tools at nothing


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until SIGINT or SIGTERM; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        sim = BoxSim(config_from_args(args))
        if args.faults:
            sim.add_faults(load_fault_file(args.faults))
    except (OSError, ValueError) as exc:  # unreadable files, bad seed, key or fault rules
        parser.error(str(exc))
    try:
        sim.start()
    except OSError as exc:
        print(f"boxsim: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    serve_until_signalled(sim, args.port_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
