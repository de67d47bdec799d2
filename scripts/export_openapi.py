"""Writes the OpenAPI document the gateway serves to openapi.json (committed; a test fails when
the served document drifts from it). Run: .venv/bin/python scripts/export_openapi.py"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.app import create_app  # noqa: E402
from gateway.settings import GatewaySettings  # noqa: E402


def served_document() -> str:
    """The document as the app serves it; the key is a throwaway (it is not in the document)."""
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "public.pem"
        key.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        app = create_app(GatewaySettings(jwt_public_key_file=key, access_log=False,
                                         state_dir=Path(tmp)))
        return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    (ROOT / "openapi.json").write_text(served_document())
    print("wrote openapi.json")
