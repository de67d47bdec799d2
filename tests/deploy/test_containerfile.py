"""deploy/Containerfile, without a container engine (none runs here): hadolint has nothing to
say, its stages are as the README promises (same slim Python 3.11 base, a numeric non-root
user, the `portico` entrypoint, no health check, nothing but the environment taken from the
build stage), it copies exactly what pyproject builds the package from, and the wheel built from
those files alone holds every module and data file, with the `portico` command whose
subcommands the manifests run."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.deploy.tools import CONTAINERFILE, ROOT, hadolint, run


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in (raw.strip() for raw in text.splitlines())
            if line and not line.startswith("#")]


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        found[-1].append(instruction)
    return found


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_hadolint_has_nothing_to_say() -> None:
    done = run(hadolint(), "--no-color", str(CONTAINERFILE))
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_stages_share_the_slim_python_base_and_the_last_runs_portico_as_a_numeric_user():
    build, final = stages()
    bases = [stage[0][1].split()[0] for stage in (build, final)]
    assert bases[0] == bases[1] and re.fullmatch(r"\S+/python:3\.11[.\d]*-slim-\w+", bases[0])
    assert build[0][1].endswith(" AS build")
    last = dict(final)
    assert last["ENTRYPOINT"] == '["portico"]'
    assert pyproject()["project"]["scripts"]["portico"] == "services.cli:main"
    assert re.fullmatch(r"\d+:\d+", last["USER"]) and not last["USER"].startswith("0:")
    assert last["HEALTHCHECK"] == "NONE"
    # From the build stage, the environment only: no compiler, no source, no pip cache.
    copies = [args for name, args in final if name == "COPY"]
    assert copies == ["--from=build /opt/portico /opt/portico"]
    assert not any(re.search(r"apt-get|apk |gcc|build-essential", args)
                   for name, args in final if name == "RUN")


def _copied() -> list[str]:
    (build, _) = stages()
    sources = []
    for name, args in build:
        if name == "COPY":
            sources += args.split()[:-1]
    return [source.rstrip("/") for source in sources]


def _package_roots() -> list[str]:
    """The folders holding what pyproject's packages.find includes, relative to the root."""
    find = pyproject()["tool"]["setuptools"]["packages"]["find"]
    roots = []
    for where in find["where"]:
        base = ROOT / where
        for child in sorted(base.iterdir()):
            # Packages (a local portico.egg-info matches portico* too, and holds no module).
            if child.is_dir() and any(fnmatch.fnmatch(child.name, pattern)
                                      for pattern in find["include"]) \
                    and next(child.rglob("*.py"), None):
                roots.append(str(child.relative_to(ROOT)))
    return roots


def test_it_copies_what_pyproject_builds_from_and_dockerignore_lets_it_in() -> None:
    copied = _copied()
    needed = {"pyproject.toml", pyproject()["project"]["readme"]}
    for root in _package_roots():  # gateway, services, generated/portico
        needed.add(root.split("/")[0])
    assert set(copied) == needed
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:] and all(f"!{path}" in ignore or f"!{path}/" in ignore
                                                  for path in copied)


def _wheel(tmp_path: Path) -> zipfile.ZipFile:
    """The wheel pip builds in the build stage, from the copied files alone."""
    context = tmp_path / "context"
    for source in _copied():
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, context / source,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            context.mkdir(exist_ok=True)
            shutil.copy2(origin, context / source)
    out = tmp_path / "wheel"
    done = run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
               "--no-build-isolation", "--wheel-dir", str(out), str(context), timeout=180)
    if done.returncode != 0 and "No module named" in done.stderr:
        pytest.skip(f"cannot build a wheel without isolation here: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr
    (wheel,) = out.glob("portico-*.whl")
    return zipfile.ZipFile(wheel)


def test_the_wheel_of_the_copied_files_holds_every_module_data_file_and_the_command(
        tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    names = set(wheel.namelist())
    data = tuple(pattern.lstrip("*") for pattern in
                 pyproject()["tool"]["setuptools"]["package-data"]["*"])
    for root in _package_roots():
        prefix = Path(root).parent  # generated/portico is `portico` in the wheel
        for path in (ROOT / root).rglob("*"):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            if path.suffix == ".py" or path.name.endswith(data) or "static" in path.parts:
                assert str(path.relative_to(ROOT / prefix)) in names, path
    (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    assert "portico = services.cli:main" in wheel.read(entry_points).decode()


@pytest.mark.parametrize("command", [["gateway", "--help"], ["service", "--help"],
                                     ["migrate", "--help"], ["--help"]])
def test_the_entrypoint_and_its_commands_answer(command: list[str]) -> None:
    portico = Path(sys.executable).parent / "portico"
    done = run(str(portico), *command, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: portico")
    # The commands the Containerfile's header shows are these.
    if command[0] != "--help":
        assert f"portico {command[0]}" in CONTAINERFILE.read_text()


def test_hadolint_would_speak_up() -> None:
    """hadolint's silence above means something: it does flag an unpinned, cached pip."""
    done = run(hadolint(), "--no-color", "--format", "json", "-",
               input="FROM python\nRUN pip install requests\n")
    assert {finding["code"] for finding in json.loads(done.stdout)} >= {"DL3006", "DL3013"}
