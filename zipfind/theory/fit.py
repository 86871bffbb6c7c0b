"""Censored maximum-likelihood fits of onset models: Tobit likelihood on log onset, multistart, intervals, AIC/BIC,
and out-of-sample errors (cell folds, grouped folds, leave-one-value-out; see theory/heldout.py). One module of
~700 lines on purpose: the likelihood, the optimiser, the profile intervals and the held-out refits all work on
one `_Problem`; the splits and error statistics live in heldout.py.

Observation model: ln t_obs = ln t*(inputs; theta) + e, e ~ N(0, sigma^2). A cell that never showed an onset within
its budget b contributes ln P(t_obs > b) (right-censoring); it is never dropped (unless censoring="drop" is asked
for, to measure what dropping costs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.special import log_ndtr

from ..columns import ONSET_COLUMNS
from .heldout import assign_folds, input_groups, lovo_splits, prediction_stats
from .models import DEFAULT_INPUTS, INPUT_NAMES, OnsetModel, get_model, input_values, modelled, task_inputs

__all__ = [
    "OnsetData", "ParamEstimate", "ModelFit", "FitReport", "onset_data", "censored_loglik", "fit_model",
    "fit_models", "simulate_onsets", "assign_folds", "prediction_stats", "ONSET_ONLY_COLUMNS", "CAP_NATS",
    "PROFILE_DELTA",
]

Interval = Literal["profile", "bootstrap", "none"]
Censoring = Literal["tobit", "drop"]

_LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)
CAP_NATS = 20.0  # predictions are capped at budget * e^20 so "never" stays a finite, flat penalty
PROFILE_DELTA = 0.5 * 3.841458820694124  # chi2(1) 95% / 2
SIGMA_BOUNDS = (1e-3, 10.0)
ONSET_ONLY_COLUMNS = frozenset(ONSET_COLUMNS)  # the onsets table's result columns (not model inputs)


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OnsetData:
    """Onsets of n cells: model inputs, observed onset (NaN if censored), censoring flag and budget, all [n]."""

    inputs: dict[str, np.ndarray]
    onset: np.ndarray
    censored: np.ndarray
    budget: np.ndarray
    cell: np.ndarray

    @property
    def n(self) -> int:
        return int(self.censored.size)

    @property
    def n_censored(self) -> int:
        return int(self.censored.sum())

    def subset(self, idx: np.ndarray) -> OnsetData:
        return OnsetData(
            inputs={k: v[idx] for k, v in self.inputs.items()}, onset=self.onset[idx],
            censored=self.censored[idx], budget=self.budget[idx], cell=self.cell[idx],
        )


def onset_data(onsets: pd.DataFrame) -> tuple[OnsetData, np.ndarray]:
    """OnsetData from an onsets table, and the row positions it kept.

    Needs alpha, B, censored, onset_step and budget (or steps); K, N, L, p_bursty, p_novel, lr default to the
    package defaults when absent. Uncensored rows without an onset value are dropped.
    """
    need = ["alpha", "B", "censored", "onset_step"]
    missing = [c for c in need if c not in onsets.columns]
    if "budget" not in onsets.columns and "steps" not in onsets.columns:
        missing.append("budget")
    if missing:
        raise ValueError(f"onsets table lacks columns {missing}")
    budget = onsets["budget"] if "budget" in onsets.columns else onsets["steps"]
    censored = onsets["censored"].astype(bool).to_numpy()
    onset = onsets["onset_step"].to_numpy(dtype=float)
    keep = (censored | (np.isfinite(onset) & (onset > 0))) & modelled(onsets)
    onsets = task_inputs(onsets)
    rows = np.flatnonzero(keep)
    inputs = {}
    for name in INPUT_NAMES:
        col = onsets[name].to_numpy() if name in onsets.columns else np.full(len(onsets), DEFAULT_INPUTS[name])
        inputs[name] = input_values(name, col)[rows]
    cell = onsets["cell"].to_numpy() if "cell" in onsets.columns else np.arange(len(onsets))
    data = OnsetData(
        inputs=inputs, onset=np.where(censored, np.nan, onset)[rows], censored=censored[rows],
        budget=budget.to_numpy(dtype=float)[rows], cell=cell[rows],
    )
    return data, rows


def _tobit(log_pred: np.ndarray, sigma: float, data: OnsetData, censoring: Censoring):
    """Tobit terms: (loglik, d loglik / d mu [n], d loglik / d ln sigma, capped mask [n])."""
    log_b = np.log(data.budget)
    cap = log_b + CAP_NATS
    lp = np.where(np.isnan(log_pred), np.inf, log_pred)
    capped = lp >= cap
    mu = np.where(capped, cap, lp)
    obs = ~data.censored
    dmu = np.zeros_like(mu)
    z = (np.log(np.where(obs, data.onset, 1.0)) - mu) / sigma
    ll = np.sum(-0.5 * z[obs] ** 2 - _LOG_SQRT_2PI) - obs.sum() * np.log(sigma)
    dmu[obs] = z[obs] / sigma
    dls = float(np.sum(z[obs] ** 2 - 1))
    if censoring == "tobit":
        cen = ~obs
        zc = (log_b[cen] - mu[cen]) / sigma
        logsf = log_ndtr(-zc)  # ln P(Z > zc)
        hazard = np.exp(-0.5 * zc**2 - _LOG_SQRT_2PI - logsf)  # inverse Mills ratio
        ll += np.sum(logsf)
        dmu[cen] = hazard / sigma
        dls += float(np.sum(hazard * zc))
    return float(ll), dmu, dls, capped


def censored_loglik(log_pred: np.ndarray, sigma: float, data: OnsetData, censoring: Censoring = "tobit") -> float:
    """Tobit log-likelihood of log onsets: normal density for observed cells, log survival beyond the budget for
    censored ones (dropped when censoring="drop"). log_pred [n] may be +inf (no onset): it is capped at
    ln budget + CAP_NATS."""
    return _tobit(log_pred, sigma, data, censoring)[0]


# ---------------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamEstimate:
    """Point estimate and 95% interval: lo/hi are 0 or +-inf where the profile never closes within the optimiser
    bounds, NaN where no interval was computed or the parameter is fixed (both null in fits.json)."""

    value: float
    lo: float
    hi: float
    fixed: bool = False

    def as_dict(self) -> dict[str, Any]:
        f = lambda v: float(v) if np.isfinite(v) else None  # noqa: E731
        return {"value": float(self.value), "lo": f(self.lo), "hi": f(self.hi), "fixed": self.fixed}

    def contains(self, v: float) -> bool:
        return bool(self.lo <= v <= self.hi)


@dataclass(frozen=True)
class ModelFit:
    """One model fitted to one onsets table."""

    model: str
    params: dict[str, ParamEstimate]  # model parameters, then "sigma"
    loglik: float
    k: int
    n_cells: int
    n_censored: int
    predicted: np.ndarray  # [n] in-sample t* (inf = no onset)
    heldout_predicted: np.ndarray  # [n] out-of-fold t*, cell folds (NaN without folds)
    fold: np.ndarray  # [n] fold of each cell (-1 without folds)
    grouped_predicted: np.ndarray  # [n] out-of-fold t*, folds grouping identical inputs (NaN without folds)
    group_fold: np.ndarray  # [n] grouped fold of each cell (-1 without folds)
    extrapolated: dict[str, np.ndarray]  # axis -> [n] t* with the cell's value of that axis held out (NaN: none)
    median_abs_log_err: float
    censor_accuracy: float
    heldout_median_abs_log_err: float
    heldout_censor_accuracy: float
    interval: str
    censoring: str
    n_starts: int
    converged: bool
    budget: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))  # [n] censoring times
    onset: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))  # [n] observed (NaN: censored)
    censored: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, bool))  # [n]

    def _summary(self, pred: np.ndarray) -> tuple[float, float]:
        return prediction_stats(pred, self.onset, self.censored, self.budget)

    @property
    def heldout_grouped(self) -> tuple[float, float]:
        """(median |ln error|, censoring accuracy) on grouped folds: grid points never fitted."""
        return self._summary(self.grouped_predicted)

    @property
    def extrapolation(self) -> tuple[float, float]:
        """The same over every leave-one-value-out prediction (a cell counts once per axis it is held out on)."""
        if not self.extrapolated:
            return np.nan, np.nan
        cat = lambda a: np.concatenate([a] * len(self.extrapolated))  # noqa: E731
        return prediction_stats(np.concatenate(list(self.extrapolated.values())), cat(self.onset),
                                cat(self.censored), cat(self.budget))

    @property
    def aic(self) -> float:
        return 2 * self.k - 2 * self.loglik

    @property
    def bic(self) -> float:
        n = self.n_cells if self.censoring == "tobit" else self.n_cells - self.n_censored
        return self.k * np.log(n) - 2 * self.loglik

    def values(self) -> dict[str, float]:
        return {name: est.value for name, est in self.params.items()}

    def record(self) -> dict[str, Any]:
        """The fits.json record."""
        num = lambda v: float(v) if np.isfinite(v) else None  # noqa: E731
        return {
            "model": self.model,
            "title": get_model(self.model).title,
            "params": {name: est.as_dict() for name, est in self.params.items()},
            "aic": num(self.aic), "bic": num(self.bic), "loglik": num(self.loglik), "k": self.k,
            "n_cells": self.n_cells, "n_censored": self.n_censored,
            "heldout_median_abs_log_err": num(self.heldout_median_abs_log_err),
            "heldout_censor_accuracy": num(self.heldout_censor_accuracy),
            "heldout_grouped_median_abs_log_err": num(self.heldout_grouped[0]),
            "heldout_grouped_censor_accuracy": num(self.heldout_grouped[1]),
            "extrapolation_median_abs_log_err": num(self.extrapolation[0]),
            "extrapolation_censor_accuracy": num(self.extrapolation[1]),
            "extrapolation_by_axis": {a: {"median_abs_log_err": num(v[0]), "censor_accuracy": num(v[1])}
                                      for a, v in ((a, self._summary(p)) for a, p in self.extrapolated.items())},
            "median_abs_log_err": num(self.median_abs_log_err), "censor_accuracy": num(self.censor_accuracy),
            "interval": self.interval, "censoring": self.censoring, "n_starts": self.n_starts,
            "converged": self.converged,
        }


@dataclass(frozen=True)
class FitReport:
    """Fits of several models to one onsets table, with the per-cell predictions table."""

    fits: tuple[ModelFit, ...]
    predictions: pd.DataFrame = field(repr=False)

    def __getitem__(self, model: str) -> ModelFit:
        for fit_ in self.fits:
            if fit_.model == model:
                return fit_
        raise KeyError(model)

    def records(self) -> list[dict[str, Any]]:
        return [f.record() for f in self.fits]

    def table(self) -> pd.DataFrame:
        """Comparison table sorted by AIC."""
        best = min(f.aic for f in self.fits)
        rows = []
        for f in self.fits:
            rows.append({
                "model": f.model, "k": f.k, "loglik": f.loglik, "aic": f.aic, "delta_aic": f.aic - best,
                "bic": f.bic, "heldout_median_abs_log_err": f.heldout_median_abs_log_err,
                "heldout_censor_accuracy": f.heldout_censor_accuracy,
                "heldout_grouped_median_abs_log_err": f.heldout_grouped[0],
                "heldout_grouped_censor_accuracy": f.heldout_grouped[1],
                "extrapolation_median_abs_log_err": f.extrapolation[0],
                "extrapolation_censor_accuracy": f.extrapolation[1],
                "params": "; ".join(_fmt_param(n, e) for n, e in f.params.items()),
            })
        return pd.DataFrame(rows).sort_values("aic", kind="stable").reset_index(drop=True)


def _fmt_param(name: str, e: ParamEstimate) -> str:
    if e.fixed:
        return f"{name}={e.value:.3g} (fixed)"
    if np.isnan(e.lo) and np.isnan(e.hi):
        return f"{name}={e.value:.3g}"
    lo = f"{e.lo:.3g}" if np.isfinite(e.lo) else "-inf"
    hi = f"{e.hi:.3g}" if np.isfinite(e.hi) else "inf"
    return f"{name}={e.value:.3g} [{lo}, {hi}]"


# ---------------------------------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Problem:
    """Negative log-likelihood over optimiser coordinates u (log for positive parameters, then log sigma)."""

    model: OnsetModel
    data: OnsetData
    free: tuple[int, ...]  # indices of free model parameters
    base: np.ndarray  # full theta with fixed values
    censoring: Censoring
    prep: Any  # prepared on the distinct input rows (seeds repeat cells)
    inverse: np.ndarray  # [n] row of prep for each cell

    def theta(self, u: np.ndarray) -> np.ndarray:
        th = self.base.copy()
        for j, i in enumerate(self.free):
            th[i] = np.exp(u[j]) if self.model.params[i].positive else u[j]
        return th

    def log_pred(self, u: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.model.onset(self.prep, self.theta(u)))[self.inverse]

    def nll(self, u: np.ndarray) -> float:
        return self.nll_grad(u)[0]

    def nll_grad(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        """Negative log-likelihood and its gradient in u (chain rule through d ln t*/d theta from sympy)."""
        th = self.theta(u[:-1])
        t_star, dlog = self.model.onset(self.prep, th, grad=True)  # [n_distinct], [n_distinct, P]
        t_star, dlog = t_star[self.inverse], dlog[self.inverse]  # [n], [n, P]
        with np.errstate(divide="ignore"):
            ll, dmu, dls, capped = _tobit(np.log(t_star), float(np.exp(u[-1])), self.data, self.censoring)
        if not np.isfinite(ll):
            return 1e300, np.zeros_like(u)
        dmu = np.where(capped, 0.0, dmu)
        g = np.empty_like(u)
        for j, i in enumerate(self.free):
            jac = dlog[:, i] * (th[i] if self.model.params[i].positive else 1.0)
            g[j] = -float(np.sum(dmu * jac))
        g[-1] = -dls
        return -ll, g

    def bounds(self) -> list[tuple[float, float]]:
        out = []
        for i in self.free:
            p = self.model.params[i]
            out.append((np.log(p.bounds[0]), np.log(p.bounds[1])) if p.positive else p.bounds)
        return [*out, (np.log(SIGMA_BOUNDS[0]), np.log(SIGMA_BOUNDS[1]))]

    def to_u(self, theta: np.ndarray, sigma: float) -> np.ndarray:
        u = [np.log(theta[i]) if self.model.params[i].positive else theta[i] for i in self.free]
        return np.array([*u, np.log(sigma)])


def _identifiable(model: OnsetModel, prep: Any, rng: np.random.Generator) -> tuple[int, ...]:
    """Parameters the design can identify: greedy rank test on d ln t*/d u stacked over three points in
    declaration order; the rest stay fixed at their defaults (e.g. c_K of M0 when K never varies)."""
    P = len(model.params)
    pts = [np.array([p.default for p in model.params])]
    for _ in range(2):
        pts.append(np.array([_draw(p, rng) for p in model.params]))
    blocks = []
    for th in pts:
        u0 = np.array([np.log(v) if p.positive else v for v, p in zip(th, model.params)])
        cols = []
        for j, p in enumerate(model.params):
            h = 1e-4
            up, dn = u0.copy(), u0.copy()
            up[j] += h
            dn[j] -= h
            f = lambda u: np.log(model.onset(prep, [np.exp(v) if q.positive else v for v, q in zip(u, model.params)]))  # noqa: E731
            with np.errstate(all="ignore"):
                cols.append((f(up) - f(dn)) / (2 * h))
        J = np.stack(cols, axis=1)  # [n, P]
        blocks.append(J[np.all(np.isfinite(J), axis=1)])
    J = np.concatenate(blocks, axis=0)
    if J.shape[0] == 0:
        return tuple(range(P))
    J = J / np.maximum(np.linalg.norm(J, axis=0, keepdims=True), 1e-300)
    keep: list[int] = []
    for j in range(P):
        cand = J[:, [*keep, j]]
        sv = np.linalg.svd(cand, compute_uv=False)
        if sv[-1] > 1e-6 * sv[0]:
            keep.append(j)
    return tuple(keep)


def _draw(p, rng: np.random.Generator) -> float:
    lo, hi = p.init
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if p.positive else float(rng.uniform(lo, hi))


def _seed_start(prob: _Problem, theta: np.ndarray) -> np.ndarray:
    """Optimiser start from theta: shift the scale parameter to centre the observed residuals, set sigma."""
    model, data = prob.model, prob.data
    u = prob.to_u(theta, 0.5)
    obs = ~data.censored
    res = np.log(data.onset[obs]) - prob.log_pred(u[:-1])[obs]
    res = res[np.isfinite(res)]
    if model.scale_param is not None and res.size:
        i = model.param_names.index(model.scale_param)
        if i in prob.free:
            j = prob.free.index(i)
            lo, hi = prob.bounds()[j]
            u[j] = np.clip(u[j] + np.median(res), lo, hi)
            res = res - np.median(res)
    if res.size > 1:
        u[-1] = np.log(np.clip(np.std(res), 0.05, 2.0))
    return u


def _minimize(prob: _Problem, u0: np.ndarray, fixed: dict[int, float] | None = None) -> tuple[np.ndarray, float, bool]:
    """Bounded TNC with analytic gradients from u0, some coordinates held fixed; returns (u, nll, success)."""
    fixed = fixed or {}
    idx = [j for j in range(u0.size) if j not in fixed]
    bounds = prob.bounds()
    base = u0.copy()
    for j, val in fixed.items():
        base[j] = val

    def full(v):
        u = base.copy()
        u[idx] = v
        return u

    if not idx:
        return base, prob.nll(base), True

    def fun(v):
        val, g = prob.nll_grad(full(v))
        return val, g[idx]

    from scipy.optimize import minimize  # deferred: keeps `import zipfind.theory` light

    start = np.clip(base[idx], [bounds[j][0] for j in idx], [bounds[j][1] for j in idx])
    # TNC, not L-BFGS-B: scipy's L-BFGS-B calls threaded BLAS on tiny vectors, ~50x slower on a busy machine
    res = minimize(fun, start, jac=True, method="TNC", bounds=[bounds[j] for j in idx], options={"maxfun": 2000})
    return full(res.x), float(res.fun), bool(res.success)


def _profile_interval(prob: _Problem, u_hat: np.ndarray, nll_hat: float, j: int):
    """Profile-likelihood 95% interval of coordinate j in u coordinates: (lo, hi, best nll seen, its u).

    Walks outward with doubling steps until the profile rises by PROFILE_DELTA, then refines the crossing by the
    Illinois (regula falsi) method; each profile point re-optimises the other coordinates from the nearest
    solution already found."""
    bounds = prob.bounds()[j]
    best_val, best_u = nll_hat, u_hat
    h = 0.05  # conditional curvature sets the first step
    up, dn = u_hat.copy(), u_hat.copy()
    up[j] += h
    dn[j] -= h
    curv = (prob.nll(up) - 2 * nll_hat + prob.nll(dn)) / h**2
    step0 = float(np.clip(2.0 / np.sqrt(curv), 0.02, 2.0)) if curv > 0 and np.isfinite(curv) else 0.5
    solved = {float(u_hat[j]): u_hat}

    def gap(v: float) -> float:
        nonlocal best_val, best_u
        near = min(solved, key=lambda w: abs(w - v))
        u, val, _ = _minimize(prob, solved[near], {j: v})
        solved[v] = u
        if val < best_val:
            best_val, best_u = val, u
        return val - (nll_hat + PROFILE_DELTA)

    ends = []
    for sign in (-1.0, 1.0):
        a, fa = float(u_hat[j]), -PROFILE_DELTA
        step = step0
        end = -np.inf if sign < 0 else np.inf
        for _ in range(30):
            b = float(np.clip(a + sign * step, *bounds))
            fb = gap(b)
            if fb >= 0:
                end = _illinois(gap, a, fa, b, fb)
                break
            if b in bounds:
                break
            a, fa, step = b, fb, step * 2
        ends.append(end)
    return ends[0], ends[1], best_val, best_u


def _illinois(fun, a: float, fa: float, b: float, fb: float, xtol: float = 1e-3, iters: int = 40) -> float:
    """Root of fun between a (fa < 0) and b (fb >= 0) by the Illinois variant of regula falsi."""
    side = 0
    for _ in range(iters):
        if abs(b - a) < xtol:
            break
        c = b - fb * (b - a) / (fb - fa) if fb != fa else 0.5 * (a + b)
        fc = fun(c)
        if fc >= 0:
            b, fb = c, fc
            if side == 1:
                fa /= 2
            side = 1
        else:
            a, fa = c, fc
            if side == -1:
                fb /= 2
            side = -1
    return 0.5 * (a + b)


def _to_natural(p, u: float) -> float:
    if np.isnan(u):
        return np.nan
    if p is None or p.positive:
        return float(np.exp(u)) if np.isfinite(u) else (0.0 if u < 0 else np.inf)
    return float(u)




def _summaries(pred: np.ndarray, data: OnsetData) -> tuple[float, float]:
    return prediction_stats(pred, data.onset, data.censored, data.budget)


def _fit_core(model: OnsetModel, data: OnsetData, n_starts: int, rng: np.random.Generator, censoring: Censoring,
              u_init: np.ndarray | None = None, free: tuple[int, ...] | None = None):
    """Multistart MLE; returns (problem, u_hat, nll_hat, converged)."""
    use = data if censoring == "tobit" else data.subset(np.flatnonzero(~data.censored))
    rows = np.stack([use.inputs[name] for name in INPUT_NAMES], axis=1)  # [n, inputs]
    distinct, inverse = np.unique(rows, axis=0, return_inverse=True)  # seeds of one cell share a prediction
    prep = model.prepare(**{name: distinct[:, i] for i, name in enumerate(INPUT_NAMES)})
    if free is None:
        free = _identifiable(model, prep, rng)
    base = np.array([p.default for p in model.params])
    prob = _Problem(model=model, data=use, free=free, base=base, censoring=censoring, prep=prep,
                    inverse=inverse.reshape(-1))
    starts = [] if u_init is None else [u_init]
    starts.append(_seed_start(prob, base))
    while len(starts) < max(n_starts, 1):
        starts.append(_seed_start(prob, np.array([_draw(p, rng) for p in model.params])))
    best = (None, np.inf, False)
    for u0 in starts:
        u, val, ok = _minimize(prob, u0)
        if val < best[1]:
            best = (u, val, ok)
    return prob, best[0], best[1], best[2]


def fit_model(
    model: str | OnsetModel,
    data: OnsetData,
    *,
    n_starts: int = 8,
    interval: Interval = "profile",
    censoring: Censoring = "tobit",
    folds: int = 0,
    seed: int = 0,
    n_boot: int = 100,
) -> ModelFit:
    """Fit one model by censored maximum likelihood (multistart TNC with analytic gradients), with 95% intervals
    and, when folds >= 2, out-of-sample predictions: k folds over cells, k folds over groups of cells with identical
    inputs, and leave-one-value-out along every input axis with >= 3 values (heldout.py). Those fits start from
    the defaults and random draws, never from the full-data optimum, so held-out cells cannot leak into them."""
    m = model if isinstance(model, OnsetModel) else get_model(model)
    rng = np.random.default_rng(seed)
    prob, u_hat, nll_hat, ok = _fit_core(m, data, n_starts, rng, censoring)
    lo_u = np.full(u_hat.size, -np.inf)
    hi_u = np.full(u_hat.size, np.inf)
    if interval == "profile":
        for _pass in range(3):  # a profile that finds a better optimum restarts from it
            improved = False
            for j in range(u_hat.size):
                lo_u[j], hi_u[j], best_val, best_u = _profile_interval(prob, u_hat, nll_hat, j)
                if best_val < nll_hat - 1e-3:
                    u_hat, nll_hat, ok = _minimize(prob, best_u)
                    improved = True
                    break
            if not improved:
                break
    elif interval == "bootstrap":
        draws = []
        for _ in range(n_boot):
            idx = rng.integers(0, data.n, data.n)
            sub = data.subset(idx)
            if sub.n_censored == sub.n:
                continue
            _, u_b, _, _ = _fit_core(m, sub, 1, rng, censoring, u_init=u_hat, free=prob.free)
            draws.append(u_b)
        if draws:
            lo_u, hi_u = np.percentile(np.array(draws), [2.5, 97.5], axis=0)
    elif interval == "none":
        lo_u[:] = hi_u[:] = np.nan
    else:
        raise ValueError(f"interval must be profile, bootstrap or none, got {interval!r}")

    theta = prob.theta(u_hat[:-1])
    params: dict[str, ParamEstimate] = {}
    for i, p in enumerate(m.params):
        if i in prob.free:
            j = prob.free.index(i)
            params[p.name] = ParamEstimate(theta[i], _to_natural(p, lo_u[j]), _to_natural(p, hi_u[j]))
        else:
            params[p.name] = ParamEstimate(theta[i], np.nan, np.nan, fixed=True)
    params["sigma"] = ParamEstimate(float(np.exp(u_hat[-1])), _to_natural(None, lo_u[-1]), _to_natural(None, hi_u[-1]))

    full_prep = m.prepare(**data.inputs)
    pred = m.onset(full_prep, theta)
    med, acc = _summaries(pred, data)
    held = grouped = np.full(data.n, np.nan)
    fold = group_fold = np.full(data.n, -1)
    extrapolated: dict[str, np.ndarray] = {}
    h_med = h_acc = np.nan
    if folds >= 2:
        refit = lambda test, key: _predict_heldout(m, data, test, prob.free, n_starts, censoring, [seed, *key])  # noqa: E731
        fold = assign_folds(data.censored, folds, seed)
        held = _merge([refit(fold == f, (0, f)) for f in range(folds)])
        h_med, h_acc = _summaries(held, data)
        groups = input_groups(data.inputs)
        group_fold = assign_folds(data.censored, folds, seed, groups)
        if np.array_equal(group_fold, fold):  # every cell its own group (one seed): the same folds
            grouped = held
        else:
            grouped = _merge([refit(group_fold == f, (1, f)) for f in range(folds)])
        for j, (axis, tests) in enumerate(lovo_splits(data.inputs).items()):
            extrapolated[axis] = _merge([refit(test, (2, j, i)) for i, test in enumerate(tests)])
    return ModelFit(
        model=m.name, params=params, loglik=-nll_hat, k=len(prob.free) + 1, n_cells=data.n,
        n_censored=data.n_censored, predicted=pred, heldout_predicted=held, fold=fold, grouped_predicted=grouped,
        group_fold=group_fold, extrapolated=extrapolated, median_abs_log_err=med, censor_accuracy=acc,
        heldout_median_abs_log_err=h_med, heldout_censor_accuracy=h_acc, interval=interval, censoring=censoring,
        n_starts=n_starts, converged=ok, budget=data.budget, onset=data.onset, censored=data.censored,
    )


def _predict_heldout(m: OnsetModel, data: OnsetData, test: np.ndarray, free: tuple[int, ...], n_starts: int,
                     censoring: Censoring, key: list[int]) -> np.ndarray:
    """[n] t* for the test cells from a fit to the others (NaN elsewhere, and where too few onsets remain).
    The fit starts from defaults and random draws, never from the full-data optimum, so nothing leaks."""
    out = np.full(data.n, np.nan)
    train = data.subset(np.flatnonzero(~test))
    if not test.any() or (~train.censored).sum() < 2:
        return out
    fprob, fu, _, _ = _fit_core(m, train, max(2, n_starts // 2), np.random.default_rng(key), censoring, free=free)
    out[test] = m.onset(m.prepare(**data.subset(np.flatnonzero(test)).inputs), fprob.theta(fu[:-1]))
    return out


def _merge(parts: list[np.ndarray]) -> np.ndarray:
    """Combine per-split predictions whose test sets are disjoint: [n] (NaN where no split held the cell out)."""
    out = parts[0].copy()
    for p in parts[1:]:
        out = np.where(np.isnan(out), p, out)
    return out


def fit_models(
    onsets: pd.DataFrame,
    models: Sequence[str] | None = None,
    *,
    folds: int = 5,
    n_starts: int = 8,
    interval: Interval = "profile",
    censoring: Censoring = "tobit",
    seed: int = 0,
    n_boot: int = 100,
    progress: Callable[[str], None] | None = None,
) -> FitReport:
    """Fit every named model (default: all registered) to an onsets table; returns fits and the predictions table
    (the cells-table columns, observed vs in-sample and held-out predicted onset, per model)."""
    from .models import MODELS

    names = list(models) if models else list(MODELS)
    for n in names:
        get_model(n)
    data, rows = onset_data(onsets)
    if data.n_censored == data.n:
        raise ValueError("no uncensored cells: nothing to fit")
    cell_cols = [c for c in onsets.columns if c not in ONSET_ONLY_COLUMNS]
    base = onsets.iloc[rows][cell_cols].reset_index(drop=True)
    fits, frames = [], []
    for name in names:
        if progress is not None:
            progress(name)
        fit_ = fit_model(name, data, n_starts=n_starts, interval=interval, censoring=censoring, folds=folds,
                         seed=seed, n_boot=n_boot)
        fits.append(fit_)
        frame = base.copy()
        frame.insert(0, "model", name)
        if "cell" not in frame.columns:
            frame.insert(1, "cell", data.cell)
        frame["observed_onset"] = data.onset
        frame["censored"] = data.censored
        frame["budget"] = data.budget
        frame["predicted_onset"] = fit_.predicted
        frame["heldout_predicted_onset"] = fit_.heldout_predicted
        frame["fold"] = fit_.fold
        frame["heldout_grouped_predicted_onset"] = fit_.grouped_predicted
        frame["group_fold"] = fit_.group_fold
        for axis, p in fit_.extrapolated.items():
            frame[f"extrapolated_onset_{axis}"] = p
        frames.append(frame)
    return FitReport(fits=tuple(fits), predictions=pd.concat(frames, ignore_index=True))


def simulate_onsets(
    model: str | OnsetModel,
    params: dict[str, float],
    cells: pd.DataFrame,
    *,
    sigma: float,
    budget: float | np.ndarray,
    seed: int,
) -> pd.DataFrame:
    """Synthetic onsets table: t_obs = t* exp(sigma e), censored where t_obs > budget (for checks of the fitter)."""
    m = model if isinstance(model, OnsetModel) else get_model(model)
    rng = np.random.default_rng(seed)
    mapped = task_inputs(cells)
    inputs = {c: input_values(c, mapped[c].to_numpy()) for c in INPUT_NAMES if c in mapped.columns}
    t_true = m.predict(params, **inputs)
    t_obs = t_true * np.exp(sigma * rng.standard_normal(len(cells)))
    b = np.broadcast_to(np.asarray(budget, dtype=float), t_obs.shape)
    censored = ~(t_obs <= b)
    out = cells.copy()
    if "cell" not in out.columns:
        out.insert(0, "cell", np.arange(len(cells)))
    out["onset_step"] = np.where(censored, np.nan, t_obs)
    out["censored"] = censored
    out["budget"] = b
    out["true_onset"] = t_true
    return out
