"""The committed openapi.json is exactly what the gateway serves."""

from __future__ import annotations

import json
from pathlib import Path

from scripts.export_openapi import served_document

ROOT = Path(__file__).resolve().parents[2]


def test_committed_openapi_matches_the_served_one() -> None:
    committed = (ROOT / "openapi.json").read_text()
    assert committed == served_document(), \
        "openapi.json is stale: run .venv/bin/python scripts/export_openapi.py"


def test_errors_are_documented_as_problem_json() -> None:
    document = json.loads(served_document())
    for path, operations in document["paths"].items():
        for verb, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses, (verb, path)
            for status, response in responses.items():
                if status[0] in "45":
                    assert list(response["content"]) == ["application/problem+json"], \
                        (verb, path, status)
