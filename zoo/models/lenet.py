"""LeNet-5.

Y. LeCun, L. Bottou, Y. Bengio, P. Haffner (1998). "Gradient-Based Learning Applied to Document
Recognition". Proc. IEEE 86(11).

The idea: learn the feature extractor instead of hand-designing it. Two rounds of
convolution (shared 5x5 weights: translation equivariance) and subsampling (a little translation
invariance) turn a 32x32 digit into 16 maps of 5x5, and three fully connected layers classify them.

``lenet5`` is the modern reading (ReLU, max-pool); MNIST's 28x28 digits are padded to the
paper's 32x32 field, as the paper did.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.models.layers import activation_width, check_input_size, make_unit_activation, pad_to_square
from zoo.models.norms import make_norm
from zoo.registry import register_model


class LeNet5(nn.Module):
    """LeNet-5: conv(6,5x5) - pool - conv(16,5x5) - pool - fc120 - fc84 - fc(num_classes).

    ``norm`` (zoo.models.norms; none by default, as in 1998) goes between each conv or hidden fc and its
    activation, as ``norm1``..``norm4`` (``instance`` on the convs only: the fc layers have no maps);
    ``activation=maxout`` makes those four layers compute ``maxout_pieces`` times their width and keeps the
    maximum of each unit's pieces.
    """

    min_size: int | None = None  # from @register_model(min_size=...), set when built by name

    def __init__(self, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.0,
                 activation: str = "relu", norm: str = "none", norm_groups: int = 2, maxout_pieces: int = 2) -> None:
        super().__init__()
        k = activation_width(activation, maxout_pieces)
        self.act = make_unit_activation(activation, maxout_pieces)  # parameter-free
        self.conv1 = nn.Conv2d(in_channels, 6 * k, kernel_size=5)
        self.norm1 = make_norm(norm, 6 * k, norm_groups, dim=2)  # Identity for none: no keys
        self.conv2 = nn.Conv2d(6, 16 * k, kernel_size=5)
        self.norm2 = make_norm(norm, 16 * k, norm_groups, dim=2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120 * k)
        fc_norm = "none" if norm == "instance" else norm  # instance norm needs maps: the convs only
        self.norm3 = make_norm(fc_norm, 120 * k, norm_groups, dim=1)
        self.fc2 = nn.Linear(120, 84 * k)
        self.norm4 = make_norm(fc_norm, 84 * k, norm_groups, dim=1)
        self.dropout = nn.Dropout(dropout)
        self.fc3 = nn.Linear(84, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = check_input_size(x, self.min_size, "LeNet-5")
        x = pad_to_square(x, 32, "LeNet-5", padded=(28,))  # N x C x 32 x 32: the paper's field for the digits
        x = F.max_pool2d(self.act(self.norm1(self.conv1(x))), 2)  # N x 6 x 14 x 14
        x = F.max_pool2d(self.act(self.norm2(self.conv2(x))), 2)  # N x 16 x 5 x 5
        return torch.flatten(x, 1)  # N x 400

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm3(self.fc1(x)))  # N x 120
        x = self.dropout(self.act(self.norm4(self.fc2(x))))  # N x 84
        return self.fc3(x)  # N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc3 = nn.Linear(self.fc3.in_features, num_classes)


@register_model(family="lenet", paper="LeCun et al., Gradient-Based Learning Applied to Document Recognition",
                year=1998, input_size=(1, 32, 32), min_size=28)
def lenet5(num_classes: int = 10, in_channels: int = 1, **kwargs) -> LeNet5:
    return LeNet5(num_classes=num_classes, in_channels=in_channels, **kwargs)


# --- The 1998 network as published ---------------------------------------------------------------------------

# Table I of the paper: which of S2's 6 maps each of C3's 16 maps sees. Maps 0-5 take 3 neighbouring maps,
# 6-11 four neighbouring, 12-14 four non-neighbouring, 15 all six; the broken symmetry makes the maps
# learn different features and keeps C3 at 1,516 parameters instead of 2,416.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


def scaled_tanh(x: torch.Tensor) -> torch.Tensor:
    """The paper's squashing function f(a) = A tanh(S a), A = 1.7159, S = 2/3 (Appendix A): f(1) = 1, f(-1) = -1,
    and the gain is largest around the targets."""
    return 1.7159 * torch.tanh(x * (2.0 / 3.0))


class Subsampling(nn.Module):
    """S2/S4: each unit adds its 2x2 inputs, multiplies by the map's trainable coefficient, adds its bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.avg_pool2d(x, 2) * 4  # N x C x H/2 x W/2: sums of non-overlapping 2x2 windows
        return s * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class PartialConv(nn.Module):
    """C3: one 5x5 convolution per output map over only the input maps its row of ``table`` names."""

    def __init__(self, table: tuple[tuple[int, ...], ...], kernel_size: int = 5) -> None:
        super().__init__()
        self.table = table
        for j, inputs in enumerate(table):
            self.register_buffer(f"index{j}", torch.tensor(inputs), persistent=False)
        self.convs = nn.ModuleList(nn.Conv2d(len(inputs), 1, kernel_size) for inputs in table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [conv(x.index_select(1, getattr(self, f"index{j}"))) for j, conv in enumerate(self.convs)]
        return torch.cat(outs, dim=1)  # N x len(table) x H-4 x W-4


class LeNet5Classic(nn.Module):
    """C1 - S2 - C3 (partial) - S4 - C5 - F6 - output, with scaled tanh after every layer but the output.

    The paper's output layer is 10 Euclidean RBF units with fixed (untrained) 7x12 bitmap codes; a linear
    layer stands in for it, so the trainable count is the paper's 60,000 plus ``84 * classes + classes``.
    """

    min_size: int | None = None  # from @register_model(min_size=...), set when built by name

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(in_channels, 6, 5)
        self.s2 = Subsampling(6)
        self.c3 = PartialConv(C3_TABLE)
        self.s4 = Subsampling(16)
        self.c5 = nn.Conv2d(16, 120, 5)  # a convolution: on 32x32 input its maps are 1x1
        self.f6 = nn.Linear(120, 84)
        self.fc = nn.Linear(84, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Appendix C: weights uniform in +-2.4 / F_i (F_i the unit's fan-in), so the tanh starts in its
        linear range; biases zero."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                nn.init.uniform_(m.weight, -2.4 / fan_in, 2.4 / fan_in)
                nn.init.zeros_(m.bias)
            elif isinstance(m, Subsampling):
                nn.init.uniform_(m.weight, -2.4 / 4, 2.4 / 4)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = check_input_size(x, self.min_size, "LeNet-5")
        x = pad_to_square(x, 32, "LeNet-5", padded=(28,))  # N x C x 32 x 32
        x = scaled_tanh(self.c1(x))  # N x 6 x 28 x 28
        x = scaled_tanh(self.s2(x))  # N x 6 x 14 x 14
        x = scaled_tanh(self.c3(x))  # N x 16 x 10 x 10
        x = scaled_tanh(self.s4(x))  # N x 16 x 5 x 5
        x = scaled_tanh(self.c5(x))  # N x 120 x 1 x 1
        return torch.flatten(x, 1)  # N x 120

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(scaled_tanh(self.f6(x)))  # N x 84 -> N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.fc.in_features, num_classes)


@register_model(family="lenet", paper="LeCun et al., Gradient-Based Learning Applied to Document Recognition",
                year=1998, input_size=(1, 32, 32), min_size=28)
def lenet5_classic(num_classes: int = 10, in_channels: int = 1, **kwargs) -> LeNet5Classic:
    return LeNet5Classic(num_classes=num_classes, in_channels=in_channels, **kwargs)
