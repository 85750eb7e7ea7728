"""A scripted SMTP server for the live-capture tests: fixed, valid replies, every AUTH refused.

Imported, `serve` answers one accepted connection (the loopback test runs it in a thread). Run
as a script (`python scripted_smtp.py ADDR COUNT [PORT]`), it listens on ADDR:PORT (default 25),
prints "ready", and answers COUNT clients in turn (the veth test runs it in a namespace).
"""

from __future__ import annotations

import socket
import sys

ACCEPT_TIMEOUT_S = 15.0
CLIENT_TIMEOUT_S = 10.0


def serve(conn: socket.socket) -> None:
    """Answer one SMTP client until QUIT or end of stream."""
    f = conn.makefile("rb")
    conn.sendall(b"220 mx.test ESMTP\r\n")
    in_data = False
    for line in f:
        if in_data:
            if line == b".\r\n":
                in_data = False
                conn.sendall(b"250 2.0.0 Ok: queued as 42\r\n")
            continue
        verb = line[:4].upper()
        if verb == b"EHLO":
            conn.sendall(b"250-mx.test\r\n250-PIPELINING\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n")
        elif verb == b"AUTH":
            conn.sendall(b"535 5.7.8 Authentication credentials invalid\r\n")
        elif verb == b"DATA":
            in_data = True
            conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 2.0.0 Bye\r\n")
            return
        else:
            conn.sendall(b"250 2.1.0 Ok\r\n")


def main(argv: list[str]) -> None:
    addr, count = argv[0], int(argv[1])
    port = int(argv[2]) if len(argv) > 2 else 25
    srv = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen()
    srv.settimeout(ACCEPT_TIMEOUT_S)
    print("ready", flush=True)
    for _ in range(count):
        conn, _ = srv.accept()
        conn.settimeout(CLIENT_TIMEOUT_S)
        with conn:
            serve(conn)


if __name__ == "__main__":
    main(sys.argv[1:])
