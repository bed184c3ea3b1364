"""The published API page: built from the docstrings with pdoc by docs/build_api.py, it documents the parts a
researcher adds to their own project."""

import html
import re
import runpy

from conftest import ROOT

import anneal.record


def text_of(page):
    """A page's visible text, in one line."""
    source = re.sub(r"<(style|script).*?</\1>", "", page.read_text(), flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", source)))


def test_the_api_page_documents_the_scheduler_the_callbacks_the_record_and_the_report(tmp_path):
    build = runpy.run_path(str(ROOT / "docs" / "build_api.py"))["build"]
    index = build(tmp_path / "api")
    assert index.is_file()
    package = text_of(tmp_path / "api" / "anneal.html")
    assert "def lr_scheduler" in package and "steps_per_epoch" in package and "scheduler.observe(value)" in package
    assert "def preview_lr" in package and f"anneal {anneal.__version__}" in package
    callbacks = text_of(tmp_path / "api" / "anneal" / "callbacks.html")
    for name in ("SWA", "EMA", "LAWA", "SnapshotEnsemble", "History", "StepCurves"):
        assert f"class {name}" in callbacks, name
    record = text_of(tmp_path / "api" / "anneal" / "record.html")
    for name in ("RunRecord", "RunFiles", "Metric", "RunRecorder"):
        assert f"class {name}" in record, name
    report = text_of(tmp_path / "api" / "anneal" / "report" / "__main__.html")
    assert "python -m anneal.report DIR" in report and "def main" in report
    assert "def write_report" in text_of(tmp_path / "api" / "anneal" / "report" / "outputs.html")
    assert not (tmp_path / "api" / "anneal" / "run.html").exists()  # train.py's wiring is not an API
