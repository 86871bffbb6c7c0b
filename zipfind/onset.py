"""The onset of a run: an estimator's step (:mod:`zipfind.estimators`), right-censoring at the last confirmable
step, an interval that holds both checkpoint spacing and probe sampling, and the onsets table.

Censoring: a crossing needs ``persistence`` (k) checkpoints at or above the threshold to be confirmed, so a run
whose record ends at checkpoint s_n can show a confirmed onset no later than s_{n-k+1} (the k-th checkpoint from
the end). That step is the run's censoring time, its ``budget``: a run with no onset by then is censored there,
never at the end of training, so the censored likelihood is told the truth ("no onset by 1800" for a 2000-step
run with checkpoints every 100 steps). Every estimator is held to the same time.

Intervals: the crossing is only known to lie between the checkpoints that bracket it (``bracket_lo``,
``bracket_hi``), and the curve itself is an average over a fixed set of probe sequences. ``onset_probe_lo/hi``
is the percentile interval of onsets re-estimated on curves rebuilt from resampled probe sequences (columns of
``per_item``; valid because every checkpoint scores the same probes). ``onset_lo/hi`` widens it to the brackets:
from the lower percentile of the resamples' lower bracket ends to the upper percentile of their upper bracket
ends, never narrower than the onset's own bracket. Seeds are combined in :mod:`zipfind.survival`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from .baselines import iw_above_majority, iw_majority
from .columns import ONSET_COLUMNS
from .estimators import (  # noqa: F401  (re-exported: the estimators are part of zipfind.onset's API)
    ESTIMATORS, EstimatorName, OnsetConfig, _check_steps, _prepare, crossing_step, default_config,
    logistic_onset, max_slope_onset, normalise, sustained_rise, threshold_onset,
)
from .survival import km_median, quantile_inf, seed_summary  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class Onset:
    """One run's onset: ``step`` is NaN iff ``censored`` (then the onset is only known to exceed ``budget``)."""

    step: float
    lo: float
    """Lower end of the interval (probe bootstrap widened to the checkpoint brackets); ``budget`` when censored."""
    hi: float
    """Upper end (inf when censored, or when the upper resamples find no onset by ``budget``)."""
    censored: bool
    budget: float
    """Censoring time: the last step at which a crossing could still be confirmed (see :func:`censoring_time`)."""
    estimator: str
    others: Mapping[str, float] = field(default_factory=dict)
    """Every estimator's value (NaN where it has none by ``budget``), keyed as in :data:`ESTIMATORS`."""
    disagree: bool = False
    rise: float = float("nan")
    """Highest normalised level held for ``persistence`` checkpoints (what the censoring rule compares)."""
    probe_lo: float = float("nan")
    """Percentile interval from resampling probe sequences alone (NaN without per-probe data or when censored)."""
    probe_hi: float = float("nan")
    bracket_lo: float = float("nan")
    """The checkpoint before the onset (the crossing is later); NaN when censored."""
    bracket_hi: float = float("nan")
    """The checkpoint at or after the onset (the crossing is no later)."""
    record_end: float = float("nan")
    """The last checkpoint of the record the onset was read from."""


def censoring_time(steps, persistence: int) -> float:
    """The last step at which a crossing could still be confirmed: the ``persistence``-th positive checkpoint from
    the end (a later crossing lacks the checkpoints that confirm it); 0 when there are fewer checkpoints."""
    s = np.asarray(steps, dtype=float)
    s = s[s > 0]
    return float(s[-persistence]) if s.size >= persistence else 0.0


