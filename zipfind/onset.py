"""Onset of in-context learning from one progress curve: three estimators, right-censoring, bootstrap intervals.

A curve is one measure (default ``ic_acc``) at the checkpoints of one run. It is normalised between a *floor*
(the early plateau: the mean of the first few checkpoints, or a fixed value such as chance) and a fixed *ceiling*
(1.0 for accuracies and scores, 0.0 for losses), never by its own final value, so that a run that barely rises is
not mistaken for a full rise. Time is ln(step); step-0 checkpoints only enter the floor.

Estimators (each: steps, values -> step, NaN where it finds no onset inside the data):

- ``threshold``: first persistent crossing of level h by the normalised curve (it stays >= h for k consecutive
  checkpoints), linearly interpolated in ln(step) between the two checkpoints that bracket it;
- ``logistic``: midpoint of a 4-parameter logistic in ln(step) (floor, amplitude, midpoint, width), least squares;
- ``max_slope``: step where d(curve)/d ln(step) peaks, the slope taken from a local-quadratic Gaussian-kernel
  smoother and its peak located by a parabola over the top half of the slope curve (sub-grid, noise-robust).

For a logistic in ln(step) that reaches the ceiling the three agree (the threshold at h = 0.5 exactly), which is
why the midpoint is the common target (the tests check each recovers it). A run is censored at its budget
(onset unknown, > budget) when the chosen estimator finds no onset inside it; every estimator also refuses a curve
whose sustained rise (the highest normalised level held for k checkpoints) is below ``min_rise``. A censored run
keeps its row, with no number. Intervals come from resampling the fixed probe sequences of a run (columns of
``per_item``, valid because every checkpoint scores the same probes) and, in :func:`seed_summary`, the seeds of a
grid cell. Interpolating the crossing in ln(step) rather than step, the quadratic peak finder and the min_rise
default are choices made here, not taken from a paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Callable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import expit

EstimatorName = Literal["threshold", "logistic", "max_slope"]

ONSET_COLUMNS = (
    "onset_step", "onset_lo", "onset_hi", "censored", "budget", "estimator", "measure",
    "onset_threshold", "onset_logistic", "onset_max_slope", "estimators_disagree",
    "final_ic_acc", "final_iw_acc", "final_induction_score", "induction_step",
)
"""Columns :func:`onsets_table` adds after the cells-table columns (the ``onsets`` contract)."""

_SUMMARY_MEDIANS = ("final_ic_acc", "final_iw_acc", "final_induction_score")


@dataclass(frozen=True)
class OnsetConfig:
    """How an onset is read off a curve; every number is on the normalised scale unless said otherwise."""

    threshold: float = 0.5
    """h: level of the normalised curve (0 = floor, 1 = ceiling) whose persistent crossing is the onset."""
    persistence: int = 3
    """k: consecutive checkpoints the normalised curve must stay >= h (and the window of the sustained rise)."""
    min_rise: float = 0.3
    """A run whose highest level held for k checkpoints is below this is censored at its budget."""
    floor: float | None = None
    """Fixed floor (e.g. chance 1/L); None: mean of the first ``n_floor`` checkpoints (the early plateau)."""
    ceiling: float = 1.0
    """The measure's best value: 1.0 for accuracies and scores, 0.0 for losses (a falling curve then rises)."""
    n_floor: int = 3
    """Checkpoints averaged for the floor when ``floor`` is None."""
    smooth: float = 0.1
    """Kernel bandwidth in ln(step) for ``max_slope`` (widened to the checkpoint spacing where that is larger)."""
    n_boot: int = 200
    """Bootstrap resamples of the probe sequences (0: no interval)."""
    ci: float = 0.95
    """Coverage of the percentile interval."""
    disagree_tol: float = 0.2
    """Estimators disagree when their onsets differ by more than this in ln(step) (0.2: about 22 %)."""
    induction_threshold: float = 0.4
    """Level of the raw induction score (0..1, not normalised) whose persistent crossing is ``induction_step``.

    0.4 is about 7x chance (1/T = 0.059 at N = 8): on the 288-cell GPU phase diagram it put induction_step within
    one checkpoint (100 steps) of the IC-accuracy onset in 57 of 62 runs that learned in context (median gap 0
    steps) and crossed in 1 of 226 censored runs; 0.5 missed the B = 4 runs, whose prefix-matching scores
    settle at 0.41-0.48 on the B = 1 probe set."""

    def __post_init__(self) -> None:
        checks = {
            "threshold": 0.0 < self.threshold < 1.0,
            "persistence": self.persistence >= 1,
            "min_rise": 0.0 <= self.min_rise <= 1.0,
            "n_floor": self.n_floor >= 1,
            "smooth": self.smooth > 0.0,
            "n_boot": self.n_boot >= 0,
            "ci": 0.0 < self.ci < 1.0,
            "disagree_tol": self.disagree_tol >= 0.0,
            "floor": self.floor is None or self.floor != self.ceiling,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid OnsetConfig field(s) {bad}: {self}")


def default_config(measure: str = "ic_acc", **overrides) -> OnsetConfig:
    """The config for a measure: ceiling 0.0 for ``*_loss`` measures, 1.0 otherwise; ``overrides`` win."""
    base = {"ceiling": 0.0} if measure.endswith("_loss") else {}
    return OnsetConfig(**{**base, **overrides})


@dataclass(frozen=True)
class Onset:
    """One run's onset: ``step`` is NaN iff ``censored`` (then the onset is only known to exceed ``budget``)."""

    step: float
    lo: float
    """Lower end of the bootstrap interval (``budget`` when censored; NaN without per-item data)."""
    hi: float
    """Upper end (inf when censored, or when the upper resamples find no onset within the data)."""
    censored: bool
    budget: float
    estimator: str
    others: Mapping[str, float] = field(default_factory=dict)
    """Every estimator's value (NaN where it has none), keyed as in :data:`ESTIMATORS`."""
    disagree: bool = False
    rise: float = float("nan")
    """Highest normalised level held for ``persistence`` checkpoints (what the censoring rule compares)."""


# ---------------------------------------------------------------------------------------------------------------
# curve preparation


def _check_steps(steps) -> np.ndarray:
    s = np.asarray(steps, dtype=float)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"steps must be a non-empty 1-D array, got shape {s.shape}")
    if np.any(np.diff(s) <= 0) or s[0] < 0 or not np.all(np.isfinite(s)):
        raise ValueError("steps must be finite, non-negative and strictly increasing")
    return s


