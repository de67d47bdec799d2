"""The layout's rules: the services never import the gateway nor the development stack, and no
file of the project names a document that is not in the project."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_services_import_neither_the_gateway_nor_the_development_stack():
    offenders = {
        str(path.relative_to(ROOT)): sorted(name for name in imported_modules(path)
                                           if name.split(".")[0] in ("gateway", "scripts"))
        for path in (ROOT / "services").rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_gateway_never_imports_the_development_stack():
    for path in (ROOT / "gateway").rglob("*.py"):
        assert not any(name.startswith("scripts") for name in imported_modules(path)), path


def test_no_file_names_a_document_outside_the_project():
    outside = ("DESIGN" + ".md", "STYLE" + ".md")
    tracked = [p for p in ROOT.rglob("*") if p.is_file() and not _ignored(p)]
    named = [str(p.relative_to(ROOT)) for p in tracked
             if any(doc.encode() in p.read_bytes() for doc in outside)]
    assert named == []


def _ignored(path: Path) -> bool:
    parts = path.relative_to(ROOT).parts
    return parts[0] in (".venv", ".git", ".portico", "bench-results") or "__pycache__" in parts \
        or parts[0].endswith(".egg-info") or path.suffix in (".png", ".pyc")
