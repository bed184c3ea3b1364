"""Faults at every hook a run passes through, single-process and DDP (two gloo processes on the CPU): a signal
(SIGTERM, Ctrl-C, SIGKILL) to one rank or to the process group, or an exception (tests/faults.py injects them).
Whatever happens, the run ends with the documented exit code, says what there is to resume, leaves no file
half-written, and doing what it says gives exactly the uninterrupted run's results.json and history.csv."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import read_rows, run_cli, run_main, train_process
from faults import ANNEAL_PHASES, LIGHTNING_HOOKS

from anneal.storage import load_tensors

BASE = [
    "data=synthetic",
    "data.train_size=256",
    "data.test_size=64",
    "data.batch_size=32",
    "data.eval_batch_size=16",  # 4 batches per evaluation: a signal can land before the last one
    "model=lenet",
    "logger=csv",
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "schedule=sgdr",
    "schedule.T_0=2",
    "schedule.T_mult=1",
    "ensemble=snapshot",  # a snapshot at the cycle's end (epoch 2) and after the last step (epoch 3)
    "ensemble.include_final=true",
    "averaging=swa",
    "averaging.swa_start=1",
]
DDP = ["trainer=ddp", "trainer.accelerator=cpu"]
# mode: (DDP?, the rank that injects the fault, whom a signal goes to)
MODES = {
    "single": (False, 0, "self"),
    "ddp_rank0": (True, 0, "self"),
    "ddp_rank1": (True, 1, "self"),
    "ddp_group": (True, 1, "group"),  # sent by rank 1, received by both, as a terminal's Ctrl-C
}
STEPS_PER_EPOCH = {False: 8, True: 4}  # 256 images in batches of 32, on one rank or shared by two
EVAL_BATCHES = 4  # every rank evaluates the whole test set
# the call of each hook the fault comes at, in steps (s: optimizer steps per epoch) or counts: mid-epoch 2, the
# second epoch's, the last test batch (Lightning ignores a signal there), the first of what happens once
AT = {
    **{h: lambda s: s + s // 2 for h in LIGHTNING_HOOKS if h.startswith(("on_train_batch", "on_before", "on_after"))},
    **{h: lambda s: EVAL_BATCHES + 2 for h in ("on_validation_batch_start", "on_validation_batch_end")},
    **{h: lambda s: EVAL_BATCHES for h in ("on_test_batch_start", "on_test_batch_end")},
    **{
        h: lambda s: 2
        for h in (
            "on_train_epoch_start",
            "on_train_epoch_end",
            "on_validation_start",
            "on_validation_epoch_start",
            "on_validation_epoch_end",
            "on_validation_end",
            "on_save_checkpoint",
            "snapshot_write",
            "checkpoint_write",
            "history_write",
        )
    },
}
HOOKS = LIGHTNING_HOOKS + ANNEAL_PHASES
RANK0_ONLY = {"ensemble_evaluation", "snapshot_write", "checkpoint_write", "history_write", "results_write"}
EXIT = {"SIGTERM": 143, "SIGINT": 130, "SIGKILL": -signal.SIGKILL}
NAMES = {"SIGTERM": "SIGTERM", "SIGINT": "Ctrl-C"}
VOLATILE = {"wall_seconds", "time_to_first_step", "overrides"}


def settings(mode: str) -> list[str]:
    return BASE + (DDP if MODES[mode][0] else [])


def fault(mode: str, hook: str, action: str, at: int | None = None) -> list[str]:
    ddp, rank, target = MODES[mode]
    at = at if at is not None else AT.get(hook, lambda s: 1)(STEPS_PER_EPOCH[ddp])
    return [
        "+callbacks.fault._target_=faults.Fault",
        f"+callbacks.fault.hook={hook}",
        f"+callbacks.fault.action={action}",
        f"+callbacks.fault.at={at}",
        f"+callbacks.fault.rank={rank}",
        f"+callbacks.fault.target={target}",
    ]


def gone(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return True
    return False


def run_in_own_group(args: list[str], timeout: float = 300) -> tuple[int, str]:
    """train.py in a process group of its own (DDP's ranks with it), as a terminal runs a command; every process
    of the group must have ended when it returns."""
    process = train_process(*args, own_group=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the run hung: {output[-3000:]}")
    deadline = time.monotonic() + 60
    while not gone(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not gone(process.pid):
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"processes of the run outlived it: {output[-3000:]}")
    return process.returncode, output


def outcome(run_dir: Path) -> tuple[dict, list[dict]]:
    results = json.loads((run_dir / "results.json").read_text())
    history = [{k: v for k, v in row.items() if k != "seconds"} for row in read_rows(run_dir / "history.csv")]
    kept = {k: v for k, v in results.items() if k not in VOLATILE}
    kept["metrics"] = {k: v for k, v in results["metrics"].items() if k not in VOLATILE}  # declared where measured
    return kept, history


@pytest.fixture(scope="session")
def references(tmp_path_factory):
    """The uninterrupted run of each setting, made when first needed."""
    made: dict[bool, tuple[dict, list[dict]]] = {}

    def reference(ddp: bool) -> tuple[dict, list[dict]]:
        if ddp not in made:
            run_dir = tmp_path_factory.mktemp("reference")
            args = [*BASE, *(DDP if ddp else []), f"hydra.run.dir={run_dir}"]
            done = run_cli(*args, timeout=600) if ddp else run_main(*args)
            assert done.returncode == 0, done.stderr[-3000:]
            made[ddp] = outcome(run_dir)
        return made[ddp]

    return reference


def no_half_written_file(run_dir: Path) -> None:
    for path in [*run_dir.rglob("*.ckpt"), *run_dir.rglob("*.pt")]:
        if not path.name.startswith("."):
            load_tensors(path)  # raises on a truncated file
    if (run_dir / "results.json").exists():
        json.loads((run_dir / "results.json").read_text())
    if (run_dir / "history.csv").exists():
        rows = read_rows(run_dir / "history.csv")
        assert all(None not in row.values() for row in rows), rows


def check_fault(mode: str, hook: str, action: str, run_dir: Path, references, at: int | None = None) -> str:
    """Injects the fault, checks what the run did, follows its advice; returns what happened, for the report."""
    ddp, rank, target = MODES[mode]
    args = [*settings(mode), *fault(mode, hook, action, at), f"hydra.run.dir={run_dir}"]
    if in_process(mode, action):
        done = run_main(*args)
        code, output = done.returncode, done.stdout + done.stderr
    else:
        code, output = run_in_own_group(args)
    checkpoint = (run_dir / "checkpoints" / "last.ckpt").is_file()
    if action in NAMES:
        assert code == EXIT[action], output[-3000:]
        stops = [line for line in output.splitlines() if line.startswith("anneal: error: stopped by")]
        assert len(stops) == 1, output[-3000:]  # from rank 0 only
        assert stops[0].startswith(f"anneal: error: stopped by {NAMES[action]} during"), stops[0]
        if checkpoint:
            assert f"hydra.run.dir={run_dir} ckpt_path=last" in stops[0], stops[0]
        else:
            assert "nothing to resume" in stops[0], stops[0]
        assert "Traceback" not in output, output[-3000:]
        assert not list(run_dir.rglob(".*.tmp")), "a temporary file was left behind"
    elif action == "SIGKILL" and (target == "group" or rank == 0):
        assert code == EXIT[action], output[-3000:]
    elif mode == "single":
        assert code == 1 and "FaultInjected" in output, output[-3000:]  # Hydra's traceback of an unexpected error
    else:
        assert code != 0, output[-3000:]  # an exception, or a rank killed under another (Lightning ends them all)
    no_half_written_file(run_dir)
    again = [*settings(mode), f"hydra.run.dir={run_dir}", *(["ckpt_path=last"] if checkpoint else [])]
    again += ["~callbacks.fault"] if checkpoint else []  # a resume keeps its run's recorded settings: not this one
    done = run_cli(*again, timeout=600) if ddp else run_main(*again)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list(run_dir.rglob(".*.tmp"))
    assert outcome(run_dir) == references(ddp)
    return "resumed" if checkpoint else "run again"


def in_process(mode: str, action: str) -> bool:
    """A signal to a single process is taken in this one (train.py's main, run_main); a kill, an exception (the
    real process for exit code 1) and DDP's ranks run as processes."""
    return mode == "single" and action in NAMES


# a representative matrix: the first three in the default suite, the rest with the slow tests
REPRESENTATIVE = [
    ("single", "on_train_batch_end", "SIGINT"),  # mid-epoch: saved there, resumed exactly
    ("single", "on_test_batch_start", "SIGTERM"),  # the final test's last batch: not swallowed
    ("single", "on_train_epoch_end", "raise", 2),  # an unexpected error: Hydra's traceback, exit code 1
]
MORE = [
    ("ddp_group", "on_train_batch_end", "SIGINT"),  # a terminal's Ctrl-C: both ranks, mid-epoch
    ("single", "on_train_start", "SIGTERM"),  # before the first step: nothing to resume
    ("single", "on_validation_batch_end", "SIGTERM", 2),  # epoch 1's validation: stops once its checkpoint is written
    ("single", "results_write", "SIGKILL"),  # killed with results.json written to its temporary name
    ("ddp_rank1", "on_train_batch_start", "SIGTERM"),  # only rank 1 is told
    ("ddp_group", "swa_evaluation", "SIGTERM"),  # outside Lightning's loops, every rank
]


@pytest.mark.parametrize("case", REPRESENTATIVE, ids=["-".join(map(str, c)) for c in REPRESENTATIVE])
def test_a_fault_ends_the_run_as_documented_and_what_it_says_gives_the_uninterrupted_run(tmp_path, references, case):
    mode, hook, action, *at = case
    check_fault(mode, hook, action, tmp_path / "run", references, *at)


@pytest.mark.slow
@pytest.mark.parametrize("case", MORE, ids=["-".join(map(str, c)) for c in MORE])
def test_more_faults_end_the_run_as_documented(tmp_path, references, case):
    mode, hook, action, *at = case
    check_fault(mode, hook, action, tmp_path / "run", references, *at)


MATRIX = [
    (mode, hook, action)
    for mode in MODES
    for hook in HOOKS
    for action in ("SIGTERM", "SIGINT", "SIGKILL", "raise")
    if not (mode == "ddp_rank1" and hook in RANK0_ONLY)  # rank 1 never passes them
]


@pytest.mark.matrix  # some 500 runs, hours on a CPU: run it with `pytest -m matrix` after touching anneal.interrupts
@pytest.mark.parametrize("case", MATRIX, ids=["-".join(c) for c in MATRIX])
def test_every_fault_at_every_hook(tmp_path, references, case):
    check_fault(*case, tmp_path / "run", references)
