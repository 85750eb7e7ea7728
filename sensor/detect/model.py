"""The trained host model: fitting, threshold calibration, explanations, skops persistence.

A model file is a skops archive of one dict: the scikit-learn Pipeline (transforms, then the
detector), the alert threshold, the per-role training statistics the explanations quote, check
rows with their expected scores, and the model card. It is loaded only through skops with the
trusted-type list below: never pickle, never ``trusted=True``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sensor import __version__
from sensor.detect.card import (  # noqa: F401 - the card's names are the model's too
    FORMAT,
    MAX_MODEL_BYTES,
    MAX_MODEL_MEMBERS,
    MODEL_FEATURES,
    PLAIN_TYPES,
    ROLE_TEXT,
    ROLES,
    TRUSTED_TYPES,
    _fail,
    _refuse_foreign,
    bundled_model,
    peek_card,
)
from sensor.detect.rules import span
from sensor.errors import ModelError
from sensor.features.schema import (
    FEATURE_NAMES,
    FEATURE_SCHEMA_VERSION,
    HOST_SCALARS,
    WINDOW_PREFIXES,
)

DETECTORS = ("iforest", "iforest-per-role", "lof", "hbos", "tail", "tail-per-role")
DEFAULT_DETECTOR = "tail-per-role"
CHECK_ROWS = 32  # training rows stored with their scores to verify a loaded model
SCALE_FLOOR = 0.25  # on the log scale: a feature constant in training still has a unit of spread
MIN_DEVIATION = 2.0  # robust z below which a feature is not quoted as deviating

LOF_MAX_ROWS = 10_000  # LocalOutlierFactor keeps every row and compares each with all: sampled


def make_pipeline(detector: str, seed: int, n_features: int = len(MODEL_FEATURES)) -> Any:
    """A fresh, unfitted Pipeline: log counts, robust scaling, then the detector."""
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import RobustScaler

    from sensor.detect.estimators import (
        HistogramDetector,
        LogCounts,
        RoleSplitDetector,
        TailDetector,
    )

    forest = IsolationForest(n_estimators=200, max_samples=256, random_state=seed)
    role_cols = tuple(range(n_features - len(ROLES), n_features))
    est: Any
    if detector == "iforest":
        est = forest
    elif detector == "iforest-per-role":
        est = RoleSplitDetector(forest, role_cols)
    elif detector == "lof":
        est = LocalOutlierFactor(n_neighbors=35, novelty=True)
    elif detector == "hbos":
        est = HistogramDetector()
    elif detector in ("tail", "tail-per-role"):
        groups = feature_groups(n_features)
        est = TailDetector(role_cols if detector == "tail-per-role" else (), groups,
                           top_k=TAIL_TOP_K, group_weights=group_weights(n_features))
    else:
        raise ModelError(f"detector: expected one of {', '.join(DETECTORS)}, got {detector!r}")
    return Pipeline([("log", LogCounts()), ("scale", RobustScaler()), ("detect", est)])


ACTIVITY: frozenset[str] = frozenset({
    "conns", "sessions", "tls_sessions", "mail_from", "msgs", "msg_bytes", "bytes_out", "rcpts",
    "rcpt_accepted", "dst_ips", "dst_24s", "helo_names", "rcpt_domains", "srv_sessions",
    "mean_msg_size", "interarrival_cv", "tls_share", "reply_attach_msgs", "msg_size_cv",
    "rcpts_per_msg", "auth_successes", "auth_attempts"})
"""Plain volume of mail, for the model one behaviour however many counts show it (a backup MX
flushing its queue is busy on all of them at once), beside the schema's activity family."""


IGNORED: frozenset[str] = frozenset({
    "auth_fails_before_success", "rcpts_after_auth_success", "msgs_after_auth_success",
    "burst_rcpts_after_auth_success"})
"""Host scalars the model leaves out: they count other clients' AUTH failures for the same user
and what followed, which the compromised_account rule weighs; to the model, a printer logging in
as a user someone else attacked would look like the attacker. It keeps the host's own failures."""


