"""Cooldowns branched from one warmup-stable-decay run: each branch is exactly the run of its budget trained from
scratch (the same lr up to its cooldown, the same state there), a normal run directory the report pools with
those runs, while its stable phase is trained once."""

import json
import subprocess
import sys

import pytest
from conftest import FAST, ROOT, read_rows, run_main

from anneal.branch import command
from anneal.branch import main as branch_main
from anneal.record import RunFiles, RunRecord

WSD = [
    "data=synthetic",
    "data.train_size=320",
    "data.test_size=64",
    "data.batch_size=32",  # 10 steps an epoch
    "model=lenet",
    "schedule=wsd",
    "warmup=linear",
    "warmup.epochs=1",
    "trainer.deterministic=true",
    *FAST,
]


def branch_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "anneal.branch", *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )


@pytest.fixture(scope="module")
def stable(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("stable")
    done = run_main(
        *WSD, "trainer.max_epochs=5", "branch=cooldowns", "branch.budgets=[2,4]", f"hydra.run.dir={run_dir}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def test_a_branched_cooldown_is_the_run_of_its_budget_from_scratch(stable, tmp_path, capsys):
    points = json.loads((stable / "results.json").read_text())["branch_points"]
    # the cooldown of a 2-epoch run begins after the 1-epoch warmup and 80% of the remaining epoch: step 18;
    # of a 4-epoch run: 1 + 0.8 * 3 = 3.4 epochs, step 34
    assert [(p["budget"], p["step"]) for p in points] == [(2, 18), (4, 34)]
    done = branch_cli(str(stable))  # the real command (it trains each branch as a train.py process of its own)
    assert done.returncode == 0, done.stderr[-3000:]
    for budget in (2, 4):
        branch = stable / "branches" / f"budget_{budget}"
        scratch = tmp_path / f"scratch_{budget}"
        assert run_main(*WSD, f"trainer.max_epochs={budget}", f"hydra.run.dir={scratch}").returncode == 0
        a, b = (json.loads((d / "results.json").read_text()) for d in (branch, scratch))
        for key in ("test/acc", "test/loss", "test/acc_best", "steps", "epochs", "arm"):
            assert a[key] == b[key], (budget, key)
        strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
        assert strip(read_rows(branch / "history.csv")) == strip(read_rows(scratch / "history.csv"))
        lrs = [read_rows(d / "lr_schedule.csv") for d in (branch, scratch)]
        assert lrs[0] == lrs[1]
    # the report pools each branch with the runs of its budget trained from scratch
    out = tmp_path / "report"
    report = [str(stable / "branches" / "budget_2"), str(tmp_path / "scratch_2"), str(stable / "branches" / "budget_4")]
    done = subprocess.run(
        [sys.executable, "-m", "anneal.report", *report, "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    rows = {r["arm"]: r for r in read_rows(out / "study.csv")}
    assert rows["max_epochs=2"]["n"] == "1" and rows["max_epochs=4"]["n"] == "1"  # seed 0 twice: one arm, once
    assert "repeat a seed of the arm" in (out / "study.md").read_text()
    # branching again leaves what finished alone; a budget with no branch point is refused before training
    capsys.readouterr()
    assert branch_main([str(stable)]) == 0 and "finished already" in capsys.readouterr().out
    assert branch_main([str(stable), "--budgets", "3"]) == 2
    assert "has no branch point for a 3-epoch run (saved: 2, 4)" in capsys.readouterr().err


def test_a_stopped_branch_resumes_from_its_own_last_checkpoint(stable, tmp_path):
    record = RunRecord.load(RunFiles(stable))
    target = RunFiles(tmp_path / "branch")
    point = stable / "branches" / "budget_4.ckpt"
    assert f"ckpt_path={point}" in command(record, 4, point, target, [])
    target.last_checkpoint.parent.mkdir(parents=True)
    target.last_checkpoint.write_bytes(b"")  # a branch that was stopped after its first checkpoint
    line = command(record, 4, point, target, [])
    assert "ckpt_path=last" in line and "trainer.max_epochs=4" in line and "branch=none" in line


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["schedule=cosine"], "branch.budgets needs a schedule with a final cooldown"),
        (["branch.budgets=[5]"], "branch.budgets=5 is invalid: each budget must be shorter than this run"),
        (["branch.budgets=[]"], "branch.budgets=[] is invalid"),
    ],
)
def test_branch_points_that_cannot_be_are_refused_before_training(tmp_path, overrides, message):
    done = run_main(
        *WSD, "trainer.max_epochs=5", "branch=cooldowns", "branch.budgets=[2]", *overrides, f"hydra.run.dir={tmp_path}"
    )
    assert done.returncode == 2 and message in done.stderr.strip().splitlines()[-1], done.stderr[-2000:]
