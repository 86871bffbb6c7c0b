"""The classification task: Zipf class tables, bursty in-context classification sequences, their probe sets and
measures, batched over M models.

Every model m owns a task instance (class means, label vectors, Zipf class probabilities; K padded with
zero-probability classes), a context law ("iid" or "distinct" slots, see `sample`) and a data seed. Per step,
`draw` makes every model's normals and float64 uniforms in one counter-based call per stream (zipfind.rng: a pure
function of the model's seed, the step and the index); everything after it (inverse-CDF class sampling, sampling
without replacement, shuffles, token assembly) is vectorised over [M, batch]. A model's sequences therefore depend
only on its own configuration, seed and step, never on the chunk it is stacked in.

Sequence layout (T = 2N + 1 tokens of D content dims): x_1, l_1, ..., x_N, l_N, x_q. Items are
x = (mu_k + eps * eta) / sqrt(1 + eps^2) with mu_k, eta ~ N(0, I/D); labels are fixed random vectors ~ N(0, I/D);
class k (0-based Zipf rank) has label k mod L. Position codes are added by the model (learned embedding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import rng
from ..config import Cell, ModelConfig, TaskConfig
from ..law import ZipfLaw, bursty_layout, derive_seed, distinct, make_law, slots, without, zipf_probs
from ..measures import copy_scores, head_scores
from ..model import Params, forward
from .base import Shape, Task

Kind = Literal["train", "ic", "ic2", "iw"]
EVAL_KINDS: tuple[Kind, ...] = ("ic", "ic2", "iw")


@dataclass(frozen=True)
class TaskTable:
    """Stacked task instances of M models, on the training device."""

    means: Tensor  # [M, K_max, D] class means (zero rows beyond each model's K)
    labels: Tensor  # [M, L, D] label vectors
    law: ZipfLaw  # class probabilities and context laws
    B: Tensor  # [M] long copies per class in a bursty context (0: none)
    p_bursty: Tensor  # [M]
    p_novel: Tensor  # [M]
    eps: Tensor  # [M]
    N: int
    L: int
    D: int
    novel_models: Tensor | None  # [k] long: the models with p_novel > 0, on the device (None: no model)

    @property
    def M(self) -> int:
        return self.means.shape[0]

    @property
    def probs(self) -> Tensor:
        return self.law.probs  # [M, K_max] float64


def make_table(tasks: Sequence[TaskConfig], seeds: Sequence[int], device: torch.device | str) -> TaskTable:
    """Draw each model's class means and label vectors from its own seed (on the CPU, so every device agrees)."""
    N, L, D = tasks[0].N, tasks[0].L, tasks[0].D
    assert all((t.N, t.L, t.D) == (N, L, D) for t in tasks), "stacked tasks must share N, L, D"
    K_max = max(t.K for t in tasks)
    means = torch.zeros(len(tasks), K_max, D)
    labels = torch.empty(len(tasks), L, D)
    for m, (t, s) in enumerate(zip(tasks, seeds)):
        g = torch.Generator().manual_seed(s)
        means[m, : t.K] = torch.randn(t.K, D, generator=g) / math.sqrt(D)
        labels[m] = torch.randn(L, D, generator=g) / math.sqrt(D)
    col = lambda name, dt=torch.float32: torch.tensor([getattr(t, name) for t in tasks], dtype=dt, device=device)
    K = col("K", torch.long)
    law = make_law(zipf_probs(col("alpha", torch.float64), K, K_max), K, [t.context for t in tasks])
    return TaskTable(means=means.to(device), labels=labels.to(device), law=law, B=col("B", torch.long),
                     p_bursty=col("p_bursty"), p_novel=col("p_novel"), eps=col("eps"), N=N, L=L, D=D,
                     novel_models=_novel_models(tasks, device))


def _novel_models(tasks: Sequence[TaskConfig], device: torch.device | str) -> Tensor | None:
    """Indices [k] of the models that draw fresh classes (p_novel > 0), on the device; None if none does."""
    idx = [m for m, t in enumerate(tasks) if t.p_novel > 0]
    return torch.tensor(idx, dtype=torch.long, device=device) if idx else None


@dataclass(frozen=True)
class Draws:
    """The random numbers behind one batch; [M, b, ...]."""

    item: Tensor  # [M, b, N+1, D] within-class noise eta (times sqrt(D)), standard normal
    u: Tensor  # [M, b, 3N+4] float64 uniforms
    novel: Tensor | None  # [M, b, N, D] fresh class means (times sqrt(D)); None when no model needs them
    lab: Tensor | None  # [M, b, L] keys of a random label permutation for fresh classes


ITEM, UNIFORM, NOVEL, LABEL = range(4)
"""The counter streams (zipfind.rng) of a step's draws."""


