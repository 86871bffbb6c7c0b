"""Attention-only transformer with a leading model dimension M on every parameter.

Parameters are a plain dict of stacked tensors; `forward` is a pure function of (params, tokens). Attention is
written as batched matmuls over [M, b, H, T, ·] (no vmap). Inputs are continuous vectors embedded by a learned
linear map D -> d_model (classification) or token ids looked up in a learned [D, d_model] table (D = vocabulary;
the same map applied to one-hot vectors), plus a learned positional embedding. The readout (a linear map, the
unembedding for tokens, or Reddy's 3-layer MLP) reads the residual stream at the query (last) position, or at
every position for next-token prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import ModelConfig

Params = dict[str, Tensor]


def param_shapes(cfg: ModelConfig, D: int, T: int, L: int) -> dict[str, tuple[tuple[int, ...], int | None]]:
    """Per-model shape of every parameter and its fan-in (None: zero-initialised bias or LayerNorm)."""
    d = cfg.d_model  # heads * d_head = d_model: Q, K, V, O are [d, d] with heads packed in columns
    shapes: dict[str, tuple[tuple[int, ...], int | None]] = {"emb": ((D, d), D), "pos": ((T, d), d)}
    for l in range(cfg.layers):
        if cfg.layernorm:
            shapes[f"ln{l}_w"], shapes[f"ln{l}_b"] = ((d,), None), ((d,), None)
        for name in "qkv":
            shapes[f"{name}{l}"] = ((d, d), d)
        shapes[f"o{l}"] = ((d, d), d)
    if cfg.layernorm:
        shapes["lnf_w"], shapes["lnf_b"] = ((d,), None), ((d,), None)
    if cfg.readout == "linear":
        shapes["out_w"], shapes["out_b"] = ((d, L), d), ((L,), None)
    else:
        h = cfg.mlp_hidden
        shapes.update({"r1_w": ((d, h), d), "r1_b": ((h,), None), "r2_w": ((h, h), h), "r2_b": ((h,), None),
                       "r3_w": ((h, L), h), "r3_b": ((L,), None)})
    return shapes


def init_params(cfg: ModelConfig, D: int, T: int, L: int, seeds: Sequence[int], init_scales: Sequence[float],
                device: torch.device | str) -> Params:
    """Weights ~ N(0, s^2 / fan_in) per model from its own seed (drawn on the CPU); biases 0, LN gains 1."""
    shapes = param_shapes(cfg, D, T, L)
    per_model = []
    for seed, s in zip(seeds, init_scales):
        g = torch.Generator().manual_seed(seed)
        p = {}
        for name, (shape, fan_in) in shapes.items():
            if fan_in is None:
                p[name] = torch.ones(shape) if name.endswith("_w") else torch.zeros(shape)
            else:
                p[name] = torch.randn(shape, generator=g) * (s / math.sqrt(fan_in))
        per_model.append(p)
    return {name: torch.stack([p[name] for p in per_model]).to(device) for name in shapes}


@dataclass(frozen=True)
class Output:
    logits: Tensor  # [M, b, L] at the query position, or [M, b, T, L] at every position
    attn: Tensor | None = None  # [M, layers, H, b, T, T] attention patterns (internals only)
    resid: Tensor | None = None  # [M, layers, b, T, d] residual stream entering each layer (internals only)


def _ln(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """LayerNorm with per-model gain and bias: x [M, ..., d], w/b [M, d]."""
    shape = (w.shape[0],) + (1,) * (x.dim() - 2) + (w.shape[1],)
    return F.layer_norm(x, x.shape[-1:]) * w.view(shape) + b.view(shape)


def head_outputs(params: Params, cfg: ModelConfig, layer: int, x: Tensor) -> Tensor:
    """Each head's OV output for source vectors x [M, n, d] (already layer-normed): [M, H, n, d]."""
    M, n, d = x.shape
    H, dh = cfg.heads, cfg.d_model // cfg.heads
    v = (x @ params[f"v{layer}"]).view(M, n, H, dh).transpose(1, 2)  # [M, H, n, dh]
    wo = params[f"o{layer}"].view(M, H, dh, d)
    return v @ wo  # [M, H, n, d]


def readout(params: Params, cfg: ModelConfig, h: Tensor) -> Tensor:
    """Logits from residual vectors h [M, n, d] -> [M, n, L] (no final LayerNorm)."""
    if cfg.readout == "linear":
        return h @ params["out_w"] + params["out_b"][:, None]
    z = torch.relu(h @ params["r1_w"] + params["r1_b"][:, None])
    z = torch.relu(z @ params["r2_w"] + params["r2_b"][:, None])
    return z @ params["r3_w"] + params["r3_b"][:, None]


