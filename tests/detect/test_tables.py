"""Scoring tables: numpy-only scores equal the scikit-learn pipeline's bit for bit; models
without them (other detectors) still score, in a child process; altered tables are refused."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sensor.capture.source import open_files
from sensor.config import load_config
from sensor.detect import model as host_model
from sensor.detect import tables
from sensor.detect.detector import Detector
from sensor.detect.estimators import LogCounts, TailDetector
from sensor.detect.scoring import CollectingScorer
from sensor.errors import ModelError
from sensor.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = str(ROOT / "models" / "default.skops")
CONFIG = str(ROOT / "pcaps" / "demo.toml")
DEMO = str(ROOT / "pcaps" / "demo.pcap")
NF = len(host_model.MODEL_FEATURES)


def _rows_of(pcap: str) -> np.ndarray:
    """The host-window rows `analyze` scores on a capture."""
    scorer = CollectingScorer()
    det = Detector(load_config(CONFIG), lambda a: None, scorer, "rows")
    pipe = Pipeline(on_conn=det.on_conn, on_session=det.on_session)
    pipe.run(open_files([pcap], "tcp", pipe.capture_stats, lambda path, why: None))
    pipe.finish()
    det.finish()
    return np.concatenate(scorer.rows)


@pytest.fixture(scope="module")
def bundled() -> tuple[host_model.HostModel, tables.ScoreTables]:
    model = host_model.load(BUNDLED)
    found = tables.read(BUNDLED, host_model.peek_card(BUNDLED))
    assert found is not None
    return model, found


def test_bundled_tables_score_real_rows_as_the_pipeline_does(
        bundled: tuple[host_model.HostModel, tables.ScoreTables]) -> None:
    model, found = bundled
    X = _rows_of(DEMO)
    assert X.shape[0] > 300 and X.shape[1] == NF
    assert found.scores(X).tobytes() == model.scores(X).tobytes()
    assert found.threshold == model.threshold


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.large_base_example])
@given(arrays(np.float64, (17, NF - 4), elements=st.one_of(st.floats(0, 1e9),
                                                           st.integers(0, 5000).map(float)),
              fill=st.just(0.0)),
       st.lists(st.integers(-1, 3), min_size=17, max_size=17))
def test_tables_equal_the_pipeline_on_any_rows(
        bundled: tuple[host_model.HostModel, tables.ScoreTables], counts: np.ndarray,
        roles: list[int]) -> None:
    """Counts from zero to far past anything in training, any role (or none)."""
    model, found = bundled
    X = np.zeros((17, NF))
    X[:, :NF - 4] = counts
    for i, r in enumerate(roles):
        if r >= 0:
            X[i, NF - 4 + r] = 1.0
    assert found.scores(X).tobytes() == model.scores(X).tobytes()


def test_other_tail_variants_keep_equal_scores(tmp_path: Path) -> None:
    """One set of marginals for every role, and a two-sided detector, saved and read back."""
    from sklearn.pipeline import Pipeline as SkPipeline
    from sklearn.preprocessing import RobustScaler

    rng = np.random.default_rng(3)
    X = np.floor(rng.exponential(3.0, (400, NF)))
    X[:, NF - 4:] = 0.0
    X[np.arange(400), NF - 4 + np.arange(400) % 4] = 1.0
    base = host_model.fit(host_model.TrainingSet(X, {"outside": 100}, ["t"], (0.0, 1.0), "t"),
                          detector="tail")
    two = SkPipeline([("log", LogCounts()), ("scale", RobustScaler()),
                      ("detect", TailDetector(two_sided=True))]).fit(X)
    check = -np.asarray(two.score_samples(base.check_x))
    variants = {"tail": base,
                "two-sided": host_model.HostModel(two, base.threshold, base.stats, base.card,
                                                  base.check_x, check)}
    probe = np.floor(rng.exponential(8.0, (300, NF)))
    probe[:, NF - 4:] = X[:300, NF - 4:]
    for name, m in variants.items():
        path = tmp_path / f"{name}.skops"
        host_model.save(m, str(path))
        found = tables.read(str(path), host_model.peek_card(str(path)))
        assert found is not None, name
        assert found.scores(probe).tobytes() == m.scores(probe).tobytes(), name
        assert host_model.load(str(path)).threshold == m.threshold


def test_non_finite_rows_are_scored_not_raised(
        bundled: tuple[host_model.HostModel, tables.ScoreTables]) -> None:
    _, found = bundled
    X = np.zeros((3, NF))
    X[0, 10], X[1, 20], X[2, 30] = np.nan, np.inf, -np.inf
    assert np.isfinite(found.scores(X)).all()
    assert found.scores(np.zeros((0, NF))).shape == (0,)


def sensor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sensor", *args], capture_output=True,
                          text=True, timeout=600)


def test_a_model_without_tables_scores_in_a_child_process(forest_model: Path,
                                                          tmp_path: Path) -> None:
    assert tables.read(str(forest_model), host_model.peek_card(str(forest_model))) is None
    scores = tmp_path / "scores.jsonl"
    proc = sensor("analyze", DEMO, "--config", CONFIG, "-q", "--model", str(forest_model),
                  "--host-scores", str(scores))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    assert len(rows) > 20 and {r["role"] for r in rows} >= {"outside", "inside"}
    loaded = host_model.load(str(forest_model))
    assert all(r["threshold"] == round(loaded.threshold, 6) for r in rows)


def _with_member(src: str, dst: Path, member: bytes) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, member if name == tables.MEMBER else zin.read(name))


def test_altered_tables_are_refused_in_one_line(tmp_path: Path) -> None:
    """Tables rewritten whole (valid checksums) that no longer score their check rows as
    recorded, or that are not arrays at all: `analyze` and `inspect --verify` refuse them."""
    import io

    with zipfile.ZipFile(BUNDLED) as zf, np.load(io.BytesIO(zf.read(tables.MEMBER))) as npz:
        arrays_ = {k: npz[k] for k in npz.files}
    arrays_["count_ge"] = arrays_["count_ge"] * 0.5
    buf = io.BytesIO()
    np.savez(buf, **arrays_)
    for name, member in (("halved", buf.getvalue()), ("garbage", b"PK\x03\x04 not arrays")):
        bad = tmp_path / f"{name}.skops"
        _with_member(BUNDLED, bad, member)
        with pytest.raises(ModelError, match="scoring tables"):
            tables.read(str(bad), host_model.peek_card(str(bad)))
        for args in (("inspect", "--verify", str(bad)),
                     ("analyze", DEMO, "-q", "--model", str(bad), "--alerts", "/dev/null")):
            proc = sensor(*args)
            assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
            lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("sensor: error")]
            assert len(lines) == 1 and "scoring tables" in lines[0], proc.stderr
