"""The versioned feature schema: ordered names of the per-host vector the rules and model use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from operator import attrgetter

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
    # stolen-credential submission: sessions across the home_net boundary
    "auth_clear_tls_offered", "auth_user_foreign", "helo_literal_other", "sloppy_paths",
    "reply_attach_msgs",
    # v2: the server's verdicts on the host's mail, and when it works
    "data_rejects", "data_tempfails", "policy_refusals", "greylisted", "offhours_sessions",
)
# Running sums the derived features need but that are not features themselves.
HIDDEN: tuple[str, ...] = (
    "ia_n", "ia_sum", "ia_sumsq", "helo_sessions",
    "msg_rcpts", "msg_size_sumsq",  # v2: recipients of messages sent, sum of squared sizes
    # failed connections that show capture loss, of each kind: the model does not count them
    # (LOSS_HIDDEN); the rules do
    "loss_refused_conns", "loss_unanswered_conns", "loss_reset_conns", "loss_ext_failed_conns",
)
LOSS_HIDDEN: dict[str, str] = {
    "refused_conns": "loss_refused_conns", "unanswered_conns": "loss_unanswered_conns",
    "reset_conns": "loss_reset_conns", "ext_failed_conns": "loss_ext_failed_conns",
}
"""Window fields whose model view leaves out the part a HIDDEN sum holds: connections that
look failed only because packets went uncaptured (sensor.features.extract.conn_event), which
the rules still count. failed_conns (and failed_ratio) leave out the first three."""
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
    "msgs_after_auth_success", "auth_own_fails_before_success", "burst_rcpts_after_auth_success",
)
WINDOW_PREFIXES = ("short", "medium", "long")
FEATURE_NAMES: tuple[str, ...] = HOST_SCALARS + tuple(
    f"{w}_{name}" for w in WINDOW_PREFIXES for name in WINDOW_FIELDS)
"""The model's input, in order: host scalars, then each window's fields (short, medium, long)."""

if tuple(f.name for f in fields(WindowFeatures)) != WINDOW_FIELDS:  # pragma: no cover
    raise RuntimeError("sensor.records.WindowFeatures does not match the feature schema")


_window_values: Callable[[WindowFeatures], tuple[float, ...]] = attrgetter(*WINDOW_FIELDS)


def vector(f: HostFeatures) -> list[float]:
    """The host's features as floats in FEATURE_NAMES order."""
    out = [float(f.in_home_net), float(f.mail_server), float(f.auth_fails_before_success),
           float(f.rcpts_after_auth_success), float(f.msgs_after_auth_success),
           float(f.auth_own_fails_before_success), float(f.burst_rcpts_after_auth_success)]
    for w in (f.short, f.medium, f.long):
        out.extend(map(float, _window_values(w)))
    return out


def base_name(feature: str) -> str:
    """A FEATURE_NAMES entry without its window prefix ("medium_msgs" -> "msgs")."""
    head, _, rest = feature.partition("_")
    return rest if head in WINDOW_PREFIXES and rest in WINDOW_FIELDS else feature


UNITS: tuple[str, ...] = ("count", "share", "bytes", "number")
"""Units of FEATURE_TEXT: a share is a 0..1 value (shown as a percentage)."""

