"""A run directory belongs to one live run at a time, and a finished run in it is never overwritten.

The lock is an advisory `flock` on `.anneal.lock`, held for the run's whole life: the kernel drops it when the
process dies however it dies, so a lock left by a killed run is free, and two processes can never both hold it
(a file that merely exists, or holds a process id, could be raced)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from anneal.errors import ConfigError, DirectoryTaken
from anneal.record import RunFiles, RunRecord, UnreadableRun

log = logging.getLogger(__name__)


def holder(lock: Path) -> str:
    """Who holds a lock, as its file says: `process 123 on host`."""
    try:
        text = lock.read_text().split()
    except OSError:
        return "a process"
    return f"process {text[0]} on {text[1]}" if len(text) >= 2 else "a process"


def take_lock(directory: Path) -> IO[str]:
    """Hold `<directory>/.anneal.lock` (flock) and write this process's id and host into it; refuse if a live
    process holds it. Returns the open file: the lock lasts as long as it stays open."""
    directory.mkdir(parents=True, exist_ok=True)
    path = RunFiles(directory).lock
    while True:
        handle = open(path, "a+")  # noqa: SIM115 (held open for the run's life)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise DirectoryTaken(
                "hydra.run.dir",
                str(directory),
                text=(
                    f"{{key}}={directory} is in use by a live run ({holder(path)}, {path}): wait for it, stop it, or "
                    f"choose another directory. If no run uses it (e.g. the process id now belongs to an unrelated "
                    f"program: check with `ps -p <id>`), no process holds the lock and the next run takes it over; "
                    f"on a shared filesystem whose locks do not work, remove {path} by hand"
                ),
            ) from None
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file that its holder removed as we opened it: then take the new one
            break
        handle.close()
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()} {socket.gethostname()}\n")
    handle.flush()
    return handle


def release_lock(handle: IO[str], directory: Path) -> None:
    RunFiles(directory).lock.unlink(missing_ok=True)  # removed while held: a waiting opener sees a new file
    handle.close()


def is_locked(directory: Path) -> bool:
    """Whether a live process holds the directory's lock (a lock file without a holder is a killed run's)."""
    path = RunFiles(directory).lock
    try:
        with open(path) as handle:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except FileNotFoundError:
        return False
    except BlockingIOError:
        return True
    except OSError:  # a filesystem without locks: the file's existence is all there is to go by
        return True
    return False


def remove_partial_writes(directory: Path) -> list[Path]:
    """Temporary files of atomic writes that a kill interrupted (`.<name>.<random>.tmp`): never complete."""
    leftovers = [p for p in directory.rglob(".*.tmp") if p.is_file() and "wandb" not in p.parts]
    for path in leftovers:
        path.unlink(missing_ok=True)
    if leftovers:
        log.info("removed %d unfinished temporary file(s) left by an interrupted write", len(leftovers))
    return leftovers


def what_it_holds(files: RunFiles) -> str | None:
    """What a directory holds that a new run must not overwrite: a finished run, or one that has started."""
    if files.results.exists():
        return f"a finished run ({files.relative(files.results)})"
    if files.last_checkpoint.exists():
        return f"a run that has started ({files.relative(files.last_checkpoint)})"
    if files.record.is_file():
        try:
            record = RunRecord.load(files)
        except UnreadableRun:
            return None
        if record.status == "finished":  # a preview or a range test: their files are theirs
            return f"a finished {record.attempts[-1].get('mode', 'run') if record.attempts else 'run'} (run.json)"
    return None


def refuse_to_overwrite(files: RunFiles, resuming: bool) -> None:
    """A new run (any mode) must not start over a finished or a started one: it would overwrite what they left."""
    if resuming or (held := what_it_holds(files)) is None:
        return
    raise DirectoryTaken(
        "hydra.run.dir",
        str(files.directory),
        text=(
            f"{{key}}={files.directory} already holds {held}: resume a training run with ckpt_path=last, or choose "
            f"another directory (a new run never overwrites one)"
        ),
    )


@contextlib.contextmanager
def claimed(directory: Path, resuming: bool) -> Iterator[RunFiles]:
    """The run directory, held by this run: locked, checked, cleaned of interrupted writes."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError("hydra.run.dir", str(directory), "is a file, not a directory: choose another path")
    handle = take_lock(directory)
    try:
        files = RunFiles(directory)
        refuse_to_overwrite(files, resuming)
        remove_partial_writes(directory)
        yield files
    finally:
        release_lock(handle, directory)


@contextlib.contextmanager
def unclaimed(directory: Path, resuming: bool) -> Iterator[RunFiles]:
    """A process that shares a run directory its rank 0 holds (DDP)."""
    yield RunFiles(directory)


LEFT_BY_A_REFUSAL = {"train.log", "run.json", ".anneal.lock"}  # Hydra's log of the job, the record of the refusal


def discard_refused(directory: Path) -> bool:
    """Remove the directory of a new run refused before it started (a setting, the data) when it holds nothing
    else than what the refusal wrote: mistakes leave no directories behind. True if it was removed."""
    files = RunFiles(directory)
    try:
        names = {p.name for p in directory.iterdir()}
        record = RunRecord.load(files) if files.record.is_file() else None
    except (OSError, UnreadableRun):
        return False
    started = record is not None and (record.status != "failed" or len(record.attempts) > 1)
    if started or not names <= LEFT_BY_A_REFUSAL:
        return False
    for name in names:
        (directory / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # (something appeared in it meanwhile: then it stays)
        directory.rmdir()
    return not directory.exists()
