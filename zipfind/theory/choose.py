"""Using fitted models on a run: which model to show (:func:`best_model`) and its predicted onset on a fine grid of
two axes (:func:`theory_grid`, the no-onset boundary the phase diagram draws)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .models import INPUT_NAMES, modelled, predict_onset, task_inputs

__all__ = ["best_model", "theory_grid"]


def best_model(records: Sequence[Mapping]) -> str:
    """The model of fits.json ``records`` with the lowest held-out median |ln error| on grouped folds (grid points
    never fitted; records older than that field use the cell-fold error; missing or non-finite counts as worst;
    ties: lower AIC, then the first listed)."""
    if not records:
        raise ValueError("no fitted models to choose from")

    def key(r: Mapping) -> tuple[float, float]:
        err = r.get("heldout_grouped_median_abs_log_err", r.get("heldout_median_abs_log_err"))
        aic = r.get("aic")
        finite = lambda v: v is not None and math.isfinite(v)  # noqa: E731
        return (err if finite(err) else math.inf, aic if finite(aic) else math.inf)

    return min(records, key=key)["model"]


def theory_grid(onsets: pd.DataFrame, model: str, params: object, *, x: str = "alpha", y: str = "B",
                n: int = 81) -> pd.DataFrame:
    """A fine (x, y) grid of a fitted model's predicted onset, for the boundary on the phase diagram.

    One grid per combination of the other model inputs (K, N, L, p_bursty, p_novel, lr) that vary in the onsets
    table (they become facet columns); inputs that do not vary are held at their value. ``params`` is anything
    :func:`zipfind.theory.predict_onset` accepts (e.g. the fits.json records). ``budget`` is the table's largest
    censoring time.
    """
    missing = [c for c in (x, y, "budget") if c not in onsets.columns]
    if missing:
        raise ValueError(f"the onsets table lacks column(s) {missing}")
    onsets = task_inputs(onsets[modelled(onsets)])
    xs = np.linspace(onsets[x].min(), onsets[x].max(), n)
    ys = np.linspace(onsets[y].min(), onsets[y].max(), n)
    gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))
    inputs = [k for k in INPUT_NAMES if k in onsets and k not in (x, y)]
    varying = [k for k in inputs if onsets[k].nunique() > 1]
    grids = []
    combos = onsets[inputs].drop_duplicates(varying) if varying else onsets[inputs].iloc[:1]
    for combo in combos.itertuples(index=False):
        fixed = {k: (v if k == "context" else float(v)) for k, v in zip(inputs, combo)}
        pred = predict_onset(model, params, **{x: gx, y: gy}, **fixed)
        grids.append(pd.DataFrame({x: gx, y: gy, "predicted_onset": pred, **{k: fixed[k] for k in varying}}))
    out = pd.concat(grids, ignore_index=True)
    return out.assign(budget=float(onsets["budget"].max()), model=model)