FEATURE_TEXT: dict[str, tuple[str, str]] = {
    # host scalars (1.0 / 0.0 for the two roles)
    "in_home_net": ("is inside home_net ({v})", "number"),
    "mail_server": ("is an authorised mail server ({v})", "number"),
    "auth_fails_before_success": ("logged in after {v} AUTH failures (its own or for the user)",
                                  "count"),
    "rcpts_after_auth_success": ("sent to {v} recipients since logging in after failures",
                                 "count"),
    "msgs_after_auth_success": ("sent {v} messages since logging in after failures", "count"),
    "auth_own_fails_before_success": ("logged in after {v} AUTH failures of its own", "count"),
    "burst_rcpts_after_auth_success": (
        "sent to {v} recipients within 10 min of logging in after failures", "count"),
    # window fields: running sums
    "conns": ("opened {v} connections to SMTP servers", "count"),
    "failed_conns": ("had {v} connections refused, unanswered or reset", "count"),
    "refused_conns": ("had {v} connections refused (REJ)", "count"),
    "unanswered_conns": ("had {v} connections left unanswered", "count"),
    "reset_conns": ("had {v} connections reset before the banner", "count"),
    "ext_conns": ("opened {v} connections to external SMTP servers", "count"),
    "ext_failed_conns": ("had {v} connections to external servers fail", "count"),
    "sessions": ("held {v} SMTP sessions as a client", "count"),
    "no_banner_sessions": ("held {v} sessions without a server greeting", "count"),
    "tls_sessions": ("switched {v} sessions to TLS", "count"),
    "helo_bad": ("sent {v} bad HELO/EHLO names (bare word, invalid, or not its address)",
                 "count"),
    "helo_forged": ("claimed one of our domains in HELO {v} times from outside", "count"),
    "pregreet": ("talked before the banner in {v} sessions", "count"),
    "blocked": ("was refused as a listed sender in {v} sessions", "count"),
    "abuse_anomalies": ("committed {v} SMTP protocol violations", "count"),
    "non_smtp": ("spoke another protocol or injected commands in {v} sessions", "count"),
    "stripped_starttls": ("saw STARTTLS stripped from the EHLO reply in {v} sessions", "count"),
    "mail_from": ("sent {v} MAIL FROM commands", "count"),
    "ext_mail_from": ("sent {v} MAIL FROM commands to external servers", "count"),
    "msgs": ("sent {v} messages", "count"),
    "msg_bytes": ("sent {v} of message content", "bytes"),
    "bytes_out": ("sent {v} of SMTP payload", "bytes"),
    "rcpts": ("named {v} recipients (RCPT TO)", "count"),
    "rcpt_accepted": ("had {v} recipients accepted", "count"),
    "rcpt_4xx": ("had {v} recipients refused temporarily (4xx)", "count"),
    "rcpt_5xx": ("had {v} recipients refused permanently (5xx)", "count"),
    "rcpt_unknown": ("tried {v} unknown recipients", "count"),
    "rcpt_foreign": ("named {v} recipients outside our domains", "count"),
    "relay_rcpts": ("relayed to {v} foreign recipients through our server without AUTH",
                    "count"),
    "auth_attempts": ("tried AUTH {v} times", "count"),
    "auth_failures": ("failed AUTH {v} times", "count"),
    "auth_successes": ("logged in with AUTH {v} times", "count"),
    "auth_clear_ext_success": ("logged in {v} times in clear text across the home_net boundary",
                               "count"),
    "srv_sessions": ("served {v} SMTP sessions", "count"),
    "srv_relay_rcpts": ("relayed to {v} foreign recipients for outside clients without AUTH",
                        "count"),
    "srv_auth_failures": ("saw {v} AUTH failures of its clients", "count"),
    "data_rejects": ("had {v} messages refused after their content", "count"),
    "data_tempfails": ("had {v} messages deferred after their content", "count"),
    "policy_refusals": ("got {v} policy or security refusals (5.7.x)", "count"),
    "greylisted": ("was greylisted {v} times", "count"),
    "offhours_sessions": ("held {v} sessions outside working hours", "count"),
    "auth_clear_tls_offered": ("sent AUTH in clear although STARTTLS was offered in {v} sessions",
                               "count"),
    "auth_user_foreign": ("logged in as an account of a foreign domain in {v} sessions", "count"),
    "helo_literal_other": ("greeted with an address literal not its own in {v} sessions",
                           "count"),
    "sloppy_paths": ("used sloppy MAIL FROM/RCPT TO syntax in {v} sessions", "count"),
    "reply_attach_msgs": ("sent {v} \"Re:\" messages with an attachment", "count"),
    # distinct counts
    "dst_ips": ("contacted {v} distinct SMTP servers", "count"),
    "dst_24s": ("contacted {v} distinct server networks (/24 or /48)", "count"),
    "ext_dst_ips": ("sent to {v} distinct external MX hosts", "count"),
    "helo_names": ("used {v} distinct HELO/EHLO names", "count"),
    "rcpt_domains": ("named recipients in {v} distinct domains", "count"),
    "auth_users": ("tried {v} distinct AUTH user names", "count"),
    "srv_relay_clients": ("relayed without AUTH for {v} distinct outside clients", "count"),
    # derived
    "failed_ratio": ("had {v} of its connections fail", "share"),
    "reject_ratio": ("had {v} of its recipients rejected", "share"),
    "unknown_ratio": ("had {v} of its recipients unknown", "share"),
    "tls_share": ("used TLS in {v} of its sessions", "share"),
    "foreign_share": ("addressed {v} of its recipients outside our domains", "share"),
    "mean_msg_size": ("sent messages of {v} on average", "bytes"),
    "interarrival_cv": ("started sessions with a gap variation (stdev / mean) of {v}", "number"),
    "helo_bad_share": ("sent a bad HELO/EHLO in {v} of its sessions", "share"),
    "data_reject_share": ("had {v} of its messages refused after their content", "share"),
    "rcpts_per_msg": ("named {v} recipients per message", "number"),
    "msg_size_cv": ("sent messages with a size variation (stdev / mean) of {v}", "number"),
    "offhours_share": ("held {v} of its sessions outside working hours", "share"),
}
"""Every host scalar and window field -> (phrase for an analyst, "{v}" standing for the value;
its unit, one of UNITS). The host's address goes before the phrase."""

