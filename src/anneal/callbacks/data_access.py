"""The data a callback evaluates on after training and recomputes BatchNorm statistics with: anneal's data module
through its splits (the whole set, unaugmented, on every rank), any other through its own dataloaders or the ones
the trainer holds."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import lightning as L
from lightning.pytorch.utilities.model_helpers import is_overridden

from anneal.errors import ConfigError


def data_of(trainer: L.Trainer, datamodule: Any = None) -> Any:
    return datamodule if datamodule is not None else getattr(trainer, "datamodule", None)


def has_splits(datamodule: Any) -> bool:
    """anneal's data module: `batches(split)` and the `splits` it holds."""
    return callable(getattr(datamodule, "batches", None)) and hasattr(datamodule, "splits")


def own_loader(datamodule: Any, method: str) -> Any:
    """A LightningDataModule's own dataloader, when it defines that method (else None)."""
    if isinstance(datamodule, L.LightningDataModule) and is_overridden(method, datamodule, L.LightningDataModule):
        return getattr(datamodule, method)()
    return None


def single(loaders: Any) -> Any:
    """The one dataloader Lightning holds for a stage (None: none, or several)."""
    if isinstance(loaders, (list, tuple)):
        return loaders[0] if len(loaders) == 1 else None
    return loaders


def training_batches(trainer: L.Trainer, datamodule: Any = None) -> Iterable[Any]:
    """What the BatchNorm update passes through the network: the training data."""
    data = data_of(trainer, datamodule)
    if has_splits(data):
        return data.batches("train")  # unsharded: every rank sees the whole training set
    found = own_loader(data, "train_dataloader")  # a fresh loader: not sharded by Lightning's sampler
    if found is None:
        found = single(trainer.train_dataloader)
    if found is None:
        raise ConfigError("", text="the BatchNorm update needs the training data: fit with a training dataloader")
    return found


def heldout_batches(trainer: L.Trainer, datamodule: Any = None) -> dict[str, Iterable[Any]]:
    """The held-out splits an averaged network is scored on, by name: 'val' and 'test', those the data has."""
    data = data_of(trainer, datamodule)
    if has_splits(data):
        return {split: data.batches(split) for split in ("val", "test") if split in data.splits}
    found = {}
    for split, held in (("val", trainer.val_dataloaders), ("test", trainer.test_dataloaders)):
        loader = own_loader(data, f"{split}_dataloader")
        if loader is None:
            loader = single(held)
        if loader is not None:
            found[split] = loader
    return found


class Counted:
    """Batches passed through while counting their images (the first element of each batch)."""

    def __init__(self, batches: Iterable[Any]):
        self.batches, self.images = batches, 0

    def __iter__(self) -> Iterator[Any]:
        for batch in self.batches:
            self.images += len(batch[0] if isinstance(batch, (list, tuple)) else batch)
            yield batch
