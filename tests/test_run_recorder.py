"""The run record of a user's own Lightning run (anneal.record.RunRecorder), pooled by `python -m anneal.report`
into arms by the hyperparameters, with paired comparisons over seeds; results.json's producers (one per key).

The module here is written in the test, not anneal's Classifier. Its test score is set by its hyperparameters
(`score`, plus a share of the seed) so that every number the report computes is known exactly; training itself
runs, a few steps on a few tensors."""

import json

import lightning as L
import pytest
import torch
from conftest import read_rows
from scipy import stats
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from anneal.errors import ConfigError
from anneal.record import (
    RESULTS_FORMAT,
    Evaluation,
    ProducedTwice,
    RunFiles,
    RunRecord,
    RunRecorder,
    accuracy,
    assembly,
    count,
)
from anneal.report.__main__ import main as report


class Scored(L.LightningModule):
    """A linear classifier whose test accuracy is `score + bonus` (sixteenths: exact in float32)."""

    def __init__(self, score: float = 0.5, bonus: float = 0.0, lr: float = 0.1, seed: int = 0, width: int = 4):
        super().__init__()
        self.save_hyperparameters()
        self.network = nn.Linear(width, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.network(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/acc", (self.network(x).argmax(1) == y).float().mean())

    def test_step(self, batch, batch_idx):
        self.log("test/acc", self.hparams.score + self.hparams.bonus)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loader(seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 4, generator=generator)
    return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8)


def trainer(directory, *callbacks, epochs: int = 2) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        default_root_dir=directory,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )


def run(directory, module: L.LightningModule, *callbacks, epochs: int = 2) -> L.Trainer:
    t = trainer(directory, *callbacks, epochs=epochs)
    t.fit(module, loader(), loader(1))
    t.test(module, loader(2))
    return t


def test_a_users_runs_pool_into_arms_with_a_paired_comparison(tmp_path):
    bonuses = {0.5: lambda s: s / 16, 0.625: lambda s: s * s / 16}  # seeds 0, 1, 2: B − A = 0.125, 0.125, 0.25
    for score, bonus in bonuses.items():
        for seed in range(3):
            module = Scored(score=score, bonus=bonus(seed), seed=seed)  # the seed is a hyperparameter here
            run(tmp_path / "runs" / f"{score}_{seed}", module, RunRecorder(bookkeeping=["bonus"]))
    files = RunFiles(tmp_path / "runs" / "0.5_1")
    record = RunRecord.load(files)
    assert record.status == "finished" and record.seed == 1
    assert record.arm.settings["score"] == 0.5 and record.arm.settings["trainer.max_epochs"] == 2
    assert "seed" not in record.arm.settings and "bonus" not in record.arm.settings
    results = json.loads(files.results.read_text())
    assert results["format"] == RESULTS_FORMAT and results["headline"] == "test/acc"
    assert results["test/acc"] == 0.5625 and results["steps"] == 4 and results["epochs"] == 2
    assert results["metrics"]["test/acc"]["producer"] == "Scored"
    assert results["metrics"]["wall_seconds"]["producer"] == "RunRecorder"
    history = read_rows(files.history)
    assert [r["epoch"] for r in history] == ["1", "2"] and [r["step"] for r in history] == ["2", "4"]
    assert {"lr", "train/loss", "val/acc"} <= set(history[0])
    assert [r["lr"] for r in read_rows(files.lr_csv)] == ["0.1"] * 4

    out = tmp_path / "report"
    assert report([*map(str, sorted((tmp_path / "runs").iterdir())), "--out", str(out)]) == 0
    rows = {r["arm"]: r for r in read_rows(out / "study.csv")}
    assert sorted(rows) == ["score=0.5", "score=0.625"]
    assert [rows[a]["n"] for a in sorted(rows)] == ["3", "3"]
    a = [0.5, 0.5625, 0.625]
    b = [0.625, 0.6875, 0.875]
    low = rows["score=0.5"]
    assert float(low["headline_paired_n"]) == 3
    assert float(low["headline_paired_diff"]) == pytest.approx(-(0.125 + 0.125 + 0.25) / 3, abs=1e-12)
    assert float(low["headline_paired_p"]) == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert float(rows["score=0.625"]["headline_diff_to_best"]) == 0
    assert "| score=0.625 | 3 |" in (out / "study.md").read_text()


