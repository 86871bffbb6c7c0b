"""The task sampler: Zipf class tables and bursty in-context classification sequences, batched over M models.

Every model m owns a task instance (class means, label vectors, Zipf class probabilities; K padded with
zero-probability classes), a context law ("iid" or "distinct" slots, see `sample`) and a random stream. Per step,
`draw` fills one standard-normal buffer per model from that model's own generator (the only per-model loop: one
call a model); everything after it (float64 uniforms, inverse-CDF class sampling, sampling without replacement,
shuffles, token assembly) is vectorised over [M, batch]. A model's
sequences therefore depend only on its own configuration and generator, never on the chunk it is stacked in.

Sequence layout (T = 2N + 1 tokens of D content dims): x_1, l_1, ..., x_N, l_N, x_q. Items are
x = (mu_k + eps * eta) / sqrt(1 + eps^2) with mu_k, eta ~ N(0, I/D); labels are fixed random vectors ~ N(0, I/D);
class k (0-based Zipf rank) has label k mod L. Position codes are added by the model (learned embedding).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import TaskConfig

Kind = Literal["train", "ic", "ic2", "iw"]
EVAL_KINDS: tuple[Kind, ...] = ("ic", "ic2", "iw")


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple of values (stable across runs and machines)."""
    blob = repr(parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") >> 1


def zipf_probs(alpha: Tensor, K: Tensor, K_max: int) -> Tensor:
    """p_k ∝ (k+1)^-alpha for k < K, 0 beyond; [M] -> [M, K_max] float64."""
    k = torch.arange(1, K_max + 1, dtype=torch.float64, device=alpha.device)  # [K_max]
    w = k[None, :] ** (-alpha.to(torch.float64)[:, None])  # [M, K_max]
    w = torch.where(k[None, :] <= K[:, None], w, torch.zeros_like(w))
    return w / w.sum(1, keepdim=True)


@dataclass(frozen=True)
class TaskTable:
    """Stacked task instances of M models, on the training device."""

    means: Tensor  # [M, K_max, D] class means (zero rows beyond each model's K)
    labels: Tensor  # [M, L, D] label vectors
    probs: Tensor  # [M, K_max] float64 class probabilities
    cdf_lo: Tensor  # [M, K_max] float64 exclusive cumulative probability
    cdf_hi: Tensor  # [M, K_max] float64 inclusive cumulative probability (last real class = 1)
    K: Tensor  # [M] long
    B: Tensor  # [M] long copies per class in a bursty context (0: none)
    p_bursty: Tensor  # [M]
    p_novel: Tensor  # [M]
    eps: Tensor  # [M]
    N: int
    L: int
    D: int
    needs_novel: tuple[bool, ...]  # per model: p_novel > 0 (host-side, so sampling never syncs)
    distinct: tuple[bool, ...]  # per model: context law "distinct" (host-side copy of law_distinct)
    law_distinct: Tensor  # [M] bool: slots drawn without replacement ("distinct"), else i.i.d. ("iid")

    @property
    def M(self) -> int:
        return self.means.shape[0]


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
    probs = zipf_probs(col("alpha", torch.float64), K, K_max)
    cdf_hi = probs.cumsum(1)
    cdf_hi = torch.minimum(cdf_hi / cdf_hi.gather(1, (K - 1)[:, None]), torch.ones_like(cdf_hi))
    return TaskTable(means=means.to(device), labels=labels.to(device), probs=probs, cdf_lo=cdf_hi - probs,
                     cdf_hi=cdf_hi, K=K, B=col("B", torch.long), p_bursty=col("p_bursty"),
                     p_novel=col("p_novel"), eps=col("eps"), N=N, L=L, D=D,
                     needs_novel=tuple(t.p_novel > 0 for t in tasks),
                     distinct=tuple(t.context == "distinct" for t in tasks),
                     law_distinct=torch.tensor([t.context == "distinct" for t in tasks], device=device))


@dataclass(frozen=True)
class Draws:
    """Standard-normal draws behind one batch; [M, b, ...]."""

    item: Tensor  # [M, b, N+1, D] within-class noise eta (times sqrt(D))
    u: Tensor  # [M, b, 3N+4] float64 uniforms
    novel: Tensor | None  # [M, b, N, D] fresh class means (times sqrt(D)); None when no model needs them
    lab: Tensor | None  # [M, b, L] keys of a random label permutation for fresh classes


def draw_sizes(N: int, D: int, L: int, novel: bool) -> list[int]:
    return [(N + 1) * D, 3 * N + 4] + ([N * D, L] if novel else [])


def split_draws(z: Tensor, N: int, D: int, L: int, novel: bool) -> Draws:
    """Cut a flat [M, b, n] normal buffer into its parts; uniforms via the normal CDF."""
    M, b, _ = z.shape
    parts = z.split(draw_sizes(N, D, L, novel), dim=-1)
    u = torch.special.ndtr(parts[1].to(torch.float64))  # float64: the Zipf tail's inverse CDF needs it
    return Draws(item=parts[0].reshape(M, b, N + 1, D), u=u,
                 novel=parts[2].reshape(M, b, N, D) if novel else None,
                 lab=parts[3] if novel else None)


def draw_buffer(table: TaskTable, b: int) -> Tensor:
    """A reusable [M, b, n] buffer for `draw`."""
    n = sum(draw_sizes(table.N, table.D, table.L, any(table.needs_novel)))
    return torch.zeros(table.M, b, n, device=table.means.device)


def draw(gens: Sequence[torch.Generator], table: TaskTable, out: Tensor) -> Draws:
    """One batch of draws for every model, each from its own generator, into out [M, b, n] (see draw_buffer).

    Each model fills its own contiguous [b, n_base] block, then its fresh-class block only if its p_novel > 0,
    so its stream never depends on its chunk-mates (unused blocks stay zero).
    """
    N, D, L = table.N, table.D, table.L
    novel = any(table.needs_novel)
    n_base = sum(draw_sizes(N, D, L, False))
    base, extra = out[..., :n_base], out[..., n_base:]  # views; base[m] is not contiguous when novel
    for m, g in enumerate(gens):
        if novel:
            base[m].copy_(torch.randn(base.shape[1:], generator=g, device=out.device))
            if table.needs_novel[m]:
                extra[m].copy_(torch.randn(extra.shape[1:], generator=g, device=out.device))
        else:
            out[m].normal_(generator=g)
    return split_draws(out, N, D, L, novel)


def probe_draws(seed: int, n: int, table: TaskTable) -> Draws:
    """One fixed probe set of draws shared by every model (CPU generator, so it is the same on any device)."""
    N, D, L = table.N, table.D, table.L
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, sum(draw_sizes(N, D, L, True)), generator=g)  # [n, dims]
    z = z.to(table.means.device).expand(table.M, n, -1)
    return split_draws(z, N, D, L, True)


