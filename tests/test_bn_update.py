"""Cheap BatchNorm updates: a seeded share of the training set, the images and seconds reported, nothing done for a
network without BatchNorm; with every image, the same statistics as torch's full pass, bit for bit."""

import json

import pytest
import torch
from conftest import compose_config
from torch import nn
from torch.optim.swa_utils import update_bn

from anneal.bn_update import drawn, recompute_bn
from anneal.callbacks import EMA, LAWA, SWA
from anneal.data.batches import Batches
from anneal.errors import ConfigError
from anneal.run import run


def training_batches(images: int = 64, batch_size: int = 16) -> Batches:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (images, 3, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (images,), generator=generator)
    return Batches(pixels, labels, batch_size, torch.full((3,), 120.0), torch.full((3,), 60.0))


def bn_network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(10))


def drawn_labels(batches, images, seed):
    return torch.cat([y for _, y in drawn(batches, images, seed)])


def test_the_images_are_drawn_with_the_seed_without_replacement():
    batches = training_batches()
    assert len(drawn_labels(batches, 20, seed=3)) == 20
    assert len(drawn_labels(batches, 0.25, seed=3)) == 16  # a share of the 64 images
    first = torch.cat([x for x, _ in drawn(batches, 20, seed=3)])
    again = torch.cat([x for x, _ in drawn(batches, 20, seed=3)])
    other = torch.cat([x for x, _ in drawn(batches, 20, seed=4)])
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert len({tuple(x.flatten().tolist()) for x in first}) == 20  # no image twice
    assert len(drawn_labels(batches, 1000, seed=3)) == 64  # never more than there are


def test_every_image_gives_torchs_full_pass_bit_for_bit():
    batches = training_batches()
    cheap, full = bn_network(), bn_network()
    cheap(torch.zeros(1, 3, 8, 8)), full(torch.zeros(1, 3, 8, 8))  # materialize the lazy layer
    images, spent = recompute_bn(cheap, batches, torch.device("cpu"), None, seed=0)
    update_bn(iter(batches), full)
    assert images == 64 and spent >= 0
    assert torch.equal(cheap[1].running_mean, full[1].running_mean)
    assert torch.equal(cheap[1].running_var, full[1].running_var)


def test_a_share_of_the_images_reports_what_it_used():
    network = bn_network()
    network(torch.zeros(1, 3, 8, 8))
    images, _ = recompute_bn(network, training_batches(), torch.device("cpu"), 24, seed=1)
    assert images == 24


def test_a_network_without_batch_norm_needs_no_pass():
    assert recompute_bn(nn.Linear(3, 2), training_batches(), torch.device("cpu"), None, seed=0) == (0, 0.0)


@pytest.mark.parametrize("callback", [SWA, EMA, LAWA])
@pytest.mark.parametrize("bad", [0, -5, 1.5, "all", True])
def test_bn_update_images_is_checked_by_every_average(callback, bad):
    with pytest.raises(ConfigError, match="bn_update_images"):
        callback(bn_update_images=bad)
    assert callback(bn_update_images=512).bn_update_images == 512
    assert callback(bn_update_images=0.1).bn_update_images == 0.1


SCHEDULE_FREE = [
    "data=synthetic",
    "data.train_size=64",
    "data.val_size=0",
    "data.test_size=32",
    "data.batch_size=32",
    "model=wrn",
    "model.depth=10",
    "model.widen_factor=1",  # BatchNorm throughout
    "optimizer=sgd_schedulefree",
    "schedule=constant",
    "trainer.max_epochs=1",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def test_a_schedule_free_run_evaluates_after_a_pass_over_the_images_it_was_given(tmp_path):
    run(compose_config(*SCHEDULE_FREE, "+optimizer.bn_update_images=16", output_dir=tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["bn_update_images"] == 16 and results["bn_update_seconds"] >= 0
    assert {"bn_update_images", "bn_update_seconds"} <= set(results["metrics"])


def test_only_a_schedule_free_optimizer_takes_bn_update_images(tmp_path):
    cfg = compose_config(*SCHEDULE_FREE[:8], "+optimizer.bn_update_images=16", output_dir=tmp_path)
    with pytest.raises(ConfigError, match="optimizer.bn_update_images"):
        run(cfg)
