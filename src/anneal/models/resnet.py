"""ResNets for CIFAR (He et al. 2016, "Deep Residual Learning for Image Recognition", section 4.2), the
ResNet-110 of Snapshot Ensembles (Huang et al. 2017): a 16-channel stem conv-BN-ReLU, three stages of
16, 32 and 64 channels of post-activation basic blocks, global average pooling and a linear classifier."""

import torch.nn.functional as F
from torch import Tensor, nn

from anneal.models.base import ConvNet, require_depth


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, add the shortcut, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride, self.extra_channels = stride, out_channels - in_channels

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # option A: the shortcut is parameter-free, subsampled and zero-padded with the new channels
        shortcut = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        return F.relu(out + shortcut)


class ResNet(ConvNet):
    """ResNet-`depth`: depth = 6n + 2, n basic blocks per stage; He et al. 2015 ("Delving Deep into Rectifiers")
    initialisation, which the paper uses."""

    def __init__(self, depth: int = 110, num_classes: int = 10):
        n = require_depth(depth, 6, 2, "must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...)")
        layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
        in_channels = 16
        for channels, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                layers.append(BasicBlock(in_channels, channels, stride if i == 0 else 1))
                in_channels = channels
        super().__init__([*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()], nn.Linear(64, num_classes))
