"""`python -m scripts.devstack`: the whole development stack in the foreground (what
`portico up` and `make up` run)."""

from __future__ import annotations

import argparse
import sys

from scripts.devstack.stack import run_stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="portico up",
                                     description="run the whole stack in the foreground")
    parser.add_argument("--port", type=int, default=8080, help="gateway port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--instances", type=int, default=2, help="instances of each service")
    parser.add_argument("--base-port", type=int, default=None,
                        help="first service port (user; product +10, order +20); 0: free ports")
    args = parser.parse_args(argv)
    try:
        return run_stack(port=args.port, instances=args.instances, host=args.host,
                         base_port=args.base_port)
    except KeyboardInterrupt:
        return 130
    except ValueError as error:
        print(f"portico: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
