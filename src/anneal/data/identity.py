"""What data a run used, told by its content rather than by where its files were: the data set's name, its sizes
and a fingerprint cheap to compute (every label, and a strided sample of the image bytes). Two runs on different
data never share an arm; the same data found under another path still does."""

from __future__ import annotations

import hashlib

from torch import Tensor

SAMPLED_BYTES = 1 << 20  # of each split's images: about a millisecond of hashing, whatever the data set's size


def fingerprint(*arrays: Tensor) -> str:
    """A short hash of the arrays' shapes, every label and a strided sample of the image bytes (an odd stride: no
    multiple of an image's even size, so that the sample moves across pixels and channels from image to image)."""
    digest = hashlib.sha256()
    for array in arrays:
        flat = array.detach().cpu().contiguous().reshape(-1)
        stride = max(1, flat.numel() // SAMPLED_BYTES) | 1
        digest.update(f"{tuple(array.shape)} {array.dtype} {stride};".encode())
        digest.update(flat[::stride].contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def data_identity(name: str, num_classes: int, arrays: tuple[Tensor, Tensor, Tensor, Tensor]) -> dict[str, object]:
    """The identity of the data a module loaded, (train images, train labels, test images, test labels), before any
    split: a validation split and its seed are settings of the run's arm and seed already."""
    train_x, _, test_x, _ = arrays
    return {
        "name": name,
        "classes": num_classes,
        "train": len(train_x),
        "test": len(test_x),
        "fingerprint": fingerprint(*arrays),
    }
