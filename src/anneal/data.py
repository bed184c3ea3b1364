"""CIFAR-10 (or a synthetic stand-in) held in memory as uint8 tensors, augmented per batch on tensors.

Reading goes through the `cifar-10-batches-py` layout directly (not torchvision, whose wheels break a
CPU-only torch and whose CIFAR10 class refuses files whose MD5 differs from the official ones, such
as the real-image subset used in tests). Only a downloaded archive is checked against its MD5.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
import shutil
import tarfile
import socket
import tempfile
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from anneal.errors import require

log = logging.getLogger(__name__)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_DIR = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILE = "test_batch"
CROP_PADDING = 4


class DataError(RuntimeError):
    """The data cannot be read or fetched; the message says which file and how to fix it."""


# --- reading and fetching CIFAR-10 ---------------------------------------------------------------


class BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR batch holds (a dict of numpy arrays, lists and strings) and nothing else:
    a booby-trapped file under data.root cannot run code."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a CIFAR batch")
        return super().find_class(module, name)


def read_batch_file(path: Path) -> tuple[Tensor, Tensor]:
    """One pickled CIFAR batch -> (uint8 N x 3 x 32 x 32 images, int64 labels)."""
    try:
        with open(path, "rb") as f:
            entry = BatchUnpickler(f, encoding="latin1").load()
        images = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(entry["labels"], dtype=np.int64)
    except FileNotFoundError:
        raise DataError(f"CIFAR-10 file missing: {path}") from None
    except Exception as e:  # truncated pickle, wrong shape, not a dict ...
        raise DataError(f"CIFAR-10 file {path} is corrupt or not a CIFAR batch ({type(e).__name__}: {e}); "
                        f"delete it and download again") from None
    if len(images) != len(labels) or len(labels) == 0 or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"CIFAR-10 file {path} is corrupt: {len(images)} images, {len(labels)} labels "
                        f"in range [{labels.min(initial=0)}, {labels.max(initial=0)}]")
    return torch.from_numpy(images), torch.from_numpy(labels)


def read_cifar10(folder: Path) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train images, train labels, test images, test labels) from a cifar-10-batches-py folder."""
    train = [read_batch_file(folder / name) for name in TRAIN_FILES]
    test_x, test_y = read_batch_file(folder / TEST_FILE)
    return torch.cat([x for x, _ in train]), torch.cat([y for _, y in train]), test_x, test_y


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a tar archive, refusing members that would land outside `target` or are links."""
    target = target.resolve()
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            destination = (target / member.name).resolve()
            if not destination.is_relative_to(target) or member.issym() or member.islnk() or member.isdev():
                raise DataError(f"refusing to extract {member.name!r} from {archive}: it points outside {target}")
        # Python's own member filter where it exists (3.10.12+, 3.11.4+); the checks above in any case
        tar.extractall(target, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def check_reachable(url: str, timeout: float) -> None:
    """Raise OSError unless the host of `url` accepts a connection within `timeout` seconds, name lookup
    included (urlopen's timeout does not bound the lookup, which can hang on a machine without network)."""
    parts = urlparse(url)
    if parts.scheme not in ("http", "https"):
        return
    outcome: list = []

    def connect():
        try:
            socket.create_connection((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)),
                                     timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(error)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise OSError(f"no answer from {parts.hostname} within {timeout:g} s")
    if outcome[0] is not None:
        raise outcome[0]


def download_cifar10(root: Path, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5, timeout: float = 5.0) -> None:
    """Download the official archive into `root`, check its MD5 and extract it."""
    check_reachable(url, timeout)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        archive = Path(tmp) / "cifar-10-python.tar.gz"
        log.info("downloading CIFAR-10 from %s into %s", url, root)
        with urllib.request.urlopen(url, timeout=30) as response, open(archive, "wb") as out:
            shutil.copyfileobj(response, out)
        if (digest := md5sum(archive)) != md5:
            raise DataError(f"downloaded {url} has MD5 {digest}, expected {md5}: the download is corrupt")
        safe_extract(archive, Path(tmp))
        os.replace(Path(tmp) / CIFAR10_DIR, root / CIFAR10_DIR)


def locate_cifar10(root: str | Path, download: bool = True, timeout: float = 5.0) -> Path:
    """The cifar-10-batches-py folder under `root` (or `root` itself), downloading it if allowed."""
    root = Path(root).expanduser()
    for folder in (root / CIFAR10_DIR, root):
        if (folder / TEST_FILE).exists() or (folder / TRAIN_FILES[0]).exists():
            return folder
    how = (f"Point data.root (or the CIFAR10_ROOT environment variable) at a directory that holds "
           f"{CIFAR10_DIR}/, or train offline on generated images with data=synthetic.")
    if not download:
        raise DataError(f"CIFAR-10 not found under data.root={root} and data.download=false. {how}")
    try:
        download_cifar10(root, timeout=timeout)
    except DataError:
        raise
    except OSError as e:  # no network, DNS failure, timeout, disk full
        raise DataError(f"CIFAR-10 not found under data.root={root} and the download from {CIFAR10_URL} "
                        f"failed ({e}). {how}") from None
    return root / CIFAR10_DIR


# --- synthetic data ----------------------------------------------------------------------------


def synthetic_images(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """A learnable 10-class set of 32x32 colour images made in memory: class c is a grating with one
    of 5 orientations and one of 2 colour schemes, with random phase, frequency, contrast and noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    angle = (labels % 5).float() * (math.pi / 5) + 0.15 * torch.randn(n, generator=g)
    freq = 0.35 + 0.15 * torch.rand(n, generator=g)
    phase = 2 * math.pi * torch.rand(n, generator=g)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    proj = xx * torch.cos(angle)[:, None, None] + yy * torch.sin(angle)[:, None, None]
    wave = torch.sin(freq[:, None, None] * proj + phase[:, None, None])  # n x 32 x 32
    schemes = torch.tensor([[1.0, 0.4, -0.6], [-0.6, 0.4, 1.0]])  # per-channel weight of the grating
    colour = schemes[labels // 5]  # n x 3
    contrast = 0.5 + 0.5 * torch.rand(n, 1, 1, 1, generator=g)
    images = 0.5 + 0.35 * contrast * colour[:, :, None, None] * wave[:, None] + 0.12 * torch.randn(n, 3, 32, 32, generator=g)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels


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


# --- batches -------------------------------------------------------------------------------------


def random_crop(images: Tensor, shifts: Tensor, padding: int = CROP_PADDING) -> Tensor:
    """Crop each image of a uint8 batch at its own (dy, dx) offset inside a zero-padded copy."""
    b, c, h, w = images.shape
    windows = F.pad(images, (padding,) * 4).unfold(2, h, 1).unfold(3, w, 1)  # b, c, dy, dx, h, w: a view
    return windows[torch.arange(b, device=images.device), :, shifts[:, 0], shifts[:, 1]]


def flip_where(images: Tensor, flip: Tensor) -> Tensor:
    """Mirror (left-right) the images whose `flip` entry is true."""
    return torch.where(flip[:, None, None, None], images.flip(3), images)


class Batches:
    """Mini-batches over uint8 images in memory: a seeded shuffle per epoch, random crop + flip per
    image drawn per epoch, normalized to float on the fly. Each DDP rank takes an equal share. Its
    progress goes into checkpoints (through the data module), so a run resumed mid-epoch sees
    exactly the batches it would have seen."""

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, mean: Tensor, std: Tensor, *,
                 shuffle: bool = False, augment: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1):
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1).to(images.device)
        self.shift = (-mean / std).view(1, -1, 1, 1).to(images.device)
        self.shuffle, self.augment, self.seed = shuffle, augment, seed
        self.rank, self.world_size = rank, world_size
        self.per_rank = len(images) // world_size
        self.epoch, self.position = -1, 0
        self._resume = self._epoch_given = False

    batch_sampler = None  # with `sampler`, what Lightning's DataLoader checks read (not a RandomSampler: no shuffle warning)

    @property
    def sampler(self) -> "Batches":
        return self  # Lightning calls loader.sampler.set_epoch(epoch), as for a DistributedSampler

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order and crops the next pass uses (Lightning's count, also after a resume)."""
        if self._resume and epoch == self.epoch:
            return  # resuming mid-epoch: keep the restored position
        self.epoch, self.position, self._resume, self._epoch_given = epoch, 0, False, True

    def __len__(self) -> int:
        return math.ceil(self.per_rank / self.batch_size)

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

    def __iter__(self):
        if not (self._resume or self._epoch_given):  # used outside Lightning: count epochs here
            self.epoch, self.position = self.epoch + 1, 0
        self._resume = self._epoch_given = False
        order, shifts, flips = self._plan(self.epoch)
        for b in range(self.position, len(self)):
            part = slice(b * self.batch_size, (b + 1) * self.batch_size)
            idx = order[part]
            x = self.images[idx]
            if self.augment:
                x = flip_where(random_crop(x, shifts[part]), flips[part])
            self.position = b + 1
            yield torch.addcmul(self.shift, x.float(), self.scale), self.labels[idx]

    def progress(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def resume(self, progress: dict) -> None:
        """Continue from `progress`: the rest of that epoch, or the next epoch if it was finished."""
        self.epoch, self.position = progress["epoch"], progress["position"]
        self._resume = self.position < len(self)


# --- data modules --------------------------------------------------------------------------------


class ImageData(L.LightningDataModule):
    """Train / val / test splits as uint8 tensors and the Batches that serve them. Subclasses load."""

    name = "images"

    def __init__(self, batch_size: int = 128, val_size: int = 0, augment: bool = True, seed: int = 0,
                 eval_batch_size: int = 1000, device: str = "auto"):
        super().__init__()
        require(isinstance(batch_size, int) and batch_size >= 1, "data.batch_size", batch_size, "must be an integer >= 1")
        require(isinstance(val_size, int) and val_size >= 0, "data.val_size", val_size, "must be an integer >= 0")
        require(device in ("auto", "cpu"), "data.device", device, "'auto' (the model's device) or 'cpu'")
        self.batch_size, self.val_size, self.augment, self.seed = batch_size, val_size, augment, seed
        self.eval_batch_size, self.device = eval_batch_size, device
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self._train: Batches | None = None
        self._train_progress: dict | None = None  # restored from a checkpoint before the loader exists

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        train_x, train_y, test_x, test_y = self.load()
        require(self.val_size < len(train_x), "data.val_size", self.val_size,
                f"must be in [0, {len(train_x)}) (the training set has {len(train_x)} images)")
        order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(self.seed))
        val, train = order[: self.val_size], order[self.val_size :]
        self.splits = {"train": (train_x[train], train_y[train]), "test": (test_x, test_y)}
        if self.val_size:
            self.splits["val"] = (train_x[val], train_y[val])
        self.mean, self.std = channel_stats(self.splits["train"][0])
        log.info("data: %s, %d train / %d val / %d test images", self.name, len(train), self.val_size, len(test_x))

    def _target_device(self) -> torch.device:
        if self.device == "cpu" or self.trainer is None:
            return torch.device("cpu")
        return self.trainer.strategy.root_device

    def batches(self, split: str, *, train: bool = False, batch_size: int | None = None) -> Batches:
        """Batches over a split; `train` shuffles, augments (if data.augment) and shards across ranks."""
        self.setup()
        images, labels = self.splits[split]
        device = self._target_device()
        trainer = self.trainer if train else None
        return Batches(images.to(device), labels.to(device), batch_size or self.eval_batch_size, self.mean, self.std,
                       shuffle=train, augment=train and self.augment, seed=self.seed,
                       rank=trainer.global_rank if trainer else 0, world_size=trainer.world_size if trainer else 1)

    def steps_per_epoch(self, world_size: int = 1) -> int:
        self.setup()
        return math.ceil(len(self.splits["train"][0]) // world_size / self.batch_size)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        x, y = batch
        if x.device == device:  # the images already live on the model's device (data.device=auto)
            return batch
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def train_dataloader(self):
        if self._train is None:  # one object for the whole fit: its progress is what checkpoints hold
            self._train = self.batches("train", train=True, batch_size=self.batch_size)
            if self._train_progress is not None:
                self._train.resume(self._train_progress)
        return self._train

    def val_dataloader(self):
        return self.batches("val") if "val" in self.splits else []

    def test_dataloader(self):
        return self.batches("test")

    # Lightning saves and restores these with every checkpoint. (A loader's own state_dict is restored only
    # if Lightning sets the loader up after the restore, which touching estimated_stepping_batches in
    # configure_optimizers, as OneCycleLR-style code does, prevents.)
    def state_dict(self) -> dict:
        return {"train_progress": self._train.progress()} if self._train is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self._train_progress = state.get("train_progress")
        if self._train is not None and self._train_progress is not None:
            self._train.resume(self._train_progress)


class CIFAR10(ImageData):
    """CIFAR-10 from `root` (a folder holding cifar-10-batches-py/), downloaded there if absent."""

    name = "CIFAR-10"

    def __init__(self, root: str = "./data", download: bool = True, download_timeout: float = 5.0, **kwargs):
        super().__init__(**kwargs)
        self.root, self.download, self.download_timeout = root, download, download_timeout

    def load(self):
        folder = locate_cifar10(self.root, self.download, self.download_timeout)
        return read_cifar10(folder)


class Synthetic(ImageData):
    """Generated images (see `synthetic_images`): no files, no network. Not CIFAR-10."""

    name = "SYNTHETIC (generated gratings, not CIFAR-10)"

    def __init__(self, train_size: int = 5000, test_size: int = 1000, **kwargs):
        super().__init__(**kwargs)
        require(train_size >= 1 and test_size >= 1, "data.train_size/test_size", (train_size, test_size), "must be >= 1")
        self.train_size, self.test_size = train_size, test_size

    def load(self):
        x, y = synthetic_images(self.train_size + self.test_size, seed=12345)
        n = self.train_size
        return x[:n], y[:n], x[n:], y[n:]

