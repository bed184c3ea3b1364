"""What a run shows: the lr of every step, per-epoch curves, history.csv, readable log files, W&B names."""

import json
import subprocess
import sys
import threading

import pytest
import wandb_files
import yaml
from conftest import CONF, FAST, ROOT, compose_config, read_rows, run_cli, run_main
from hydra import compose, initialize_config_dir

from anneal import wandb_start
from anneal.run import run
from anneal.wandb_start import WANDB_INIT_IMPORTS, start_wandb_early

SMALL = ["data=synthetic", "data.train_size=640", "data.test_size=100", "data.batch_size=64", *FAST]


def logged(run_dir, key: str) -> list[dict]:
    return [r for r in read_rows(run_dir / "csv" / "version_0" / "metrics.csv") if r.get(key)]


def test_a_default_run_logs_every_steps_lr_and_a_test_curve_per_epoch(tmp_path):
    run(compose_config(*SMALL, "schedule=sgdr", "schedule.T_0=1", "trainer.max_epochs=3", output_dir=tmp_path))
    assert [int(r["step"]) for r in logged(tmp_path, "lr-SGD")] == list(range(30))  # log_every_n_steps is 50
    for key in ("train/loss", "train/acc", "test/loss", "test/acc"):
        assert len(logged(tmp_path, key)) == 3, key  # once per epoch, and the final test adds no second point
    history = read_rows(tmp_path / "history.csv")
    assert list(history[0]) == ["epoch", "step", "lr", "train/loss", "train/acc", "test/loss", "test/acc", "seconds"]
    assert [(int(r["epoch"]), int(r["step"])) for r in history] == [(1, 10), (2, 20), (3, 30)]
    curve = [float(r["test/acc"]) for r in logged(tmp_path, "test/acc")]
    assert [float(r["test/acc"]) for r in history] == pytest.approx(curve)
    lrs = {int(r["step"]): float(r["lr-SGD"]) for r in logged(tmp_path, "lr-SGD")}
    assert [float(r["lr"]) for r in history] == pytest.approx([lrs[9], lrs[19], lrs[29]])  # each epoch's last step
    results = json.loads((tmp_path / "results.json").read_text())
    best = max(range(3), key=lambda i: (curve[i], -i))
    assert results["test/acc_best"] == pytest.approx(curve[best]) and results["test/acc_best_epoch"] == best + 1
    assert results["test/acc"] == pytest.approx(curve[-1])  # the final test is the last epoch's network


def test_with_a_validation_split_the_curve_is_validation_and_the_test_set_is_scored_once(tmp_path):
    run(compose_config(*SMALL, "data.val_size=128", "trainer.max_epochs=2", output_dir=tmp_path))
    assert len(logged(tmp_path, "val/acc")) == 2 and len(logged(tmp_path, "test/acc")) == 1
    assert "val/acc" in read_rows(tmp_path / "history.csv")[0]
    assert "val/acc_best" in json.loads((tmp_path / "results.json").read_text())


def test_the_per_epoch_test_evaluation_can_be_turned_off(tmp_path):
    run(compose_config(*SMALL, "data.test_every_epoch=false", "trainer.max_epochs=2", output_dir=tmp_path))
    assert len(logged(tmp_path, "test/acc")) == 1  # only the final score
    assert "test/acc" not in read_rows(tmp_path / "history.csv")[0]


def test_a_run_measured_in_optimizer_steps_works_with_every_schedule(tmp_path):
    for schedule in sorted(p.stem for p in (CONF / "schedule").glob("*.yaml")):
        extra = ["data.val_size=64"] if schedule in ("adaptive_sgdr", "plateau") else []
        cfg = compose_config(
            *SMALL,
            f"schedule={schedule}",
            *extra,
            "trainer.max_epochs=null",
            "trainer.max_steps=95",
            "mode=preview",
            output_dir=tmp_path / schedule,
        )
        run(cfg)
        steps = [int(r["step"]) for r in read_rows(tmp_path / schedule / "lr_schedule.csv")]
        assert steps == list(range(95)), schedule
    run(
        compose_config(
            *SMALL,
            "schedule=sgdr",
            "schedule.T_0=1",
            "schedule.T_mult=1",
            "trainer.max_epochs=null",
            "trainer.max_steps=25",
            "ensemble=snapshot",
            output_dir=tmp_path / "trained",
        )
    )
    results = json.loads((tmp_path / "trained" / "results.json").read_text())
    assert results["steps"] == 25 and [s["step"] for s in results["snapshots"]] == [10, 20]


