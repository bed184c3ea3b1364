"""Pre-activation ResNets for CIFAR (He et al. 2016, "Identity Mappings in Deep Residual Networks"), the
PreResNet-110 and PreResNet-164 of SWA (Izmailov et al. 2018): a 16-channel stem conv, three stages of
16, 32 and 64 planes, a final BN-ReLU, global average pooling and a linear classifier."""

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from anneal.errors import require
from anneal.models.base import ConvNet

# He et al. use basic blocks up to 110 layers and bottlenecks from 164 on
FIRST_BOTTLENECK_DEPTH = 164
EXAMPLE_DEPTHS = {"basic": "20, 32, 44, 56, 110, ...", "bottleneck": "164, 1001, ..."}


def basic_branch(in_channels: int, planes: int, stride: int) -> nn.Sequential:
    """conv3x3, BN-ReLU-conv3x3: `planes` channels out."""
    return nn.Sequential(
        nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(planes),
        nn.ReLU(),
        nn.Conv2d(planes, planes, 3, padding=1, bias=False),
    )


def bottleneck_branch(in_channels: int, planes: int, stride: int) -> nn.Sequential:
    """conv1x1, BN-ReLU-conv3x3 (strided), BN-ReLU-conv1x1: 4 * `planes` channels out."""
    return nn.Sequential(
        nn.Conv2d(in_channels, planes, 1, bias=False),
        nn.BatchNorm2d(planes),
        nn.ReLU(),
        nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(planes),
        nn.ReLU(),
        nn.Conv2d(planes, 4 * planes, 1, bias=False),
    )


class PreActBlock(nn.Module):
    """BN-ReLU, then the residual branch, plus the identity or, when the shape changes, a 1x1 projection."""

    def __init__(self, branch: nn.Sequential, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.branch = branch
        same_shape = in_channels == out_channels and stride == 1
        self.shortcut = None if same_shape else nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(x))
        # the projection takes the pre-activated input, as in the WRN and He et al.'s own code
        shortcut = x if self.shortcut is None else self.shortcut(out)
        return self.branch(out) + shortcut


class PreResNet(ConvNet):
    """PreResNet-`depth`: depth = 6n + 2 with basic blocks, 9n + 2 with bottlenecks (n blocks per stage).
    `block="auto"` takes bottlenecks from depth 164 on, so that 110 and 164 are the networks of the paper."""

    def __init__(self, depth: int = 110, num_classes: int = 10, block: Literal["basic", "bottleneck", "auto"] = "auto"):
        require(block in ("basic", "bottleneck", "auto"), "block", block, 'one of "basic", "bottleneck", "auto"')
        require(isinstance(depth, int), "depth", depth, "must be an integer")
        kind = block if block != "auto" else "bottleneck" if depth >= FIRST_BOTTLENECK_DEPTH else "basic"
        # three stages of n blocks of 2 (basic) or 3 (bottleneck) convs; the stem conv and the classifier make 2
        convs = 6 if kind == "basic" else 9
        auto_note = (
            f' (block="auto" takes bottlenecks from depth {FIRST_BOTTLENECK_DEPTH} on)' if block == "auto" else ""
        )
        require(
            depth > 2 and (depth - 2) % convs == 0,
            "depth",
            depth,
            f"must be {convs}n + 2 with {kind} blocks ({EXAMPLE_DEPTHS[kind]}){auto_note}",
        )
        n = (depth - 2) // convs
        make_branch, expansion = (basic_branch, 1) if kind == "basic" else (bottleneck_branch, 4)
        layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, padding=1, bias=False)]
        in_channels = 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                s = stride if i == 0 else 1
                layers.append(PreActBlock(make_branch(in_channels, planes, s), in_channels, planes * expansion, s))
                in_channels = planes * expansion
        layers += [nn.BatchNorm2d(in_channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        super().__init__(layers, nn.Linear(in_channels, num_classes))  # initialised as in the SWA reference code
