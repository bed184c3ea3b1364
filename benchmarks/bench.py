"""anneal's speed, as ratios against baselines measured side by side in the same process (never absolute
timings alone: this machine is noisy). Each section alternates the two sides over several rounds and
compares medians.

    python benchmarks/bench.py                      # all sections on the real subset (CIFAR10_ROOT), LeNet
    python benchmarks/bench.py --only a,c --rounds 5
    python benchmarks/bench.py --only a --model wrn16_4 --device cuda --precision bf16-mixed   # on a GPU

  a  anneal's epoch (data, module, callbacks, logging, checkpoint) vs a plain PyTorch loop (plain_loop.py, which
     imports nothing from anneal), same model and images
  b  the batched uint8 tensor pipeline vs a per-sample PIL pipeline (torchvision-style), data only and with LeNet
  c  per-epoch overhead of averaging=swa, averaging=ema and ensemble=snapshot vs none
  d  time from `python train.py` to the first optimizer step (target: 6 s)
  e  snapshot-ensemble evaluation time against the number of members (one forward pass per member)
  f  (a) broken down: a minimal LightningModule, then anneal's module and data, callbacks, logger
     (run explicitly: --only f)
  g  per-epoch cost of the lr of every step (and the loss every log_every_n_steps), sent in one batch per
     epoch, to the CSV logger and to W&B offline (target: 2%)
  h  per-epoch cost of evaluating the test set after every epoch (data.test_every_epoch)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import plain_loop
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from PIL import Image, ImageOps
from startup_between import first_step, lightning_import_seconds

from anneal.config import build_network
from anneal.data import CIFAR10, Synthetic
from anneal.evaluation import ensemble_rows, member_probs
from anneal.run import run
from anneal.schedules import Clock, Cosine, LrPlan, ScheduleLR
from anneal.storage import save_tensors

ROOT = Path(__file__).resolve().parents[1]


class EpochTimer(L.Callback):
    """Whole epochs, start to start: training, validation, epoch-end hooks and the checkpoint included.
    The run builds it from the config; `EpochTimer.latest` is the one it built."""

    latest: EpochTimer | None = None

    def __init__(self):
        self.starts: list[float] = []
        EpochTimer.latest = self

    def on_train_epoch_start(self, trainer, pl_module):
        self.starts.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module):
        self.starts.append(time.perf_counter())

    @property
    def epochs(self) -> list[float]:
        return [b - a for a, b in zip(self.starts, self.starts[1:])]


def data_module(args, **kwargs):
    root = os.environ.get("CIFAR10_ROOT")
    if args.synthetic_size:
        data = Synthetic(train_size=args.synthetic_size, test_size=1017, batch_size=args.batch_size, **kwargs)
    elif root:
        data = CIFAR10(root=root, download=False, batch_size=args.batch_size, **kwargs)
    else:
        data = Synthetic(train_size=5170, test_size=1017, batch_size=args.batch_size, **kwargs)
    data.setup()
    return data


def config(args, out: Path, *overrides: str):
    if args.synthetic_size or not os.environ.get("CIFAR10_ROOT"):
        data = ["data=synthetic", f"data.train_size={args.synthetic_size or 5170}", "data.test_size=1017"]
    else:
        data = [f"data.root={os.environ['CIFAR10_ROOT']}"]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            [
                *data,
                f"model={args.model}",
                f"data.batch_size={args.batch_size}",
                "logger=csv",
                f"trainer.max_epochs={args.epochs}",
                f"trainer.precision={args.precision}",
                f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
                f"model.compile={str(args.compile).lower()}",
                f"output_dir={out}",
                *overrides,
            ],
        )
    with open_dict(cfg):
        cfg.callbacks.epoch_timer = {"_target_": f"{EpochTimer.__module__}.EpochTimer"}
    return cfg


def anneal_epochs(args, *overrides: str) -> list[float]:
    """Per-epoch times of a real anneal run (the default callbacks and a CSV logger), first epoch dropped."""
    with tempfile.TemporaryDirectory() as out:
        run(config(args, Path(out), *overrides))
    return EpochTimer.latest.epochs[1:]


def plain_epochs(args) -> list[float]:
    """plain_loop.py's epoch (its own shuffle, crop, flip and normalization on tensors, its SGD step: no anneal
    code) around the same network, with the same optimizer and a per-step cosine lr."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    network = build_network(config(args, Path(tempfile.gettempdir())), num_classes=10).network
    network = network.to(device)
    if args.device == "cuda":
        network = network.to(memory_format=torch.channels_last)
    if args.compile:
        network = torch.compile(network)
    data = data_module(args, device="cpu")
    images, labels = (t.to(device) for t in data.splits["train"])  # on the GPU as in anneal's GPU path
    normalize = plain_loop.Normalize(data.mean.tolist(), data.std.tolist())
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    cosine = plain_loop.sgdr_lr(0.05, args.epochs)  # one cycle: a cosine over the whole run
    steps_per_epoch = math.ceil(len(images) / args.batch_size)
    autocast = torch.bfloat16 if args.precision == "bf16-mixed" else None
    times = []
    for epoch in range(args.epochs):
        started = time.perf_counter()
        batches = plain_loop.shuffled_batches(images, labels, args.batch_size, generator, normalize)
        lr_at_step = partial(plain_loop.lr_within_epoch, cosine, epoch, steps_per_epoch)
        plain_loop.train_epoch(network, optimizer, batches, lr_at_step, device, autocast)
        if args.device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return times[1:]


