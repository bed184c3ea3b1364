"""Snapshot, SWA and EMA callbacks: invariants on a tiny network trained for real."""

import json
from functools import partial

import lightning as L
import pytest
import torch
from conftest import FAST, compose_config
from torch import nn

from anneal.callbacks import EMA, LAWA, SWA, LastCheckpoint, RunCallback, SnapshotEnsemble
from anneal.callbacks.lawa import mean_weights
from anneal.config import keys
from anneal.data import Synthetic
from anneal.ensemble import evaluate_run_dir
from anneal.errors import ConfigError
from anneal.evaluation import classification_metrics, ensemble_rows
from anneal.module import Classifier
from anneal.record import Evaluation
from anneal.run import run
from anneal.schedules import SGDR, Clock, Cosine, Cyclic, LrPlan, LrRecipe
from anneal.storage import load_tensors

SPE = 8  # 256 training images / 32 per batch


class TinyBN(nn.Sequential):
    def __init__(self):
        super().__init__(
            nn.Conv2d(3, 8, 3, stride=2),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(32, 10),
        )


class RecordWeights(L.Callback):
    """The network's weights after every optimizer step, by global step."""

    def __init__(self):
        self.after_step = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after_step[trainer.global_step] = {k: v.clone() for k, v in pl_module.network.state_dict().items()}


def fit(
    tmp_path,
    callbacks,
    schedule=partial(SGDR, T_0=1, T_mult=2),
    epochs=7,
    network=None,
    ckpt_path=None,
    stop_after=None,
    **plan,
):
    L.seed_everything(0)
    data = Synthetic(train_size=256, test_size=64, batch_size=32, seed=0)
    lr_plan = LrRecipe(schedule=schedule, **plan).build(0.05, Clock(SPE, SPE * epochs))
    for callback in callbacks:
        if isinstance(callback, RunCallback):
            callback.use_plan(lr_plan)
    module = Classifier(network or TinyBN(), partial(torch.optim.SGD, lr=0.05, momentum=0.9), lr_plan)
    if stop_after:  # the plan's run, stopped early as if interrupted: its clock is longer than this trainer's
        module.check_clock = lambda: None
    trainer = L.Trainer(
        max_epochs=stop_after or epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=callbacks,
        enable_checkpointing=ckpt_path is not None
        or any(isinstance(c, L.pytorch.callbacks.Checkpoint) for c in callbacks),
    )
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    return trainer, module, data


def mean_of(states, key):
    return torch.stack([s[key] for s in states]).mean(0)


def test_swa_is_the_mean_of_the_weights_at_exactly_the_averaging_steps(tmp_path):
    record, swa = RecordWeights(), SWA(swa_start=3, swa_freq=5)
    fit(tmp_path, [swa, record])
    steps = list(range(3 * SPE, 7 * SPE + 1, 5))
    assert int(swa.average.n_averaged) == len(steps)
    averaged = dict(swa.average.module.named_parameters())
    error, shifted_error = 0.0, 0.0
    for key in averaged:
        expected = mean_of([record.after_step[s] for s in steps], key)
        shifted = mean_of([record.after_step[s - 1] for s in steps], key)  # the steps just before: a control
        error = max(error, (averaged[key].detach() - expected).abs().max().item())
        shifted_error = max(shifted_error, (averaged[key].detach() - shifted).abs().max().item())
    assert error < 1e-6 < 1e-4 < shifted_error


def test_swa_cycle_mode_averages_exactly_at_the_cycle_ends(tmp_path):
    record, swa = RecordWeights(), SWA(swa_start=0, swa_freq="cycle")
    fit(tmp_path, [swa, record])
    ends = [1 * SPE, 3 * SPE, 7 * SPE]  # T_0 = 1, T_mult = 2
    assert int(swa.average.n_averaged) == 3
    for key, value in swa.average.module.named_parameters():
        torch.testing.assert_close(value.detach(), mean_of([record.after_step[s] for s in ends], key))


