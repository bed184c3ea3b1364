"""A learnable stand-in for CIFAR made in memory: no files, no network. Not CIFAR."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor


def colour_schemes(count: int) -> Tensor:
    """Per-channel weights of the grating: two fixed schemes, then seeded random ones for more classes."""
    fixed = torch.tensor([[1.0, 0.4, -0.6], [-0.6, 0.4, 1.0]])
    extra = torch.rand(max(count - 2, 0), 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return torch.cat([fixed, extra])


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch's CPU ops on the calling thread only, restoring the thread count after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def synthetic_images(n: int, seed: int, num_classes: int = 10) -> tuple[Tensor, Tensor]:
    """A learnable set of 32x32 colour images made in memory: class c is a grating with one of 5 orientations
    (c % 5) and colour scheme c // 5, with random phase, frequency, contrast and noise. The same bytes in every
    process: its sin and cos run on one thread, because the first multi-threaded sin/cos of a process (MKL's
    vector math in torch 2.13's CPU wheel) now and then comes out less exact on the worker thread (about 1
    process in 10 here), which made two runs of the same settings train on different images."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    angle = (labels % 5).float() * (math.pi / 5) + 0.15 * torch.randn(n, generator=g)
    freq = 0.35 + 0.15 * torch.rand(n, generator=g)
    phase = 2 * math.pi * torch.rand(n, generator=g)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    with one_thread():  # only the trigonometry: the rest, a few times its cost, is exact on every thread
        proj = xx * torch.cos(angle)[:, None, None] + yy * torch.sin(angle)[:, None, None]
        wave = torch.sin(freq[:, None, None] * proj + phase[:, None, None])  # n x 32 x 32
    colour = colour_schemes(math.ceil(num_classes / 5))[labels // 5]  # n x 3
    contrast = 0.5 + 0.5 * torch.rand(n, 1, 1, 1, generator=g)
    images = (
        0.5 + 0.35 * contrast * colour[:, :, None, None] * wave[:, None] + 0.12 * torch.randn(n, 3, 32, 32, generator=g)
    )
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels
