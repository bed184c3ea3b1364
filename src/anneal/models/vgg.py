"""VGG (Simonyan & Zisserman 2015) for 32x32 images, as in the reference code of SWA (Izmailov et al. 2018):
3x3 convs with five 2x2 max-pools down to 512 features at 1x1, then a 512-512 classifier with dropout."""

from torch import nn

from anneal.errors import require
from anneal.models.base import ConvNet

# channels of the 3x3 convs, "M" a 2x2 max-pool: configurations A, B, D and E of the VGG paper
CONFIGURATIONS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(ConvNet):
    """VGG-`depth`, each conv followed by (BatchNorm when `batch_norm`) ReLU."""

    def __init__(self, depth: int = 16, batch_norm: bool = False, num_classes: int = 10):
        require(depth in CONFIGURATIONS, "depth", depth, "one of 11, 13, 16, 19")
        layers: list[nn.Module] = []
        in_channels = 3
        for v in CONFIGURATIONS[depth]:
            if isinstance(v, str):
                layers.append(nn.MaxPool2d(2))
                continue
            # the convs keep their bias even before BatchNorm, as the reference code does (and its parameter count)
            layers.append(nn.Conv2d(in_channels, v, 3, padding=1))
            layers += [nn.BatchNorm2d(v), nn.ReLU()] if batch_norm else [nn.ReLU()]
            in_channels = v
        classifier = nn.Sequential(
            nn.Dropout(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, num_classes),
        )
        # initialised as in the reference code, the convs' biases at zero
        super().__init__([*layers, nn.Flatten()], classifier, zero_bias=(nn.Conv2d,))
