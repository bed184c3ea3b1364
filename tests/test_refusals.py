"""Input that deserves better than a traceback or a silent surprise, and files no run may touch: each refusal is
one line naming the setting or the file, before anything is written."""

import hashlib
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import time

import pytest
import wandb_files
from conftest import FAST, read_rows, run_cli, run_main, write_cifar_layout

from anneal.data import read_cifar10
from anneal.errors import ConfigError, DataError
from anneal.run_dir import release_lock, take_lock

TINY = ["data=synthetic", "data.train_size=128", "data.test_size=32", "data.batch_size=32", "model=lenet", *FAST]


def contents(directory):
    return {
        p.relative_to(directory): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in directory.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("finished")
    done = run_main(*TINY, "trainer.max_epochs=1", f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


@pytest.mark.parametrize(
    "mode", [["mode=lr_find", "lr_find.num_training=10"], ["mode=preview"], ["trainer.max_epochs=2"]]
)
def test_no_mode_overwrites_a_finished_run_and_a_refusal_writes_nothing(finished, mode):
    before = contents(finished)
    done = run_main(*TINY, *mode, f"hydra.run.dir={finished}")
    assert done.returncode == 2 and "already holds a finished run (results.json)" in done.stderr
    assert contents(finished) == before  # results.json, lr_schedule.*, config.yaml, run.json, train.log: as they were
    assert not (finished / ".hydra").exists()  # Hydra's copy of the refused settings is not written either


def hold_the_lock(directory, overlaps, start):
    """Take the run directory's lock with the others at once; while holding it, no one else may."""
    while time.time() < start:
        pass
    try:
        handle = take_lock(directory)
    except ConfigError:
        return
    marker = directory / "held"
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        overlaps.value += 1
        return
    time.sleep(0.02)
    os.close(fd)
    marker.unlink()
    release_lock(handle, directory)


def test_the_run_directory_lock_is_held_by_one_process_at_a_time(tmp_path):
    overlaps = multiprocessing.Value("i", 0)
    for trial in range(30):
        directory = tmp_path / str(trial)
        start = time.time() + 0.3
        racers = [multiprocessing.Process(target=hold_the_lock, args=(directory, overlaps, start)) for _ in range(4)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(timeout=60)
    assert overlaps.value == 0


def test_a_live_lock_is_refused_with_how_to_check_it(tmp_path):
    holder = (
        "import sys, time; from pathlib import Path; from anneal.run_dir import take_lock; "
        "held = take_lock(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)"
    )  # another process: a process's own lock is not a live run's
    sleeper = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert sleeper.stdout.readline().strip() == "held"
        done = run_main(*TINY, "trainer.max_epochs=1", f"hydra.run.dir={tmp_path}")
    finally:
        sleeper.kill()
        sleeper.wait()
        sleeper.stdout.close()
    assert done.returncode == 2
    message = done.stderr.strip().splitlines()[-1]
    assert f"is in use by a live run (process {sleeper.pid} on" in message and "ps -p" in message


def test_non_integer_labels_are_refused_naming_the_file(tmp_path):
    root = write_cifar_layout(tmp_path)
    path = root / "cifar-10-batches-py" / "data_batch_2"
    with open(path, "rb") as f:
        entry = pickle.load(f)
    entry["labels"] = [x + 0.5 for x in entry["labels"]]
    with open(path, "wb") as f:
        pickle.dump(entry, f)
    with pytest.raises(DataError, match=f"CIFAR file {path} holds float64 labels, not integers"):
        read_cifar10(root / "cifar-10-batches-py")


@pytest.mark.parametrize(
    "override, line",
    [
        (
            "trainer.gradient_clip_vall=1",
            "trainer.gradient_clip_vall is invalid: not an argument of lightning.Trainer;"
            " did you mean trainer.gradient_clip_val?",
        ),
        ("hydra.run.dir={file}", "hydra.run.dir={file} is a file, not a directory: choose another path"),
        (
            "data.root={file}",
            "CIFAR-10: the data root {file} is a file: point it at the folder holding cifar-10-batches-py/",
        ),
    ],
)
def test_paths_and_trainer_arguments_are_checked_in_one_line(tmp_path, override, line):
    file = tmp_path / "a_file"
    file.write_text("")
    where = [] if override.startswith("hydra.run.dir") else [f"hydra.run.dir={tmp_path / 'run'}"]  # not ./outputs
    done = run_main(override.format(file=file), "logger=none", "data.download=false", *where)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "anneal: error: " + line.format(file=file)


def test_any_trainer_argument_is_accepted_without_a_plus(tmp_path):
    done = run_main(*TINY, "trainer.max_epochs=1", "trainer.gradient_clip_val=0.5", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["arm"]["settings"]["trainer.gradient_clip_val"] == 0.5  # it changes what the run computes


def test_time_to_first_step_counts_from_each_jobs_start(tmp_path):
    """In a multirun Hydra runs the jobs one after another in one process: a later job's start-up is not the
    earlier jobs' training."""
    done = run_cli("-m", *TINY, "trainer.max_epochs=2", "seed=0,1,2", f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-2000:]
    jobs = [json.loads((tmp_path / str(j) / "results.json").read_text()) for j in range(3)]
    earlier = jobs[0]["wall_seconds"] + jobs[1]["wall_seconds"]  # what counting from the process start would add
    assert jobs[2]["time_to_first_step"] < earlier + jobs[0]["time_to_first_step"]
    assert jobs[2]["time_to_first_step"] < jobs[0]["time_to_first_step"]  # no imports to pay again


def test_a_run_ended_within_an_epoch_scores_its_last_network_in_its_history(tmp_path):
    """max_steps can stop training mid-epoch, where no held-out evaluation runs: the final test of that very
    network completes the epoch's row, so the best held-out accuracy includes the network the run ended with."""
    done = run_cli(
        *TINY,
        "data.train_size=320",
        "trainer.max_epochs=null",
        "trainer.max_steps=25",
        "logger=wandb",
        "logger.mode=offline",
        f"hydra.run.dir={tmp_path}",
        env={"WANDB_API_KEY": None},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    history = read_rows(tmp_path / "history.csv")
    results = json.loads((tmp_path / "results.json").read_text())
    assert [int(r["epoch"]) for r in history] == [1, 2, 3] and history[-1]["step"] == "25"
    assert float(history[-1]["test/acc"]) == pytest.approx(results["test/acc"])
    best = max(float(r["test/acc"]) for r in history)
    assert results["test/acc_best"] == pytest.approx(best) and results["test/acc_best"] >= results["test/acc"]
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    rows = wandb_files.history(run)
    held_out = [r for r in rows if "test/acc" in r]
    assert [r["epoch"] for r in held_out] == [1, 2, 3]  # every epoch has its point, counted from 1
    assert sorted({r["epoch"] for r in rows if "train/loss" in r}) == [1, 2, 3]
    assert history[-1]["train/loss"]  # the cut-short epoch's mean over its steps, as W&B has it
    assert sum("lr_schedule/filenames" in r for r in rows) == 1  # the plan's picture, drawn on a thread, logged once


def test_the_lr_range_test_is_a_named_wandb_run_with_its_curve_as_data(tmp_path):
    done = run_cli(
        *TINY,
        "mode=lr_find",
        "lr_find.num_training=12",
        "logger=wandb",
        "logger.mode=offline",
        f"hydra.run.dir={tmp_path}",
        env={"WANDB_API_KEY": None},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    assert "lr_find" in wandb_files.run_info(run)["name"]
    curve = [r for r in wandb_files.history(run) if "lr_find/smoothed_loss" in r]
    lrs = [r["lr_find/lr"] for r in curve]
    assert len(curve) == json.loads((tmp_path / "results.json").read_text())["lr_find/steps"] and lrs == sorted(lrs)
