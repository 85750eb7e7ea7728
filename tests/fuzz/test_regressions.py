"""Every input a fuzzer ever broke a target with, replayed on the installed (compiled) build."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.harnesses import TARGETS

SAVED = Path(__file__).resolve().parent.parent / "data" / "fuzz"
CASES = sorted(p for p in SAVED.rglob("*") if p.is_file() and p.name != "README.md")


def test_saved_inputs_belong_to_a_target() -> None:
    assert CASES, f"no saved input under {SAVED}"
    assert {p.parent.name for p in CASES} <= set(TARGETS)


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.name}" for p in CASES])
def test_saved_input_passes(path: Path) -> None:
    TARGETS[path.parent.name](path.read_bytes())
