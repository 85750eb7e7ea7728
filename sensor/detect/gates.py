"""Cheap necessary conditions per rule, checked on raw window counts before any feature snapshot."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from sensor.config import RuleConfig
from sensor.features.schema import DISTINCT_INDEX, SUM_INDEX, SUMS, WINDOW_PREFIXES


@dataclass(slots=True, frozen=True)
class Need:
    """A count a rule compares: it can only fire (on this branch) when count >= threshold."""

    window_key: str  # the rule's config key naming the window ("window", "burst_window", ...)
    count: str  # a running sum (sensor.features.schema.SUMS) or distinct count (DISTINCT)
    threshold_key: str | None  # the rule's config key of the threshold; None: the count is > 0


@dataclass(slots=True, frozen=True)
class Gate:
    """What must hold for a rule to fire: host roles, and at least `min_key` (1 when None) needs.

    A gate is a necessary condition only: passing it says the rule may fire, not that it will.
    A gate without needs always passes (the rule's inputs are not window counts)."""

    home: bool | None = None  # host must be in home_net (True), outside it (False), or either
    not_mta: bool = False  # host must not be an authorised mail server
    needs: tuple[Need, ...] = ()
    min_key: str | None = None  # config key of how many needs must hold (default 1)
    weight_key: str | None = None  # config key of the most one need can count for (default 1)


GATES: dict[str, Gate] = {
    "spambot": Gate(home=True, not_mta=True, needs=(
        Need("burst_window", "ext_mail_from", "burst_mail_from"),
        Need("mx_window", "ext_dst_ips", "mx_hosts"),
        Need("refusal_window", "ext_conns", "refusal_min_conns"),
        Need("slow_window", "ext_mail_from", "slow_mail_from"))),
    "auth_bruteforce": Gate(needs=(Need("window", "auth_failures", "failures"),
                                   Need("window", "auth_failures", "users_min_failures"))),
    "compromised_account": Gate(),
    "open_relay": Gate(home=True, needs=(Need("window", "srv_relay_rcpts", "relay_rcpts"),)),
    "relay_abuse": Gate(home=False, needs=(Need("window", "relay_rcpts", "relay_rcpts"),)),
    "dictionary_harvest": Gate(needs=(Need("window", "rcpt_unknown", "unknown_rcpts"),)),
    "spam_source": Gate(home=False, min_key="min_traits", weight_key="strong_weight", needs=(
        Need("window", "blocked", None), Need("window", "pregreet", None),
        Need("window", "helo_forged", None), Need("window", "helo_bad", None),
        Need("window", "rcpts", "reject_min_rcpts"))),
    "plaintext_auth": Gate(needs=(Need("window", "auth_clear_ext_success", "successes"),)),
    "starttls_downgrade": Gate(needs=(Need("window", "stripped_starttls", "stripped"),)),
    "protocol_abuse": Gate(needs=(Need("window", "non_smtp", "non_smtp"),
                                  Need("window", "abuse_anomalies", "violations"))),
    "stolen_credential_submission": Gate(home=True, not_mta=True, needs=(
        Need("window", "auth_clear_tls_offered", "clear_auth_sessions"),)),
}
"""Every rule's gate by its config section name; each mirrors the comparisons of the rule."""

Counts = Callable[[int, int], float]
"""(window index, count index) -> value; count index: SUMS first, then DISTINCT after them."""


def count_index(name: str) -> int:
    """The index of a running sum or distinct count in the Counts index space."""
    if name in SUM_INDEX:
        return SUM_INDEX[name]
    return len(SUMS) + DISTINCT_INDEX[name]


@dataclass(slots=True, frozen=True)
class CompiledGate:
    """A gate with the config's windows and thresholds resolved to indexes and numbers."""

    home: bool | None
    not_mta: bool
    needs: tuple[tuple[int, int, float, bool], ...]  # (window, count, threshold, strictly above)
    min_hits: float

    def passes(self, counts: Counts, in_home_net: bool, mail_server: bool) -> bool:
        """Whether the rule may fire for a host with these counts and roles."""
        return self.admits(in_home_net, mail_server) and self.counts_pass(counts)

    def admits(self, in_home_net: bool, mail_server: bool) -> bool:
        """Whether the rule may fire for a host with these roles, whatever its counts."""
        if self.home is not None and in_home_net != self.home:
            return False
        return not (self.not_mta and mail_server)

    def counts_pass(self, counts: Counts) -> bool:
        """Whether the counts meet the gate's needs (its roles checked apart, by `admits`)."""
        if not self.needs:
            return True
        hits = 0
        for w, i, threshold, strict in self.needs:
            value = counts(w, i)
            if value > threshold if strict else value >= threshold:
                hits += 1
                if hits >= self.min_hits:
                    return True
        return hits >= self.min_hits


def compile_gate(gate: Gate, cfg: RuleConfig) -> CompiledGate:
    """Resolve a gate against one rule's configuration."""
    needs = tuple(
        (WINDOW_PREFIXES.index(cfg.word(n.window_key)), count_index(n.count),
         0.0 if n.threshold_key is None else cfg.num(n.threshold_key), n.threshold_key is None)
        for n in gate.needs)
    min_hits = 1.0 if gate.min_key is None else cfg.num(gate.min_key)
    if gate.weight_key is not None:  # a need counting for w traits: ceil(min / w) needs suffice
        min_hits = float(math.ceil(min_hits / max(1.0, cfg.num(gate.weight_key))))
    return CompiledGate(gate.home, gate.not_mta, needs, min_hits)
