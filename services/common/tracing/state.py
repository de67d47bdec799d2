"""Whether this process records traces: the one flag every hook checks, importable without
the SDK (a process with traces off never loads it)."""

from __future__ import annotations

_on = False


def active() -> bool:
    """True once setup.configure installed the SDK's provider in this process."""
    return _on


def switch_on() -> None:
    global _on
    _on = True
