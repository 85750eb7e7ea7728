"""The hot stages run as the C extensions mypyc built from their current sources."""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def native_modules() -> list[str]:
    """NATIVE_MODULES of setup.py, read without running setup()."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NATIVE_MODULES":
            return [str(v) for v in ast.literal_eval(node.value)]
    raise AssertionError("setup.py has no NATIVE_MODULES list")


def c_modules() -> list[tuple[str, str]]:
    """(module, C source) of each Extension in setup.py's C_MODULES."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "C_MODULES":
            assert isinstance(node.value, ast.List)
            calls = [e for e in node.value.elts if isinstance(e, ast.Call)]
            return [(ast.literal_eval(c.args[0]), ast.literal_eval(c.args[1])[0]) for c in calls]
    raise AssertionError("setup.py has no C_MODULES list")


def test_c_modules_are_built_from_their_current_sources() -> None:
    modules = c_modules()
    assert ("sensor.smtp._scan", "sensor/smtp/_scan.c") in modules
    for name, source in modules:
        built = Path(str(importlib.import_module(name).__file__))
        assert built.stat().st_mtime >= (ROOT / source).stat().st_mtime, (
            f"{built.name} is older than {source}: run `make test` to rebuild it"
        )
    from sensor import records
    from sensor.decode import batch
    from sensor.features import window
    from sensor.smtp import body

    assert body.NATIVE_SCAN  # the compiled body reads DATA content with it
    assert batch.NATIVE_FEED  # live batches are decoded and fed by the C loop
    assert records.NATIVE_BUILD  # the emitted records are built by sensor/_build.c
    assert window.NATIVE_SUMS  # a host's running sums move in sensor/features/_sums.c


def test_compiled_modules_are_built_from_their_current_sources() -> None:
    modules = native_modules()
    assert "sensor/smtp/parser.py" in modules and "sensor/tcp/reassembler.py" in modules
    for source in modules:
        name = source.removesuffix(".py").replace("/", ".")
        mod = importlib.import_module(name)
        built = Path(str(mod.__file__))
        assert built.suffix == ".so", f"{name} runs interpreted: run `make test` to build it"
        assert built.stat().st_mtime >= (ROOT / source).stat().st_mtime, (
            f"{built.name} is older than {source}: run `make test` to rebuild it"
        )


def test_pure_python_install_gives_the_same_records(tmp_path: Path) -> None:
    """The fallback without a C compiler: the package's sources alone, interpreted, write the
    same sessions, connections and alerts as the compiled build. (Both run from a directory
    of their own: the current directory comes first on sys.path.)"""
    pure = tmp_path / "sources"
    shutil.copytree(ROOT / "sensor", pure / "sensor", ignore=shutil.ignore_patterns("*.so"))
    demo = ROOT / "pcaps" / "demo.pcap"
    outputs = {}
    for name, path in (("compiled", None), ("pure", pure)):
        out = tmp_path / name
        out.mkdir()
        env = dict(os.environ)
        if path is not None:
            env["PYTHONPATH"] = str(path)
        probe = "import sensor.smtp.parser as m; print(m.__file__)"
        where = subprocess.run([sys.executable, "-c", probe], env=env, cwd=out,
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
        assert where.strip().endswith(".py" if path is not None else ".so"), where
        subprocess.run(
            [sys.executable, "-m", "sensor", "analyze", "--quiet", str(demo),
             "--config", str(ROOT / "pcaps" / "demo.toml"), "--sessions", str(out / "s.jsonl"),
             "--conns", str(out / "c.jsonl"), "--alerts", str(out / "a.jsonl"),
             "--model", str(ROOT / "models" / "default.skops")],
            env=env, cwd=out, check=True, timeout=300,
        )  # fmt: skip
        outputs[name] = [(out / f).read_bytes() for f in ("s.jsonl", "c.jsonl", "a.jsonl")]
    assert all(outputs["compiled"]) and outputs["pure"] == outputs["compiled"]
