"""Capture stage: sources of raw frames (ts, linktype, data) from files or a live interface."""

from sensor.capture.bpf import build_filter
from sensor.capture.common import Frame
from sensor.capture.live import LiveSource
from sensor.capture.source import check_file, open_files

__all__ = ["Frame", "LiveSource", "build_filter", "check_file", "open_files"]
