"""AdaBound and AMSBound: Adam whose per-parameter step size is clipped into a band that closes on SGD's.

L. Luo, Y. Xiong, Y. Liu, X. Sun (2019). "Adaptive Gradient Methods with Dynamic Bound of Learning Rate". ICLR.

The idea: Adam's steps ``lr / sqrt(v)`` can be extremely large or small late in training, one reason it
generalises worse than SGD. AdaBound clips each step size into ``[eta_l(t), eta_u(t)]`` with

    eta_l(t) = final_lr * (1 - 1 / (gamma * t + 1)),    eta_u(t) = final_lr * (1 + 1 / (gamma * t)),

which starts as ``[0, inf)`` (Adam) and closes on ``final_lr`` (SGD with momentum); ``gamma`` sets how fast
(the paper's ``1 - beta2``, 1e-3). AMSBound does the same to AMSGrad (the running maximum of ``v``).

One step, for a gradient ``g`` (plus ``weight_decay * p``, coupled as in Adam):

    m = b1 m + (1 - b1) g,    v = b2 v + (1 - b2) g^2    (AMSBound: v_max = max(v_max, v), used below)
    eta = clip(lr * sqrt(1 - b2^t) / (1 - b1^t) / (sqrt(v) + eps), eta_l(t), eta_u(t))
    p = p - eta * m

This is the authors' released code (github.com/Luolc/AdaBound), which made the paper's figures: Adam's bias
correction inside the clip, and no further ``1 / sqrt(t)`` (Algorithm 2 of the paper writes one, for its
convergence proof). When a schedule changes ``lr``, ``final_lr`` follows in proportion, as there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from zoo.errors import ZooError


class AdaBound(Optimizer):
    """AdaBound (``amsbound=False``) and AMSBound (``amsbound=True``), Luo et al. 2019; see the module doc."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        final_lr: float = 0.1,
        gamma: float = 1e-3,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsbound: bool = False,
    ) -> None:
        if lr <= 0 or final_lr <= 0:
            raise ZooError(f"adabound needs lr > 0 and final_lr > 0; got lr={lr}, final_lr={final_lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ZooError(f"adabound betas must lie in [0, 1); got {list(betas)}")
        if gamma <= 0 or eps < 0 or weight_decay < 0:
            raise ZooError(f"adabound needs gamma > 0, eps >= 0, weight_decay >= 0; got {gamma}, {eps}, {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), final_lr=final_lr, gamma=gamma, eps=eps,
                        weight_decay=weight_decay, amsbound=amsbound)
        super().__init__(params, defaults)
        for group in self.param_groups:  # the lr final_lr belongs to; kept in the state_dict for resuming
            group.setdefault("base_lr", group["lr"])

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ZooError("adabound does not take sparse gradients")
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    if group["amsbound"]:
                        state["max_exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                if group["amsbound"]:
                    torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
                    second = state["max_exp_avg_sq"]
                else:
                    second = exp_avg_sq
                denom = second.sqrt().add_(group["eps"])
                step_size = group["lr"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)
                final_lr = group["final_lr"] * group["lr"] / group["base_lr"]
                lower = final_lr * (1 - 1 / (group["gamma"] * t + 1))
                upper = final_lr * (1 + 1 / (group["gamma"] * t))
                eta = torch.full_like(denom, step_size).div_(denom).clamp_(lower, upper)
                p.sub_(eta * exp_avg)
        return loss
