"""Build a study's report from sweep and run directories:

    python -m anneal.report DIR [DIR ...] [--out DIR] [--metric test/acc]

A DIR with numbered job directories (0/, 1/, ...) is a sweep, any other a single run. The arms are the
combinations of the settings that vary across all the runs, except the seed. Written into --out (default: the
one DIR given, else ./report): report.md, study.csv, study.md, summary.csv/md/png and the study's figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anneal.report.outputs import write_report
from anneal.report.tables import study_markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m anneal.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="sweep or run directories")
    parser.add_argument("--out", type=Path, help="where to write the report (default: the DIR, else ./report)")
    parser.add_argument("--metric", default="test/acc", help="the results.json metric arms are compared on")
    args = parser.parse_args(argv)
    out = args.out or (args.dirs[0] if len(args.dirs) == 1 else Path("report"))
    try:
        study, paths = write_report(args.dirs, out, args.metric)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finished = sum(run.finished for run in study.runs)
    print(f"{len(study.runs)} runs ({finished} finished) in {len(study.arms)} arms, compared on {args.metric}\n")
    print(study_markdown(study))
    for path in paths.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
