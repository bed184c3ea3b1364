"""DenseNets for CIFAR without bottleneck or compression (Huang et al. 2017, "Densely Connected Convolutional
Networks"), e.g. the DenseNet-40 (k = 12) of Snapshot Ensembles (Huang et al. 2017): a 16-channel stem conv,
three dense blocks joined by BN-ReLU-conv1x1-avgpool transitions, a final BN-ReLU, global average pooling
and a linear classifier."""

import torch
from torch import Tensor, nn

from anneal.models.base import ConvNet, require_count, require_depth, require_dropout


def conv_unit(in_channels: int, out_channels: int, kernel_size: int, dropout: float) -> nn.Sequential:
    """BN-ReLU-conv, (dropout)."""
    # no conv bias: every output goes through a BatchNorm next, which has its own
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.ReLU(),
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
    )


class DenseLayer(nn.Module):
    """A 3x3 conv unit whose `growth_rate` new channels are concatenated to its input."""

    def __init__(self, in_channels: int, growth_rate: int, dropout: float):
        super().__init__()
        self.unit = conv_unit(in_channels, growth_rate, 3, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.unit(x)], dim=1)


class DenseNet(ConvNet):
    """DenseNet-`depth` with growth rate k: depth = 3n + 4, n layers per dense block; `dropout` after
    every conv but the first, as in the paper."""

    def __init__(self, depth: int = 40, growth_rate: int = 12, dropout: float = 0.0, num_classes: int = 10):
        n = require_depth(depth, 3, 4, "must be 3n + 4 with n >= 1 (40, 100, ...)")
        require_count(growth_rate, "growth_rate")
        require_dropout(dropout)
        layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, padding=1, bias=False)]
        channels = 16
        for stage in range(3):
            for _ in range(n):
                layers.append(DenseLayer(channels, growth_rate, dropout))
                channels += growth_rate
            if stage < 2:
                layers += [conv_unit(channels, channels, 1, dropout), nn.AvgPool2d(2)]
        layers += [nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        super().__init__(layers, nn.Linear(channels, num_classes))  # initialised as in the authors' code
