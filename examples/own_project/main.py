"""A Lightning project of its own, using anneal's parts: its own network and data (made here), an anneal lr
schedule (SGDR, per optimizer step), SWA and a snapshot ensemble, and anneal's run record, so that its runs pool
into a paired study:

    python examples/own_project/main.py --T_0 2 --seed 0 --out runs/T_0=2/seed_0     # one run
    python examples/own_project/main.py --sweep runs     # T_0 = 1 and 2, seeds 0, 1, 2, then the report
    python -m anneal.report runs/T_0=*/seed_* --out runs/report                        # the report again

No anneal config, no Hydra: a plain `lightning.Trainer`. Each run takes seconds on a CPU."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import anneal
from anneal.callbacks import SWA, SnapshotEnsemble
from anneal.record import RunRecorder, accuracy, loss
from anneal.report.__main__ import main as report

ARMS = (1, 2)  # SGDR's T_0: restarts every epoch against every 2 epochs
SEEDS = (0, 1, 2)  # the same seed gives both arms the same initialization and data order: the report pairs them
EPOCHS = 4


class Blobs(L.LightningDataModule):
    """Three Gaussian classes in 8 dimensions, drawn once from a fixed generator (the same data for every run)."""

    def __init__(self, batch_size: int = 64, train: int = 512, test: int = 256):
        super().__init__()
        self.save_hyperparameters()  # the batch size and the set sizes are part of the arm (`data.*`)
        generator = torch.Generator().manual_seed(1234)
        centres = torch.randn(3, 8, generator=generator) * 1.5
        labels = torch.randint(0, 3, (train + 2 * test,), generator=generator)
        points = centres[labels] + torch.randn(len(labels), 8, generator=generator) * 1.5
        self.sets = {
            "train": TensorDataset(points[:train], labels[:train]),
            "val": TensorDataset(points[train : train + test], labels[train : train + test]),
            "test": TensorDataset(points[train + test :], labels[train + test :]),
        }

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.sets["train"]) / self.hparams.batch_size)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.sets["train"], batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.sets["val"], batch_size=256)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.sets["test"], batch_size=256)


class Classifier(L.LightningModule):
    """A small MLP with BatchNorm, trained with SGD along anneal's SGDR schedule (restarts every T_0 epochs)."""

    def __init__(self, lr: float = 0.1, T_0: float = 2, width: int = 32, seed: int = 0):
        super().__init__()
        self.save_hyperparameters()  # the arm: lr, T_0, width; `seed` is recognised as the seed
        self.network = nn.Sequential(nn.Linear(8, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, 3))

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        x, y = batch
        logits = self.network(x)
        nll = F.cross_entropy(logits, y)
        self.log(f"{split}/loss", nll, on_step=False, on_epoch=True)
        self.log(f"{split}/acc", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
        return nll

    def training_step(self, batch, batch_idx):
        return self.step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self.step(batch, "val")

    def test_step(self, batch, batch_idx):
        self.step(batch, "test")

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
        scheduler = anneal.lr_scheduler(  # the lr at every optimizer step; the peak is the optimizer's lr
            optimizer,
            "sgdr",
            epochs=self.trainer.max_epochs,
            steps_per_epoch=self.trainer.datamodule.steps_per_epoch(),
            T_0=self.hparams.T_0,
            T_mult=1,  # cycles of equal length (the sgdr option's default doubles each one)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def train(out: Path, *, T_0: float = 2, lr: float = 0.1, epochs: int = EPOCHS, seed: int = 0) -> Path:
    """One run into `out` (its own directory): fit, then test; the run record is written as it goes."""
    L.seed_everything(seed, workers=True)
    # what the run's numbers mean: test/acc is the number an arm stands for; test/loss gets a column too
    declared = [accuracy("test/acc", "test accuracy", headline=1), loss("test/loss", "test loss", column=True)]
    recorder = RunRecorder(declared)
    trainer = L.Trainer(
        max_epochs=epochs,
        default_root_dir=out,
        # SWA from half-way (Izmailov et al. 2018) and a snapshot at every cycle end of the schedule (Huang et al.
        # 2017): each finds the lr plan in the module's anneal scheduler and reports its own numbers, which the
        # recorder puts in results.json (the ensemble's accuracy becomes the run's headline)
        callbacks=[SWA(swa_start="50%"), SnapshotEnsemble(), recorder],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    data, module = Blobs(), Classifier(lr=lr, T_0=T_0, seed=seed)
    trainer.fit(module, datamodule=data)
    trainer.test(module, datamodule=data)
    return out


def sweep(out: Path, epochs: int = EPOCHS) -> Path:
    """Every arm with every seed, each run in its own directory, then anneal's report of them in out/report."""
    runs = [train(out / f"T_0={t0}" / f"seed_{s}", T_0=t0, epochs=epochs, seed=s) for t0 in ARMS for s in SEEDS]
    if report([*map(str, runs), "--out", str(out / "report")]) != 0:
        raise SystemExit("the report failed")
    return out / "report"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="one run, into this directory (its own)")
    where.add_argument("--sweep", type=Path, help=f"T_0 in {ARMS} x seeds {SEEDS} into this directory, and the report")
    parser.add_argument("--T_0", type=float, default=2, help="SGDR's first cycle, in epochs")
    parser.add_argument("--lr", type=float, default=0.1, help="the peak lr")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.sweep is not None:
        study = sweep(args.sweep, args.epochs)
        print((study / "study.md").read_text())
        return study
    return train(args.out, T_0=args.T_0, lr=args.lr, epochs=args.epochs, seed=args.seed)


if __name__ == "__main__":
    main()
