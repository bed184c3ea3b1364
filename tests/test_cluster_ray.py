"""A sweep's jobs as Ray tasks on a running Ray cluster of two nodes (a head and one more, on this machine)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, read_rows, run_cli

pytest.importorskip("hydra_plugins.hydra_ray_launcher")  # the ray extra: pip install -e ".[dev,ray]"

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster():
    """Two Ray nodes of one CPU each; their workers import the tests' callbacks. Stopped even on failure."""
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "RAY_USAGE_STATS_ENABLED": "0"}
    head = ["--head", f"--port={address.rsplit(':', 1)[1]}", "--include-dashboard=false", "--disable-usage-stats"]
    try:
        for where in (head, [f"--address={address}"]):
            started = subprocess.run([RAY, "start", *where, "--num-cpus=1"], env=env, capture_output=True, timeout=300)
            assert started.returncode == 0, started.stderr.decode()[-3000:]
        yield address
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=300)


@pytest.mark.slow
def test_a_sweep_runs_as_ray_tasks_on_two_nodes_one_cpu_and_one_thread_each(ray_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    done = run_cli(
        "-m",
        "hydra/launcher=ray_cluster",
        f"hydra.launcher.ray.init.address={ray_cluster}",
        "schedule=sgdr",
        "schedule.T_0=1,2",
        "seed=0,1",
        "data=synthetic",
        "data.train_size=256",
        "data.test_size=64",
        "data.batch_size=32",
        "logger=csv",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "+callbacks.worker._target_=worker_probe.RecordWorker",
        "+callbacks.worker.path=${output_dir}/worker.json",
        f"hydra.sweep.dir={sweep}",
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = [sweep / str(n) for n in range(4)]
    for job in jobs:
        assert json.loads((job / "results.json").read_text())["epochs"] == 1
    workers = [json.loads((job / "worker.json").read_text()) for job in jobs]
    assert {w["threads"] for w in workers} == {1} and {w["OMP_NUM_THREADS"] for w in workers} == {"1"}
    assert len({w["node"] for w in workers}) == 2  # both nodes took jobs
    arms = [(r["arm"], r["n"], r["failed"]) for r in read_rows(sweep / "study.csv")]
    assert arms == [("T_0=1", "2", "0"), ("T_0=2", "2", "0")]  # arms labelled by what differs, as everywhere
