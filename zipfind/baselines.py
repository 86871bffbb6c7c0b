"""What an accuracy means: the level a model reaches without the skill the measure is named for.

Closed forms for the task of :mod:`zipfind.tasks.classification` (labels k mod L, Zipf class frequencies, IC contexts of N
fresh classes with distinct random labels, IW queries drawn from p):

- ``ic_chance``: IC accuracy of a uniformly random label, 1/L;
- ``ic_copy``: IC accuracy of copying a uniformly random *context* label (Reddy's slow phase), 1/N;
- ``ctx_chance``: context-label accuracy of a uniformly random label, N/L (the N context labels are distinct);
- ``iw_majority``: IW accuracy of always answering the most frequent label, max_l sum_{k = l mod L} p_k. At
  alpha = 2, K = 2048, L = 32 that is 0.61: an IW accuracy of 0.62 there is almost no in-weights learning.

Each baseline is a function of the cell's task parameters (a cells/onsets-table row); :data:`BASELINES` says which
measure each belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Mapping

import numpy as np


def ic_chance(L: float) -> float:
    """IC accuracy of a uniformly random label: 1/L."""
    return 1.0 / float(L)


def ic_copy(N: float) -> float:
    """IC accuracy of copying a uniformly random context label: 1/N (the query's label is one of N)."""
    return 1.0 / float(N)


def ctx_chance(N: float, L: float) -> float:
    """Context-label accuracy of a uniformly random label: N/L (IC contexts hold N distinct labels)."""
    return float(N) / float(L)


@lru_cache(maxsize=256)
def _majority(alpha: float, K: int, L: int) -> float:
    from .theory.zipf import zipf_probs  # deferred: the theory package compiles its models on import

    p = zipf_probs(alpha, K)  # [K], class k (0-based) has label k mod L
    per_label = np.bincount(np.arange(K) % L, weights=p, minlength=L)  # [L]
    return float(per_label.max())


def iw_majority(alpha: float, K: float, L: float) -> float:
    """IW accuracy of always answering the most frequent label: max_l sum over classes k = l (mod L) of p_k."""
    return _majority(float(alpha), int(K), int(L))


def iw_above_majority(iw_acc, majority):
    """IW accuracy rescaled to 0 at the majority level and 1 at perfect: (acc - m) / (1 - m); NaN where m = 1."""
    acc, m = np.asarray(iw_acc, dtype=float), np.asarray(majority, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(m < 1.0, (acc - m) / (1.0 - m), np.nan)


@dataclass(frozen=True)
class Baseline:
    """One reference level of one measure: a name for figures and its value for a cell's parameters."""

    name: str
    label: str
    measure: str
    value: Callable[[Mapping], float]
    style: str = ":"
    task: str = "classification"  # the task (a cell's `task` column) whose measure this is


BASELINES: tuple[Baseline, ...] = (
    Baseline("ic_chance", "chance 1/L", "ic_acc", lambda r: ic_chance(r["L"]), ":"),
    Baseline("ic_copy", "copy a context label 1/N", "ic_acc", lambda r: ic_copy(r["N"]), "-."),
    Baseline("ctx_chance", "chance N/L", "ic_ctx_acc", lambda r: ctx_chance(r["N"], r["L"]), ":"),
    Baseline("iw_majority", "majority label", "iw_acc", lambda r: iw_majority(r["alpha"], r["K"], r["L"]), "--"),
    Baseline("ic_letter_chance", "chance 1/V", "ic_acc", lambda r: 1.0 / r["V"], ":", task="tokens"),
    Baseline("iw_letter_chance", "chance 1/V", "iw_acc", lambda r: 1.0 / r["V"], ":", task="tokens"),
)
"""Every baseline, keyed by the measure it belongs to (final_* columns use the same ones)."""


def baselines_for(measure: str, row: Mapping) -> dict[str, float]:
    """name -> level of every baseline of ``measure`` (``ic_acc`` or ``final_ic_acc``) for one cell's parameters.

    Baselines whose parameters the row lacks are left out."""
    measure = measure.removeprefix("final_")
    out = {}
    task = row.get("task", "classification")
    for b in BASELINES:
        if b.measure == measure and b.task == task:
            try:
                out[b.name] = b.value(row)
            except KeyError:
                continue
    return out