def make_draws(seeds: Tensor, step: int, b: int, N: int, D: int, L: int, novel: Tensor | None) -> Draws:
    """Step `step`'s draws of every model, model m's from its seed seeds[m] only (zipfind.rng: one
    counter-based call per stream for the whole stack). Fresh-class draws are made for the models in `novel`
    ([k] long indices on seeds' device) only: zeros elsewhere, None if `novel` is None. No host sync."""
    item = rng.normal(seeds, step, ITEM, (b, N + 1, D))
    u = rng.uniform(seeds, step, UNIFORM, (b, 3 * N + 4))
    if novel is None:
        return Draws(item=item, u=u, novel=None, lab=None)
    M, every = seeds.shape[0], novel.shape[0] == seeds.shape[0]
    part = seeds if every else seeds.index_select(0, novel)
    fresh = rng.normal(part, step, NOVEL, (b, N, D))
    lab = rng.uniform(part, step, LABEL, (b, L))  # float64: ties (which sort kernels order differently) ~never
    if not every:
        fresh = fresh.new_zeros(M, *fresh.shape[1:]).index_copy_(0, novel, fresh)
        lab = lab.new_zeros(M, *lab.shape[1:]).index_copy_(0, novel, lab)
    return Draws(item=item, u=u, novel=fresh, lab=lab)


def draw(seeds: Tensor, step: int, table: TaskTable, b: int) -> Draws:
    """One training batch's draws for every model: seeds [M] int64 data seeds, on the table's device."""
    return make_draws(seeds, step, b, table.N, table.D, table.L, table.novel_models)


def probe_draws(seed: int, n: int, table: TaskTable) -> Draws:
    """One fixed probe set of draws shared by every model (drawn on the CPU, so the same on any device)."""
    z = make_draws(torch.tensor([seed]), 0, n, table.N, table.D, table.L, torch.zeros(1, dtype=torch.long))
    dev = table.means.device
    return Draws(*(x.to(dev).expand(table.M, *x.shape[1:]) for x in (z.item, z.u, z.novel, z.lab)))


@dataclass(frozen=True)
class Batch:
    tokens: Tensor  # [M, b, T, D] content of every token
    target: Tensor  # [M, b] label index of the query
    ctx_labels: Tensor  # [M, b, N] label index of each context pair
    classes: Tensor  # [M, b, N+1] class of each item, query last (fresh classes: -1 - slot)

    @property
    def ctx_match(self) -> Tensor:
        """[M, b, N] bool: the context item is of the query's class."""
        return self.classes[..., :-1] == self.classes[..., -1:]