VERDICTS: frozenset[str] = frozenset({
    "rcpt_4xx", "rcpt_5xx", "greylisted", "policy_refusals", "data_tempfails"})
"""The server's refusals and deferrals of recipients and messages: one behaviour for the model
(a queue flushed from a backup MX meets all of them at once), beside what they refuse
(unknown users, content after DATA), which stay features of their own."""


DIRECT: frozenset[str] = frozenset({"ext_conns", "ext_dst_ips", "ext_mail_from"})
"""Delivery straight to internet MX hosts, however many of its counts show it."""
FAILURES: frozenset[str] = frozenset({"failed_conns", "refused_conns", "unanswered_conns",
                                      "reset_conns", "ext_failed_conns", "failed_ratio"})
"""Connections refused, unanswered or reset before a word: one behaviour, whichever way."""


def _family(base: str) -> str:
    """"" for plain activity (ACTIVITY, or the schema's activity family), "verdicts" for the
    server's refusals (VERDICTS), "failures" for failed connections (FAILURES), "direct" for
    direct delivery (DIRECT), else the feature."""
    from sensor.features.schema import FEATURE_FAMILY

    if base in ACTIVITY or FEATURE_FAMILY.get(base) == "":
        return ""
    if base in VERDICTS:
        return "verdicts"
    if base in FAILURES:
        return "failures"
    return "direct" if base in DIRECT else base


TAIL_TOP_K = 3

"""Behaviours (feature groups) a host's anomaly adds up: an attack is unlike the site in several
ways at once, a busy benign host mostly in one or two."""
TAIL_THRESHOLD_FLOOR = 0.75
"""The tail detector's threshold, at least: a host must be past the training extremes in more
than two ways at full strength (two give 2/3). Training windows seldom are, so the quantile alone
can land lower than new benign hosts reach, a busy printer among them."""
ACTIVITY_WEIGHT = 0.5
"""How much plain volume beyond training counts, against 1 for any other kind of behaviour: a
busy newsletter or a backup MX flushing its queue is unusual volume and nothing else."""


def group_weights(n_features: int = len(MODEL_FEATURES)) -> tuple[float, ...]:
    """The weight of each group id of `feature_groups`: the activity group weighs less."""
    groups = feature_groups(n_features)
    weights = [1.0] * (max(groups) + 1)
    weights[_activity_group(n_features)] = ACTIVITY_WEIGHT
    return tuple(weights)


def _activity_group(n_features: int) -> int:
    for name, g in zip(MODEL_FEATURES[:n_features], feature_groups(n_features), strict=True):
        base = name if name in HOST_SCALARS else name.split("_", 1)[1]
        if g >= 0 and _family(base) == "":
            return g
    return 0


def feature_groups(n_features: int = len(MODEL_FEATURES)) -> tuple[int, ...]:
    """One group id per model column: a feature over its windows is one group, and the plain
    activity counts (family "") are one group together; the role columns are left out (-1)."""
    ids: dict[str, int] = {}
    out = []
    for name in MODEL_FEATURES[:n_features]:
        if name.startswith("role_"):
            out.append(-1)
            continue
        base = name if name in HOST_SCALARS else name.split("_", 1)[1]
        if base in IGNORED:
            out.append(-1)
            continue
        fam = _family(base)
        out.append(ids.setdefault("activity" if fam == "" else fam, len(ids)))
    return tuple(out)


@dataclass(slots=True)
class Deviation:
    """One feature of a host far from what its role showed in training."""

    feature: str
    value: float
    training_p999: float  # the role's 99.9th percentile in training, quoted
    z: float
    text: str

    def to_dict(self) -> dict[str, object]:
        return {"feature": self.feature, "value": _clean(self.value),
                "training_p999": _clean(self.training_p999), "text": self.text}