def test_swa_once_per_epoch_averages_at_epoch_ends(tmp_path):
    record, swa = RecordWeights(), SWA(swa_start=2, swa_freq="epoch")
    fit(tmp_path, [swa, record], epochs=6)
    ends = [e * SPE for e in range(2, 7)]
    assert int(swa.average.n_averaged) == len(ends)
    for key, value in swa.average.module.named_parameters():
        torch.testing.assert_close(value.detach(), mean_of([record.after_step[s] for s in ends], key))


def test_swa_without_bn_update_averages_the_bn_statistics(tmp_path):
    record, swa = RecordWeights(), SWA(swa_start=0, swa_freq="epoch", bn_update=False)
    fit(tmp_path, [swa, record], epochs=3)
    running_mean = swa.average.module.state_dict()["1.running_mean"]
    torch.testing.assert_close(running_mean, mean_of([record.after_step[s] for s in (8, 16, 24)], "1.running_mean"))


def test_bn_statistics_after_the_update_equal_a_fresh_full_pass(tmp_path):
    swa = SWA(swa_start="50%")
    trainer, module, data = fit(tmp_path, [swa], epochs=4)
    results = swa.results(trainer, module, data)
    network = swa.average.module
    bn = network[1]
    images = data.batches("train").images
    assert results["swa/bn_update_images"] == len(images) == 256
    captured = []
    hook = bn.register_forward_hook(lambda m, inputs, out: captured.append(inputs[0]))
    network.eval()
    with torch.no_grad():
        for x, _ in data.batches("train", batch_size=10_000):  # the whole set, not augmented
            network(x)
    hook.remove()
    features = torch.cat(captured).transpose(0, 1).flatten(1)  # channels x (images * pixels)
    torch.testing.assert_close(bn.running_mean, features.mean(1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, features.var(1), rtol=1e-4, atol=1e-5)
    assert results["swa/test/acc"] == pytest.approx(classification_metrics(*_predict(network, data))["acc"])
    assert torch.equal(load_tensors(tmp_path / "swa.pt")["1.running_mean"], bn.running_mean)


def _predict(network, data):
    from anneal.evaluation import predict

    return predict(network, data.batches("test"), torch.device("cpu"))


def test_swa_lr_switch_is_part_of_the_schedule(tmp_path):
    swa = SWA(swa_start=4, swa_lr=0.01, anneal_epochs=1)
    trainer, _, _ = fit(tmp_path, [swa], schedule=partial(Cosine), epochs=6, switch=swa.lr_switch())
    schedule = trainer.lr_scheduler_configs[0].scheduler.plan.schedule
    assert schedule(3.9) == pytest.approx(Cosine(peak=0.05, total=6)(3.9))
    assert schedule(5) == schedule(6) == pytest.approx(0.01)


def test_ema_follows_the_exponential_recursion(tmp_path):
    record, ema = RecordWeights(), EMA(decay=0.9, every_n_steps=2, start=1)
    fit(tmp_path, [ema, record], epochs=3)
    steps = [s for s in range(SPE, 3 * SPE + 1) if s % 2 == 0]
    assert int(ema.average.n_averaged) == len(steps)
    for key, value in ema.average.module.state_dict().items():
        if not value.is_floating_point():
            continue
        expected = record.after_step[steps[0]][key]
        for s in steps[1:]:
            expected = 0.9 * expected + 0.1 * record.after_step[s][key]
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)


def test_snapshots_at_irregular_cycle_ends(tmp_path):
    record, snapshots = RecordWeights(), SnapshotEnsemble()
    trainer, module, data = fit(tmp_path, [snapshots, record])
    assert [s["epoch"] for s in snapshots.snapshots] == [1, 3, 7]
    assert [s["step"] for s in snapshots.snapshots] == [SPE, 3 * SPE, 7 * SPE]
    for s in snapshots.snapshots:
        saved = load_tensors(tmp_path / s["file"])
        assert all(torch.equal(saved[k], record.after_step[s["step"]][k]) for k in saved)
    assert not list((tmp_path / "snapshots").glob(".*tmp"))  # no temporary files left behind
    results = snapshots.results(trainer, module, data)
    assert [r["members"] for r in results["ensemble"]] == [1, 2, 3]
    assert all(0 <= s["test/acc"] <= 1 for s in results["snapshots"])
    for name in ("ensemble.csv", "ensemble.md", "ensemble.png"):
        assert (tmp_path / name).is_file()