def rounds(args, sides: dict) -> dict[str, float]:
    """Median per-epoch seconds of each side over args.rounds rounds. The order of the sides rotates from
    round to round: in one process, whatever runs later in a round was measured slower by a few percent."""
    samples = {name: [] for name in sides}
    names = list(sides)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            samples[name] += sides[name]()
    return {name: statistics.median(values) for name, values in samples.items()}


def section_a(args) -> list[dict]:
    # the plain loop evaluates nothing, so anneal's per-epoch test evaluation is off here; (h) measures it
    anneal = partial(anneal_epochs, args, "data.test_every_epoch=false")
    medians = rounds(args, {"plain": lambda: plain_epochs(args), "anneal": anneal})
    images = data_module(args).splits["train"][0].shape[0]
    source = f"{images} generated images" if args.synthetic_size else f"{images} real images"
    return [
        {
            "what": f"(a) anneal epoch / plain PyTorch epoch, {args.model}, batch {args.batch_size}, {source}",
            "ratio": medians["anneal"] / medians["plain"],
            "target": "<= 1.10",
            "detail": f"plain {medians['plain']:.3f} s ({images / medians['plain']:.0f} img/s), "
            f"anneal {medians['anneal']:.3f} s ({images / medians['anneal']:.0f} img/s)",
        }
    ]


