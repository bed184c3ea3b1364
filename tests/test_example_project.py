"""examples/own_project/main.py, a standalone Lightning script with its own network and data, an anneal schedule,
SWA and a snapshot ensemble, run as a user would sweep it (2 arms x 3 seeds, in-process) and reported by
anneal.report: the runs pool into 2 arms of 3 seeds each, compared paired over the seeds. Only the study's shape
and the callbacks' counts are checked, not the trained numbers."""

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import ROOT, read_rows

from anneal.record import RunFiles, RunRecord

EXAMPLE = ROOT / "examples" / "own_project" / "main.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("own_project_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_projects_sweep_is_reported_as_a_paired_study(example, tmp_path):
    report = example.main(["--sweep", str(tmp_path / "runs")])  # 4 epochs: T_0=2 ends 2 cycles, 2 snapshots
    assert report == tmp_path / "runs" / "report"
    rows = read_rows(report / "study.csv")
    assert sorted(r["arm"] for r in rows) == ["T_0=1", "T_0=2"]
    assert [r["n"] for r in rows] == ["3", "3"] and {r["headline_metric"] for r in rows} == {"ensemble/test/acc"}
    assert sorted(r["headline_paired_n"] for r in rows) == ["3", "3"]  # the best against itself, and the other
    summary = read_rows(report / "summary.csv")
    assert len(summary) == 6 and {r["status"] for r in summary} == {"finished"}
    assert sorted((r["arm"], r["seed"]) for r in summary) == [(f"T_0={t}", str(s)) for t in (1, 2) for s in range(3)]
    assert "paired Δ to best (pp)" in (report / "study.md").read_text()
    files = RunFiles(Path(tmp_path / "runs" / "T_0=1" / "seed_2"))
    record = RunRecord.load(files)
    assert record.seed == 2 and record.arm.settings["T_0"] == 1 and record.arm.settings["data.batch_size"] == 64
    results = json.loads(files.results.read_text())
    assert results["metrics"]["swa/test/acc"]["producer"] == "SWA" and results["swa/n_averaged"] == 17  # steps 16-32
    assert [s["epoch"] for s in results["snapshots"]] == [1, 2, 3, 4]  # every cycle end of SGDR with T_0=1
    assert "swa/test/acc" in read_rows(report / "summary.csv")[0]
