"""docs/extending.md's worked examples, run as written: its code and YAML blocks are read from the page."""

import json
import re
import shutil

import numpy as np
import pytest
from conftest import CONF, FAST, ROOT, read_rows
from hydra import compose, initialize_config_dir

import anneal.callbacks
import anneal.data
import anneal.models
import anneal.schedules
from anneal.data import synthetic_images
from anneal.errors import ConfigError, DataError
from anneal.report.__main__ import main as report
from anneal.run import run

BLOCK = re.compile(r"```(python|yaml)\n# (\S+)\n(.*?)```", re.S)
SMALL = [
    "data=synthetic",
    "data.train_size=256",
    "data.test_size=64",
    "data.batch_size=32",
    "trainer.max_epochs=3",
    *FAST,
]


@pytest.fixture
def extended(tmp_path, monkeypatch):
    """The repository's config with the page's YAML files added, and the page's classes where its YAML names them."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    blocks = BLOCK.findall((ROOT / "docs" / "extending.md").read_text())
    assert [path for _, path, _ in blocks] == [
        "src/anneal/schedules/decays.py",
        "conf/schedule/poly.yaml",
        "src/anneal/models/tiny.py",
        "conf/model/tiny.yaml",
        "src/anneal/callbacks/weight_norm.py",
        "src/anneal/data/arrays.py",
        "conf/data/arrays.yaml",
        "src/anneal/callbacks/smoothed_loss.py",
    ]
    namespace = vars(anneal.schedules.decays).copy()  # the schedule goes at the end of decays.py
    for kind, path, text in blocks:
        if kind == "yaml":
            (conf / path.removeprefix("conf/")).write_text(text)
        else:
            exec(compile(text, path, "exec"), namespace)
    monkeypatch.setattr(anneal.data, "NumpyImages", namespace["NumpyImages"], raising=False)
    monkeypatch.setattr(anneal.schedules, "PolynomialDecay", namespace["PolynomialDecay"], raising=False)
    monkeypatch.setattr(anneal.models, "TinyNet", namespace["TinyNet"], raising=False)
    monkeypatch.setattr(anneal.callbacks, "WeightNormAtCycleEnds", namespace["WeightNormAtCycleEnds"], raising=False)
    monkeypatch.setattr(anneal.callbacks, "SmoothedTestLoss", namespace["SmoothedTestLoss"], raising=False)
    return conf


def compose_in(conf, *overrides, output_dir):
    with initialize_config_dir(str(conf), version_base="1.3"):
        return compose("train", overrides=[*overrides, f"output_dir={output_dir}"])


def test_the_new_schedule_and_network_train_and_the_lr_follows_the_formula(extended, tmp_path):
    cfg = compose_in(
        extended,
        *SMALL,
        "schedule=poly",
        "schedule.power=2",
        "model=tiny",
        "model.width=8",
        "optimizer.lr=0.1",
        "trainer.log_every_n_steps=1",
        output_dir=tmp_path,
    )
    run(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["model"] == "TinyNet" and results["schedule"] == "PolynomialDecay(power=2)"
    rows = [r for r in read_rows(tmp_path / "csv" / "version_0" / "metrics.csv") if r.get("lr-SGD")]
    assert len(rows) == 3 * 8
    for row in rows:
        assert float(row["lr-SGD"]) == pytest.approx(0.1 * (1 - int(row["step"]) / 24) ** 2)


def test_the_new_callback_reads_the_plan_and_reports(extended, tmp_path):
    cfg = compose_in(
        extended,
        *SMALL,
        "schedule=sgdr",
        "schedule.T_0=1",
        "schedule.T_mult=1",
        "model=tiny",
        "+callbacks.weight_norm._target_=anneal.callbacks.WeightNormAtCycleEnds",
        "optimized_metric=weight_norm/last",
        output_dir=tmp_path,
    )
    assert run(cfg) > 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["weight_norm/cycle_ends"]) == 3  # cycle ends after epochs 1, 2 and 3


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["schedule=poly", "schedule.power=0"], "schedule.power=0 is invalid: must be > 0"),
        (["model=tiny", "model.width=0"], "model.width=0 is invalid: must be an integer >= 1"),
        (
            ["+callbacks.weight_norm._target_=anneal.callbacks.WeightNormAtCycleEnds"],
            "callbacks.weight_norm needs a schedule with cycles",
        ),
    ],
)
def test_the_new_settings_are_checked_before_training(extended, tmp_path, overrides, message):
    with pytest.raises(ConfigError) as error:
        run(compose_in(extended, *SMALL, *overrides, output_dir=tmp_path))
    assert str(error.value) == message
    assert not (tmp_path / "checkpoints").exists()


def test_the_new_callbacks_metric_reaches_the_study_with_its_declared_direction(extended, tmp_path):
    """Declared once, by its producer: the report ranks arms on it the right way round (lower is better) and
    W&B, results.json and a sweeper's optimized_metric know it, with no other file changed."""
    for cycle in (1, 3):
        for seed in (0, 1):
            cfg = compose_in(
                extended,
                *SMALL,
                "schedule=sgdr",
                f"schedule.T_0={cycle}",
                "schedule.T_mult=1",
                f"seed={seed}",
                "+callbacks.weight_norm._target_=anneal.callbacks.WeightNormAtCycleEnds",
                output_dir=tmp_path / f"T_0_{cycle}" / str(seed),
            )
            run(cfg)
    results = json.loads((tmp_path / "T_0_1" / "0" / "results.json").read_text())
    assert results["metrics"]["weight_norm/last"]["better"] == "lower"
    out = tmp_path / "report"
    assert (
        report([str(tmp_path / "T_0_1"), str(tmp_path / "T_0_3"), "--out", str(out), "--metric", "weight_norm/last"])
        == 0
    )
    rows = read_rows(out / "study.csv")
    means = [float(r["weight_norm/last_mean"]) for r in rows]
    best = min(range(2), key=means.__getitem__)  # lower is better, as declared
    assert float(rows[best]["weight_norm/last_diff_to_best"]) == 0
    assert float(rows[1 - best]["weight_norm/last_diff_to_best"]) == pytest.approx(means[1 - best] - means[best])
    assert "weight norm at the last cycle end" in (out / "study.md").read_text()


