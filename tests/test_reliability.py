"""What survives what: kills, interrupts, nan losses, unreachable services, malicious files."""

import json
import os
import pickle
import re
import signal
import tempfile
import time
from pathlib import Path

import pytest
import torch
import wandb_files
from conftest import FAST, ROOT, compose_config, paced, run_cli, run_main, train_process

from anneal.checkpoint_io import AtomicCheckpointIO
from anneal.errors import TrainingStopped
from anneal.run import run
from anneal.storage import atomic_write, load_tensors

# SGDR mid-cycle (T_0=1.5), adaptive restarts, per-cycle SWA and snapshots, all at once; deterministic on CPU
EVERYTHING = [
    "data=synthetic",
    "data.train_size=704",
    "data.test_size=128",
    "data.val_size=64",
    "data.batch_size=32",
    "schedule=adaptive_sgdr",
    "schedule.T_0=1.5",
    "schedule.T_mult=1",
    "schedule.trigger_val_acc=0.05",
    "schedule.compression=2",
    "ensemble=snapshot",
    "ensemble.include_final=true",
    "averaging=swa",
    "averaging.swa_start=1",
    "averaging.swa_freq=cycle",
    "trainer.max_epochs=6",
    "trainer.deterministic=true",
    "callbacks.model_checkpoint.every_n_train_steps=1",
    *FAST,
]
COMPARED = [
    "test/acc",
    "test/loss",
    "val/acc",
    "epochs",
    "steps",
    "swa/test/acc",
    "swa/n_averaged",
    "snapshots",
    "ensemble",
]


def checkpoint_step(path: Path) -> int:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")["global_step"]
    except (FileNotFoundError, EOFError, RuntimeError, pickle.UnpicklingError):
        return -1


def final_weights(run_dir: Path) -> dict:
    return load_tensors(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


def test_sigkill_at_an_arbitrary_step_then_resume_gives_the_uninterrupted_result(tmp_path):
    """The real process for SIGKILL and its resume; the reference and the resume run in this process."""
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    done = run_main(*EVERYTHING, f"hydra.run.dir={reference}")
    assert done.returncode == 0, done.stderr[-3000:]

    process = train_process(*EVERYTHING, f"hydra.run.dir={killed}")
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while checkpoint_step(last) < 70 and process.poll() is None and time.time() < deadline:  # mid-epoch 4 of 6
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stopped_at = checkpoint_step(last)
    assert process.returncode == -signal.SIGKILL and 70 <= stopped_at < 6 * 22, stopped_at  # killed, not finished
    assert not (killed / "results.json").exists()

    done = run_main(*EVERYTHING, f"hydra.run.dir={killed}", "ckpt_path=last")
    assert done.returncode == 0, done.stderr[-3000:]
    expected = json.loads((reference / "results.json").read_text())
    resumed = json.loads((killed / "results.json").read_text())
    assert {k: resumed[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}
    for (key, value), reference_value in zip(final_weights(killed).items(), final_weights(reference).values()):
        assert torch.equal(value, reference_value), key
    assert torch.equal(load_tensors(killed / "swa.pt")["0.weight"], load_tensors(reference / "swa.pt")["0.weight"])


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    # an exponential warmup towards lr 1e8: the first epochs train, a later one blows up (4 steps per epoch)
    cfg = compose_config(
        "data=synthetic",
        "data.train_size=512",
        "data.test_size=64",
        "optimizer.lr=1e8",
        "warmup=exponential",
        "warmup.epochs=4",
        "warmup.start_lr=1e-4",
        "trainer.max_epochs=6",
        *FAST,
        output_dir=tmp_path,
    )
    with pytest.raises(TrainingStopped, match=r"loss became nan/inf .* last good checkpoint is .*last\.ckpt") as error:
        run(cfg)
    stopped_at = int(re.search(r"by step (\d+)", str(error.value)).group(1))
    checkpoint = load_tensors(tmp_path / "checkpoints" / "last.ckpt")
    assert stopped_at > 4 and checkpoint["global_step"] == 4 * ((stopped_at - 1) // 4)  # the epoch end before it
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())
    assert not (tmp_path / "results.json").exists()


def test_sigterm_saves_a_checkpoint_mid_epoch_and_the_run_resumes(tmp_path):
    """The real process for exit code 143: SIGTERM from outside, taken by anneal's thread."""
    args = [
        "data=synthetic",
        "data.train_size=4096",
        "data.test_size=64",
        "data.batch_size=32",
        "trainer.max_epochs=3",
        *FAST,
        f"hydra.run.dir={tmp_path}",
    ]
    process = train_process(*args, *paced(0.02))  # ≥ 2.5 s an epoch: the signal lands mid-epoch
    deadline = time.time() + 120
    while not (tmp_path / "lr_schedule.png").exists() and time.time() < deadline:  # written when training starts
        time.sleep(0.05)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output[-3000:]
    assert "stopped by SIGTERM" in output and "ckpt_path=last" in output
    step = checkpoint_step(tmp_path / "checkpoints" / "last.ckpt")
    assert 0 < step < 3 * 128 and step % 128 != 0  # saved where it stopped, mid-epoch
    done = run_main(*args, "ckpt_path=last")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "results.json").read_text())["steps"] == 3 * 128