def _clean(v: float) -> float:
    r = round(float(v), 3)
    return int(r) if r == int(r) else r


@dataclass(slots=True)
class RoleStats:
    """Per-role training statistics of every feature: robust centre and spread on the log scale
    (for ranking deviations), and the raw 99.9th percentile (for the words)."""

    centre: Any  # (roles + 1, features); the last row is every role together
    scale: Any
    p999: Any
    rows: Any  # training rows per role (roles + 1)

    @classmethod
    def of(cls, X: Any, roles: Any) -> RoleStats:
        n_roles, n_feat = len(ROLES), X.shape[1]
        shape = (n_roles + 1, n_feat)
        centre, scale = np.zeros(shape), np.ones(shape)
        p999 = np.zeros(shape)
        counts = np.zeros(n_roles + 1)
        logx = np.sign(X) * np.log1p(np.abs(X))
        for r in range(n_roles + 1):
            mask = roles == r if r < n_roles else np.ones(len(X), dtype=bool)
            counts[r] = int(mask.sum())
            if not mask.any():
                continue  # filled from every role together below
            lx = logx[mask]
            q25, q50, q75 = np.quantile(lx, [0.25, 0.5, 0.75], axis=0)
            centre[r] = q50
            scale[r] = np.maximum((q75 - q25) / 1.349, SCALE_FLOOR)
            p999[r] = np.quantile(X[mask], 0.999, axis=0)
        for r in range(n_roles):  # a role absent from training: explained against every role
            if counts[r] == 0:
                centre[r], scale[r] = centre[n_roles], scale[n_roles]
                p999[r] = p999[n_roles]
        return cls(centre, scale, p999, counts)

    def to_dict(self) -> dict[str, Any]:
        return {"centre": self.centre, "scale": self.scale, "p999": self.p999,
                "rows": self.rows}


def _phrase(name: str, value: float, windows: dict[str, float]) -> tuple[str, str]:
    """(phrase with the value, unit) of a feature column, the window named in words."""
    from sensor.features import schema

    texts: dict[str, tuple[str, str]] = getattr(schema, "FEATURE_TEXT", {})
    base, where = name, ""
    for prefix in WINDOW_PREFIXES:
        if name.startswith(prefix + "_"):
            base = name[len(prefix) + 1:]
            where = f" in {span(windows[prefix])}"
            break
    template, unit = texts.get(base, (f"{base.replace('_', ' ')} = {{v}}", "number"))
    return template.format(v=_fmt(value, unit)) + where, unit


def _fmt(v: float, unit: str) -> str:
    if unit == "share":
        return f"{round(100 * v)}%"
    if unit == "bytes":
        return f"{v / 1e6:.1f} MB" if v >= 1e6 else f"{v / 1e3:.1f} kB" if v >= 1e3 else \
            f"{v:.0f} bytes"
    if float(v).is_integer():
        return f"{int(v)}"
    return f"{v:.2f}"


class HostModel:
    """A loaded (or freshly trained) model: scores rows, explains them, knows its card."""

    def __init__(self, pipeline: Any, threshold: float, stats: RoleStats, card: dict[str, Any],
                 check_x: Any, check_scores: Any) -> None:
        self.pipeline = pipeline
        self.threshold = threshold
        self.stats = stats
        self.card = card
        self.check_x = check_x
        self.check_scores = check_scores

    def scores(self, X: Any) -> Any:
        """Anomaly scores of rows (MODEL_FEATURES order): higher is more anomalous."""
        X = np.asarray(X, dtype=np.float64)
        if X.shape[0] == 0:
            return np.zeros(0)
        return -np.asarray(self.pipeline.score_samples(X), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "card": self.card, "pipeline": self.pipeline,
                "threshold": self.threshold, "stats": self.stats.to_dict(),
                "check_x": self.check_x, "check_scores": self.check_scores}


