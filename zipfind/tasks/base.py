"""What a task supplies to the engine: its tables, sampler, probe sets, loss and measures.

Training (:mod:`zipfind.train`), onsets, the store, sweeps and the theory see a task only through this interface
and the registry in :mod:`zipfind.tasks`; none of them branches on a task's name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from ..config import Cell, ModelConfig, TaskConfig
from ..model import Params


@dataclass(frozen=True)
class Shape:
    """Tensor sizes a task gives the model: inputs (vector dims, or the vocabulary for token ids), length, outputs."""

    n_in: int
    T: int
    n_out: int


@dataclass(frozen=True)
class Task:
    """A task as plain functions (all vectorised over the M stacked models)."""

    name: str
    shape: Callable[[TaskConfig], Shape]
    make_table: Callable[[Sequence[TaskConfig], Sequence[int], torch.device], Any]
    """(tasks, seeds, device) -> the stacked task instances (lexicon or class means, Zipf law, ...)."""
    train_batch: Callable[[Tensor, int, Any, int], Any]
    """(data seeds [M], step, table, batch size) -> that step's training batch; model m's draws are a pure
    function of (seeds[m], step) (zipfind.rng), so they never depend on the chunk."""
    probes: Callable[[Any, int, int], dict[str, Any]]
    """(table, spec seed, n_probe) -> the fixed evaluation sets, the same sequences for every model."""
    loss: Callable[[Params, ModelConfig, Any], Tensor]
    """(params, model, batch) -> each model's mean training loss [M]."""
    evaluate: Callable[[Params, ModelConfig, Mapping[str, Any]], tuple[dict[str, Tensor], Tensor]]
    """(params, model, probes) -> (every measure [M], per-probe-sequence IC accuracy [M, n_probe] whose mean is
    ic_acc: it feeds the onset's probe bootstrap)."""
    model_bytes: Callable[[Cell, ModelConfig], int]
    """Estimated peak bytes of one training model (an upper bound; see zipfind.sweep.check_resources)."""
    view: Callable[[Any, int], tuple[list[str], dict[int, list[int]]]]
    """(probe batch, sequence i of model 0) -> (a label per position, query position -> the key positions a
    perfect induction head attends to): for attention pictures."""


def slice_batch(batch: Any, sl: slice) -> Any:
    """The models sl of a batch dataclass whose tensor fields all lead with the model dimension M."""
    return dataclasses.replace(batch, **{f.name: getattr(batch, f.name)[sl] for f in dataclasses.fields(batch)
                                         if isinstance(getattr(batch, f.name), Tensor)})