FAMILIES: dict[str, tuple[str, ...]] = {
    "outbound": ("spambot",),
    "auth": ("auth_bruteforce", "compromised_account", "plaintext_auth"),
    "relay": ("open_relay", "relay_abuse"),
    "harvest": ("dictionary_harvest",),
    "inbound": ("spam_source",),
    "protocol": ("protocol_abuse", "starttls_downgrade"),
}
"""Families of alert kinds (sensor.detect.rules.AlertKind values) a feature can speak for."""

_FAMILY_OF: dict[str, tuple[str, ...]] = {
    "": ("in_home_net", "mail_server", "conns", "sessions", "bytes_out", "dst_ips", "dst_24s",
         "srv_sessions", "tls_sessions", "tls_share", "interarrival_cv", "offhours_sessions",
         "offhours_share"),
    "outbound": ("failed_conns", "refused_conns", "unanswered_conns", "reset_conns", "ext_conns",
                 "ext_failed_conns", "mail_from", "ext_mail_from", "msgs", "msg_bytes",
                 "rcpt_4xx", "ext_dst_ips", "failed_ratio", "reject_ratio", "mean_msg_size",
                 "data_tempfails", "greylisted", "rcpts_per_msg", "msg_size_cv",
                 "helo_literal_other", "sloppy_paths", "reply_attach_msgs"),
    "auth": ("auth_fails_before_success", "rcpts_after_auth_success", "msgs_after_auth_success",
             "auth_own_fails_before_success", "burst_rcpts_after_auth_success",
             "auth_clear_tls_offered", "auth_user_foreign", "auth_attempts", "auth_failures",
             "auth_successes", "auth_clear_ext_success", "srv_auth_failures", "auth_users"),
    "relay": ("rcpt_foreign", "relay_rcpts", "srv_relay_rcpts", "srv_relay_clients",
              "foreign_share", "rcpt_domains"),
    "harvest": ("rcpts", "rcpt_accepted", "rcpt_5xx", "rcpt_unknown", "unknown_ratio"),
    "inbound": ("helo_bad", "helo_forged", "pregreet", "blocked", "helo_names", "helo_bad_share",
                "data_rejects", "policy_refusals", "data_reject_share"),
    "protocol": ("no_banner_sessions", "abuse_anomalies", "non_smtp", "stripped_starttls"),
}
FEATURE_FAMILY: dict[str, str] = {name: fam for fam, names in _FAMILY_OF.items()
                                  for name in names}
"""Every host scalar and window field -> its family in FAMILIES, or "" for plain activity."""