class PerSampleCIFAR(torch.utils.data.Dataset):
    """The torchvision-style pipeline: PIL image per sample, pad + random crop, random flip, to tensor,
    normalize; batched by a DataLoader."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
        self.images = images.permute(0, 2, 3, 1).numpy()  # N x 32 x 32 x 3, as the files decode to
        self.labels, self.mean, self.std = labels, mean.view(3, 1, 1), std.view(3, 1, 1)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        image = ImageOps.expand(Image.fromarray(self.images[i]), border=4, fill=0)
        dx, dy = np.random.randint(0, 9, size=2)
        image = image.crop((dx, dy, dx + 32, dy + 32))
        if np.random.rand() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - self.mean) / self.std, self.labels[i]


def one_epoch(batches, network=None, optimizer=None) -> float:
    started = time.perf_counter()
    for x, y in batches:
        if network is not None:
            loss = F.cross_entropy(network(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - started


def section_b(args) -> list[dict]:
    data = data_module(args, device="cpu")
    images, labels = data.splits["train"]
    tensor_batches = data.batches("train", train=True, batch_size=args.batch_size)
    per_sample = torch.utils.data.DataLoader(
        PerSampleCIFAR(images, labels, data.mean, data.std), batch_size=args.batch_size, shuffle=True, num_workers=0
    )
    network = build_network(config(args, Path(tempfile.gettempdir())), num_classes=10).network
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9)
    medians = rounds(
        args,
        {
            "tensor": lambda: [one_epoch(tensor_batches)],
            "per_sample": lambda: [one_epoch(per_sample)],
            "tensor+net": lambda: [one_epoch(tensor_batches, network, optimizer)],
            "per_sample+net": lambda: [one_epoch(per_sample, network, optimizer)],
        },
    )
    n = len(images)
    rate = {k: n / v for k, v in medians.items()}
    return [
        {
            "what": "(b) batched uint8 tensor pipeline / per-sample PIL pipeline, data only (throughput)",
            "ratio": rate["tensor"] / rate["per_sample"],
            "target": ">= 5",
            "detail": f"tensor {rate['tensor']:.0f} img/s, per-sample {rate['per_sample']:.0f} img/s",
        },
        {
            "what": f"(b) the same with {args.model} training (throughput)",
            "ratio": rate["tensor+net"] / rate["per_sample+net"],
            "target": "(context)",
            "detail": f"tensor {rate['tensor+net']:.0f} img/s, per-sample {rate['per_sample+net']:.0f} img/s",
        },
    ]


def section_c(args) -> list[dict]:
    cyclic = ["schedule=sgdr", "schedule.T_0=1", "schedule.T_mult=1"]  # a cycle end, a snapshot, every epoch
    variants = {
        "none": [],
        "swa": ["averaging=swa", "averaging.swa_start=0", "averaging.swa_freq=1"],
        "ema": ["averaging=ema"],
        "snapshot": ["ensemble=snapshot"],
    }
    medians = rounds(args, {k: partial(anneal_epochs, args, *cyclic, *v) for k, v in variants.items()})
    return [
        {
            "what": f"(c) per-epoch overhead of {k} ({'every step' if k != 'snapshot' else 'one file per epoch'})",
            "ratio": medians[k] / medians["none"],
            "target": "<= 1.02",
            "detail": f"{medians[k]:.3f} s vs {medians['none']:.3f} s",
        }
        for k in ("swa", "ema", "snapshot")
    ]


def section_g(args) -> list[dict]:
    """The per-step curves on and off, with each logger; W&B offline (its process, its file) is the costly one."""
    loggers = {"csv": [], "wandb": ["logger=wandb", "logger.mode=offline"]}
    sides = {}
    for name, logger in loggers.items():
        sides[f"{name} curves"] = partial(anneal_epochs, args, *logger)
        sides[f"{name} none"] = partial(anneal_epochs, args, *logger, "~callbacks.step_curves")
    medians = rounds(args, sides)
    return [
        {
            "what": f"(g) per-epoch cost of the lr of every step ({name} logger)",
            "ratio": medians[f"{name} curves"] / medians[f"{name} none"],
            "target": "<= 1.02",
            "detail": f"{medians[f'{name} curves']:.3f} s vs {medians[f'{name} none']:.3f} s",
        }
        for name in loggers
    ]


def section_h(args) -> list[dict]:
    medians = rounds(
        args,
        {
            "every epoch": partial(anneal_epochs, args),
            "every epoch, eval batch 250": partial(anneal_epochs, args, "data.eval_batch_size=250"),
            "off": partial(anneal_epochs, args, "data.test_every_epoch=false"),
        },
    )
    return [
        {
            "what": f"(h) per-epoch cost of the test-set evaluation after every epoch, {name}",
            "ratio": medians[name] / medians["off"],
            "target": "(reported)",
            "detail": f"{medians[name]:.3f} s vs {medians['off']:.3f} s",
        }
        for name in ("every epoch", "every epoch, eval batch 250")
    ]


WANDB_START = "r = wandb.init(project='bench', mode='offline', dir={out!r}); w += time.perf_counter() - s; r.finish()"
WANDB_ORDERS = {  # w: seconds spent in W&B's import and run start, the Lightning import between them excluded
    # (what train.py does for a W&B run: anneal/wandb_start.py)
    "W&B imported before Lightning": "s = time.perf_counter(); import wandb, wandb.sdk.launch.inputs.internal"
    "; w = time.perf_counter() - s; import lightning.pytorch; s = time.perf_counter(); " + WANDB_START,
    "W&B imported after Lightning": "import lightning.pytorch; s = time.perf_counter(); w = 0.0; import wandb; "
    + WANDB_START,
}


def wandb_seconds(order: str) -> float:
    """Seconds of W&B's import and run start in a fresh process."""
    with tempfile.TemporaryDirectory() as out:
        code = f"import time; {WANDB_ORDERS[order].format(out=out)}; print(w)"
        env = {**os.environ, "WANDB_MODE": "offline"}
        done = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
        return float(done.stdout.split()[-1])


