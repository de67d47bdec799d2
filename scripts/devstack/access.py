"""How programs reach a running development stack: a certificate of its CA, the settings file
(`<state_dir>/stack.env`, mode 0600) that names its stores and instances, so that `portico
create-admin` or an internal job can be pointed at it (`set -a; . .portico/stack.env`), and the
summary `portico up` prints (without passwords)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from services.common import pki

if TYPE_CHECKING:
    from scripts.devstack.stack import Stack

ENV_FILE = "stack.env"
_SHARED = ("PORTICO_DATABASE_URL", "PORTICO_REDIS_URL", "PORTICO_MONGODB_URI",
           "PORTICO_MONGODB_DATABASE", "PORTICO_STATE_DIR", "PORTICO_USER_ADDRS",
           "PORTICO_PRODUCT_ADDRS", "PORTICO_ORDER_ADDRS")


def stack_tls(env: dict[str, str], identity: str = "devstack") -> pki.TlsMaterial:
    """TLS material of identity `identity` for a program talking to the stack's services: from
    the operator's files when PORTICO_MTLS_* name them, else from the development CA under the
    stack's state directory (made here when missing)."""
    def path(name: str) -> Path | None:
        value = env.get(f"PORTICO_MTLS_{name}_FILE")
        return Path(value) if value else None

    settings = SimpleNamespace(state_dir=Path(env["PORTICO_STATE_DIR"]),
                               mtls_ca_file=path("CA"), mtls_cert_file=path("CERT"),
                               mtls_key_file=path("KEY"))
    return pki.material(settings, identity)


def write_env_file(env: dict[str, str]) -> Path:
    """Writes the stack's shared settings (passwords included, hence 0600) for other programs."""
    path = Path(env["PORTICO_STATE_DIR"]) / ENV_FILE
    lines = [f"{key}={shlex.quote(env[key])}\n" for key in _SHARED if env.get(key)]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.writelines(lines)
    os.chmod(path, 0o600)
    return path


def redacted(url: str) -> str:
    """`url` without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()


def summary(stack: Stack) -> str:
    """Where everything listens, once the stack is ready."""
    lines = [f"portico: ready. gateway {stack.gateway_url}  (docs {stack.gateway_url}/docs)"]
    for name, addresses in stack.addresses.items():
        lines.append(f"  {name:8} gRPC {', '.join(addresses)}")
    for server in stack.databases:
        lines.append(f"  {type(server).__name__:15} {redacted(server.url)}")
    lines.append(f"Their settings, passwords included: {stack.config.state_dir}/{ENV_FILE} "
                 "(`set -a; . FILE; set +a` before `portico create-admin`, say).")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)