def sample(table: TaskTable, z: Draws, kind: Kind = "train") -> Batch:
    """Build sequences of one kind from draws.

    train: bursty with probability p_bursty (N/B class slots, B copies each, shuffled; the query's class is a
      uniformly chosen slot), else items and query i.i.d. from p; with probability p_novel the classes are
      fresh (means drawn anew, distinct random labels) in the bursty layout with B' = max(B, 1). The slots
      follow the model's context law: "iid" draws them i.i.d. from p (two slots may share a class; the query's
      class then follows p: the law of Reddy's and Chan et al.'s code), "distinct" by successive sampling
      without replacement (the query's class is then flatter than p; zipfind < 0.2's law).
    ic: fresh classes, N distinct in the context (B' = 1), random labels, query class in the context: pure ICL.
    ic2: known classes, N distinct from p (B' = 1), query in the context, labels shifted to (k+1) mod L.
    iw: items and query from p, the query's class never in the context: pure IWL.
    """
    M, b, N, L = table.M, z.u.shape[1], table.N, table.L
    dev = table.means.device
    u = z.u
    u_bursty, u_novel, u_dist, u_q, u_perm, u_iid = u[..., 0], u[..., 1], u[..., 2 : 2 + N], \
        u[..., 2 + N], u[..., 3 + N : 3 + 2 * N], u[..., 3 + 2 * N : 4 + 3 * N]

    one = torch.ones(M, dtype=torch.long, device=dev)
    Bp = one if kind in ("ic", "ic2") else torch.maximum(table.B, one)  # [M] copies per class
    ctx_slot, q_slot = bursty_layout(Bp, N, u_perm, u_q)  # [M, b, N], [M, b]

    if kind == "iw":
        q_cls = without(table.law, u_iid[..., N:], None)  # [M, b, 1]
        ctx_cls = without(table.law, u_iid[..., :N], q_cls)  # [M, b, N]
        is_bursty = is_novel = torch.zeros(M, b, dtype=torch.bool, device=dev)
        iid_cls = torch.cat([ctx_cls, q_cls], -1)
    else:
        if kind == "ic":
            dist = torch.zeros_like(ctx_slot)  # fresh classes: slot ids only
        elif kind == "ic2":
            dist = distinct(table.law, u_dist)  # N distinct known classes, under either law
        else:
            dist = slots(table.law, u_dist)  # [M, b, N] class of each slot (the first N/B are used)
        iid_cls = without(table.law, u_iid, None) if kind == "train" else dist[..., :1].expand(M, b, N + 1)
        if kind == "train":
            is_bursty = (u_bursty < table.p_bursty[:, None]) & (table.B[:, None] > 0)
            is_novel = u_novel < table.p_novel[:, None]
        else:
            is_bursty = torch.ones(M, b, dtype=torch.bool, device=dev)
            is_novel = torch.full((M, b), kind == "ic", dtype=torch.bool, device=dev)
    structured = is_bursty | is_novel  # [M, b] slot layout (query in context)

    if kind == "iw":
        ctx_key, q_key = ctx_cls, q_cls[..., 0]
    else:
        slot_cls = torch.cat([dist.gather(2, ctx_slot), dist.gather(2, q_slot[..., None])], -1)  # [M, b, N+1]
        key = torch.where(structured[..., None], slot_cls, iid_cls)  # class id of every item
        all_slots = torch.cat([ctx_slot, q_slot[..., None]], -1)  # [M, b, N+1]
        key = torch.where(is_novel[..., None], -1 - all_slots, key)  # fresh classes: negative ids
        ctx_key, q_key = key[..., :N], key[..., N]

    keys = torch.cat([ctx_key, q_key[..., None]], -1)  # [M, b, N+1] class of every item (< 0: fresh)
    cls = keys.clamp_min(0)
    rows = lambda idx, n: idx + torch.arange(M, device=dev).view(M, 1, 1) * n  # row ids into a flat [M*n, D]
    mu = F.embedding(rows(cls, table.means.shape[1]), table.means.flatten(0, 1))  # [M, b, N+1, D]
    lab = (cls + (1 if kind == "ic2" else 0)) % L  # [M, b, N+1]
    if z.novel is not None:
        s = (-1 - keys).clamp_min(0)  # [M, b, N+1] fresh-class slot
        fresh = z.novel.gather(2, s[..., None].expand(-1, -1, -1, table.D))
        fresh_lab = z.lab.argsort(-1).gather(2, s)  # distinct random labels per fresh class
        mu = torch.where(is_novel[..., None, None], fresh / math.sqrt(table.D), mu)
        lab = torch.where(is_novel[..., None], fresh_lab, lab)
    c1 = torch.rsqrt(1 + table.eps**2).view(M, 1, 1, 1)
    c2 = (table.eps * c1.view(M) / math.sqrt(table.D)).view(M, 1, 1, 1)
    tokens = torch.empty(M, b, 2 * N + 1, table.D, device=dev)  # [M, b, T, D]: items at even positions
    torch.addcmul(mu * c1, z.item, c2, out=tokens[:, :, 0::2])
    tokens[:, :, 1::2] = F.embedding(rows(lab[..., :N], L), table.labels.flatten(0, 1))
    return Batch(tokens=tokens, target=lab[..., N], ctx_labels=lab[..., :N], classes=keys)


# -- measures ------------------------------------------------------------------------------------------------------


def circuit_scores(params: Params, cfg: ModelConfig, batch: Batch, attn: Tensor, resid: Tensor) -> dict[str, Tensor]:
    """Per-head scores [M] from one forward's internals on a probe batch (attn [M, layers, H, b, T, T]).

    Olsson et al. (2022) adapted to this task, per layer l and head h (1-based names):
    - prev_token_LlHh: attention from each label token to its own item token (the token before it);
    - prefix_match_LlHh: attention mass from the query to the label tokens that follow context items of the
      query's class, divided by the ideal mass 1; averaged over sequences that have such a target;
    - copying_LlHh: zipfind.measures.copy_scores at the context label tokens, for their labels.
    """
    M, layers, H, b, T, _ = attn.shape
    N = (T - 1) // 2
    lab_pos = torch.arange(N, device=attn.device) * 2 + 1  # label token of pair j
    item_pos = lab_pos - 1
    prev = attn[..., lab_pos, item_pos].mean((-1, -2))  # [M, layers, H]
    q_row = attn[..., T - 1, :][..., lab_pos]  # [M, layers, H, b, N] query -> each label token
    match = batch.ctx_match[:, None, None].to(attn.dtype)  # [M, 1, 1, b, N]
    has = batch.ctx_match.any(-1).to(attn.dtype)  # [M, b]
    mass = (q_row * match).sum(-1)  # [M, layers, H, b]
    prefix = (mass * has[:, None, None]).sum(-1) / has.sum(-1).clamp(min=1)[:, None, None]
    copy = copy_scores(params, cfg, resid[:, :, :, lab_pos], batch.ctx_labels)  # [M, layers, H]
    return head_scores(prev, prefix, copy)