def test_history_continues_after_a_sigterm_with_no_epoch_missing_or_repeated(tmp_path):
    args = [
        "data=synthetic",
        "data.train_size=512",
        "data.test_size=64",
        "data.batch_size=32",
        "trainer.max_epochs=3",
        "trainer.deterministic=true",
        *FAST,
    ]
    reference = run_main(*args, f"hydra.run.dir={tmp_path / 'reference'}")
    assert reference.returncode == 0, reference.stderr[-2000:]
    stop = [  # SIGTERM to this process in the middle of the second epoch (16 steps each): tests/faults.py
        "+callbacks.fault._target_=faults.Fault",
        "+callbacks.fault.hook=on_train_batch_end",
        "+callbacks.fault.action=SIGTERM",
        "+callbacks.fault.at=24",
    ]
    assert run_main(*args, *stop, f"hydra.run.dir={tmp_path / 'stopped'}").returncode == 143
    assert len(read_rows(tmp_path / "stopped" / "history.csv")) == 1
    done = run_main(*args, f"hydra.run.dir={tmp_path / 'stopped'}", "ckpt_path=last", "~callbacks.fault")
    assert done.returncode == 0, done.stderr[-2000:]
    resumed, expected = (read_rows(tmp_path / d / "history.csv") for d in ("stopped", "reference"))
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(resumed) == drop(expected)


def test_a_log_file_reads_one_line_per_epoch(tmp_path):
    done = run_cli(
        "data=synthetic",
        "data.train_size=640",
        "data.test_size=100",
        "trainer.max_epochs=3",
        "logger=csv",
        f"hydra.run.dir={tmp_path}",
    )  # stdout is a pipe here, as under nohup, CI or SLURM
    assert done.returncode == 0, done.stderr[-2000:]
    output = done.stdout + done.stderr
    assert "it/s]" not in output and "\r" not in output  # no progress-bar redraws
    assert [line.split("epoch ", 1)[1][:3] for line in output.splitlines() if "history][INFO] - epoch" in line] == [
        "1/3",
        "2/3",
        "3/3",
    ]
    assert "Tip:" not in output and output.count("`Trainer.fit` stopped") == 1  # no ads, nothing printed twice
    log_file = (tmp_path / "train.log").read_text()
    assert "epoch 3/3  lr " in log_file and " test loss " in log_file


