"""scikit-learn's own estimator checks on every estimator class of ours, plus what they mean."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.utils.estimator_checks import parametrize_with_checks

from sensor.detect.estimators import HistogramDetector, LogCounts, RoleSplitDetector, TailDetector


@parametrize_with_checks([
    LogCounts(),
    HistogramDetector(),
    RoleSplitDetector(IsolationForest(n_estimators=10, random_state=0)),
    TailDetector(),
])
def test_sklearn_conventions(estimator, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


def _roles_data(rng: np.random.Generator) -> np.ndarray:
    """Two roles (one-hot in the last two columns) with different normal volumes."""
    a = np.column_stack([rng.poisson(2, 400), rng.poisson(1, 400), np.ones(400), np.zeros(400)])
    b = np.column_stack([rng.poisson(200, 400), rng.poisson(1, 400), np.zeros(400), np.ones(400)])
    return np.vstack([a, b]).astype(float)


def test_tail_detector_scores_per_role_and_beyond_training_most() -> None:
    X = _roles_data(np.random.default_rng(1))
    det = TailDetector(role_columns=(2, 3), groups=(0, 1, -1, -1), top_k=1).fit(X)
    busy_small_role = np.array([[200.0, 1.0, 1.0, 0.0]])  # normal for role b, extreme for a
    busy_big_role = np.array([[200.0, 1.0, 0.0, 1.0]])
    assert det.score_samples(busy_small_role)[0] < det.score_samples(busy_big_role)[0]
    beyond = np.array([[0.0, 50.0, 0.0, 1.0]])
    assert det.score_samples(beyond)[0] == pytest.approx(-1.0, abs=1e-3)  # far past the top
    quiet = np.array([[0.0, 0.0, 1.0, 0.0]])  # quieter than usual: not anomalous (right tail)
    assert det.score_samples(quiet)[0] == pytest.approx(0.0)


def test_role_split_falls_back_to_the_global_model_for_rare_roles() -> None:
    X = _roles_data(np.random.default_rng(2))
    X = np.vstack([X, [[3.0, 1.0, 0.0, 0.0]] * 5])  # a third pattern: no role column set
    det = RoleSplitDetector(IsolationForest(n_estimators=20, random_state=0), (2, 3),
                            min_samples=50).fit(X)
    assert det.per_role_[0] is not None and det.per_role_[1] is not None
    assert np.isfinite(det.score_samples(X)).all()


def test_histogram_detector_ranks_out_of_range_values_last() -> None:
    X = np.random.default_rng(3).normal(size=(500, 3))
    det = HistogramDetector().fit(X)
    scores = det.score_samples(np.array([[0.0, 0.0, 0.0], [40.0, 0.0, 0.0]]))
    assert scores[1] < scores[0]
    assert det.predict(np.array([[40.0, 40.0, 40.0]]))[0] == -1


def test_tail_detector_just_past_the_top_is_as_rare_as_the_top() -> None:
    X = np.column_stack([np.arange(1000) % 20, np.ones(1000)]).astype(float)
    det = TailDetector(groups=(0, -1), top_k=1).fit(X)
    at_top, just_past, far = det.score_samples(np.array([[19.0, 1.0], [20.0, 1.0],
                                                         [2000.0, 1.0]]))
    assert far < just_past and abs(just_past - at_top) < abs(far - at_top) / 4
