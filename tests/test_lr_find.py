import json
import math

import lightning as L
import pytest
import torch
from conftest import FAST, compose_config

from anneal.lr_find import smoothed, steepest_descent, suggested_range
from anneal.run import run


def lightning_smoothing(raw: list[float], beta: float = 0.98) -> list[float]:
    """What Lightning's LR finder records: a running average divided with the step count off by one."""
    avg, out = 0.0, []
    for k, loss in enumerate(raw):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (k + 2)))
    return out


def correct_smoothing(raw, beta=0.98):
    avg, out = 0.0, []
    for k, loss in enumerate(raw):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (k + 1)))
    return out


def test_smoothed_is_the_bias_corrected_running_average():
    raw = [2.3] * 5 + [2.3 - 0.01 * i for i in range(50)]
    assert smoothed(raw) == pytest.approx(correct_smoothing(raw))
    assert smoothed(raw)[0] == pytest.approx(2.3)  # the first point is the first loss, not half of it


class Linear(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer, self.lr, self.losses = torch.nn.Linear(8, 1), 1e-3, []

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].item())

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(640, 8, generator=g)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)


def test_lightnings_finder_records_an_average_one_step_off(tmp_path):
    """Why anneal smooths the raw losses itself: pins the Lightning behaviour it works around. If this fails,
    Lightning has changed its smoothing; its early stop (which anneal leaves to Lightning) changes with it."""
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        max_epochs=1,
    )
    module = Linear()
    finder = L.pytorch.tuner.Tuner(trainer).lr_find(module, num_training=30, early_stop_threshold=None)
    assert len(finder.results["loss"]) == len(module.losses) == 30
    assert finder.results["loss"] == pytest.approx(lightning_smoothing(module.losses), rel=1e-5)
    assert finder.results["loss"][0] == pytest.approx(module.losses[0] * 0.02 / (1 - 0.98**2), rel=1e-5)


def synthetic_range_test():
    """A plateau with noise, a descent between lr 0.01 and 0.3, then divergence."""
    lrs = [1e-6 * 10 ** (7 * i / 199) for i in range(200)]
    raw = []
    for i, lr in enumerate(lrs):
        fall = 0.5 * min(max(math.log10(lr / 0.01) / math.log10(30), 0), 1)  # 0 below 0.01, 0.5 at 0.3
        blowup = max(0.0, math.log10(lr / 0.3)) * 6
        raw.append(2.3 - fall + blowup + 0.01 * math.sin(i))
    return lrs, correct_smoothing(raw)


def test_suggestions_bracket_the_descent():
    lrs, losses = synthetic_range_test()
    low, high = suggested_range(lrs, losses)
    assert 0.005 < low < 0.03 and 0.2 < high < 0.6
    suggestion = steepest_descent(lrs, losses)
    assert low < suggestion < high
    assert steepest_descent(lrs[:5], losses[:5]) is None


def test_lr_find_mode_writes_picture_and_suggestions(tmp_path):
    cfg = compose_config(
        "mode=lr_find",
        "data=synthetic",
        "data.train_size=1280",
        "data.test_size=100",
        "lr_find.num_training=120",
        *FAST,
        output_dir=tmp_path,
    )
    suggestion = run(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    low, high = results["lr_find/range"]
    assert results["lr_find/suggestion"] == suggestion and 1e-6 <= low < high <= 1.0
    assert (tmp_path / "lr_find.png").stat().st_size > 10_000
    curve = json.loads((tmp_path / "lr_find.json").read_text())
    assert curve["lr"] == sorted(curve["lr"]) and len(curve["lr"]) == results["lr_find/steps"] <= 120
    assert not (tmp_path / "checkpoints").exists()  # a range test is not a training run
