"""Train one chunk of stackable cells: the step loop, the checkpoint schedule, and progress measures.

The hot loop never synchronises with the host: losses are accumulated and divergence is detected as tensors;
the host reads them only at checkpoints and, with a state path, at the saves every `resume_every` steps.
"""

from __future__ import annotations

import io
import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.profiler import record_function

from . import rng, store
from .config import STACK_KEYS, Cell, ModelConfig
from .law import derive_seed
from .model import Params, init_params
from .optim import StackedOptimizer
from .tasks import Task, get_task, slice_batch


def checkpoint_steps(steps: int, eval_every: int) -> list[int]:
    """0, log-spaced early steps (1, 2, 4, ... below eval_every), then every eval_every, and the last step."""
    early = [2**i for i in range(steps.bit_length()) if 2**i < eval_every]
    return sorted({0, steps, *early, *range(eval_every, steps + 1, eval_every)})


def chunk_key(cell: Cell, model: ModelConfig) -> tuple:
    """Cells with equal keys share tensor shapes and schedules, so they can be stacked."""
    t, r = cell.task, cell.train
    shape = tuple(getattr(t, k) for k in STACK_KEYS[t.kind])
    return (t.kind, *shape, r.batch, r.steps, r.eval_every, r.n_probe, r.optimizer, model)


@dataclass(frozen=True)
class ChunkResult:
    metrics: pd.DataFrame  # long format: cell, step, measure, value
    ic_correct: dict[int, np.ndarray]  # cell -> [n_checkpoints, n_probe] per-probe IC accuracy (bool or float)
    diverged_at: dict[int, int | None]  # cell -> first step whose loss was not finite, or None
    wall_s: float
    eval_s: float  # of which spent in evaluation
    peak_mem_mb_per_model: float | None  # CUDA allocator peak / M; None on a CPU
    weights: dict[int, dict[str, torch.Tensor]]  # step -> parameter -> [M, ...] on the CPU (`[train] save`)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cell_seeds(cell: Cell, spec_seed: int) -> dict[str, int]:
    """Seeds of a cell's task instance, initial weights and data stream: from (spec seed, replicate seed).

    Cells that differ only in task or training parameters share them (common random numbers across the grid),
    so a difference between two cells comes from the parameters, not from a different draw.
    """
    return {p: derive_seed(spec_seed, cell.train.seed, p) for p in ("task", "init", "data")}


@dataclass
class Chunk:
    """The mutable training state of one chunk (the one place in zipfind that holds state)."""

    cells: list[Cell]
    model: ModelConfig
    task: Task
    table: Any  # the task's stacked instances
    params: Params
    opt: StackedOptimizer
    data_seeds: torch.Tensor  # [M] long: each model's data seed (its draws at step t: zipfind.rng)
    active: torch.Tensor  # [M] bool: not diverged
    div_step: torch.Tensor  # [M] long: first step with a non-finite loss or gradient, -1 if none
    block: int  # models per forward/backward pass (see model_block)


def cell_probes(spec_or_seed, cell: Cell, device: str | torch.device = "cpu") -> dict[str, Any]:
    """One cell's probe sets (model dimension 1), exactly as its chunk evaluated them."""
    spec_seed = spec_or_seed if isinstance(spec_or_seed, int) else spec_or_seed.seed
    task = get_task(cell.task)
    table = task.make_table([cell.task], [cell_seeds(cell, spec_seed)["task"]], resolve_device(str(device)))
    return task.probes(table, spec_seed, cell.train.n_probe)


