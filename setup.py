"""Build hook: the per-packet and per-line stages are compiled to C extensions with mypyc.

The sources stay plain, type-checked Python (mypy --strict); mypyc turns the modules listed in
NATIVE_MODULES into C extensions that run the same code about twice as fast; C_MODULES are the
few loops written in C.  Without a C compiler or the Python headers, or with
PORT25_PURE_PYTHON=1, every module is installed as interpreted Python instead (and the C loops'
Python readings are used), with identical results.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup

NATIVE_MODULES = [
    "sensor/capture/fast.py",
    "sensor/decode/packet.py",
    "sensor/counters.py",
    "sensor/pipeline.py",
    "sensor/tcp/conn.py",
    "sensor/tcp/deadlines.py",
    "sensor/tcp/stream.py",
    "sensor/tcp/reassembler.py",
    "sensor/smtp/anomalies.py",
    "sensor/smtp/auth.py",
    "sensor/smtp/body.py",
    "sensor/smtp/client.py",
    "sensor/smtp/commands.py",
    "sensor/smtp/core.py",
    "sensor/smtp/encoded.py",
    "sensor/smtp/limits.py",
    "sensor/smtp/lines.py",
    "sensor/smtp/message.py",
    "sensor/smtp/mime.py",
    "sensor/smtp/parser.py",
    "sensor/smtp/replies.py",
    "sensor/smtp/schema.py",
    "sensor/smtp/server.py",
    "sensor/smtp/session.py",
    "sensor/smtp/state.py",
    "sensor/features/extract.py",
    "sensor/features/hosts.py",
    "sensor/features/window.py",
    "sensor/detect/detector.py",
    "sensor/detect/gates.py",
    "sensor/detect/scoring.py",
    "sensor/cluster/feed.py",
]
"""Not listed: the cold paths (CLI, configuration, summary, simulation). Compiled code checks
annotations at run time, so where a library's values stray from its type stubs the annotation
must say object."""

C_MODULES = [
    Extension("sensor.smtp._scan", ["sensor/smtp/_scan.c"], extra_compile_args=["-O2"]),
    Extension("sensor.decode._batch", ["sensor/decode/_batch.c"], extra_compile_args=["-O2"]),
    Extension("sensor._build", ["sensor/_build.c"], extra_compile_args=["-O2"]),
    Extension("sensor.features._sums", ["sensor/features/_sums.c"], extra_compile_args=["-O2"]),
    Extension("sensor.tcp._ident", ["sensor/tcp/_ident.c"], extra_compile_args=["-O2"]),
    Extension("sensor._heap", ["sensor/_heap.c"], extra_compile_args=["-O2"]),
]
"""Hand-written C, where a loop over bytes is the cost: each has a Python reading it is tested
against (sensor/smtp/_scan.c: MessageBody._scan_bytes, LineBuffer.pop_line;
sensor/decode/_batch.c: sensor.decode.batch.feed_py; sensor/_build.c:
sensor.records.python_new; sensor/features/_sums.c: sensor.features.window.accumulate_py;
sensor/tcp/_ident.c: sensor.tcp.conn.uid_key_py and ip_text_of), used
when the module is absent."""


def _why_pure() -> str | None:
    if os.environ.get("PORT25_PURE_PYTHON") == "1":
        return "PORT25_PURE_PYTHON=1"
    if shutil.which(os.environ.get("CC", "cc")) is None:
        return "no C compiler (cc)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        return "no Python headers (Python.h)"
    return None


why = _why_pure()
if why is None:
    from mypyc.build import mypycify

    setup(ext_modules=[*mypycify(NATIVE_MODULES, opt_level="3"), *C_MODULES])
else:
    print(f"port25-sensor: installing pure Python ({why}): analysis runs about 2x slower",
          file=sys.stderr)
    setup()