def normalise(values, config: OnsetConfig = OnsetConfig()) -> np.ndarray:
    """Map a curve [..., n_ckpt] to 0 at its floor and 1 at the measure's ceiling (NaN if they coincide)."""
    v = np.asarray(values, dtype=float)
    floor = (np.float64(config.floor) if config.floor is not None
             else v[..., : config.n_floor].mean(axis=-1, keepdims=True))
    span = config.ceiling - floor
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(span) > 1e-12, (v - floor) / span, np.nan)


def sustained_rise(z, persistence: int = 3) -> np.ndarray:
    """Highest level a normalised curve [..., n] holds for ``persistence`` consecutive checkpoints: [...]."""
    z = np.asarray(z, dtype=float)
    k = min(persistence, z.shape[-1])
    held = sliding_window_view(z, k, axis=-1).min(axis=-1)  # [..., n-k+1]
    with np.errstate(invalid="ignore"):
        return np.max(held, axis=-1)


def _prepare(steps, values, config: OnsetConfig):
    """ln-step axis of the positive checkpoints [n+], normalised curves [R, n+], rise [R], and whether 1-D."""
    s = _check_steps(steps)
    v = np.asarray(values, dtype=float)
    if v.shape[-1] != s.size or v.ndim not in (1, 2):
        raise ValueError(f"values must be [n_ckpt] or [R, n_ckpt] with n_ckpt={s.size}, got {v.shape}")
    one = v.ndim == 1
    z = np.atleast_2d(normalise(v, config))  # [R, n]
    pos = s > 0
    x, z = np.log(s[pos]), z[:, pos]  # [n+], [R, n+]
    rise = sustained_rise(z, config.persistence) if x.size else np.full(z.shape[0], np.nan)
    return x, z, rise, one


