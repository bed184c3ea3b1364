"""Train the cooldowns branched from warmup-stable-decay runs, each as a run of its own:

    python -m anneal.branch DIR [DIR ...] [--budgets 10,20] [-- extra overrides]

DIR is a run that saved branch points (branch=cooldowns branch.budgets=[...]), or a sweep of such runs. For each
saved point, the budget's run directory is DIR/branches/budget_<B>: the run's own command line with the budget's
length, resumed from the branch point. It computes exactly the run of that budget started from scratch (anneal's
resume check holds it to that), so its run.json names that budget's arm and the report pools it with runs of that
budget trained from scratch. A branch that finished is left as it is; one that was stopped is resumed."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from anneal.record import RunFiles, RunRecord, UnreadableRun

TRAIN = Path(__file__).resolve().parents[2] / "train.py"
REPLACED = ("trainer.max_epochs", "trainer.max_steps", "ckpt_path", "resume_changes", "branch", "hydra.run.dir")


def saved_points(files: RunFiles) -> dict[int, Path]:
    found = {}
    for path in files.branches.glob("budget_*.ckpt"):
        try:
            found[int(path.stem.removeprefix("budget_"))] = path
        except ValueError:
            continue
    return dict(sorted(found.items()))


def command(record: RunRecord, budget: int, point: Path, target: RunFiles, extra: list[str]) -> list[str]:
    """The run's first command line with the budget's length, resumed from its branch point (or, for a branch
    that was stopped, from its own last checkpoint)."""
    kept = [o for o in record.overrides if o.lstrip("+~").split("=")[0].split("/")[0] not in REPLACED]
    kept = [o for o in kept if not o.lstrip("+~").startswith(("branch.", "hydra.sweep", "hydra/launcher"))]
    resume = "last" if target.last_checkpoint.is_file() else str(point)
    return [
        sys.executable,
        str(TRAIN),
        *kept,
        f"trainer.max_epochs={budget}",
        "branch=none",
        f"ckpt_path={resume}",
        "resume_changes=[trainer.max_epochs]",
        f"hydra.run.dir={target.directory}",
        *extra,
    ]


def runs_of(directory: Path) -> list[Path]:
    """A run directory, or the numbered job directories of a sweep."""
    if RunFiles(directory).record.is_file():
        return [directory]
    jobs = sorted((p for p in directory.iterdir() if p.name.isdigit() and p.is_dir()), key=lambda p: int(p.name))
    return [j for j in jobs if RunFiles(j).record.is_file()]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        prog="python -m anneal.branch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dirs", type=Path, nargs="+", metavar="DIR")
    parser.add_argument("--budgets", help="the budgets to train (epochs, comma-separated): default, every saved one")
    args = parser.parse_args(argv)
    wanted = None
    if args.budgets:
        try:
            wanted = sorted({int(b) for b in args.budgets.split(",")})  # a budget given twice is trained once
        except ValueError:
            return refuse(f"--budgets {args.budgets} is invalid: whole epochs separated by commas, e.g. 10,20")
    for override in extra:
        key = override.lstrip("+~").split("=")[0]
        if key.split("/")[0] in REPLACED or key.startswith("branch."):
            return refuse(
                f"{override} is invalid after --: a branch's length, checkpoint and directory are its budget's "
                f"(choose the budgets with --budgets)"
            )
    plans = []
    without = []
    for given in args.dirs:
        runs = runs_of(given) if given.is_dir() else []
        if not runs:
            return refuse(f"{given} is neither a run with a run.json nor a sweep of such runs")
        for run_dir in runs:
            files = RunFiles(run_dir)
            try:
                record = RunRecord.load(files)
            except UnreadableRun as error:
                return refuse(str(error))
            points = saved_points(files)
            if not points and wanted is None:
                without.append(run_dir)
            for budget in wanted or list(points):
                if budget not in points:
                    saved = ", ".join(map(str, points)) or "none"
                    return refuse(f"{run_dir} has no branch point for a {budget}-epoch run (saved: {saved})")
                plans.append((record, budget, points[budget], RunFiles(files.branch(budget))))
    if not plans:
        listed = ", ".join(map(str, without))
        return refuse(f"{listed}: no branch points saved (train with branch=cooldowns branch.budgets=[...])")
    for run_dir in without:
        print(f"{run_dir}: no branch points saved, nothing to branch")
    failed = 0
    for record, budget, point, target in plans:
        if target.results.is_file():
            print(f"{target.directory}: finished already")
            continue
        print(f"{target.directory}: the {budget}-epoch run's cooldown from {point}", flush=True)
        failed += subprocess.run(command(record, budget, point, target, extra)).returncode != 0
    return 1 if failed else 0


def refuse(message: str) -> int:
    print(f"python -m anneal.branch: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
