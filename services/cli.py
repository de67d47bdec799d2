"""The `portico` command: run a service, the gateway or the whole stack, or migrate."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys

SERVICES = ("user", "product", "order")


def _service(args: argparse.Namespace) -> int:
    from services.common.logs import configure_logging
    from services.common.server import serve_until_signalled
    from services.common.settings import get_settings

    settings = get_settings()
    configure_logging(f"{args.name}-service", settings.log_level)
    module = importlib.import_module(f"services.{args.name}.server")

    async def run() -> None:
        running, cleanup = await module.start(settings, host=args.host, port=args.port)
        await serve_until_signalled(running, grace=settings.grace_period_seconds,
                                    on_stop=cleanup)

    asyncio.run(run())
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from services.common.logs import configure_logging
    from services.common.settings import get_settings

    settings = get_settings()
    configure_logging("migrate", settings.log_level)
    unknown = set(args.services) - set(SERVICES)
    if unknown:
        raise ValueError(f"no such service: {', '.join(sorted(unknown))}")
    for name in args.services or SERVICES:
        importlib.import_module(f"services.{name}.server").migrate(settings)
    return 0


def _gateway(args: argparse.Namespace) -> int:
    from gateway.run import run_gateway

    return run_gateway(host=args.host, port=args.port, workers=args.workers)


def _up(args: argparse.Namespace) -> int:
    from services.stack import run_stack

    return run_stack(port=args.port, instances=args.instances, host=args.host,
                     base_port=args.base_port)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="portico", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    service = commands.add_parser("service", help="run one instance of a gRPC service")
    service.add_argument("name", choices=SERVICES)
    service.add_argument("--port", type=int, required=True, help="port to listen on (0: any)")
    service.add_argument("--host", default="127.0.0.1")
    service.set_defaults(run=_service)

    migrate = commands.add_parser("migrate", help="bring the databases' schemas up to date")
    migrate.add_argument("services", nargs="*", metavar="SERVICE",
                         help=f"some of {', '.join(SERVICES)} (default: all)")
    migrate.set_defaults(run=_migrate)

    gateway = commands.add_parser("gateway", help="run the REST gateway")
    gateway.add_argument("--port", type=int, default=8080)
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--workers", type=int, default=1, help="gateway processes")
    gateway.set_defaults(run=_gateway)

    up = commands.add_parser("up", help="run the whole stack in the foreground")
    up.add_argument("--port", type=int, default=8080, help="gateway port")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--instances", type=int, default=2, help="instances of each service")
    up.add_argument("--base-port", type=int, default=None,
                    help="first service port (user; product +10, order +20); 0: free ports")
    up.set_defaults(run=_up)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130
    except ValueError as error:  # settings and arguments that fail validation
        print(f"portico: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
