"""The scikit-learn estimators of the host model: a count transform and two outlier detectors.

Each follows scikit-learn's conventions (parameters set in ``__init__`` only, ``fit`` returns
self, learned attributes end in ``_``, ``score_samples`` higher for more normal samples), so that
they compose in a Pipeline, pass ``parametrize_with_checks`` and persist with skops.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted, validate_data

Array = Any  # numpy arrays: numpy ships types, but scikit-learn's signatures do not


class LogCounts(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """sign(x) * log(1 + |x|) of every feature: counts spanning orders of magnitude (1 message or
    10,000) become comparable steps, which tree splits and distances both need."""

    def fit(self, X: Array, y: Array = None) -> LogCounts:
        validate_data(self, X, dtype=np.float64, ensure_all_finite=True)
        return self

    def transform(self, X: Array) -> Array:
        check_is_fitted(self, "n_features_in_")
        X = validate_data(self, X, dtype=np.float64, reset=False, ensure_all_finite=True)
        return np.sign(X) * np.log1p(np.abs(X))

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "n_features_in_")


class HistogramDetector(OutlierMixin, BaseEstimator):  # type: ignore[misc]
    """Histogram-based outlier score (HBOS, Goldstein and Dengel 2012): features taken as
    independent, a sample's score is the sum over features of -log of its bin's density.

    Parameters: n_bins per feature, alpha (pseudo-count that keeps empty bins finite), and
    contamination (share of training samples `predict` calls outliers)."""

    def __init__(self, n_bins: int = 20, alpha: float = 0.5, contamination: float = 0.01) -> None:
        self.n_bins = n_bins
        self.alpha = alpha
        self.contamination = contamination

    def fit(self, X: Array, y: Array = None) -> HistogramDetector:
        X = validate_data(self, X, dtype=np.float64)
        if not 0.0 < self.contamination <= 0.5:
            raise ValueError(f"contamination must be in (0, 0.5], got {self.contamination}")
        if self.n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {self.n_bins}")
        lo, hi = X.min(axis=0), X.max(axis=0)
        width = np.where(hi > lo, (hi - lo) / self.n_bins, 1.0)
        n = X.shape[0]
        logdens = np.empty((X.shape[1], self.n_bins))
        for j in range(X.shape[1]):
            idx = self._bin(X[:, j], lo[j], width[j])
            counts = np.bincount(idx, minlength=self.n_bins).astype(np.float64)
            logdens[j] = np.log((counts + self.alpha) / (n + self.alpha * self.n_bins))
        self.low_ = lo
        self.width_ = width
        self.log_density_ = logdens
        self.floor_ = np.log(self.alpha / (n + self.alpha * self.n_bins))
        self.offset_ = float(np.quantile(self.score_samples(X), self.contamination))
        return self

    def _bin(self, col: Array, lo: float, width: float) -> Array:
        return np.clip(np.floor((col - lo) / width), 0, self.n_bins - 1).astype(np.intp)

    def score_samples(self, X: Array) -> Array:
        """Sum of the log densities of each sample's bins (higher: more normal)."""
        check_is_fitted(self, "log_density_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        total = np.zeros(X.shape[0])
        for j in range(X.shape[1]):
            col = X[:, j]
            dens = self.log_density_[j][self._bin(col, self.low_[j], self.width_[j])]
            beyond = (col < self.low_[j]) | (col > self.low_[j] + self.width_[j] * self.n_bins)
            total += np.where(beyond, self.floor_, dens)
        return total

    def decision_function(self, X: Array) -> Array:
        """score_samples less the offset: negative for outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Array) -> Array:
        """1 for inliers, -1 for outliers."""
        return np.where(self.decision_function(X) < 0, -1, 1)


class RoleSplitDetector(OutlierMixin, BaseEstimator):  # type: ignore[misc]
    """One clone of `estimator` per host role, the role read from one-hot columns of X.

    A role is the column (of `role_columns`) holding its largest training value; rows of a role
    seen fewer than `min_samples` times in training, or of no role, go to a clone fitted on
    every row."""

    def __init__(self, estimator: Any = None, role_columns: tuple[int, ...] = (),
                 min_samples: int = 50) -> None:
        self.estimator = estimator
        self.role_columns = role_columns
        self.min_samples = min_samples

    def _roles(self, X: Array) -> Array:
        cols = list(self.role_columns)
        if not cols:
            return np.full(X.shape[0], -1)
        on = X[:, cols] >= self.on_values_ - 1e-9
        return np.where(on.any(axis=1), on.argmax(axis=1), -1)

    def fit(self, X: Array, y: Array = None) -> RoleSplitDetector:
        X = validate_data(self, X, dtype=np.float64)
        if any(not 0 <= c < X.shape[1] for c in self.role_columns):
            raise ValueError(f"role_columns {self.role_columns} out of range for "
                             f"{X.shape[1]} features")
        base = self.estimator
        if base is None:
            from sklearn.ensemble import IsolationForest

            base = IsolationForest(random_state=0)
        cols = list(self.role_columns)
        self.on_values_ = X[:, cols].max(axis=0) if cols else np.empty(0)
        roles = self._roles(X)
        self.global_ = clone(base).fit(X)
        self.per_role_ = []
        for r in range(len(cols)):
            rows = X[roles == r]
            self.per_role_.append(clone(base).fit(rows) if len(rows) >= self.min_samples
                                  else None)
        return self

    def score_samples(self, X: Array) -> Array:
        """Each row scored by its role's estimator (higher: more normal)."""
        check_is_fitted(self, "global_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        roles = self._roles(X)
        out = np.empty(X.shape[0])
        done = np.zeros(X.shape[0], dtype=bool)
        for r, est in enumerate(self.per_role_):
            mask = roles == r
            if est is not None and mask.any():
                out[mask] = est.score_samples(X[mask])
                done |= mask
        if not done.all():
            out[~done] = self.global_.score_samples(X[~done])
        return out

    def decision_function(self, X: Array) -> Array:
        """score_samples less the global estimator's offset: negative for outliers."""
        return self.score_samples(X) - getattr(self.global_, "offset_", 0.0)

    def predict(self, X: Array) -> Array:
        """1 for inliers, -1 for outliers."""
        return np.where(self.decision_function(X) < 0, -1, 1)
