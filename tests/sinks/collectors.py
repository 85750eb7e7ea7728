"""Real syslog collectors for the tests: rsyslog and syslog-ng on loopback, writing what they
parsed as JSON lines, and the TLS certificates they use."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

RSYSLOGD = "/usr/sbin/rsyslogd"
# Where scripts/ensure_system.sh extracts syslog-ng-core (it conflicts with rsyslog, so it is
# unpacked, not installed); PORT25_SYSLOG_NG_DIR overrides.
SYSLOG_NG_DIR = Path(os.environ.get("PORT25_SYSLOG_NG_DIR", "/var/cache/port25-sensor/syslog-ng"))
KINDS = ("udp", "tcp", "tls", "relp", "unix")

# The fields rsyslog parsed, one JSON object per message.
_RSYSLOG_TEMPLATE = """
template(name="fields" type="list" option.jsonf="on") {
  property(outname="pri" name="pri" format="jsonf")
  property(outname="facility" name="syslogfacility" format="jsonf")
  property(outname="severity" name="syslogseverity" format="jsonf")
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app_name" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="structured_data" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="raw" name="rawmsg" format="jsonf")
}
"""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port nobody listens on now (TCP and UDP both checked)."""
    while True:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, other) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


@dataclass(frozen=True)
class TlsFiles:
    """A test CA, a server certificate for localhost/127.0.0.1, and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed none of these


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def make_tls_files(directory: Path) -> TlsFiles:
    """Generates the certificates into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)

    def ca(common: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(_name(common))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                             False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        return cert, key

    def leaf(common: str, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
             usage: x509.ObjectIdentifier, names: list[x509.GeneralName]
             ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(_name(common))
                   .issuer_name(ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       ca_key.public_key()), critical=False))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    ca_cert, ca_key = ca("port25-sensor test CA")
    other_cert, _ = ca("some other CA")
    server_cert, server_key = leaf(
        "localhost", ca_cert, ca_key, ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_cert, client_key = leaf("sensor-client", ca_cert, ca_key,
                                   ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("sensor")])
    files = TlsFiles(ca=directory / "ca.pem", server_cert=directory / "server.pem",
                     server_key=directory / "server.key", client_cert=directory / "client.pem",
                     client_key=directory / "client.key", other_ca=directory / "other-ca.pem")
    pem = serialization.Encoding.PEM
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    files.other_ca.write_bytes(other_cert.public_bytes(pem))
    files.server_cert.write_bytes(server_cert.public_bytes(pem))
    files.client_cert.write_bytes(client_cert.public_bytes(pem))
    _write_key(server_key, files.server_key)
    _write_key(client_key, files.client_key)
    return files


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    records = []
    # a line still being written has no LF yet: leave it for the next read; a line a killed
    # daemon left half-written is not a record
    for line in text.split("\n")[:-1]:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def _wait(read: Callable[[], list[dict[str, object]]], count: int, timeout: float,
          quiet: float) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    records = read()
    last_change = time.monotonic()
    while len(records) < count:
        now = time.monotonic()
        if now > deadline or now - last_change > quiet:
            break
        time.sleep(0.05)
        newer = read()
        if len(newer) != len(records):
            last_change = time.monotonic()
        records = newer
    time.sleep(0.3)
    return read()


