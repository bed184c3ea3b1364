"""Test-time evaluation outside Lightning's loops: one pass per model, metrics from its probabilities. Used
for the averaged models and for snapshot ensembles (Huang et al. 2017), whose members are each run once: row i
of the ensemble table is snapshot i alone and the ensemble (mean softmax) of the newest i."""

from __future__ import annotations

import csv
import io
import logging
import statistics
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_calibration_error

from anneal.storage import load_tensors, save_text

log = logging.getLogger(__name__)
COLUMNS = [
    "members",
    "snapshot_epoch",
    "single/acc",
    "single/nll",
    "single/ece",
    "ensemble/acc",
    "ensemble/nll",
    "ensemble/ece",
]


@torch.inference_mode()
def predict(
    network: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device
) -> tuple[Tensor, Tensor]:
    """(softmax probabilities, labels) of a network over all batches, in eval mode."""
    was_training = network.training
    network.eval()
    probs, labels = [], []
    for x, y in batches:
        probs.append(network(x.to(device)).float().softmax(-1).cpu())
        labels.append(y.cpu())
    network.train(was_training)
    return torch.cat(probs), torch.cat(labels)


def classification_metrics(probs: Tensor, labels: Tensor) -> dict[str, float]:
    """Accuracy, negative log-likelihood (the cross-entropy loss) and 15-bin expected calibration error."""
    num_classes = probs.shape[1]
    nll = -probs.gather(1, labels[:, None]).clamp_min(1e-12).log().mean()
    return {
        "acc": multiclass_accuracy(probs, labels, num_classes, average="micro").item(),
        "nll": nll.item(),
        "ece": multiclass_calibration_error(probs, labels, num_classes, n_bins=15, norm="l1").item(),
    }


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
    assert labels is not None, "no snapshot files"
    return probs, labels


def ensemble_rows(probs: list[Tensor], labels: Tensor, epochs: list[float]) -> list[dict]:
    """Row i, both counted from the newest as in the Keras snapshot-ensemble post (2019): the i-th newest
    snapshot alone, and the ensemble of the newest i. `probs` and `epochs` are oldest first."""
    rows = []
    for i in range(1, len(probs) + 1):
        single = classification_metrics(probs[-i], labels)
        ensemble = classification_metrics(torch.stack(probs[-i:]).mean(0), labels)
        rows.append(
            {
                "members": i,
                "snapshot_epoch": epochs[-i],
                **{f"single/{k}": v for k, v in single.items()},
                **{f"ensemble/{k}": v for k, v in ensemble.items()},
            }
        )
    return rows


def single_model_spread(rows: list[dict]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof 0, the post's np.std) of the single snapshots' accuracy."""
    accs = [r["single/acc"] for r in rows]
    return statistics.fmean(accs), statistics.pstdev(accs)


def markdown(rows: list[dict]) -> str:
    mean, std = single_model_spread(rows)
    lines = [
        "| i | epoch of the i-th newest | i-th newest alone: acc | NLL | ECE "
        "| ensemble of the newest i: acc | NLL | ECE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['members']} | {r['snapshot_epoch']:g} | {r['single/acc']:.4f} | {r['single/nll']:.4f} "
            f"| {r['single/ece']:.4f} | {r['ensemble/acc']:.4f} | {r['ensemble/nll']:.4f} | {r['ensemble/ece']:.4f} |"
        )
    lines.append(
        f"\nsingle snapshots: test acc {mean:.4f} ± {std:.4f} (mean ± population std, ddof 0, over {len(rows)})"
    )
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
    paths = {
        "csv": save_text(buffer.getvalue(), run_dir / "ensemble.csv"),
        "md": save_text(markdown(rows), run_dir / "ensemble.md"),
    }
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    members = [r["members"] for r in rows]
    ax.plot(members, [r["ensemble/acc"] for r in rows], "o-", label="ensemble of the newest i snapshots")
    ax.plot(members, [r["single/acc"] for r in rows], "s--", label="the i-th newest snapshot alone")
    ax.set(xlabel="i", ylabel="test accuracy", title="Snapshot ensemble", xticks=members)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(run_dir / "ensemble.png", dpi=110)
    paths["png"] = run_dir / "ensemble.png"
    Console().print(Markdown(markdown(rows)))
    return paths


def evaluate_snapshots(
    network: nn.Module, snapshots: list[dict], max_members: int | None, run_dir: Path, batches, device
) -> tuple[list[dict], dict]:
    """The ensemble table of a run's snapshots (written to run_dir as csv, md and png) and what goes into
    results.json: each member's test accuracy, the ensemble rows, and the single snapshots' mean and std."""
    members = newest(snapshots, max_members)
    probs, labels = member_probs(network, [run_dir / s["file"] for s in members], batches, device)
    epochs = [s["epoch"] if s["epoch"] is not None else float("nan") for s in members]
    rows = ensemble_rows(probs, labels, epochs)
    write_report(rows, run_dir)
    accs = {s["file"]: row["single/acc"] for s, row in zip(reversed(members), rows)}
    mean, std = single_model_spread(rows)
    return rows, {
        "snapshots": [{**s, "test/acc": accs.get(s["file"])} for s in snapshots],
        "ensemble": results_ensemble(rows),
        "ensemble/test/acc": rows[-1]["ensemble/acc"],
        "snapshots/test/acc_mean": mean,
        "snapshots/test/acc_std": std,
    }


def results_ensemble(rows: list[dict]) -> list[dict]:
    return [
        {
            "members": r["members"],
            "test/acc": r["ensemble/acc"],
            "test/nll": r["ensemble/nll"],
            "test/ece": r["ensemble/ece"],
        }
        for r in rows
    ]