def embed(params: Params, tokens: Tensor) -> Tensor:
    """Token embeddings plus positions: tokens [M, b, T, D] vectors or [M, b, T] ids -> [M, b, T, d]."""
    emb = params["emb"]  # [M, D, d]
    M, D, d = emb.shape
    if tokens.dtype == torch.long:
        b, T = tokens.shape[1:]
        rows = tokens + torch.arange(M, device=tokens.device).view(M, 1, 1) * D  # ids into the flat [M*D, d]
        h = F.embedding(rows, emb.flatten(0, 1))  # [M, b, T, d]
    else:
        b, T = tokens.shape[1:3]
        h = (tokens.reshape(M, b * T, D) @ emb).view(M, b, T, d)
    return h + params["pos"][:, None, :T]


def forward(params: Params, tokens: Tensor, cfg: ModelConfig, internals: bool = False,
            every_position: bool = False) -> Output:
    """Run all M models on their own sequences: tokens [M, b, T, D] (or ids [M, b, T]) -> logits [M, b, L]
    at the last position, or [M, b, T, L] at every position with `every_position`.

    Without `internals` or `every_position`, the last layer computes attention for the query row only (the only
    row the readout sees); with `internals`, the patterns and residual streams are returned too.
    """
    M, b, T = tokens.shape[:3]
    d, H = cfg.d_model, cfg.heads
    dh = d // H
    h = embed(params, tokens)  # [M, b, T, d]
    causal = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()
    attns, resids = [], []
    for l in range(cfg.layers):
        if internals:
            resids.append(h)
        x = _ln(h, params[f"ln{l}_w"], params[f"ln{l}_b"]) if cfg.layernorm else h
        rows = 1 if (l == cfg.layers - 1 and not internals and not every_position) else T
        xf = x.reshape(M, b * T, d)
        k = (xf @ params[f"k{l}"]).view(M, b, T, H, dh).transpose(2, 3)  # [M, b, H, T, dh]
        v = (xf @ params[f"v{l}"]).view(M, b, T, H, dh).transpose(2, 3)  # [M, b, H, T, dh]
        xq = x[:, :, T - rows :].reshape(M, b * rows, d)
        q = (xq @ params[f"q{l}"]).view(M, b, rows, H, dh).transpose(2, 3)  # [M, b, H, rows, dh]
        s = (q @ k.transpose(-1, -2)) / math.sqrt(dh)  # [M, b, H, rows, T]
        a = torch.softmax(s.masked_fill(~causal[T - rows :], float("-inf")), dim=-1)
        z = (a @ v).transpose(2, 3).reshape(M, b * rows, d)  # [M, b*rows, H*dh]
        h = h[:, :, T - rows :] + (z @ params[f"o{l}"]).view(M, b, rows, d)
        if internals:
            attns.append(a)
    hq = h.reshape(M, b * T, d) if every_position else h[:, :, -1]  # [M, b*T, d] or [M, b, d]
    if cfg.layernorm:
        hq = _ln(hq, params["lnf_w"], params["lnf_b"])
    logits = readout(params, cfg, hq)
    if every_position:
        logits = logits.view(M, b, T, -1)  # [M, b, T, L]
    if not internals:
        return Output(logits)
    attn = torch.stack(attns, 1).permute(0, 1, 3, 2, 4, 5)  # [M, layers, H, b, T, T]
    return Output(logits, attn=attn, resid=torch.stack(resids, 1))


class OneModel(torch.nn.Module):
    """One model out of a stack as a plain `nn.Module`: its parameters are the stack's slice (no model dimension)
    and its forward is zipfind's own, so its outputs equal the stacked model's."""

    def __init__(self, cfg: ModelConfig, params: dict[str, Tensor]):
        super().__init__()
        self.cfg = cfg
        self.params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().clone()) for k, v in params.items()})

    def stacked(self) -> Params:
        """The parameters with a model dimension of 1, as `forward` takes them."""
        return {k: v[None] for k, v in self.params.items()}

    def forward(self, tokens: Tensor, every_position: bool = False) -> Tensor:
        """tokens [b, T, D] vectors or [b, T] ids -> logits [b, L] at the last position ([b, T, L] at every one)."""
        return forward(self.stacked(), tokens[None], self.cfg, every_position=every_position).logits[0]

    @torch.no_grad()
    def attention(self, tokens: Tensor) -> Tensor:
        """Attention patterns [layers, H, b, T, T] on tokens [b, T, D] or [b, T]."""
        return forward(self.stacked(), tokens[None], self.cfg, internals=True).attn[0]
