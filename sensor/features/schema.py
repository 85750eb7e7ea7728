"""The versioned feature schema: ordered names of the per-host vector the rules and model use."""

from __future__ import annotations

from dataclasses import fields

from sensor.records import HostFeatures, WindowFeatures

FEATURE_SCHEMA_VERSION = 2
"""Bumped on any rename, removal, reordering or change of meaning of a feature."""

# Window fields kept as running sums, in WindowFeatures order.
ADDITIVE: tuple[str, ...] = (
    "conns", "failed_conns", "refused_conns", "unanswered_conns", "reset_conns", "ext_conns",
    "ext_failed_conns", "sessions", "no_banner_sessions", "tls_sessions", "helo_bad",
    "helo_forged", "pregreet", "blocked", "abuse_anomalies", "non_smtp", "stripped_starttls",
    "mail_from", "ext_mail_from", "msgs", "msg_bytes", "bytes_out", "rcpts", "rcpt_accepted",
    "rcpt_4xx", "rcpt_5xx", "rcpt_unknown", "rcpt_foreign", "relay_rcpts", "auth_attempts",
    "auth_failures", "auth_successes", "auth_clear_ext_success", "srv_sessions",
    "srv_relay_rcpts", "srv_auth_failures",
    # v2: the server's verdicts on the host's mail, and when it works
    "data_rejects", "data_tempfails", "policy_refusals", "greylisted", "offhours_sessions",
)
# Running sums the derived features need but that are not features themselves.
HIDDEN: tuple[str, ...] = (
    "ia_n", "ia_sum", "ia_sumsq", "helo_sessions",
    "msg_rcpts", "msg_size_sumsq",  # v2: recipients of messages sent, sum of squared sizes
)
# Window fields counted as distinct values.
DISTINCT: tuple[str, ...] = (
    "dst_ips", "dst_24s", "ext_dst_ips", "helo_names", "rcpt_domains", "auth_users",
    "srv_relay_clients",
)
DERIVED: tuple[str, ...] = (
    "failed_ratio", "reject_ratio", "unknown_ratio", "tls_share", "foreign_share",
    "mean_msg_size", "interarrival_cv", "helo_bad_share",
    # v2
    "data_reject_share", "rcpts_per_msg", "msg_size_cv", "offhours_share",
)
SUMS = ADDITIVE + HIDDEN
SUM_INDEX = {name: i for i, name in enumerate(SUMS)}
DISTINCT_INDEX = {name: i for i, name in enumerate(DISTINCT)}
WINDOW_FIELDS = ADDITIVE + DISTINCT + DERIVED
AUTH_STATE_BIT = 1 << len(SUMS)
"""Set in a change mask when the failures-then-success state (rcpts/msgs after it) changed."""


def change_mask(names: tuple[str, ...]) -> int:
    """The bits of a change mask for running sums (and "auth_state") named."""
    mask = 0
    for name in names:
        mask |= AUTH_STATE_BIT if name == "auth_state" else 1 << SUM_INDEX[name]
    return mask
HOST_SCALARS: tuple[str, ...] = (
    "in_home_net", "mail_server", "auth_fails_before_success", "rcpts_after_auth_success",
    "msgs_after_auth_success",
)
WINDOW_PREFIXES = ("short", "medium", "long")
FEATURE_NAMES: tuple[str, ...] = HOST_SCALARS + tuple(
    f"{w}_{name}" for w in WINDOW_PREFIXES for name in WINDOW_FIELDS)
"""The model's input, in order: host scalars, then each window's fields (short, medium, long)."""

if tuple(f.name for f in fields(WindowFeatures)) != WINDOW_FIELDS:  # pragma: no cover
    raise RuntimeError("sensor.records.WindowFeatures does not match the feature schema")


def _window_values(w: WindowFeatures) -> list[float]:
    return [float(getattr(w, name)) for name in WINDOW_FIELDS]


def vector(f: HostFeatures) -> list[float]:
    """The host's features as floats in FEATURE_NAMES order."""
    out = [float(f.in_home_net), float(f.mail_server), f.auth_fails_before_success,
           f.rcpts_after_auth_success, f.msgs_after_auth_success]
    for w in (f.short, f.medium, f.long):
        out.extend(_window_values(w))
    return out

