"""docs/features.md documents every feature of the versioned schema."""

from __future__ import annotations

from pathlib import Path

from sensor.features.schema import FEATURE_SCHEMA_VERSION, HOST_SCALARS, WINDOW_FIELDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "features.md"


def test_every_feature_is_documented_with_a_meaning() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert f"Version **{FEATURE_SCHEMA_VERSION}**" in text
    rows = {line.split("`")[1]: line for line in text.splitlines() if line.startswith("| `")}
    for name in (*HOST_SCALARS, *WINDOW_FIELDS):
        assert name in rows, f"{name} missing from {DOC.name}"
        assert not rows[name].rstrip().endswith("|  |"), f"{name} has no meaning in {DOC.name}"
