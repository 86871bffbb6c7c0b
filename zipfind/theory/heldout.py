"""Out-of-sample evaluation of onset models: splits that cannot leak, error summaries, validation on other sweeps.

Three kinds of held-out error, from weakest to strongest claim (theory/README.md says how to read them):

- cell folds (`assign_folds` without groups): cells shuffled into k folds. With several seeds per input row every
  held-out cell has training twins with identical inputs, so this is close to in-sample; kept for comparison.
- grouped folds (`assign_folds` with `input_groups`): every cell with the same model inputs (the seeds of one
  grid point) falls in one fold: the error of predicting grid points never fitted.
- leave-one-value-out (`lovo_splits`): along each input axis with >= 3 values, all cells at one value are held
  out and predicted from the others: extrapolation along that axis (interpolation for interior values).

`validate` scores fitted models on cells of another sweep (e.g. sims/validation.toml) that no fit has seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .models import INPUT_NAMES, MODELS, get_model, input_values, modelled, resolve_params, task_inputs

__all__ = ["input_groups", "assign_folds", "lovo_splits", "prediction_stats", "cell_axes", "validate"]


def input_groups(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """[n] group id per cell: cells with identical model inputs (e.g. the seeds of one grid point) share one."""
    rows = np.stack([np.asarray(inputs[n], dtype=float) for n in INPUT_NAMES], axis=1)  # [n, inputs]
    return np.unique(rows, axis=0, return_inverse=True)[1].reshape(-1)


def assign_folds(censored: np.ndarray, folds: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Fold index per cell [n]. Whole groups (default: each cell its own) are shuffled with a seeded generator
    and dealt round-robin, stratified by the group's majority censoring flag."""
    censored = np.asarray(censored, dtype=bool)
    groups = np.arange(censored.size) if groups is None else np.asarray(groups)
    ids, inv = np.unique(groups, return_inverse=True)
    g_cens = np.bincount(inv, weights=censored.astype(float)) / np.bincount(inv) > 0.5  # [n_groups]
    rng = np.random.default_rng(seed)
    g_fold = np.empty(ids.size, dtype=int)
    offset = 0
    for stratum in (np.flatnonzero(~g_cens), np.flatnonzero(g_cens)):
        perm = rng.permutation(stratum)
        g_fold[perm] = (np.arange(perm.size) + offset) % folds
        offset += perm.size
    return g_fold[inv.reshape(-1)]


def lovo_splits(inputs: Mapping[str, np.ndarray], min_values: int = 3) -> dict[str, list[np.ndarray]]:
    """axis -> one boolean test mask per value, for every input axis with >= min_values distinct values."""
    out: dict[str, list[np.ndarray]] = {}
    for name in INPUT_NAMES:
        col = np.asarray(inputs[name], dtype=float)
        values = np.unique(col)
        if values.size >= min_values:
            out[name] = [col == v for v in values]
    return out


def prediction_stats(pred: np.ndarray, onset: np.ndarray, censored: np.ndarray, budget: np.ndarray) -> tuple[float, float]:
    """How well predicted onsets t* [n] match observed ones: (median |ln t*/t| over uncensored cells, fraction of
    cells whose censoring t* calls right, i.e. t* > budget iff censored). NaN in ``pred`` means no prediction was
    made (a cell not held out, a skipped fold): left out of both; inf means no onset predicted (infinitely wrong
    against an observed onset). The fits, the validation and the fit overlay all use this."""
    pred, onset = np.asarray(pred, dtype=float), np.asarray(onset, dtype=float)
    censored, budget = np.asarray(censored, dtype=bool), np.asarray(budget, dtype=float)
    ok = ~np.isnan(pred)
    obs = ok & ~censored
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.abs(np.log(pred[obs]) - np.log(onset[obs]))
    err = np.where(np.isnan(err), np.inf, err)
    med = float(np.median(err)) if err.size else np.nan
    acc = float(np.mean((pred[ok] > budget[ok]) == censored[ok])) if ok.any() else np.nan
    return med, acc


def cell_axes(cells: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.Series:
    """For a one-axis-at-a-time sweep: the columns in which each cell differs from the sweep's modal cell
    ("base" when none), joined by "+". columns default to every column except cell and seed."""
    cols = [c for c in (columns or cells.columns) if c not in ("cell", "seed")]
    mode = {c: cells[c].mode(dropna=False).iloc[0] for c in cols}
    labels = []
    for _, row in cells.iterrows():
        diff = [c for c in cols if not (row[c] == mode[c] or (pd.isna(row[c]) and pd.isna(mode[c])))]
        labels.append("+".join(diff) or "base")
    return pd.Series(labels, index=cells.index, name="axis")


def validate(onsets: pd.DataFrame, fits: Any, models: Sequence[str] | None = None,
             axis: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score fitted models on an onsets table no fit has seen.

    fits: fits.json records (or anything `resolve_params` takes per model). Returns (summary, predictions):
    summary has one row per (model, axis) and per model over all cells ("all"): n_cells, n_observed,
    median_abs_log_err, censor_accuracy; predictions one row per (model, cell). axis defaults to `cell_axes`
    of the table's input columns and eps.
    """
    need = ["alpha", "B", "censored", "onset_step", "budget"]
    missing = [c for c in need if c not in onsets.columns]
    if missing:
        raise ValueError(f"onsets table lacks columns {missing}")
    onsets = onsets[modelled(onsets)]
    names = list(models) if models else [m for m in MODELS if _has_record(fits, m)]
    if axis is None:
        cols = [c for c in (*INPUT_NAMES, "eps") if c in onsets.columns]
        axis = cell_axes(onsets, cols)
    mapped = task_inputs(onsets)
    inputs = {n: input_values(n, mapped[n].to_numpy()) for n in INPUT_NAMES if n in mapped.columns}
    censored = onsets["censored"].to_numpy(dtype=bool)
    onset = np.where(censored, np.nan, onsets["onset_step"].to_numpy(dtype=float))
    budget = onsets["budget"].to_numpy(dtype=float)
    rows, frames = [], []
    for name in names:
        m = get_model(name)
        pred = m.predict(resolve_params(m, fits), **inputs)
        frame = onsets[[c for c in ("cell", "seed") if c in onsets.columns]].copy()
        frame.insert(0, "model", name)
        frame["axis"] = axis.to_numpy()
        frame["observed_onset"], frame["censored"], frame["budget"] = onset, censored, budget
        frame["predicted_onset"] = pred
        frames.append(frame)
        for label in ["all", *sorted(set(axis))]:
            sel = np.ones(len(onsets), bool) if label == "all" else (axis == label).to_numpy()
            med, acc = prediction_stats(pred[sel], onset[sel], censored[sel], budget[sel])
            rows.append({"model": name, "axis": label, "n_cells": int(sel.sum()),
                         "n_observed": int((sel & ~censored).sum()), "median_abs_log_err": med,
                         "censor_accuracy": acc})
    return pd.DataFrame(rows), pd.concat(frames, ignore_index=True)


def _has_record(fits: Any, name: str) -> bool:
    try:
        resolve_params(get_model(name), fits)
    except (KeyError, ValueError):
        return False
    return True
