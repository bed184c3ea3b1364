"""What a resume may change: only what it can honour exactly (the run's length, where the steps already taken
stay what they were; the ensemble's final evaluation), each change listed on purpose; anything else, and any key
that does not exist, is refused before training with exit code 2, leaving the run's directory as it was."""

import hashlib
import json
import re
import shutil

import pytest
from conftest import FAST, compose_config, read_rows, run_main

from anneal.errors import ConfigError
from anneal.run import run

BASE = [
    "data=synthetic",
    "data.train_size=256",
    "data.test_size=64",
    "data.batch_size=32",
    "model=lenet",
    "trainer.deterministic=true",
    *FAST,
]
EXP = [*BASE, "schedule=exp"]  # its lr so far does not depend on the run's length


def contents(directory):
    """Every file of a run directory by its bytes (train.log aside: a refused run writes nothing, not even there)."""
    return {
        p.relative_to(directory): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and "csv" not in p.parts and p.name != "train.log"  # a resume's attempt is logged there
    }


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("two_epochs")
    done = run_main(*EXP, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def resumed(tmp_path, two_epochs, *overrides):
    run_dir = tmp_path / "run"
    shutil.copytree(two_epochs, run_dir)
    before = contents(run_dir)
    done = run_main(*overrides, f"hydra.run.dir={run_dir}", "ckpt_path=last")
    return run_dir, before, done


@pytest.mark.parametrize(
    "change, message",
    [
        (["data.batch_size=64"], "data.batch_size: 32 in the checkpoint, 64 now"),  # steps per epoch: lr 0 after
        (["data.val_size=32"], "data.val_size: 0 in the checkpoint, 32 now"),
        (["schedule=plateau", "data.val_size=32"], "schedule._target_"),
        (["model=lenet_conv4"], "model._target_"),
        (["optimizer=adamw"], "optimizer._target_"),
        (["resume_changes=[data.batch_size]", "data.batch_size=64"], "can honour exactly only changes of"),
        (["resume_changes=[trainer.max_epohs]"], "resume_changes='trainer.max_epohs' is invalid: not a setting"),
        (["resume_changes=5"], "resume_changes=5 is invalid: a list of settings"),
        (["resume_changes=[1]"], "resume_changes=[1] is invalid: a list of settings"),
        (["trainer.max_epochs=1", "resume_changes=[trainer.max_epochs]"], "cannot be shortened below where it is"),
    ],
)
def test_a_change_a_resume_cannot_honour_exactly_is_refused_and_leaves_the_run_as_it_was(
    tmp_path, two_epochs, change, message
):
    overrides = [o for o in EXP if not any(o.startswith(c.split("=")[0] + "=") for c in change)]
    run_dir = tmp_path / "run"
    shutil.copytree(two_epochs, run_dir)
    before = contents(run_dir)
    cfg = compose_config(*overrides, "trainer.max_epochs=2", *change, "ckpt_path=last", output_dir=run_dir)
    with pytest.raises(ConfigError) as refused:  # in this process: the command line's exit code is tested below
        run(cfg)
    assert message in str(refused.value)
    assert contents(run_dir) == before  # run.json, results.json, history, checkpoints: untouched


def test_a_refused_resume_exits_with_2_in_one_line(tmp_path, two_epochs):
    run_dir, before, done = resumed(tmp_path, two_epochs, *BASE, "schedule=exp", "data.batch_size=64")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "data.batch_size: 32 in the checkpoint, 64 now" in done.stderr.strip().splitlines()[-1]
    assert contents(run_dir) == before


def test_extending_a_run_whose_past_lr_depends_on_its_length_is_refused(tmp_path):
    """Cosine (or a start given as a share of training) is defined by the run's length: extending it would change
    the lr of the steps already taken, so the run would match no run started with the new length."""
    cases = [
        (BASE, "changes the part of the run already done: the lr of step 1"),
        (
            [*EXP, "averaging=swa", "averaging.swa_start=50%"],
            "swa_start=50% would start averaging at step 16 instead of 8",
        ),
    ]
    for i, (settings, message) in enumerate(cases):
        run_dir = tmp_path / str(i)
        run(compose_config(*settings, "trainer.max_epochs=2", output_dir=run_dir))
        extended = compose_config(
            *settings,
            "trainer.max_epochs=4",
            "resume_changes=[trainer.max_epochs]",
            "ckpt_path=last",
            output_dir=run_dir,
        )
        with pytest.raises(ConfigError, match=re.escape(message)):
            run(extended)


def test_extending_a_run_equals_the_run_started_with_the_final_length(tmp_path, two_epochs):
    run_dir, _, done = resumed(
        tmp_path, two_epochs, *EXP, "trainer.max_epochs=4", "resume_changes=[trainer.max_epochs]"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = tmp_path / "fresh"
    assert run_main(*EXP, "trainer.max_epochs=4", f"hydra.run.dir={fresh}").returncode == 0
    a, b = (json.loads((d / "results.json").read_text()) for d in (run_dir, fresh))
    for key in ("test/acc", "test/loss", "test/acc_best", "steps", "epochs"):
        assert a[key] == b[key], key
    assert a["arm"] == b["arm"]  # the run now is the 4-epoch arm
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(read_rows(run_dir / "history.csv")) == strip(read_rows(fresh / "history.csv"))
    record = json.loads((run_dir / "run.json").read_text())
    assert len(record["attempts"]) == 2 and record["status"] == "finished"
