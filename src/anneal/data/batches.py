"""Mini-batches over uint8 images held in memory: a seeded shuffle, random crop and flip drawn per image
on tensors, normalized to float on the fly (airbench's way: no per-sample Python, no workers)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

CROP_PADDING = 4


def channel_stats(images: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of uint8 images, in [0, 1] units, accumulated in float64 by chunks."""
    total, squares = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].double()
        total += x.sum((0, 2, 3))
        squares += x.square().sum((0, 2, 3))
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return (mean / 255).float(), (std / 255).float()


def random_crop(images: Tensor, shifts: Tensor, padding: int = CROP_PADDING) -> Tensor:
    """Crop each image of a uint8 batch at its own (dy, dx) offset inside a zero-padded copy."""
    b, _, h, w = images.shape
    windows = F.pad(images, (padding,) * 4).unfold(2, h, 1).unfold(3, w, 1)  # b, c, dy, dx, h, w: a view
    return windows[torch.arange(b, device=images.device), :, shifts[:, 0], shifts[:, 1]]


def flip_where(images: Tensor, flip: Tensor) -> Tensor:
    """Mirror (left-right) the images whose `flip` entry is true."""
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def batches_per_epoch(images: int, batch_size: int, world_size: int = 1) -> int:
    """Batches one rank serves per epoch: an equal share of the images, the last batch possibly smaller."""
    return math.ceil(images // world_size / batch_size)


class Batches:
    """Mini-batches over uint8 images: a seeded shuffle per epoch, random crop + flip per image drawn per
    epoch, normalized to float on the fly. Each DDP rank takes an equal share.

    The epoch comes from `epoch` (Lightning's count, which survives a resume) or, without it, from counting
    passes. Its position is a loader state Lightning saves in checkpoints and restores (`state_dict`), so a
    run resumed mid-epoch sees exactly the batches it would have seen."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        mean: Tensor,
        std: Tensor,
        *,
        shuffle: bool = False,
        augment: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch: Callable[[], int] | None = None,
    ):
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1).to(images.device)
        self.shift = (-mean / std).view(1, -1, 1, 1).to(images.device)
        self.shuffle, self.augment, self.seed = shuffle, augment, seed
        self.rank, self.world_size = rank, world_size
        self.per_rank = len(images) // world_size
        self.current_epoch = epoch
        self.epoch, self.position = -1, 0
        self._resume = False

    def __len__(self) -> int:
        return batches_per_epoch(len(self.images), self.batch_size, self.world_size)

    def _plan(self, epoch: int) -> tuple[Tensor, Tensor, Tensor]:
        """This rank's image order and each image's crop offsets and flips, fixed by (seed, epoch)."""
        n = len(self.images)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        shifts = torch.randint(0, 2 * CROP_PADDING + 1, (n, 2), generator=g)
        flips = torch.rand(n, generator=g) < 0.5
        mine = slice(self.rank, self.per_rank * self.world_size, self.world_size)
        device = self.images.device
        return order[mine].to(device), shifts[mine].to(device), flips[mine].to(device)

    def _start(self) -> int:
        """Begin a pass: the restored epoch from its restored position, else the next epoch from its start."""
        epoch = self.current_epoch() if self.current_epoch else self.epoch + 1
        resuming = self._resume and (self.current_epoch is None or epoch == self.epoch)
        self._resume = False
        if not resuming:
            self.epoch, self.position = epoch, 0
        return self.position

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        start = self._start()
        order, shifts, flips = self._plan(self.epoch)
        for b in range(start, len(self)):
            part = slice(b * self.batch_size, (b + 1) * self.batch_size)
            idx = order[part]
            x = self.images[idx]
            if self.augment:
                x = flip_where(random_crop(x, shifts[part]), flips[part])
            self.position = b + 1
            yield torch.addcmul(self.shift, x.float(), self.scale), self.labels[idx]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`: the rest of that epoch, or the next epoch if it was finished."""
        self.epoch, self.position = state["epoch"], state["position"]
        self._resume = self.position < len(self)
