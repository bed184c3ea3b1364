"""A plain PyTorch training loop on CIFAR-10 that shares no code with anneal: the reference that anneal's
training is checked against (RESULTS.md, "Fidelity: anneal against a plain PyTorch loop") and the baseline of
speed benchmark (a) in bench.py.

    python benchmarks/plain_loop.py --root /tmp/cifar10-full --seed 0 --json plain_0.json
    python benchmarks/plain_loop.py --root /tmp/cifar10-full --schedule sgdr --cycle 10 --json snap_0.json

LeNet-5, SGD (momentum 0.9, weight decay on all parameters), batch 128 with the last partial batch kept, a
4-pixel zero-padded random crop and a horizontal flip drawn per image (padding with black before normalizing,
as torchvision's RandomCrop(32, padding=4) on a PIL image), normalized by the usual CIFAR-10 channel
statistics. `--schedule exp`: lr = lr0 * exp(-k * epoch), set once per epoch; `--schedule sgdr`: cosine from
lr0 to 0 over `--cycle` epochs, restarting, set every step, and the weights at every cycle end are kept and
ensembled (mean softmax), as in Snapshot Ensembles (Huang et al. 2017).
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.247, 0.243, 0.261)
PADDING = 4
Batch = tuple[Tensor, Tensor]


def read_split(folder: Path, names: list[str]) -> tuple[Tensor, Tensor]:
    images, labels = [], []
    for name in names:
        with open(folder / name, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(entry["labels"], dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def read_cifar10(root: str | Path) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Train images, train labels, test images, test labels; images uint8 N x 3 x 32 x 32."""
    folder = Path(root) / "cifar-10-batches-py"
    train = read_split(folder, [f"data_batch_{i}" for i in range(1, 6)])
    return (*train, *read_split(folder, ["test_batch"]))


