"""BatchNorm statistics of an averaged network, recomputed on the training set or a seeded share of it.

An average of weights (SWA, LAWA, a soup) needs BatchNorm's running statistics of its own (Izmailov et al.
2018): torch's `update_bn` makes one pass over whatever batches it is given. A full pass over the training set
is the exact answer; a few thousand images drawn at random give nearly the same statistics for a fraction of the
time (a cost users of Lightning and Composer asked to cut). The images are drawn with the run's seed, so a rerun
draws the same ones."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import update_bn

from anneal.errors import require

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def has_batch_norm(network: nn.Module) -> bool:
    return any(isinstance(m, BATCH_NORMS) and m.track_running_stats for m in network.modules())


def checked_images(images: int | float | None, key: str = "bn_update_images") -> int | float | None:
    """null (the whole training set), an integer >= 1 (images), or a share in (0, 1)."""
    ok = images is None or (
        not isinstance(images, bool)
        and ((isinstance(images, int) and images >= 1) or (isinstance(images, float) and 0 < images < 1))
    )
    require(ok, key, images, "null (the whole training set), a number of images >= 1, or a share in (0, 1)")
    return images


def drawn(batches: Any, images: int | float | None, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
    """The training batches of `images` images drawn without replacement with `seed` (all of them, in order, for
    None), normalized as training normalizes them and never augmented. Another loader (a user's data module in a
    plain Trainer) is passed through as it serves its batches, up to `images` images (a share needs its size)."""
    if not hasattr(batches, "images"):
        yield from first_images(batches, images)
        return
    total = len(batches.images)
    wanted = total if images is None else min(total, round(images * total) if isinstance(images, float) else images)
    if wanted >= total:
        order = torch.arange(total)
    else:
        order = torch.randperm(total, generator=torch.Generator().manual_seed(int(seed)))[:wanted]
    order = order.to(batches.images.device)
    for start in range(0, wanted, batches.batch_size):
        idx = order[start : start + batches.batch_size]
        yield torch.addcmul(batches.shift, batches.images[idx].float(), batches.scale), batches.labels[idx]


def first_images(loader: Any, images: int | float | None) -> Iterator[tuple[Tensor, Tensor]]:
    """A loader's batches (inputs first, then targets) up to `images` images (None: all of them)."""
    if isinstance(images, float):
        require(hasattr(loader, "dataset"), "bn_update_images", images, "a share needs a loader with a dataset")
        images = round(images * len(loader.dataset))
    left = images
    for batch in loader:
        x, y = batch[0], batch[1]
        if left is not None:
            if left <= 0:
                return
            x, y, left = x[:left], y[:left], left - len(x[:left])
        yield x, y


def recompute_bn(
    network: nn.Module, batches: Any, device: torch.device, images: int | float | None = None, seed: int = 0
) -> tuple[int, float]:
    """Recompute the network's BatchNorm statistics from `images` training images (None: all); returns the images
    used and the seconds taken, (0, 0.0) for a network without BatchNorm, which has nothing to recompute."""
    if not has_batch_norm(network):
        return 0, 0.0
    began = time.perf_counter()
    used = 0

    def counted() -> Iterator[tuple[Tensor, Tensor]]:
        nonlocal used
        for x, y in drawn(batches, images, seed):
            used += len(x)
            yield x, y

    update_bn(counted(), network, device=device)
    return used, time.perf_counter() - began