def test_wandb_groups_each_arm_and_names_each_run_after_its_arm_and_seed(tmp_path):
    """W&B's default grouped chart averages a group's runs: a group must be one arm (all its seeds), never the
    whole sweep; the config carries the options by name and the values with their types."""
    done = run_cli(
        "-m",
        "schedule=sgdr",
        "schedule.T_0=1,2",
        "seed=0,1",
        *SMALL[:3],
        "trainer.max_epochs=1",
        "logger=wandb",
        "logger.mode=offline",
        "experiment=swa_sgd",
        "averaging.anneal_epochs=0",  # one epoch: no time to ramp to swa_lr
        "model=lenet",
        "trainer.enable_progress_bar=false",
        f"hydra.sweep.dir={tmp_path}",
        env={"WANDB_API_KEY": None, "HOME": str(tmp_path), "PYTHONPROFILEIMPORTTIME": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    # (-X importtime leaves out some W&B package lines, its lazy loaders'; the package's submodules are listed)
    launch = next(i for i, name in enumerate(imported) if name.startswith(WANDB_INIT_IMPORTS[-1].rsplit(".", 1)[0]))
    assert launch < imported.index("torch")  # W&B's slow import comes first (wandb_start.py says why)
    runs = {}
    for job in ("0", "1", "2", "3"):
        (run_dir,) = (tmp_path / job / "wandb").glob("offline-run-*")
        record = json.loads((tmp_path / job / "run.json").read_text())
        runs[job] = (wandb_files.run_info(run_dir), wandb_files.config_updates(run_dir), record)
    groups = {job: info["group"] for job, (info, _, _) in runs.items()}
    assert groups["0"] == groups["1"] != groups["2"] == groups["3"]  # T_0=1 with seeds 0, 1; then T_0=2
    for job, (info, config, record) in runs.items():
        T_0, seed = (1, 2)[int(job) // 2], int(job) % 2
        assert info["group"] == f"{record['label']} · {record['arm']['id']}" and f"T_0={T_0}" in record["label"]
        assert info["name"] == f"{record['label']} seed={seed}"
        assert f"sweep-{tmp_path.name}" in info["tags"] and {"swa", "swa-sgd"} <= set(info["tags"])
        assert config["options"]["schedule"] == "sgdr" and config["options"]["averaging"] == "swa"
        assert config["schedule"]["T_0"] == T_0 and isinstance(config["schedule"]["T_0"], int)
        assert config["arm"] == record["arm"]["id"] and config["sweep"] == tmp_path.name


def test_the_wandb_sweep_file_drives_train_py_with_hydra_overrides(tmp_path):
    sweep = yaml.safe_load((ROOT / "sweeps" / "wandb_sgdr_grid.yaml").read_text())
    assert (ROOT / sweep["program"]).is_file() and sweep["method"] == "grid"
    grid = sweep["parameters"]
    assert grid["schedule.T_0"]["values"] == [1, 5, 10] and grid["schedule.T_mult"]["values"] == [1, 2]
    point = {"schedule.T_0": 5, "schedule.T_mult": 2, "seed": 1}
    args = [f"{k}={v}" for k, v in point.items()]  # what W&B puts for ${args_no_hyphens}
    command = [a for part in sweep["command"] for a in (args if part == "${args_no_hyphens}" else [part])]
    overrides = [a for a in command if not a.startswith("${")]
    assert command[:3] == ["${env}", "${interpreter}", "${program}"]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"output_dir={tmp_path}"])
    assert (cfg.schedule._target_, cfg.schedule.T_0, cfg.schedule.T_mult, cfg.seed) == (
        "anneal.schedules.SGDR",
        5,
        2,
        1,
    )
    assert cfg.logger._target_.endswith("wandb_logger")


def test_wandb_init_imports_what_a_wandb_run_imports_before_torch(tmp_path):
    """Pins the W&B internals that anneal imports early: a new W&B version that no longer imports them at its
    first wandb.init fails here (then start_wandb_early no longer shortens a run's start)."""
    script = (
        "import sys, wandb\n"
        f"names = {WANDB_INIT_IMPORTS!r}\n"
        "assert names[-1] not in sys.modules\n"
        f"wandb.init(project='p', mode='offline', dir={str(tmp_path)!r}).finish()\n"
        "assert names[-1] in sys.modules, names[-1]\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


WANDB = "anneal.loggers.wandb_logger"


@pytest.mark.parametrize(
    ("logger", "env", "imports"),
    [
        ({"_target_": WANDB, "mode": "offline"}, {}, True),
        ({"_target_": WANDB, "mode": "auto"}, {"WANDB_MODE": "disabled"}, False),
        ({"_target_": WANDB, "mode": "disabled"}, {}, False),
        ({"_target_": WANDB, "mode": "bogus"}, {}, False),  # refused later, named
        ({"_target_": WANDB, "mode": "offline"}, {"LOCAL_RANK": "1"}, False),
        ({"_target_": WANDB, "mode": "offline"}, {"SLURM_PROCID": "3"}, False),
        ({"_target_": WANDB, "mode": "offline"}, {"SLURM_PROCID": "0", "RANK": "0"}, True),
        # Lightning's order: LOCAL_RANK before SLURM_PROCID (set even where SLURM does not launch the ranks)
        ({"_target_": WANDB, "mode": "offline"}, {"LOCAL_RANK": "0", "SLURM_PROCID": "2"}, True),
        ({"_target_": "lightning.pytorch.loggers.CSVLogger"}, {}, False),
        (None, {}, False),
    ],
)
def test_only_a_process_that_will_start_a_wandb_run_starts_wandb_early(monkeypatch, logger, env, imports):
    for name in ("WANDB_MODE", "RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    started = []
    monkeypatch.setattr(wandb_start, "start_wandb_service", lambda: started.append(True))
    assert start_wandb_early(logger) is imports
    if imports:  # (the service starts on a thread)
        for thread in threading.enumerate():
            if thread.name == "anneal-wandb-service":
                thread.join(timeout=60)
    assert started == ([True] if imports else [])
