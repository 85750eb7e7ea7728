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

from sensor.detect.tables import group_score, roles_of_rows

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
        return roles_of_rows(X, self.role_columns, self.on_values_)

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
        self.offset_ = float(getattr(self.global_, "offset_", 0.0))
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
        return self.score_samples(X) - self.offset_

    def predict(self, X: Array) -> Array:
        """1 for inliers, -1 for outliers."""
        return np.where(self.decision_function(X) < 0, -1, 1)


MIN_TAIL_WIDTH = 0.1  # log-scale width of a varying feature's upper tail, at least
SCORE_CHUNK = 256  # rows compared with a role's breakpoint table at once (memory: chunk x table)


def _log(x: Array) -> Array:
    return np.sign(x) * np.log1p(np.abs(x))


class TailDetector(OutlierMixin, BaseEstimator):  # type: ignore[misc]
    """Empirical-tail (copula-style, after ECOD) outlier score, one set of marginals per role.

    Each feature's value is placed in its role's training distribution: its right tail
    probability p (with `two_sided`, the smaller of both tails; counts are anomalous when high,
    not when a host is quieter than usual) — Laplace-smoothed, so a value beyond everything seen in
    training has p = 1/(n+2)) gives -log(2p), zero in the middle of the distribution. Features
    are grouped (`groups`: one id per column, -1 to leave a column out, e.g. the same count over
    several windows): a group counts with its most extreme column, and a sample's anomaly is the
    sum of its `top_k` most extreme groups, so one wildly unusual behaviour outweighs many mildly
    unusual ones; `group_weights` (one per group id, default 1) weigh a group's extremity, e.g.
    plain volume less than a kind of behaviour never seen. Marginals are kept as at most
    `n_points` breakpoints per feature: every
    distinct value when there are few, else quantiles plus the most extreme values seen.
    `score_samples` is minus that sum over its largest possible value, top_k * log((n+2)/2) for
    the role's n training rows, so that scores of roles trained on more or fewer rows compare
    (higher: more normal; -1 at most anomalous)."""

    def __init__(self, role_columns: tuple[int, ...] = (), groups: tuple[int, ...] = (),
                 top_k: int = 3, n_points: int = 96, min_samples: int = 50,
                 two_sided: bool = False, group_weights: tuple[float, ...] = (),
                 contamination: float = 0.01) -> None:
        self.role_columns = role_columns
        self.two_sided = two_sided
        self.group_weights = group_weights
        self.groups = groups
        self.top_k = top_k
        self.n_points = n_points
        self.min_samples = min_samples
        self.contamination = contamination

    def _roles(self, X: Array) -> Array:
        return roles_of_rows(X, self.role_columns, self.on_values_)

    def _marginals(self, X: Array) -> tuple[Array, Array, Array, Array, float]:
        """(breakpoints, count <= each, count >= each) per feature, padded with +inf; the
        width of each feature's upper tail on the log scale; and n."""
        n, m = X.shape
        k = self.n_points
        bps = np.full((m, k), np.inf)
        le = np.zeros((m, k))
        ge = np.zeros((m, k))
        width = np.zeros(m)
        tail = max(1, k // 6)
        levels = np.linspace(0.0, 1.0, k - 2 * tail)
        for j in range(m):
            col = np.sort(X[:, j])
            uniq = np.unique(col)
            if len(uniq) > k:
                uniq = np.unique(np.concatenate([uniq[:tail], uniq[-tail:],
                                                 np.quantile(col, levels)]))[:k]
            bps[j, :len(uniq)] = uniq
            le[j, :len(uniq)] = np.searchsorted(col, uniq, side="right")
            ge[j, :len(uniq)] = n - np.searchsorted(col, uniq, side="left")
            top, q99 = col[-1], np.quantile(col, 0.99)
            if top > col[0]:  # varies: beyond its top, the tail thins over this log width
                width[j] = max(_log(top) - _log(q99), MIN_TAIL_WIDTH)
        return bps, le, ge, width, float(n)

    def fit(self, X: Array, y: Array = None) -> TailDetector:
        X = validate_data(self, X, dtype=np.float64)
        if not 0.0 < self.contamination <= 0.5:
            raise ValueError(f"contamination must be in (0, 0.5], got {self.contamination}")
        if self.top_k < 1 or self.n_points < 4:
            raise ValueError("top_k must be >= 1 and n_points >= 4")
        m = X.shape[1]
        if any(not 0 <= c < m for c in self.role_columns):
            raise ValueError(f"role_columns {self.role_columns} out of range for {m} features")
        if self.groups and len(self.groups) != m:
            raise ValueError(f"groups: expected {m} ids, got {len(self.groups)}")
        groups = np.asarray(self.groups if self.groups else range(m), dtype=np.intp)
        self.group_ids_ = np.unique(groups[groups >= 0])
        if self.group_weights and len(self.group_weights) <= int(self.group_ids_.max(initial=-1)):
            raise ValueError(f"group_weights: expected a weight per group id, got "
                             f"{len(self.group_weights)}")
        self.weights_ = np.asarray([self.group_weights[g] if self.group_weights else 1.0
                                    for g in self.group_ids_], dtype=np.float64)
        self.group_of_ = groups
        cols = list(self.role_columns)
        self.on_values_ = X[:, cols].max(axis=0) if cols else np.empty(0)
        roles = self._roles(X)
        n_roles = len(cols)
        shape = (n_roles + 1, m, self.n_points)
        self.breakpoints_ = np.full(shape, np.inf)
        self.count_le_ = np.zeros(shape)
        self.count_ge_ = np.zeros(shape)
        self.tail_width_ = np.zeros((n_roles + 1, m))
        self.n_ = np.zeros(n_roles + 1)
        for r in range(n_roles + 1):
            rows = X if r == n_roles else X[roles == r]
            if r < n_roles and len(rows) < self.min_samples:
                rows = X  # too few of this role: the pooled marginals stand in
            b, le, ge, w, n = self._marginals(rows)
            self.breakpoints_[r], self.count_le_[r], self.count_ge_[r] = b, le, ge
            self.tail_width_[r], self.n_[r] = w, n
        self.offset_ = float(np.quantile(self.score_samples(X), self.contamination))
        return self

    def _role_index(self, X: Array) -> Array:
        roles = self._roles(X)
        return np.where(roles < 0, len(self.role_columns), roles)

    def feature_scores(self, X: Array) -> Array:
        """-log(2 p) per sample and feature (0 in the middle of the training distribution)."""
        check_is_fitted(self, "breakpoints_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        roles = self._role_index(X)
        out = np.zeros(X.shape)
        for r in np.unique(roles):
            rows = np.flatnonzero(roles == r)
            for at in range(0, len(rows), SCORE_CHUNK):
                part = rows[at:at + SCORE_CHUNK]
                out[part] = self._role_scores(int(r), X[part])
        return out

    def _role_scores(self, r: int, x: Array) -> Array:
        """feature_scores of rows `x` of role `r`, every feature at once: a breakpoint search
        by comparison against the role's (features, n_points) table."""
        bp, cge, cle = self.breakpoints_[r], self.count_ge_[r], self.count_le_[r]
        m, k = bp.shape
        feat = np.arange(m)
        hi = (bp[None, :, :] < x[:, :, None]).sum(axis=2)  # first breakpoint >= x
        ge = np.where(hi < k, cge[feat, np.minimum(hi, k - 1)], 0.0)
        # beyond the largest value seen, the count there thins out with the distance on the log
        # scale, over the width of the feature's upper tail: just past the top is as rare as the
        # top, far past it is as rare as it gets (never, for a feature constant in training)
        last = np.isfinite(bp).sum(axis=1) - 1
        width = self.tail_width_[r]
        top = bp[feat, np.maximum(last, 0)]
        past = (x > top) & ((last >= 0) & (width > 0))[None, :]
        if past.any():
            fade = np.exp(-(_log(x) - _log(np.where(last >= 0, top, 0.0)))
                          / np.where(width > 0, width, 1.0))
            ge = np.where(past, cge[feat, np.maximum(last, 0)] * fade, ge)
        if self.two_sided:
            lo = (bp[None, :, :] <= x[:, :, None]).sum(axis=2) - 1  # last breakpoint <= x
            le = np.where(lo >= 0, cle[feat, np.maximum(lo, 0)], 0.0)
            ge = np.minimum(ge, le)
        p = (ge + 1.0) / (self.n_[r] + 2.0)
        return np.maximum(0.0, -np.log(np.minimum(2.0 * p, 1.0)))

    def score_samples(self, X: Array) -> Array:
        """Minus the sum of the top_k most extreme feature groups (higher: more normal)."""
        s = self.feature_scores(X)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return -group_score(s, self.group_of_, self.group_ids_, self.weights_, self.top_k,
                            self.n_[self._role_index(X)])

    def decision_function(self, X: Array) -> Array:
        """score_samples less the offset: negative for outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Array) -> Array:
        """1 for inliers, -1 for outliers."""
        return np.where(self.decision_function(X) < 0, -1, 1)