class _Daemon:
    """A collector process in the foreground with a private directory."""

    name = "collector"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _environment(self) -> dict[str, str]:
        return dict(os.environ)

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 20.0) -> None:
        """Starts the daemon and waits until its listeners answer."""
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        log = (self.workdir / f"{self.name}.stderr").open("ab")
        self.proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self._environment(),
                                     cwd=self.workdir)
        log.close()
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start:\n{self.diagnostics()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> None:
        """Stops the daemon cleanly (SIGTERM) and waits for it to exit."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Kills the daemon (SIGKILL), as a crash would."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        """Stops the daemon cleanly and starts it again on the same ports."""
        self.stop()
        self.start()

    def diagnostics(self) -> str:
        """What the daemon said on stderr (and its own log), for failure messages."""
        out = []
        for path in sorted(self.workdir.glob("*.stderr")) + sorted(self.workdir.glob("*.log")):
            out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Rsyslog(_Daemon):
    """rsyslogd in the foreground with the given listeners, each writing the fields it parsed
    to its own JSON-lines file (`records(kind)`).

    kinds: "udp" (imudp), "tcp" (imtcp: octet counting and LF framing), "tls" (imtcp with the
    gtls driver, `tls` files), "relp" (imrelp), "unix" (imuxsock on a private socket, never
    /dev/log).
    """

    name = "rsyslog"

    def __init__(self, workdir: Path, kinds: tuple[str, ...], tls: TlsFiles | None = None,
                 tls_auth: str = "anon") -> None:
        super().__init__(workdir)
        unknown = set(kinds) - set(KINDS)
        assert not unknown, unknown
        self.kinds = kinds
        self.tls = tls
        self.ports = {k: free_port(socket.SOCK_DGRAM if k == "udp" else socket.SOCK_STREAM)
                      for k in kinds if k != "unix"}
        self.socket_path = workdir / "log.sock"
        self.pidfile = workdir / "rsyslogd.pid"
        self.config = workdir / "rsyslog.conf"
        (workdir / "spool").mkdir(parents=True, exist_ok=True)
        self.config.write_text(self._config(tls_auth))

    def url(self, kind: str, host: str = "127.0.0.1", query: str = "") -> str:
        """A sink URL for listener `kind`."""
        scheme = kind
        tail = f"?{query}" if query else ""
        if kind == "unix":
            return f"unix://{self.socket_path}{tail}"
        return f"{scheme}://{host}:{self.ports[kind]}{tail}"

    def output(self, kind: str) -> Path:
        """The JSON-lines file listener `kind` writes."""
        return self.workdir / f"{kind}.jsonl"

    def _config(self, tls_auth: str) -> str:
        w = self.workdir
        # processInternalMessages: rsyslogd's own messages ("start") reach rsyslogd.log even
        # when it was not started by systemd
        # parser.escapeControlCharacterTab off: LEEF's attribute delimiter is a TAB, which
        # rsyslog would otherwise store as "#011" (README's receiver configuration says so too)
        lines = [f'global(workDirectory="{w}/spool" maxMessageSize="256k" '
                 'processInternalMessages="on" parser.escapeControlCharacterTab="off"']
        if self.tls is not None:
            lines += [f'  defaultNetstreamDriverCAFile="{self.tls.ca}"',
                      f'  defaultNetstreamDriverCertFile="{self.tls.server_cert}"',
                      f'  defaultNetstreamDriverKeyFile="{self.tls.server_key}"']
        lines.append(")")
        # Everything received is written before a clean shutdown ends (the default gives up
        # after 1.5 s and discards the rest).
        lines.append('main_queue(queue.size="500000" queue.timeoutShutdown="60000" '
                     'queue.timeoutActionCompletion="60000")')
        lines.append(_RSYSLOG_TEMPLATE)
        mods = {"udp": "imudp", "tcp": "imtcp", "tls": "imtcp", "relp": "imrelp",
                "unix": "imuxsock"}
        loaded = set()
        for kind in self.kinds:
            mod = mods[kind]
            if mod in loaded:
                continue
            loaded.add(mod)
            if mod == "imuxsock":
                lines.append('module(load="imuxsock" sysSock.use="off")')
            elif mod == "imtcp":
                lines.append('module(load="imtcp" maxSessions="1000")')
            else:
                lines.append(f'module(load="{mod}")')
        for kind in self.kinds:
            out = self.output(kind)
            lines.append(f'ruleset(name="r_{kind}" queue.type="Direct") '
                         f'{{ action(type="omfile" file="{out}" template="fields") }}')
            if kind == "udp":
                lines.append(f'input(type="imudp" address="127.0.0.1" port="{self.ports[kind]}" '
                             f'ruleset="r_udp" rcvbufSize="8m")')
            elif kind == "tcp":
                lines.append(f'input(type="imtcp" address="127.0.0.1" port="{self.ports[kind]}" '
                             f'ruleset="r_tcp")')
            elif kind == "tls":
                lines.append(f'input(type="imtcp" address="127.0.0.1" port="{self.ports[kind]}" '
                             f'ruleset="r_tls" streamDriver.name="gtls" streamDriver.mode="1" '
                             f'streamDriver.authMode="{tls_auth}")')
            elif kind == "relp":
                lines.append(f'input(type="imrelp" address="127.0.0.1" port="{self.ports[kind]}" '
                             f'ruleset="r_relp")')
            else:
                lines.append(f'input(type="imuxsock" socket="{self.socket_path}" '
                             'ruleset="r_unix" useSpecialParser="off" parseHostname="on" '
                             'createPath="on")')
        # rsyslogd's own messages (start, errors) for diagnostics
        lines.append(f'action(type="omfile" file="{w}/rsyslogd.log")')
        return "\n".join(lines) + "\n"

    def _command(self) -> list[str]:
        return [RSYSLOGD, "-n", "-f", str(self.config), "-i", str(self.pidfile)]

    def _ready(self) -> bool:
        log = self.workdir / "rsyslogd.log"
        if not log.exists() or log.read_text(errors="replace").count("] start") < self.starts:
            return False
        if "unix" in self.kinds and not self.socket_path.exists():
            return False
        return all(_port_open(self.ports[k]) for k in ("tcp", "tls", "relp") if k in self.kinds)

    def records(self, kind: str) -> list[dict[str, object]]:
        """The messages listener `kind` received so far, as the fields rsyslog parsed."""
        return _read_jsonl(self.output(kind))

    def wait_records(self, kind: str, count: int, timeout: float = 20.0,
                     quiet: float = 1.5) -> list[dict[str, object]]:
        """Waits until `count` messages arrived on `kind`, nothing more arrived for `quiet`
        seconds, or `timeout`; then a moment more to catch extra (duplicate) ones."""
        return _wait(lambda: self.records(kind), count, timeout, quiet)


def syslog_ng_root() -> Path:
    """The extracted syslog-ng-core package; its absence fails the test (make test makes it)."""
    binary = SYSLOG_NG_DIR / "usr" / "sbin" / "syslog-ng"
    if not binary.exists():
        raise RuntimeError(f"syslog-ng not found at {binary}: run `sh scripts/ensure_system.sh "
                           "test` as root (it extracts syslog-ng-core there)")
    return SYSLOG_NG_DIR


class SyslogNg(_Daemon):
    """syslog-ng in the foreground with one RFC 5424 (syslog-protocol) TCP source, writing
    the fields it parsed (including structured data) as JSON lines."""

    name = "syslog-ng"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.root = syslog_ng_root()
        self.port = free_port()
        self.out = workdir / "syslog-ng.jsonl"
        self.config = workdir / "syslog-ng.conf"
        modules = sorted((self.root / "usr" / "lib" / "syslog-ng").glob("3.*"))
        assert modules, f"no module directory under {self.root}/usr/lib/syslog-ng"
        self.module_path = modules[-1]
        version = self.module_path.name
        self.config.write_text(f"""@version: {version}
options {{ stats-freq(0); keep-hostname(yes); use-dns(no); dns-cache(no); }};
source s_net {{
  syslog(ip("127.0.0.1") port({self.port}) transport("tcp") flags(syslog-protocol));
}};
destination d_file {{
  file("{self.out}" template("$(format-json --key PRI --key HOST --key PROGRAM --key PID
       --key MSGID --key MESSAGE --key SDATA --key .SDATA.*)\\n"));
}};
log {{ source(s_net); destination(d_file); }};
""")

    def url(self) -> str:
        """The sink URL of the TCP source."""
        return f"tcp://127.0.0.1:{self.port}"

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = str(self.root / "usr" / "lib" / "syslog-ng")
        return env

    def _command(self) -> list[str]:
        w = self.workdir
        return [str(self.root / "usr" / "sbin" / "syslog-ng"), "-F", "--no-caps",
                f"--module-path={self.module_path}", "-f", str(self.config),
                "-R", str(w / "syslog-ng.persist"), "-p", str(w / "syslog-ng.pid"),
                "-c", str(w / "syslog-ng.ctl")]

    def _ready(self) -> bool:
        return _port_open(self.port)

    def records(self) -> list[dict[str, object]]:
        """The messages received so far, as the fields syslog-ng parsed."""
        return _read_jsonl(self.out)

    def wait_records(self, count: int, timeout: float = 20.0,
                     quiet: float = 1.5) -> list[dict[str, object]]:
        """Waits until `count` messages arrived, none for `quiet` seconds, or `timeout`."""
        return _wait(self.records, count, timeout, quiet)


def require_rsyslog() -> None:
    """Fails (not skips) when rsyslogd or its gtls/relp modules are missing."""
    modules = [p.name for p in Path("/usr/lib").glob("*/rsyslog/*.so")]
    if not Path(RSYSLOGD).exists() or not {"lmnsd_gtls.so", "imrelp.so"} <= set(modules):
        raise RuntimeError("rsyslogd missing: run `sh scripts/ensure_system.sh test` as root")


SEQ = re.compile(r'seq="(\d+)"')


def rfc5424(seq: int, text: str = "spambot alert", host: str = "sensor-1") -> bytes:
    """An RFC 5424 message carrying `seq` in its structured data and its text."""
    sd = f'[port25@32473 seq="{seq}" kind="spambot" note="q\\"b\\\\s\\]"]'
    return f"<134>1 2026-12-05T20:00:00.000Z {host} port25-sensor - spambot {sd} {text} #{seq}"\
        .encode()


def seqs(records: list[dict[str, object]], field: str = "structured_data") -> list[int]:
    """The sequence numbers of the received records, in arrival order (duplicates kept)."""
    out = []
    for record in records:
        match = SEQ.search(str(record.get(field, "")))
        if match:
            out.append(int(match.group(1)))
    return out