def _out(t: np.ndarray, one: bool):
    return float(t[0]) if one else t


# ---------------------------------------------------------------------------------------------------------------
# estimators


def crossing_step(steps, values, level: float, persistence: int = 1):
    """First step after which ``values`` stay >= ``level`` for ``persistence`` checkpoints, interpolated in ln(step).

    ``values`` is [n_ckpt] (returns a float) or [R, n_ckpt] (returns [R]); NaN where no such run of checkpoints
    exists (a crossing in the last ``persistence - 1`` checkpoints is not yet persistent). No normalisation here.
    """
    s = _check_steps(steps)
    v = np.asarray(values, dtype=float)
    one = v.ndim == 1
    v = np.atleast_2d(v)  # [R, n]
    if v.shape[-1] != s.size:
        raise ValueError(f"values last axis {v.shape[-1]} != {s.size} steps")
    pos = s > 0
    x, v = np.log(s[pos]), v[:, pos]
    out = np.full(v.shape[0], np.nan)
    if v.shape[1] < persistence:
        return _out(out, one)
    with np.errstate(invalid="ignore"):
        above = v >= level  # [R, n]; NaN counts as below
    ok = sliding_window_view(above, persistence, axis=-1).all(axis=-1)  # [R, n-k+1]
    found = ok.any(axis=-1)
    i = np.argmax(ok, axis=-1)  # first qualifying start
    rows = np.nonzero(found)[0]
    i = i[rows]
    xi = x[i]
    prev = np.maximum(i - 1, 0)
    v0, v1 = v[rows, prev], v[rows, i]  # v0 < level <= v1 whenever i > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = (level - v0) / (v1 - v0)
    interp = x[prev] + frac * (x[i] - x[prev])
    xi = np.where((i > 0) & np.isfinite(interp), interp, xi)
    out[rows] = np.exp(xi)
    return _out(out, one)


def threshold_onset(steps, values, config: OnsetConfig = OnsetConfig()):
    """Normalised threshold crossing with persistence; NaN when none or the rise is below ``min_rise``."""
    x, z, rise, one = _prepare(steps, values, config)
    if x.size == 0:
        return _out(np.full(z.shape[0], np.nan), one)
    t = np.atleast_1d(crossing_step(np.exp(x), z, config.threshold, config.persistence))  # [R]
    return _out(np.where(rise >= config.min_rise, t, np.nan), one)


def _slope_operator(x: np.ndarray, config: OnsetConfig) -> tuple[np.ndarray, np.ndarray]:
    """Local-quadratic slope weights on a uniform ln-step grid: slope(grid) = S @ z, S [G, n], grid [G].

    Gaussian kernel of bandwidth ``smooth``, widened smoothly to the local checkpoint spacing where checkpoints
    are sparse (the log-spaced early ones). Degree 2 keeps the slope of a symmetric rise centred (the degree-1
    slope is biased where the checkpoint density changes). Memoised on (checkpoints, bandwidth): the bootstrap
    and the logistic starts reuse it.
    """
    return _slope_operator_cached(x.tobytes(), config.smooth)


@lru_cache(maxsize=16)
def _slope_operator_cached(x_bytes: bytes, smooth: float, n_grid: int = 512) -> tuple[np.ndarray, np.ndarray]:
    x = np.frombuffer(x_bytes, dtype=float)
    grid = np.linspace(x[0], x[-1], n_grid)  # [G]
    h = np.maximum(smooth, np.interp(grid, x, np.gradient(x)))  # [G]
    d = x[None, :] - grid[:, None]  # [G, n]
    w = np.exp(-0.5 * (d / h[:, None]) ** 2)  # [G, n]
    X = d[..., None] ** np.arange(3)  # [G, n, 3]
    XtW = np.swapaxes(X, 1, 2) * w[:, None, :]  # [G, 3, n]
    A = XtW @ X + 1e-12 * np.eye(3)  # [G, 3, 3]
    S = np.linalg.solve(A, XtW)[:, 1, :]  # [G, n]: row g gives the fitted slope at grid[g]
    S.flags.writeable = grid.flags.writeable = False
    return S, grid


