import pytest
import torch

from anneal.config import keys
from anneal.errors import ConfigError
from anneal.models import LeNet5, LeNetConv4, WideResNet


def count(model):
    return sum(p.numel() for p in model.parameters())


def wrn_parameters(depth: int, k: int, classes: int = 10) -> int:
    """Closed-form parameter count of a pre-activation WRN, written independently of the model code."""
    n = (depth - 4) // 6
    widths = [16, 16 * k, 32 * k, 64 * k]
    total = 3 * 16 * 9  # stem conv, no bias
    for g in range(3):
        cin, cout = widths[g], widths[g + 1]
        for b in range(n):
            c = cin if b == 0 else cout
            total += 2 * c + c * cout * 9 + 2 * cout + cout * cout * 9  # bn1, conv1, bn2, conv2
            total += c * cout if b == 0 and (c != cout or g > 0) else 0  # 1x1 projection
    return total + 2 * widths[3] + widths[3] * classes + classes


@pytest.mark.parametrize("model, params", [(LeNet5(), 62_006), (LeNetConv4(), 159_498)])
def test_lenets(model, params):
    assert count(model) == params
    assert model(torch.randn(4, 3, 32, 32)).shape == (4, 10)


@pytest.mark.parametrize("depth, k", [(16, 4), (28, 10), (28, 5), (10, 1)])
def test_wide_resnets(depth, k):
    model = WideResNet(depth, k)
    assert count(model) == wrn_parameters(depth, k)
    if depth <= 16:
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    if (depth, k) == (28, 10):
        assert count(model) == 36_479_194  # the published "36.5M"


def test_wrn_dropout_is_optional():
    assert any(isinstance(m, torch.nn.Dropout) for m in WideResNet(16, 1, dropout=0.3).modules())
    assert not any(isinstance(m, torch.nn.Dropout) for m in WideResNet(16, 1).modules())


@pytest.mark.parametrize("depth", [15, 20, 4, 8])
def test_wrn_depth_must_be_6n_plus_4(depth):
    with pytest.raises(ConfigError, match="model.depth"), keys("model"):
        WideResNet(depth, 1)
