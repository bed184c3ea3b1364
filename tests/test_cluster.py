"""The cluster launcher run for real: submitit's local executor runs each job of a sweep in a process of its own
exactly as on SLURM (hydra/launcher=slurm_local, the `slurm` preset's launcher without sbatch)."""

import json
import os
import pickle
import signal
import time
from pathlib import Path

import pytest
from conftest import paced, read_rows, run_cli, train_process

from anneal.data.download import CIFAR10, DataMissing
from anneal.errors import ConfigError
from anneal.interrupts import Interrupted

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")

TINY = [
    "data=synthetic",
    "data.train_size=256",
    "data.test_size=64",
    "data.batch_size=32",
    "model=lenet",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("schedule.T_0", 0, "an integer >= 1"),
        ConfigError("hydra.run.dir", "/runs/a", text="{key}=/runs/a is in use"),
        DataMissing(CIFAR10, Path("/data"), "no network"),
        Interrupted(signal.SIGTERM, "training"),
    ],
)
def test_anneal_errors_survive_the_pickle_that_brings_a_failed_job_back_to_the_sweep(error):
    """A launcher that runs jobs in other processes (submitit, joblib, Ray) pickles a job's exception."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error) and vars(copy) == vars(error)


def job_note(job: Path) -> dict:
    return json.loads((job / "job.json").read_text())


@pytest.mark.slow  # a process per job: 20-35 s
def test_a_two_by_two_sweep_runs_each_job_in_a_submitit_process_and_gathers_the_study(tmp_path):
    sweep = tmp_path / "sweep"
    done = run_cli(
        "-m",
        "hydra/launcher=slurm_local",
        "schedule=sgdr",
        "schedule.T_0=1,2",
        "seed=0,1",
        *TINY,
        "trainer.max_epochs=2",
        f"hydra.sweep.dir={sweep}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = [sweep / str(n) for n in range(4)]
    for job in jobs:
        results = json.loads((job / "results.json").read_text())
        assert results["epochs"] == 2 and 0 <= results["test/acc"] <= 1
        note = job_note(job)
        assert note["launcher"] == "submitit_local" and note["requeues"] == 0
        assert "results in" in Path(note["log"]).read_text()  # the job's own log, written by its process
    assert len({job_note(job)["job_id"] for job in jobs}) == 4  # four submitit jobs, four processes
    arms = [(r["arm"], r["n"], r["failed"]) for r in read_rows(sweep / "study.csv")]
    assert arms == [("T_0=1", "2", "0"), ("T_0=2", "2", "0")]


@pytest.mark.slow  # a process per job: 20-35 s
def test_a_failed_job_is_reported_as_failed_and_its_run_directory_names_its_log(tmp_path):
    sweep = tmp_path / "sweep"
    done = run_cli(
        "-m",
        "hydra/launcher=slurm_local",
        "schedule=sgdr",
        "schedule.T_0=50,1",
        "schedule.T_mult=1",
        "ensemble=snapshot",
        *TINY,
        "trainer.max_epochs=2",
        f"hydra.sweep.dir={sweep}",
    )  # the first job (T_0=50) has no cycle end in its 2 epochs: it fails
    message = "ensemble=snapshot needs a schedule with cycles"
    assert done.returncode != 0 and message in done.stderr  # the job's own error, unpickled in the sweep's process
    assert not (sweep / "0" / "results.json").exists() and (sweep / "1" / "results.json").is_file()
    log = Path(job_note(sweep / "0")["log"])
    assert log.parent.parent == sweep / ".submitit" and message in log.read_text()
    assert f"failed (ConfigError); its log: {log}" in log.read_text()
    rows = read_rows(sweep / "summary.csv")
    assert [(r["job"], r["status"]) for r in rows] == [("0", "failed"), ("1", "finished")]
    assert message in rows[0]["reason"] and f"(log: {log})" in rows[0]["reason"]


def wait_for(path: Path, process, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline, f"no {path} after {seconds} s"
        time.sleep(0.05)


@pytest.mark.slow  # a process per job: 20-35 s
def test_a_preempted_job_is_requeued_and_resumes_from_its_last_checkpoint(tmp_path):
    sweep = tmp_path / "sweep"
    job = sweep / "0"
    process = train_process(
        "-m",
        "hydra/launcher=slurm_local",
        "seed=0",
        *TINY,
        "trainer.max_epochs=3",
        *paced(0.25),  # 8 steps an epoch: 2 s or more each
        f"hydra.sweep.dir={sweep}",
    )
    try:
        wait_for(job / "checkpoints" / "last.ckpt", process)  # epoch 1 has ended; the job is in epoch 2
        pid = int((job / ".anneal.lock").read_text().split()[0])  # the job's own process (the directory's holder)
        os.kill(pid, signal.SIGUSR2)  # submitit's preemption and time-limit signal, as SLURM sends it
        output, _ = process.communicate(timeout=600)
    finally:
        process.kill()
    assert process.returncode == 0, output[-3000:]
    log = Path(job_note(job)["log"]).read_text()
    assert "this job is preempted" in log and "Requeued job" in log  # submitit's own account
    assert f"requeued by submitit (1): resuming from {job / 'checkpoints' / 'last.ckpt'}" in log
    assert "Restoring states from the checkpoint path" in log  # Lightning resumed the run, not a new one
    assert job_note(job)["requeues"] == 1
    results = json.loads((job / "results.json").read_text())
    assert results["epochs"] == 3 and results["steps"] == 3 * 8
    epochs = [int(r["epoch"]) for r in read_rows(job / "history.csv")]
    assert epochs == [1, 2, 3]  # every epoch once: none trained twice, none lost