def _peak_vertex(y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Peak location of each row of y [R, G]: vertex of a least-squares parabola over the contiguous region
    around the argmax where y >= half its maximum (NaN when the argmax is on the edge)."""
    R, G = y.shape
    idx = np.arange(G)
    j = np.argmax(y, axis=1)  # [R]
    top = y >= 0.5 * y[np.arange(R), j][:, None]  # [R, G]
    left = np.where(~top & (idx < j[:, None]), idx, -1).max(axis=1) + 1  # [R]
    right = np.where(~top & (idx > j[:, None]), idx, G).min(axis=1) - 1  # [R]
    inside = (idx >= left[:, None]) & (idx <= right[:, None])  # [R, G]
    u = np.where(inside, grid[None, :] - grid[j][:, None], 0.0)  # [R, G]
    U = np.where(inside[..., None], u[..., None] ** np.arange(3), 0.0)  # [R, G, 3]
    A = np.swapaxes(U, 1, 2) @ U + 1e-12 * np.eye(3)  # [R, 3, 3]
    c = np.linalg.solve(A, (np.swapaxes(U, 1, 2) @ np.where(inside, y, 0.0)[..., None]))[..., 0]  # [R, 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        vertex = np.where((c[:, 2] < 0) & (right - left >= 2), grid[j] - c[:, 1] / (2 * c[:, 2]), grid[j])
    vertex = np.clip(vertex, grid[left], grid[right])
    return np.where((j > 0) & (j < G - 1), vertex, np.nan)


def max_slope_onset(steps, values, config: OnsetConfig = OnsetConfig()):
    """Step where d(normalised curve)/d ln(step), smoothed, peaks.

    The peak is located by a parabola over the top half of the smoothed slope (a bare argmax jumps between noise
    ripples). NaN when the maximum sits on the edge of the data (the rise is not over by the last checkpoint,
    or began before the first) or when the rise is below ``min_rise``.
    """
    x, z, rise, one = _prepare(steps, values, config)
    out = np.full(z.shape[0], np.nan)
    if x.size < 4:
        return _out(out, one)
    S, grid = _slope_operator(x, config)
    good = np.all(np.isfinite(z), axis=1) & (rise >= config.min_rise)
    if good.any():
        slope = z[good] @ S.T  # [R', G]
        out[good] = np.exp(_peak_vertex(slope, grid))
    return _out(out, one)


def _lm_logistic(x: np.ndarray, z: np.ndarray, p0: np.ndarray, iters: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Batched Levenberg-Marquardt for z ~ a + b * sigmoid((x - mu) / exp(lw)); rows are independent fits.

    x [n], z [R, n], p0 [R, 4] = (a, b, mu, lw). Returns parameters [R, 4] and residual sums of squares [R].
    """
    lw_lo, lw_hi = np.log(1e-3), np.log(max(x[-1] - x[0], 2e-3))

    def resid(p):  # [R, n]
        return p[:, :1] + p[:, 1:2] * expit((x - p[:, 2:3]) / np.exp(p[:, 3:4])) - z

    p = p0.copy()
    p[:, 3] = np.clip(p[:, 3], lw_lo, lw_hi)
    r = resid(p)
    cost = np.sum(r**2, axis=1)  # [R]
    lam = np.full(p.shape[0], 1e-2)
    for _ in range(iters):
        w = np.exp(p[:, 3:4])
        s = expit((x - p[:, 2:3]) / w)  # [R, n]
        ds = p[:, 1:2] * s * (1 - s) / w  # [R, n]
        J = np.stack([np.ones_like(s), s, -ds, -ds * (x - p[:, 2:3])], axis=2)  # [R, n, 4]; d/dlw = w d/dw
        H = np.swapaxes(J, 1, 2) @ J  # [R, 4, 4]
        g = np.einsum("rni,rn->ri", J, r)  # [R, 4]
        damp = lam[:, None, None] * np.diagonal(H, axis1=1, axis2=2)[:, None, :] * np.eye(4) + 1e-10 * np.eye(4)
        step = -np.linalg.solve(H + damp, g[..., None])[..., 0]  # [R, 4]
        trial = p + step
        trial[:, 3] = np.clip(trial[:, 3], lw_lo, lw_hi)
        r_new = resid(trial)
        c_new = np.sum(r_new**2, axis=1)
        better = np.isfinite(c_new) & (c_new < cost)
        p = np.where(better[:, None], trial, p)
        r = np.where(better[:, None], r_new, r)
        rel = np.where(better, (cost - c_new) / np.maximum(cost, 1e-300), 0.0)
        cost = np.where(better, c_new, cost)
        lam = np.clip(np.where(better, lam / 3, lam * 4), 1e-9, 1e9)
        if np.all((better & (rel < 1e-10)) | (lam >= 1e8)):  # every row converged or stuck
            break
    return p, cost


def logistic_onset(steps, values, config: OnsetConfig = OnsetConfig()):
    """Midpoint of a 4-parameter logistic in ln(step) (floor, amplitude, midpoint, width) fitted to the normalised
    curve by least squares, started from three midpoints (max-slope, half-rise crossing, centre); best fit wins.

    NaN when the midpoint falls outside the checkpoints (the rise was not observed), the fitted amplitude or the
    sustained rise is below ``min_rise``, or the fit does not converge to a finite value.
    """
    x, z, rise, one = _prepare(steps, values, config)
    out = np.full(z.shape[0], np.nan)
    good = np.all(np.isfinite(z), axis=1) & (rise >= config.min_rise)
    if x.size < 5 or not good.any():
        return _out(out, one)
    zg = z[good]  # [R', n]
    unit = _unit(config)
    a0 = zg[:, : config.n_floor].mean(axis=1)  # [R']
    b0 = np.clip(zg.max(axis=1) - a0, 0.05, None)
    mu_slope = np.log(np.atleast_1d(max_slope_onset(np.exp(x), zg, unit)))
    mu_half = np.log(np.atleast_1d(crossing_step(np.exp(x), zg - (a0 + 0.5 * b0)[:, None], 0.0, 1)))
    mu_mid = np.full(zg.shape[0], 0.5 * (x[0] + x[-1]))
    starts = [np.where(np.isfinite(m), m, mu_mid) for m in (mu_slope, mu_half, mu_mid)]
    lw0 = np.full(zg.shape[0], np.log(0.2))
    p0 = np.concatenate([np.stack([a0, b0, m, lw0], axis=1) for m in starts])  # [3R', 4]
    p, cost = _lm_logistic(x, np.tile(zg, (3, 1)), p0)
    best = np.argmin(np.where(np.isfinite(cost), cost, np.inf).reshape(3, -1), axis=0)  # [R']
    p = p.reshape(3, -1, 4)[best, np.arange(zg.shape[0])]  # [R', 4]
    b, mu = p[:, 1], p[:, 2]
    ok = np.isfinite(mu) & (b >= config.min_rise) & (mu >= x[0]) & (mu <= x[-1])
    out[np.nonzero(good)[0][ok]] = np.exp(mu[ok])
    return _out(out, one)


def _unit(config: OnsetConfig) -> OnsetConfig:
    """A config that leaves an already-normalised curve unchanged (floor 0, ceiling 1) and skips the rise guard."""
    return replace(config, floor=0.0, ceiling=1.0, min_rise=0.0)


ESTIMATORS: dict[str, Callable[..., float | np.ndarray]] = {
    "threshold": threshold_onset,
    "logistic": logistic_onset,
    "max_slope": max_slope_onset,
}
"""Estimator registry: name -> f(steps, values [n] or [R, n], config) -> step (float or [R]), NaN if none."""


# ---------------------------------------------------------------------------------------------------------------
# bootstrap, one run


def bootstrap_onsets(steps, per_item, estimator: EstimatorName = "threshold", config: OnsetConfig = OnsetConfig(),
                     seed: int | np.random.Generator = 0) -> np.ndarray:
    """Onsets [n_boot] re-estimated on curves rebuilt from probe sequences resampled with replacement.

    ``per_item`` is [n_ckpt, n_probe] (per-probe correctness, or any per-probe quantity whose mean is the measure).
    Valid because the same probe set is scored at every checkpoint: a resample keeps each probe's whole history.
    NaN marks resamples with no onset inside the data.
    """
    items = np.asarray(per_item, dtype=float)  # [n_ckpt, n_probe]
    n_probe = items.shape[1]
    if config.n_boot == 0 or n_probe == 0:
        return np.empty(0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_probe, size=(config.n_boot, n_probe))  # [n_boot, n_probe]
    offsets = (np.arange(config.n_boot) * n_probe)[:, None]
    counts = np.bincount((idx + offsets).ravel(), minlength=config.n_boot * n_probe)
    counts = counts.reshape(config.n_boot, n_probe).astype(float)  # [n_boot, n_probe] resampling weights
    curves = counts @ items.T / n_probe  # [n_boot, n_ckpt]
    return np.atleast_1d(ESTIMATORS[estimator](steps, curves, config))


def _quantile_inf(v: np.ndarray, q: float) -> float:
    """Linear-interpolated quantile in ln(step) where +inf (no onset) sorts last and stays inf."""
    v = np.sort(v)
    pos = q * (v.size - 1)
    i = int(np.floor(pos))
    f = pos - i
    a, b = v[i], v[min(i + 1, v.size - 1)]
    if f == 0.0 or a == b:
        return float(a)
    if np.isinf(b):
        return float("inf")
    return float(np.exp(np.log(a) + f * (np.log(b) - np.log(a))))


def _disagree(others: Mapping[str, float], tol: float) -> bool:
    vals = np.array(list(others.values()), dtype=float)
    fin = np.isfinite(vals)
    if fin.any() and not fin.all():
        return True  # one estimator sees an onset that another does not
    if fin.sum() < 2:
        return False
    lv = np.log(vals[fin])
    return bool(lv.max() - lv.min() > tol)


def detect_onset(steps, values, budget: float, *, estimator: EstimatorName = "threshold", per_item=None,
                 config: OnsetConfig = OnsetConfig(), seed: int | np.random.Generator = 0) -> Onset:
    """The onset of one run: the chosen estimator's step, every estimator's value, censoring and an interval.

    Non-finite checkpoints (a diverged, frozen model) are dropped. The run is censored when the chosen estimator
    finds no onset at or before ``budget``. ``per_item`` [n_ckpt, n_probe], aligned with ``steps``, gives the
    bootstrap interval over probe sequences; its probe means must equal ``values``.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator {estimator!r} unknown; choose one of {sorted(ESTIMATORS)}")
    s = _check_steps(steps)
    v = np.asarray(values, dtype=float)
    if v.shape != s.shape:
        raise ValueError(f"values shape {v.shape} != steps shape {s.shape}")
    keep = np.isfinite(v)
    items = None
    if per_item is not None:
        items = np.asarray(per_item, dtype=float)
        if items.ndim != 2 or items.shape[0] != s.size:
            raise ValueError(f"per_item must be [n_ckpt={s.size}, n_probe], got {items.shape}")
        if np.nanmax(np.abs(items.mean(axis=1) - v)[keep], initial=0.0) > 1e-3:
            raise ValueError("per_item probe means do not match values; per_item must belong to this measure")
        items = items[keep]
    s, v = s[keep], v[keep]
    if s.size == 0:
        nan = float("nan")
        return Onset(nan, float(budget), float("inf"), True, float(budget), estimator,
                     {name: nan for name in ESTIMATORS}, False, nan)
    others = {name: float(fn(s, v, config)) for name, fn in ESTIMATORS.items()}
    rise = float(_prepare(s, v, config)[2][0])
    step = others[estimator]
    censored = not (step <= budget)  # NaN (no onset) or beyond the budget
    if censored:
        step, lo, hi = float("nan"), float(budget), float("inf")
    elif items is None or config.n_boot == 0:
        lo = hi = float("nan")
    else:
        reps = bootstrap_onsets(s, items, estimator, config, seed)
        reps = np.where(np.isfinite(reps) & (reps <= budget), reps, np.inf)
        alpha = 0.5 * (1.0 - config.ci)
        lo, hi = _quantile_inf(reps, alpha), _quantile_inf(reps, 1.0 - alpha)
    return Onset(step, lo, hi, censored, float(budget), estimator, others,
                 _disagree(others, config.disagree_tol), rise)


# ---------------------------------------------------------------------------------------------------------------
# tables


def _final(series: Mapping[str, tuple[np.ndarray, np.ndarray]], measure: str) -> float:
    if measure not in series:
        return float("nan")
    v = series[measure][1]
    v = v[np.isfinite(v)]
    return float(v[-1]) if v.size else float("nan")


def onsets_table(metrics: pd.DataFrame, cells: pd.DataFrame, per_item: Mapping[int, np.ndarray] | None = None, *,
                 measure: str = "ic_acc", estimator: EstimatorName = "threshold",
                 config: OnsetConfig | None = None, seed: int = 0) -> pd.DataFrame:
    """The onsets table: one row per cell of ``cells`` that has ``measure`` in ``metrics``.

    Columns: the cells-table columns, then :data:`ONSET_COLUMNS`. ``budget`` is the cell's ``steps``, or where
    its record ends if earlier (the last finite checkpoint, or the first with the ``diverged`` measure set: a
    diverged model is frozen, so it is censored there and later checkpoints are ignored). ``per_item`` maps
    cell -> ``ic_correct`` [n_checkpoints, n_probe] aligned with that cell's sorted unique metric steps; it feeds
    the interval when ``measure == "ic_acc"`` (other measures get NaN intervals unless censored). Each cell's
    bootstrap is seeded by (seed, cell), so a row does not depend on which other cells are in the table.
    """
    need = {"cell", "step", "measure", "value"}
    if not need <= set(metrics.columns):
        raise ValueError(f"metrics lacks columns {sorted(need - set(metrics.columns))}")
    if "cell" not in cells.columns:
        raise ValueError("cells lacks the column 'cell'")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator {estimator!r} unknown; choose one of {sorted(ESTIMATORS)}")
    available = set(metrics["measure"].unique())
    if measure not in available:
        raise ValueError(f"measure {measure!r} not in metrics; available: {sorted(available)}")
    cfg = config if config is not None else default_config(measure)
    wanted = {measure, "ic_acc", "iw_acc", "induction_score", "diverged"}
    rows = []
    by_cell = {int(c): g for c, g in metrics.groupby("cell", sort=False)}
    for rec in cells.to_dict("records"):
        cell = int(rec["cell"])
        g = by_cell.get(cell)
        if g is None or not (g["measure"] == measure).any():
            continue
        all_steps = np.unique(g["step"].to_numpy())  # the per-item row order
        series = {}
        for m, gm in g[g["measure"].isin(wanted)].groupby("measure"):
            gm = gm.sort_values("step")
            series[m] = (gm["step"].to_numpy(dtype=float), gm["value"].to_numpy(dtype=float))
        steps, values = series[measure]
        budget = float(rec["steps"]) if "steps" in rec and pd.notna(rec["steps"]) else float(steps[-1])
        finite = steps[np.isfinite(values)]
        if finite.size:
            budget = min(budget, float(finite[-1]))
        if "diverged" in series:  # a diverged model is frozen: its record ends at the first diverged checkpoint
            sd, vd = series["diverged"]
            if np.any(vd > 0):
                budget = min(budget, float(sd[np.argmax(vd > 0)]))
        items = None
        if per_item is not None and measure == "ic_acc" and cell in per_item:
            arr = np.asarray(per_item[cell])
            if arr.ndim != 2 or arr.shape[0] != all_steps.size:
                raise ValueError(f"per_item[{cell}] has shape {arr.shape}; expected [{all_steps.size}, n_probe]")
            items = arr[np.searchsorted(all_steps, steps)]
        upto = steps <= budget
        steps, values = steps[upto], values[upto]
        items = items[upto] if items is not None else None
        on = detect_onset(steps, values, budget, estimator=estimator, per_item=items, config=cfg,
                          seed=np.random.default_rng([seed, cell]))
        ind = float("nan")
        if "induction_score" in series:
            si, vi = series["induction_score"]
            ok = np.isfinite(vi)
            if ok.any():
                ind = float(crossing_step(si[ok], vi[ok], cfg.induction_threshold, cfg.persistence))
        rows.append({
            **rec,
            "onset_step": on.step, "onset_lo": on.lo, "onset_hi": on.hi, "censored": on.censored,
            "budget": on.budget, "estimator": estimator, "measure": measure,
            **{f"onset_{name}": on.others[name] for name in ESTIMATORS},
            "estimators_disagree": on.disagree,
            "final_ic_acc": _final(series, "ic_acc"), "final_iw_acc": _final(series, "iw_acc"),
            "final_induction_score": _final(series, "induction_score"), "induction_step": ind,
        })
    columns = list(cells.columns) + list(ONSET_COLUMNS)
    out = pd.DataFrame(rows, columns=columns)
    return out.astype({"censored": bool, "estimators_disagree": bool, "cell": int})


def censored_median(t: np.ndarray, axis: int = -1) -> np.ndarray:
    """Median of onset times with censored runs as +inf: the Kaplan-Meier median for a common budget.

    inf when more than half are censored; with an even count whose upper middle is censored, the lower middle
    (the smallest t with survival <= 1/2); otherwise the ordinary median. Vectorised along `axis`.
    """
    s = np.sort(np.asarray(t, dtype=float), axis=axis)
    n = s.shape[axis]
    lo, hi = np.take(s, (n - 1) // 2, axis=axis), np.take(s, n // 2, axis=axis)
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(hi), lo, 0.5 * (lo + hi))


def seed_summary(onsets: pd.DataFrame, by: Sequence[str] | None = None, *, ci: float = 0.95, n_boot: int = 1000,
                 seed: int = 0) -> pd.DataFrame:
    """Median onset across seeds per group of cells, censoring-aware, with a bootstrap interval over seeds.

    A censored run counts as +inf (onset > its budget); the median is :func:`censored_median` (Kaplan-Meier),
    itself censored (``onset_step`` NaN, ``censored`` True) when more than half the seeds are. The interval
    resamples the seeds; ``onset_hi`` is inf where the upper resamples are censored and ``onset_lo`` falls back to
    the smallest censoring budget where even the lower ones are. ``by`` defaults to every cells-table column
    except ``cell`` and ``seed``. The within-run (probe) uncertainty is not propagated here.
    """
    if by is None:
        by = [c for c in onsets.columns if c not in ONSET_COLUMNS and c not in ("cell", "seed")]
    by = list(by)
    missing = [c for c in by if c not in onsets.columns]
    if missing:
        raise ValueError(f"onsets lacks grouping columns {missing}")
    rng = np.random.default_rng(seed)
    alpha = 0.5 * (1.0 - ci)
    rows = []
    groups = onsets.groupby(by, dropna=False, sort=True) if by else [((), onsets)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        cens = g["censored"].to_numpy(dtype=bool)
        t = np.where(cens, np.inf, g["onset_step"].to_numpy(dtype=float))  # [n_seeds]
        med = float(censored_median(t))
        boot = censored_median(t[rng.integers(0, t.size, size=(n_boot, t.size))], axis=1)  # [n_boot]
        lo, hi = _quantile_inf(boot, alpha), _quantile_inf(boot, 1.0 - alpha)
        budgets = g["budget"].to_numpy(dtype=float)
        if np.isinf(lo):
            lo = float(budgets[cens].min())
        row = dict(zip(by, key))
        row.update({
            "onset_step": med if np.isfinite(med) else float("nan"), "onset_lo": lo, "onset_hi": hi,
            "censored": not np.isfinite(med), "n_seeds": int(t.size), "n_censored": int(cens.sum()),
            "budget": float(budgets.max()),
            "estimator": g["estimator"].iloc[0] if "estimator" in g else None,
            "measure": g["measure"].iloc[0] if "measure" in g else None,
        })
        for c in _SUMMARY_MEDIANS:
            if c in g:
                row[c] = float(np.nanmedian(g[c].to_numpy(dtype=float))) if g[c].notna().any() else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)