def test_include_final_and_max_members(tmp_path):
    snapshots = SnapshotEnsemble(include_final=True, max_members=2)
    trainer, module, data = fit(tmp_path, [snapshots], epochs=5)  # cycle ends 1, 3; stops mid-cycle at 5
    assert [s["epoch"] for s in snapshots.snapshots] == [1, 3, 5]
    results = snapshots.results(trainer, module, data)
    assert [r["members"] for r in results["ensemble"]] == [1, 2]  # the newest two
    assert results["snapshots"][0]["test/acc"] is None and results["snapshots"][2]["test/acc"] is not None


def test_ensemble_probabilities_are_the_mean_of_the_members():
    torch.manual_seed(0)
    labels = torch.randint(0, 10, (500,))
    probs = [torch.rand(500, 10).softmax(-1) for _ in range(3)]
    rows = ensemble_rows(probs, labels, [1.0, 3.0, 7.0])
    for i, row in enumerate(rows, start=1):
        mean = torch.stack(probs[-i:]).mean(0)  # the newest i
        assert row["ensemble/acc"] == pytest.approx((mean.argmax(1) == labels).float().mean().item())
        assert row["ensemble/nll"] == pytest.approx(-mean[torch.arange(500), labels].log().mean().item(), rel=1e-5)
        assert row["single/acc"] == pytest.approx((probs[-i].argmax(1) == labels).float().mean().item())
        assert row["snapshot_epoch"] == [1.0, 3.0, 7.0][-i]  # the i-th newest


def test_the_ensemble_table_is_the_keras_posts_loop():
    """The Keras snapshot-ensemble post (2019) loads its members newest first, then for i = 1..M scores
    members[i-1] alone and the mean prediction of members[:i]; it reports np.mean and np.std (ddof 0)."""
    import numpy as np

    from anneal.evaluation import single_model_spread

    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 10, (400,), generator=generator)
    probs = [torch.rand(400, 10, generator=generator).softmax(-1) for _ in range(4)]  # oldest first
    members = [p.numpy() for p in reversed(probs)]  # the post's order: newest first
    single_scores, ensemble_scores = [], []
    for i in range(1, len(members) + 1):
        ensemble_scores.append(np.mean(np.argmax(np.sum(members[:i], axis=0), axis=1) == labels.numpy()))
        single_scores.append(np.mean(np.argmax(members[i - 1], axis=1) == labels.numpy()))
    rows = ensemble_rows(probs, labels, [1.0, 2.0, 3.0, 4.0])
    assert [r["single/acc"] for r in rows] == pytest.approx(single_scores)
    assert [r["ensemble/acc"] for r in rows] == pytest.approx(ensemble_scores)
    assert single_model_spread(rows) == pytest.approx((np.mean(single_scores), np.std(single_scores)))


def test_callback_state_resumes_exactly_from_a_checkpoint(tmp_path):
    def callbacks(run_dir):
        return [
            SWA(swa_start=1, swa_freq=3),
            SnapshotEnsemble(),
            L.pytorch.callbacks.ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True),
        ]

    reference = callbacks(tmp_path / "a")
    _, reference_module, _ = fit(tmp_path / "a", reference)
    interrupted = callbacks(tmp_path / "b")
    fit(tmp_path / "b", interrupted, stop_after=4)  # the 7-epoch run, stopped after epoch 4
    assert [s["epoch"] for s in interrupted[1].snapshots] == [1, 3]
    resumed = callbacks(tmp_path / "b")
    _, resumed_module, _ = fit(tmp_path / "b", resumed, ckpt_path=str(tmp_path / "b" / "checkpoints" / "last.ckpt"))
    assert resumed[1].snapshots == reference[1].snapshots
    for (key, value), expected in zip(
        resumed[0].average.state_dict().items(), reference[0].average.state_dict().values()
    ):
        assert torch.equal(value, expected), key
    for (key, value), expected in zip(
        resumed_module.network.state_dict().items(), reference_module.network.state_dict().values()
    ):
        assert torch.equal(value, expected), key


