"""The tail detector's scoring as plain arrays, stored in the model file beside the skops pipeline.

Loading a model through skops means importing scikit-learn, over a second of CPU before the
first score. For the default detectors (`tail`, `tail-per-role`) scoring needs only the fitted
arrays: the log and robust-scaling steps' centre and scale, then the detector's breakpoint
tables. `sensor train` writes those arrays as one extra archive member, an uncompressed `.npz`
read with numpy alone (never unpickled), with the model's training statistics and check rows,
so that `analyze` and `live` score with numpy only (in the model's child process,
sensor.detect.scoring.ChildScorer). The tables are checked
against the model's own check rows at load: a file whose tables and pipeline disagree is
refused, like a file whose pipeline does not score its check rows as recorded.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from sensor.detect.card import TABLES_MEMBER
from sensor.errors import ModelError

MEMBER: Final = TABLES_MEMBER
SCORE_CHUNK: Final = 2048  # rows of one role scored at once (memory: chunk x features)
COMPARE_VALUES: Final = 4096  # non-zero values of a batch compared with every breakpoint at
# once (memory: values x points x 9 bytes); more are found by binary search

Array = Any


def signed_log(x: Array) -> Array:
    """sign(x) * log(1 + |x|), the LogCounts transform."""
    return np.sign(x) * np.log1p(np.abs(x))


def roles_of_rows(X: Array, role_columns: Array, on_values: Array) -> Array:
    """Each row's role: the index of the one-hot column (of `role_columns`) at its training
    maximum `on_values`, or -1 when none is (or there are no role columns)."""
    cols = [int(c) for c in role_columns]
    if not cols:
        return np.full(X.shape[0], -1)
    on = X[:, cols] >= on_values - 1e-9
    return np.where(on.any(axis=1), on.argmax(axis=1), -1)


def group_score(fs: Array, group_of: Array, group_ids: Array, weights: Array, top_k: int,
                n: Array) -> Array:
    """The tail detector's anomaly of rows from their per-feature scores `fs`: a group counts
    with its most extreme column, times its weight; the sum of the top_k groups over its
    largest possible value, top_k * log((n + 2) / 2) for the n training rows of each row's role
    (0: like training, 1: beyond anything in it)."""
    most = np.log((n + 2.0) / 2.0)
    if len(group_ids):
        used = np.flatnonzero(group_of >= 0)
        order = used[np.argsort(group_of[used], kind="stable")]
        starts = np.searchsorted(group_of[order], group_ids)
        per_group = np.maximum.reduceat(fs[:, order], starts, axis=1) * weights
    else:
        per_group = np.zeros((len(fs), 1))
    k = min(top_k, per_group.shape[1])
    top = -np.sort(-per_group, axis=1)[:, :k]
    return top.sum(axis=1) / (k * most)


@dataclass(slots=True, frozen=True)
class ScoreTables:
    """What scoring a row needs of a LogCounts -> RobustScaler -> TailDetector pipeline, with
    the model's threshold, statistics (for explanations) and check rows."""

    center: Array  # (features,) RobustScaler.center_
    scale: Array  # (features,) RobustScaler.scale_
    role_columns: Array  # (roles,) int
    on_values: Array  # (roles,)
    breakpoints: Array  # (roles + 1, features, points)
    count_ge: Array
    count_le: Array  # empty unless two_sided
    tail_width: Array  # (roles + 1, features)
    n: Array  # (roles + 1,)
    group_of: Array  # (features,) int, -1 for a column left out
    group_ids: Array  # (groups,) int
    weights: Array  # (groups,)
    top_k: int
    two_sided: bool
    threshold: float
    stats: Any  # sensor.detect.model.RoleStats
    check_x: Array
    check_scores: Array
    score_at: Array  # (roles + 1, features, points + 1): -log(2p) at each breakpoint index
    last: Array  # (roles + 1, features): index of the largest breakpoint, -1 for none
    zero_scores: Array  # (roles + 1, features): the score of a count of 0

    def scores(self, X: Array) -> Array:
        """Anomaly scores of rows (MODEL_FEATURES order), higher is more anomalous: what
        HostModel.scores gives through scikit-learn, computed the same way. Non-finite values
        (which scikit-learn would refuse) are clipped to finite ones, so no row stops a run."""
        X = np.asarray(X, dtype=np.float64)
        if X.shape[0] == 0:
            return np.zeros(0)
        if not np.isfinite(X).all():
            X = np.nan_to_num(X, nan=0.0, posinf=1e300, neginf=-1e300)
        sparse = not self.two_sided and X.min() >= 0
        if sparse:  # counts: most are 0, whose scores per role and feature are known
            cols = [int(c) for c in self.role_columns]
            Z = np.zeros((len(X), 0))
            if cols:
                Z = (np.log1p(X[:, cols]) - self.center[cols]) / self.scale[cols]
            roles = roles_of_rows(Z, np.arange(len(cols)), self.on_values)
        else:
            Z = signed_log(X)
            Z -= self.center
            Z /= self.scale
            roles = roles_of_rows(Z, self.role_columns, self.on_values)
        ridx = np.where(roles < 0, len(self.role_columns), roles)
        with np.errstate(all="ignore"):
            if sparse:
                fs = self._sparse_scores(X, ridx)
            else:
                fs = np.zeros(X.shape)
                for r in np.unique(ridx):
                    rows = np.flatnonzero(ridx == r)
                    for at in range(0, len(rows), SCORE_CHUNK):
                        part = rows[at:at + SCORE_CHUNK]
                        fs[part] = self._role_scores(int(r), Z[part])
        return group_score(fs, self.group_of, self.group_ids, self.weights, self.top_k,
                           self.n[ridx])

    def _role_scores(self, r: int, x: Array) -> Array:
        """-log(2 p) per row and feature for rows of role r (TailDetector._role_scores), the
        breakpoint found by a binary search per feature rather than by comparing every one,
        and its score read from a table made at load (the same arithmetic on the same counts,
        so the same value); only values past the largest breakpoint are computed here."""
        bp, cge = self.breakpoints[r], self.count_ge[r]
        m, k = bp.shape
        hi = np.empty(x.shape, dtype=np.intp)
        for j in range(m):  # first breakpoint >= x: the count of those below it
            hi[:, j] = np.searchsorted(bp[j], x[:, j], side="left")
        if self.two_sided:
            return self._two_sided(r, x, hi)
        hi += np.arange(m) * (k + 1)
        out = self.score_at[r].ravel()[hi]
        last = self.last[r]
        width = self.tail_width[r]
        top = bp[np.arange(m), np.maximum(last, 0)]
        past = (x > top) & ((last >= 0) & (width > 0))[None, :]
        if past.any():  # there last >= 0 and width > 0; element by element
            at, col = np.nonzero(past)
            fade = np.exp(-(signed_log(x[at, col]) - signed_log(top[col])) / width[col])
            out[at, col] = _tail_score(cge[col, last[col]] * fade, self.n[r])
        return out

    def _sparse_scores(self, X: Array, ridx: Array) -> Array:
        """_role_scores of raw counts X (never negative) of rows of roles ridx, computed for
        the values that are not 0 only (the others take their role's and feature's score of 0):
        the same arithmetic on each value, so the same scores. In a small batch (the usual one,
        of the hosts that changed in a few seconds) the breakpoint of each value is found by
        comparing it with its role's and feature's breakpoints, one array operation for every
        role and feature; a big one goes role by role (_sparse_role)."""
        if np.count_nonzero(X) > COMPARE_VALUES:  # big: role by role, binary search per feature
            out = np.empty(X.shape)
            for role in np.unique(ridx).tolist():
                rows = np.flatnonzero(ridx == role)
                for at in range(0, len(rows), SCORE_CHUNK):
                    part = rows[at:at + SCORE_CHUNK]
                    out[part] = self._sparse_role(role, X[part])
            return out
        out = self.zero_scores[ridx]
        col, row = np.nonzero(X.T)
        if not len(col):
            return out
        r = ridx[row]
        z = (np.log1p(X[row, col]) - self.center[col]) / self.scale[col]
        bp = self.breakpoints
        hi = (bp[r, col] < z[:, None]).sum(axis=1)  # first breakpoint >= z: those below it
        got = self.score_at[r, col, hi]
        last = self.last[r, col]
        width = self.tail_width[r, col]
        top = bp[r, col, np.maximum(last, 0)]
        past = (z > top) & (last >= 0) & (width > 0)
        if past.any():
            rp, cp = r[past], col[past]
            fade = np.exp(-(signed_log(z[past]) - signed_log(top[past])) / width[past])
            got[past] = _tail_score(self.count_ge[rp, cp, last[past]] * fade, self.n[rp])
        out[row, col] = got
        return out

    def _sparse_role(self, r: int, x: Array) -> Array:
        """_sparse_scores of rows x, all of role r: a binary search per feature."""
        bp, cge = self.breakpoints[r], self.count_ge[r]
        m = bp.shape[0]
        out = np.empty(x.shape)
        out[:] = self.zero_scores[r]
        col, row = np.nonzero(x.T)  # grouped by feature
        if not len(col):
            return out
        z = (np.log1p(x[row, col]) - self.center[col]) / self.scale[col]
        hi = np.empty(len(col), dtype=np.intp)
        bounds = np.searchsorted(col, np.arange(m + 1)).tolist()
        for j in range(m):
            a, b = bounds[j], bounds[j + 1]
            if a < b:  # first breakpoint >= z: the count of those below it
                hi[a:b] = np.searchsorted(bp[j], z[a:b], side="left")
        got = self.score_at[r][col, hi]
        last = self.last[r][col]
        width = self.tail_width[r][col]
        top = bp[col, np.maximum(last, 0)]
        past = (z > top) & (last >= 0) & (width > 0)
        if past.any():
            fade = np.exp(-(signed_log(z[past]) - signed_log(top[past])) / width[past])
            got[past] = _tail_score(cge[col[past], last[past]] * fade, self.n[r])
        out[row, col] = got
        return out

    def _two_sided(self, r: int, x: Array, hi: Array) -> Array:
        """_role_scores of a two-sided detector: the smaller of both tails."""
        bp, cge, cle = self.breakpoints[r], self.count_ge[r], self.count_le[r]
        m, k = bp.shape
        feat = np.arange(m)
        ge = np.where(hi < k, cge[feat, np.minimum(hi, k - 1)], 0.0)
        last = self.last[r]
        width = self.tail_width[r]
        top = bp[feat, np.maximum(last, 0)]
        past = (x > top) & ((last >= 0) & (width > 0))[None, :]
        if past.any():
            at, col = np.nonzero(past)
            fade = np.exp(-(signed_log(x[at, col]) - signed_log(top[col])) / width[col])
            ge[at, col] = cge[col, last[col]] * fade
        lo = np.empty(x.shape, dtype=np.intp)
        for j in range(m):  # last breakpoint <= x
            lo[:, j] = np.searchsorted(bp[j], x[:, j], side="right") - 1
        le = np.where(lo >= 0, cle[feat, np.maximum(lo, 0)], 0.0)
        return _tail_score(np.minimum(ge, le), self.n[r])


