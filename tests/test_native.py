"""The hot stages run as the C extensions mypyc built from their current sources."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def native_modules() -> list[str]:
    """NATIVE_MODULES of setup.py, read without running setup()."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NATIVE_MODULES":
            return [str(v) for v in ast.literal_eval(node.value)]
    raise AssertionError("setup.py has no NATIVE_MODULES list")


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
