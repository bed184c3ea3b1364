"""The command line, checked before Hydra composes it, for what Hydra would otherwise answer with a traceback or
a struct error: any argument of lightning.Trainer may be set as `trainer.X=` (no `+` needed), a misspelt one
is named with the closest real one, a run or sweep directory that is a file is refused, and a resume of a run
with a record gets the run's recorded settings (anneal.resume_line)."""

from __future__ import annotations

import difflib
import inspect
import re
import sys
from functools import cache
from pathlib import Path

import yaml

from anneal.resume_line import completed

OVERRIDE = re.compile(r"^trainer\.([A-Za-z_]\w*)=", re.S)
DIRECTORY = re.compile(r"^\+*(hydra\.(?:run|sweep)\.dir)=(.+)$", re.S)


@cache
def trainer_arguments() -> tuple[str, ...]:
    from lightning.pytorch import Trainer  # imported only when a command line needs it: it takes seconds

    return tuple(p for p in inspect.signature(Trainer.__init__).parameters if p != "self")


def configured_trainer_keys(conf: Path) -> set[str]:
    """The keys every `trainer` option sets (conf/trainer/default.yaml, which the others extend)."""
    return set(yaml.safe_load((conf / "trainer" / "default.yaml").read_text()) or {})


def refuse(message: str) -> None:
    print(f"anneal: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def checked_command_line(argv: list[str], conf: Path) -> list[str]:
    """argv with `trainer.X=` turned into `+trainer.X=` for a Trainer argument the config does not list, and a
    resume's recorded settings put before the ones given."""
    argv, recorded = completed(argv)
    if recorded:
        print(f"anneal: resuming with the run's recorded settings: {' '.join(recorded)}", file=sys.stderr)
    configured: set[str] | None = None
    out = []
    for arg in argv:
        if (found := DIRECTORY.match(arg)) and Path(found.group(2)).is_file():
            refuse(f"{found.group(1)}={found.group(2)} is a file, not a directory: choose another path")
        if found := OVERRIDE.match(arg):
            configured = configured if configured is not None else configured_trainer_keys(conf)
            name = found.group(1)
            if name not in configured:
                if name not in trainer_arguments():
                    close = difflib.get_close_matches(name, trainer_arguments(), n=1)
                    hint = f"did you mean trainer.{close[0]}?" if close else "see lightning.Trainer's arguments"
                    refuse(f"trainer.{name} is invalid: not an argument of lightning.Trainer; {hint}")
                arg = "+" + arg
        out.append(arg)
    return out
