"""EMA with a decay warmup, against a hand computation on fed weights, and an EMA never evaluated before its
first update."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

import anneal
from anneal.callbacks import EMA
from anneal.errors import ConfigError

FED = [0.0, 10.0, 4.0, -2.0, 8.0, 1.0]  # the network's single weight after each optimizer step


def fed_average(decay: float, warmup: bool) -> list[float]:
    network = nn.Linear(1, 1, bias=False)
    ema = EMA(decay=decay, warmup=warmup)
    # the average as the callback creates it when fitting starts (without a Trainer: the weights are fed by hand)
    ema.average = AveragedModel(network, multi_avg_fn=ema.multi_avg_fn, use_buffers=ema.use_buffers)
    seen = []
    for step, weight in enumerate(FED, start=1):
        with torch.no_grad():
            network.weight.fill_(weight)
        ema.update(network, step)
        seen.append(ema.average.module.weight.item())
    return seen


def by_hand(decay: float, warmup: bool) -> list[float]:
    """The first update copies; the n-th after it: avg = d avg + (1 - d) w, d = min(decay, (1 + n) / (10 + n))."""
    average, seen = FED[0], [FED[0]]
    for n, weight in enumerate(FED[1:], start=1):
        d = min(decay, (1 + n) / (10 + n)) if warmup else decay
        average = d * average + (1 - d) * weight
        seen.append(average)
    return seen


def test_the_warmup_decay_is_min_of_decay_and_one_plus_n_over_ten_plus_n():
    ema = EMA(decay=0.999, warmup=True)
    assert [ema.decay_at(n) for n in (1, 2, 3, 8)] == pytest.approx([2 / 11, 3 / 12, 4 / 13, 9 / 18])
    assert ema.decay_at(100_000) == 0.999
    assert EMA(decay=0.9).decay_at(1) == 0.9  # no warmup: the decay from the first update on


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_with_and_without_warmup_matches_a_hand_computation(warmup):
    assert fed_average(0.5, warmup) == pytest.approx(by_hand(0.5, warmup), rel=1e-6)


def test_the_warmup_forgets_the_first_weights_faster():
    # after the first update the average is w1 = 0 either way; with warmup, the second weight (10) counts 9/11
    assert fed_average(0.9, True)[1] == pytest.approx(10 * 9 / 11, rel=1e-6)
    assert fed_average(0.9, False)[1] == pytest.approx(10 * 0.1, rel=1e-6)


def started(ema: EMA, network: nn.Module) -> EMA:
    """The callback as fitting starts, on a plan handed over beforehand (no Trainer: the steps are fed by hand)."""
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    ema.use_plan(anneal.lr_scheduler(optimizer, "constant", epochs=10, steps_per_epoch=10).plan)
    ema.on_fit_start(None, SimpleNamespace(network=network))
    return ema


def test_the_count_of_updates_survives_a_checkpoint():
    network = nn.Linear(1, 1, bias=False)
    ema = EMA(decay=0.999, warmup=True)
    started(ema, network)
    for step in (1, 2, 3):
        ema.update(network, step)
    restored = EMA(decay=0.999, warmup=True)
    restored.load_state_dict(ema.state_dict())  # before fit starts, as Lightning restores callbacks
    started(restored, network)
    assert restored.updates == ema.updates == 3


def test_an_ema_never_updated_is_never_evaluated():
    ema = EMA(decay=0.99, warmup=True)
    started(ema, nn.Linear(1, 1))
    results = ema.results(SimpleNamespace(), SimpleNamespace(network=nn.Linear(1, 1)), SimpleNamespace())
    assert results == {"ema/n_averaged": 0}  # no accuracy of the initial weights is reported as the EMA's


def test_warmup_must_be_a_flag():
    with pytest.raises(ConfigError, match="warmup"):
        EMA(warmup="yes")
