"""Faults found by probing: Ctrl-C, resumes that change the run, untrusted run directories, odd inputs."""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import FAST, ROOT, compose_config, paced, read_rows, run_main, train_process

from anneal.callbacks import RunCallback
from anneal.cli import ending
from anneal.ensemble import main as ensemble_main
from anneal.errors import ConfigError, DataError, TrainingStopped
from anneal.interrupts import Interrupted
from anneal.run import run
from anneal.storage import load_tensors

# the probes' run: every callback that keeps state, a warmup, a cyclic schedule, dropout-free EMA, snapshots
S = [
    "data=synthetic",
    "data.train_size=704",
    "data.test_size=128",
    "data.val_size=64",
    "data.batch_size=32",
    "schedule=cyclic",
    "schedule.step_size=0.5",
    "warmup=linear",
    "warmup.epochs=1",
    "ensemble=snapshot",
    "averaging=ema",
    "trainer.max_epochs=6",
    "trainer.deterministic=true",
    "logger=csv",
    *FAST[1:],
]
COMPARED = ["test/acc", "test/loss", "val/acc", "val/loss", "ema/test/acc", "epochs", "steps", "snapshots", "ensemble"]


def checkpoint_step(path) -> int:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")["global_step"]
    except (FileNotFoundError, EOFError, RuntimeError, pickle.UnpicklingError):
        return -1


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference")
    done = run_main(*S, f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def same_run(run_dir, reference) -> None:
    expected, resumed = (json.loads((d / "results.json").read_text()) for d in (reference, run_dir))
    assert {k: resumed[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}
    weights = load_tensors(run_dir / "checkpoints" / "last.ckpt")["state_dict"]
    for key, value in load_tensors(reference / "checkpoints" / "last.ckpt")["state_dict"].items():
        assert torch.equal(weights[key], value), key


def test_ctrl_c_then_resume_gives_the_uninterrupted_run(tmp_path, reference):
    """The real process for exit code 130: a terminal's Ctrl-C at whatever step it lands."""
    process = train_process(*S, *paced(0.05), f"hydra.run.dir={tmp_path}")  # ≥ 6 s of training
    deadline = time.time() + 120
    while not (tmp_path / "lr_schedule.png").exists() and time.time() < deadline:  # drawn as training starts
        time.sleep(0.02)
    time.sleep(1.3)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output[-3000:]
    assert "stopped by Ctrl-C during training" in output and "ckpt_path=last" in output
    assert 0 < checkpoint_step(tmp_path / "checkpoints" / "last.ckpt") < 6 * 20
    done = run_main(*S, f"hydra.run.dir={tmp_path}", "ckpt_path=last")
    assert done.returncode == 0, done.stderr[-3000:]
    same_run(tmp_path, reference)


def stop_at(hook: str, action: str, at: int) -> list[str]:
    """Overrides that send this process `action` the `at`-th time the run passes `hook` (tests/faults.py)."""
    return [
        "+callbacks.fault._target_=faults.Fault",
        f"+callbacks.fault.hook={hook}",
        f"+callbacks.fault.action={action}",
        f"+callbacks.fault.at={at}",
    ]


@pytest.mark.parametrize("action, step", [("SIGINT", 30), ("SIGTERM", 75)])
def test_a_stop_at_a_chosen_step_then_resume_gives_the_uninterrupted_run(tmp_path, reference, action, step):
    """The signal at a step chosen, in this process (mid-epoch 2 and mid-epoch 4 of 6, 20 steps each)."""
    done = run_main(*S, *stop_at("on_train_batch_end", action, step), f"hydra.run.dir={tmp_path}")
    name = {"SIGINT": "Ctrl-C", "SIGTERM": "SIGTERM"}[action]
    assert done.returncode == {"SIGINT": 130, "SIGTERM": 143}[action], done.stderr[-3000:]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"anneal: error: stopped by {name} during training") and "ckpt_path=last" in line
    assert checkpoint_step(tmp_path / "checkpoints" / "last.ckpt") == step  # saved where the signal landed
    assert not (tmp_path / "results.json").exists()
    # a resume keeps its run's recorded settings: the injected stop is dropped, as a user drops an added callback
    done = run_main(*S, f"hydra.run.dir={tmp_path}", "ckpt_path=last", "~callbacks.fault")
    assert done.returncode == 0, done.stderr[-3000:]
    same_run(tmp_path, reference)


def test_a_resume_that_changes_the_run_stops_naming_each_changed_key(tmp_path, reference):
    shutil.copytree(reference, tmp_path / "run")
    (tmp_path / "run" / "results.json").unlink()
    changed = ["data.batch_size=64", "optimizer.lr=0.1", "seed=3"]
    done = run_main(*S, *changed, f"hydra.run.dir={tmp_path / 'run'}", "ckpt_path=last")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    message = done.stderr.strip().splitlines()[-1]
    for key in (
        "data.batch_size: 32 in the checkpoint, 64 now",
        "optimizer.lr: 0.05 in the checkpoint, 0.1 now",
        "seed: 0 in the checkpoint, 3 now",
        "a resume can change only ['ensemble.include_final', 'ensemble.max_members', 'trainer.max_epochs', "
        "'trainer.max_steps']; start a new run for anything else",
    ):
        assert key in message, message
    assert not (tmp_path / "run" / "results.json").exists()
    # a change only the length allows is named with the override that says it is intended
    done = run_main(
        *S[:-5], "trainer.max_epochs=8", "logger=csv", *FAST[1:], f"hydra.run.dir={tmp_path / 'run'}", "ckpt_path=last"
    )
    assert done.returncode == 2 and "resume_changes=[trainer.max_epochs]" in done.stderr


def test_an_intended_change_on_resume_derives_the_plan_again(tmp_path, reference):
    shutil.copytree(reference, tmp_path / "run")
    done = run_main(
        *S[:-5],
        "trainer.max_epochs=8",
        "trainer.deterministic=true",
        "logger=csv",
        *FAST[1:],
        f"hydra.run.dir={tmp_path / 'run'}",
        "ckpt_path=last",
        "resume_changes=[trainer.max_epochs]",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming with changed settings (trainer.max_epochs)" in done.stdout + done.stderr
    assert json.loads((tmp_path / "run" / "results.json").read_text())["steps"] == 8 * 20
    assert len(read_rows(tmp_path / "run" / "lr_schedule.csv")) == 8 * 20  # the new plan, drawn again
    assert len(read_rows(tmp_path / "run" / "history.csv")) == 8  # epochs 1-6 from before, 7-8 now


def test_a_resume_after_a_death_in_the_final_evaluation_keeps_the_validation_scores(tmp_path, reference):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    (run_dir / "results.json").unlink()  # as if killed after training, before results.json was written
    done = run_main(*S, f"hydra.run.dir={run_dir}", "ckpt_path=last", "optimized_metric=val/acc")
    assert done.returncode == 0, done.stderr[-3000:]
    same_run(run_dir, reference)


def test_a_checkpoint_from_another_run_directory_brings_its_snapshots(tmp_path):
    common = [
        "data=synthetic",
        "data.train_size=256",
        "data.test_size=64",
        "schedule=sgdr",
        "schedule.T_0=1",
        "schedule.T_mult=1",
        "ensemble=snapshot",
        "trainer.max_epochs=4",
        *FAST,
    ]
    run(compose_config(*common, output_dir=tmp_path / "first"))
    elsewhere = tmp_path / "elsewhere.ckpt"
    shutil.copy(tmp_path / "first" / "checkpoints" / "last.ckpt", elsewhere)
    (tmp_path / "first" / "snapshots" / "snapshot_02_epoch2.pt").unlink()  # one of them is gone
    run(
        compose_config(
            *common,
            "trainer.max_epochs=5",
            "resume_changes=[trainer.max_epochs]",
            f"ckpt_path={elsewhere}",
            output_dir=tmp_path / "second",
        )
    )
    results = json.loads((tmp_path / "second" / "results.json").read_text())
    assert [s["epoch"] for s in results["snapshots"]] == [1, 3, 4, 5]  # copied here; the lost one left out
    assert sorted(p.name for p in (tmp_path / "second" / "snapshots").iterdir()) == [
        "snapshot_01_epoch1.pt",
        "snapshot_03_epoch3.pt",
        "snapshot_04_epoch4.pt",
        "snapshot_04_epoch5.pt",
    ]


def ensemble_cli(run_dir):
    return subprocess.run(
        [sys.executable, "-m", "anneal.ensemble", str(run_dir)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def ensemble_in_process(run_dir, capsys) -> tuple[int, str]:
    """The ensemble command's main, in this process (the hostile cases below need no new interpreter each)."""
    capsys.readouterr()
    try:
        ensemble_main([str(run_dir)])
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    return code, capsys.readouterr().err


def test_the_ensemble_cli_builds_only_anneals_own_objects_from_a_run_directory(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run(
        compose_config(
            "data=synthetic",
            "data.train_size=128",
            "data.test_size=32",
            "schedule=sgdr",
            "schedule.T_0=1",
            "schedule.T_mult=1",
            "ensemble=snapshot",
            "trainer.max_epochs=2",
            *FAST,
            output_dir=run_dir,
        )
    )
    assert ensemble_in_process(run_dir, capsys)[0] == 0  # the run's own record rebuilds its network and data
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (run_dir / "p").write_text("planted")
    record = json.loads((run_dir / "run.json").read_text())
    planted_records = [
        {**record, "data": {"name": "anneal.data.download.shutil.copyfile", "settings": {}}},
        {**record, "network": {"name": "LeNet5", "settings": {"width": {"_target_": "os.system"}}}},
        {**record, "data": {"name": "Synthetic", "settings": {"root": str(run_dir / "p"), "copy_to": str(victim)}}},
    ]
    (run_dir / "run.json").write_text(json.dumps(planted_records[0]))
    done = ensemble_cli(run_dir)  # the real command once (python -m anneal.ensemble); the others in this process
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    for planted in planted_records:
        (run_dir / "run.json").write_text(json.dumps(planted))
        code, stderr = ensemble_in_process(run_dir, capsys)  # anything but a refusal raises here: the test fails
        assert code == 2 and stderr.count("\n") == 1 and "error:" in stderr, stderr
    results = json.loads((run_dir / "results.json").read_text())
    (run_dir / "run.json").write_text(json.dumps(record))
    outside = {**results, "snapshots": [{"file": "../victim", "epoch": 1, "step": 2}]}
    (run_dir / "results.json").write_text(json.dumps(outside))
    code, stderr = ensemble_in_process(run_dir, capsys)
    assert code == 2 and "outside" in stderr
    (run_dir / "results.json").write_text(json.dumps(results))
    # a run from before run.json: its config.yaml names classes by exact string, never a prefix
    (run_dir / "run.json").unlink()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    for planted in (
        {"data": {"_target_": "anneal.data.download.shutil.copyfile", "_args_": [str(run_dir / "p"), str(victim)]}},
        {"model": {"_target_": "torch.save", "_args_": [[1], str(tmp_path / "pwned")]}},
        {"model": {"_target_": "anneal.models.LeNet5", "num_classes": {"_target_": "os.system", "_args_": ["true"]}}},
        {"data": {"_target_": "os.getcwd"}},
    ):
        (run_dir / "config.yaml").write_text(yaml.safe_dump({**config, **planted}))
        code, stderr = ensemble_in_process(run_dir, capsys)
        assert code == 2 and ("not one of anneal's own classes" in stderr or "plain values" in stderr), stderr
    assert victim.read_text() == "untouched" and not (tmp_path / "pwned").exists()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    assert ensemble_in_process(run_dir, capsys)[0] == 0  # a legacy run's own config still works


def test_a_huge_run_reaches_its_first_step_and_a_signal_stops_it(tmp_path):
    done = run_main(
        "data=synthetic",
        "data.train_size=704",
        "data.test_size=64",
        "data.batch_size=32",
        "trainer.max_epochs=1000000000",
        *FAST,
        *stop_at("on_train_epoch_start", "SIGTERM", 2),  # once an epoch has trained
        f"hydra.run.dir={tmp_path}",
    )
    assert len(read_rows(tmp_path / "history.csv")) == 1
    assert len(read_rows(tmp_path / "lr_schedule.csv")) < 200_000  # drawn from a sample, not from 2.2e10 steps
    assert done.returncode == 143 and "stopped by SIGTERM during training" in done.stderr


class SignalDuring(RunCallback):
    """Sends this process a signal while the final evaluation runs (outside Lightning's loops)."""

    def results(self, trainer, module, datamodule):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
        return {}


def test_a_signal_during_the_final_evaluation_stops_with_the_resume_message(tmp_path, monkeypatch):
    from anneal.callbacks import StartupTimer

    monkeypatch.setattr(StartupTimer, "results", SignalDuring.results)
    with pytest.raises(Interrupted) as error:
        run(
            compose_config(
                "data=synthetic",
                "data.train_size=128",
                "data.test_size=32",
                "trainer.max_epochs=1",
                *FAST,
                output_dir=tmp_path,
            )
        )
    assert error.value.phase == "the final evaluation" and error.value.signum == signal.SIGTERM
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    code, message = ending(error.value, str(tmp_path))  # what train.py prints and exits with
    assert code == 143 and f"evaluate again with hydra.run.dir={tmp_path} ckpt_path=last" in message


def test_a_run_directory_with_a_finished_or_a_live_run_is_refused(tmp_path):
    common = ["data=synthetic", "data.train_size=128", "data.test_size=32", "trainer.max_epochs=1", *FAST]
    run(compose_config(*common, output_dir=tmp_path))
    with pytest.raises(
        ConfigError, match=r"already holds a finished run \(results.json\): resume a training run with ckpt_path=last"
    ):
        run(compose_config(*common, output_dir=tmp_path))
    holder = (
        "import sys, time; from pathlib import Path; from anneal.run_dir import take_lock; "
        "held = take_lock(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)"
    )
    sleeper = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert sleeper.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=f"in use by a live run \\(process {sleeper.pid} on"):
            run(compose_config(*common, "ckpt_path=last", output_dir=tmp_path))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert (tmp_path / ".anneal.lock").exists()  # left by the killed holder: nobody holds it now
    (tmp_path / ".last.ckpt.x1y2.tmp").write_bytes(b"half")  # a write cut short by a kill
    (tmp_path / "results.json").unlink()
    run(compose_config(*common, "ckpt_path=last", output_dir=tmp_path))  # the dead run's lock is taken over
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / ".anneal.lock").exists()


def test_unreadable_checkpoints_and_snapshots_are_named_with_what_to_do(tmp_path):
    common = [
        "data=synthetic",
        "data.train_size=128",
        "data.test_size=32",
        "trainer.max_epochs=1",
        *FAST[1:],
        "logger=none",
    ]
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    done = run_main(*common, f"hydra.run.dir={tmp_path}", "ckpt_path=last")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{tmp_path}/checkpoints/last.ckpt cannot be read: it is empty" in done.stderr
    with pytest.raises(DataError, match=r"snapshot_01.*cannot be read.*delete it"):
        load_tensors(write_truncated(tmp_path / "snapshot_01_epoch1.pt"))


def write_truncated(path):
    torch.save({"w": torch.ones(100)}, path)
    path.write_bytes(path.read_bytes()[:50])
    return path


def test_weights_that_turn_nan_stop_the_run_before_a_checkpoint_keeps_them(tmp_path, monkeypatch):
    from anneal.callbacks import StartupTimer

    def poison(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 6:  # after the last step of epoch 3, whose loss was still finite
            with torch.no_grad():
                next(pl_module.network.parameters()).fill_(float("nan"))

    monkeypatch.setattr(StartupTimer, "on_train_batch_end", poison, raising=False)
    with pytest.raises(TrainingStopped, match="training weights became nan/inf by step 6"):
        run(
            compose_config(
                "data=synthetic",
                "data.train_size=256",
                "data.test_size=32",
                "trainer.max_epochs=3",
                *FAST,
                output_dir=tmp_path,
            )
        )
    checkpoint = load_tensors(tmp_path / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 4 and all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())
