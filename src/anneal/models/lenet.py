"""Small CNNs that train at thousands of images per second on a CPU."""

from torch import nn


class LeNet5(nn.Sequential):
    """LeCun's LeNet-5 on 32x32 colour images: conv 6 and 16 channels 5x5, fc 120 / 84 / classes."""

    def __init__(self, num_classes: int = 10):
        super().__init__(
            nn.Conv2d(3, 6, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )


class LeNetConv4(nn.Sequential):
    """The 4-conv net of a Paddle linear warmup + cosine tutorial: 3x3 convs 32 -> 64 s2 -> 64 s2 -> 64 s2
    (32 -> 15 -> 7 -> 4 pixels), fc 1024 -> 64 -> classes; 159,498 parameters."""

    def __init__(self, num_classes: int = 10):
        super().__init__(
            nn.Conv2d(3, 32, 3, stride=1, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=0),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=0),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )
