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

from zoo.errors import ZooError
from zoo.registry import register_model


class LeNet5(nn.Module):
    """LeNet-5: conv(6,5x5) - pool - conv(16,5x5) - pool - fc120 - fc84 - fc(num_classes)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.dropout = nn.Dropout(dropout)
        self.fc3 = nn.Linear(84, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if (h, w) == (28, 28):
            x = F.pad(x, (2, 2, 2, 2))  # N x C x 32 x 32: the paper centres digits in a 32x32 field
        elif (h, w) != (32, 32):
            raise ZooError(f"LeNet-5 takes 32x32 input (28x28 is padded to 32x32); got {h}x{w}")
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # N x 6 x 14 x 14
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # N x 16 x 5 x 5
        return torch.flatten(x, 1)  # N x 400

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x))  # N x 120
        x = self.dropout(F.relu(self.fc2(x)))  # N x 84
        return self.fc3(x)  # N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc3 = nn.Linear(self.fc3.in_features, num_classes)


@register_model(family="lenet", paper="LeCun et al., Gradient-Based Learning Applied to Document Recognition",
                year=1998, input_size=(1, 32, 32), min_size=28)
def lenet5(num_classes: int = 10, in_channels: int = 1, **kwargs) -> LeNet5:
    return LeNet5(num_classes=num_classes, in_channels=in_channels, **kwargs)
