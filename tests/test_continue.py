"""A run or a sweep continues by being run again: a resume takes the settings its run recorded, the same sweep
command skips finished jobs, resumes stopped and killed ones, runs failed and never started ones again, and a
signal stops the whole sweep, saying how to continue it."""

import json
import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path

import hydra
import pytest
import torch
from conftest import CONF, ROOT, read_rows, run_cli, train_process
from omegaconf import DictConfig, OmegaConf

from anneal.cli import checked_command_line
from anneal.record import Arm, RunFiles, RunRecord
from anneal.resume_line import completed, recorded_overrides
from anneal.sweep_control import SweepControl, at_once, jobs_of
from anneal.sweep_jobs import AT_ONCE, NEW, NOT_STARTED, STOPPED, THREADS, earlier_state, share_threads

TINY = [
    "data=synthetic",
    "data.train_size=256",
    "data.test_size=64",
    "data.batch_size=32",  # 8 steps per epoch
    "model=lenet",
    "logger=csv",
    "trainer.max_epochs=2",
    "trainer.deterministic=true",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def recorded_run(run_dir: Path, overrides: list[str], *resumes: list[str]) -> None:
    run_dir.mkdir(parents=True)
    attempts = [{"overrides": overrides}, *({"overrides": r} for r in resumes)]
    RunRecord(Arm({}, {}), 0, overrides, attempts=attempts).save(RunFiles(run_dir))


def test_a_resume_of_a_recorded_run_gets_its_settings_before_the_given_ones(tmp_path):
    run = tmp_path / "run"
    recorded_run(run, ["schedule=sgdr", "schedule.T_0=1", "trainer.max_epochs=4", "+trainer.gradient_clip_val=1.0"])
    argv, taken = completed(["train.py", f"hydra.run.dir={run}", "ckpt_path=last", "trainer.max_epochs=6"])
    assert taken == ["schedule=sgdr", "schedule.T_0=1", "+trainer.gradient_clip_val=1.0"]
    assert argv == ["train.py", *taken, f"hydra.run.dir={run}", "ckpt_path=last", "trainer.max_epochs=6"]
    # a checkpoint inside the run directory names the run as well; a new run or a sweep is left as it is
    assert completed(["train.py", f"ckpt_path={run}/checkpoints/last.ckpt"])[1] == [
        "schedule=sgdr",
        "schedule.T_0=1",
        "trainer.max_epochs=4",
        "+trainer.gradient_clip_val=1.0",
    ]
    for argv in (["train.py", f"hydra.run.dir={run}"], ["train.py", "-m", f"hydra.run.dir={run}", "ckpt_path=last"]):
        assert completed(argv) == (argv, [])


def test_each_resume_of_a_run_adds_its_own_changes_to_the_recorded_settings():
    record = RunRecord(Arm({}, {}), 0, ["trainer.max_epochs=4", "seed=1"], attempts=[])
    record.attempts = [
        {"overrides": ["trainer.max_epochs=4", "seed=1"]},
        {"overrides": ["trainer.max_epochs=8", "ckpt_path=last", "resume_changes=[trainer.max_epochs]"]},
    ]
    assert recorded_overrides(record) == ["seed=1", "trainer.max_epochs=8"]


def test_the_command_line_says_which_recorded_settings_it_resumes_with(tmp_path, capsys):
    run = tmp_path / "run"
    recorded_run(run, ["schedule=sgdr", "trainer.max_epochs=4"])
    argv = checked_command_line(["train.py", f"hydra.run.dir={run}", "ckpt_path=last"], CONF)
    assert argv[1:3] == ["schedule=sgdr", "trainer.max_epochs=4"]
    assert "recorded settings: schedule=sgdr trainer.max_epochs=4" in capsys.readouterr().err


def test_jobs_of_a_sweep_are_counted_from_its_overrides():
    assert jobs_of(["seed=0,1,2", "schedule.T_0=1,2", "model=lenet"]) == 6
    assert jobs_of(["model=lenet"]) == 1


def hint(output: str) -> list[str]:
    """The overrides of the resume command a stopped run printed."""
    found = re.search(r"resume with (hydra\.run\.dir=\S+ ckpt_path=last)", output)
    assert found, output[-3000:]
    return shlex.split(found.group(1))


def test_the_resume_hint_of_a_stopped_run_works_when_pasted(tmp_path):
    run = tmp_path / "run"
    fault = ["+callbacks.fault._target_=faults.Fault", "+callbacks.fault.hook=on_train_batch_end"]
    fault += ["+callbacks.fault.action=SIGTERM", "+callbacks.fault.at=12"]  # mid epoch 2; the resume has 4 steps
    stopped = train_process(*TINY, "schedule=sgdr", "schedule.T_0=1", *fault, f"hydra.run.dir={run}")
    output, _ = stopped.communicate(timeout=300)
    assert stopped.returncode == 143, output[-3000:]
    resumed = run_cli(*hint(output), env={"PYTHONPATH": str(ROOT / "tests")})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "recorded settings" in resumed.stderr and (run / "results.json").is_file()
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "finished" and len(record["attempts"]) == 2
    assert "schedule.T_0=1" in record["attempts"][1]["overrides"]


@pytest.fixture
def sweep_main(monkeypatch):
    """train.py's main, called in this process with a command line (its import blocks signals: undone here)."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    monkeypatch.syspath_prepend(str(ROOT))
    import train

    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    task = hydra.main(version_base="1.3", config_path=str(CONF), config_name="train")(train.main.__wrapped__)

    def main(*args: str) -> None:
        monkeypatch.setattr(sys, "argv", checked_command_line(["train.py", *args], CONF))
        task()

    return main


def study(sweep: Path) -> list[dict]:
    """study.csv without the clock's numbers (seconds: any two runs differ in them)."""
    clock = ("time_to_first_step", "wall_seconds")
    return [{k: v for k, v in row.items() if not k.startswith(clock)} for row in read_rows(sweep / "study.csv")]


def test_a_sweep_run_again_continues_where_it_stopped_and_gives_the_uninterrupted_study(
    tmp_path, sweep_main, monkeypatch
):
    """Four jobs: 0 finishes, 1 fails before its first checkpoint, 2 is stopped by SIGTERM mid-epoch (which stops
    the sweep, so 3 never starts), then 2 is made what a SIGKILL there leaves (run.json still 'started', a lock
    file of a dead process). The same command then skips 0, runs 1 and 3, resumes 2: the study is the one of
    the same sweep run without trouble."""
    trouble = ["+callbacks.trouble._target_=sweep_trouble.Trouble", "+callbacks.trouble.jobs={1:raise@4,2:SIGTERM@12}"]
    command = ["-m", *TINY, "seed=0,1,2,3", *trouble]
    calm = tmp_path / "calm"
    calm.mkdir()
    for job in ("1", "2"):
        (calm / job).touch()  # every trouble already met: none comes
    monkeypatch.setenv("SWEEP_TROUBLE", str(calm))
    sweep_main(*command, f"hydra.sweep.dir={tmp_path / 'reference'}")

    monkeypatch.setenv("SWEEP_TROUBLE", str(tmp_path / "marks"))
    (tmp_path / "marks").mkdir()
    sweep = tmp_path / "sweep"
    with pytest.raises(SystemExit) as stop:
        sweep_main(*command, f"hydra.sweep.dir={sweep}")
    assert stop.value.code == 143
    statuses = {j: json.loads((sweep / j / "run.json").read_text())["status"] for j in ("0", "1", "2")}
    assert statuses == {"0": "finished", "1": "failed", "2": "stopped"} and not (sweep / "3").exists()
    assert (sweep / "2" / "checkpoints" / "last.ckpt").is_file() and not (sweep / "1" / "checkpoints").exists()
    record = json.loads((sweep / "2" / "run.json").read_text())
    (sweep / "2" / "run.json").write_text(json.dumps(record | {"status": "started", "error": None}))
    (sweep / "2" / ".anneal.lock").write_text(f"{2**22 + 1} elsewhere\n")  # no process holds it

    sweep_main(*command, f"hydra.sweep.dir={sweep}")
    assert "job 0 finished earlier" in (sweep / "0" / "train.log").read_text()
    assert "job 2 was killed earlier: resuming it" in (sweep / "2" / "train.log").read_text()
    assert {json.loads((sweep / j / "run.json").read_text())["status"] for j in "0123"} == {"finished"}
    assert len(json.loads((sweep / "2" / "run.json").read_text())["attempts"]) == 2
    mine, theirs = study(sweep), study(tmp_path / "reference")
    assert len(mine) == len(theirs) == 1
    assert {k: v for k, v in mine[0].items() if theirs[0].get(k) != v} == {}
    for job in "0123":
        mine, theirs = (json.loads((d / job / "results.json").read_text()) for d in (sweep, tmp_path / "reference"))
        assert mine["test/acc"] == theirs["test/acc"] and mine["test/loss"] == theirs["test/loss"]


def test_a_sweep_in_a_directory_of_another_sweep_is_refused_naming_the_settings(tmp_path, sweep_main, capfd):
    sweep = tmp_path / "sweep"
    sweep_main("-m", *TINY, "trainer.max_epochs=1", "seed=5", f"hydra.sweep.dir={sweep}")
    with pytest.raises(SystemExit):  # a job that failed: Hydra ends the sweep with 1
        sweep_main("-m", *TINY, "trainer.max_epochs=1", "seed=6", f"hydra.sweep.dir={sweep}")
    assert "job 0 holds a run with other settings (seed: 5 there, 6 now)" in capfd.readouterr().err
    assert json.loads((sweep / "0" / "run.json").read_text())["seed"] == 5  # the run there is left as it was


def test_sigterm_stops_the_whole_sweep_and_the_same_command_continues_it(tmp_path):
    """A real process (the signal's path goes through train.py's blocked signals and the SIGTERM thread)."""
    sweep = tmp_path / "sweep"
    command = [*TINY, "seed=0,1", "+callbacks.pace._target_=pacing.Pace", "+callbacks.pace.seconds_per_step=0.2"]
    process = train_process("-m", *command, f"hydra.sweep.dir={sweep}")
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "sweep: job 0 started" in line:
            break
    while not (sweep / "0" / "checkpoints" / "last.ckpt").is_file():  # epoch 1 done: the signal lands in epoch 2
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGTERM)
    output = "".join(lines) + process.communicate(timeout=300)[0]
    assert process.returncode == 143, output[-3000:]
    assert "the sweep was stopped by SIGTERM; no further job started" in output
    assert not (sweep / "1").exists() and "Traceback" not in output
    again = re.search(r"running the same command again: (.+)", output)
    assert again, output[-3000:]
    argv = shlex.split(again.group(1))
    assert argv[0] == "python" and argv[2:] == ["-m", *command, f"hydra.sweep.dir={sweep}"]
    done = run_cli(*argv[2:], env={"PYTHONPATH": str(ROOT / "tests")})
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(list(sweep.glob("*/results.json"))) == 2


