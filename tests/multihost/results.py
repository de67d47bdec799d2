"""The figures each fault test measured: printed (pytest -s shows them) and appended to one
results file under the tier's temporary directory, whose path is printed too."""

from __future__ import annotations

import json
import time
from pathlib import Path


class Results:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# multi-host tier, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")

    def record(self, test: str, figures: dict[str, object]) -> None:
        """Prints `figures` under `test` and writes them to the file (one JSON line each)."""
        lines = [f"\n[multihost] {test}"]
        lines += [f"  {name}: {_shown(value)}" for name, value in figures.items()]
        lines.append(f"  (results: {self.path})")
        print("\n".join(lines), flush=True)
        with self.path.open("a") as file:
            file.write(json.dumps({"test": test, **figures}, default=str) + "\n")


def _shown(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
