"""Files several processes may race to create (development keys, the CA, passwords): written
whole to a temporary file first, so no reader ever sees half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def create_once(path: Path, content: bytes, *, mode: int) -> None:
    """Creates `path` with `content` unless it exists. Two processes racing here end up with one
    file: link() never replaces, so the first to link wins and the other's content is dropped
    (read the file afterwards to get the winner's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _written(path, content, mode=mode)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)


def write_atomically(path: Path, content: bytes, *, mode: int) -> None:
    """Writes `path` whole or not at all (replacing what is there)."""
    temporary = _written(path, content, mode=mode)
    try:
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _written(path: Path, content: bytes, *, mode: int) -> str:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
    except BaseException:
        os.unlink(temporary)
        raise
    return temporary
