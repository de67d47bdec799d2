"""The `portico` command: run a service, the gateway or the whole stack, migrate, make an admin,
issue a certificate of the development CA to an internal program, or watch a running gateway
(`portico top`)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from pathlib import Path

SERVICES = ("user", "product", "order")


def _service(args: argparse.Namespace) -> int:
    from services.common.logs import configure_logging
    from services.common.server import serve_until_signalled
    from services.common.settings import get_settings

    settings = get_settings()
    configure_logging(f"{args.name}-service", settings.log_level)
    _tracing(args.name)
    module = importlib.import_module(f"services.{args.name}.server")

    async def run() -> None:
        running, cleanup = await module.start(settings, host=args.host, port=args.port)
        await serve_until_signalled(running, grace=settings.grace_period_seconds,
                                    on_stop=cleanup)

    asyncio.run(run())
    return 0


def _tracing(name: str) -> None:
    """Traces, when the OTEL_* settings ask for them (services/common/tracing): before the
    service makes its store clients, which must be instrumented when they are made."""
    from services.common.tracing.setup import configure
    from services.common.tracing.stores import instrument_clients

    if configure(f"portico-{name}") is not None:
        instrument_clients()


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


def _create_admin(args: argparse.Namespace) -> int:
    from services.common.logs import configure_logging
    from services.common.settings import get_settings
    from services.user.server import create_admin

    settings = get_settings()
    configure_logging("create-admin", settings.log_level)
    password = settings.admin_password
    if not password:
        if sys.stdin.isatty():
            import getpass
            password = getpass.getpass("password of the new admin: ")
        else:
            password = sys.stdin.readline().rstrip("\n")
    user = create_admin(settings, email=args.email, password=password, name=args.name)
    print(f"admin {user.email} created with id {user.id}")
    return 0


def _cert_issue(args: argparse.Namespace) -> int:
    from services.common import pki
    from services.common.settings import get_settings

    settings = get_settings()
    if settings.mtls_cert_file is not None:
        raise ValueError("certificates of an operator's PKI are issued by that PKI; "
                         "`portico cert issue` signs with the development CA under "
                         "PORTICO_STATE_DIR")
    ca_cert, ca_key = pki.ensure_ca(settings.state_dir)
    cert, key = pki.issue(args.name, ca_cert_pem=ca_cert, ca_key_pem=ca_key,
                          hosts=args.host or (), days=args.days)
    for path in pki.write_issued(args.out, args.name, pki.TlsMaterial(ca_cert, cert, key)):
        print(path)
    return 0


def _gateway(argv: list[str]) -> int:
    # The gateway is a program of its own (`python -m gateway`): the services never import it.
    os.execv(sys.executable, [sys.executable, "-m", "gateway", *argv])


def _top(argv: list[str]) -> int:
    # A view of the gateway, part of it (gateway/top.py): a program of its own, like `gateway`.
    os.execv(sys.executable, [sys.executable, "-m", "gateway.top", *argv])


def _up(argv: list[str]) -> int:
    # The development stack lives in a checkout of the project (scripts/devstack), not in
    # the installed package: production runs the gateway and services on their own.
    root = Path(__file__).resolve().parents[1]
    if not (root / "scripts" / "devstack" / "__main__.py").is_file():
        raise ValueError("`portico up` runs the development stack of a checkout of Portico; "
                         "run `portico gateway` and `portico service NAME` instead")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)}
    os.execve(sys.executable, [sys.executable, "-m", "scripts.devstack", *argv], env)


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

    admin = commands.add_parser("create-admin", help="make an admin account (the password "
                                "from PORTICO_ADMIN_PASSWORD, else read from stdin)")
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", default=None, help="display name (default: from the email)")
    admin.set_defaults(run=_create_admin)

    cert = commands.add_parser("cert", help="certificates of the development CA")
    cert_commands = cert.add_subparsers(dest="cert_command", required=True)
    issue = cert_commands.add_parser(
        "issue", help="write ca.pem, NAME.pem and NAME-key.pem for a program of identity NAME")
    issue.add_argument("name", metavar="NAME", help="workload identity (spiffe://portico/NAME)")
    issue.add_argument("--out", type=Path, required=True, help="folder to write the files to")
    issue.add_argument("--host", action="append",
                       help="a host name or IP the program serves on (repeatable)")
    issue.add_argument("--days", type=int, default=90, help="validity (default 90 days)")
    issue.set_defaults(run=_cert_issue)

    # Programs of their own, handed the rest of the command line (see `main`).
    commands.add_parser("gateway", help="run the REST gateway (--port, --host, --workers)")
    commands.add_parser("top", help="watch a running gateway in this terminal "
                        "(--url, --token, --once)")
    commands.add_parser("up", help="run the whole development stack in the foreground "
                        "(--port, --host, --instances, --base-port)")
    return top


PROGRAMS = {"gateway": _gateway, "top": _top, "up": _up}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] in PROGRAMS:
            return PROGRAMS[argv[0]](argv[1:])
        args = parser().parse_args(argv)
        return args.run(args)
    except KeyboardInterrupt:
        return 130
    except ValueError as error:  # settings and arguments that fail validation
        print(f"portico: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        from services.common.errors import ServiceError
        if not isinstance(error, ServiceError):
            raise
        print(f"portico: {error.message}", file=sys.stderr)  # an email taken, say
        return 1


if __name__ == "__main__":
    sys.exit(main())
