"""Attention patterns of one trained model on its task's probe sets, with each position labelled and the
induction targets (where a perfect induction head attends) marked: the data behind `zipfind plot attention`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .config import Cell, Spec
from .model import forward
from .tasks import get_task
from .train import cell_probes


@dataclass(frozen=True)
class ProbeAttention:
    step: int
    probe: str
    tokens: Tensor  # [n, T] token ids, or [n, T, D] content vectors
    attn: Tensor  # [layers, H, n, T, T]
    labels: list[list[str]]  # per sequence, per position: what the token is
    targets: list[dict[int, list[int]]]  # per sequence: query position -> the key positions an induction head reads


@torch.no_grad()
def probe_attention(spec: Spec, cell: Cell, params: dict[str, Tensor], step: int, probe: str = "ic",
                    n: int | None = None) -> ProbeAttention:
    """One model's (params without a model dimension) attention on the first n sequences of a probe set."""
    task = get_task(cell.task)
    probes = cell_probes(spec, cell)
    if probe not in probes:
        raise ValueError(f"probe: {probe!r} is not allowed; the {cell.task.kind} task's probe sets are "
                         f"{', '.join(probes)}")
    batch = probes[probe]
    n = n or batch.tokens.shape[1]
    out = forward({k: v[None] for k, v in params.items()}, batch.tokens[:, :n], spec.model, internals=True)
    views = [task.view(batch, i) for i in range(n)]
    return ProbeAttention(step=step, probe=probe, tokens=batch.tokens[0, :n], attn=out.attn[0],
                          labels=[v[0] for v in views], targets=[v[1] for v in views])


def default_steps(kept: list[int], onset: float, lo: float, censored: bool) -> list[int]:
    """Steps to show: before the onset (the last kept step at or before its interval's start), around it (the
    kept step nearest to it) and after (the last kept step); a censored run shows its first, middle and last."""
    if len(kept) <= 1:
        return list(kept)
    if censored or not onset == onset:
        return sorted({kept[0], kept[len(kept) // 2], kept[-1]})
    before = max((s for s in kept if s <= lo), default=kept[0])
    around = min(kept, key=lambda s: abs(s - onset))
    return sorted({before, around, kept[-1]})
