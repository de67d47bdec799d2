"""generated/ is exactly what scripts/gen_protos.sh makes from protos/ (byte for byte)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _files(top: Path) -> dict[str, bytes]:
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / "gen_protos.sh"), "--out", str(tmp_path)],
                   check=True, cwd=ROOT, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    fresh, committed = _files(tmp_path), _files(ROOT / "generated")
    assert fresh.keys() == committed.keys(), "run scripts/gen_protos.sh and commit generated/"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated files {stale}: run scripts/gen_protos.sh"


def test_descriptor_set_for_transcoders(tmp_path: Path) -> None:
    """The descriptor set (with google.api.http options) that a standard transcoder reads."""
    from google.protobuf import descriptor_pb2

    target = tmp_path / "portico.pb"
    subprocess.run([str(ROOT / "scripts" / "gen_protos.sh"), "--out", str(tmp_path / "g"),
                    "--descriptor", str(target)], check=True, cwd=ROOT,
                   env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    files = descriptor_pb2.FileDescriptorSet.FromString(target.read_bytes()).file
    names = {f.name for f in files}
    assert {"portico/user/v1/user.proto", "portico/product/v1/product.proto",
            "portico/order/v1/order.proto", "google/api/annotations.proto"} <= names