def _tail_score(ge: Array, n: float) -> Array:
    """-log(2 p) of a Laplace-smoothed right-tail count, 0 in the middle (TailDetector)."""
    p = (ge + 1.0) / (n + 2.0)
    return np.maximum(0.0, -np.log(np.minimum(2.0 * p, 1.0)))


def _score_tables(breakpoints: Array, count_ge: Array, n: Array) -> tuple[Array, Array]:
    """Per role and feature, the score at each breakpoint index (the last: beyond them all,
    a count of 0), and the index of the largest breakpoint."""
    r, m, k = breakpoints.shape
    ge = np.zeros((r, m, k + 1))
    ge[:, :, :k] = count_ge
    score_at = np.stack([_tail_score(ge[i], float(n[i])) for i in range(r)])
    return score_at, np.isfinite(breakpoints).sum(axis=2) - 1


def arrays_of(model: Any) -> dict[str, Array] | None:
    """The tables of a fitted HostModel as named arrays, or None when its pipeline is not
    LogCounts -> RobustScaler -> TailDetector (the forest, LOF and HBOS detectors)."""
    from sensor.detect.estimators import LogCounts, TailDetector

    steps = [est for _, est in getattr(model.pipeline, "steps", [])]
    if len(steps) != 3 or not isinstance(steps[0], LogCounts) or not isinstance(
            steps[2], TailDetector):
        return None
    scaler, det = steps[1], steps[2]
    if type(scaler).__name__ != "RobustScaler" or scaler.center_ is None or \
            scaler.scale_ is None:
        return None
    st = model.stats
    return {
        "center": scaler.center_, "scale": scaler.scale_,
        "role_columns": np.asarray(det.role_columns, dtype=np.int64),
        "on_values": det.on_values_, "breakpoints": det.breakpoints_,
        "count_ge": det.count_ge_, "tail_width": det.tail_width_,
        # the left-tail counts only count for a two-sided detector (not the defaults)
        "count_le": det.count_le_ if det.two_sided else np.zeros(0),
        "n": det.n_, "group_of": np.asarray(det.group_of_, dtype=np.int64),
        "group_ids": np.asarray(det.group_ids_, dtype=np.int64), "weights": det.weights_,
        "top_k": np.asarray(det.top_k, dtype=np.int64),
        "two_sided": np.asarray(det.two_sided, dtype=np.bool_),
        "threshold": np.asarray(model.threshold, dtype=np.float64),
        "stats_centre": st.centre, "stats_scale": st.scale, "stats_p999": st.p999,
        "stats_rows": st.rows, "check_x": model.check_x, "check_scores": model.check_scores,
    }


