"""Writing run artifacts so that a crash or kill never leaves a truncated file: write a temporary
file in the same directory, flush it to disk, then rename it over the target (atomic on POSIX).
torch is imported only by the functions that need it: Hydra imports this module at every start (through
anneal's launcher plugins), before a run has imported W&B (wandb_start.py says why that comes first)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from anneal.errors import DataError

if TYPE_CHECKING:
    import torch


def _read_umask() -> int:
    umask = os.umask(0)  # the only way to read it; done once, at import, before other threads start
    os.umask(umask)
    return umask


UMASK = _read_umask()


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp creates 0600; give the file the permissions open() would
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power loss too
    finally:
        os.close(directory)
    return path


def save_tensors(obj: Any, path: str | Path) -> Path:
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def load_tensors(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """A checkpoint, snapshot or averaged model: tensors and plain values only (weights_only), never code.
    A file that cannot be read raises DataError naming it and why."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower():  # torch's refusal; not its advice to load the file unchecked
            raise DataError(
                f"{path} was refused: it holds objects other than tensors and plain values, which "
                f"anneal never loads (a file from elsewhere, or tampered with)"
            ) from None
        raise DataError(f"{path} cannot be read: it is truncated or corrupt ({error})") from None
    except Exception as error:  # empty, cut short by a kill or a full disk, not a torch file: torch's unpickler
        # raises EOFError, RuntimeError, IndexError ... depending on where the bytes stop making sense
        raise DataError(
            f"{path} cannot be read: it is empty, truncated or not a torch file "
            f"({type(error).__name__}); delete it, or use another copy"
        ) from None


def copy_file(source: str | Path, target: str | Path) -> Path:
    with open(source, "rb") as f:
        return atomic_write(target, lambda out: shutil.copyfileobj(f, out))


def save_text(text: str, path: str | Path) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def save_json(obj: Any, path: str | Path) -> Path:
    return save_text(json.dumps(obj, indent=2, default=float) + "\n", path)
