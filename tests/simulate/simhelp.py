"""Helpers shared by the simulator tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sensor.simulate import builtin_names

SMALL = builtin_names()
SHORTENED = {"site-500": 240.0}  # the big scenario is cut to four minutes for the tests


@dataclass(frozen=True)
class Generated:
    """One generated capture with its labels and ground truth."""

    pcap: Path
    labels: Path
    truth: dict[str, Any]
