"""The capture-loss counters: ACKs seen, ACKs for data never captured and their bytes."""

from __future__ import annotations

from tcp_helpers import ACK, FIN, PSH, Conv, Harness

from sensor.tcp.loss import loss_percent, tcp_loss_percent


def timed(segs: list, t0: float = 100.0, step: float = 0.01) -> list:
    return [(t0 + i * step, s) for i, s in enumerate(segs)]


def dialogue(cv: Conv) -> list:
    """Handshake, banner, three client segments each acked, replies, FIN both ways."""
    return [
        *cv.handshake(),
        cv.s(0, b"220 hi\r\n", ACK | PSH),                # 3
        cv.c(0, b"EHLO a\r\n", ACK | PSH, ack=8),         # 4
        cv.s(8, b"250 ok\r\n", ACK | PSH, ack=8),         # 5
        cv.c(8, b"MAIL FROM:<a@b>\r\n", ACK | PSH, ack=16),  # 6: 17 bytes
        cv.s(16, b"", ACK, ack=25),                       # 7: pure ACK
        cv.c(25, b"RCPT TO:<c@d>\r\n", ACK | PSH, ack=16),  # 8: 15 bytes
        cv.s(16, b"250 ok\r\n250 ok\r\n", ACK | PSH, ack=40),  # 9
        cv.c(40, b"", ACK | FIN, ack=32),
        cv.s(32, b"", ACK | FIN, ack=41),
        cv.c(41, b"", ACK, ack=33),
    ]


def run(segs: list) -> Harness:
    h = Harness()
    h.feed(timed(segs))
    h.r.flush()
    return h


def test_clean_capture_has_no_unseen_acks() -> None:
    h = run(dialogue(Conv()))
    s = h.stats
    # forward-moving ACKs, 5 each way: of the SYN, of each reply or command, of the FIN
    assert s.acks == 10
    assert s.ack_bytes == (8 + 8 + 16 + 1) + (8 + 17 + 15 + 1)
    assert (s.acks_unseen, s.ack_unseen_bytes) == (0, 0)
    assert tcp_loss_percent(s) == 0.0


def test_removed_segment_is_an_ack_for_unseen_data() -> None:
    segs = dialogue(Conv())
    del segs[6]  # the client's MAIL FROM: the server's pure ACK acknowledges it
    h = run(segs)
    s = h.stats
    assert (s.acks_unseen, s.ack_unseen_bytes) == (1, 17)
    assert s.acks == 10
    assert s.gaps == 1 and s.gap_bytes == 17
    assert tcp_loss_percent(s) == 10.0


def test_lost_segment_with_later_data_buffered_counts_only_the_hole() -> None:
    cv = Conv()
    segs = dialogue(cv)
    del segs[6:8]  # MAIL FROM lost, RCPT TO buffered after the hole, then one ACK for both
    segs.insert(7, cv.s(16, b"", ACK, ack=40))
    h = run(segs)
    assert (h.stats.acks_unseen, h.stats.ack_unseen_bytes) == (1, 17)
    assert bytes(h.handlers[0].stream[True]).endswith(b"RCPT TO:<c@d>\r\n")


def test_ack_for_a_lost_tail_is_a_gap_at_once_and_counted_once() -> None:
    cv = Conv()
    segs = dialogue(cv)
    lost = segs.pop(6)
    segs.insert(8, cv.s(16, b"", ACK, ack=25))  # a duplicate ACK: not a moved one
    segs.insert(9, lost)  # a late copy: the dialogue already went on without it
    h = run(segs)
    s = h.stats
    assert (s.acks_unseen, s.ack_unseen_bytes) == (1, 17)
    assert s.gaps == 1 and s.retransmissions == 1
    rh = h.handlers[0]
    # the gap comes before the next client bytes, as the ACK that revealed it did
    kinds = [(e[0], e[1]) for e in rh.events if e[0] != "close"]
    assert kinds[kinds.index(("gap", True)) + 1] == ("data", True)
    assert b"MAIL FROM" not in bytes(rh.stream[True])


def test_ack_reveals_lost_tail_before_the_reply_is_read() -> None:
    cv = Conv()
    segs = dialogue(cv)
    del segs[6]  # MAIL FROM lost; the server's pure ACK and then its reply
    h = run(segs)
    ev = [(e[0], e[1]) for e in h.handlers[0].events]
    assert ev.index(("gap", True)) < ev.index(("data", False), 4)


def test_stream_whose_first_bytes_were_lost_starts_with_a_gap() -> None:
    cv = Conv()
    segs = dialogue(cv)
    del segs[1]  # SYN-ACK lost ...
    del segs[2]  # ... and the banner: the client's ACKs say where the server's stream began
    h = run(segs)
    rh = h.handlers[0]
    assert rh.events[0][:2] == ("data", True) or rh.events[0][:2] == ("gap", False)
    assert rh.gaps[False] == 8
    assert bytes(rh.stream[False]) == b"250 ok\r\n250 ok\r\n250 ok\r\n"


def test_reordered_older_ack_is_not_counted() -> None:
    cv = Conv()
    segs = dialogue(cv)
    segs.insert(6, cv.s(8, b"", ACK, ack=4))  # after the ACK of 8: an older one, reordered
    h = run(segs)
    assert (h.stats.acks, h.stats.acks_unseen) == (10, 0)


def test_ack_far_beyond_reason_is_ignored() -> None:
    cv = Conv()
    segs = dialogue(cv)
    segs.insert(5, cv.s(8, b"", ACK, ack=1 << 30))
    h = run(segs)
    assert h.stats.acks_unseen == 0


def test_loss_percent() -> None:
    assert loss_percent(0, 0) == 0.0
    assert loss_percent(200, 3) == 1.5
    assert tcp_loss_percent({"acks": 4, "acks_unseen": 1}) == 25.0
