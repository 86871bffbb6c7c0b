"""TransformerLens interop: one trained model as an attention-only `HookedTransformer` (optional extra:
`pip install 'zipfind[interp]'`, TransformerLens 2.x-3.x, which still has `HookedTransformer`).

The weights map one to one: zipfind packs the heads of Q, K, V in the columns of [d_model, d_model] matrices and
of O in its rows; TransformerLens keeps them per head ([n_heads, d_model, d_head] and [n_heads, d_head, d_model]).
Biases of Q, K, V, O are zero (zipfind has none). LayerNorm (if the model has it) maps to ln1 of each block and
ln_final; the linear readout is the unembedding. Reddy's MLP readout has no TransformerLens equivalent.

Token task: token ids go in as they are; logits equal zipfind's at every position. Classification: the inputs
are content vectors, not token ids. zipfind embeds them by a linear map x -> x W_E, so the exported model keeps
W_E ([D, d_model]: row j embeds content dimension j) and the vectors enter through the residual stream with a
hook on `hook_embed` that replaces its output by x W_E (`content_hooks`; the token ids passed alongside are
ignored placeholders); then its attention patterns, and its logits at the query (last) position, are zipfind's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .config import ModelConfig


def _require_tl():
    try:
        from transformer_lens import HookedTransformer, HookedTransformerConfig
    except ImportError as e:  # TL missing, or TL >= 4 (no HookedTransformer)
        raise ImportError("TransformerLens export needs transformer-lens < 4 (HookedTransformer): "
                          "pip install 'zipfind[interp]'") from e
    return HookedTransformer, HookedTransformerConfig


def hooked_from_params(params: dict[str, Tensor], cfg: ModelConfig) -> Any:
    """A `HookedTransformer` carrying one model's parameters (zipfind names, no model dimension)."""
    HookedTransformer, HookedTransformerConfig = _require_tl()
    if cfg.readout != "linear":
        raise ValueError(f"readout: {cfg.readout!r} is not allowed for TransformerLens export; only a linear readout "
                         "(the unembedding) has an equivalent")
    n_in, d = params["emb"].shape
    T, n_out, H = params["pos"].shape[0], params["out_w"].shape[1], cfg.heads
    dh = d // H
    tl_cfg = HookedTransformerConfig(
        n_layers=cfg.layers, d_model=d, n_ctx=T, d_head=dh, n_heads=H, d_vocab=n_in, d_vocab_out=n_out,
        attn_only=True, normalization_type="LN" if cfg.layernorm else None, positional_embedding_type="standard",
        act_fn=None, default_prepend_bos=False, device="cpu", dtype=params["emb"].dtype)
    model = HookedTransformer(tl_cfg)
    sd = model.state_dict()
    per_head_in = lambda w: w.reshape(d, H, dh).permute(1, 0, 2)  # [d, H*dh] -> [H, d, dh]  # noqa: E731
    sd["embed.W_E"], sd["pos_embed.W_pos"] = params["emb"], params["pos"]
    for l in range(cfg.layers):
        a = f"blocks.{l}.attn."
        for name in "QKV":
            sd[a + f"W_{name}"] = per_head_in(params[f"{name.lower()}{l}"])
            sd[a + f"b_{name}"] = torch.zeros(H, dh, dtype=sd[a + f"b_{name}"].dtype)
        sd[a + "W_O"] = params[f"o{l}"].reshape(H, dh, d)
        sd[a + "b_O"] = torch.zeros(d, dtype=sd[a + "b_O"].dtype)
        if cfg.layernorm:
            sd[f"blocks.{l}.ln1.w"], sd[f"blocks.{l}.ln1.b"] = params[f"ln{l}_w"], params[f"ln{l}_b"]
    if cfg.layernorm:
        sd["ln_final.w"], sd["ln_final.b"] = params["lnf_w"], params["lnf_b"]
    sd["unembed.W_U"], sd["unembed.b_U"] = params["out_w"], params["out_b"]
    model.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=True)
    model.eval()
    return model


def to_hooked_transformer(run, cell: int, step: int | None = None) -> Any:
    """The model of `cell` of a run (`zipfind.load(DIR)`) at `step` (default: the last kept) as a
    `HookedTransformer`; see the module docstring for how a classification model takes its inputs."""
    return hooked_from_params(dict(run.model(cell, step).params), run.spec.model)


def content_hooks(model: Any, content: Tensor) -> list[tuple[str, Any]]:
    """Forward hooks that feed classification content vectors content [b, T, D] through the embedding W_E;
    use with `model.run_with_hooks(placeholder_ids, fwd_hooks=...)` or `model.hooks(...)`, with placeholder ids
    of shape [b, T] (e.g. zeros)."""
    return [("hook_embed", lambda x, hook: content.to(model.W_E.dtype) @ model.W_E)]


def induction_scores(model: Any, tokens: Tensor, rows: slice | None = None) -> Tensor:
    """TransformerLens' own induction-head detection (its `get_induction_head_detection_pattern` and "mul"
    similarity score) on token ids [b, T], per layer and head [layers, H], averaged over sequences; `rows`
    restricts the detection pattern to those query positions (e.g. the second copy of repeated tokens)."""
    from transformer_lens.head_detector import (compute_head_attention_similarity_score,
                                                get_induction_head_detection_pattern)

    _, cache = model.run_with_cache(tokens)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    out = torch.zeros(len(tokens), L, H)
    for i, seq in enumerate(tokens):
        pattern = get_induction_head_detection_pattern(seq[None].cpu())
        if rows is not None:
            keep = torch.zeros(len(seq), 1)
            keep[rows] = 1
            pattern = pattern * keep
        for l in range(L):
            for h in range(H):
                out[i, l, h] = compute_head_attention_similarity_score(
                    cache["pattern", l][i, h].cpu(), detection_pattern=pattern, exclude_bos=False,
                    exclude_current_token=False, error_measure="mul")
    return out.mean(0)
