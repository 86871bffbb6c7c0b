"""Onset estimators: one progress curve (or a batch of resampled ones) -> the step where it rises.

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
why the midpoint is the common target (the tests check each recovers it). Every estimator refuses a curve whose
sustained rise (the highest normalised level held for k checkpoints) is below ``min_rise``. Censoring, intervals
and tables are in :mod:`zipfind.onset`. Interpolating the crossing in ln(step) rather than step, the quadratic
peak finder and the min_rise default are choices made here, not taken from a paper.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import expit

EstimatorName = Literal["threshold", "logistic", "max_slope"]


@dataclass(frozen=True)
class OnsetConfig:
    """How an onset is read off a curve; every number is on the normalised scale unless said otherwise."""

    threshold: float = 0.5
    """h: level of the normalised curve (0 = floor, 1 = ceiling) whose persistent crossing is the onset."""
    persistence: int = 3
    """k: consecutive checkpoints the normalised curve must stay >= h (and the window of the sustained rise)."""
    min_rise: float = 0.3
    """A run whose highest level held for k checkpoints is below this has no onset (it is censored)."""
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


FALLING_CEILINGS = {"icl_score": -1.0}
"""Measures that fall as in-context learning forms, with the level a full rise normalises to: Olsson's ICL score
(token task) falls from 0; -1 nat puts the default threshold at -0.5 nat, inside the drops measured on the token
quick sweep (0.45-0.75 nat)."""


def default_config(measure: str = "ic_acc", **overrides) -> OnsetConfig:
    """The config for a measure: ceiling 0.0 for ``*_loss`` measures, FALLING_CEILINGS for the ICL score, 1.0
    otherwise; ``overrides`` win."""
    base = {"ceiling": 0.0} if measure.endswith("_loss") else (
        {"ceiling": FALLING_CEILINGS[measure]} if measure in FALLING_CEILINGS else {})
    return OnsetConfig(**{**base, **overrides})


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
