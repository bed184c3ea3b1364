"""A resume's command line, completed from its run's record. `python train.py hydra.run.dir=RUN ckpt_path=last`
continues the run in RUN with the settings it was started with: run.json records the overrides of the command
line that started it and of each resume, and they are put before the ones given now. An override given now
takes the place of the recorded one of the same key; the resume's own checks then hold it against the
checkpoint as before (a different setting is refused, naming it, unless `resume_changes` lists it)."""

from __future__ import annotations

import re
from pathlib import Path

from anneal.record import RunFiles, RunRecord, UnreadableRun

SETTING = re.compile(r"^(?P<prefix>[+~]*)(?P<key>[^=]+?)(?:=(?P<value>.*))?$", re.S)
MULTIRUN_FLAGS = ("-m", "--multirun")
# a resume's own: each resume says again which checkpoint and which intended changes, if any
OWN = ("ckpt_path", "resume_changes")


def key_of(override: str) -> str:
    """The key (or config group) an override sets: `+trainer.foo=1` → trainer.foo, `schedule=sgdr` → schedule."""
    found = SETTING.match(override)
    return found.group("key").strip() if found else override


def value_of(argv: list[str], key: str) -> str | None:
    """The value given to `key` on the command line (the last one), if any."""
    values = [found.group("value") for a in argv if (found := SETTING.match(a)) and found.group("key") == key]
    return values[-1] if values else None


def recorded_overrides(record: RunRecord) -> list[str]:
    """The run's settings as overrides: its first command line, with each resume's on top (the newest wins)."""
    merged: dict[str, str] = {}
    for overrides in (record.overrides, *(a.get("overrides") or [] for a in record.attempts)):
        for override in overrides:
            key = key_of(override)
            if key not in OWN and not key.startswith("hydra."):
                merged.pop(key, None)
                merged[key] = override
    return list(merged.values())


def run_resumed(argv: list[str]) -> Path | None:
    """The run directory a single-run command line resumes, if that directory has a record: hydra.run.dir with a
    ckpt_path, or the run directory that holds the checkpoint given (RUN/checkpoints/x.ckpt)."""
    arguments = argv[1:]
    ckpt = value_of(arguments, "ckpt_path")
    if any(a in MULTIRUN_FLAGS for a in arguments) or ckpt in (None, "null", "None"):
        return None
    run_dir = value_of(arguments, "hydra.run.dir")
    if run_dir is None and ckpt != "last":
        run_dir = str(Path(ckpt).parent.parent)
    if run_dir is None or not RunFiles(Path(run_dir)).record.is_file():
        return None
    return Path(run_dir)


def completed(argv: list[str]) -> tuple[list[str], list[str]]:
    """argv with the resumed run's recorded overrides before the given ones (any given key replaces the recorded
    one), and the overrides taken from the record; argv as it is when it resumes no recorded run."""
    run_dir = run_resumed(argv)
    if run_dir is None:
        return argv, []
    try:
        record = RunRecord.load(RunFiles(run_dir))
    except UnreadableRun:
        return argv, []  # the run says so when it reads the record
    given = {key_of(a) for a in argv[1:] if not a.startswith("-")}
    taken = [o for o in recorded_overrides(record) if key_of(o) not in given]
    return [argv[0], *taken, *argv[1:]], taken