def plan_of(epochs: float, schedule=Cosine) -> LrPlan:
    return LrRecipe(schedule=schedule).build(0.1, Clock(5, int(5 * epochs)))


@pytest.mark.parametrize(
    "make, key",
    [
        (lambda: SWA(swa_start=-1), "averaging.swa_start"),
        (lambda: SWA(swa_start=10).use_plan(plan_of(10)), "averaging.swa_start"),
        (lambda: SWA(swa_start=12).use_plan(plan_of(10)), "averaging.swa_start"),
        (lambda: SWA(swa_start=0.5), "averaging.swa_start"),  # ambiguous: a share of training, or half an epoch?
        (lambda: SWA(swa_freq=0), "averaging.swa_freq"),
        (lambda: SWA(swa_freq="hourly"), "averaging.swa_freq"),
        (lambda: SWA(swa_lr=-0.1), "averaging.swa_lr"),
        (lambda: SWA(swa_freq="cycle", swa_lr=0.05), "averaging.swa_freq"),
        (lambda: EMA(decay=1.0), "averaging.decay"),
        (lambda: EMA(decay=0.0), "averaging.decay"),
        (lambda: EMA(every_n_steps=0), "averaging.every_n_steps"),
        (lambda: SnapshotEnsemble(max_members=0), "ensemble.max_members"),
        (lambda: LAWA(k=0), "averaging.k"),
        (lambda: LAWA(k=2.5), "averaging.k"),
        (lambda: LAWA(every="-1 steps"), "averaging.every"),
        (lambda: LAWA(every=0).use_plan(plan_of(10)), "averaging.every"),
        (lambda: LAWA(every=11).use_plan(plan_of(10)), "averaging.every"),  # no point within training
        (lambda: LAWA(start=0.5), "averaging.start"),  # ambiguous
        (lambda: LAWA(start=10).use_plan(plan_of(10)), "averaging.start"),
    ],
)
def test_invalid_averaging_and_ensemble_settings(make, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")), keys(key.split(".")[0]):
        make()


def test_cycle_swa_needs_two_cycle_ends_after_its_start():
    plan = plan_of(10, partial(SGDR, T_0=4, T_mult=1))  # cycle ends 4, 8
    with (
        pytest.raises(
            ConfigError,
            match="averaging.swa_freq=cycle is invalid here: no cycle of the schedule ends at or after swa_start",
        ),
        keys("averaging"),
    ):
        SWA(swa_start=9, swa_freq="cycle").use_plan(plan)
    with (
        pytest.raises(ConfigError, match=r"averaging.swa_start=6 epochs is invalid here: .* updated 1 time\(s\)"),
        keys("averaging"),
    ):
        SWA(swa_start=6, swa_freq="cycle").use_plan(plan)  # only the end at 8: an average of one
    SWA(swa_start=4, swa_freq="cycle").use_plan(plan)  # the ends at 4 and 8


@pytest.mark.parametrize("callback", [SnapshotEnsemble(), SWA(swa_freq="cycle")])
def test_cycle_callbacks_need_a_schedule_with_cycles(callback):
    for schedule in (partial(Cosine), partial(Cyclic, step_size=20)):  # no cycle end within 10 epochs
        with pytest.raises(ConfigError, match="cycle"):
            callback.use_plan(plan_of(10, schedule))
    callback.use_plan(plan_of(10, partial(SGDR, T_0=2)))


def test_snapshot_and_swa_run_on_the_real_subset(subset_root, tmp_path):
    cfg = compose_config(
        f"data.root={subset_root}",
        "schedule=sgdr",
        "schedule.T_0=1",
        "schedule.T_mult=2",
        "trainer.max_epochs=3",
        "ensemble=snapshot",
        "averaging=swa",
        "averaging.swa_freq=cycle",
        "averaging.swa_start=0",
        *FAST,
        output_dir=tmp_path,
    )
    run(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert {"snapshots", "ensemble", "swa/test/acc", "swa/test/loss", "swa/n_averaged"} <= set(results)
    assert [s["epoch"] for s in results["snapshots"]] == [1, 3] and results["swa/n_averaged"] == 2
    assert {"members", "test/acc", "test/nll", "test/ece"} <= set(results["ensemble"][-1])
    for name in ("ensemble.csv", "ensemble.md", "ensemble.png", "swa.pt", "snapshots/snapshot_01_epoch1.pt"):
        assert (tmp_path / name).is_file(), name
    # the ensemble table can be recomputed later from the run directory alone
    before = results["ensemble"]
    (tmp_path / "ensemble.csv").unlink()
    rows = evaluate_run_dir(tmp_path)
    assert [r["ensemble/acc"] for r in rows] == pytest.approx([e["test/acc"] for e in before])
    assert (tmp_path / "ensemble.csv").is_file()


def test_snapshot_ensemble_without_cycles_is_rejected_before_training(tmp_path):
    cfg = compose_config(
        "data=synthetic", "data.train_size=100", "schedule=cosine", "ensemble=snapshot", *FAST, output_dir=tmp_path
    )
    with pytest.raises(ConfigError, match="ensemble=snapshot needs a schedule with cycles"):
        run(cfg)
    assert not (tmp_path / "checkpoints").exists()


def test_ensemble_and_swa_results_reach_an_offline_wandb_run(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = compose_config(
        "data=synthetic",
        "data.train_size=256",
        "data.test_size=64",
        "schedule=snapshot",
        "schedule.cycles=2",
        "trainer.max_epochs=2",
        "ensemble=snapshot",
        "averaging=swa",
        "logger=wandb",
        "logger.mode=offline",
        "trainer.enable_progress_bar=false",
        output_dir=tmp_path,
    )
    run(cfg)
    (offline_run,) = (tmp_path / "wandb").glob("offline-run-*")
    media = [str(p.relative_to(offline_run)) for p in offline_run.rglob("*") if p.is_file()]
    assert any("table/ensemble/table" in m and m.endswith(".table.json") for m in media)
    assert any("images/ensemble/plot" in m for m in media) and any("images/lr_schedule" in m for m in media)
    assert list(offline_run.glob("*.wandb"))  # the run's record, where the scalar results go


def torchcontrib_automatic_mode(total_steps: int, swa_start: int, swa_freq: int) -> list[int]:
    """torchcontrib's SWA.step, automatic mode: after the optimizer step that makes the count n, average
    when n > swa_start and n % swa_freq == 0 (its lr is swa_lr once the count before a step reaches swa_start)."""
    averaged, n = [], 0
    for _ in range(total_steps):
        n += 1
        if n > swa_start and n % swa_freq == 0:
            averaged.append(n)
    return averaged


def test_swa_in_optimizer_steps_is_torchcontribs_automatic_mode(tmp_path):
    record, swa = RecordWeights(), SWA(swa_start="20 steps", swa_freq=3, swa_lr=0.01, anneal_epochs=0)
    trainer, _, _ = fit(tmp_path, [swa, record], schedule=partial(Cosine), epochs=6, switch=swa.lr_switch())
    steps = torchcontrib_automatic_mode(6 * SPE, swa_start=20, swa_freq=3)
    assert int(swa.average.n_averaged) == len(steps) and steps[0] == 21
    for key, value in swa.average.module.named_parameters():
        torch.testing.assert_close(value.detach(), mean_of([record.after_step[s] for s in steps], key))
    plan = trainer.lr_scheduler_configs[0].scheduler.plan
    assert [plan.lr(s) == 0.01 for s in range(6 * SPE)] == [s >= 20 for s in range(6 * SPE)]  # at once, from 20


@pytest.mark.parametrize(
    "settings, points",
    [
        ({"k": 3, "every": 1}, [5 * SPE, 6 * SPE, 7 * SPE]),  # once per epoch: the last three epoch ends
        ({"k": 4, "every": "5 steps", "start": 2}, [41, 46, 51, 56]),  # every 5 steps from step 16
        ({"k": 10, "every": "50%", "start": 0}, [28, 56]),  # fewer points than k: all of them
    ],
)
def test_lawa_is_the_uniform_mean_of_the_latest_k_weights(tmp_path, settings, points):
    record, lawa = RecordWeights(), LAWA(**settings, bn_update=False)
    _, module, _ = fit(tmp_path, [lawa, record])
    assert [w["step"] for w in lawa.window] == points
    network, n = lawa.averaged(module)
    assert n == len(points)
    averaged = network.state_dict()
    for key, value in averaged.items():
        if value.is_floating_point():  # BatchNorm statistics too, with bn_update off
            torch.testing.assert_close(value, mean_of([record.after_step[s] for s in points], key))
    earlier = [s - 1 for s in points]  # the steps just before: a control
    assert not torch.allclose(averaged["0.weight"], mean_of([record.after_step[s] for s in earlier], "0.weight"))
    assert torch.equal(averaged["1.num_batches_tracked"], record.after_step[points[-1]]["1.num_batches_tracked"])


def test_lawa_results_recompute_batchnorm_and_save_the_average(tmp_path):
    lawa = LAWA(k=3)
    trainer, module, data = fit(tmp_path, [lawa], epochs=4)
    results = lawa.results(trainer, module, data)
    assert results["lawa/n_averaged"] == 3 and results["lawa/epochs"] == [2, 3, 4]
    assert results["lawa/bn_update_images"] == 256
    saved = load_tensors(tmp_path / "lawa.pt")
    weights = mean_weights([w["weights"] for w in lawa.window], torch.device("cpu"))
    assert torch.equal(saved["0.weight"], weights["0.weight"])
    assert not torch.equal(saved["1.running_mean"], weights["1.running_mean"])  # recomputed, not averaged
    network = TinyBN()
    network.load_state_dict(saved)
    assert results["lawa/test/acc"] == pytest.approx(classification_metrics(*_predict(network, data))["acc"])
    assert "lawa/test/acc" in [m.key for m in lawa.declare(Evaluation(("test",), "test"))]


def test_lawa_window_resumes_exactly_from_a_mid_run_checkpoint(tmp_path):
    def callbacks(run_dir):
        return [LAWA(k=3, every=2), LastCheckpoint(dirpath=str(run_dir / "checkpoints"))]

    reference = callbacks(tmp_path / "a")
    reference_trainer, reference_module, data = fit(tmp_path / "a", reference)
    interrupted = callbacks(tmp_path / "b")
    fit(tmp_path / "b", interrupted, stop_after=4)  # the 7-epoch run, stopped after epoch 4
    assert [w["step"] for w in interrupted[0].window] == [16, 32]
    resumed = callbacks(tmp_path / "b")
    trainer, module, _ = fit(tmp_path / "b", resumed, ckpt_path=str(tmp_path / "b" / "checkpoints" / "last.ckpt"))
    assert (
        [w["step"] for w in resumed[0].window] == [w["step"] for w in reference[0].window] == [16, 32, 48]
    )  # two from before the interruption
    for got, expected in zip(resumed[0].window, reference[0].window):
        for key, value in got["weights"].items():
            assert torch.equal(value, expected["weights"][key]), key
    got, expected = (
        cb[0].results(*run, data)
        for cb, run in ((resumed, (trainer, module)), (reference, (reference_trainer, reference_module)))
    )
    timed = "lawa/bn_update_seconds"  # a duration: the same computation, not the same time
    assert got.pop(timed) >= 0 and expected.pop(timed) >= 0 and got == expected
    assert torch.equal(
        load_tensors(tmp_path / "a" / "lawa.pt")["0.weight"], load_tensors(tmp_path / "b" / "lawa.pt")["0.weight"]
    )


def test_lawa_runs_beside_the_trained_network_with_a_validation_split(tmp_path):
    cfg = compose_config(
        "data=synthetic",
        "data.train_size=320",
        "data.test_size=64",
        "data.val_size=64",
        "data.batch_size=32",
        "trainer.max_epochs=4",
        "averaging=lawa",
        "averaging.k=2",
        "optimized_metric=lawa/val/acc",
        *FAST,
        output_dir=tmp_path,
    )
    assert run(cfg) is not None
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["lawa/n_averaged"] == 2 and results["lawa/epochs"] == [3, 4]
    assert {"lawa/test/acc", "lawa/test/loss", "lawa/val/acc", "lawa/val/loss", "test/acc"} <= set(results)
    assert (tmp_path / "lawa.pt").is_file()
