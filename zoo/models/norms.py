"""Normalisation as a choice: one ``make_norm(kind, channels)`` for every family that takes ``model.norm=``.

Which statistics a layer normalises by is the whole difference between the variants:

- ``batch`` — S. Ioffe, C. Szegedy (2015), "Batch Normalization": per channel over (N, H, W); needs a batch,
  keeps running averages for eval.
- ``group`` — Y. Wu, K. He (2018), "Group Normalization": per sample over (C/G, H, W); independent of the
  batch size. ``layer`` (J. L. Ba, J. R. Kiros, G. E. Hinton 2016) is one group: per sample over (C, H, W)
  (``nn.LayerNorm`` over the features for 1-d inputs).
- ``instance`` — D. Ulyanov, A. Vedaldi, V. Lempitsky (2016): per sample and channel over (H, W); maps only.
- ``switchable`` — P. Luo, J. Ren, Z. Peng, R. Zhang, J. Li (2019), "Differentiable Learning-to-Normalize via
  Switchable Normalization" (ICLR): a learnt softmax mixture of the instance, layer and batch statistics.
- ``none`` — the identity.

Weight normalisation (T. Salimans, D. P. Kingma 2016) reparametrises a weight instead of normalising
activations, ``w = g v / ||v||``; :func:`apply_weight_norm` puts torch's parametrisation on every
convolution and linear layer (``model.weight_norm=true``, applied by ``zoo.create_model``).

``make_norm`` takes the channel count last among its positional arguments, so
``functools.partial(make_norm, "group", groups=32)`` is a torchvision-style ``norm_layer(channels)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from zoo.errors import ZooError

NORMS = ("batch", "group", "layer", "instance", "switchable", "none")


class SwitchNorm(nn.Module):
    """Switchable Normalization (Luo et al. 2019): normalise by ``sum_k w_k mu_k`` and ``sum_k w'_k sigma2_k``.

    ``k`` runs over instance (per sample and channel, maps only), layer (per sample) and batch (per channel)
    statistics; ``w = softmax(mean_weight)``, ``w' = softmax(var_weight)`` are learnt with the network, so
    each layer picks its own normaliser. The three are computed from the instance moments in one pass, as in
    the paper's Eq. (4): the layer and batch means are means of the instance means, and their variances come
    from the instance second moments. In eval the batch statistics are running averages, as in batch norm.
    ``dim=1`` takes (N, C) features and mixes layer and batch statistics only.
    """

    def __init__(self, channels: int, dim: int = 2, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        if dim not in (1, 2):
            raise ValueError(f"SwitchNorm dim must be 1 or 2; got {dim}")
        self.channels, self.dim, self.eps, self.momentum = channels, dim, eps, momentum
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        kinds = 3 if dim == 2 else 2  # (instance,) layer, batch
        self.mean_weight = nn.Parameter(torch.ones(kinds))
        self.var_weight = nn.Parameter(torch.ones(kinds))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        flat = x.reshape(n, c, -1)  # N x C x L (L = H*W, or 1 for features)
        mean_in = flat.mean(-1, keepdim=True)  # N x C x 1
        temp = flat.pow(2).mean(-1, keepdim=True)  # N x C x 1: second moments
        var_in = temp - mean_in.pow(2)
        mean_ln = mean_in.mean(1, keepdim=True)  # N x 1 x 1
        var_ln = temp.mean(1, keepdim=True) - mean_ln.pow(2)
        if self.training:
            mean_bn = mean_in.mean(0, keepdim=True)  # 1 x C x 1
            var_bn = temp.mean(0, keepdim=True) - mean_bn.pow(2)
            with torch.no_grad():
                count = n * flat.shape[-1]
                unbiased = var_bn.flatten() * count / max(count - 1, 1)
                self.running_mean.lerp_(mean_bn.flatten(), self.momentum)
                self.running_var.lerp_(unbiased, self.momentum)
        else:
            mean_bn = self.running_mean.view(1, c, 1)
            var_bn = self.running_var.view(1, c, 1)
        wm = torch.softmax(self.mean_weight, 0)
        wv = torch.softmax(self.var_weight, 0)
        if self.dim == 2:
            mean = wm[0] * mean_in + wm[1] * mean_ln + wm[2] * mean_bn  # N x C x 1
            var = wv[0] * var_in + wv[1] * var_ln + wv[2] * var_bn
        else:
            mean = wm[0] * mean_ln + wm[1] * mean_bn
            var = wv[0] * var_ln + wv[1] * var_bn
        out = (flat - mean) / torch.sqrt(var.clamp(min=0) + self.eps)
        out = out * self.weight.view(1, c, 1) + self.bias.view(1, c, 1)
        return out.view_as(x)

    def extra_repr(self) -> str:
        return f"{self.channels}, dim={self.dim}, eps={self.eps}, momentum={self.momentum}"


def make_norm(kind: str, channels: int, groups: int = 32, dim: int = 2) -> nn.Module:
    """The normalisation layer ``kind`` (one of :data:`NORMS`) for ``channels`` maps (``dim=2``) or features
    (``dim=1``). ``groups`` is the group count of ``group`` and must divide ``channels``."""
    if kind not in NORMS:
        raise ZooError(f"unknown norm {kind!r}; valid: {', '.join(NORMS)}")
    if dim not in (1, 2):
        raise ValueError(f"make_norm dim must be 1 or 2; got {dim}")
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm2d(channels) if dim == 2 else nn.BatchNorm1d(channels)
    if kind == "switchable":
        return SwitchNorm(channels, dim=dim)
    if kind == "instance":
        if dim == 1:
            raise ZooError("model.norm=instance normalises each feature map over its pixels; a fully connected "
                           "layer has no maps (use batch, group, layer or switchable)")
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, channels) if dim == 2 else nn.LayerNorm(channels)
    if groups <= 0 or channels % groups:
        raise ZooError(f"model.norm_groups={groups} must divide every normalised layer's width; {channels} "
                       f"channels are not a multiple of it")
    return nn.GroupNorm(groups, channels)


def apply_weight_norm(net: nn.Module) -> nn.Module:
    """Weight normalisation on every convolution and linear layer of ``net`` (in place; returns ``net``).

    torch's parametrisation keeps ``w`` computed from ``original0`` (the norm g, one per output unit) and
    ``original1`` (the direction v), so the state_dict keys become ``<layer>.parametrizations.weight.*``.
    A unit whose weight is all zero (the last convolution of a pre-activation block under ``zero_init_residual``)
    has no direction, and ``v / ||v||`` would be 0/0: it keeps ``g = 0`` (so ``w`` stays zero) with a direction
    drawn as the layer's own default initialisation.
    """
    for m in list(net.modules()):
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
            dead = m.weight.detach().flatten(1).abs().sum(1) == 0  # per output unit
            weight_norm(m, "weight", dim=0)
            if dead.any():
                v = m.parametrizations.weight.original1
                fresh = torch.empty_like(v)
                nn.init.kaiming_uniform_(fresh, a=math.sqrt(5))  # torch's default for conv and linear weights
                with torch.no_grad():
                    v[dead] = fresh[dead]
    return net