def model_block(cell: Cell, model: ModelConfig, device: torch.device) -> int:
    """Models per forward/backward pass: on a CPU, enough to make one [block, b, T, d] activation about 4 MiB.

    Each model's computation is independent, so passing the stack in blocks changes no result; on a CPU it keeps
    the working set in cache (measured on this 2-core machine, one thread, 32 models of the quick config: blocks
    of 4-8 gave 1.3x the model-steps/s of one pass; the small config, 35 KiB a model, was fastest unblocked;
    to redo it, time `train_step` with `Chunk.block` set by hand).
    A GPU takes the whole stack at once.
    """
    if device.type != "cpu":
        return 1 << 30
    per_model = cell.train.batch * get_task(cell.task).shape(cell.task).T * model.d_model * 4  # one [b, T, d]
    return max(1, (4 << 20) // per_model)


def setup_chunk(cells: Sequence[Cell], model: ModelConfig, spec_seed: int,
                device: str | torch.device = "cpu") -> Chunk:
    """Task tables, initial weights, optimizer and data streams of stackable cells."""
    dev = resolve_device(str(device))
    if len({chunk_key(c, model) for c in cells}) != 1:
        raise ValueError("cells of one chunk must share the task, its shape keys (zipfind.config.STACK_KEYS), "
                         "batch, steps, eval_every, n_probe and optimizer")
    seeds = [cell_seeds(c, spec_seed) for c in cells]
    task = get_task(cells[0].task)
    table = task.make_table([c.task for c in cells], [s["task"] for s in seeds], dev)
    shape = task.shape(cells[0].task)
    params = init_params(model, shape.n_in, shape.T, shape.n_out, [s["init"] for s in seeds],
                         [c.train.init_scale for c in cells], dev)
    for p in params.values():
        p.requires_grad_(True)
    col = lambda name: torch.tensor([getattr(c.train, name) for c in cells], dtype=torch.float32, device=dev)
    opt = StackedOptimizer(params, cells[0].train.optimizer, col("lr"), col("beta1"), col("beta2"),
                           col("weight_decay"), col("clip"))
    M = len(cells)
    return Chunk(list(cells), model, task, table, params, opt,
                 data_seeds=torch.tensor([s["data"] for s in seeds], dtype=torch.long, device=dev),
                 active=torch.ones(M, dtype=torch.bool, device=dev),
                 div_step=torch.full((M,), -1, dtype=torch.long, device=dev),
                 block=model_block(cells[0], model, dev))


def train_step(ch: Chunk, step: int, loss_fn: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
    """One step for every model (sample, forward, backward, update); returns the losses [M], no host sync.

    A model whose loss or gradient is not finite is marked inactive and frozen from this step on. `loss_fn`
    (default: the task's loss) may be a compiled one.
    """
    loss_fn = loss_fn or ch.task.loss
    with record_function("zipfind.sample"):  # phase labels for `zipfind bench --profile` (free when not profiling)
        batch = ch.task.train_batch(ch.data_seeds, step, ch.table, ch.cells[0].train.batch)
    M = len(ch.cells)
    losses, grads = [], [[] for _ in ch.params]
    for lo in range(0, M, ch.block):  # blocks of models: independent, so blocking changes no result
        sl = slice(lo, min(lo + ch.block, M))
        part = {k: v[sl] for k, v in ch.params.items()} if ch.block < M else ch.params
        with record_function("zipfind.forward"):
            loss = loss_fn(part, ch.model, slice_batch(batch, sl) if ch.block < M else batch)
            keep = ch.active[sl] & torch.isfinite(loss)
        with record_function("zipfind.backward"):
            for acc, g in zip(grads, torch.autograd.grad(torch.where(keep, loss, torch.zeros_like(loss)).sum(),
                                                         list(part.values()))):
                acc.append(g)
        losses.append(loss.detach())
    loss = torch.cat(losses)
    ok = torch.isfinite(loss)
    ch.div_step = torch.where(ch.active & ~ok, step, ch.div_step)
    ch.active = ch.active & ok
    with record_function("zipfind.optimizer"):
        norm = ch.opt.step([torch.cat(g) if len(g) > 1 else g[0] for g in grads], ch.active)
    ch.div_step = torch.where(ch.active & ~torch.isfinite(norm), step, ch.div_step)
    ch.active = ch.active & torch.isfinite(norm)
    return loss.detach()


def _fingerprint(cells: Sequence[Cell], model: ModelConfig, spec_seed: int, dev: torch.device) -> str:
    """What a saved training state must match to be resumed: the cells' parameters, model, seed, device type and
    data stream (a state from zipfind < 0.4, whose streams were stateful generators, is not resumed)."""
    key = {"cells": [[c.index, c.params()] for c in cells], "model": asdict(model), "seed": spec_seed,
           "device": dev.type, "data": rng.DATA_STREAM}
    return json.dumps(key, sort_keys=True)


def _load_state(path: Path, fingerprint: str, dev: torch.device) -> dict | None:
    """The saved state at `path` if it is readable and made for this chunk; else None (with a warning if a file
    was there), so the chunk starts from step 0: a state only saves time, it never changes a result."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or corrupt: torch raises several kinds
        warnings.warn(f"state: {str(path)!r} is unreadable ({type(e).__name__}); training the chunk from step 0")
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        warnings.warn(f"state: {str(path)!r} was saved for other cells; training the chunk from step 0")
        return None
    return state


def _save_state(path: Path, state: dict) -> None:
    """Write atomically (temp + rename); a failed write warns and training goes on (it only costs a resume)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    try:
        store.atomic_write(path, buf.getvalue())
    except OSError as e:
        warnings.warn(f"state: could not write {str(path)!r} ({e}); training goes on without it")


def train_chunk(cells: Sequence[Cell], model: ModelConfig, spec_seed: int, device: str | torch.device = "cpu",
                progress: Callable[[int], None] | None = None, state_path: Path | None = None) -> ChunkResult:
    """Train the cells together as one stacked model; returns their metrics as plain data.

    With `state_path`, the training state is saved there every `resume_every` steps, and a state found there
    is resumed from; the result equals an uninterrupted run's. The caller removes the file once it has the result.
    """
    t0 = time.perf_counter()
    dev = resolve_device(str(device))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    ch = setup_chunk(cells, model, spec_seed, dev)
    tr, M = cells[0].train, len(cells)
    probes = ch.task.probes(ch.table, spec_seed, tr.n_probe)
    loss_sum = torch.zeros(M, device=dev)
    n_since = 0
    records: list[tuple[int, list[str], torch.Tensor]] = []  # per checkpoint: step, measure names, [M, measures]
    ic_correct: list[torch.Tensor] = []  # per checkpoint: [M, n_probe], on the CPU
    weights: dict[int, dict[str, torch.Tensor]] = {}  # kept steps' parameters, on the CPU
    eval_s, prior_wall_s, start = 0.0, 0.0, 1
    ckpts = set(checkpoint_steps(tr.steps, tr.eval_every))
    fingerprint = _fingerprint(cells, model, spec_seed, dev)
    state = _load_state(Path(state_path), fingerprint, dev) if state_path is not None else None
    if state is not None:
        with torch.no_grad():
            for k, p in ch.params.items():
                p.copy_(state["params"][k])
        on = lambda d: {k: v.to(dev) for k, v in d.items()}
        ch.opt.t, ch.opt.m, ch.opt.v = state["opt_t"].to(dev), on(state["opt_m"]), on(state["opt_v"])
        ch.active, ch.div_step = state["active"].to(dev), state["div_step"].to(dev)
        loss_sum, n_since = state["loss_sum"].to(dev), state["n_since"]
        records, ic_correct, weights = state["records"], state["ic_correct"], state.get("weights", {})
        eval_s, prior_wall_s, start = state["eval_s"], state["wall_s"], state["step"] + 1

    def checkpoint(step: int) -> None:
        nonlocal eval_s, n_since, loss_sum
        te = time.perf_counter()
        values, correct = ch.task.evaluate(ch.params, model, probes)
        if n_since:
            values["train_loss"] = loss_sum / n_since
        values["diverged"] = (~ch.active).float()
        names = list(values)
        records.append((step, names, torch.stack([values[k].float() for k in names], 1).cpu()))  # [M, measures]
        ic_correct.append(correct.cpu())
        if tr.save == "checkpoints" or (tr.save == "final" and step == tr.steps):
            weights[step] = {k: p.detach().cpu().clone() for k, p in ch.params.items()}
        loss_sum, n_since = torch.zeros(M, device=dev), 0
        eval_s += time.perf_counter() - te

    def save(step: int) -> None:
        _save_state(Path(state_path), {
            "fingerprint": fingerprint, "step": step,
            "params": {k: p.detach() for k, p in ch.params.items()},
            "opt_t": ch.opt.t, "opt_m": ch.opt.m, "opt_v": ch.opt.v,
            "active": ch.active, "div_step": ch.div_step, "loss_sum": loss_sum, "n_since": n_since,
            "records": records, "ic_correct": ic_correct, "weights": weights,
            "eval_s": eval_s, "wall_s": prior_wall_s + time.perf_counter() - t0})

    if start == 1:
        checkpoint(0)
    for step in range(start, tr.steps + 1):
        loss = train_step(ch, step)
        loss_sum = loss_sum + torch.where(ch.active, loss, torch.full_like(loss, float("nan")))
        n_since += 1
        if step in ckpts:
            checkpoint(step)
        if state_path is not None and step % tr.resume_every == 0 and step < tr.steps:
            save(step)
        if progress is not None:
            progress(step)

    div = ch.div_step.cpu().tolist()
    ic = torch.stack(ic_correct, 1).numpy()  # [M, n_checkpoints, n_probe]
    index = [c.index for c in cells]
    metrics = pd.concat([pd.DataFrame({"cell": np.repeat(index, len(names)), "step": step,
                                       "measure": np.tile(names, M), "value": mat.numpy().reshape(-1)})
                         for step, names, mat in records], ignore_index=True)
    return ChunkResult(
        metrics=metrics,
        ic_correct={c.index: ic[m] for m, c in enumerate(cells)},
        diverged_at={c.index: (d if d >= 0 else None) for c, d in zip(cells, div)},
        wall_s=prior_wall_s + time.perf_counter() - t0,
        eval_s=eval_s,
        peak_mem_mb_per_model=torch.cuda.max_memory_allocated(dev) / M / 2**20 if dev.type == "cuda" else None,
        weights=weights,
    )
