"""Build a study's report from sweep and run directories:

    python -m anneal.report DIR [DIR ...] [--out DIR] [--metric headline] [--within KEY ...] [--target-ci 0.5]
                            [--watch [SECONDS]]

A DIR with numbered job directories (0/, 1/, ...) is a sweep, any other a run. Runs are grouped into arms by what
they computed (the arm recorded in each run.json), across any mix of sweeps and runs; each arm is labelled by
what differs between arms. Arms are compared on each one's headline (the ensemble's accuracy for a snapshot run,
the averaged network's for SWA or EMA, else the test accuracy) or on --metric, each against the best arm of its
own training length (trainer.max_epochs / max_steps, where these vary) and of its --within settings (e.g. model);
a column says how many seeds would give the paired 95% interval a half-width of --target-ci (in the metric's
displayed unit: percentage points for an accuracy). Written into --out (default: the
one DIR given, when it is a sweep or a run): report.md, study.csv/md, summary.csv/md and the figures (PNG, SVG).
--watch rewrites them whenever a job starts or ends, until every job has ended (or Ctrl-C)."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from anneal.report.outputs import write_report
from anneal.report.runs import collect_runs, is_run_directory, is_sweep
from anneal.report.study import HEADLINE, TARGET_CI, Study, known_metrics, varying
from anneal.report.tables import study_markdown


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m anneal.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="sweep or run directories")
    parser.add_argument("--out", type=Path, help="where to write the report (default: the DIR, if only one)")
    parser.add_argument("--metric", default=HEADLINE, help="what arms are compared on (default: each arm's headline)")
    parser.add_argument(
        "--within",
        action="append",
        default=[],
        metavar="KEY",
        help="compare each arm with the best arm of its own value of KEY (a group such as model, or a setting)",
    )
    parser.add_argument(
        "--target-ci",
        type=float,
        default=TARGET_CI,
        metavar="POINTS",
        help=f"the paired 95%% half-width the seeds column plans for ({TARGET_CI}; points for an accuracy)",
    )
    parser.add_argument(
        "--watch", type=float, nargs="?", const=30.0, metavar="SECONDS", help="rewrite every SECONDS (30) as jobs end"
    )
    return parser.parse_args(argv)


def output_directory(args: argparse.Namespace) -> Path:
    """--out, or the one directory given when it is a sweep or a run: never a directory that is neither."""
    if args.out is not None:
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--out {args.out} is a file, not a directory")
        return args.out
    if len(args.dirs) > 1:
        raise ValueError("give --out DIR: the report of several directories needs a place of its own")
    only = args.dirs[0].resolve()
    if not (is_sweep(only) or is_run_directory(only)):
        raise ValueError(f"{args.dirs[0]} is neither a run directory (run.json, results.json) nor a sweep of them")
    return only


def report(args: argparse.Namespace, out: Path, quiet: bool = False) -> Study:
    runs = collect_runs(args.dirs)
    metrics = known_metrics(runs)
    if args.metric not in metrics:
        raise ValueError(f"--metric {args.metric} is not a metric of these runs: one of {', '.join(metrics)}")
    if not (math.isfinite(args.target_ci) and args.target_ci > 0):
        raise ValueError(f"--target-ci {args.target_ci}: a positive half-width, e.g. 0.5 (points)")
    arms = {run.arm.id: run.arm for run in runs if run.arm is not None}
    for key in args.within:
        if not any(key in arm.values() for arm in arms.values()):
            differ = ", ".join(varying(list(arms.values()))) or "none"
            raise ValueError(f"--within {key} is not a setting of these runs' arms (those that differ: {differ})")
    study, paths = write_report(args.dirs, out, args.metric, args.within, args.target_ci)
    if not quiet:
        print(status_line(study) + "\n")
        print(study_markdown(study))
        for path in paths.values():
            print(f"wrote {path}")
    return study


def status_line(study: Study) -> str:
    counts = {s: sum(r.status == s for r in study.runs) for s in ("finished", "running", "lost", "failed")}
    counts["failed"] += sum(r.status in ("stopped", "unreadable") for r in study.runs)
    text = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    compared = "each arm's headline" if study.metric == HEADLINE else study.metric
    return f"{len(study.runs)} runs ({text}) in {len(study.arms)} arms, compared on {compared}"


def watch(args: argparse.Namespace, out: Path) -> None:
    """Rewrite the report whenever the runs' states change; stop once none is running (or on Ctrl-C)."""
    seen = None
    while True:
        runs = collect_runs(args.dirs)
        state = [(r.directory, r.status) for r in runs]
        if state != seen:
            study = report(args, out, quiet=True)
            print(time.strftime("%H:%M:%S"), status_line(study), flush=True)
            seen = state
        if runs and not any(r.status == "running" for r in runs):
            return
        time.sleep(args.watch)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        out = output_directory(args)
        if args.watch is not None:
            watch(args, out)
        else:
            report(args, out)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError, LookupError) as error:
        print(f"python -m anneal.report: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
