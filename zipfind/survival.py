"""Onsets across seeds: the Kaplan-Meier median with per-run censoring times, and the one seed summary.

Each run is an onset time or a right-censoring time (its ``budget``: no onset confirmed by then; a diverged run's
record ends at its divergence). The Kaplan-Meier estimate of the survival S(t) = P(onset > t) uses every run with
its own censoring time; the median is the smallest event time with S <= 1/2 (never reached: censored). The seed
summary reports it with two intervals: run-level (the median of the runs' own interval ends, which contains the
median of the true onsets whenever each run's interval contains its own) and seed-level (a bootstrap over seeds).
Tables, figures and the README use :func:`seed_summary` and nothing else.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .columns import FINAL_COLUMNS, ONSET_COLUMNS


def km_median(time, censored) -> np.ndarray:
    """Kaplan-Meier median of onset times along the last axis: time, censored [..., n] -> [...].

    ``time`` holds each run's onset, or its censoring time where ``censored``. At a tie, events come before
    censorings (a run censored at t was still at risk at t). inf where S(t) stays above 1/2. No NaN allowed.
    """
    t = np.asarray(time, dtype=float)
    c = np.broadcast_to(np.asarray(censored, dtype=bool), t.shape)
    if t.shape[-1] == 0:
        return np.full(t.shape[:-1], np.inf)
    if np.isnan(t).any():
        raise ValueError("km_median: times must not be NaN (give censored runs their censoring time)")
    order = np.lexsort((c, t), axis=-1)  # [..., n] by time, events first at ties
    ts, cs = np.take_along_axis(t, order, -1), np.take_along_axis(c, order, -1)
    n = t.shape[-1]
    at_risk = n - np.arange(n)  # [n] runs at risk at each sorted position
    surv = np.cumprod(np.where(cs, 1.0, 1.0 - 1.0 / at_risk), axis=-1)  # [..., n] S just after each position
    hit = (surv <= 0.5 + 1e-12) & ~cs
    first = np.argmax(hit, axis=-1)  # [...]
    med = np.take_along_axis(ts, first[..., None], -1)[..., 0]
    return np.where(hit.any(axis=-1), med, np.inf)


def quantile_inf(v: np.ndarray, q: float) -> float:
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


def _runs(g: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(time [n], censored [n], interval lo [n], hi [n]) of a group's runs; uncensored runs without an onset are
    dropped. A run without an interval uses its onset at both ends."""
    cens = g["censored"].to_numpy(dtype=bool)
    step = g["onset_step"].to_numpy(dtype=float)
    budget = g["budget"].to_numpy(dtype=float)
    keep = cens | np.isfinite(step)
    lo = g["onset_lo"].to_numpy(dtype=float) if "onset_lo" in g else np.full(len(g), np.nan)
    hi = g["onset_hi"].to_numpy(dtype=float) if "onset_hi" in g else np.full(len(g), np.nan)
    lo = np.where(cens, budget, np.where(np.isnan(lo), step, lo))
    hi = np.where(cens, np.inf, np.where(np.isnan(hi), step, hi))
    time = np.where(cens, budget, step)
    return time[keep], cens[keep], lo[keep], hi[keep]


def seed_summary(onsets: pd.DataFrame, by: Sequence[str] | None = None, *, ci: float = 0.95, n_boot: int = 1000,
                 seed: int = 0) -> pd.DataFrame:
    """One row per group of runs (the seeds of a grid cell): grouping columns, then
    :data:`zipfind.columns.SUMMARY_COLUMNS`.

    ``onset_step`` is the Kaplan-Meier median (:func:`km_median`), NaN with ``censored`` True when it is not
    reached. ``onset_lo``/``onset_hi``: run level, the Kaplan-Meier medians of the runs' interval ends (a
    censored run's lower end is its budget, observed; its upper end inf). ``seed_lo``/``seed_hi``: the
    ``ci`` percentile interval of the median over ``n_boot`` resamples of the seeds (NaN for a single seed); where
    even the lower resamples are censored, ``seed_lo`` is the smallest censoring time. ``by`` defaults to every
    cells-table column except ``cell`` and ``seed``.
    """
    if by is None:
        by = [c for c in onsets.columns if c not in ONSET_COLUMNS and c not in ("cell", "seed")]
    by = list(by)
    missing = [c for c in [*by, "onset_step", "censored", "budget"] if c not in onsets.columns]
    if missing:
        raise ValueError(f"onsets lacks columns {missing}")
    rng = np.random.default_rng(seed)
    alpha = 0.5 * (1.0 - ci)
    rows = []
    groups = onsets.groupby(by, dropna=False, sort=True) if by else [((), onsets)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        time, cens, lo, hi = _runs(g)
        med = float(km_median(time, cens))
        seed_lo = seed_hi = float("nan")
        if time.size > 1 and n_boot > 0:
            idx = rng.integers(0, time.size, size=(n_boot, time.size))  # [n_boot, n_seeds]
            boot = km_median(time[idx], cens[idx])  # [n_boot]
            seed_lo, seed_hi = quantile_inf(boot, alpha), quantile_inf(boot, 1.0 - alpha)
            if np.isinf(seed_lo):
                seed_lo = float(time[cens].min())
        row = dict(zip(by, key))
        row.update({
            "onset_step": med if np.isfinite(med) else float("nan"),
            "onset_lo": float(km_median(lo, np.zeros(lo.size, bool))),
            "onset_hi": float(km_median(hi, np.zeros(hi.size, bool))),
            "seed_lo": seed_lo, "seed_hi": seed_hi,
            "censored": not np.isfinite(med), "n_seeds": int(time.size), "n_censored": int(cens.sum()),
            "budget": float(g["budget"].max()),
            "estimator": g["estimator"].iloc[0] if "estimator" in g else None,
            "measure": g["measure"].iloc[0] if "measure" in g else None,
        })
        for c in FINAL_COLUMNS:
            if c in g:
                v = g[c].to_numpy(dtype=float)
                row[c] = float(np.nanmedian(v)) if np.isfinite(v).any() else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)
