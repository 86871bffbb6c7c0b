"""Adam / AdamW / SGD over stacked parameters, with every hyperparameter a per-model [M] tensor.

torch.optim rejects a tensor learning rate per model, and its gradient clipping couples whatever it is given;
here clipping, step counts and freezing are per model. The Adam arithmetic follows torch.optim.Adam exactly
(bias-corrected step size, eps added after the corrected square root), so a stacked model and a plain
per-model Adam follow the same trajectory.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .config import Optimizer as OptimizerName


class StackedOptimizer:
    """Holds the optimizer state; `step` updates parameters of active models in place and returns grad norms."""

    def __init__(self, params: dict[str, Tensor], kind: OptimizerName, lr: Tensor, beta1: Tensor, beta2: Tensor,
                 weight_decay: Tensor, clip: Tensor, eps: float = 1e-8):
        self.params, self.kind, self.eps = params, kind, eps
        self.lr, self.beta1, self.beta2, self.wd, self.clip = lr, beta1, beta2, weight_decay, clip  # [M] each
        self.t = torch.zeros_like(lr)  # [M] updates taken by each model
        self.m = {k: torch.zeros_like(p) for k, p in params.items()}
        self.v = {k: torch.zeros_like(p) for k, p in params.items()} if kind != "sgd" else {}

    @staticmethod
    def _b(x: Tensor, like: Tensor) -> Tensor:
        return x.view((-1,) + (1,) * (like.dim() - 1))

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor], active: Tensor) -> Tensor:
        """Update in place; grads aligned with params (consumed), active [M] bool. Returns grad norms [M].

        A model whose gradient is not finite becomes inactive here; inactive models take no step (their
        step size is 0 and their non-finite gradients are zeroed, so nothing leaks into their weights).
        """
        sq = sum(g.pow(2).flatten(1).sum(1) for g in grads)
        norm = sq.sqrt()  # [M]
        act = active & torch.isfinite(norm)
        coef = torch.where(self.clip > 0, (self.clip / (norm + 1e-6)).clamp(max=1.0), torch.ones_like(norm))
        coef = coef * act  # 0 for inactive models
        self.t = self.t + act
        b1, b2, wd = self.beta1, self.beta2, self.wd
        lr = self.lr * act
        bc1 = 1 - b1 ** self.t.clamp(min=1)
        bc2 = 1 - b2 ** self.t.clamp(min=1)
        for name, g in zip(self.params, grads):
            p, B = self.params[name], lambda x: self._b(x, g)
            g.nan_to_num_(0.0, 0.0, 0.0).mul_(B(coef))
            if self.kind in ("adam", "sgd"):
                g.addcmul_(p, B(wd * act))
            m = self.m[name]
            if self.kind == "sgd":
                m.mul_(B(b1 ** act)).add_(g)  # inactive models keep their momentum
                p.sub_(g.copy_(m).mul_(B(lr)))
                continue
            v = self.v[name]
            m.lerp_(g, B((1 - b1) * act))
            v.mul_(B(b2**act)).add_(g.mul_(g).mul_(B(1 - b2)))  # g is scratch from here on
            if self.kind == "adamw":
                p.mul_(B(1 - lr * wd))
            denom = torch.sqrt(v, out=g).div_(B(bc2.sqrt())).add_(self.eps)
            p.sub_(denom.reciprocal_().mul_(m).mul_(B(lr / bc1)))
        return norm