def test_the_new_dataset_trains_from_saved_arrays(extended, tmp_path):
    root = tmp_path / "arrays"
    root.mkdir()
    images, labels = synthetic_images(300, seed=3)
    for split, part in (("train", slice(0, 200)), ("test", slice(200, 300))):
        np.save(root / f"{split}_images.npy", images[part].numpy())
        np.save(root / f"{split}_labels.npy", labels[part].numpy())
    cfg = compose_in(extended, *SMALL[3:], "data=arrays", f"data.root={root}", output_dir=tmp_path / "r")
    run(cfg)
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["data"] == "numpy images: 200 train / 100 test images" and results["steps"] == 3 * 7
    with pytest.raises(DataError, match="test_labels.npy is missing"):
        (root / "test_labels.npy").unlink()
        run(compose_in(extended, *SMALL[3:], "data=arrays", f"data.root={root}", output_dir=tmp_path / "r2"))


def test_the_new_metric_is_declared_and_reported_by_every_run_of_the_default_group(extended, tmp_path):
    default = extended / "callbacks" / "default.yaml"
    added = re.search(
        r"# added to conf/callbacks/default.yaml.*?\n(.*?)```", (ROOT / "docs" / "extending.md").read_text(), re.S
    )
    default.write_text(default.read_text() + added.group(1))
    run(compose_in(extended, *SMALL, "optimized_metric=test/smoothed_loss", output_dir=tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["metrics"]["test/smoothed_loss"]["better"] == "lower" and results["test/smoothed_loss"] > 0