def compose_only_seconds() -> float:
    """`python train.py --cfg job`: compose and print the config, no run (Hydra's start, its plugins included)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "train.py"), "--cfg", "job"], check=True, capture_output=True)
    return time.perf_counter() - started


def section_d(args) -> list[dict]:
    seconds, floor = [], []
    for _ in range(args.rounds):
        floor.append(lightning_import_seconds())  # interleaved with the runs: the same load on the machine
        for logger in ("csv", "wandb"):
            seconds.append((logger, *first_step(ROOT, logger)))
    base = statistics.median(floor)
    rows = [
        {
            "what": "(d) a fresh `python -c 'import lightning.pytorch'`",
            "ratio": base,
            "target": "(the floor)",
            "detail": f"median of {args.rounds} runs, seconds",
        }
    ]
    for logger in ("csv", "wandb"):
        median = statistics.median(s for lg, s, _ in seconds if lg == logger)
        rows.append(
            {
                "what": f"(d) `python train.py` to the first optimizer step, logger={logger}",
                "ratio": median,
                "target": "<= floor + 0.5 s",
                "detail": f"median of {args.rounds} runs, seconds; {median - base:+.2f} s after the floor",
            }
        )
    orders = {order: statistics.median(wandb_seconds(order) for _ in range(args.rounds)) for order in WANDB_ORDERS}
    first, after = orders.values()
    rows.append(
        {
            "what": "(d) W&B's import and offline run start, imported before vs after Lightning",
            "ratio": first / after,
            "target": "(reported)",
            "detail": f"{first:.2f} s vs {after:.2f} s, medians of {args.rounds}",
        }
    )
    compose = statistics.median(compose_only_seconds() for _ in range(args.rounds))
    rows.append(
        {"what": "(d) `python train.py --cfg job`", "ratio": compose, "target": "(reported)", "detail": "seconds"}
    )
    walls = {logger: statistics.median(w for lg, _, w in seconds if lg == logger) for logger in ("csv", "wandb")}
    rows.append(
        {
            "what": "(d) the whole 1-epoch run (process start to exit), logger=wandb vs csv",
            "ratio": walls["wandb"] / walls["csv"],
            "target": "(reported)",
            "detail": f"{walls['wandb']:.2f} s vs {walls['csv']:.2f} s, medians of {args.rounds}",
        }
    )
    return rows


def section_e(args) -> list[dict]:
    data = data_module(args, device="cpu")
    network = build_network(config(args, Path(tempfile.gettempdir())), num_classes=10).network
    rows, per_member = [], {}
    with tempfile.TemporaryDirectory() as out:
        files = [save_tensors(network.state_dict(), Path(out) / f"snapshot_{i}.pt") for i in range(8)]
        for members in (1, 2, 4, 8):
            times = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                probs, labels = member_probs(network, files[:members], data.batches("test"), torch.device("cpu"))
                ensemble_rows(probs, labels, list(range(members)))
                times.append(time.perf_counter() - started)
            per_member[members] = statistics.median(times) / members
    for members in (2, 4, 8):
        rows.append(
            {
                "what": f"(e) ensemble evaluation time per member, M={members} vs M=1",
                "ratio": per_member[members] / per_member[1],
                "target": "~1 (linear in M)",
                "detail": f"{per_member[members]:.3f} s per member ({per_member[1]:.3f} s at M=1)",
            }
        )
    return rows


class MinimalModule(L.LightningModule):
    """Just forward, loss, optimizer and per-step schedule: Lightning's own cost, nothing of anneal's."""

    def __init__(self, network, epochs: int, steps_per_epoch: int):
        super().__init__()
        self.network, self.epochs, self.steps_per_epoch = network, epochs, steps_per_epoch

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.network(x), y)

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        clock = Clock(self.steps_per_epoch, self.steps_per_epoch * self.epochs)
        schedule = ScheduleLR(optimizer, LrPlan(clock, 0.05, Cosine(peak=0.05, total=self.epochs)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def minimal_lightning_epochs(args) -> list[float]:
    data = data_module(args, device="cpu")
    batches = data.batches("train", train=True, batch_size=args.batch_size)
    timer = EpochTimer()
    trainer = L.Trainer(
        max_epochs=args.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        accelerator=args.device.replace("cuda", "gpu"),
    )
    network = build_network(config(args, Path(tempfile.gettempdir())), num_classes=10).network
    trainer.fit(MinimalModule(network, args.epochs, len(batches)), train_dataloaders=batches)
    return timer.epochs[1:]


def section_f(args) -> list[dict]:
    """Where (a)'s difference goes: from a minimal LightningModule up to anneal's default run."""
    bare = ["callbacks=none", "logger=none", "trainer.enable_progress_bar=false", "+trainer.enable_checkpointing=false"]
    sides = {
        "plain": lambda: plain_epochs(args),
        "minimal": lambda: minimal_lightning_epochs(args),
        "module+data": lambda: anneal_epochs(args, *bare),
        "callbacks": lambda: anneal_epochs(args, "logger=none"),
        "default": lambda: anneal_epochs(args),
    }
    medians = rounds(args, sides)
    labels = {
        "minimal": "a minimal LightningModule, no callbacks or logger",
        "module+data": "anneal's Classifier and data module, no callbacks or logger",
        "callbacks": "... plus the default callbacks",
        "default": "... plus the CSV logger: anneal's default run",
    }
    return [
        {
            "what": f"(f) {label}",
            "ratio": medians[key] / medians["plain"],
            "target": "(breakdown of a)",
            "detail": f"{medians[key]:.3f} s per epoch vs plain {medians['plain']:.3f} s",
        }
        for key, label in labels.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="a,b,c,d,e,g,h", help="sections, e.g. a,c (f on request)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4, help="per measured run; the first epoch is dropped")
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--synthetic-size",
        type=int,
        default=0,
        help="train on this many generated images instead of the real subset (50000: full-size epochs)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    sections = {
        "a": section_a,
        "b": section_b,
        "c": section_c,
        "d": section_d,
        "e": section_e,
        "f": section_f,
        "g": section_g,
        "h": section_h,
    }
    rows = [row for key in args.only.split(",") for row in sections[key](args)]
    machine = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}" + (f", {torch.cuda.get_device_name()}" if args.device == "cuda" else "")
    )
    print(f"\n{machine}; {time.strftime('%Y-%m-%d')}; `python benchmarks/bench.py {' '.join(sys.argv[1:])}`\n")
    print("| measurement | value | target | detail |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['what']} | {row['ratio']:.2f} | {row['target']} | {row['detail']} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
