"""The results notebook runs top to bottom against a sweep made here, so it cannot rot unnoticed."""

import nbformat
import pytest
from conftest import ROOT, run_cli
from nbclient import NotebookClient


@pytest.mark.slow  # a sweep and a Jupyter kernel: .ci/run runs it
def test_notebook_executes_against_a_tiny_sweep(tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    done = run_cli(
        "-m",
        "schedule=sgdr,cosine",
        "data=synthetic",
        "data.train_size=256",
        "data.test_size=64",
        "data.val_size=64",
        "trainer.max_epochs=2",
        "seed=0,1",
        "averaging=swa",
        "averaging.swa_start=1",
        "logger=none",  # the notebook needs no logger: it reads what every run leaves in its directory
        "trainer.enable_progress_bar=false",
        f"hydra.sweep.dir={sweep}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    monkeypatch.setenv("ANNEAL_SWEEP", str(sweep))
    notebook = nbformat.read(ROOT / "notebooks" / "compare_runs.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "4 runs in 2 arms" in text and "sgdr" in text and "swa/test/acc" in text and "headline_paired_diff" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 1  # the side-by-side plots were drawn
