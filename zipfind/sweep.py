"""Grid sweeps: chunk the cells of a spec, train the chunks with an executor, store them, compute onsets.

Executors: `local` (chunks one after another on one device; with several CUDA devices, one worker thread per
device) and `ray` (each chunk a Ray task: one GPU on GPU clusters, else `cpus_per_task` CPUs). A cell's
randomness depends only on (spec seed, cell), so results do not depend on the executor or the chunking.
A finished chunk is committed by the manifest update that follows its files; a rerun skips committed chunks.
"""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import pandas as pd
import torch

from . import store
from .config import Cell, ModelConfig, Spec
from .onset import EstimatorName, onsets_table
from .rng import DATA_STREAM
from .tasks import get_task
from .model import param_shapes
from .train import checkpoint_steps, chunk_key, resolve_device, train_chunk

Executor = Literal["local", "ray"]
Progress = Callable[[str, dict[str, Any]], None]  # (event, fields): plan, retrain, start, chunk_start, step, chunk_done


def plan_chunks(cells: Sequence[Cell], model: ModelConfig, max_models: int) -> list[list[int]]:
    """Group stackable cells (equal chunk keys, in order of first appearance) into chunks of <= max_models."""
    groups: dict[tuple, list[int]] = {}
    for c in cells:
        groups.setdefault(chunk_key(c, model), []).append(c.index)
    return [g[i : i + max_models] for g in groups.values() for i in range(0, len(g), max_models)]


def model_bytes(cell: Cell, model: ModelConfig) -> int:
    """Estimated peak bytes one model needs while training: the task's upper bound (zipfind.tasks.Task)."""
    return get_task(cell.task).model_bytes(cell, model)


