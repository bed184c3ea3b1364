"""Averaging after the fact: a run keeps its weights every N epochs (a setting of the checkpoint callback), and
`python -m anneal.average` averages the chosen ones into a run record of its own, which the report pools as an
arm. The average of the last K kept weights is LAWA's online average over the same points, bit for bit."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import compose_config

from anneal.average import Choice, average_of, kept_weights, main
from anneal.record import RunFiles
from anneal.report.study import study_of
from anneal.run import run
from anneal.storage import load_tensors

TINY = [
    "data=synthetic",
    "data.train_size=128",
    "data.test_size=64",
    "data.val_size=0",
    "data.batch_size=32",  # 4 steps an epoch
    "model=lenet",
    "trainer.max_epochs=4",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


@pytest.fixture(scope="module")
def lawa_run(tmp_path_factory) -> Path:
    """A run with online LAWA over its last 3 epochs that also keeps its weights at the end of every epoch."""
    directory = tmp_path_factory.mktemp("lawa_run")
    cfg = compose_config(
        *TINY,
        "averaging=lawa",
        "averaging.k=3",
        "averaging.every=1",
        "callbacks.model_checkpoint.keep_weights_every_n_epochs=1",
        output_dir=directory,
    )
    run(cfg)
    return directory


def test_the_run_keeps_small_weights_only_files_every_epoch(lawa_run):
    kept = kept_weights(RunFiles(lawa_run))
    assert [step for step, _ in kept] == [4, 8, 12, 16]
    entry = load_tensors(kept[-1][1])  # loads with weights_only: plain tensors and numbers
    assert entry["step"] == 16 and entry["epoch"] == 4 and "optimizer_states" not in entry
    assert kept[-1][1].stat().st_size < (RunFiles(lawa_run).last_checkpoint.stat().st_size)


def test_the_average_of_the_last_k_kept_weights_is_lawas_online_average_bit_for_bit(lawa_run):
    results = json.loads((lawa_run / "results.json").read_text())
    assert results["lawa/epochs"] == [2.0, 3.0, 4.0] and results["lawa/n_averaged"] == 3
    after = average_of([p for _, p in kept_weights(RunFiles(lawa_run))[-3:]], torch.device("cpu"))
    online = load_tensors(RunFiles(lawa_run).averaged("lawa"))
    assert after.keys() == online.keys()
    assert all(torch.equal(after[k], online[k]) for k in online)


def test_the_cli_writes_a_run_record_that_the_report_pools_as_its_own_arm(lawa_run, tmp_path, capsys):
    out = tmp_path / "lawa_last3"
    assert main([str(lawa_run), "--last", "3", "--out", str(out)]) == 0
    assert "lawa of 3 weights" in capsys.readouterr().out
    source = json.loads((lawa_run / "results.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert results["headline"] == "lawa/test/acc" and results["lawa/n_averaged"] == 3
    assert results["lawa/test/acc"] == source["lawa/test/acc"]  # the same weights, the same test set
    assert results["lawa/bn_update_images"] == 0  # LeNet has no BatchNorm: nothing to recompute
    assert {"lawa/test/acc", "lawa/test/loss", "lawa/n_averaged", "lawa/seconds"} <= set(results["metrics"])
    record = json.loads((out / "run.json").read_text())
    source_record = json.loads((lawa_run / "run.json").read_text())
    assert record["seed"] == source_record["seed"] and record["status"] == "finished"
    assert record["arm"]["settings"]["averaged.choice"] == "last 3"
    assert record["arm"]["id"] != source_record["arm"]["id"]
    study = study_of([lawa_run, out])
    assert len(study.arms) == 2
    averaged = next(a for a in study.arms if a.arm.id == record["arm"]["id"])
    assert averaged.headline == "lawa/test/acc" and averaged.n == 1 and "last 3" in averaged.label


def test_a_window_and_every_n_choose_kept_weights():
    kept = [(step, Path(f"step_{step}.pt")) for step in (4, 8, 12, 16, 20)]
    assert [s for s, _ in Choice(last=2).of(kept, 4)] == [16, 20]
    assert [s for s, _ in Choice(every=2).of(kept, 4)] == [4, 12, 20]  # counted back from the newest
    assert [s for s, _ in Choice(window="2e:4e").of(kept, 4)] == [8, 12, 16]
    assert [s for s, _ in Choice(window="10:").of(kept, 4)] == [12, 16, 20]
    assert [s for s, _ in Choice(window="8:20", every=2, last=2).of(kept, 4)] == [12, 20]
    assert Choice(window="2e:4e", last=3).text() == "window 2e:4e, last 3"


def test_bad_input_is_one_line(lawa_run, tmp_path, capsys):
    assert main([str(lawa_run), "--last", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--last" in capsys.readouterr().err
    assert main([str(lawa_run), "--window", "a:b", "--out", str(tmp_path / "x")]) == 2
    assert "--window" in capsys.readouterr().err
    bare = tmp_path / "bare"
    (bare / "checkpoints").mkdir(parents=True)
    for name in ("run.json", "results.json"):
        (bare / name).write_text((lawa_run / name).read_text())
    assert main([str(bare), "--last", "3", "--out", str(tmp_path / "y")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "keep_weights_every_n_epochs" in error


def test_a_run_and_its_branch_average_into_a_soup(lawa_run, tmp_path):
    """Several runs of one seed (a run and a cooldown branch of it; here a copy stands for the branch): each one's
    last kept weights, averaged uniformly, as a model soup."""
    branch = tmp_path / "branch"
    shutil.copytree(lawa_run, branch)
    out = tmp_path / "soup"
    assert main([str(lawa_run), str(branch), "--last", "1", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["headline"] == "soup/test/acc" and results["soup/n_averaged"] == 2
    record = json.loads((out / "run.json").read_text())
    assert record["arm"]["settings"]["averaged.method"] == "soup"
    soup = load_tensors(RunFiles(out).averaged("soup"))
    last = load_tensors(kept_weights(RunFiles(lawa_run))[-1][1])["weights"]
    assert all(torch.equal(soup[k], last[k]) for k in last)  # the mean of two equal weights is those weights
    study = study_of([lawa_run, tmp_path / "soup"])
    assert any("soup" in a.label for a in study.arms)
