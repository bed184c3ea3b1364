"""What the CIFAR papers' networks share: their arguments' checks, `features` then a `classifier`, and the
initialisation their code uses."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from anneal.errors import require


def require_depth(depth: object, per_stage: int, offset: int, allowed: str) -> int:
    """A depth of the form per_stage * n + offset with n >= 1 (`allowed` says so); returns n."""
    require(
        isinstance(depth, int) and depth >= per_stage + offset and (depth - offset) % per_stage == 0,
        "depth",
        depth,
        allowed,
    )
    assert isinstance(depth, int)
    return (depth - offset) // per_stage


def require_count(value: object, key: str) -> None:
    require(isinstance(value, int) and value >= 1, key, value, "must be an integer >= 1")


def require_dropout(dropout: float) -> None:
    require(0 <= dropout < 1, "dropout", dropout, "must be in [0, 1)")


class ConvNet(nn.Module):
    """`features` (convolutions, pooled and flattened), then a `classifier`. Every convolution starts
    He-normal over its outputs, normal(0, sqrt(2 / (k * k * out_channels))) (He et al. 2015), as the papers' code
    initialises it; `zero_bias` also zeroes the biases of these layer types (the authors' code does for some)."""

    def __init__(self, features: Sequence[nn.Module], classifier: nn.Module, zero_bias: tuple[type, ...] = ()):
        super().__init__()
        self.features = nn.Sequential(*features)
        self.classifier = classifier
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            bias = getattr(m, "bias", None)
            if isinstance(m, zero_bias) and isinstance(bias, Tensor):
                nn.init.zeros_(bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
