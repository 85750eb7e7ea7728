"""The documented exceptions to parity with other tools (tests/parity_exceptions.toml)."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

_FILE = Path(__file__).with_name("parity_exceptions.toml")


@cache
def _entries() -> tuple[tuple[str, str, str, str], ...]:
    data = tomllib.loads(_FILE.read_text(encoding="utf-8"))
    out = []
    for e in data.get("exception", []):
        assert e.get("reason", "").strip(), f"{_FILE}: every exception needs a reason: {e}"
        out.append((e["tool"], e["test"], e["trace"], e["field"]))
    return tuple(out)


def is_excepted(tool: str, test: str, trace: str, field: str) -> bool:
    """Whether this disagreement is documented, with a reason, in the exceptions file."""
    return (tool, test, trace, field) in _entries()
