"""End-to-end runs: the real CLI and the run function, on the real subset and on generated data."""

import json

import pytest
from conftest import FAST, compose_config, read_rows, run_cli

from anneal.run import run
from anneal.schedules import SGDR

RESULT_KEYS = {"test/acc", "test/loss", "epochs", "steps", "wall_seconds", "data", "schedule"}


def test_lenet_two_epochs_on_the_real_subset(subset_root, tmp_path):
    cfg = compose_config(f"data.root={subset_root}", "trainer.max_epochs=2", *FAST, output_dir=tmp_path)
    accuracy = run(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) >= RESULT_KEYS and results["data"] == "CIFAR-10: 5,170 train / 1,017 test images"
    assert accuracy == results["test/acc"] > 0.2  # chance is 0.1
    assert results["epochs"] == 2 and results["steps"] == 2 * 41
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "lr_schedule.png").is_file() and (tmp_path / "csv" / "version_0" / "metrics.csv").is_file()


def test_cli_run_with_wandb_and_no_key_leaves_an_offline_run(tmp_path):
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


def test_wrn_fast_dev_run(tmp_path):
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
    assert 0 <= run(cfg) <= 1


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


def test_adaptive_sgdr_end_to_end_logs_the_lr_its_checkpointed_state_implies(tmp_path):
    import torch

    from anneal.schedules import AdaptiveSGDR

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
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["lr_schedulers"][0]["schedule"]
    assert state["triggered_at"] is not None and len(state["peaks"]) >= 2
    assert all(b <= a for a, b in zip(state["peaks"], state["peaks"][1:]))  # restart peaks only decay
    schedule = AdaptiveSGDR(peak=0.1, total=6, T_0=1, T_mult=1, lr_min=1e-4, trigger_val_acc=0.15, compression=2)
    schedule.load_state_dict(state)
    rows = [r for r in read_rows(tmp_path / "csv" / "version_0" / "metrics.csv") if r.get("lr-SGD")]
    assert len(rows) == 6 * 8
    for row in rows:
        assert float(row["lr-SGD"]) == pytest.approx(schedule(int(row["step"]) / 8), rel=1e-6), row["step"]
    assert json.loads((tmp_path / "results.json").read_text())["val/acc"] > 0.1
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


def test_plateau_end_to_end_reduces_the_lr_when_val_loss_stalls(tmp_path):
    import torch

    from anneal.schedules import Plateau

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
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["lr_schedulers"][0]["schedule"]
    assert state["reductions"]  # a 5% improvement of val/loss per epoch is not kept up
    schedule = Plateau(peak=0.1, total=5, patience=0, factor=0.5, threshold=0.05)
    schedule.load_state_dict(state)
    rows = [r for r in read_rows(tmp_path / "csv" / "version_0" / "metrics.csv") if r.get("lr-SGD")]
    assert len(rows) == 5 * 8
    for row in rows:
        assert float(row["lr-SGD"]) == pytest.approx(schedule(int(row["step"]) / 8), rel=1e-9), row["step"]
    assert min(float(r["lr-SGD"]) for r in rows) < 0.1
    drawn = {int(r["step"]): float(r["lr"]) for r in read_rows(tmp_path / "lr_schedule.csv")}  # redrawn as it ran
    assert [drawn[int(r["step"])] for r in rows] == pytest.approx([float(r["lr-SGD"]) for r in rows])