def _without(table: TaskTable, u: Tensor, chosen: Tensor | None) -> Tensor:
    """Classes drawn from p with the classes in `chosen` removed (renormalised).

    u [M, b, n] uniforms; chosen [M, b, j] distinct class ids, or None. Returns [M, b, n] long. Inverse CDF of
    the remaining mass: x in [0, 1 - S) is mapped past the removed classes' intervals. With the removed classes
    sorted, removed class i sits at g_i = lo_i - (mass of removed classes before it) on the compressed axis, g is
    non-decreasing, and x skips exactly the removed classes with g_i <= x; so one comparison does it.
    """
    M, b, n = u.shape
    x = u.to(torch.float64)
    if chosen is not None and chosen.shape[-1]:
        c = chosen.sort(-1).values  # [M, b, j]
        flat = c.reshape(M, -1)
        pc = table.probs.gather(1, flat).view_as(c)  # [M, b, j]
        before = pc.cumsum(-1)  # mass of removed classes up to and including i
        g = table.cdf_lo.gather(1, flat).view_as(c) - (before - pc)  # [M, b, j]
        x = x * (1.0 - before[..., -1:])
        skipped = (g[..., None, :] <= x[..., None]).sum(-1)  # [M, b, n] removed classes below x
        shift = torch.cat([torch.zeros_like(before[..., :1]), before], -1).gather(-1, skipped)
        x = x + shift
    idx = torch.searchsorted(table.cdf_hi, x.reshape(M, -1).contiguous(), right=True).view(M, b, n)
    return torch.minimum(idx, (table.K - 1)[:, None, None])


def _distinct(table: TaskTable, u: Tensor) -> Tensor:
    """Successive sampling without replacement: u [M, b, n] -> n distinct classes per sequence, [M, b, n]."""
    out = torch.empty(u.shape, dtype=torch.long, device=u.device)
    out[..., :1] = _without(table, u[..., :1], None)
    for j in range(1, u.shape[-1]):
        out[..., j : j + 1] = _without(table, u[..., j : j + 1], out[..., :j])
    return out


def _slots(table: TaskTable, u: Tensor) -> Tensor:
    """Classes of the context slots under each model's law, u [M, b, n] -> [M, b, n]: i.i.d. from p ("iid", the
    anchors' law) or successive sampling without replacement ("distinct")."""
    iid = _without(table, u, None)
    if not any(table.distinct):
        return iid
    dist = _distinct(table, u)
    return dist if all(table.distinct) else torch.where(table.law_distinct[:, None, None], dist, iid)


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
    slot = torch.arange(N, device=dev)[None, :] // Bp[:, None]  # [M, N] class slot of each position
    perm = u_perm.argsort(-1)  # [M, b, N] shuffle of positions
    ctx_slot = slot[:, None, :].expand(M, b, N).gather(2, perm)  # [M, b, N]
    n_slots = (N // Bp).to(u_q.dtype)[:, None]  # [M, 1]
    q_slot = torch.minimum((u_q * n_slots).long(), (N // Bp)[:, None] - 1)  # [M, b]

    if kind == "iw":
        q_cls = _without(table, u_iid[..., N:], None)  # [M, b, 1]
        ctx_cls = _without(table, u_iid[..., :N], q_cls)  # [M, b, N]
        is_bursty = is_novel = torch.zeros(M, b, dtype=torch.bool, device=dev)
        iid_cls = torch.cat([ctx_cls, q_cls], -1)
    else:
        if kind == "ic":
            dist = torch.zeros_like(ctx_slot)  # fresh classes: slot ids only
        elif kind == "ic2":
            dist = _distinct(table, u_dist)  # N distinct known classes, under either law
        else:
            dist = _slots(table, u_dist)  # [M, b, N] class of each slot (the first N/B are used)
        iid_cls = _without(table, u_iid, None) if kind == "train" else dist[..., :1].expand(M, b, N + 1)
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