def test_the_arm_can_be_given_and_the_seed_taken_from_seed_everything(tmp_path):
    L.seed_everything(7)
    run(tmp_path / "run", Scored(), RunRecorder(arm={"method": "mine", "budget": {"epochs": 2}}), epochs=1)
    record = RunRecord.load(RunFiles(tmp_path / "run"))
    assert record.seed == 7
    assert record.arm.settings["method"] == "mine" and record.arm.settings["budget.epochs"] == 2
    assert "score" not in record.arm.settings


def test_what_the_recorder_cannot_record_is_refused_before_any_step(tmp_path, monkeypatch):
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    with pytest.raises(ConfigError, match="seed_everything"):
        run(tmp_path / "a", Scored(), RunRecorder(arm={"lr": 0.1}))
    assert not (tmp_path / "a" / "history.csv").exists()

    with pytest.raises(ConfigError, match="width=.Linear.*save_hyperparameters"):
        run(tmp_path / "b", Scored(), RunRecorder(arm={"width": nn.Linear(1, 1)}, seed=0))

    class Bare(Scored):
        def __init__(self):
            L.LightningModule.__init__(self)
            self.network = nn.Linear(4, 2)

    with pytest.raises(ConfigError, match="no hyperparameters of Bare"):
        run(tmp_path / "bare", Bare(), RunRecorder(seed=0))

    with pytest.raises(ConfigError, match="headline"):
        run(tmp_path / "c", Scored(), RunRecorder([count("test/n", "n")], seed=0))

    run(tmp_path / "d", Scored(), RunRecorder(seed=0), epochs=1)
    with pytest.raises(ConfigError, match="holds a finished run"):
        run(tmp_path / "d", Scored(), RunRecorder(seed=0), epochs=1)
    run(tmp_path / "d", Scored(), RunRecorder(seed=0, overwrite=True), epochs=1)  # asked for


def test_a_headline_never_logged_fails_the_run_with_the_reason(tmp_path):
    recorder = RunRecorder([accuracy("test/top1", "top-1", headline=1)], seed=0)
    with pytest.raises(ConfigError, match=r"test/top1.*logged: \['test/acc'\]"):
        run(tmp_path / "run", Scored(), recorder, epochs=1)
    record = RunRecord.load(RunFiles(tmp_path / "run"))
    assert record.status == "failed" and "test/top1" in (record.error or "")
    assert not RunFiles(tmp_path / "run").results.exists()


def test_a_resumed_run_continues_its_history(tmp_path):
    first = L.Trainer(
        max_epochs=2, default_root_dir=tmp_path, logger=False, enable_progress_bar=False, callbacks=[RunRecorder()]
    )
    first.fit(Scored(), loader(), loader(1))  # stopped after 2 epochs: no test, no results.json
    checkpoint = next((tmp_path / "checkpoints").glob("*.ckpt"))
    assert [r["epoch"] for r in read_rows(tmp_path / "history.csv")] == ["1", "2"]
    module, recorder = Scored(), RunRecorder()
    resumed = trainer(tmp_path, recorder, epochs=3)
    resumed.fit(module, loader(), loader(1), ckpt_path=checkpoint)
    resumed.test(module, loader(2))
    assert [r["epoch"] for r in read_rows(tmp_path / "history.csv")] == ["1", "2", "3"]
    assert [r["step"] for r in read_rows(tmp_path / "lr_schedule.csv")] == [str(s) for s in range(6)]
    assert json.loads((tmp_path / "results.json").read_text())["steps"] == 6