def explain_row(stats: RoleStats, x: Sequence[float], windows: dict[str, float],
                top: int = 5) -> list[Deviation]:
    """The `top` features of one row most above what its role showed in training, one per base
    feature (the window where it stands out most), each at least MIN_DEVIATION robust z above
    the role's centre and above its 99.9th training percentile. Only excesses are quoted, as the
    detectors count them: a host quieter than usual is not a finding."""
    n_feat = len(FEATURE_NAMES)
    xa = np.asarray(x[:n_feat], dtype=np.float64)
    roles = x[n_feat:n_feat + len(ROLES)]
    r = next((i for i, v in enumerate(roles) if v > 0.5), len(ROLES))
    lx = np.sign(xa) * np.log1p(np.abs(xa))
    z = (lx - stats.centre[r][:n_feat]) / stats.scale[r][:n_feat]
    order = np.argsort(-z, kind="stable")
    out: list[Deviation] = []
    spare: list[int] = []  # deviating but within the training range: quoted to make up 3
    seen: set[str] = set()
    for j in order:
        zj = float(z[j])
        if zj < MIN_DEVIATION or len(out) >= top:
            break
        name = FEATURE_NAMES[j]
        base = name if name in HOST_SCALARS else name.split("_", 1)[1]
        if base in seen or base in IGNORED:
            continue
        seen.add(base)
        if xa[j] <= stats.p999[r][j]:
            spare.append(int(j))
            continue
        out.append(_deviation(stats, r, int(j), xa, zj, windows))
    for j in spare[:max(0, MIN_QUOTED - len(out))]:
        out.append(_deviation(stats, r, j, xa, float(z[j]), windows))
    return out


MIN_QUOTED = 3  # features an explanation names when that many deviate at all


def _deviation(stats: RoleStats, r: int, j: int, xa: Any, zj: float,
               windows: dict[str, float]) -> Deviation:
    name = FEATURE_NAMES[j]
    ref = float(stats.p999[r][j])
    phrase, unit = _phrase(name, float(xa[j]), windows)
    return Deviation(name, float(xa[j]), ref, zj,
                     f"{phrase}; 99.9th percentile in training: {_fmt(ref, unit)}")


# --------------------------------------------------------------------------------------------
# fitting


@dataclass(slots=True)
class TrainingSet:
    """Host-window rows collected for training, with what the card says about them."""

    X: Any  # (rows, MODEL_FEATURES)
    hosts_per_role: dict[str, int]
    files: list[str]
    span: tuple[float, float]
    command: str
    folds: Any = None  # per row, its calibration fold (by host: sensor.detect.train.host_folds)


CALIBRATION_FOLDS = 5  # host-disjoint folds the threshold is calibrated over


def _folds(data: TrainingSet, n: int) -> Any:
    """The calibration fold of every row: as collected (by host), else consecutive stretches."""
    if data.folds is not None and len(data.folds) == n and len(np.unique(data.folds)) > 1:
        return np.asarray(data.folds)
    return (np.arange(n) * CALIBRATION_FOLDS) // max(n, 1)


def _held_out_scores(X: Any, folds: Any, detector: str, seed: int) -> Any:
    """Every row scored by a model fitted without its fold (other hosts). A model has seen every
    training row, so in-sample scores never go beyond its own extremes, while new hosts do."""
    out = np.empty(len(X))
    for f in np.unique(folds):
        mask = folds == f
        rest = X[~mask]
        if len(rest) < 2:
            out[mask] = -make_pipeline(detector, seed).fit(X).score_samples(X[mask])
            continue
        out[mask] = -make_pipeline(detector, seed).fit(rest).score_samples(X[mask])
    return out


