"""The command line, checked before Hydra composes it, for what Hydra would otherwise answer with a traceback or
a struct error: any argument of lightning.Trainer may be set as `trainer.X=` (no `+` needed), a misspelt one
is named with the closest real one, a run or sweep directory that is a file is refused, and a resume of a run
with a record gets the run's recorded settings (anneal.resume_line); and how a run that raised ends the command:
one line and an exit code (2 a refusal, 3 a stopped training, 130 / 143 a signal; a signal stops a whole sweep).

Importing it changes nothing in the process (train.py blocks the signals, as a script, before any thread exists),
so tests and other entry points share the same mapping in-process."""

from __future__ import annotations

import difflib
import inspect
import logging
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


def stopped(signal_name: str, phase: str, run_dir: str) -> str:
    """What a stop by a signal left, and how to go on."""
    resume = f"hydra.run.dir={run_dir} ckpt_path=last"
    if phase == "the LR range test" or not (Path(run_dir) / "checkpoints" / "last.ckpt").is_file():
        return f"stopped by {signal_name} during {phase}: no checkpoint was written, nothing to resume; run it again"
    if phase == "the final evaluation":
        return (
            f"stopped by {signal_name} during the final evaluation: training had finished and "
            f"checkpoints/last.ckpt holds it; evaluate again with {resume}"
        )
    return f"stopped by {signal_name} during {phase}: checkpoints/last.ckpt holds the run so far; resume with {resume}"


def ending(error: BaseException, run_dir: str) -> tuple[int, str] | None:
    """How the command line ends a run that raised `error`: its exit code and its one line (after
    `anneal: error: `); None for an error anneal does not expect (Hydra prints its traceback, exit code 1)."""
    # imported here: the command line is checked before torch and Lightning are (they take seconds)
    from anneal.errors import ConfigError, DataError, TrainingStopped
    from anneal.interrupts import EXIT_CODES, NAMES, Interrupted

    if isinstance(error, Interrupted):
        return EXIT_CODES[error.signum], stopped(NAMES[error.signum], error.phase, run_dir)
    if isinstance(error, (ConfigError, DataError)):
        return 2, str(error)
    if isinstance(error, TrainingStopped):
        return 3, str(error)
    return None


def report_ending(error: BaseException, run_dir: str, *, multirun: bool, dir_asked: bool = True) -> int | None:
    """Logs and prints the one line of an expected error (rank 0 only: it says what there is to resume) and
    returns the exit code; None where the error must propagate: an unexpected one, or a job of a sweep (Hydra
    records the job as failed and the sweep's other jobs still run), except a job stopped by a signal, whose code
    is returned (the sweep stops: train.py tells anneal.sweep_control). A refused run whose directory the user
    did not name (`dir_asked`) leaves none behind. DDP's other ranks end with the code, silently."""
    from anneal.console import log_to_files
    from anneal.errors import DirectoryTaken
    from anneal.interrupts import Interrupted, rank

    ended = ending(error, run_dir)
    if ended is None:
        return None
    code, message = ended
    if isinstance(error, Interrupted) and rank() > 0:
        return code  # silently: rank 0 says what was stopped and what there is to resume
    if not isinstance(error, DirectoryTaken):  # its log file is another run's: not a line of this one in it
        if multirun:
            logging.getLogger("anneal").error("%s", message)
        else:
            log_to_files(message)  # the console gets it once, below
    if multirun:
        return code if isinstance(error, Interrupted) else None
    print(f"anneal: error: {message}", file=sys.stderr)
    if not (dir_asked or isinstance(error, (Interrupted, DirectoryTaken))):
        from anneal.run_dir import discard_refused

        discard_refused(Path(run_dir))  # a refused run leaves no directory where none was asked for
    return code