@torch.no_grad()
def evaluate(params: Params, cfg: ModelConfig, probes: Mapping[str, Batch]) -> tuple[dict[str, Tensor], Tensor]:
    """All measures [M] on the probe sets, one batched forward per set; also IC correctness [M, n_probe].

    Behaviour (per evaluation set IC / IC2 / IW): accuracy and loss; on IC also context-label accuracy (the
    prediction is *some* label present in the context: Reddy's slow-phase measure); circuit scores on IC.
    """
    out: dict[str, Tensor] = {}
    ic_correct = None
    for kind, batch in probes.items():
        res = forward(params, batch.tokens, cfg, internals=(kind == "ic"))
        M, b, L = res.logits.shape
        pred = res.logits.argmax(-1)  # [M, b]
        correct = pred == batch.target
        out[f"{kind}_acc"] = correct.float().mean(1)
        out[f"{kind}_loss"] = F.cross_entropy(res.logits.reshape(M * b, L), batch.target.reshape(-1),
                                              reduction="none").view(M, b).mean(1)
        if kind == "ic":
            ic_correct = correct
            out["ic_ctx_acc"] = (pred[..., None] == batch.ctx_labels).any(-1).float().mean(1)
            out.update(circuit_scores(params, cfg, batch, res.attn, res.resid))
    return out, ic_correct


def make_probes(table: TaskTable, spec_seed: int, n: int) -> dict[str, Batch]:
    """The IC, IC2 and IW probe sets (one fixed draw per kind from the spec seed)."""
    return {k: sample(table, probe_draws(derive_seed(spec_seed, "probe", k), n, table), k) for k in EVAL_KINDS}


def train_batch(seeds: Tensor, step: int, table: TaskTable, b: int) -> Batch:
    return sample(table, draw(seeds, step, table, b))


def batch_loss(params: Params, model: ModelConfig, batch: Batch) -> Tensor:
    """Each model's mean cross-entropy on the query label: [M]."""
    logits = forward(params, batch.tokens, model).logits  # [M, b, L]
    M = logits.shape[0]
    return F.cross_entropy(logits.flatten(0, 1), batch.target.flatten(), reduction="none").view(M, -1).mean(1)


def model_bytes(cell: Cell, model: ModelConfig) -> int:
    """Estimated peak bytes one model needs while training (parameters, optimizer state, activations, probes).

    An upper bound by tensor count with a 1.5x allowance: 66 MB for the quick config, against 7.7 MB measured
    by `zipfind bench` on an H100 for training steps alone (the probe sets, 6.6 MB, and the evaluation pass
    come on top; each chunk's measured peak is recorded in the manifest on CUDA). It errs large so that a
    default chunk does not run out of memory.
    """
    t, r = cell.task, cell.train
    T, d, D, Lyr = 2 * t.N + 1, model.d_model, t.D, model.layers
    n_params = D * d + T * d + Lyr * 4 * d * d + d * t.L
    act = r.batch * T * (d * (6 * Lyr + 2) + 3 * D) + r.batch * model.heads * T * T * Lyr * 3
    probes = 3 * r.n_probe * T * (D + d * (Lyr + 2)) + r.n_probe * model.heads * T * T * Lyr
    table = t.K * D + 3 * t.K * 2
    return int(1.5 * 4 * (4 * n_params + act + probes + table))


def view(batch: Batch, i: int) -> tuple[list[str], dict[int, list[int]]]:
    """Labels of sequence i (items by class, "new" for fresh classes; labels by index) and the query's
    induction targets: the label tokens after context items of its class."""
    cls, labs = batch.classes[0, i].tolist(), batch.ctx_labels[0, i].tolist()
    name = lambda k: f"c{k}" if k >= 0 else f"new{-1 - k}"  # noqa: E731
    labels = [x for k, lab in zip(cls[:-1], labs) for x in (name(k), f"→{lab}")] + [f"q {name(cls[-1])}"]
    T = len(labels)
    return labels, {T - 1: [2 * j + 1 for j, k in enumerate(cls[:-1]) if k == cls[-1]]}


TASK = Task(name="classification", shape=lambda t: Shape(n_in=t.D, T=2 * t.N + 1, n_out=t.L),
            make_table=make_table, train_batch=train_batch, probes=make_probes,
            loss=batch_loss, evaluate=evaluate, model_bytes=model_bytes, view=view)