def fit(data: TrainingSet, *, detector: str = DEFAULT_DETECTOR, seed: int = 0,
        target_fpr: float = 1e-4, contamination: float = 0.0,
        windows: dict[str, float] | None = None) -> HostModel:
    """Fit the pipeline, calibrate the threshold, and build the model card.

    With `contamination` > 0 the archive is taken to hold that share of attack windows: the
    pipeline is fitted once, the highest-scoring share of rows is dropped, and it is fitted again
    on the rest, over which the threshold is then calibrated."""
    import sklearn
    import skops

    X = np.asarray(data.X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] != len(MODEL_FEATURES):
        raise ModelError(f"training: need at least 2 host-windows of {len(MODEL_FEATURES)} "
                         f"features, got {X.shape[0] if X.ndim == 2 else 0}")
    if not 0.0 < target_fpr < 1.0:
        raise ModelError(f"--target-fpr: expected a rate between 0 and 1, got {target_fpr}")
    if not 0.0 <= contamination < 0.5:
        raise ModelError(f"--contamination: expected a share in [0, 0.5), got {contamination}")
    folds = _folds(data, len(X))
    if detector == "lof" and len(X) > LOF_MAX_ROWS:
        pick = np.sort(np.random.default_rng(seed).choice(len(X), LOF_MAX_ROWS, replace=False))
        X, folds = X[pick], folds[pick]
    pipe = make_pipeline(detector, seed).fit(X)
    trimmed = 0
    if contamination > 0:
        s = -pipe.score_samples(X)
        keep = s <= np.quantile(s, 1.0 - contamination)
        trimmed = int((~keep).sum())
        X, folds = X[keep], folds[keep]
        pipe = make_pipeline(detector, seed).fit(X)
    scores = -np.asarray(pipe.score_samples(X), dtype=np.float64)
    threshold = float(np.quantile(scores, 1.0 - target_fpr, method="higher"))
    if detector.startswith("tail"):
        threshold = max(threshold, TAIL_THRESHOLD_FLOOR)
    held_out = _held_out_scores(X, folds, detector, seed)
    held_out_fpr = float(np.mean(held_out > threshold))
    roles = np.argmax(X[:, len(FEATURE_NAMES):], axis=1)
    stats = RoleStats.of(X, roles)
    # check rows: the highest scores and an even spread of the rest, fixed by the seed-free order
    order = np.argsort(-scores, kind="stable")
    picks = np.unique(np.concatenate([order[:CHECK_ROWS // 2],
                                      np.linspace(0, len(X) - 1, CHECK_ROWS // 2).astype(int)]))
    windows_per_role = {ROLES[r]: int((roles == r).sum()) for r in range(len(ROLES))}
    card: dict[str, Any] = {
        "format": FORMAT,
        "sensor_version": __version__,
        "sklearn_version": sklearn.__version__,
        "skops_version": skops.__version__,
        "numpy_version": np.__version__,
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "feature_names": list(MODEL_FEATURES),
        "detector": detector,
        "pipeline": " -> ".join(f"{name}: {type(step).__name__}" for name, step in pipe.steps),
        "seed": seed,
        "threshold": threshold,
        "target_fpr": target_fpr,
        "held_out_fpr": held_out_fpr,
        "contamination": contamination,
        "training": {
            "files": list(data.files),
            "span": [data.span[0], data.span[1]],
            "host_windows": len(data.X),
            "host_windows_trimmed": trimmed,
            "hosts_per_role": dict(data.hosts_per_role),
            "windows_per_role": windows_per_role,
            "windows_s": dict(windows or {}),
        },
        "command": data.command,
    }
    return HostModel(pipe, threshold, stats, card, X[picks].copy(), scores[picks].copy())


# --------------------------------------------------------------------------------------------
# persistence


def save(model: HostModel, path: str) -> None:
    """Write the model as a skops archive, with its scoring tables where the detector has
    them (sensor.detect.tables)."""
    import skops.io as sio

    try:
        sio.dump(model.to_dict(), path, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    except OSError as exc:
        raise ModelError(f"{path}: cannot write the model: {exc.strerror}") from None
    from sensor.detect import tables

    arrays = tables.arrays_of(model)
    if arrays is not None:  # the default detectors then score with numpy alone
        tables.append_to(path, arrays)


def load(path: str) -> HostModel:
    """Load and verify a model: only trusted types, our format and schema, and its check rows
    scoring as recorded. Any failure is one ModelError line, never a model that scores wrong."""
    card = peek_card(path)
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises what the archive's contents provoke
        raise _fail(path, f"unreadable model file ({type(exc).__name__})") from None
    _refuse_foreign(path, untrusted)
    try:
        obj = sio.load(path, trusted=list(untrusted))
    except Exception as exc:  # a hostile or damaged archive: whatever it provokes is refused
        raise _fail(path, f"unreadable model file ({type(exc).__name__})") from None
    try:
        stats = obj["stats"]
        model = HostModel(obj["pipeline"], float(obj["threshold"]),
                          RoleStats(stats["centre"], stats["scale"], stats["p999"],
                                    stats["rows"]),
                          card, np.asarray(obj["check_x"], dtype=np.float64),
                          np.asarray(obj["check_scores"], dtype=np.float64))
        if model.threshold != card["threshold"]:
            raise ValueError("threshold")
        n_feat, n_rows = len(MODEL_FEATURES), len(ROLES) + 1
        for arr in (model.stats.centre, model.stats.scale, model.stats.p999):
            if np.shape(arr) != (n_rows, n_feat) or not np.all(np.isfinite(arr)):
                raise ValueError("stats")
        got = model.scores(model.check_x)
        if got.shape != model.check_scores.shape or not np.allclose(
                got, model.check_scores, rtol=0, atol=1e-9):
            raise ValueError("check rows")
    except Exception:  # anything off in a loaded archive means it was altered
        raise _fail(path, "model file altered or inconsistent: its contents do not match its "
                          "own check rows; retrain it or restore the original") from None
    from sensor.detect import tables

    found = tables.read(path, card)  # what `analyze` scores with, when present: the same
    if found is not None and not np.array_equal(found.scores(model.check_x), got):
        raise _fail(path, "model file altered or inconsistent: its scoring tables and its "
                          "pipeline score differently; retrain it or restore the original")
    return model


def card_text(card: dict[str, Any], path: str) -> str:
    """The model card as a SOC engineer reads it (`sensor inspect`)."""
    t = card.get("training", {})
    span_ = t.get("span", [0, 0])
    from sensor.detect.alerts import iso_time

    lines = [
        f"model {path}",
        f"  format            {card.get('format')}",
        f"  detector          {card.get('detector')}: {card.get('pipeline')}",
        f"  threshold         {card.get('threshold'):.6f} (target false-positive rate "
        f"{card.get('target_fpr'):g} over the training host-windows; "
        f"{card.get('held_out_fpr', 0.0):.2g} of them over it when their host is held out)",
        f"  feature schema    version {card.get('feature_schema_version')}, "
        f"{len(card.get('feature_names', []))} features",
        f"  versions          sensor {card.get('sensor_version')}, scikit-learn "
        f"{card.get('sklearn_version')}, skops {card.get('skops_version')}, numpy "
        f"{card.get('numpy_version')}",
        f"  seed              {card.get('seed')}",
        f"  contamination     {card.get('contamination')} "
        f"({t.get('host_windows_trimmed', 0)} host-windows trimmed)",
        f"  training files    {len(t.get('files', []))}: " + ", ".join(
            Path(f).name for f in t.get("files", [])[:6]) + (
            " ..." if len(t.get("files", [])) > 6 else ""),
        f"  training span     {iso_time(span_[0])} .. {iso_time(span_[1])}",
        f"  host-windows      {t.get('host_windows')}",
    ]
    for role in ROLES:
        hosts = t.get("hosts_per_role", {}).get(role, 0)
        windows = t.get("windows_per_role", {}).get(role, 0)
        lines.append(f"    {ROLE_TEXT[role]:<16}  hosts {hosts:>6}  windows {windows:>8}")
    lines.append(f"  command           {card.get('command')}")
    return "\n".join(lines)
