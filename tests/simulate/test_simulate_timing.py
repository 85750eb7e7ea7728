"""Timing models place sessions where their parameters say."""

from __future__ import annotations

import itertools
import random

from sensor.simulate.spec import Timing, TimingModel
from sensor.simulate.timing import session_times

US = 1_000_000


def test_burst_stays_inside_its_window() -> None:
    t = Timing(TimingModel.BURST, rate_per_hour=3600, start_s=100, length_s=200)
    times = session_times(random.Random(1), t, 1000, 0)
    assert 120 < len(times) < 280
    assert all(100 * US <= x <= 300 * US for x in times)
    assert times == sorted(times)


def test_steady_spacing_and_late_start() -> None:
    t = Timing(TimingModel.STEADY, interval_s=60, jitter=0.0, start_s=300)
    times = session_times(random.Random(2), t, 900, 0)
    assert len(times) in (10, 11) and times[0] >= 300 * US
    gaps = {b - a for a, b in itertools.pairwise(times)}
    assert gaps == {60 * US}


def test_low_and_slow_is_rare_and_irregular() -> None:
    t = Timing(TimingModel.LOW_AND_SLOW, interval_s=300)
    times = session_times(random.Random(3), t, 3600, 0)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 6 <= len(times) <= 24 and max(gaps) - min(gaps) > 60 * US


def test_diurnal_is_busier_at_the_peak_hour() -> None:
    t = Timing(TimingModel.DIURNAL, rate_per_hour=2000, peak_hour=14, trough_ratio=0.1)
    day = 86400.0
    peak = session_times(random.Random(4), t, 3600, day + 13.5 * 3600)
    night = session_times(random.Random(4), t, 3600, day + 2 * 3600)
    assert len(peak) > 3 * len(night)
