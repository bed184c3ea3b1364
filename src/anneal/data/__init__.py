"""CIFAR (or a synthetic stand-in) held in memory as uint8 tensors and augmented per batch on tensors: the
files and their download, the batches, and the Lightning data modules."""

from anneal.data.batches import Batches, batches_per_epoch, channel_stats, flip_where, random_crop
from anneal.data.download import Archive, DataMissing, locate, safe_extract
from anneal.data.files import read_cifar10, read_cifar100
from anneal.data.modules import CIFAR10, CIFAR100, ImageData, Synthetic
from anneal.data.synthetic import synthetic_images

# anneal's data modules by name: what a run directory may ask to be rebuilt (never a dotted path from the file)
DATASETS = {cls.__name__: cls for cls in (CIFAR10, CIFAR100, Synthetic)}

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "DATASETS",
    "Archive",
    "Batches",
    "DataMissing",
    "ImageData",
    "Synthetic",
    "batches_per_epoch",
    "channel_stats",
    "flip_where",
    "locate",
    "random_crop",
    "read_cifar10",
    "read_cifar100",
    "safe_extract",
    "synthetic_images",
]
