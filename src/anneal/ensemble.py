"""Recompute the snapshot-ensemble table of a finished run from its directory:

    python -m anneal.ensemble RUN_DIR [--data-root DIR] [--device cpu|cuda]

The run directory is untrusted input, like a checkpoint: only anneal's own networks and data modules are
rebuilt from its config.yaml, and snapshots load with weights_only."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from anneal.config import build_data, build_network
from anneal.errors import ConfigError, DataError
from anneal.evaluation import evaluate_snapshots
from anneal.storage import save_json


def evaluate_run_dir(run_dir: Path, data_root: str | None = None, device: str = "cpu") -> list[dict]:
    """Re-evaluate the snapshots of a finished run and update its ensemble files and results.json."""
    cfg = OmegaConf.load(run_dir / "config.yaml")  # resolved, written by every training run
    if not isinstance(cfg, DictConfig):
        raise SystemExit(f"{run_dir / 'config.yaml'} is not a run's config")
    if data_root:
        cfg.data.root = data_root
    results_path = run_dir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    snapshots = results.get("snapshots") or [
        {"file": str(p.relative_to(run_dir)), "epoch": None, "step": None}
        for p in sorted((run_dir / "snapshots").glob("snapshot_*.pt"))
    ]
    if not snapshots:
        raise SystemExit(f"no snapshots in {run_dir}")
    datamodule = build_data(cfg, trusted=False)
    network = build_network(cfg, datamodule.num_classes, trusted=False).network
    max_members = OmegaConf.select(cfg, "ensemble.max_members")
    rows, evaluated = evaluate_snapshots(
        network.to(device), snapshots, max_members, run_dir, datamodule.batches("test"), torch.device(device)
    )
    save_json(results | evaluated, results_path)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-root", help="override data.root of the run (where cifar-10-batches-py is)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    try:
        evaluate_run_dir(args.run_dir, args.data_root, args.device)
    except (ConfigError, DataError) as error:
        raise SystemExit(f"python -m anneal.ensemble: error: {error}") from None


if __name__ == "__main__":
    main()
