"""Studies from runs: the arms of one or more sweeps (every combination of swept settings but the seed), each
metric's mean, spread and 95% interval over seeds, tables and figures, a W&B study run, and report.md.

    python -m anneal.report DIR [DIR ...] [--out DIR] [--metric test/acc]

A multirun keeps its own sweep directory's files up to date through `anneal.report.sweep.SweepSummary`."""
