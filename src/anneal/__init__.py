"""anneal: learning-rate schedules, warmup, snapshot ensembles and weight averaging on CIFAR-10,
composed with Hydra and trained with Lightning. `python train.py` is the entry point (see README.md)."""

__version__ = "0.1.0"
