"""Schema v2 features on sessions the SMTP parser read from dialogues: the server's verdicts
(refused or deferred after data, 5.7.x, greylisting), recipients per message, message-size
spread and time of day."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime

import pytest
from featfactory import conn, site_config

from sensor.features import HostTable
from sensor.features.extract import SiteView
from sensor.records import SmtpSession, WindowFeatures
from sensor.smtp import SmtpParser

SPAMMER, OUR_MX = "198.19.1.1", "10.20.0.25"
BANNER = b"220 mx.campus.example ESMTP Postfix\r\n"
MONDAY_0930_UTC = datetime(2026, 11, 30, 9, 30, tzinfo=UTC).timestamp()

Step = tuple[bytes, bytes]  # a client line (or message content) and the server's reply


def body(size: int = 0) -> bytes:
    """Message content of about `size` bytes, with the end-of-data dot."""
    return b"Subject: offer\r\n\r\n" + b"x" * size + b"\r\n.\r\n"


def mail(rcpts: list[tuple[bytes, bytes]], size: int = 0,
         end_reply: bytes = b"250 2.0.0 Ok: queued as 4Xk9Q2") -> list[Step]:
    """One transaction: MAIL, each (recipient, reply), DATA and the reply to its content."""
    steps: list[Step] = [(b"MAIL FROM:<a@far.example>", b"250 2.1.0 Ok")]
    steps += [(b"RCPT TO:<" + addr + b">", reply) for addr, reply in rcpts]
    steps += [(b"DATA", b"354 End data with <CR><LF>.<CR><LF>"), (body(size), end_reply)]
    return steps


def dialogue(ts: float, steps: list[Step], banner: bytes = BANNER, client: str = SPAMMER,
             quit_: bool = True) -> SmtpSession:
    """The session the parser emits for EHLO, the steps and QUIT (unless the client just hangs
    up), replies in lockstep."""
    out: list[SmtpSession] = []
    p = SmtpParser(f"C{ts}", ts, client, 40000, OUR_MX, 25, out.append, None, False)
    t = ts
    p.data(False, t, banner)
    if banner.startswith(b"220"):
        steps = [(b"EHLO mail.far.example", b"250 mx.campus.example"), *steps]
        if quit_:
            steps.append((b"QUIT", b"221 2.0.0 Bye"))
    for line, reply in steps:
        t += 0.01
        p.data(True, t, line if line.endswith(b"\r\n") else line + b"\r\n")
        t += 0.01
        p.data(False, t, reply + b"\r\n")
    p.close(t + 0.01, conn(client, OUR_MX, ts, duration_s=t + 0.01 - ts))
    assert len(out) == 1
    return out[0]


def window(sessions: list[SmtpSession], extra: str = "", ip: str = SPAMMER) -> WindowFeatures:
    """The long window of `ip` after the sessions."""
    t = HostTable(site_config(extra))
    for s in sessions:
        t.on_session(s)
    f = t.features(ip)
    assert f is not None
    return f.long


def test_a_message_refused_after_its_content_is_a_data_reject_and_a_policy_refusal() -> None:
    refused = dialogue(MONDAY_0930_UTC, mail([(b"bob@campus.example", b"250 2.1.5 Ok")],
                                             end_reply=b"554 5.7.1 Message rejected as spam"))
    [tx] = refused.transactions
    assert tx.data_mode == "data" and tx.last_code == 554  # what the parser recorded
    queued = dialogue(MONDAY_0930_UTC + 60, mail([(b"eve@campus.example", b"250 2.1.5 Ok")]))
    w = window([refused, queued])
    assert (w.msgs, w.data_rejects, w.data_tempfails, w.policy_refusals) == (2, 1, 0, 1)
    assert w.data_reject_share == 0.5


def test_a_message_deferred_after_its_content_is_a_tempfail_and_maybe_greylisting() -> None:
    grey = dialogue(MONDAY_0930_UTC, mail([(b"bob@campus.example", b"250 2.1.5 Ok")],
                                          end_reply=b"451 4.7.1 Try again later"))
    busy = dialogue(MONDAY_0930_UTC + 1, mail([(b"bob@campus.example", b"250 2.1.5 Ok")],
                                              end_reply=b"452 4.3.1 Insufficient storage"))
    w = window([grey, busy])
    assert (w.data_rejects, w.data_tempfails, w.greylisted, w.policy_refusals) == (0, 2, 1, 0)
    assert w.data_reject_share == 0.0


def test_recipient_verdicts_policy_greylisting_and_unknown_users_stay_apart() -> None:
    rcpts = [
        (b"a@campus.example", b"450 4.2.0 <a@campus.example>: Recipient address rejected: "
                              b"Greylisted, see http://postgrey.schweikert.ch/"),
        (b"b@campus.example", b"450 4.7.1 Service unavailable, try later"),
        (b"c@campus.example", b"450 4.2.1 Mailbox busy"),
        (b"d@far.example", b"554 5.7.1 <d@far.example>: Relay access denied"),
        (b"e@campus.example", b"550 5.1.1 <e@campus.example>: Recipient address rejected: "
                              b"User unknown"),
        (b"f@campus.example", b"250 2.1.5 Ok"),
    ]
    s = dialogue(MONDAY_0930_UTC, mail(rcpts))
    w = window([s])
    assert (w.rcpt_4xx, w.rcpt_5xx, w.rcpt_unknown) == (3, 2, 1)
    assert (w.greylisted, w.policy_refusals, w.data_rejects) == (2, 1, 0)


def test_refusals_of_data_mail_and_greeting_are_verdicts_of_their_own() -> None:
    # a transaction without content keeps only its last reply: these clients hang up at once
    no_valid = dialogue(MONDAY_0930_UTC, [
        (b"MAIL FROM:<a@far.example>", b"250 2.1.0 Ok"),
        (b"RCPT TO:<x@far.example>", b"554 5.7.1 Relay access denied"),
        (b"DATA", b"554 5.7.1 No valid recipients"),
    ], quit_=False)
    [tx] = no_valid.transactions
    assert tx.data_mode is None and tx.last_reply == "554 5.7.1 No valid recipients"
    sender = dialogue(MONDAY_0930_UTC + 1, [
        (b"MAIL FROM:<a@campus.example>", b"553 5.7.1 Sender address rejected: not logged in"),
    ], quit_=False)
    greeting = dialogue(MONDAY_0930_UTC + 2, [],
                        banner=b"554 5.7.1 Service unavailable; client host blocked\r\n")
    w = window([no_valid, sender, greeting])
    assert (w.policy_refusals, w.msgs, w.data_rejects) == (4, 0, 0)
    # a recipient refused with 5.7.1 is not counted twice when nothing followed it
    only_rcpt = dialogue(MONDAY_0930_UTC, [
        (b"MAIL FROM:<a@far.example>", b"250 2.1.0 Ok"),
        (b"RCPT TO:<x@far.example>", b"554 5.7.1 Relay access denied"),
    ])
    assert window([only_rcpt]).policy_refusals == 1


def test_recipients_per_message_count_only_transactions_that_sent_content() -> None:
    ok = b"250 2.1.5 Ok"
    three = mail([(b"a@campus.example", ok), (b"b@campus.example", ok), (b"c@far.example", ok)])
    one = mail([(b"d@campus.example", ok)])
    probe = [(b"MAIL FROM:<a@far.example>", b"250 2.1.0 Ok")] + [
        (f"RCPT TO:<u{i}@campus.example>".encode(), ok) for i in range(5)] + [
        (b"RSET", b"250 2.0.0 Ok")]
    w = window([dialogue(MONDAY_0930_UTC, three + one + probe)])
    assert (w.rcpts, w.msgs, w.rcpts_per_msg) == (9, 2, 2.0)


def test_message_size_spread_is_the_coefficient_of_variation_in_each_window() -> None:
    ok = [(b"bob@campus.example", b"250 2.1.5 Ok")]
    sessions = [dialogue(MONDAY_0930_UTC + i, mail(ok, size)) for i, size in
                enumerate((100, 100, 5000))]
    sizes = [tx.size for s in sessions for tx in s.transactions]
    expected = statistics.pstdev(sizes) / statistics.fmean(sizes)
    w = window(sessions)
    assert w.msg_size_cv == pytest.approx(expected, abs=1e-6) and w.msg_size_cv > 1
    assert window(sessions[:2]).msg_size_cv == 0.0  # equal sizes
    assert window(sessions[2:]).msg_size_cv == 0.0  # one message: no spread
    # the short window (60 s) keeps only the newest two messages once time moves on
    t = HostTable(site_config())
    for s in sessions:
        t.on_session(s)
    t.on_session(dialogue(MONDAY_0930_UTC + 61, mail(ok, 5000)))
    f = t.features(SPAMMER)
    assert f is not None and f.short.msgs == 2 and f.short.msg_size_cv == 0.0
    assert f.long.msgs == 4 and f.long.msg_size_cv > 0


def test_off_hours_follow_the_site_time_zone_days_and_hours() -> None:
    berlin = 'timezone = "Europe/Berlin"\n'
    at = [datetime(2026, 11, 30, 7, 30, tzinfo=UTC),  # Mon 08:30 CET: working
          datetime(2026, 11, 30, 16, 59, tzinfo=UTC),  # Mon 17:59 CET: working
          datetime(2026, 11, 30, 17, 0, tzinfo=UTC),  # Mon 18:00 CET: off
          datetime(2026, 12, 5, 10, 0, tzinfo=UTC),  # Saturday: off
          datetime(2026, 7, 6, 6, 30, tzinfo=UTC)]  # Mon 08:30 CEST (DST): working
    view = SiteView.of(site_config(berlin).site)
    assert [view.off_hours(t.timestamp()) for t in at] == [False, False, True, True, False]
    sessions = [dialogue(at[1].timestamp(), []), dialogue(at[2].timestamp() + 60, [])]
    w = window(sessions, berlin)
    assert (w.sessions, w.offhours_sessions, w.offhours_share) == (2, 1, 0.5)
    assert window(sessions).offhours_sessions == 0  # in UTC both are within 08-18


def test_off_hours_in_a_zone_a_quarter_hour_off_and_shifts_past_midnight() -> None:
    kathmandu = site_config('timezone = "Asia/Kathmandu"\n').site  # UTC+05:45
    view = SiteView.of(kathmandu)
    monday = datetime(2026, 11, 30, tzinfo=UTC).timestamp()
    assert view.off_hours(monday + 2 * 3600 + 14 * 60)  # 07:59 local
    assert not view.off_hours(monday + 2 * 3600 + 15 * 60)  # 08:00 local
    assert view.off_hours(monday + 2 * 3600 + 14 * 60)  # back in time: the cache is not fooled
    night = SiteView.of(site_config('work_hours = "22-06"\nwork_days = ["sat"]\n').site)
    saturday = datetime(2026, 12, 5, tzinfo=UTC).timestamp()
    assert [night.off_hours(saturday + h * 3600) for h in (1, 6, 12, 22, 23)] == [
        False, True, True, False, False]
    assert night.off_hours(saturday - 3600)  # Friday 23:00


@pytest.mark.parametrize("ts", [1e30, -1e30, math.inf, -math.inf, math.nan])
def test_off_hours_of_hostile_timestamps_never_raise(ts: float) -> None:
    view = SiteView.of(site_config('timezone = "Europe/Berlin"\n').site)
    assert view.off_hours(ts) is False
    assert view.off_hours(MONDAY_0930_UTC) is False and view.off_hours(MONDAY_0930_UTC + 9 * 3600)