def test_a_joblib_sweep_run_again_skips_its_finished_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    command = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY, "trainer.max_epochs=1", "seed=0,1"]
    first = run_cli(*command, f"hydra.sweep.dir={sweep}")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 jobs at once share" in first.stderr + first.stdout
    again = run_cli(*command, f"hydra.sweep.dir={sweep}")
    output = again.stderr + again.stdout
    assert again.returncode == 0 and "Traceback" not in output, output[-3000:]
    assert "job 0 finished earlier" in output and "job 1 finished earlier" in output


def test_a_refused_preview_names_the_setting_before_reading_data_and_leaves_no_run_directory(tmp_path):
    done = run_cli(
        "schedule=sgdr",
        "schedule.T_mult=0.5",
        "mode=preview",
        f"data.root={tmp_path / 'no_data'}",
        "data.download=false",
        "logger=none",
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "anneal: error: schedule.T_mult=0.5 is invalid: must be >= 1 (may be non-integer)"
    )
    assert list((tmp_path / "outputs" / "runs").iterdir()) == []  # Hydra's run directory, removed


def test_a_refused_run_keeps_the_directory_the_user_named(tmp_path):
    run = tmp_path / "mine"
    done = run_cli("schedule=sgdr", "schedule.T_mult=0.5", "data=synthetic", "logger=none", f"hydra.run.dir={run}")
    assert done.returncode == 2 and run.is_dir()


