"""End-to-end runs: the real CLI and the run function, on the real subset and on generated data."""

import json

import pytest
from conftest import FAST, accuracy_by_hand, compose_config, read_rows, run_cli

from anneal.run import run
from anneal.schedules import SGDR

RESULT_KEYS = {"test/acc", "test/loss", "epochs", "steps", "wall_seconds", "data", "schedule"}


def test_lenet_two_epochs_on_the_real_subset(subset_root, tmp_path, monkeypatch):
    by_hand = accuracy_by_hand(monkeypatch)
    cfg = compose_config(f"data.root={subset_root}", "trainer.max_epochs=2", *FAST, output_dir=tmp_path)
    accuracy = run(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) >= RESULT_KEYS and results["data"] == "CIFAR-10: 5,170 train / 1,017 test images"
    # the returned metric is results.json's, which is the trained network's accuracy on the whole test set
    assert cfg.optimized_metric == "test/acc" and accuracy == results["test/acc"]
    assert by_hand == [pytest.approx(accuracy, abs=1e-6)]
    assert results["epochs"] == 2 and results["steps"] == 2 * 41
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "lr_schedule.png").is_file() and (tmp_path / "csv" / "version_0" / "metrics.csv").is_file()


def test_cli_run_with_wandb_and_no_key_leaves_an_offline_run(tmp_path):
    """The real process for exit code 0, with W&B (which starts a service process of its own)."""
    env = {"HOME": str(tmp_path), "WANDB_API_KEY": None, "WANDB_MODE": None}  # no key anywhere
    out = tmp_path / "run"
    done = run_cli(
        "data=synthetic",
        "data.train_size=600",
        "data.test_size=200",
        "trainer.max_epochs=1",
        "logger=wandb",
        f"hydra.run.dir={out}",
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SYNTHETIC" in (out / "train.log").read_text()
    offline_runs = list((out / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1 and list(offline_runs[0].glob("*.wandb"))
    results = json.loads((out / "results.json").read_text())
    assert "SYNTHETIC" in results["data"] and set(results) >= RESULT_KEYS


def test_lr_logged_every_step_equals_the_schedule(tmp_path):
    cfg = compose_config(
        "data=synthetic",
        "data.train_size=640",
        "data.test_size=100",
        "data.batch_size=64",
        "schedule=sgdr",
        "schedule.T_0=1",
        "schedule.T_mult=2",
        "optimizer.lr=0.1",
        "trainer.max_epochs=3",
        "trainer.log_every_n_steps=1",
        *FAST,
        output_dir=tmp_path,
    )
    run(cfg)
    rows = [r for r in read_rows(tmp_path / "csv" / "version_0" / "metrics.csv") if r.get("lr-SGD")]
    assert len(rows) == 30  # every optimizer step
    schedule = SGDR(peak=0.1, total=3, T_0=1, T_mult=2, lr_min=1e-5)
    for row in rows:
        step = int(row["step"])
        assert float(row["lr-SGD"]) == pytest.approx(schedule(step / 10), rel=1e-6)
    lrs = [float(r["lr-SGD"]) for r in rows]
    assert lrs[10] == pytest.approx(0.1) and lrs[9] < 0.01  # the restart at epoch 1


def test_wrn_fast_dev_run(tmp_path, monkeypatch):
    by_hand = accuracy_by_hand(monkeypatch)
    cfg = compose_config(
        "data=synthetic",
        "data.train_size=64",
        "data.test_size=32",
        "data.batch_size=16",
        "model=wrn",
        "model.depth=16",
        "model.widen_factor=4",
        "++trainer.fast_dev_run=1",
        *FAST,
        output_dir=tmp_path,
    )
    accuracy = run(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["steps"] == 1 and accuracy == results["test/acc"]  # one step, then the test it returns
    assert by_hand == [pytest.approx(accuracy, abs=1e-6)]  # of the WRN it trained, over the batch it tested


def test_resume_from_last_checkpoint_continues_training_and_keeps_the_first_logs(tmp_path):
    # a schedule whose lr so far does not depend on the run's length: the extended run is the longer run
    common = ["data=synthetic", "data.train_size=256", "data.test_size=64", "schedule=exp", *FAST]
    run(compose_config(*common, "trainer.max_epochs=2", output_dir=tmp_path))
    run(
        compose_config(
            *common,
            "trainer.max_epochs=3",
            "ckpt_path=last",
            "resume_changes=[trainer.max_epochs]",
            output_dir=tmp_path,
        )
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["epochs"] == 3 and results["steps"] == 3 * 2
    epochs = [
        {int(float(r["epoch"])) for r in read_rows(tmp_path / "csv" / v / "metrics.csv") if r["train/loss"]}
        for v in ("version_0", "version_1")
    ]  # the epochs trained in each segment, counted from 1 as in history.csv
    assert epochs == [{1, 2}, {3}]


@pytest.mark.slow  # two processes that each import torch and Lightning, and gloo's rendezvous: .ci/run runs it
def test_ddp_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    done = run_cli(
        "data=synthetic",
        "data.train_size=512",
        "data.test_size=128",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=2",
        "schedule=sgdr",
        "schedule.T_0=1",
        "schedule.T_mult=1",
        "ensemble=snapshot",
        "averaging=swa",
        "averaging.swa_start=1",
        *FAST[1:],
        "logger=wandb",
        "logger.mode=offline",
        f"hydra.run.dir={out}",
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 2 * 2  # 512 images / 2 ranks / 128 per batch
    assert results["swa/n_averaged"] == 3  # after steps 2, 3, 4
    assert results["swa/identical_on_ranks"] is True  # all-gathered from both processes
    assert results["swa/bn_update_images"] == 0  # LeNet has no BatchNorm: nothing to recompute
    assert [s["step"] for s in results["snapshots"]] == [2, 4]
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["snapshot_01_epoch1.pt", "snapshot_02_epoch2.pt"]
    assert len(list((out / "wandb").glob("offline-run-*"))) == 1  # one W&B run, from rank 0
    assert "Error executing job" not in done.stdout + done.stderr  # rank 1 too ended cleanly
    assert (done.stdout + done.stderr).count("snapshot 1 saved") == 1  # one file, reported once


def fed_metric(monkeypatch, values: list[float]) -> list[float]:
    """The monitored metric the run's schedule learns from is `values`, one per validation, instead of what the
    network measured (a training trajectory differs between CPUs); returns what the module measured and fed."""
    from anneal.schedules import ScheduleLR

    measured: list[float] = []
    fed = iter(values)
    observe = ScheduleLR.observe

    def observe_fed(self, value):
        measured.append(value)
        observe(self, next(fed))

    monkeypatch.setattr(ScheduleLR, "observe", observe_fed)
    return measured


def logged(run_dir, key: str) -> list[float]:
    return [float(r[key]) for r in read_rows(run_dir / "csv" / "version_0" / "metrics.csv") if r.get(key)]


def test_adaptive_sgdr_end_to_end_logs_the_lr_its_checkpointed_state_implies(tmp_path, monkeypatch):
    import torch

    from anneal.schedules import AdaptiveSGDR

    stream = [0.10, 0.12, 0.20, 0.25, 0.24, 0.30]  # reaches the trigger 0.15 at the third validation
    measured = fed_metric(monkeypatch, stream)
    cfg = compose_config(
        "data=synthetic",
        "data.train_size=640",
        "data.test_size=100",
        "data.val_size=128",
        "data.batch_size=64",
        "schedule=adaptive_sgdr",
        "schedule.trigger_val_acc=0.15",
        "schedule.T_0=1",
        "schedule.T_mult=1",
        "schedule.compression=2",
        "optimizer.lr=0.1",
        "trainer.max_epochs=6",
        "trainer.log_every_n_steps=1",
        *FAST,
        output_dir=tmp_path,
    )
    run(cfg)
    assert measured == pytest.approx(logged(tmp_path, "val/acc"), rel=1e-6)  # the module feeds what it logs
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["lr_schedulers"][0]["schedule"]
    settings = {"peak": 0.1, "total": 6, "T_0": 1, "T_mult": 1, "lr_min": 1e-4, "trigger_val_acc": 0.15}
    settings["compression"] = 2
    expected = AdaptiveSGDR(**settings)
    for epoch, value in enumerate(stream, start=1):
        expected.observe(float(epoch), value)
    assert state == expected.state_dict()  # fed after each epoch's validation, at the epoch's end
    assert state["triggered_at"] == 3.0 and len(state["peaks"]) == 3
    assert all(b <= a for a, b in zip(state["peaks"], state["peaks"][1:]))  # restart peaks only decay
    schedule = AdaptiveSGDR(**settings)
    schedule.load_state_dict(state)
    rows = [r for r in read_rows(tmp_path / "csv" / "version_0" / "metrics.csv") if r.get("lr-SGD")]
    assert len(rows) == 6 * 8
    for row in rows:
        assert float(row["lr-SGD"]) == pytest.approx(schedule(int(row["step"]) / 8), rel=1e-6), row["step"]
    assert [float(r["lr-SGD"]) for r in rows[: 3 * 8]] == pytest.approx([0.1] * 24)  # held until the trigger
    drawn = {int(r["step"]): float(r["lr"]) for r in read_rows(tmp_path / "lr_schedule.csv")}
    assert [drawn[int(r["step"])] for r in rows] == pytest.approx([float(r["lr-SGD"]) for r in rows], rel=1e-6)


def test_epoch_training_metrics_are_the_means_over_the_epochs_steps(tmp_path):
    cfg = compose_config(
        "data=synthetic",
        "data.train_size=600",
        "data.test_size=100",
        "data.batch_size=64",
        "trainer.max_epochs=2",
        "trainer.log_every_n_steps=1",
        *FAST,
        output_dir=tmp_path,
    )
    run(cfg)
    rows = read_rows(tmp_path / "csv" / "version_0" / "metrics.csv")
    for epoch in (1, 2):  # counted from 1, as history.csv counts them
        in_epoch = [r for r in rows if r["epoch"] and int(float(r["epoch"])) == epoch]
        steps = [float(r["train/loss_step"]) for r in in_epoch if r["train/loss_step"]]
        sizes = [64] * 9 + [600 - 9 * 64]  # the last batch is smaller
        (logged,) = [float(r["train/loss"]) for r in in_epoch if r["train/loss"]]
        assert len(steps) == 10 and logged == pytest.approx(sum(s * n for s, n in zip(steps, sizes)) / 600, rel=1e-5)


@pytest.mark.slow
def test_compiled_network_trains_with_snapshots_and_swa(tmp_path):
    cfg = compose_config(
        "data=synthetic",
        "data.train_size=512",
        "data.test_size=128",
        "model.compile=true",
        "schedule=sgdr",
        "schedule.T_0=1",
        "schedule.T_mult=1",
        "trainer.max_epochs=2",
        "ensemble=snapshot",
        "averaging=swa",
        "averaging.swa_start=1",
        *FAST,
        output_dir=tmp_path,
    )
    run(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["snapshots"]) == 2 and results["swa/n_averaged"] >= 1
    from anneal.storage import load_tensors

    assert all(not k.startswith("_orig_mod") for k in load_tensors(tmp_path / "swa.pt"))  # plain network weights


def test_plateau_end_to_end_reduces_the_lr_when_val_loss_stalls(tmp_path, monkeypatch):
    import torch

    from anneal.schedules import Plateau

    # improving by more than 5% of the best, except at the third and the fifth validation: reduced there
    measured = fed_metric(monkeypatch, [2.0, 1.5, 1.48, 1.0, 0.99])
    cfg = compose_config(
        "data=synthetic",
        "data.train_size=640",
        "data.test_size=100",
        "data.val_size=128",
        "data.batch_size=64",
        "schedule=plateau",
        "schedule.patience=0",
        "schedule.factor=0.5",
        "schedule.threshold=0.05",
        "optimizer.lr=0.1",
        "trainer.max_epochs=5",
        *FAST,
        output_dir=tmp_path,
    )
    run(cfg)
    assert measured == pytest.approx(logged(tmp_path, "val/loss"), rel=1e-6)  # the module feeds what it logs
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["lr_schedulers"][0]["schedule"]
    assert state["reductions"] == [3.0, 5.0] and state["best"] == 1.0
    schedule = Plateau(peak=0.1, total=5, patience=0, factor=0.5, threshold=0.05)
    schedule.load_state_dict(state)
    rows = [r for r in read_rows(tmp_path / "csv" / "version_0" / "metrics.csv") if r.get("lr-SGD")]
    assert len(rows) == 5 * 8
    for row in rows:
        assert float(row["lr-SGD"]) == pytest.approx(schedule(int(row["step"]) / 8), rel=1e-9), row["step"]
    lrs = [float(r["lr-SGD"]) for r in rows]
    assert lrs == pytest.approx([0.1] * 24 + [0.05] * 16)  # the reduction at epoch 3 applies from its next step
    drawn = {int(r["step"]): float(r["lr"]) for r in read_rows(tmp_path / "lr_schedule.csv")}  # redrawn as it ran
    assert [drawn[int(r["step"])] for r in rows] == pytest.approx([float(r["lr-SGD"]) for r in rows])
