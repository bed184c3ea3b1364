"""Wide Residual Networks (Zagoruyko & Komodakis 2016) with pre-activation basic blocks."""

import torch.nn.functional as F
from torch import Tensor, nn

from anneal.models.base import ConvNet, require_count, require_depth, require_dropout


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3, (dropout), BN-ReLU-conv3x3, plus a 1x1 projection shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        same_shape = in_channels == out_channels and stride == 1
        self.shortcut = None if same_shape else nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        # the projection takes the pre-activated input, as in the reference implementation
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class WideResNet(ConvNet):
    """WRN-d-k: depth d = 6N + 4 (N blocks per group), widths 16, 16k, 32k, 64k."""

    def __init__(self, depth: int = 28, widen_factor: int = 10, dropout: float = 0.0, num_classes: int = 10):
        blocks = require_depth(depth, 6, 4, "must be 6N + 4 with N >= 1 (10, 16, 22, 28, 34, 40, ...)")
        require_count(widen_factor, "widen_factor")
        require_dropout(dropout)
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1, bias=False)]
        for group, stride in zip(range(3), (1, 2, 2)):
            for b in range(blocks):
                in_channels = widths[group] if b == 0 else widths[group + 1]
                layers.append(PreActBlock(in_channels, widths[group + 1], stride if b == 0 else 1, dropout))
        layers += [nn.BatchNorm2d(widths[3]), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        super().__init__(layers, nn.Linear(widths[3], num_classes), zero_bias=(nn.Linear,))
