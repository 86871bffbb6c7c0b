"""Throughput benchmark: the stacked engine against the loop a researcher would write, and against PyTorch's
model-ensembling recipe (torch.func vmap), side by side.

Every side runs full training steps (sampling, forward, backward, optimizer) on the same cells, data streams and
initial weights: the stacked side is `train.train_step` on a chunk of M models; the loop side trains M plain
`PlainTransformer` modules, each with its own `torch.optim.Adam`, one after another in a Python loop; the vmap
side (`VmapBaseline`) stacks the same modules with `torch.func.stack_module_state` and runs them as one vmapped
`functional_call` with one Adam. They are timed interleaved in one process after a warm-up, so machine noise
hits all alike.

FLOP count (`step_flops`): multiply-adds of the stacked forward, times 2 FLOPs each, times 3 for forward plus
backward; elementwise work (softmax, optimizer) is not counted. Classification, per sequence of T = 2N+1 tokens:
embedding T*D*d; each layer but the last 4*T*d*d (Q, K, V, O) + 2*T*T*d (scores, mixing); the last layer only
reads the query row: 2*T*d*d (K, V) + 2*d*d (Q, O) + 2*T*d; readout d*L (linear) or d*h + h*h + h*L (MLP).
Token task (ids are looked up, not multiplied; every position is read out): each layer 4*T*d*d + 2*T*T*d, and the
readout T*d*V.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, replace
from typing import Any, Literal, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import Cell, ModelConfig, Spec
from .tasks import get_task
from .train import Chunk, cell_seeds, setup_chunk, train_step


def forward_macs(model: ModelConfig, N: int, D: int, L: int) -> int:
    """Multiply-adds of one sequence's forward pass through the stacked engine (see module docstring)."""
    T, d = 2 * N + 1, model.d_model
    macs = T * D * d + (model.layers - 1) * (4 * T * d * d + 2 * T * T * d) + 2 * T * d * d + 2 * d * d + 2 * T * d
    h = model.mlp_hidden
    return macs + (d * L if model.readout == "linear" else d * h + h * h + h * L)


def token_forward_macs(model: ModelConfig, T: int, V: int) -> int:
    """Multiply-adds of one document's forward pass in the token task (see module docstring)."""
    d = model.d_model
    return model.layers * (4 * T * d * d + 2 * T * T * d) + T * d * V


def step_flops(model: ModelConfig, cell: Cell) -> int:
    """FLOPs of one training step of one model: 2 FLOPs per MAC, x3 for forward + backward, x batch."""
    t = cell.task
    if t.kind == "tokens":
        s = get_task(t).shape(t)
        return 6 * cell.train.batch * token_forward_macs(model, s.T, s.n_out)
    return 6 * cell.train.batch * forward_macs(model, t.N, t.D, t.L)


