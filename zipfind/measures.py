"""Circuit scores shared by every task: Olsson et al.'s (2022) per-head copying score and the per-head and
model-level names the onsets and plots read. Each task measures where its heads attend (previous-token,
prefix-matching) on its own probes and hands the [M, layers, H] tensors to `head_scores`.

- copying_LlHh: the head's OV output at source positions, mapped through the readout on the direct path,
  mean-subtracted, ReLU'd; the source token's own output's share s of the raises, averaged, then rescaled to
  -1..1 with chance at 0: s = 0 -> -1, s = 1/n_out (outputs exchangeable, e.g. at initialisation) -> 0, s = 1 -> 1.
  (Olsson's 2s - 1 puts 0 at a majority share, which even a hand-built perfect circuit misses in the
  classification task: with L = 32 random label vectors in D = 63 dims, the cross-talk of 31 labels outweighs
  the copied one; measured -0.04 to -0.09, and -0.3 for trained induction heads whose prefix matching is 0.8.
  Zero at chance makes "positive copying" mean "raises the attended token more than chance".)
- prev_token_score: the best layer-1 head; induction_score: the best prefix-matching score among heads of layers
  >= 2 (layer 1 in a one-layer model) whose copying score is positive, 0 if there is none.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .config import ModelConfig
from .model import Params, _ln, head_outputs, readout


def copy_scores(params: Params, cfg: ModelConfig, resid: Tensor, target: Tensor) -> Tensor:
    """Copying score of every head [M, layers, H] at source positions.

    resid [M, layers, b, n, d]: the residual stream entering each layer at n source positions per sequence;
    target [M, b, n]: the output index the source should raise (its label, or its own token).
    """
    M, layers, b, n, d = resid.shape
    H = cfg.heads
    base = readout(params, cfg, torch.zeros(M, 1, d, device=resid.device))  # [M, 1, n_out]
    out = []
    for l in range(layers):
        x = resid[:, l]  # [M, b, n, d]
        if cfg.layernorm:
            x = _ln(x, params[f"ln{l}_w"], params[f"ln{l}_b"])
        ov = head_outputs(params, cfg, l, x.reshape(M, b * n, d))  # [M, H, b*n, d]
        logits = readout(params, cfg, ov.reshape(M, H * b * n, d)) - base  # [M, H*b*n, n_out]
        raise_ = torch.relu(logits - logits.mean(-1, keepdim=True)).view(M, H, b, n, -1)
        own = raise_.gather(-1, target[:, None, :, :, None].expand(M, H, b, n, 1))[..., 0]
        share = (own / raise_.sum(-1).clamp(min=1e-12)).mean((-1, -2))  # [M, H]
        chance = 1.0 / raise_.shape[-1]
        out.append(torch.where(share >= chance, (share - chance) / (1 - chance), share / chance - 1))
    return torch.stack(out, 1)


def head_scores(prev: Tensor, prefix: Tensor, copy: Tensor) -> dict[str, Tensor]:
    """Per-head measures (prev_token_LlHh, prefix_match_LlHh, copying_LlHh) and the model-level
    prev_token_score and induction_score, each [M], from [M, layers, H] score tensors."""
    M, layers, H = prev.shape
    out: dict[str, Tensor] = {}
    for l in range(layers):
        for h in range(H):
            tag = f"L{l + 1}H{h + 1}"
            out[f"prev_token_{tag}"] = prev[:, l, h]
            out[f"prefix_match_{tag}"] = prefix[:, l, h]
            out[f"copying_{tag}"] = copy[:, l, h]
    out["prev_token_score"] = prev[:, 0].max(-1).values
    later = slice(1, None) if layers > 1 else slice(0, 1)
    cand = torch.where(copy[:, later] > 0, prefix[:, later], torch.zeros_like(prefix[:, later]))
    out["induction_score"] = cand.flatten(1).max(-1).values
    return out
