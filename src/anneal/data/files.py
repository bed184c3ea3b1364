"""Reading the CIFAR files: the pickled batches of the `cifar-10-batches-py` and `cifar-100-python` layouts,
through an unpickler that builds only what such a file holds.

Read directly, not through torchvision, whose wheels break a CPU-only torch and whose CIFAR10 class
refuses files whose MD5 differs from the official ones, such as the real-image subset used in tests.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from anneal.errors import DataError

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST_FILE = "test_batch"
CIFAR100_LABELS = {"fine": ("fine_labels", 100), "coarse": ("coarse_labels", 20)}  # the 100 classes, or 20 superclasses


class BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR batch holds (a dict of numpy arrays, lists and strings) and nothing else:
    a booby-trapped file under the data root cannot run code."""

    ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> type:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a CIFAR batch")
        return super().find_class(module, name)


def unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            entry = BatchUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise DataError(f"CIFAR file missing: {path}") from None
    except Exception as e:  # truncated pickle, refused class ...
        raise DataError(
            f"CIFAR file {path} is corrupt or not a CIFAR batch ({type(e).__name__}: {e}); delete it and download again"
        ) from None
    if not isinstance(entry, dict):
        raise DataError(f"CIFAR file {path} is corrupt: it holds a {type(entry).__name__}, not a dict")
    return entry


def images_and_labels(path: Path, entry: dict, label_key: str, num_classes: int) -> tuple[Tensor, Tensor]:
    """(uint8 N x 3 x 32 x 32 images, int64 labels) from an unpickled batch, checked."""
    try:
        data = np.asarray(entry["data"])
        raw_labels = np.asarray(entry[label_key])
        if raw_labels.dtype.kind not in "iu":  # 37.5 must not become class 37
            raise DataError(
                f"CIFAR file {path} holds {raw_labels.dtype} labels, not integers: a converted or foreign file; "
                f"use the official files"
            )
        labels = raw_labels.astype(np.int64)
        if data.dtype.kind not in "ui" or (data.size and (data.min() < 0 or data.max() > 255)):
            raise DataError(
                f"CIFAR file {path} holds {data.dtype} pixels, not bytes (0-255): a converted or "
                f"foreign file; use the official files"
            )
        images = data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32)
    except DataError:
        raise
    except Exception as e:  # missing key, wrong shape ...
        raise DataError(
            f"CIFAR file {path} is corrupt or not a CIFAR batch ({type(e).__name__}: {e}); delete it and download again"
        ) from None
    if len(images) != len(labels) or len(labels) == 0 or labels.min() < 0 or labels.max() >= num_classes:
        raise DataError(
            f"CIFAR file {path} is corrupt: {len(images)} images, {len(labels)} labels "
            f"in range [{labels.min(initial=0)}, {labels.max(initial=0)}]"
        )
    return torch.from_numpy(images), torch.from_numpy(labels)


def read_batch_file(path: Path) -> tuple[Tensor, Tensor]:
    """One pickled CIFAR-10 batch -> (uint8 N x 3 x 32 x 32 images, int64 labels)."""
    return images_and_labels(path, unpickle(path), "labels", 10)


def read_cifar10(folder: Path) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train images, train labels, test images, test labels) from a cifar-10-batches-py folder."""
    train = [read_batch_file(folder / name) for name in CIFAR10_TRAIN_FILES]
    test_x, test_y = read_batch_file(folder / CIFAR10_TEST_FILE)
    return torch.cat([x for x, _ in train]), torch.cat([y for _, y in train]), test_x, test_y


def read_cifar100(folder: Path, label: str = "fine") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train images, train labels, test images, test labels) from a cifar-100-python folder; `label` is
    "fine" (100 classes) or "coarse" (20 superclasses)."""
    key, classes = CIFAR100_LABELS[label]
    train_x, train_y = images_and_labels(folder / "train", unpickle(folder / "train"), key, classes)
    test_x, test_y = images_and_labels(folder / "test", unpickle(folder / "test"), key, classes)
    return train_x, train_y, test_x, test_y