def lenet5(num_classes: int = 10) -> nn.Sequential:
    """LeNet-5 for 32x32 colour images (conv 6 and 16 channels 5x5, fc 120 / 84 / classes) in torch's default
    initialization; the layer order, and so the state dict's keys, are those of anneal's LeNet5."""
    return nn.Sequential(
        nn.Conv2d(3, 6, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )


class Normalize:
    """uint8 images to float, (x / 255 - mean) / std per channel."""

    def __init__(self, mean: Iterable[float] = CIFAR10_MEAN, std: Iterable[float] = CIFAR10_STD):
        self.mean = torch.tensor(list(mean)).view(1, 3, 1, 1)
        self.std = torch.tensor(list(std)).view(1, 3, 1, 1)

    def __call__(self, images: Tensor) -> Tensor:
        return (images.float() / 255.0 - self.mean.to(images.device)) / self.std.to(images.device)


def crop_and_flip(images: Tensor, generator: torch.Generator) -> Tensor:
    """Each image of a uint8 batch: a 32x32 window at a random offset of its copy padded with 4 black pixels
    on every side, then mirrored left-right with probability 1/2. The draws come from `generator` (on the CPU)
    wherever the images are."""
    b, c, h, w = images.shape
    padded = F.pad(images, (PADDING, PADDING, PADDING, PADDING))
    dy = torch.randint(0, 2 * PADDING + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * PADDING + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    cols = dx[:, None] + torch.arange(w)[None, :]
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # mirroring = reading the columns backwards
    rows = dy[:, None] + torch.arange(h)[None, :]
    index = (rows[:, :, None] * (w + 2 * PADDING) + cols[:, None, :]).to(images.device)  # into a padded channel
    return padded.flatten(2).gather(2, index.view(b, 1, h * w).expand(b, c, h * w)).view(b, c, h, w)


def shuffled_batches(
    images: Tensor,
    labels: Tensor,
    batch_size: int,
    generator: torch.Generator,
    normalize: Normalize,
    augment: bool = True,
) -> Iterator[Batch]:
    """One epoch: a fresh permutation from `generator`, the last batch possibly smaller."""
    order = torch.randperm(len(images), generator=generator).to(images.device)
    for start in range(0, len(images), batch_size):
        idx = order[start : start + batch_size]
        x = images[idx]
        if augment:
            x = crop_and_flip(x, generator)
        yield normalize(x), labels[idx]


def train_epoch(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Batch],
    lr_at_step: Callable[[int], float] | None = None,
    device: torch.device | str = "cpu",
    autocast: torch.dtype | None = None,
) -> tuple[float, float]:
    """One pass of SGD over `batches`; `lr_at_step(i)` (i counts this epoch's batches) sets the lr before each
    step; `autocast`: the forward pass in that precision (torch.bfloat16). Returns the mean training loss and
    accuracy."""
    device = torch.device(device)
    network.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    seen = 0
    for i, (x, y) in enumerate(batches):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if lr_at_step is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at_step(i)
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            logits = network(x)
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
        seen += len(y)
    return (loss_sum / seen).item(), (correct / seen).item()


@torch.no_grad()
def probabilities(network: nn.Module, images: Tensor, normalize: Normalize, batch_size: int = 1000) -> Tensor:
    network.eval()
    chunks = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    return torch.cat([network(normalize(chunk)).softmax(1) for chunk in chunks])


def accuracy(probs: Tensor, labels: Tensor) -> float:
    return (probs.argmax(1) == labels).float().mean().item()


def exp_lr(lr0: float, k: float) -> Callable[[float], float]:
    return lambda t: lr0 * math.exp(-k * t)


def sgdr_lr(lr0: float, cycle: float) -> Callable[[float], float]:
    """Cosine from lr0 to 0 over each cycle of `cycle` epochs (SGDR with T_mult = 1, lr_min = 0)."""
    return lambda t: 0.5 * lr0 * (1.0 + math.cos(math.pi * (t % cycle) / cycle))


def lr_within_epoch(curve: Callable[[float], float], epoch: int, steps_per_epoch: int, step: int) -> float:
    return curve(epoch + step / steps_per_epoch)


def train(
    root: str | Path,
    seed: int = 0,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "exp",
    k: float = 0.1,
    cycle: int = 10,
    normalize: Normalize | None = None,
    initial_state: dict[str, Tensor] | None = None,
    epoch_batches: Callable[[int], Iterable[Batch]] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """A whole run. `initial_state` replaces the initial weights and `epoch_batches(epoch)` the training
    batches (normalized), for experiments that swap one ingredient with another implementation's."""
    normalize = normalize or Normalize()
    train_x, train_y, test_x, test_y = read_cifar10(root)
    torch.manual_seed(seed)
    network = lenet5()
    if initial_state is not None:
        network.load_state_dict(initial_state)
    optimizer = torch.optim.SGD(network.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(train_x) / batch_size)
    curve = exp_lr(lr, k) if schedule == "exp" else sgdr_lr(lr, cycle)
    history, snapshots = [], []
    started = time.perf_counter()
    for epoch in range(epochs):
        epoch_lr = curve(epoch)
        lr_at_step = None
        if schedule == "exp":  # set once per epoch
            for group in optimizer.param_groups:
                group["lr"] = epoch_lr
        else:  # set every step
            lr_at_step = partial(lr_within_epoch, curve, epoch, steps_per_epoch)
        batches = (
            epoch_batches(epoch)
            if epoch_batches
            else shuffled_batches(train_x, train_y, batch_size, generator, normalize)
        )
        loss, train_acc = train_epoch(network, optimizer, batches, lr_at_step)
        test_acc = accuracy(probabilities(network, test_x, normalize), test_y)
        row = {"epoch": epoch + 1, "lr": epoch_lr, "train_loss": loss, "train_acc": train_acc, "test_acc": test_acc}
        history.append(row)
        log(f"epoch {epoch + 1:3d}  lr {epoch_lr:.5f}  train loss {loss:.4f} acc {train_acc:.4f}  test {test_acc:.4f}")
        if schedule == "sgdr" and (epoch + 1) % cycle == 0:
            snapshots.append({name: value.clone() for name, value in network.state_dict().items()})
    result = {
        "seed": seed,
        "schedule": schedule,
        "epochs": epochs,
        "test_acc": history[-1]["test_acc"],
        "seconds": round(time.perf_counter() - started, 1),
        "history": history,
    }
    if snapshots:
        member_probs = []
        for state in snapshots:
            network.load_state_dict(state)
            member_probs.append(probabilities(network, test_x, normalize))
        result["snapshot_acc"] = [accuracy(p, test_y) for p in member_probs]
        result["ensemble_acc"] = accuracy(torch.stack(member_probs).mean(0), test_y)
        log(f"snapshots {result['snapshot_acc']}  ensemble of {len(snapshots)}: {result['ensemble_acc']:.4f}")
    log(f"final test acc {result['test_acc']:.4f}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="the folder holding cifar-10-batches-py/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--schedule", choices=("exp", "sgdr"), default="exp")
    parser.add_argument("--k", type=float, default=0.1, help="exp: lr = lr0 * exp(-k * epoch)")
    parser.add_argument("--cycle", type=int, default=10, help="sgdr: epochs per cosine cycle")
    parser.add_argument("--stats", nargs=6, type=float, metavar="X", help="mean r g b, std r g b (default CIFAR-10's)")
    parser.add_argument("--init", type=Path, help="initial weights (a state dict saved with torch.save)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    result = train(
        args.root,
        seed=args.seed,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        schedule=args.schedule,
        k=args.k,
        cycle=args.cycle,
        normalize=Normalize(args.stats[:3], args.stats[3:]) if args.stats else None,
        initial_state=torch.load(args.init, weights_only=True) if args.init else None,
    )
    result["threads"] = torch.get_num_threads()
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
