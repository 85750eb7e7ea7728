"""Session start times of one simulated host under a timing model, in packet-time microseconds."""

from __future__ import annotations

import math
import random

from sensor.simulate.spec import Timing, TimingModel

MAX_SESSIONS_PER_HOST = 200_000  # hard cap whatever rate a scenario asks for
LOW_AND_SLOW_MIN_JITTER = 0.5  # low-and-slow senders randomise their spacing at least this much
_US = 1_000_000


def _diurnal_factor(timing: Timing, epoch_s: float) -> float:
    hour = (epoch_s % 86400) / 3600.0
    wave = 0.5 + 0.5 * math.cos(2 * math.pi * (hour - timing.peak_hour) / 24.0)
    return timing.trough_ratio + (1.0 - timing.trough_ratio) * wave


def session_times(rng: random.Random, timing: Timing, duration_s: float,
                  start_epoch: float) -> list[int]:
    """Offsets (µs from the capture start) at which one host opens its sessions."""
    begin = min(timing.start_s, duration_s)
    end = duration_s if timing.length_s is None else min(duration_s, begin + timing.length_s)
    out: list[int] = []
    if end <= begin:
        return out
    model = timing.model
    if model in (TimingModel.STEADY, TimingModel.LOW_AND_SLOW):
        jitter = timing.jitter
        if model is TimingModel.LOW_AND_SLOW:
            jitter = max(jitter, LOW_AND_SLOW_MIN_JITTER)
        t = begin + rng.uniform(0.0, timing.interval_s)
        while t < end and len(out) < MAX_SESSIONS_PER_HOST:
            out.append(int(t * _US))
            t += timing.interval_s * (1.0 + jitter * rng.uniform(-1.0, 1.0))
        return out
    rate = timing.rate_per_hour / 3600.0
    if rate <= 0:
        return out
    t = begin
    while len(out) < MAX_SESSIONS_PER_HOST:
        t += rng.expovariate(rate)
        if t >= end:
            break
        if model is TimingModel.DIURNAL and rng.random() > _diurnal_factor(
                timing, start_epoch + t):
            continue
        out.append(int(t * _US))
    return out
