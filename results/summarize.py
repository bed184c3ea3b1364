"""Tables (markdown, printed) and plots (results/*.png) of the runs made by results/cpu_studies.sh."""

import json
import statistics
import sys
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

HERE = Path(__file__).parent


def jobs(sweep: Path) -> list[dict]:
    runs = []
    for results_path in sorted(sweep.glob("*/results.json")):
        run = json.loads(results_path.read_text())
        logs = sorted((results_path.parent / "csv").glob("version_*/metrics.csv"))  # one per (re)start
        run["epochs_frame"] = pd.concat(map(pd.read_csv, logs)).groupby("epoch").last().reset_index() if logs else None
        run["lr_frame"] = pd.read_csv(results_path.parent / "lr_schedule.csv")
        runs.append(run)
    return runs


def pct(values: list[float]) -> str:
    values = [100 * v for v in values]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {spread:.2f}"


def snapshot_table(snapshot: list[dict], baseline: list[dict]) -> str:
    lines = [
        "| seed | exp-decay baseline | last snapshot | snapshots alone (newest first) "
        "| ensemble of 2 | ensemble of 3 |",
        "|---|---|---|---|---|---|",
    ]
    for s, b in zip(snapshot, baseline):
        alone = " / ".join(f"{100 * x['test/acc']:.1f}" for x in reversed(s["snapshots"]))
        ens = {e["members"]: e["test/acc"] for e in s["ensemble"]}
        lines.append(
            f"| {s['seed']} | {100 * b['test/acc']:.2f} | {100 * s['test/acc']:.2f} | {alone} | "
            f"{100 * ens[2]:.2f} | {100 * ens[3]:.2f} |"
        )
    best = [max(x["test/acc"] for x in s["snapshots"]) for s in snapshot]
    lines.append(
        f"| mean ± std | {pct([b['test/acc'] for b in baseline])} | {pct([s['test/acc'] for s in snapshot])} | "
        f"best single: {pct(best)} | {pct([s['ensemble'][1]['test/acc'] for s in snapshot])} | "
        f"{pct([s['ensemble'][2]['test/acc'] for s in snapshot])} |"
    )
    return "\n".join(lines)


def swa_table(name: str, runs: list[dict]) -> str:
    lines = [
        f"| {name}: seed | last SGD test acc | SWA test acc | SWA - SGD | weights averaged |",
        "|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['seed']} | {100 * r['test/acc']:.2f} | {100 * r['swa/test/acc']:.2f} | "
            f"{100 * (r['swa/test/acc'] - r['test/acc']):+.2f} | {r['swa/n_averaged']} |"
        )
    lines.append(
        f"| mean ± std | {pct([r['test/acc'] for r in runs])} | {pct([r['swa/test/acc'] for r in runs])} | "
        f"{pct([r['swa/test/acc'] - r['test/acc'] for r in runs])} | |"
    )
    return "\n".join(lines)


def min_val_error(run: dict) -> float:
    return 1 - run["epochs_frame"]["val/acc"].max()


def sgdr_table(cases: dict[str, list[dict]]) -> str:
    lines = ["| case | min val error % (per seed) | mean ± std | final test error % mean ± std |", "|---|---|---|---|"]
    for name, runs in cases.items():
        errors = [min_val_error(r) for r in runs]
        lines.append(
            f"| {name} | {' / '.join(f'{100 * e:.2f}' for e in errors)} | {pct(errors)} | "
            f"{pct([1 - r['test/acc'] for r in runs])} |"
        )
    return "\n".join(lines)


def sgdr_plot(cases: dict[str, list[dict]], path: Path) -> None:
    fig = Figure(figsize=(12, 4), layout="constrained")
    lr_ax, err_ax = fig.subplots(1, 2)
    for name, runs in cases.items():
        lr = runs[0]["lr_frame"]
        lr_ax.plot(lr["epoch"], lr["lr"], label=f"{name} (seed {runs[0]['seed']})")
        frames = [r["epochs_frame"].set_index("epoch")["val/acc"] for r in runs]
        mean_error = 100 * (1 - pd.concat(frames, axis=1).mean(axis=1))
        err_ax.plot(mean_error.index + 1, mean_error.values, label=name)
    lr_ax.set(title="lr (the adaptive cases restart when val acc first reaches 0.40)", xlabel="epoch", ylabel="lr")
    err_ax.set(title=f"validation error, mean of {len(runs)} seeds", xlabel="epoch", ylabel="%", ylim=(None, 70))
    for ax in (lr_ax, err_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)


def snapshot_plot(snapshot: list[dict], baseline: list[dict], path: Path) -> None:
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for s in snapshot:
        members = [e["members"] for e in s["ensemble"]]
        ax.plot(members, [100 * e["test/acc"] for e in s["ensemble"]], "o-", color="tab:blue", alpha=0.7)
        ax.plot(members, [100 * x["test/acc"] for x in reversed(s["snapshots"])], "s--", color="tab:orange", alpha=0.7)
    for b in baseline:
        ax.axhline(100 * b["test/acc"], color="tab:gray", lw=0.8)
    ax.plot([], [], "o-", color="tab:blue", label="ensemble of the newest i snapshots")
    ax.plot([], [], "s--", color="tab:orange", label="i-th newest snapshot alone")
    ax.plot([], [], color="tab:gray", label="exp-decay baseline (one line per seed)")
    ax.set(xlabel="i", ylabel="test accuracy %", xticks=[1, 2, 3], title="Snapshot ensemble, 3 seeds")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100)


def main(out: Path) -> None:
    snapshot, baseline = jobs(out / "snapshot"), jobs(out / "exp_baseline")
    print("## Snapshot ensemble vs exp-decay baseline\n")
    print(snapshot_table(snapshot, baseline))
    snapshot_plot(snapshot, baseline, HERE / "snapshot_ensemble.png")
    print("\n## SWA vs the last SGD model\n")
    print(swa_table("SGD + cosine, SWA from 75% at swa_lr 0.01", jobs(out / "swa_sgd")))
    print()
    print(swa_table("cyclic lr, SWA once per cycle from 50%", jobs(out / "swa_cyclic")))
    cases = {
        "(a) restarts, compression 5": jobs(out / "sgdr_restarts"),
        "(b) cosine, no restart": jobs(out / "sgdr_cosine"),
        "(c) step x0.1 at 50%, 75%": jobs(out / "sgdr_step"),
    }
    print("\n## The SGDR study's three cases\n")
    print(sgdr_table(cases))
    sgdr_plot(cases, HERE / "sgdr_study.png")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/results"))
