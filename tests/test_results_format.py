"""results.json's format version, read back by every reader (the report, the ensemble CLI) in the previous
format too; and the report's columns, which come from the runs' declarations only (LAWA's average as SWA's and
EMA's). tests/fixtures/results_format1.json is a results.json as anneal wrote it before the format had a number
(declarations without `column` and `producer`), from a LAWA run."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import read_rows
from fabricate import arm, make_run

from anneal.ensemble import evaluate_run_dir
from anneal.record import (
    RESULTS_FORMAT,
    Metric,
    Part,
    RunFiles,
    RunRecord,
    UnreadableRun,
    accuracy,
    declared_metrics,
    loss,
    results_document,
    results_format,
)
from anneal.report.__main__ import main as report
from anneal.report.runs import collect_runs

FORMAT_1 = Path(__file__).parent / "fixtures" / "results_format1.json"
LAWA = arm({"averaging._target_": "anneal.callbacks.LAWA", "averaging.k": 3}, {"averaging": "lawa"})


def old_run(directory: Path, seed: int) -> Path:
    """A LAWA run whose results.json is the format-1 fixture (its seed and numbers shifted a little)."""
    make_run(directory, LAWA, seed)  # run.json only
    old = json.loads(FORMAT_1.read_text())
    old |= {"seed": seed, "lawa/test/acc": old["lawa/test/acc"] + seed / 64, "test/acc": old["test/acc"] + seed / 64}
    RunFiles(directory).results.write_text(json.dumps(old))
    return directory


def test_results_json_names_its_format_and_old_files_have_none():
    document = results_document({"test/acc": 0.5}, [accuracy("test/acc", "test accuracy", headline=1)])
    assert list(document)[0] == "format" and document["format"] == RESULTS_FORMAT == 2
    old = json.loads(FORMAT_1.read_text())
    assert "format" not in old and results_format(old) == 1
    declared, own = declared_metrics(old)
    assert own and declared["lawa/test/acc"].headline == 2
    # format 1 said nothing of columns: a key anneal showed then keeps its column, other keys get none
    assert declared["val/acc_best"].column and declared["wall_seconds"].column
    assert not declared["lawa/test/loss"].in_tables and declared["lawa/test/acc"].in_tables
    with pytest.raises(ValueError, match="format 3: this anneal reads formats 1 to 2"):
        results_format({"format": 3})


def test_the_report_pools_runs_of_the_old_format_with_new_ones(tmp_path):
    for seed in range(2):
        old_run(tmp_path / "old" / str(seed), seed)
        make_run(tmp_path / "new" / str(seed), arm({"averaging": {}}, {"averaging": "none"}), seed, {"test/acc": 0.5})
    out = tmp_path / "out"
    assert report([str(tmp_path / "old"), str(tmp_path / "new"), "--out", str(out)]) == 0
    rows = {r["arm"]: r for r in read_rows(out / "study.csv")}
    assert rows["lawa"]["headline_metric"] == "lawa/test/acc" and rows["lawa"]["n"] == "2"
    assert float(rows["lawa"]["headline_mean"]) == pytest.approx(0.5625 + 1 / 128, abs=1e-12)
    summary = read_rows(out / "summary.csv")
    assert "lawa/test/acc" in summary[0] and "val/acc_best" in summary[0]


def test_a_newer_format_is_refused_by_its_readers(tmp_path):
    directory = make_run(tmp_path / "run", LAWA, 0, {"test/acc": 0.5})
    files = RunFiles(directory)
    files.results.write_text(json.dumps({"format": 99, "test/acc": 0.5, "snapshots": []}))
    (run,) = collect_runs([directory])
    assert run.status == "unreadable" and "format 99" in run.reason
    record = RunRecord.load(files)
    record.network, record.data = Part("LeNet", {}), Part("CIFAR10", {})
    record.save(files)
    with pytest.raises(UnreadableRun, match="format 99"):
        evaluate_run_dir(directory)


def test_lawa_swa_and_ema_averages_are_all_columns_of_the_report(tmp_path):
    numbers = {"swa": 0.61, "ema": 0.62, "lawa": 0.63}
    for i, (prefix, acc) in enumerate(numbers.items()):
        the_arm = arm({"averaging._target_": prefix}, {"averaging": prefix})
        make_run(tmp_path / "runs" / str(i), the_arm, 0, {"test/acc": 0.6, f"{prefix}/test/acc": acc})
    out = tmp_path / "out"
    assert report([str(tmp_path / "runs"), "--out", str(out)]) == 0
    summary = {r["arm"]: r for r in read_rows(out / "summary.csv")}
    assert [float(summary[p][f"{p}/test/acc"]) for p in numbers] == list(numbers.values())
    study_md = (out / "study.md").read_text()
    assert "headline: EMA test accuracy / LAWA test accuracy / SWA test accuracy (%)" in study_md
    assert "test accuracy (%)" in study_md.split("\n")[0]


def test_the_report_shows_what_the_declarations_make_columns_and_nothing_else(tmp_path):
    """A producer anneal does not know declares a column; the report shows it without knowing its key."""
    for seed in range(2):
        files = RunFiles(make_run(tmp_path / "runs" / str(seed), arm(), seed))
        declared: list[Metric] = [
            accuracy("test/acc", "test accuracy", headline=1),
            loss("calibration/ece", "expected calibration error", column=True),
            loss("calibration/nll", "calibrated NLL"),  # declared, no column
        ]
        values = {"test/acc": 0.5, "calibration/ece": 0.125 * (seed + 1), "calibration/nll": 1.0, "test/loss": 1.0}
        files.results.write_text(json.dumps(results_document(values, declared)))
    out = tmp_path / "out"
    assert report([str(tmp_path / "runs"), "--out", str(out)]) == 0
    summary = read_rows(out / "summary.csv")
    assert "calibration/ece" in summary[0] and "calibration/nll" not in summary[0]
    assert "test/loss" not in summary[0]  # undeclared here: a number without a meaning gets no column
    header = (out / "study.md").read_text().split("\n")[0]
    assert "expected calibration error" in header and "calibrated NLL" not in header
    shutil.rmtree(out)
