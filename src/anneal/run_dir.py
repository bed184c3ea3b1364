"""A run directory belongs to one live run at a time, and a finished run in it is never overwritten."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from anneal.errors import ConfigError

log = logging.getLogger(__name__)
LOCK = ".anneal.lock"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def take_lock(directory: Path) -> Path:
    """Create `<directory>/.anneal.lock` holding this process's id; refuse if a live process holds it (a lock
    left by a killed run is taken over)."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = directory / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and alive(pid):
                raise ConfigError(
                    "hydra.run.dir",
                    str(directory),
                    text=(
                        f"{{key}}={directory} is in use by a live run (process {pid}, {lock}): wait for it, stop it, "
                        f"or choose another directory"
                    ),
                ) from None
            lock.unlink(missing_ok=True)  # left behind by a run that was killed
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        return lock
    raise ConfigError("hydra.run.dir", str(directory), text=f"{{key}}={directory}: could not take {lock}")


def remove_partial_writes(directory: Path) -> list[Path]:
    """Temporary files of atomic writes that a kill interrupted (`.<name>.<random>.tmp`): never complete."""
    leftovers = [p for p in directory.rglob(".*.tmp") if p.is_file() and "wandb" not in p.parts]
    for path in leftovers:
        path.unlink(missing_ok=True)
    if leftovers:
        log.info("removed %d unfinished temporary file(s) left by an interrupted write", len(leftovers))
    return leftovers


def refuse_to_overwrite(directory: Path, resuming: bool) -> None:
    """A new run must not start over a finished or a started one: it would overwrite what they left."""
    if resuming:
        return
    for name, what in (("results.json", "a finished run"), ("checkpoints/last.ckpt", "a run that has started")):
        if (directory / name).exists():
            raise ConfigError(
                "hydra.run.dir",
                str(directory),
                text=(
                    f"{{key}}={directory} already holds {what} ({name}): resume it with ckpt_path=last, or choose "
                    f"another directory (a new run never overwrites one)"
                ),
            )


@contextlib.contextmanager
def claimed(directory: Path, resuming: bool) -> Iterator[None]:
    """The run directory, held by this run: locked, cleaned of interrupted writes, checked."""
    lock = take_lock(directory)
    try:
        refuse_to_overwrite(directory, resuming)
        remove_partial_writes(directory)
        yield
    finally:
        lock.unlink(missing_ok=True)


@contextlib.contextmanager
def unclaimed(directory: Path, resuming: bool) -> Iterator[None]:
    """A process that shares a run directory its rank 0 holds (DDP)."""
    yield
