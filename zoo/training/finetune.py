"""Fine-tuning: start from pretrained weights, swap the classifier for new classes, freeze or slow the backbone.

Which parameters are "the classifier" is found without a per-model list, the one way zoo has:
``zoo.training.optim.classifier_parameter_names`` (the parameters ``reset_classifier`` replaces), on the network built
once on the meta device (no memory, no init).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.registry import options_for_weights
from zoo.weights import convert_state_dict, load_file, mismatch_message, state_dict_of


def classifier_keys(model_cfg: dict[str, Any], num_classes: int, in_channels: int,
                    image_size: int | None = None) -> set[str]:
    """State-dict keys of the classifier: those ``reset_classifier`` replaces (the output layers)."""
    from zoo.registry import build_network
    from zoo.training.optim import classifier_parameter_names

    with torch.device("meta"):
        net = build_network(model_cfg, num_classes, in_channels, image_size)
    return classifier_parameter_names(net)


def task_classifier_keys(task: nn.Module) -> set[str]:
    """:func:`classifier_keys` of a zoo task's network, from its saved hyper-parameters."""
    hp = task.hparams
    image_size = (task.facts.get("input_shape") or [None])[-1]
    return classifier_keys(dict(hp["model"]), hp["num_classes"], hp["in_channels"], image_size)


def load_pretrained_into(net: nn.Module, path: bool | str | Path, model_name: str, head: set[str]) -> str | None:
    """Copy the weights ``path`` names into ``net``; return a note if the head changed.

    ``path`` is ``true`` (the model's default published weights), a tag (``IMAGENET1K_V2``), or a file in any
    format load_pretrained reads; tags resolve through :mod:`zoo.pretrained` (torch.hub's cache, downloads).
    The classifier (``head`` keys) is kept freshly initialised when its shape differs (other classes);
    an RGB first convolution is summed over its input channels for grayscale data (timm does the same);
    any other mismatch raises one line naming missing/unexpected keys and the model the file looks like.
    """
    from zoo.checkpoint import read_record
    from zoo.pretrained import resolve
    from zoo.registry import entry

    path, published = resolve(model_name, path)
    obj = load_file(path)
    if "state_dict" in obj and "hyper_parameters" in obj:  # a zoo checkpoint: its record is read (checked) too
        record = read_record(obj, str(path))
        if record.model != model_name and entry(record.model).family != entry(model_name).family:
            raise ZooError(f"model.pretrained={path} holds a {record.model!r} model, not a {model_name!r} one")
    weights = convert_state_dict(model_name, state_dict_of(obj))

    if published is not None:  # the publisher's key names (timm's) -> zoo's
        weights = published.adapt(weights, head)
    own = net.state_dict()
    note = None
    replaced = [k for k in head if k in weights and k in own and weights[k].shape != own[k].shape]
    if replaced:
        old = next(weights[k].shape[0] for k in replaced)
        new = next(own[k].shape[0] for k in replaced)
        note = (f"note: pretrained classifier has {old} classes, the data has {new}: "
                f"{', '.join(sorted(replaced))} re-initialised")
        for k in replaced:
            weights[k] = own[k]
    for k, w in list(weights.items()):  # RGB weights on grayscale data: sum the first conv over colours
        if k in own and w.ndim == 4 and own[k].ndim == 4 and w.shape[1] == 3 and own[k].shape[1] == 1 \
                and w.shape[0] == own[k].shape[0] and w.shape[2:] == own[k].shape[2:]:
            weights[k] = w.sum(1, keepdim=True)
    problem = mismatch_message(model_name, net, weights)
    if problem:
        kernels = [k for k, w in weights.items() if k in own and w.ndim == 4 and w.shape[2:] != own[k].shape[2:]]
        hint = f" (the file's {kernels[0]} is {tuple(weights[kernels[0]].shape[2:])}: try model.stem=imagenet)" \
            if kernels else ""
        # an option that older weights need and the network was built without (DenseNet's old CIFAR stem)
        built = {"name": model_name, **({"stem": net.stem} if isinstance(getattr(net, "stem", None), str) else {})}
        needed = {k: v for k, v in options_for_weights(built, weights).items() if k not in built}
        if needed and any(k not in own for k in weights):
            hint += " (these weights need " + " ".join(f"++model.{k}={json.dumps(v)}" for k, v in needed.items()) + ")"
        raise ZooError(f"model.pretrained={path}: {problem}{hint}")
    net.load_state_dict(weights, strict=True)
    return note


def _frozen_norm_pre_hook(module: nn.Module, args: Any) -> None:
    module.training = False  # a frozen BatchNorm normalises with, and keeps, its running statistics


def freeze_backbone(net: nn.Module, head: set[str]) -> int:
    """Only the classifier trains: other parameters stop needing gradients, backbone BatchNorms stay in eval mode.

    Returns the number of parameters left trainable.
    """
    if not head:
        raise ZooError("model.freeze=backbone: could not tell this model's classifier from its backbone")
    trainable = 0
    for name, p in net.named_parameters():
        p.requires_grad_(name in head)
        trainable += p.numel() if name in head else 0
    head_modules = {k.rsplit(".", 1)[0] for k in head}
    for name, m in net.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and name not in head_modules:
            m.register_forward_pre_hook(_frozen_norm_pre_hook)
    return trainable
