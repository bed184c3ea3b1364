"""Snapshot-ensemble evaluation (Huang et al. 2017): each snapshot's test predictions are computed
once; row i of the table is snapshot i alone and the ensemble (mean softmax) of the newest i.

Re-run on a finished run directory:  python -m anneal.ensemble RUN_DIR [--data-root DIR]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import statistics
from pathlib import Path

import torch
from torch import Tensor, nn

from anneal.evaluation import classification_metrics, predict
from anneal.storage import load_tensors, save_json, save_text

log = logging.getLogger(__name__)
COLUMNS = ["members", "snapshot_epoch", "single/acc", "single/nll", "single/ece",
           "ensemble/acc", "ensemble/nll", "ensemble/ece"]


def newest(snapshots: list, max_members: int | None) -> list:
    """The snapshots an ensemble uses: the newest max_members (all when null)."""
    return snapshots[-max_members:] if max_members else snapshots


def member_probs(network: nn.Module, files: list[Path], batches, device) -> tuple[list[Tensor], Tensor]:
    """Each snapshot's test probabilities, one forward pass per snapshot."""
    probs, labels = [], None
    for file in files:
        network.load_state_dict(load_tensors(file, map_location=device))
        p, labels = predict(network, batches, device)
        probs.append(p)
    return probs, labels


def ensemble_rows(probs: list[Tensor], labels: Tensor, epochs: list[float]) -> list[dict]:
    rows = []
    for i in range(1, len(probs) + 1):
        single = classification_metrics(probs[i - 1], labels)
        ensemble = classification_metrics(torch.stack(probs[-i:]).mean(0), labels)
        rows.append({"members": i, "snapshot_epoch": epochs[i - 1],
                     **{f"single/{k}": v for k, v in single.items()},
                     **{f"ensemble/{k}": v for k, v in ensemble.items()}})
    return rows


def single_model_spread(rows: list[dict]) -> tuple[float, float]:
    accs = [r["single/acc"] for r in rows]
    return statistics.fmean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0


def markdown(rows: list[dict]) -> str:
    mean, std = single_model_spread(rows)
    lines = ["| i | epoch of snapshot i | snapshot i acc | NLL | ECE | ensemble of newest i acc | NLL | ECE |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['members']} | {r['snapshot_epoch']:g} | {r['single/acc']:.4f} | {r['single/nll']:.4f} "
                     f"| {r['single/ece']:.4f} | {r['ensemble/acc']:.4f} | {r['ensemble/nll']:.4f} | {r['ensemble/ece']:.4f} |")
    lines.append(f"\nsingle snapshots: test acc {mean:.4f} ± {std:.4f} (mean ± std over {len(rows)})")
    return "\n".join(lines) + "\n"


def write_report(rows: list[dict], run_dir: Path) -> dict[str, Path]:
    """ensemble.csv, ensemble.md and ensemble.png in the run directory; the table on the console."""
    from matplotlib.figure import Figure
    from rich.console import Console
    from rich.markdown import Markdown

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    paths = {"csv": save_text(buffer.getvalue(), run_dir / "ensemble.csv"),
             "md": save_text(markdown(rows), run_dir / "ensemble.md")}
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    members = [r["members"] for r in rows]
    ax.plot(members, [r["ensemble/acc"] for r in rows], "o-", label="ensemble of the newest i snapshots")
    ax.plot(members, [r["single/acc"] for r in rows], "s--", label="snapshot i alone")
    ax.set(xlabel="i", ylabel="test accuracy", title="Snapshot ensemble", xticks=members)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(run_dir / "ensemble.png", dpi=110)
    paths["png"] = run_dir / "ensemble.png"
    Console().print(Markdown(markdown(rows)))
    return paths


def evaluate_snapshots(network: nn.Module, snapshots: list[dict], max_members: int | None, run_dir: Path, batches,
                       device) -> tuple[list[dict], dict]:
    """The ensemble table of a run's snapshots (written to run_dir as csv, md and png) and what goes into
    results.json: each member's test accuracy, the ensemble rows, and the single snapshots' mean and std."""
    members = newest(snapshots, max_members)
    probs, labels = member_probs(network, [run_dir / s["file"] for s in members], batches, device)
    epochs = [s["epoch"] if s["epoch"] is not None else float("nan") for s in members]
    rows = ensemble_rows(probs, labels, epochs)
    write_report(rows, run_dir)
    accs = {s["file"]: row["single/acc"] for s, row in zip(members, rows)}
    mean, std = single_model_spread(rows)
    return rows, {"snapshots": [{**s, "test/acc": accs.get(s["file"])} for s in snapshots],
                  "ensemble": results_ensemble(rows), "ensemble/test/acc": rows[-1]["ensemble/acc"],
                  "snapshots/test/acc_mean": mean, "snapshots/test/acc_std": std}


def evaluate_run_dir(run_dir: Path, data_root: str | None = None, device: str = "cpu") -> list[dict]:
    """Re-evaluate the snapshots of a finished run and update its ensemble files and results.json."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from anneal.run import build_network

    cfg = OmegaConf.load(run_dir / "config.yaml")  # resolved, written by every training run
    if data_root:
        cfg.data.root = data_root
    results_path = run_dir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    snapshots = results.get("snapshots") or [
        {"file": str(p.relative_to(run_dir)), "epoch": None, "step": None}
        for p in sorted((run_dir / "snapshots").glob("snapshot_*.pt"))]
    if not snapshots:
        raise SystemExit(f"no snapshots in {run_dir}")
    network, _ = build_network(cfg.model)
    rows, evaluated = evaluate_snapshots(network.to(device), snapshots, OmegaConf.select(cfg, "ensemble.max_members"),
                                         run_dir, instantiate(cfg.data).batches("test"), torch.device(device))
    save_json(results | evaluated, results_path)
    return rows


def results_ensemble(rows: list[dict]) -> list[dict]:
    return [{"members": r["members"], "test/acc": r["ensemble/acc"], "test/nll": r["ensemble/nll"],
             "test/ece": r["ensemble/ece"]} for r in rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-root", help="override data.root of the run (where cifar-10-batches-py is)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    evaluate_run_dir(args.run_dir, args.data_root, args.device)


if __name__ == "__main__":
    main()