def bracket(steps, t) -> tuple[np.ndarray, np.ndarray]:
    """The checkpoints around onsets t [...]: (last checkpoint < t, first checkpoint >= t), 0 below the first
    checkpoint, inf (both) where t is inf. An interpolated crossing lies inside its bracket by construction."""
    s = np.asarray(steps, dtype=float)
    t = np.asarray(t, dtype=float)
    i = np.searchsorted(s, t, side="left")  # [...]: s[i-1] < t <= s[i]
    lo = np.where(i > 0, s[np.maximum(i - 1, 0)], 0.0)
    hi = s[np.minimum(i, s.size - 1)]
    out = np.isinf(t) | (i >= s.size)
    return np.where(out, np.inf, lo), np.where(out, np.inf, hi)


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
    """The onset of one run: the chosen estimator's step, every estimator's value, censoring and intervals.

    ``budget`` is where the run's record ends (steps trained, or where it diverged); checkpoints after it and
    non-finite ones are dropped. The run is censored at :func:`censoring_time` of what is left when the chosen
    estimator finds no onset by then. ``per_item`` [n_ckpt, n_probe], aligned with ``steps``, gives the probe
    bootstrap; its probe means must equal ``values``.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator {estimator!r} unknown; choose one of {sorted(ESTIMATORS)}")
    s = _check_steps(steps)
    v = np.asarray(values, dtype=float)
    if v.shape != s.shape:
        raise ValueError(f"values shape {v.shape} != steps shape {s.shape}")
    keep = np.isfinite(v) & (s <= budget)
    items = None
    if per_item is not None:
        items = np.asarray(per_item, dtype=float)
        if items.ndim != 2 or items.shape[0] != s.size:
            raise ValueError(f"per_item must be [n_ckpt={s.size}, n_probe], got {items.shape}")
        if np.nanmax(np.abs(items.mean(axis=1) - v)[keep], initial=0.0) > 1e-3:
            raise ValueError("per_item probe means do not match values; per_item must belong to this measure")
        items = items[keep]
    s, v = s[keep], v[keep]
    nan, inf = float("nan"), float("inf")
    horizon = censoring_time(s, config.persistence)
    end = float(s[-1]) if s.size else nan
    if s.size == 0:
        return Onset(nan, horizon, inf, True, horizon, estimator, {name: nan for name in ESTIMATORS}, False, nan,
                     record_end=end)
    others = {name: float(fn(s, v, config)) for name, fn in ESTIMATORS.items()}
    others = {name: t if t <= horizon else nan for name, t in others.items()}  # unconfirmable: no onset
    rise = float(_prepare(s, v, config)[2][0])
    step = others[estimator]
    disagree = _disagree(others, config.disagree_tol)
    if np.isnan(step):
        return Onset(nan, horizon, inf, True, horizon, estimator, others, disagree, rise, record_end=end)
    b_lo, b_hi = (float(e) for e in bracket(s, step))
    p_lo = p_hi = nan
    lo, hi = b_lo, b_hi
    if items is not None and config.n_boot > 0:
        reps = bootstrap_onsets(s, items, estimator, config, seed)
        reps = np.where(np.isfinite(reps) & (reps <= horizon), reps, inf)  # [n_boot]
        alpha = 0.5 * (1.0 - config.ci)
        p_lo, p_hi = quantile_inf(reps, alpha), quantile_inf(reps, 1.0 - alpha)
        r_lo, r_hi = bracket(s, reps)  # [n_boot] each, on the checkpoint grid: order statistics, no interpolation
        lo = min(b_lo, float(np.quantile(r_lo, alpha, method="lower")))
        hi = max(b_hi, float(np.quantile(r_hi, 1.0 - alpha, method="higher")))
    return Onset(step, lo, hi, False, horizon, estimator, others, disagree, rise, p_lo, p_hi, b_lo, b_hi, end)


def _final(series: Mapping[str, tuple[np.ndarray, np.ndarray]], measure: str) -> float:
    if measure not in series:
        return float("nan")
    v = series[measure][1]
    v = v[np.isfinite(v)]
    return float(v[-1]) if v.size else float("nan")


def _record_end(rec: Mapping, series: Mapping[str, tuple[np.ndarray, np.ndarray]], measure: str) -> float:
    """Where a run's record ends: its ``steps``, its last finite checkpoint of ``measure``, or its first
    checkpoint with ``diverged`` set (a diverged model is frozen there), whichever is earliest."""
    steps, values = series[measure]
    end = float(rec["steps"]) if "steps" in rec and pd.notna(rec["steps"]) else float(steps[-1])
    finite = steps[np.isfinite(values)]
    if finite.size:
        end = min(end, float(finite[-1]))
    if "diverged" in series:
        sd, vd = series["diverged"]
        if np.any(vd > 0):
            end = min(end, float(sd[np.argmax(vd > 0)]))
    return end


def onsets_table(metrics: pd.DataFrame, cells: pd.DataFrame, per_item: Mapping[int, np.ndarray] | None = None, *,
                 measure: str = "ic_acc", estimator: EstimatorName = "threshold",
                 config: OnsetConfig | None = None, seed: int = 0) -> pd.DataFrame:
    """The onsets table: one row per cell of ``cells`` that has ``measure`` in ``metrics``.

    Columns: the cells-table columns, then :data:`zipfind.columns.ONSET_COLUMNS`. Each run is read up to its
    ``record_end`` (:func:`_record_end`) and censored at the last confirmable step before it (``budget``).
    ``per_item`` maps cell -> ``ic_correct`` [n_checkpoints, n_probe] aligned with that cell's sorted unique metric
    steps; it feeds the probe bootstrap when ``measure == "ic_acc"`` (other measures get the bracket alone).
    Each cell's bootstrap is seeded by (seed, cell), so a row does not depend on which other cells are in the table.
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
        end = _record_end(rec, series, measure)
        items = None
        if per_item is not None and measure == "ic_acc" and cell in per_item:
            arr = np.asarray(per_item[cell])
            if arr.ndim != 2 or arr.shape[0] != all_steps.size:
                raise ValueError(f"per_item[{cell}] has shape {arr.shape}; expected [{all_steps.size}, n_probe]")
            items = arr[np.searchsorted(all_steps, steps)]
        on = detect_onset(steps, values, end, estimator=estimator, per_item=items, config=cfg,
                          seed=np.random.default_rng([seed, cell]))
        ind = float("nan")
        if "induction_score" in series:
            si, vi = series["induction_score"]
            ok = np.isfinite(vi) & (si <= end)
            if ok.any():
                ind = float(crossing_step(si[ok], vi[ok], cfg.induction_threshold, cfg.persistence))
        final_iw = _final(series, "iw_acc")
        majority = (iw_majority(rec["alpha"], rec["K"], rec["L"]) if {"alpha", "K", "L"} <= set(rec)
                    else float("nan"))
        rows.append({
            **rec,
            "onset_step": on.step, "onset_lo": on.lo, "onset_hi": on.hi, "censored": on.censored,
            "budget": on.budget, "estimator": estimator, "measure": measure,
            **{f"onset_{name}": on.others[name] for name in ESTIMATORS},
            "estimators_disagree": on.disagree,
            "final_ic_acc": _final(series, "ic_acc"), "final_iw_acc": final_iw,
            "final_induction_score": _final(series, "induction_score"), "induction_step": ind,
            "onset_probe_lo": on.probe_lo, "onset_probe_hi": on.probe_hi,
            "bracket_lo": on.bracket_lo, "bracket_hi": on.bracket_hi, "record_end": on.record_end,
            "iw_majority": majority, "final_iw_above_majority": float(iw_above_majority(final_iw, majority)),
        })
    columns = list(cells.columns) + list(ONSET_COLUMNS)
    out = pd.DataFrame(rows, columns=columns)
    return out.astype({"censored": bool, "estimators_disagree": bool, "cell": int})