def default_max_models(cells: Sequence[Cell], model: ModelConfig, device: torch.device) -> int:
    """As many models as fit in half of the device's free memory (CPU: capped at 64 for resumable chunks)."""
    need = max(model_bytes(c, model) for c in cells)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cap = 4096
    else:
        free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        cap = 64
    return max(1, min(cap, int(0.5 * free // need)))


@dataclass(frozen=True)
class SweepSummary:
    run_dir: Path
    n_cells: int
    n_chunks: int
    ran_chunks: int
    skipped_chunks: int
    wall_s: float
    onsets: pd.DataFrame


def _train_task(cells: list[Cell], model: ModelConfig, spec_seed: int, device: str, threads: int | None,
                state_path: Path | None = None):
    """What a Ray worker runs: one chunk, returned as plain data."""
    if threads:
        torch.set_num_threads(threads)
    return train_chunk(cells, model, spec_seed, device, state_path=state_path)


def run_sweep(spec: Spec, out: str | Path, *, device: str = "auto", executor: Executor = "local",
              max_models: int | None = None, force: bool = False, ray_address: str | None = None,
              cpus_per_task: int = 1, threads: int | None = None, progress: Progress | None = None) -> SweepSummary:
    """Train every unfinished chunk of the spec into `out`, then write the onsets table.

    threads: torch threads of a local sweep (default: torch's setting, left as the caller has it; the CLI passes
    `available_cores`)."""
    t0 = time.perf_counter()
    out = Path(out)
    emit = progress or (lambda event, fields: None)
    if executor == "local" and threads is not None:
        torch.set_num_threads(threads)
    plan = plan_sweep(spec, out, device=device, max_models=max_models)
    emit("plan", plan)
    spec, dev = plan["spec"], plan["device"]
    with store.run_lock(out):
        return _locked_sweep(spec, spec.expand(), plan["max_models_setting"], out, t0, dev, executor, force,
                             ray_address, cpus_per_task, emit)


def plan_sweep(spec: Spec, out: str | Path, *, device: str = "auto", max_models: int | None = None) -> dict[str, Any]:
    """What a sweep will do and cost, before anything is written: its chunks (the stored plan when resuming), the
    memory check (zipfind.sweep.check_resources), the weights' disk, and the time and memory measured by a short
    calibration on the device (`calibrate`). `zipfind sweep --dry-run` prints it; a sweep prints it first."""
    out = Path(out)
    dev = resolve_device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise store.RunError("device: 'cuda' is not available on this machine; use --device cpu or auto")
    spec = store.resume_spec(out, spec)
    cells = spec.expand()
    mm = max_models or default_max_models(cells, spec.model, dev)
    stored = _stored_plan(out, spec)
    chunks = stored or plan_chunks(cells, spec.model, mm)
    info = check_resources(cells, chunks, spec.model, dev)  # before anything is allocated or written
    return {**info, **calibrate(cells, chunks, spec.model, spec.seed, dev), "plan": chunks, "resumed": bool(stored),
            "spec": spec, "device": dev, "max_models_setting": mm, "threads": torch.get_num_threads()}


def available_cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup (v2) CPU quota if one is set (as
    in containers and Ray or Slurm workers), so that several sweeps side by side do not oversubscribe."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def available_bytes(device: torch.device) -> int:
    """Free memory of the training device (host RAM for a CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def check_resources(cells: Sequence[Cell], chunks: Sequence[Sequence[int]], model: ModelConfig,
                    device: torch.device) -> dict[str, Any]:
    """The plan's memory, estimated before anything is allocated (model_bytes, an upper bound); RunError naming
    what does not fit, how much it needs and what to change. Returns the plan's numbers."""
    free = available_bytes(device)
    gb = lambda b: f"{b / 2**30:.1f} GB"  # noqa: E731
    worst = max(cells, key=lambda c: model_bytes(c, model))
    one = model_bytes(worst, model)
    if one > free:
        t, r = worst.task, worst.train
        raise store.RunError(
            f"cell {worst.index}: one model needs about {gb(one)} (K = {t.K}, batch = {r.batch}, n_probe = "
            f"{r.n_probe}) but {device} has {gb(free)} free; reduce K, batch or n_probe")
    need = max(sum(model_bytes(cells[i], model) for i in ch) for ch in chunks)
    if need > free:
        fit = max(1, int(free // one))
        raise store.RunError(f"--max-models: a chunk of {max(len(c) for c in chunks)} models needs about {gb(need)} "
                             f"but {device} has {gb(free)} free; use --max-models {fit} or fewer")
    return {"cells": len(cells), "chunks": len(chunks), "max_models": max(len(c) for c in chunks),
            "chunk_bytes": need, "free_bytes": free, "weights_bytes": sum(weights_disk_bytes(c, model) for c in cells)}


def weights_disk_bytes(cell: Cell, model: ModelConfig) -> int:
    """Bytes the run directory keeps of one cell's weights under its `[train] save` (float32, every parameter at
    every kept step: the final one, or every evaluation checkpoint)."""
    if cell.train.save == "none":
        return 0
    s = get_task(cell.task).shape(cell.task)
    n = sum(math.prod(shape) for shape, _ in param_shapes(model, s.n_in, s.T, s.n_out).values())
    kept = len(checkpoint_steps(cell.train.steps, cell.train.eval_every)) if cell.train.save == "checkpoints" else 1
    return 4 * n * kept


def _stored_plan(out: Path, spec: Spec) -> list[list[int]] | None:
    """The chunk plan a resumed run keeps (its manifest's), or None for a new or unreadable run directory."""
    try:
        if store.results_key(store.read_spec(out)) == store.results_key(spec):
            return [c["cells"] for c in store.read_manifest(out)["chunks"]]
    except (store.RunError, OSError, ValueError):
        pass
    return None


def _storage_bytes(*objs: Any) -> int:
    """Bytes of the distinct tensor storages reachable from tensors, dicts, lists and dataclasses (views and
    expanded probe sets count once)."""
    import dataclasses

    seen: dict[int, int] = {}

    def walk(o: Any) -> None:
        if isinstance(o, torch.Tensor):
            st = o.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)
        elif dataclasses.is_dataclass(o):
            for f in dataclasses.fields(o):
                walk(getattr(o, f.name))

    for o in objs:
        walk(o)
    return sum(seen.values())


def calibrate(cells: Sequence[Cell], chunks: Sequence[Sequence[int]], model: ModelConfig, spec_seed: int,
              device: torch.device, n_models: int = 8, n_steps: int = 3) -> dict[str, float]:
    """The plan's cost, measured on the device with up to n_models models of its largest chunk (after a warm-up):
    seconds per model-step of training and per model-checkpoint of evaluation, scaled to every chunk's cells,
    steps and checkpoints (est_s = train_s + eval_s), and bytes_per_model: what one model holds while it trains —
    on CUDA the allocator's peak over a step and an evaluation; on a CPU its parameters with their gradients and
    Adam moments, the activations autograd saves for the backward, its probe sets and its task table."""
    from .train import setup_chunk, train_step

    group = [cells[i] for i in max(chunks, key=len)[:n_models]]
    n = len(group)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ch = setup_chunk(group, model, spec_seed, device)
    probes = ch.task.probes(ch.table, spec_seed, group[0].train.n_probe)

    def timed(fn, reps: int) -> float:
        fn()  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - t) / reps

    step_s = timed(lambda: train_step(ch, 1), n_steps) / n
    eval_s = timed(lambda: ch.task.evaluate(ch.params, model, probes), 1) / n
    if device.type == "cuda":
        per_model = torch.cuda.max_memory_allocated(device) / n
    else:
        saved = [0]

        def pack(t: torch.Tensor) -> torch.Tensor:
            saved[0] += t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            ch.task.loss(ch.params, model, ch.task.train_batch(ch.data_seeds, 1, ch.table, cells[0].train.batch))
        per_model = (4 * _storage_bytes(ch.params) + saved[0] + _storage_bytes(probes, ch.table)) / n
    train_s = sum(step_s * cells[i].train.steps for c in chunks for i in c)
    evals = sum(eval_s * len(checkpoint_steps(cells[i].train.steps, cells[i].train.eval_every))
                for c in chunks for i in c)
    return {"est_s": train_s + evals, "train_s": train_s, "eval_s": evals, "bytes_per_model": per_model}


def _locked_sweep(spec, cells, mm, out, t0, dev, executor, force, ray_address, cpus_per_task, emit) -> SweepSummary:
    meta = {"device": str(dev), "torch": torch.__version__, "executor": executor, "threads": torch.get_num_threads()}
    manifest = store.prepare_run(out, spec, plan_chunks(cells, spec.model, mm), meta, force)
    chunks = [c["cells"] for c in manifest["chunks"]]
    bad = store.verify_chunks(out, manifest)
    for i, problems in bad.items():  # committed chunks whose files no longer verify: retrain exactly those
        manifest["chunks"][i]["status"] = "pending"
        emit("retrain", {"chunk": i, "problems": problems})
    todo = [i for i in range(len(chunks)) if i not in store.done_chunks(manifest)]
    emit("start", {"chunks": len(chunks), "done": len(chunks) - len(todo)})
    lock = threading.Lock()

    def commit(i: int, res, where: str) -> None:
        info = {"wall_s": round(res.wall_s, 3), "eval_s": round(res.eval_s, 3), "device": where,
                "peak_mem_mb_per_model": res.peak_mem_mb_per_model,
                "diverged": {str(c): s for c, s in res.diverged_at.items() if s is not None}}
        with lock:
            store.save_chunk(out, manifest, i, res.metrics, res.ic_correct, info, res.weights)
            store.state_path(out, i).unlink(missing_ok=True)  # committed: its training state is no longer needed
        emit("chunk_done", {"chunk": i, **info})

    if executor == "ray":
        _run_ray(spec, cells, chunks, todo, dev, ray_address, cpus_per_task, commit, emit, out.resolve())
    else:
        devices = ([torch.device("cuda", k) for k in range(torch.cuda.device_count())]
                   if dev.type == "cuda" and dev.index is None and torch.cuda.device_count() > 1 else [dev])

        def work(i: int, where: torch.device) -> None:
            group = [cells[c] for c in chunks[i]]
            emit("chunk_start", {"chunk": i, "cells": len(group), "steps": group[0].train.steps})
            res = train_chunk(group, spec.model, spec.seed, where, progress=lambda s: emit("step", {"step": s}),
                              state_path=store.state_path(out, i))
            commit(i, res, str(where))

        if len(devices) == 1:
            for i in todo:
                work(i, devices[0])
        else:
            with ThreadPoolExecutor(len(devices)) as pool:  # one worker per device, chunks dealt round-robin
                lanes = [todo[k :: len(devices)] for k in range(len(devices))]
                list(pool.map(lambda k: [work(i, devices[k]) for i in lanes[k]], range(len(devices))))

    onsets = compute_onsets(out)
    manifest["wall_s"] = round(sum(c.get("wall_s", 0.0) for c in manifest["chunks"]), 3)
    store.write_json(manifest, out / "manifest.json")
    return SweepSummary(out, len(cells), len(chunks), len(todo), len(chunks) - len(todo),
                        time.perf_counter() - t0, onsets)


def _run_ray(spec, cells, chunks, todo, dev, address, cpus_per_task, commit, emit, out) -> None:
    try:
        import ray
    except ImportError:
        raise store.RunError("executor: 'ray' needs Ray, which is not installed; pip install 'zipfind[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        gpu = dev.type == "cuda"
        task = ray.remote(num_gpus=1 if gpu else 0, num_cpus=0 if gpu else cpus_per_task)(_train_task)
        pending = {}
        for i in todo:
            pending[task.remote([cells[c] for c in chunks[i]], spec.model, spec.seed,
                                "cuda" if gpu else "cpu", None if gpu else cpus_per_task,
                                store.state_path(out, i))] = i
            emit("chunk_start", {"chunk": i, "cells": len(chunks[i]), "steps": cells[chunks[i][0]].train.steps})
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready[0])
            commit(i, ray.get(ready[0]), "ray:" + ("cuda" if gpu else "cpu"))
    finally:
        if started:
            ray.shutdown()


def compute_onsets(run_dir: str | Path, measure: str = "ic_acc", estimator: EstimatorName = "threshold",
                   write: bool = True) -> pd.DataFrame:
    """The onsets table of a run directory from its stored metrics (no retraining); written to onsets.parquet."""
    run = store.load(run_dir)
    if run.metrics.empty:
        raise store.RunError(f"run directory: {str(run_dir)!r} has no finished chunks yet; run `zipfind sweep`")
    done = run.cells[run.cells.cell.isin(run.metrics.cell.unique())]
    table = onsets_table(run.metrics, done, run.ic_correct(), measure=measure, estimator=estimator,
                         seed=run.spec.seed)
    if write:
        store.write_parquet(table, Path(run_dir) / "onsets.parquet")
    return table


def repair(run_dir: str | Path, max_models: int = 64) -> dict[str, Any]:
    """Rebuild a missing or corrupted manifest from spec.toml and the chunk files that verify (readable, every
    cell's record complete): those become committed chunks (renumbered from 0), the rest of the grid is planned
    into pending chunks, and chunk files that do not verify are removed. Returns the new manifest."""
    run_dir = Path(run_dir)
    with store.run_lock(run_dir):
        spec = store.read_spec(run_dir)
        cells = spec.expand()
        found: list[tuple[list[Path], list[int]]] = []  # per chunk that verifies: its files, its cells
        for pq in sorted((run_dir / "metrics").glob("chunk-*.parquet")):
            npz = pq.with_suffix(".npz")
            wts = store.weights_path(run_dir, int(pq.stem.split("-")[1]))
            try:
                df = pd.read_parquet(pq)
                with np.load(npz) as z:
                    keys = sorted(int(k.split("_")[1]) for k in z.files)
                members = sorted(int(c) for c in df["cell"].unique())
                complete = all(0 <= c < len(cells) and df.loc[df.cell == c, "step"].max() == cells[c].train.steps
                               for c in members)
                if spec.train.save != "none":  # the chunk's weights must be there and be this chunk's
                    complete &= store.weights_cells(wts) == members
            except Exception:  # unreadable: not a chunk that verifies
                members, keys, complete = [], [None], False
            files = [pq, npz] + ([wts] if spec.train.save != "none" else [])
            if complete and members == keys:
                found.append((files, members))
            else:
                for f in (pq, npz, wts):
                    f.unlink(missing_ok=True)
        claimed = {c for _, m in found for c in m}
        rest = [c for c in cells if c.index not in claimed]
        chunks: list[dict[str, Any]] = []
        for i, (srcs, members) in enumerate(found):
            files = {}
            for src, dst in zip(srcs, (store.chunk_path(run_dir, i, "parquet"), store.chunk_path(run_dir, i, "npz"),
                                       store.weights_path(run_dir, i))):
                if src != dst:
                    os.replace(src, dst)
                files[str(dst.relative_to(run_dir))] = store._digest(dst.read_bytes())
            chunks.append({"chunk": i, "cells": members, "status": "done", "files": files, "repaired": True})
        for group in plan_chunks(rest, spec.model, max_models):
            chunks.append({"chunk": len(chunks), "cells": group, "status": "pending"})
        manifest = {"schema": store.SCHEMA, "spec_name": spec.name, "zipfind": store.__version__,
                    "data_stream": DATA_STREAM,  # the chunks that verify are taken as this zipfind's
                    "repaired": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resumed": 0, "n_cells": len(cells),
                    "chunks": chunks}
        store.write_json(manifest, run_dir / "manifest.json")
    return manifest