@pytest.mark.slow  # waits out W&B's 10 s start-up timeout
def test_unreachable_wandb_falls_back_to_offline_and_completes(tmp_path):
    env = {"WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_MODE": None, "HOME": str(tmp_path)}
    started = time.time()
    done = run_cli(
        "data=synthetic",
        "data.train_size=256",
        "data.test_size=64",
        "trainer.max_epochs=1",
        "logger=wandb",
        "logger.init_timeout=10",
        f"hydra.run.dir={tmp_path / 'run'}",
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "logging offline" in (tmp_path / "run" / "train.log").read_text()
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert "test/acc" in json.loads((tmp_path / "run" / "results.json").read_text())
    assert time.time() - started < 120


def test_no_secret_is_written_anywhere(tmp_path):
    secret = "s3cr3t-" + "k" * 33
    env = {"WANDB_API_KEY": secret, "WANDB_MODE": "offline", "HOME": str(tmp_path)}
    done = run_cli(
        "data=synthetic",
        "data.train_size=256",
        "data.test_size=64",
        "trainer.max_epochs=1",
        "logger=wandb",
        f"hydra.run.dir={tmp_path / 'run'}",
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_atomic_write_never_leaves_a_truncated_file(tmp_path):
    target = tmp_path / "snapshot.pt"
    target.write_bytes(b"the finished snapshot")

    def crash_halfway(f):
        f.write(b"half of a new fi")
        raise KeyboardInterrupt  # a kill arriving mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, crash_halfway)
    assert target.read_bytes() == b"the finished snapshot"
    assert [p.name for p in tmp_path.iterdir()] == ["snapshot.pt"]


def test_checkpoints_are_written_beside_their_target_and_atomically(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "state_dict": {"w": torch.ones(3)}}, path)
    created, real_mkstemp = [], tempfile.mkstemp

    def mkstemp(**kwargs):
        created.append(kwargs["dir"])
        return real_mkstemp(**kwargs)

    def save_then_fail(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("tempfile.mkstemp", mkstemp)
    monkeypatch.setattr("torch.save", save_then_fail)
    with pytest.raises(OSError):
        io.save_checkpoint({"global_step": 2}, path)
    assert created == [path.parent]  # same directory: the final rename is atomic on any filesystem
    assert io.load_checkpoint(path)["global_step"] == 1 and len(list(path.parent.iterdir())) == 1


def test_a_malicious_checkpoint_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    evil = tmp_path / "evil.ckpt"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": Exploit()}, f)
    done = run_main(
        "data=synthetic",
        "data.train_size=128",
        "data.test_size=32",
        "trainer.max_epochs=1",
        *FAST,
        f"ckpt_path={evil}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert done.returncode == 2 and f"{evil} was refused: it holds objects other than tensors" in done.stderr
    assert "weights_only=False" not in done.stderr and "Traceback" not in done.stderr  # no advice to load it anyway
    assert not (tmp_path / "pwned").exists()


def test_every_torch_load_in_the_code_is_weights_only():
    calls = [
        (p, line) for p in (ROOT / "src").rglob("*.py") for line in p.read_text().splitlines() if "torch.load(" in line
    ]
    assert calls and all("weights_only=True" in line for _, line in calls), calls


def test_a_resumed_run_continues_its_wandb_run(tmp_path):
    """A resume continues the same W&B run id, keeps its name and group, and its step axis goes on where the
    first segment stopped: a restart at 0 would be dropped by W&B as steps going backwards when it merges them."""
    common = [
        "data=synthetic",
        "data.train_size=256",
        "data.test_size=64",
        "schedule=exp",  # its lr so far does not depend on the run's length: the run may be extended
        "logger=wandb",
        "logger.mode=offline",
        f"hydra.run.dir={tmp_path}",
        *FAST[1:],
    ]
    assert run_cli(*common, "trainer.max_epochs=1", env={"WANDB_API_KEY": None}).returncode == 0
    done = run_cli(
        *common,
        "trainer.max_epochs=2",
        "ckpt_path=last",
        "resume_changes=[trainer.max_epochs]",
        env={"WANDB_API_KEY": None},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    segments = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(segments) == 2 and len({p.name.rsplit("-", 1)[-1] for p in segments}) == 1  # two segments, one run
    first, second = (wandb_files.run_info(s) for s in segments)
    assert second["name"] == first["name"].replace("max_epochs=1", "max_epochs=2") and "resume" not in second["name"]
    steps = [[row["_step"] for row in wandb_files.history(s)] for s in segments]
    assert steps[0] and steps[1] and min(steps[1]) >= max(steps[0])  # the axis goes on, it does not restart
    assert all(a <= b for a, b in zip(steps[1], steps[1][1:]))  # and only goes forward within a segment
    lr_steps = sorted({r["trainer/global_step"] for s in segments for r in wandb_files.history(s) if "lr-SGD" in r})
    assert lr_steps == list(range(4))  # every optimizer step's lr, once (2 steps per epoch)
