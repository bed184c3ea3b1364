"""How a sweep's wall time grows with its jobs on one machine, per launcher, and where each job's start-up goes.

    flock /tmp/anneal-cpu.lock python benchmarks/sweeps.py --launchers basic,joblib --jobs 4
    python benchmarks/sweeps.py --launchers slurm_local,ray --jobs 4,8 --out sweeps.jsonl

Each sweep is `python train.py -m seed=0,...,N-1` of short LeNet runs (CIFAR10_ROOT's images if set, else the
synthetic ones) through one launcher: basic (one process, the jobs one after another), joblib (n_jobs=2
processes, reused), slurm_local (submitit's local executor: a fresh process per job, all started at once) and ray
(a local Ray instance started by the sweep, one CPU per job, worker processes reused). sweep_probes.py clocks
every job in its own process; the table gives per-job medians of:

  dispatch   sweep start -> the launcher begins the job (its process spawned and the job unpickled, or queued)
  to step    job start -> first optimizer step (imports not yet done in that process, data, model, trainer)
  process    the job's process start -> first step (what results.json's time_to_first_step measures)
  run        first step -> job end (training, evaluation, results, the sweep summary's rewrite)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAUNCHERS = {
    "basic": [],
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "slurm_local": ["hydra/launcher=slurm_local"],
    "ray": ["hydra/launcher=ray", "+hydra.launcher.ray.remote.num_cpus=1"],
}
PROBES = [
    "+hydra.callbacks.clock._target_=sweep_probes.JobClock",
    "+callbacks.first_step._target_=sweep_probes.FirstStep",
]


def data_overrides() -> list[str]:
    root = os.environ.get("CIFAR10_ROOT")
    if root and (Path(root) / "cifar-10-batches-py").is_dir():
        return ["data=cifar10", f"data.root={root}", "data.download=false"]
    return ["data=synthetic", "data.train_size=5000", "data.test_size=1000"]


def run_sweep(launcher: str, jobs: int, epochs: int, workdir: Path) -> dict:
    sweep = workdir / f"{launcher}-{jobs}"
    command = [sys.executable, str(ROOT / "train.py"), "-m", *LAUNCHERS[launcher], *PROBES, *data_overrides()]
    command += ["model=lenet", "logger=csv", f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false"]
    command += ["seed=" + ",".join(map(str, range(jobs))), f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks")}
    started = time.time()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.time() - started
    if done.returncode != 0:
        raise SystemExit(f"{launcher} sweep failed:\n{done.stderr[-3000:]}")
    clocks = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/timing.json"))]
    assert len(clocks) == jobs, f"{len(clocks)} of {jobs} jobs left timing.json"
    median = lambda values: round(statistics.median(values), 2)  # noqa: E731
    return {
        "launcher": launcher,
        "jobs": jobs,
        "epochs": epochs,
        "data": data_overrides()[0],
        "wall_s": round(wall, 1),
        "processes": len({c["pid"] for c in clocks}),
        "dispatch_s": median([c["job_start"] - started for c in clocks]),
        "to_step_s": median([c["first_step"] - c["job_start"] for c in clocks]),
        "process_s": median([c["first_step"] - c["process_start"] for c in clocks]),
        "run_s": median([c["job_end"] - c["first_step"] for c in clocks]),
        "first_job_to_step_s": round(min(clocks, key=lambda c: c["job_start"])["first_step"] - started, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launchers", default="basic,joblib,slurm_local,ray")
    parser.add_argument("--jobs", default="4,8")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, help="append each result to this JSON-lines file")
    args = parser.parse_args()
    columns = ["launcher", "jobs", "wall_s", "processes", "dispatch_s", "to_step_s", "process_s", "run_s"]
    print(" ".join(f"{c:>11}" for c in columns), flush=True)
    with tempfile.TemporaryDirectory(prefix="anneal-sweeps-") as workdir:
        for jobs in map(int, args.jobs.split(",")):
            for launcher in args.launchers.split(","):
                result = run_sweep(launcher, jobs, args.epochs, Path(workdir))
                print(" ".join(f"{result[c]!s:>11}" for c in columns), flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