class Averaged(L.Callback):
    """A producer like anneal's averaging callbacks: it declares a headline of higher rank and reports it."""

    def declare(self, evaluation):
        self.evaluation = evaluation
        return [accuracy("avg/test/acc", "averaged test accuracy", headline=2), count("avg/n", "averaged")]

    def results(self, trainer, module, datamodule):
        # evaluated outside the test loop's inference mode: a BatchNorm update may write the average's buffers
        self.inference = torch.is_inference_mode_enabled()
        return {"avg/test/acc": 0.75, "avg/n": 3}


def test_a_callbacks_declared_results_join_the_record_and_may_be_the_headline(tmp_path):
    averaged = Averaged()
    run(tmp_path / "run", Scored(), RunRecorder(seed=0), averaged, epochs=1)
    results = json.loads(RunFiles(tmp_path / "run").results.read_text())
    assert results["headline"] == "avg/test/acc" and results["avg/test/acc"] == 0.75 and results["test/acc"] == 0.5
    assert results["metrics"]["avg/test/acc"]["producer"] == "Averaged"
    assert averaged.evaluation == Evaluation(("val", "test"), "val") and averaged.inference is False


class WritesHistory(L.Callback):
    writes_history = True  # as anneal's History: history.csv is its own


def test_a_callback_that_writes_history_keeps_the_file(tmp_path):
    run(tmp_path / "run", Scored(), RunRecorder(seed=0), WritesHistory(), epochs=1)
    files = RunFiles(tmp_path / "run")
    assert files.results.is_file() and not files.history.exists()


def test_anneals_history_beside_the_recorder_writes_the_history_and_reports_the_best_epoch(tmp_path):
    from anneal.callbacks import History

    run(tmp_path / "run", Scored(), RunRecorder(seed=0), History(), epochs=2)
    files = RunFiles(tmp_path / "run")
    rows = read_rows(files.history)
    assert [r["epoch"] for r in rows] == ["1", "2"] and "seconds" in rows[0]  # History's columns, not the recorder's
    results = json.loads(files.results.read_text())
    best = max(float(r["val/acc"]) for r in rows)
    assert (
        results["val/acc_best"] == pytest.approx(best) and results["metrics"]["val/acc_best"]["producer"] == "History"
    )


class Claims(L.Callback):
    """A callback that declares and reports a key the module also reports."""

    def declare(self, evaluation):
        return [accuracy("test/acc", "my test accuracy", headline=2)]

    def results(self, trainer, module, datamodule):
        return {"test/acc": 1.0}


def test_a_key_two_producers_declare_is_an_error_naming_both(tmp_path):
    with pytest.raises(ProducedTwice, match="'test/acc' is declared by both Scored and Claims"):
        run(tmp_path / "run", Scored(), RunRecorder(seed=0), Claims(), epochs=1)
    assert not (tmp_path / "run" / "history.csv").exists()  # before training


def test_results_are_merged_with_one_producer_per_key():
    assert assembly.merged([("a", {"x": 1}), ("b", {"y": 2})]) == {"x": 1, "y": 2}
    with pytest.raises(ProducedTwice, match="'x' is reported by both a and b"):
        assembly.merged([("a", {"x": 1}), ("b", {"x": 1})])
    with pytest.raises(ProducedTwice, match="b reported 'format'"):
        assembly.merged([("b", {"format": 1})])
    declared = assembly.declarations([("SWA", [accuracy("swa/test/acc", "SWA", headline=2)])])
    assert declared[0].producer == "SWA"


def test_anneal_runs_refuse_two_producers_of_one_key():
    """anneal's own run: the module and a callback that declare the same key stop it before training."""
    from anneal.callbacks import RunCallback
    from anneal.results import declarations

    class Module:
        def declare(self, evaluation):
            return [accuracy("test/acc", "test accuracy", headline=1)]

    class Twice(RunCallback):
        def declare(self, evaluation):
            return [accuracy("test/acc", "again")]

    with pytest.raises(ProducedTwice, match="'test/acc' is declared by both Module and Twice"):
        declarations(Module(), [Twice()], Evaluation())  # type: ignore[arg-type]
