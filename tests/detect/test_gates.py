"""Rule gates are necessary conditions: whenever a rule fires on some features, its gate passes."""

from __future__ import annotations

from dataclasses import fields
from itertools import combinations_with_replacement

import pytest
from detfactory import config
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.config import Config
from sensor.detect.gates import GATES, CompiledGate, Counts, compile_gate, count_index
from sensor.detect.rules import RULES
from sensor.features.schema import DISTINCT, SUMS, WINDOW_FIELDS, WINDOW_PREFIXES
from sensor.records import HostFeatures, WindowFeatures

CFG = config()
# thresholds low enough that random small counts often make rules fire
LOW = config('[rules.spambot]\nburst_mail_from = 2\nmx_hosts = 2\nrefusal_min_conns = 2\n'
             'slow_mail_from = 2\nslow_mx_hosts = 2\n[rules.auth_bruteforce]\nfailures = 2\n'
             'users = 2\nusers_min_failures = 1\n[rules.spam_source]\nmin_traits = 1\n'
             'reject_min_rcpts = 1\n[rules.dictionary_harvest]\nunknown_rcpts = 1\n')
NAMES = [f.name for f in fields(WindowFeatures)]
COUNT_NAMES = {count_index(n): n for n in (*SUMS, *DISTINCT) if n in WINDOW_FIELDS}

VALUES = [0.0] * 6 + [0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 25.0]  # mostly zero: one signal at a time
windows = st.builds(lambda vals: WindowFeatures(*vals),
                    st.lists(st.sampled_from(VALUES), min_size=len(NAMES), max_size=len(NAMES)))


def counts_of(f: HostFeatures) -> Counts:
    per_window = (f.short, f.medium, f.long)

    def counts(w: int, i: int) -> float:
        return float(getattr(per_window[w], COUNT_NAMES[i]))
    return counts


@settings(max_examples=300, deadline=None)
@given(short=windows, medium=windows, long=windows, home=st.booleans(), mta=st.booleans(),
       scalars=st.lists(st.sampled_from([0.0, 1.0, 3.0, 30.0]), min_size=6, max_size=6),
       low=st.booleans())
def test_a_rule_that_fires_always_passes_its_gate(
        short: WindowFeatures, medium: WindowFeatures, long: WindowFeatures, home: bool,
        mta: bool, scalars: list[float], low: bool) -> None:
    cfg = LOW if low else CFG
    f = HostFeatures("10.20.4.10", 5000.0, home, mta, 1000.0, short, medium, long,
                     4950.0, 4500.0, 1400.0, scalars[0], scalars[1], scalars[2], scalars[3],
                     ("C1",), scalars[4], scalars[5])
    for name, rule in RULES.items():
        gate = compile_gate(GATES[name], cfg.rules[name])
        if rule(f, cfg.rules[name], cfg.windows) is not None:
            assert gate.passes(counts_of(f), home, mta), name


RATIOS = {"reject_ratio", "unknown_ratio", "helo_bad_share", "tls_share", "foreign_share",
          "failed_ratio", "interarrival_cv"}


@pytest.mark.parametrize("cfg", [CFG, LOW], ids=["default", "low"])
def test_rules_firing_on_one_or_two_signals_pass_their_gates(cfg: Config) -> None:
    """Every pair of fields at a high value, in every window and role: each branch of a rule."""
    fired = 0
    for a, b in combinations_with_replacement(NAMES, 2):
        values = {n: (1.0 if n in RATIOS else 1000.0) for n in (a, b)}
        w = WindowFeatures(*[values.get(n, 0.0) for n in NAMES])
        for home, mta in ((True, False), (True, True), (False, False)):
            f = HostFeatures("10.20.4.10", 5000.0, home, mta, 1000.0, w, w, w, 4950.0,
                             4500.0, 1400.0, 30.0, 30.0, 30.0, 4000.0, ("C1",), 30.0,
                             30.0)
            for name, rule in RULES.items():
                if rule(f, cfg.rules[name], cfg.windows) is not None:
                    fired += 1
                    gate = compile_gate(GATES[name], cfg.rules[name])
                    assert gate.passes(counts_of(f), home, mta), (name, a, b, home, mta)
    assert fired > 1000


def test_every_rule_has_a_gate_on_known_counts_and_windows() -> None:
    assert set(GATES) == set(RULES)
    for name, gate in GATES.items():
        compiled = compile_gate(gate, CFG.rules[name])
        assert isinstance(compiled, CompiledGate)
        for need in gate.needs:
            assert need.count in SUMS or need.count in DISTINCT
            assert CFG.rules[name].word(need.window_key) in WINDOW_PREFIXES


def test_gate_checks_roles_then_counts() -> None:
    gate = compile_gate(GATES["spambot"], CFG.rules["spambot"])
    many = {count_index("ext_mail_from"): 100.0}

    def counts(w: int, i: int) -> float:
        return many.get(i, 0.0)
    assert gate.passes(counts, True, False)
    assert not gate.passes(counts, False, False)  # outside home_net
    assert not gate.passes(counts, True, True)  # an authorised MTA
    assert not gate.passes(lambda w, i: 0.0, True, False)  # nothing near a threshold
