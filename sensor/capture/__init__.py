"""Capture stage: sources of raw frames (ts, linktype, data) from files or a live interface."""
