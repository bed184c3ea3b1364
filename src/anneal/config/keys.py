"""Where setting errors get their full key: every group is built and used inside `keys(group)`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig

from anneal.data import DataMissing
from anneal.errors import ConfigError, DataError

ALIASES = {"peak": "optimizer.lr", "schedule.peak": "optimizer.lr"}

ROOT_VARIABLES = {"CIFAR-10": "CIFAR10_ROOT", "CIFAR-100": "CIFAR100_ROOT"}


@contextmanager
def keys(group: str = "") -> Iterator[None]:
    """Setting errors raised inside name the full config key; a missing dataset says which settings find it."""
    try:
        yield
    except ConfigError as error:
        full = error.within(group) if group else error
        raise ConfigError(ALIASES.get(full.key, full.key), full.value, full.allowed, text=full.text) from None
    except DataMissing as error:
        off = " and data.download=false" if error.reason is None else f" and the download failed ({error.reason})"
        raise DataError(
            f"{error.archive.name} not found under data.root={error.root}{off}. Point data.root (or the "
            f"{ROOT_VARIABLES.get(error.archive.name, 'data root')} environment variable) at a directory that holds "
            f"{error.archive.folder}/, or train offline on generated images with data=synthetic."
        ) from None


def instantiate(node: Any, **kwargs: Any) -> Any:
    """Hydra's instantiate, letting anneal's own errors (bad settings, unreadable data) through unwrapped."""
    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, (ConfigError, DataError)):
            raise error.__cause__ from None
        cause = error.__cause__ or error  # an unknown setting, a missing module ...: named by its group
        first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        raise ConfigError("", text=f"{{key}} settings are invalid: {type(cause).__name__}: {first_line}") from None


def instantiate_optional(node: DictConfig | None) -> Any:
    """A group option like `averaging=none` is an empty node: nothing to build."""
    return instantiate(node) if node and "_target_" in node else None