def launcher_config(sweep: Path, launcher: dict, overrides: list[str]) -> DictConfig:
    return OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(sweep)}, "launcher": launcher, "overrides": {"task": overrides}}}
    )


def test_a_sweep_whose_jobs_run_elsewhere_learns_of_a_stop_from_its_mark(tmp_path, monkeypatch, capsys):
    """joblib and submitit run jobs in processes of their own: a stopped job leaves the mark, the jobs after it
    do not start, the sweep's process ends with the signal's code, and the next run of the sweep clears it."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "seed=0,1,2", "hydra/launcher=joblib"])
    config = launcher_config(sweep, {"_target_": "hydra_plugins.hydra_joblib_launcher.JoblibLauncher", "n_jobs": 2}, [])
    (sweep / STOPPED).write_text(str(int(signal.SIGINT)))
    assert earlier_state(sweep / "2", sweep, Arm({}, {}), 0) == NOT_STARTED
    with pytest.raises(SystemExit) as stop:
        SweepControl().on_multirun_end(config)
    assert stop.value.code == 130
    said = capsys.readouterr().err
    assert (
        "stopped by Ctrl-C" in said and f"train.py -m seed=0,1,2 hydra/launcher=joblib hydra.sweep.dir={sweep}" in said
    )
    monkeypatch.delenv(AT_ONCE, raising=False)
    SweepControl().on_multirun_start(launcher_config(sweep, config.hydra.launcher, ["seed=0,1,2"]))
    assert not (sweep / STOPPED).exists() and os.environ[AT_ONCE] == "2"  # 3 jobs, 2 at a time
    assert earlier_state(sweep / "2", sweep, Arm({}, {}), 0) == NEW


def test_jobs_running_at_once_share_the_cores(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv(AT_ONCE, str(cores))
    monkeypatch.delenv(THREADS, raising=False)
    before = torch.get_num_threads()
    try:
        assert share_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv(THREADS, "2")
        assert share_threads() == 2
        monkeypatch.setenv(AT_ONCE, "1")
        monkeypatch.delenv(THREADS)
        assert share_threads() is None  # a job that has the machine to itself keeps torch's own choice
    finally:
        torch.set_num_threads(before)
    at_once_of = {"_target_": "hydra_plugins.anneal_sweeps.LocalLauncher"}
    assert at_once(OmegaConf.create({"hydra": {"launcher": at_once_of}}), 64) == cores  # submitit's local: in turns


@pytest.mark.slow  # a fresh interpreter per job, twice: minutes on a shared machine
def test_a_slurm_local_sweep_runs_in_turns_and_run_again_skips_its_finished_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    command = ["-m", "hydra/launcher=slurm_local", *TINY, "trainer.max_epochs=1", "seed=0,1"]
    first = run_cli(*command, f"hydra.sweep.dir={sweep}")
    output = first.stderr + first.stdout
    assert first.returncode == 0, output[-3000:]
    assert "sweep: jobs 0-" in output and "sweep: jobs ended: 0 completed" in output
    again = run_cli(*command, f"hydra.sweep.dir={sweep}")
    output = again.stderr + again.stdout
    assert again.returncode == 0 and "Traceback" not in output, output[-3000:]
    logs = "".join(p.read_text() for p in sweep.glob("*/train.log"))
    assert "job 0 finished earlier" in logs and "job 1 finished earlier" in logs
