"""The data modules: train / val / test splits held as uint8 tensors, served as `Batches`."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from torch import Tensor

from anneal.data.batches import Batches, batches_per_epoch, channel_stats
from anneal.data.download import CIFAR10 as CIFAR10_ARCHIVE
from anneal.data.download import CIFAR100 as CIFAR100_ARCHIVE
from anneal.data.download import locate
from anneal.data.files import CIFAR100_LABELS, read_cifar10, read_cifar100
from anneal.data.identity import data_identity
from anneal.data.synthetic import synthetic_images
from anneal.errors import require

log = logging.getLogger(__name__)
DEVICES = ("auto", "cpu")


def positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class ImageData(L.LightningDataModule):
    """Train / val / test splits as uint8 tensors and the Batches that serve them. Subclasses load."""

    name = "images"
    num_classes = 10

    def __init__(
        self,
        batch_size: int = 128,
        val_size: int = 0,
        augment: bool = True,
        seed: int = 0,
        eval_batch_size: int = 1000,
        device: str = "auto",
        test_every_epoch: bool = True,
    ):
        super().__init__()
        require(positive_int(batch_size), "batch_size", batch_size, "must be an integer >= 1")
        require(positive_int(eval_batch_size), "eval_batch_size", eval_batch_size, "must be an integer >= 1")
        require(isinstance(val_size, int) and val_size >= 0, "val_size", val_size, "must be an integer >= 0")
        require(device in DEVICES, "device", device, "'auto' (the model's device) or 'cpu'")
        self.batch_size, self.val_size, self.augment, self.seed = batch_size, val_size, augment, seed
        self.eval_batch_size, self.device, self.test_every_epoch = eval_batch_size, device, test_every_epoch
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self.identity: dict[str, object] = {}  # what was loaded (`data_identity`), once set up

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        loaded = self.load()
        train_x, train_y, test_x, test_y = loaded
        self.identity = data_identity(self.name, self.num_classes, loaded)
        require(
            self.val_size < len(train_x),
            "val_size",
            self.val_size,
            f"must be in [0, {len(train_x)}) (the training set has {len(train_x)} images)",
        )
        order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(self.seed))
        val, train = order[: self.val_size], order[self.val_size :]
        self.splits = {"train": (train_x[train], train_y[train]), "test": (test_x, test_y)}
        if self.val_size:
            self.splits["val"] = (train_x[val], train_y[val])
        self.mean, self.std = channel_stats(self.splits["train"][0])
        log.info(
            "data: %s, %d classes, %d train / %d val / %d test images",
            self.name,
            self.num_classes,
            len(train),
            self.val_size,
            len(test_x),
        )

    def describe(self) -> str:
        """What the run trained and was tested on, in words: `CIFAR-10: 5,170 train / 1,017 test images`."""
        self.setup()
        sizes = {split: len(labels) for split, (_, labels) in self.splits.items()}
        held = f" + {sizes['val']:,} val" if "val" in sizes else ""
        return f"{self.name}: {sizes['train']:,} train{held} / {sizes['test']:,} test images"

    def _target_device(self) -> torch.device:
        if self.device == "cpu" or self.trainer is None:
            return torch.device("cpu")
        return self.trainer.strategy.root_device

    def batches(self, split: str, *, train: bool = False, batch_size: int | None = None) -> Batches:
        """Batches over a split; `train` shuffles, augments (if data.augment), shards across ranks and takes
        its epoch from the trainer."""
        self.setup()
        images, labels = self.splits[split]
        device = self._target_device()
        trainer = self.trainer if train else None
        return Batches(
            images.to(device),
            labels.to(device),
            batch_size or self.eval_batch_size,
            self.mean,
            self.std,
            shuffle=train,
            augment=train and self.augment,
            seed=self.seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
            epoch=(lambda: trainer.current_epoch) if trainer else None,
        )

    def batches_per_epoch(self, world_size: int = 1) -> int:
        """Training batches one rank serves per epoch."""
        self.setup()
        return batches_per_epoch(len(self.splits["train"][0]), self.batch_size, world_size)

    def transfer_batch_to_device(
        self, batch: tuple[Tensor, Tensor], device: torch.device, dataloader_idx: int
    ) -> tuple[Tensor, Tensor]:
        x, y = batch
        if x.device == device:  # the images already live on the model's device (data.device=auto)
            return batch
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def train_dataloader(self) -> Batches:
        return self.batches("train", train=True, batch_size=self.batch_size)

    @property
    def heldout(self) -> str | None:
        """The split evaluated after every epoch: the validation split if there is one, else the test set
        (unless test_every_epoch is off)."""
        if self.val_size > 0:
            return "val"
        return "test" if self.test_every_epoch else None

    def val_dataloader(self) -> Batches | list:
        return self.batches(self.heldout) if self.heldout else []

    def test_dataloader(self) -> Batches:
        return self.batches("test")


class CIFAR10(ImageData):
    """CIFAR-10 from `root` (a folder holding cifar-10-batches-py/), downloaded there if absent."""

    name = "CIFAR-10"
    archive = CIFAR10_ARCHIVE

    def __init__(self, root: str = "./data", download: bool = True, download_timeout: float = 5.0, **kwargs):
        super().__init__(**kwargs)
        self.root, self.download, self.download_timeout = root, download, download_timeout

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return read_cifar10(locate(self.archive, self.root, self.download, self.download_timeout))


class CIFAR100(ImageData):
    """CIFAR-100 from `root` (a folder holding cifar-100-python/), downloaded there if absent; `label` "fine"
    for the 100 classes, "coarse" for the 20 superclasses."""

    archive = CIFAR100_ARCHIVE

    def __init__(
        self,
        root: str = "./data",
        download: bool = True,
        download_timeout: float = 5.0,
        label: str = "fine",
        **kwargs: Any,
    ):
        require(label in CIFAR100_LABELS, "label", label, f"one of {tuple(CIFAR100_LABELS)}")
        super().__init__(**kwargs)
        self.root, self.download, self.download_timeout, self.label = root, download, download_timeout, label
        self.num_classes = CIFAR100_LABELS[label][1]
        self.name = "CIFAR-100" if label == "fine" else "CIFAR-100 (20 coarse superclasses)"

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return read_cifar100(locate(self.archive, self.root, self.download, self.download_timeout), self.label)


class Synthetic(ImageData):
    """Generated images (see `synthetic_images`): no files, no network. Not CIFAR-10."""

    name = "SYNTHETIC (generated gratings, not CIFAR-10)"

    def __init__(self, train_size: int = 5000, test_size: int = 1000, num_classes: int = 10, **kwargs: Any):
        super().__init__(**kwargs)
        require(positive_int(num_classes) and num_classes >= 2, "num_classes", num_classes, "an integer >= 2")
        self.num_classes = num_classes
        require(
            positive_int(train_size) and positive_int(test_size),
            "train_size/test_size",
            (train_size, test_size),
            "must be integers >= 1",
        )
        self.train_size, self.test_size = train_size, test_size

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x, y = synthetic_images(self.train_size + self.test_size, seed=12345, num_classes=self.num_classes)
        n = self.train_size
        return x[:n], y[:n], x[n:], y[n:]