def append_to(path: str, arrays: dict[str, Array]) -> None:
    """Add the tables to a model archive just written (uncompressed inside, deflated outside)."""
    buf = io.BytesIO()
    savez: Any = np.savez  # its stub types **arrays as its own keyword flags
    savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    try:
        with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            zf.writestr(MEMBER, buf.getvalue())
    except OSError as exc:
        raise ModelError(f"{path}: cannot write the model: {exc.strerror}") from None


def _one(x: Array) -> Any:
    """The single value of a stored scalar (saved as a one-element array)."""
    flat = np.asarray(x).reshape(-1)
    if flat.size != 1:
        raise ValueError("expected one value")
    return flat[0]


def read(path: str, card: dict[str, Any]) -> ScoreTables | None:
    """The tables of a model file whose card `peek_card` already checked, or None when it has
    none (another detector, or written before them). A damaged or inconsistent member is a
    ModelError, never tables that score wrong."""
    from sensor.detect.card import MODEL_FEATURES, ROLES
    from sensor.detect.model import RoleStats

    altered = ModelError(f"{path}: model file altered or inconsistent: its scoring tables do "
                         "not match its own check rows; retrain it or restore the original")
    try:
        with zipfile.ZipFile(path) as zf:
            if MEMBER not in zf.namelist():
                return None
            data = zf.read(MEMBER)
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            a = {name: npz[name] for name in npz.files}
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model file: {exc.strerror}") from None
    except Exception:  # whatever a damaged member provokes in zipfile or numpy
        raise altered from None
    try:
        m, r = len(MODEL_FEATURES), len(ROLES)
        bp = np.asarray(a["breakpoints"], dtype=np.float64)
        roles = np.asarray(a["role_columns"], dtype=np.int64)
        k = bp.shape[2]
        n_roles = len(roles)
        if bp.shape != (n_roles + 1, m, k) or k < 4 or n_roles not in (0, r):
            raise ValueError("shape")
        if not all(0 <= c < m for c in roles.tolist()):
            raise ValueError("role columns")
        group_of = np.asarray(a["group_of"], dtype=np.int64)
        group_ids = np.asarray(a["group_ids"], dtype=np.int64)
        weights = np.asarray(a["weights"], dtype=np.float64)
        if group_of.shape != (m,) or weights.shape != group_ids.shape:
            raise ValueError("groups")
        shape2 = (r + 1, m)
        n_rows = np.asarray(a["n"], dtype=np.float64).reshape(n_roles + 1)
        count_ge = np.asarray(a["count_ge"], dtype=np.float64).reshape(bp.shape)
        score_at, last = _score_tables(bp, count_ge, n_rows)
        stats = RoleStats(*(np.asarray(a[f"stats_{s}"], dtype=np.float64)
                            for s in ("centre", "scale", "p999", "rows")))
        if any(np.shape(x) != shape2 or not np.all(np.isfinite(x))
               for x in (stats.centre, stats.scale, stats.p999)):
            raise ValueError("stats")
        t = ScoreTables(
            center=np.asarray(a["center"], dtype=np.float64).reshape(m),
            scale=np.asarray(a["scale"], dtype=np.float64).reshape(m),
            role_columns=roles, on_values=np.asarray(a["on_values"], dtype=np.float64)
            .reshape(n_roles), breakpoints=bp,
            count_ge=count_ge,
            count_le=np.asarray(a["count_le"], dtype=np.float64).reshape(
                bp.shape if _one(a["two_sided"]) else (0,)),
            tail_width=np.asarray(a["tail_width"], dtype=np.float64).reshape(n_roles + 1, m),
            n=n_rows,
            group_of=group_of, group_ids=group_ids, weights=weights,
            top_k=int(_one(a["top_k"])), two_sided=bool(_one(a["two_sided"])),
            threshold=float(_one(a["threshold"])), stats=stats,
            check_x=np.asarray(a["check_x"], dtype=np.float64).reshape(-1, m),
            check_scores=np.asarray(a["check_scores"], dtype=np.float64).reshape(-1),
            score_at=score_at, last=last, zero_scores=np.zeros((n_roles + 1, m)))
        with np.errstate(all="ignore"):  # a count of 0 scored as any value is
            zero = (0.0 - t.center) / t.scale
            for i in range(n_roles + 1):
                t.zero_scores[i] = t._role_scores(i, zero[None, :])[0]
        if t.top_k < 1 or t.threshold != card["threshold"] or not len(t.check_x):
            raise ValueError("card")
        got = t.scores(t.check_x)
        if got.shape != t.check_scores.shape or not np.allclose(got, t.check_scores, rtol=0,
                                                                 atol=1e-9):
            raise ValueError("check rows")
    except Exception:  # anything off in the member means it was altered
        raise altered from None
    return t
