"""The one data law: Zipf frequencies over K items (classes or words) and the slots of a bursty context.

Both tasks draw item identities through these functions, and :mod:`zipfind.theory.zipf` computes its statistics
for exactly this law (tests hold them against Monte Carlo of each task's sampler). Every function is vectorised
over [M, batch, ...] from uniforms the caller draws from each model's own stream.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor


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
class ZipfLaw:
    """Item probabilities of M models and their context laws, on the training device."""

    probs: Tensor  # [M, K_max] float64 item probabilities (zero beyond each model's K)
    cdf_lo: Tensor  # [M, K_max] float64 exclusive cumulative probability
    cdf_hi: Tensor  # [M, K_max] float64 inclusive cumulative probability (last real item = 1)
    K: Tensor  # [M] long
    distinct: tuple[bool, ...]  # per model: context law "distinct" (host-side, so sampling never syncs)
    law_distinct: Tensor  # [M] bool: the same on the device


def make_law(probs: Tensor, K: Tensor, contexts: Sequence[str]) -> ZipfLaw:
    """The law of item probabilities probs [M, K_max] (rows summing to 1 over the first K[m] items)."""
    cdf_hi = probs.cumsum(1)
    cdf_hi = torch.minimum(cdf_hi / cdf_hi.gather(1, (K - 1)[:, None]), torch.ones_like(cdf_hi))
    distinct = tuple(c == "distinct" for c in contexts)
    return ZipfLaw(probs=probs, cdf_lo=cdf_hi - probs, cdf_hi=cdf_hi, K=K, distinct=distinct,
                   law_distinct=torch.tensor(distinct, device=probs.device))


def without(law: ZipfLaw, u: Tensor, chosen: Tensor | None) -> Tensor:
    """Items drawn from p with the items in `chosen` removed (renormalised).

    u [M, b, n] uniforms; chosen [M, b, j] distinct item ids, or None. Returns [M, b, n] long. Inverse CDF of
    the remaining mass: x in [0, 1 - S) is mapped past the removed items' intervals. With the removed items
    sorted, removed item i sits at g_i = lo_i - (mass of removed items before it) on the compressed axis, g is
    non-decreasing, and x skips exactly the removed items with g_i <= x; so one comparison does it.
    """
    M, b, n = u.shape
    x = u.to(torch.float64)
    if chosen is not None and chosen.shape[-1]:
        c = chosen.sort(-1).values  # [M, b, j]
        flat = c.reshape(M, -1)
        pc = law.probs.gather(1, flat).view_as(c)  # [M, b, j]
        before = pc.cumsum(-1)  # mass of removed items up to and including i
        g = law.cdf_lo.gather(1, flat).view_as(c) - (before - pc)  # [M, b, j]
        x = x * (1.0 - before[..., -1:])
        skipped = (g[..., None, :] <= x[..., None]).sum(-1)  # [M, b, n] removed items below x
        shift = torch.cat([torch.zeros_like(before[..., :1]), before], -1).gather(-1, skipped)
        x = x + shift
    idx = torch.searchsorted(law.cdf_hi, x.reshape(M, -1).contiguous(), right=True).view(M, b, n)
    return torch.minimum(idx, (law.K - 1)[:, None, None])


def distinct(law: ZipfLaw, u: Tensor) -> Tensor:
    """Successive sampling without replacement: u [M, b, n] -> n distinct items per sequence, [M, b, n]."""
    out = torch.empty(u.shape, dtype=torch.long, device=u.device)
    out[..., :1] = without(law, u[..., :1], None)
    for j in range(1, u.shape[-1]):
        out[..., j : j + 1] = without(law, u[..., j : j + 1], out[..., :j])
    return out


def slots(law: ZipfLaw, u: Tensor) -> Tensor:
    """Items of the context slots under each model's law, u [M, b, n] -> [M, b, n]: i.i.d. from p ("iid", the
    anchors' law) or successive sampling without replacement ("distinct")."""
    iid = without(law, u, None)
    if not any(law.distinct):
        return iid
    dist = distinct(law, u)
    return dist if all(law.distinct) else torch.where(law.law_distinct[:, None, None], dist, iid)


def bursty_layout(B: Tensor, N: int, u_perm: Tensor, u_q: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """The slot of each of N positions in a bursty context of N/B slots, B copies each, shuffled.

    B [M] copies per slot (>= 1), u_perm [M, b, N] uniforms (their argsort shuffles the positions), u_q [M, b]
    uniforms choosing a query slot uniformly (or None). Returns ([M, b, N] slot of each position, [M, b] query
    slot or None).
    """
    M, b, _ = u_perm.shape
    slot = torch.arange(N, device=B.device)[None, :] // B[:, None]  # [M, N] slot of each position
    ctx_slot = slot[:, None, :].expand(M, b, N).gather(2, u_perm.argsort(-1))  # [M, b, N]
    if u_q is None:
        return ctx_slot, None
    n_slots = N // B  # [M]
    q_slot = torch.minimum((u_q * n_slots.to(u_q.dtype)[:, None]).long(), (n_slots - 1)[:, None])  # [M, b]
    return ctx_slot, q_slot
