"""RFC 5424 over TCP through syslog-ng's parser, which is stricter than rsyslog's."""

from __future__ import annotations

from sensor.sinks.syslog import SyslogSink, parse_sink_url

from .collectors import SyslogNg, rfc5424, seqs

HOSTILE = 'naïve "x]y" \\ \u2603 LF:\n end'


def test_syslog_ng_parses_header_and_structured_data(syslog_ng: SyslogNg) -> None:
    sink = SyslogSink(parse_sink_url(syslog_ng.url()))
    sink.start()
    count = 500
    for seq in range(count):
        sink.send(rfc5424(seq, HOSTILE))
    sink.close()
    records = syslog_ng.wait_records(count)
    assert sorted(seqs(records, "SDATA")) == list(range(count)), syslog_ng.diagnostics()
    assert sink.stats.sent == count
    first = next(r for r in records if seqs([r], "SDATA") == [0])
    assert first["HOST"] == "sensor-1"
    assert first["PROGRAM"] == "port25-sensor"
    assert first["MSGID"] == "spambot"
    assert first["PRI"] == "134"
    sd = first["_SDATA"]  # format-json writes the .SDATA.* tree with a leading "_"
    assert isinstance(sd, dict)
    params = sd["port25@32473"]
    assert params == {"seq": "0", "kind": "spambot", "note": 'q"b\\s]'}
    assert first["MESSAGE"] == HOSTILE + " #0"
