"""What a model file says about itself, read without numpy or scikit-learn: the model's input
columns and roles, the trusted types, and the checks a file passes before a run starts.

`analyze` and `live` read the card in their own process and leave numpy, the scoring tables
and scikit-learn to the model's child process (sensor.detect.scoring), so that the packet loop
never pays for their import.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sensor.errors import ModelError
from sensor.features.schema import FEATURE_NAMES, FEATURE_SCHEMA_VERSION

TABLES_MEMBER = "port25/score_tables.npz"
"""The archive member of the scoring tables (sensor.detect.tables.MEMBER)."""

FORMAT = "port25-host-model/1"
ROLES: tuple[str, ...] = ("outside", "inside", "mta", "server")
ROLE_TEXT = {"outside": "outside client", "inside": "inside client", "mta": "authorised MTA",
             "server": "our server"}
MODEL_FEATURES: tuple[str, ...] = FEATURE_NAMES + tuple(f"role_{r}" for r in ROLES)
"""The model's input columns: the feature schema's vector, then the host's role, one-hot."""

# Every type a model file may hold: skops refuses to load any other. Our own estimators, the
# scikit-learn ones the detectors are built from, and the numpy and builtin types they carry.
TRUSTED_TYPES: tuple[str, ...] = (
    "builtins.slice",
    "numpy.dtype",
    "numpy.float64",
    "numpy.int64",
    "numpy.ndarray",
    "numpy.random.mtrand.RandomState",
    "numpy.random._mt19937.MT19937",
    "numpy.random._mt19937.__bit_generator_ctor",
    "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random._pickle.__randomstate_ctor",
    "sensor.detect.estimators.HistogramDetector",
    "sensor.detect.estimators.LogCounts",
    "sensor.detect.estimators.RoleSplitDetector",
    "sensor.detect.estimators.TailDetector",
    "sklearn.ensemble._iforest.IsolationForest",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.neighbors._lof.LocalOutlierFactor",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.RobustScaler",
    "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.tree._tree.Tree",
)


def _fail(path: str, why: str) -> ModelError:
    return ModelError(f"{path}: {why}")


MAX_MODEL_BYTES = 256 << 20  # uncompressed size of every member of a model archive together
MAX_MODEL_MEMBERS = 4096


def peek_card(path: str) -> dict[str, Any]:
    """The model card read from the archive without scikit-learn: checks the file is a whole,
    uncorrupted archive of our format and feature schema, within size bounds and holding only
    trusted types, before a run starts."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MODEL_MEMBERS or sum(i.file_size for i in infos) > \
                    MAX_MODEL_BYTES:
                raise _fail(path, f"refusing to load: more than {MAX_MODEL_BYTES >> 20} MiB or "
                                  f"{MAX_MODEL_MEMBERS} members uncompressed")
            bad = zf.testzip()
            if bad is not None:
                raise _fail(path, f"corrupt model file (member {bad} fails its checksum)")
            schema = json.loads(zf.read("schema.json"))
    except FileNotFoundError:
        raise _fail(path, "no such model file") from None
    except IsADirectoryError:
        raise _fail(path, "expected a model file, got a directory") from None
    except OSError as exc:
        raise _fail(path, f"cannot read the model file: {exc.strerror}") from None
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, RecursionError,
            NotImplementedError, zlib.error, OverflowError):
        raise _fail(path, "not a model file (expected a skops archive written by "
                          "`sensor train`; truncated or altered?)") from None
    card = _plain(_content(schema).get("card"))
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise _fail(path, f"not a port25-sensor model (expected format {FORMAT})")
    _check_card(path, card)
    found: set[str] = set()
    _types(schema, found, 0)
    _refuse_foreign(path, found)
    return card


PLAIN_TYPES: frozenset[str] = frozenset(
    f"builtins.{t}" for t in ("dict", "list", "tuple", "str", "int", "float", "bool", "NoneType"))
MAX_SCHEMA_DEPTH = 200  # nesting of a model's schema.json walked before the file is refused


def _types(node: Any, out: set[str], depth: int) -> None:
    """Every type a skops schema names (module.class), skops' default-trusted ones included:
    our list is the only one that counts."""
    if depth > MAX_SCHEMA_DEPTH:
        out.add("<nested too deep>")
        return
    if isinstance(node, dict):
        cls, mod = node.get("__class__"), node.get("__module__")
        if isinstance(cls, str) and isinstance(mod, str):
            out.add(f"{mod}.{cls}")
        for value in node.values():
            _types(value, out, depth + 1)
    elif isinstance(node, list):
        for value in node:
            _types(value, out, depth + 1)


def _refuse_foreign(path: str, found: Iterable[str]) -> None:
    foreign = sorted(set(found) - set(TRUSTED_TYPES) - PLAIN_TYPES)
    if foreign:
        raise _fail(path, "refusing to load: it holds types outside the sensor's trusted list: "
                          + ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else ""))


def _content(node: Any) -> dict[str, Any]:
    content = node.get("content") if isinstance(node, dict) else None
    return content if isinstance(content, dict) else {}


def _plain(node: Any, depth: int = 0) -> Any:
    """A skops JSON node of plain data (dict, list, str, int, float, bool, None) as Python."""
    if not isinstance(node, dict) or "__class__" not in node or depth > MAX_SCHEMA_DEPTH:
        return None
    cls, content = node.get("__class__"), node.get("content")
    if node.get("is_json") is True and isinstance(content, str):
        try:
            return json.loads(content)
        except ValueError:
            return None
    if cls == "dict" and isinstance(content, dict):
        return {k: _plain(v, depth + 1) for k, v in content.items()}
    if cls in ("list", "tuple") and isinstance(content, list):
        return [_plain(v, depth + 1) for v in content]
    return None


def _check_card(path: str, card: dict[str, Any]) -> None:
    version = card.get("feature_schema_version")
    if version != FEATURE_SCHEMA_VERSION:
        raise _fail(path, f"trained for feature schema {version}, this sensor has "
                          f"{FEATURE_SCHEMA_VERSION}: retrain it with `sensor train`")
    if card.get("feature_names") != list(MODEL_FEATURES):
        raise _fail(path, "its feature names differ from this sensor's: retrain it with "
                          "`sensor train`")
    threshold = card.get("threshold")
    if not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise _fail(path, "its card has no finite threshold")


def has_tables(path: str) -> bool:
    """Whether the model file holds scoring tables (after `peek_card` accepted it)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return TABLES_MEMBER in zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def bundled_model() -> str | None:
    """The model shipped with the sensor (models/default.skops beside the package), if any."""
    path = Path(__file__).resolve().parents[2] / "models" / "default.skops"
    return str(path) if path.is_file() else None
