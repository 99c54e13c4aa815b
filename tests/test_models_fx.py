"""Every registered CNN traces with torch.fx: torchvision's ``create_feature_extractor`` works on it, and the
traced network still refuses a too-small input with the registry's one-line message.

The input-size check is one call recorded in the graph (``zoo.models.layers.check_input_size`` speaks the
``__torch_function__`` protocol), not Python control flow on a traced size, which fx cannot follow. Tracing
and the traced forward run on the meta device: shapes only, no weights initialised.
"""

from __future__ import annotations

import pytest
import torch
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import zoo
from zoo.errors import ZooError
from zoo.registry import entry

# the attention networks (vit, swin) are not CNNs: their position codes branch on the input size
CNNS = [n for n in zoo.list_models() if entry(n).kind == "image" and entry(n).family not in ("mlp", "vit", "swin")]
# Thousands of graph nodes: create_feature_extractor's graph pruning takes minutes on them (111 s for
# resnet1202), plain symbolic tracing a second; their blocks are the ones resnet110 / preact_resnet164 trace.
DEEP = {"resnet1202", "preact_resnet1001"}
SLOW = DEEP | {"densenet_bc_250_24", "densenet_bc_190_40", "densenet201", "inception_resnet_v2"}  # over 5 s each


def marks(name: str) -> list[pytest.MarkDecorator]:
    return [pytest.mark.slow] if name in SLOW else []


def build(name: str) -> torch.nn.Module:
    e = entry(name)
    with torch.device("meta"):
        return zoo.create_model(name, num_classes=10, in_channels=e.input_size[0]).eval()


@pytest.mark.parametrize("name", [pytest.param(n, marks=marks(n)) for n in CNNS])
def test_create_feature_extractor_traces_every_cnn(name: str) -> None:
    model = build(name)
    if name in DEEP:
        return check_symbolic_trace(model, name)
    train_nodes, eval_nodes = get_graph_node_names(model)  # traces both modes, as create_feature_extractor does
    assert train_nodes and eval_nodes
    last = eval_nodes[-1]
    extractor = create_feature_extractor(model, return_nodes={last: "out"})
    e = entry(name)
    side = e.input_size[-1]
    with torch.device("meta"):
        out = extractor(torch.empty(1, e.input_size[0], side, side))["out"]
    assert out.shape == (1, 10)
    low = e.min_size
    if low is not None and low > 1:
        with torch.device("meta"), pytest.raises(ZooError, match=f"at least {low}x{low}"):
            extractor(torch.empty(1, e.input_size[0], low - 1, low - 1))


def check_symbolic_trace(model: torch.nn.Module, name: str) -> None:
    gm = torch.fx.symbolic_trace(model)
    with torch.device("meta"):
        assert gm(torch.empty(1, 3, 32, 32)).shape == (1, 10)
        with pytest.raises(ZooError, match=f"at least {entry(name).min_size}x"):
            gm(torch.empty(1, 3, 7, 7))


def test_the_check_is_one_node_in_the_graph() -> None:
    model = build("resnet18")
    gm = torch.fx.symbolic_trace(model)
    checks = [n for n in gm.graph.nodes if n.op == "call_function" and n.target.__name__ == "check_input_size"]
    assert len(checks) == 1 and checks[0].args[1] == 32
