"""`python -m gateway`: the REST gateway (what `portico gateway` runs)."""

from __future__ import annotations

import argparse
import sys

from gateway.edge.server import run_gateway


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="portico gateway", description="run the REST gateway")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=1, help="gateway processes")
    args = parser.parse_args(argv)
    try:
        return run_gateway(host=args.host, port=args.port, workers=args.workers)
    except ValueError as error:  # settings that fail validation
        print(f"portico: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