class PlainTransformer(nn.Module):
    """One attention-only transformer written the ordinary way (nn.Linear or nn.Embedding, SDPA): the benchmark's
    baseline. With `tokens`, inputs are token ids and every position is read out (the token task)."""

    def __init__(self, model: ModelConfig, D: int, T: int, L: int, tokens: bool = False):
        super().__init__()
        if model.layernorm or model.readout != "linear":
            raise ValueError("the loop baseline implements the default architecture (no LayerNorm, linear readout)")
        d, self.H, self.tokens = model.d_model, model.heads, tokens
        self.emb = nn.Embedding(D, d) if tokens else nn.Linear(D, d, bias=False)
        self.pos = nn.Parameter(torch.zeros(T, d))
        self.qkv = nn.ModuleList(nn.Linear(d, 3 * d, bias=False) for _ in range(model.layers))
        self.o = nn.ModuleList(nn.Linear(d, d, bias=False) for _ in range(model.layers))
        self.out = nn.Linear(d, L)

    @torch.no_grad()
    def load_stacked(self, params: dict[str, torch.Tensor], m: int) -> "PlainTransformer":
        """Copy model m of a stacked parameter dict (stacked weights are [in, out]; nn.Linear's are [out, in])."""
        self.emb.weight.copy_(params["emb"][m] if self.tokens else params["emb"][m].T)
        self.pos.copy_(params["pos"][m])
        for l, (qkv, o) in enumerate(zip(self.qkv, self.o)):
            qkv.weight.copy_(torch.cat([params[f"{n}{l}"][m] for n in "qkv"], 1).T)
            o.weight.copy_(params[f"o{l}"][m].T)
        self.out.weight.copy_(params["out_w"][m].T)
        self.out.bias.copy_(params["out_b"][m])
        return self

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, T = tokens.shape[:2]
        h = self.emb(tokens) + self.pos  # [b, T, d]
        for qkv, o in zip(self.qkv, self.o):
            q, k, v = qkv(h).view(b, T, 3, self.H, -1).permute(2, 0, 3, 1, 4)  # 3 x [b, H, T, dh]
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [b, H, T, dh]
            h = h + o(z.transpose(1, 2).reshape(b, T, -1))
        return self.out(h) if self.tokens else self.out(h[:, -1])  # [b, T, V] or [b, L]

    @staticmethod
    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy: on the query label, or on every position that has a next token (target -1: none)."""
        return F.cross_entropy(logits.flatten(0, -2).float(), target.flatten(), ignore_index=-1)


@dataclass
class LoopBaseline:
    """M plain models with their own Adam, sampler table and data seed, trained one at a time."""

    task: Any  # zipfind.tasks.Task: the data path
    modules: list[PlainTransformer]
    opts: list[torch.optim.Optimizer]
    tables: list[Any]
    seeds: list[torch.Tensor]  # [1] long each: a model's data seed
    batch: int
    t: int = 0  # steps taken

    def step(self, dtype: torch.dtype | None = None) -> list[torch.Tensor]:
        losses = []
        self.t += 1
        for net, opt, table, seed in zip(self.modules, self.opts, self.tables, self.seeds):
            batch = self.task.train_batch(seed, self.t, table, self.batch)
            with _autocast(seed.device, dtype):
                loss = net.loss(net(batch.tokens[0]), batch.target[0])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        return losses


@dataclass
class VmapBaseline:
    """PyTorch's own model-ensembling recipe, the strongest thing a peer would write: the M plain models' parameters
    stacked by `torch.func.stack_module_state`, one `vmap` over `functional_call` for the forward, one backward, and
    one `torch.optim.Adam` over the stacked tensors (so one learning rate for all: the bench cells share theirs).
    Data come from zipfind's own vectorised sampler, so the comparison is of the model computation alone."""

    base: PlainTransformer  # on the meta device: the architecture functional_call runs
    params: dict[str, torch.Tensor]  # name -> [M, ...]
    opt: torch.optim.Optimizer
    chunk: Chunk  # its task table and data seeds: the data path
    t: int = 0  # steps taken

    def step(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        from torch.func import functional_call, vmap

        self.t += 1
        ch = self.chunk
        batch = ch.task.train_batch(ch.data_seeds, self.t, ch.table, ch.cells[0].train.batch)

        def loss_one(p, tokens, target):
            return self.base.loss(functional_call(self.base, p, (tokens,)), target)

        with _autocast(ch.data_seeds.device, dtype):
            losses = vmap(loss_one)(self.params, batch.tokens, batch.target)  # [M]
        self.opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        self.opt.step()
        return losses.detach()


def make_vmap(loop: LoopBaseline, cells: Sequence[Cell], model: ModelConfig, spec_seed: int,
              device: torch.device) -> VmapBaseline:
    """The vmap ensemble of the loop's modules (same initial weights), on its own copy of the chunk's data streams."""
    import copy

    from torch.func import stack_module_state

    lrs = {c.train.lr for c in cells}
    if len(lrs) > 1:
        raise ValueError(f"the vmap baseline takes one learning rate; the bench cells have {sorted(lrs)}")
    c = cells[0].train
    params, _ = stack_module_state(loop.modules)
    base = copy.deepcopy(loop.modules[0]).to("meta")
    opt = torch.optim.Adam(params.values(), lr=c.lr, betas=(c.beta1, c.beta2), weight_decay=c.weight_decay)
    return VmapBaseline(base, params, opt, setup_chunk(cells, model, spec_seed, device))


def make_loop(cells: Sequence[Cell], model: ModelConfig, spec_seed: int, chunk: Chunk) -> LoopBaseline:
    """The loop baseline on the same cells, initial weights and data streams as `chunk`."""
    dev = chunk.data_seeds.device
    mods, opts, tables, seeds = [], [], [], []
    for m, c in enumerate(cells):
        s = cell_seeds(c, spec_seed)
        shape = chunk.task.shape(c.task)
        net = PlainTransformer(model, shape.n_in, shape.T, shape.n_out, tokens=c.task.kind == "tokens").to(dev)
        net.load_stacked(chunk.params, m)
        mods.append(net)
        opts.append(torch.optim.Adam(net.parameters(), lr=c.train.lr, betas=(c.train.beta1, c.train.beta2),
                                     weight_decay=c.train.weight_decay))
        table = chunk.task.make_table([c.task], [s["task"]], dev)
        tables.append(table)
        seeds.append(torch.tensor([s["data"]], dtype=torch.long, device=dev))
    return LoopBaseline(chunk.task, mods, opts, tables, seeds, cells[0].train.batch)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else torch.autocast(device.type, enabled=False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, repeats: int = 5) -> float:
    """Measured fp32 matmul throughput of the device in GFLOP/s (a large square matmul, best of `repeats`)."""
    n = 8192 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    _sync(device)
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(3 if device.type == "cpu" else 10):
            a @ b
        _sync(device)
        best = min(best, (time.perf_counter() - t) / (3 if device.type == "cpu" else 10))
    return 2 * n**3 / best / 1e9


def bench_cells(spec: Spec, M: int) -> list[Cell]:
    """M cells cycling through the spec's grid (different alpha, B, ...) with distinct replicate seeds."""
    base = spec.expand()
    return [replace(base[i % len(base)], index=i, train=replace(base[i % len(base)].train, seed=1000 + i))
            for i in range(M)]


def _timed(fn, device: torch.device, n: int) -> float:
    _sync(device)
    t = time.perf_counter()
    for _ in range(n):
        fn()
    _sync(device)
    return time.perf_counter() - t


def run_bench(spec: Spec, models: Sequence[int], device: torch.device, *, repeats: int = 3,
              min_time: float = 0.5, compile: bool = False, dtype: Literal["fp32", "bf16"] = "fp32",
              loop: bool = True, config_name: str | None = None, profile: bool = False) -> list[dict[str, Any]]:
    """Benchmark records, one per M (see `zipfind bench --json`)."""
    amp = torch.bfloat16 if dtype == "bf16" else None
    task = get_task(spec.task)
    loss_fn = torch.compile(task.loss) if compile else task.loss
    peak = matmul_peak(device)
    records = []
    for M in models:
        rec = _bench_one(spec, M, device, amp, loss_fn, loop, repeats, min_time, profile)
        flops = step_flops(spec.model, bench_cells(spec, 1)[0])
        records.append({
            "config": config_name or spec.name, "device": _device_name(device), "M": M, "dtype": dtype,
            "compile": compile, **rec, "flops_per_model_step": flops,
            "achieved_gflops": rec["stacked_model_steps_per_s"] * flops / 1e9, "peak_gflops": peak,
            "peak_fraction": rec["stacked_model_steps_per_s"] * flops / 1e9 / peak,
        })
    return records


def _bench_one(spec: Spec, M: int, device: torch.device, amp, loss_fn, loop: bool, repeats: int,
               min_time: float, profile: bool = False) -> dict[str, Any]:
    """Throughputs of the stacked engine and the loop at one M, interleaved; memory of the stacked side alone."""
    cells = bench_cells(spec, M)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    chunk = setup_chunk(cells, spec.model, spec.seed, device)
    step_no = [0]

    def stacked() -> None:
        step_no[0] += 1
        with _autocast(device, amp):
            train_step(chunk, step_no[0], loss_fn)

    def sampling() -> None:
        chunk.task.train_batch(chunk.data_seeds, step_no[0], chunk.table, cells[0].train.batch)

    for _ in range(2):  # warm-up (and compilation)
        stacked()
    _sync(device)
    # peak memory: CUDA's allocator statistics; a CPU has no such record (NaN rather than a guess)
    mem = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else float("nan")
    baseline = make_loop(cells, spec.model, spec.seed, chunk) if loop else None
    ensemble = make_vmap(make_loop(cells, spec.model, spec.seed, chunk), cells, spec.model, spec.seed, device) \
        if loop else None

    def looped() -> None:
        baseline.step(amp)

    def vmapped() -> None:
        ensemble.step(amp)

    n_s = max(2, math.ceil(min_time / max(_timed(stacked, device, 1), 1e-6)))
    if loop:  # each peer warmed up, then sized to min_time a round
        looped()
        vmapped()
        n_l = max(1, math.ceil(min_time / max(_timed(looped, device, 1), 1e-6)))
        n_v = max(1, math.ceil(min_time / max(_timed(vmapped, device, 1), 1e-6)))
    st, lp, vm, ds = [], [], [], []
    for _ in range(repeats):  # interleaved, so machine noise hits every side alike
        st.append(M * n_s / _timed(stacked, device, n_s))
        ds.append(_timed(sampling, device, n_s) / (M * n_s / st[-1]))
        if loop:
            lp.append(M * n_l / _timed(looped, device, n_l))
            vm.append(M * n_v / _timed(vmapped, device, n_v))
    s_med = statistics.median(st)
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    spread = lambda xs: (max(xs) - min(xs)) / statistics.median(xs) if xs else float("nan")  # noqa: E731
    return {"stacked_model_steps_per_s": s_med, "stacked_spread": spread(st),
            "loop_model_steps_per_s": med(lp), "loop_spread": spread(lp), "ratio": s_med / med(lp),
            "vmap_model_steps_per_s": med(vm), "vmap_spread": spread(vm), "ratio_vs_vmap": s_med / med(vm),
            "data_share": statistics.median(ds), "peak_mem_per_model_mb": mem / M / 2**20,
            **({"profile": profile_phases(stacked, device)} if profile else {})}


PHASES = ("sample", "forward", "backward", "optimizer")
"""The labelled phases of `train.train_step` (torch.profiler record_function "zipfind.<phase>")."""


def profile_phases(step_fn, device: torch.device, n: int = 5) -> dict[str, float]:
    """Where a training step's time goes: each phase's share of the step's wall time, over n steps under
    torch.profiler (CPU time of the phase's labelled region; on CUDA its device time), and "other" for the rest
    (Python, concatenating the blocks' gradients, the profiler's own overhead). Profiling slows the step, so shares,
    not seconds, are reported."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    step_fn()
    _sync(device)
    t = time.perf_counter()
    with profile(activities=acts) as prof:
        for _ in range(n):
            step_fn()
        _sync(device)
    wall_us = (time.perf_counter() - t) * 1e6
    spent = {e.key.removeprefix("zipfind."): (e.device_time_total if device.type == "cuda" else e.cpu_time_total)
             for e in prof.key_averages() if e.key.startswith("zipfind.")}
    out = {ph: spent.get(ph, 0.0) / wall_us for ph in PHASES}
    out["other"] = max(0.0, 1.0 - sum(out.values()))
    return out


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
