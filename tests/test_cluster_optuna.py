"""One Optuna study shared by two sweeps at once through one SQLite storage, as machines of a cluster share one."""

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import ROOT

TINY = [
    "hparams_search=sgdr_optuna",  # the same sampler seed in both sweeps: the preset's
    "data=synthetic",
    "data.train_size=256",
    "data.test_size=64",
    "data.val_size=64",
    "data.batch_size=32",
    "logger=csv",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def sweep_process(sweep: Path, storage: str, trials: int) -> subprocess.Popen:
    overrides = [f"hydra.sweeper.storage={storage}", f"hydra.sweeper.n_trials={trials}", f"hydra.sweep.dir={sweep}"]
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "-m", *TINY, *overrides],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_two_sweeps_share_one_study_without_repeating_a_trial_and_agree_on_its_best(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    sweeps = {tmp_path / "a": 3, tmp_path / "b": 2}
    processes = [sweep_process(sweep, storage, trials) for sweep, trials in sweeps.items()]  # started together
    outputs = [p.communicate(timeout=900)[0] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    trials = optuna.load_study(study_name="sgdr", storage=storage).trials
    assert sorted(t.number for t in trials) == list(range(5))  # 3 + 2, each numbered once
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    points = {tuple(sorted(t.params.items())) for t in trials}
    assert len(points) == 5  # no point drawn twice, though both sweeps have the same sampler seed
    accs = [json.loads(p.read_text())["val/acc"] for sweep in sweeps for p in sweep.glob("*/results.json")]
    assert sorted(accs) == sorted(t.value for t in trials)  # each job told the study once
    best = max(trials, key=lambda t: t.value)
    reports = [yaml.safe_load((sweep / "optimization_results.yaml").read_text()) for sweep in sweeps]
    for report in reports:
        named = trials[report["best_trial"]]  # a trial of the shared study, by number
        assert report["best_value"] == named.value and report["best_params"] == named.params
    last = max(reports, key=lambda r: r["trials"]["complete"])  # the sweep that ended last saw every trial
    assert last["trials"] == {"complete": 5, "running": 0, "waiting": 0, "pruned": 0, "fail": 0}
    assert last["best_value"] == best.value
