"""Schedule values against the worked SGDR table (Loshchilov & Hutter 2017, T_0=5, T_mult=2) and against
PyTorch's own schedulers."""

import io
import math
from functools import partial

import pytest
import torch
from torch.optim import lr_scheduler as torch_lr

from anneal.config import keys
from anneal.errors import ConfigError
from anneal.schedules import (
    SGDR,
    AdaptiveSGDR,
    Clock,
    Constant,
    Cosine,
    Cyclic,
    Exponential,
    ExponentialWarmup,
    LinearDecay,
    LinearWarmup,
    LrPlan,
    LrRecipe,
    LrSwitch,
    MultiStep,
    NoWarmup,
    OneCycle,
    Plateau,
    RampDown,
    ScheduleLR,
    Span,
    Step,
    WarmupStableDecay,
    cycle_position,
    snapshot_cycles,
)

# T_0 = 5, T_mult = 2, lr_max = 0.1, lr_min = 1e-5, T_cur counted 1..T_i at the end of each epoch
SPEC_SGDR_TABLE = [
    (1, 1, 5, 0.090451805),
    (2, 2, 5, 0.065454305),
    (3, 3, 5, 0.034555695),
    (4, 4, 5, 0.009558195),
    (5, 5, 5, 0.00001),
    (6, 1, 10, 0.097553071),
    (10, 5, 10, 0.050005),
    (15, 10, 10, 0.00001),
    (16, 1, 20, 0.099384479),
    (18, 3, 20, 0.094550871),
]


def drive(scheduler_factory, steps: int) -> list[float]:
    """The lr a torch optimizer actually uses at each of `steps` steps under a scheduler."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = scheduler_factory(optimizer)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def ours(schedule, steps_per_epoch: int, steps: int) -> list[float]:
    plan = LrPlan(Clock(steps_per_epoch, steps), schedule.peak, schedule)
    return drive(lambda opt: ScheduleLR(opt, plan), steps)


def assert_same(a, b, rel=1e-9):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert x == pytest.approx(y, rel=rel, abs=1e-15), f"step {i}: {x} != {y}"


@pytest.mark.parametrize("epoch, T_cur, T_i, lr", SPEC_SGDR_TABLE)
def test_sgdr_matches_spec_table(epoch, T_cur, T_i, lr):
    s = SGDR(peak=0.1, total=40, T_0=5, T_mult=2, lr_min=1e-5)
    _, cur, length = s.position(epoch, ending=True)
    assert (cur, length) == (pytest.approx(T_cur), T_i)
    assert s.lr(epoch, ending=True) == pytest.approx(lr, abs=5e-10)  # the table is rounded to 9 decimals
    # SGDR's formula, written out
    assert s.lr(epoch, ending=True) == pytest.approx(1e-5 + 0.5 * (0.1 - 1e-5) * (1 + math.cos(math.pi * T_cur / T_i)))


def test_sgdr_cycle_lengths_and_restarts():
    s = SGDR(peak=0.1, total=40, T_0=5, T_mult=2, lr_min=1e-5)
    assert [s.position(t)[2] for t in (0, 4.9, 5, 14.9, 15, 34.9)] == [5, 5, 10, 10, 20, 20]
    assert s.cycle_ends() == [5, 15, 35]
    assert s(5) == pytest.approx(0.1) and s(15) == pytest.approx(0.1)  # a restart opens at the cycle end
    assert s(5 - 1e-6) == pytest.approx(1e-5, abs=1e-9)


def test_sgdr_interval_epoch_uses_table_value_during_next_epoch():
    s = SGDR(peak=0.1, total=40, T_0=5, T_mult=2, lr_min=1e-5, interval="epoch")
    spe = 7
    lrs = ours(s, spe, 19 * spe)
    for epoch, _, _, lr in SPEC_SGDR_TABLE:
        if epoch not in (5, 15):  # the minimum itself is never used: the restart comes with the next epoch
            assert lrs[epoch * spe : (epoch + 1) * spe] == pytest.approx([lr] * spe, abs=5e-10)
    assert lrs[5 * spe] == pytest.approx(0.1)


@pytest.mark.parametrize("T_0, T_mult", [(1, 1), (5, 2), (2, 3), (3, 1)])
def test_sgdr_equals_torch_cosine_annealing_warm_restarts(T_0, T_mult):
    spe, epochs = 13, 40
    schedule = SGDR(peak=0.1, total=epochs, T_0=T_0, T_mult=T_mult, lr_min=1e-4)
    expected = drive(
        lambda o: torch_lr.CosineAnnealingWarmRestarts(o, T_0=T_0 * spe, T_mult=T_mult, eta_min=1e-4), epochs * spe
    )
    assert_same(ours(schedule, spe, epochs * spe), expected)


def test_sgdr_per_step_restarts_at_epoch_1_with_T0_1_Tmult_2():
    spe = 10
    lrs = ours(SGDR(peak=0.1, total=3, T_0=1, T_mult=2, lr_min=1e-5), spe, 3 * spe)
    assert lrs[0] == lrs[spe] == pytest.approx(0.1)
    assert lrs[spe - 1] < 0.003 and lrs[spe + 1] > 0.099
    for step, lr in enumerate(lrs):
        _, T_cur, T_i = cycle_position(step / spe, 1, 2)
        assert lr == pytest.approx(1e-5 + 0.5 * (0.1 - 1e-5) * (1 + math.cos(math.pi * T_cur / T_i)), rel=1e-12)


def test_non_integer_T_mult_cycle_ends():
    s = SGDR(peak=0.1, total=20, T_0=1, T_mult=1.5)
    assert s.cycle_ends() == pytest.approx([1, 2.5, 4.75, 8.125, 13.1875])
    spe = 8
    steps = sorted(LrPlan(Clock(spe, 20 * spe), 0.1, s).cycle_end_steps())
    assert steps == [8, 20, 38, 65, 106]  # ceil(end * spe): the first step of the next cycle
    for step in steps:
        assert s(step / spe) > s((step - 1) / spe)  # the lr jumps back up exactly there
    assert SGDR(peak=0.1, total=7, T_0=1, T_mult=2).cycle_ends() == [1, 3, 7]


def test_sgdr_cycle_decay_scales_peaks():
    s = SGDR(peak=0.1, total=40, T_0=5, T_mult=1, cycle_decay=0.5)
    assert [s(t) for t in (0, 5, 10)] == pytest.approx([0.1, 0.05, 0.025])


def test_snapshot_cycles_are_equal_sgdr_cycles():
    s = snapshot_cycles(peak=0.2, total=60, cycles=3)
    assert (s.T_0, s.T_mult) == (20, 1)
    assert s.cycle_ends() == [20, 40, 60]
    assert snapshot_cycles(peak=0.1, total=200, cycles=5).cycle_ends() == [40, 80, 120, 160, 200]


def test_cosine_equals_torch_cosine_annealing():
    spe, epochs = 11, 9
    expected = drive(lambda o: torch_lr.CosineAnnealingLR(o, T_max=epochs * spe, eta_min=1e-3), epochs * spe)
    assert_same(ours(Cosine(peak=0.1, total=epochs, lr_min=1e-3), spe, epochs * spe), expected)
    assert Cosine(peak=0.1, total=epochs).cycle_ends() == []


def test_step_and_exp_equal_torch():
    spe, epochs = 9, 30
    expected = drive(lambda o: torch_lr.StepLR(o, step_size=7 * spe, gamma=0.5), epochs * spe)
    assert_same(ours(Step(peak=0.1, total=epochs, step_size=7, gamma=0.5), spe, epochs * spe), expected)
    # ExponentialLR multiplies every step by gamma: our exp(-k t) with gamma = exp(-k / spe)
    expected = drive(lambda o: torch_lr.ExponentialLR(o, gamma=math.exp(-0.1 / spe)), epochs * spe)
    assert_same(ours(Exponential(peak=0.1, total=epochs, k=0.1), spe, epochs * spe), expected)
    assert Exponential(peak=0.1, total=60, k=0.1)(10) == pytest.approx(0.1 * math.exp(-1))  # the Keras baseline


def test_multistep_equals_torch_with_fractions_and_epochs():
    spe, epochs = 10, 40
    expected = drive(lambda o: torch_lr.MultiStepLR(o, milestones=[20 * spe, 30 * spe], gamma=0.1), epochs * spe)
    assert_same(ours(MultiStep(peak=0.1, total=epochs, milestones=("50%", "75%")), spe, epochs * spe), expected)
    assert_same(ours(MultiStep(peak=0.1, total=epochs, milestones=(20, 30)), spe, epochs * spe), expected)


@pytest.mark.parametrize("mode, gamma", [("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.9)])
def test_cyclic_equals_torch_cyclic_lr(mode, gamma):
    spe, epochs, step_size = 12, 20, 3
    # gamma is per epoch here, per iteration in torch
    expected = drive(
        lambda o: torch_lr.CyclicLR(
            o,
            base_lr=1e-3,
            max_lr=0.1,
            step_size_up=step_size * spe,
            mode=mode,
            gamma=gamma ** (1 / spe),
            cycle_momentum=False,
        ),
        epochs * spe,
    )
    schedule = Cyclic(peak=0.1, total=epochs, lr_min=1e-3, step_size=step_size, mode=mode, gamma=gamma)
    assert_same(ours(schedule, spe, epochs * spe), expected)
    assert schedule.cycle_ends() == [6, 12, 18]


def test_onecycle_equals_torch_one_cycle_lr():
    spe, epochs = 10, 12
    n = spe * epochs
    # torch reaches the final lr at its last step (n - 1); ours at the end of training (time n / spe).
    # OneCycleLR over n + 1 steps with pct_start shifted accordingly is the same function on steps 0..n-1.
    pct = (0.3 * n + 1) / (n + 1)
    expected = drive(
        lambda o: torch_lr.OneCycleLR(o, max_lr=0.1, total_steps=n + 1, pct_start=pct, cycle_momentum=False), n
    )
    assert_same(ours(OneCycle(peak=0.1, total=epochs), spe, n), expected)
    schedule = OneCycle(peak=0.1, total=epochs)
    assert schedule(0) == pytest.approx(0.1 / 25) and schedule(0.3 * epochs) == pytest.approx(0.1)
    assert schedule(epochs) == pytest.approx(0.1 / 25 / 1e4)


def test_constant():
    assert ours(Constant(peak=0.1, total=3), 4, 12) == [0.1] * 12


@pytest.mark.parametrize(
    "warmup",
    [
        LinearWarmup(epochs=3),
        LinearWarmup(epochs=None, steps=30, start_lr=0.01),
        ExponentialWarmup(epochs=3, start_lr=1e-4),
    ],
)
def test_warmup_composes_and_hands_over_continuously(warmup):
    spe = 10
    recipe = LrRecipe(schedule=lambda peak, total, clock: Cosine(peak=peak, total=total, lr_min=0.0), warmup=warmup)
    schedule = recipe.build(peak=0.1, clock=Clock(spe, 13 * spe)).schedule
    assert schedule(0) == pytest.approx(warmup.start_lr)
    assert schedule(3 - 1e-9) == pytest.approx(0.1, rel=1e-6) and schedule(3) == pytest.approx(0.1)
    lrs = [schedule(s / spe) for s in range(13 * spe)]
    assert all(b >= a for a, b in zip(lrs[:30], lrs[1:31]))  # rises to the hand-over
    # after the warmup the cosine runs on its own clock, over the 10 remaining epochs
    assert schedule(8) == pytest.approx(Cosine(peak=0.1, total=10)(5))
    assert schedule(13) == pytest.approx(0.0, abs=1e-12)


def test_warmup_shifts_cycle_ends_and_composes_with_every_schedule():
    recipe = LrRecipe(
        schedule=lambda peak, total, clock: SGDR(peak=peak, total=total, T_0=1, T_mult=2), warmup=LinearWarmup(epochs=2)
    )
    assert recipe.build(0.1, Clock(5, 45)).cycle_ends() == [3, 5, 9]
    for factory in (
        Constant,
        Step,
        MultiStep,
        Exponential,
        Cosine,
        SGDR,
        Cyclic,
        OneCycle,
        AdaptiveSGDR,
        LinearDecay,
        WarmupStableDecay,
    ):
        schedule = LrRecipe(schedule=factory, warmup=LinearWarmup(epochs=1)).build(0.1, Clock(4, 40)).schedule
        assert schedule(0) == 0.0 and schedule(1) == pytest.approx(factory(peak=0.1, total=9)(0))


def test_warmup_as_long_as_training_is_rejected():
    for warmup in (LinearWarmup(epochs=10), LinearWarmup(epochs=None, steps=50)):
        with pytest.raises(ConfigError, match="warmup"):
            LrRecipe(schedule=Cosine, warmup=warmup).build(0.1, Clock(5, 50))
    assert LrRecipe(schedule=Cosine, warmup=NoWarmup()).build(0.1, Clock(5, 50)).lr(0) == 0.1


def test_swa_switch_anneals_to_swa_lr_and_drops_later_cycles():
    recipe = LrRecipe(
        schedule=lambda peak, total, clock: SGDR(peak=peak, total=total, T_0=2, T_mult=1),
        switch=LrSwitch(start=Span(6), lr=0.05, anneal_epochs=2),
    )
    s = recipe.build(0.1, Clock(4, 40)).schedule
    assert s(5) == pytest.approx(SGDR(peak=0.1, total=10, T_0=2)(5))
    assert s(6) == pytest.approx(0.1) and s(7) == pytest.approx(0.075) and s(8) == s(9.5) == pytest.approx(0.05)
    assert s.cycle_ends() == [2, 4, 6]


def test_adaptive_sgdr_holds_until_trigger_then_compresses_restart_peaks():
    s = AdaptiveSGDR(peak=0.1, total=30, T_0=2, T_mult=1, lr_min=0.0, trigger_val_acc=0.8, compression=4)
    for epoch, acc in [(1, 0.5), (2, 0.7)]:
        s.observe(epoch, acc)
        assert s(epoch + 0.5) == 0.1 and s.cycle_ends() == []
    s.observe(3, 0.85)  # triggers: SGDR starts at epoch 3
    assert s.triggered_at == 3 and s.cycle_ends()[:2] == [5, 7]
    assert s(3) == pytest.approx(0.1) and s(4) == pytest.approx(0.05)
    s.observe(4, 0.86)  # improved mid-cycle at lr 0.05: next peak = max(0.1 / 4, 0.05)
    assert s.next_peak == pytest.approx(0.05)
    s.observe(5, 0.87)  # improved at the cycle end, where the lr reached 0: next peak = 0.1 / 4
    assert s.next_peak == pytest.approx(0.025)
    assert s(5) == pytest.approx(0.025) and s(6) == pytest.approx(0.0125)  # the restart uses it
    s.observe(6, 0.80)  # no improvement: nothing changes
    assert s.next_peak == pytest.approx(0.025) and s.peaks == [0.1, 0.025]
    restored = AdaptiveSGDR(peak=0.1, total=30, T_0=2, T_mult=1, lr_min=0.0, trigger_val_acc=0.8, compression=4)
    restored.load_state_dict(s.state_dict())
    assert [restored(t / 4) for t in range(120)] == [s(t / 4) for t in range(120)]


def test_adaptive_sgdr_compression_1_is_plain_sgdr():
    s = AdaptiveSGDR(peak=0.1, total=30, T_0=2, T_mult=2, lr_min=1e-4, trigger_val_acc=0.0, compression=1)
    plain = SGDR(peak=0.1, total=30, T_0=2, T_mult=2, lr_min=1e-4)
    for epoch in range(0, 30):
        s.observe(epoch, 0.1 + epoch / 100)  # improves every epoch
        assert s(epoch + 0.5) == pytest.approx(plain(epoch + 0.5))


def test_scheduler_state_roundtrip_keeps_adaptive_state():
    s = AdaptiveSGDR(peak=0.1, total=30, trigger_val_acc=0.5)
    optimizer = torch.optim.SGD([torch.zeros(1)], lr=0.1)
    scheduler = ScheduleLR(optimizer, LrPlan(Clock(10, 300), 0.1, s))
    s.observe(2, 0.9)
    state = scheduler.state_dict()
    assert state["schedule"]["triggered_at"] == 2 and state["lr_lambdas"] == [None]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # plain values only, as checkpoints require
    fresh = AdaptiveSGDR(peak=0.1, total=30, trigger_val_acc=0.5)
    ScheduleLR(torch.optim.SGD([torch.zeros(1)], lr=0.1), LrPlan(Clock(10, 300), 0.1, fresh)).load_state_dict(state)
    assert fresh.state_dict() == s.state_dict()


@pytest.mark.parametrize(
    "factory, kwargs, key",
    [
        (SGDR, {"T_0": 0}, "schedule.T_0"),
        (SGDR, {"T_0": -1}, "schedule.T_0"),
        (SGDR, {"T_mult": 0.5}, "schedule.T_mult"),
        (SGDR, {"lr_min": -1e-3}, "schedule.lr_min"),
        (SGDR, {"lr_min": 0.5}, "schedule.lr_min"),
        (Cosine, {"lr_min": 1.0}, "schedule.lr_min"),
        (Step, {"step_size": 0}, "schedule.step_size"),
        (Step, {"gamma": 0}, "schedule.gamma"),
        (Step, {"gamma": 1.5}, "schedule.gamma"),
        (MultiStep, {"milestones": (5, 50)}, "schedule.milestones"),
        (MultiStep, {"milestones": (0.5,)}, "schedule.milestones"),
        (MultiStep, {"milestones": (30, 10)}, "schedule.milestones"),
        (MultiStep, {"gamma": -0.1}, "schedule.gamma"),
        (Exponential, {"k": -0.1}, "schedule.k"),
        (Cyclic, {"step_size": 0}, "schedule.step_size"),
        (Cyclic, {"mode": "sawtooth"}, "schedule.mode"),
        (Cyclic, {"gamma": 0}, "schedule.gamma"),
        (OneCycle, {"pct_start": 1.0}, "schedule.pct_start"),
        (Cosine, {"interval": "batch"}, "schedule.interval"),
        (AdaptiveSGDR, {"compression": 0.5}, "schedule.compression"),
        (snapshot_cycles, {"cycles": 0}, "schedule.cycles"),
        (snapshot_cycles, {"cycles": 41}, "schedule.cycles"),
        (Cosine, {"lr_min": "110%"}, "schedule.lr_min"),
        (Cosine, {"lr_min": "-5%"}, "schedule.lr_min"),
        (SGDR, {"lr_min": "ten%"}, "schedule.lr_min"),
        (Cyclic, {"lr_min": "10"}, "schedule.lr_min"),  # a string without % is not an lr
        (LinearDecay, {"lr_min": 0.2}, "schedule.lr_min"),
        (LinearDecay, {"lr_min": True}, "schedule.lr_min"),
        (WarmupStableDecay, {"cooldown": 41}, "schedule.cooldown"),  # longer than the schedule
        (WarmupStableDecay, {"cooldown": 0}, "schedule.cooldown"),
        (WarmupStableDecay, {"cooldown": "3 weeks"}, "schedule.cooldown"),
        (WarmupStableDecay, {"shape": "sqrt"}, "schedule.shape"),
        (WarmupStableDecay, {"lr_min": "200%"}, "schedule.lr_min"),
    ],
)
def test_invalid_schedule_settings_are_rejected_naming_the_key(factory, kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")), keys("schedule"):
        factory(peak=0.1, total=40, **kwargs)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"epochs": 0}, "warmup.epochs"),
        ({"epochs": None, "steps": -5}, "warmup.steps"),
        ({"epochs": 2, "steps": 10}, "warmup.epochs=2 and warmup.steps=10"),
        ({"start_lr": -1.0}, "warmup.start_lr"),
    ],
)
def test_invalid_warmup_settings_are_rejected(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")), keys("warmup"):
        LinearWarmup(**kwargs)
    with pytest.raises(ConfigError, match="warmup.start_lr"), keys("warmup"):
        ExponentialWarmup(start_lr=0.0)


def test_epoch_interval_samples_the_warmup_and_the_swa_switch_at_whole_epochs_too():
    from functools import partial

    recipe = LrRecipe(
        schedule=partial(Cosine, interval="epoch"),
        warmup=LinearWarmup(epochs=4),
        switch=LrSwitch(start=Span(8), lr=0.01, anneal_epochs=2),
    )
    s = recipe.build(0.1, Clock(10, 100)).schedule
    assert [s(t) for t in (0.5, 1.0, 1.9, 3.99)] == pytest.approx([0.0, 0.025, 0.025, 0.075])  # Keras-style steps
    assert s(4.5) == s(4.0) == pytest.approx(0.1)
    assert s(8.5) == s(8.0) and s(9.5) == pytest.approx(0.01 + 0.5 * (s(8.0) - 0.01))


PLATEAU_CASES = [
    {"mode": "min", "threshold_mode": "rel", "threshold": 1e-4, "patience": 2, "cooldown": 0, "min_lr": 0.0},
    {"mode": "min", "threshold_mode": "abs", "threshold": 0.05, "patience": 1, "cooldown": 2, "min_lr": 0.0},
    {"mode": "max", "threshold_mode": "rel", "threshold": 0.01, "patience": 0, "cooldown": 1, "min_lr": 2e-3},
    {"mode": "max", "threshold_mode": "abs", "threshold": 0.0, "patience": 3, "cooldown": 0, "min_lr": 0.0},
]


@pytest.mark.parametrize("case", PLATEAU_CASES)
def test_plateau_equals_torch_reduce_lr_on_plateau_driven_by_the_same_metric(case):
    metrics = torch.Generator().manual_seed(len(str(case)))
    sequence = (1.0 + 0.3 * torch.rand(40, generator=metrics)).tolist()
    if case["mode"] == "max":
        sequence = [1 - v / 2 for v in sequence]
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    reference = torch_lr.ReduceLROnPlateau(optimizer, factor=0.5, **case)
    ours = Plateau(peak=0.1, total=40, factor=0.5, monitor="val/acc" if case["mode"] == "max" else "val/loss", **case)
    for epoch, value in enumerate(sequence, start=1):
        reference.step(value)
        ours.observe(epoch, value)
        assert ours(epoch) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-12), epoch
        assert ours(epoch - 0.5) == pytest.approx(ours.lr(epoch - 1)), epoch  # a reduction applies from then on
    assert ours.reductions  # the sequences do trigger reductions


def test_plateau_composes_with_warmup_and_keeps_its_state_in_checkpoints():
    recipe = LrRecipe(schedule=partial(Plateau, patience=0, factor=0.5), warmup=LinearWarmup(epochs=2))
    plan = recipe.build(0.1, Clock(10, 100))
    assert plan.monitor == "val/loss" and not plan.has_cycles()
    assert plan.lr(5) == pytest.approx(0.025) and plan.lr(20) == pytest.approx(0.1)
    for step, loss in [(10, 1.0), (20, 0.9), (30, 0.95), (40, 0.97)]:
        plan.observe(step, loss)  # during the warmup (step 10) it learns nothing
    assert plan.lr(39) == pytest.approx(0.05) and plan.lr(40) == pytest.approx(0.025)
    restored = LrRecipe(schedule=partial(Plateau, patience=0, factor=0.5), warmup=LinearWarmup(epochs=2))
    restored = restored.build(0.1, Clock(10, 100))
    restored.load_state_dict(plan.state_dict())
    assert [restored.lr(s) for s in range(100)] == [plan.lr(s) for s in range(100)]


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"monitor": "test/acc"}, "schedule.monitor"),
        ({"mode": "up"}, "schedule.mode"),
        ({"factor": 1.0}, "schedule.factor"),
        ({"patience": -1}, "schedule.patience"),
        ({"min_lr": 1.0}, "schedule.min_lr"),
    ],
)
def test_invalid_plateau_settings(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")), keys("schedule"):
        Plateau(peak=0.1, total=10, **kwargs)


def koshian_next_peak(current_peak: float, lr_now: float, compression: float) -> float:
    """koshian2's LearningRateCallback.on_epoch_end, when val_acc improved: the lr its next restart starts at."""
    return max(current_peak / compression, lr_now) if compression > 0 else lr_now


@pytest.mark.parametrize("compression", [0, 1, 4])
def test_adaptive_sgdr_restart_peaks_follow_the_posts_rule(compression):
    s = AdaptiveSGDR(peak=0.1, total=30, T_0=2, T_mult=1, lr_min=0.0, trigger_val_acc=0.5, compression=compression)
    expected_next = 0.1
    for epoch, acc in [(1, 0.6), (2, 0.7), (3.5, 0.72), (4, 0.71), (5, 0.8), (6.5, 0.9)]:
        i = s._position(epoch, ending=True)[0] if s.triggered_at is not None else 0
        peak_now = s.peaks[i] if s.triggered_at is not None and i < len(s.peaks) else expected_next
        lr_now = s.lr(epoch, ending=True)
        improved = acc > s.best_val_acc
        s.observe(epoch, acc)
        if improved:
            expected_next = koshian_next_peak(peak_now, lr_now, compression)
        assert s.next_peak == pytest.approx(expected_next), (epoch, compression)
    restarts = s.cycle_ends()[: len(s.peaks) - 1]
    assert [s(t) for t in restarts] == pytest.approx(s.peaks[1:])  # each restart starts from the peak it learnt
    if compression == 0:
        assert s.peaks[1] == pytest.approx(0.05)  # the lr at epoch 2, where val/acc last improved before the restart


def test_sgdr_can_decay_lr_min_with_the_peak():
    s = SGDR(peak=0.1, total=40, T_0=5, T_mult=1, lr_min=0.01, cycle_decay=0.5, decay_lr_min=True)
    for i in range(4):  # Jordan (2018): eta_min^i = eta_min * d^i, eta_max^i = eta_max * d^i
        assert s(5 * i) == pytest.approx(0.1 * 0.5**i)
        assert s.lr(5 * (i + 1), ending=True) == pytest.approx(0.01 * 0.5**i)
        t = 5 * i + 2
        expected = 0.01 * 0.5**i + 0.5 * (0.1 * 0.5**i - 0.01 * 0.5**i) * (1 + math.cos(math.pi * 2 / 5))
        assert s(t) == pytest.approx(expected)
    assert SGDR(peak=0.1, total=40, T_0=5, lr_min=0.01, cycle_decay=0.5).lr(10, ending=True) == pytest.approx(0.01)


def test_cyclic_step_size_in_optimizer_steps_as_smith_gives_it():
    spe, steps = 50, 20 * 50
    clock = Clock(spe, steps)
    schedule = Cyclic(peak=0.1, total=20, lr_min=0.001, step_size="2000 steps", clock=clock)
    expected = drive(
        lambda o: torch_lr.CyclicLR(o, base_lr=0.001, max_lr=0.1, step_size_up=2000, cycle_momentum=False), steps
    )
    assert_same(ours(schedule, spe, steps), expected)
    assert schedule.cycle_ends() == []  # a cycle of 4000 steps does not end within 1000
    with pytest.raises(ConfigError, match="step_size"):
        Cyclic(peak=0.1, total=20, step_size="2000.5 steps", clock=clock)


def test_settings_in_steps_epochs_or_shares_of_training():
    clock = Clock(10, 200)
    assert [Span.parse(v, "x").epochs(20, clock) for v in (5, "5 epochs", "30 steps", "25%", "0 steps")] == [
        5,
        5,
        3,
        5,
        0,
    ]
    for ambiguous in (0.5, 0.75):
        with pytest.raises(ConfigError, match="ambiguous: write .*% for a share of training or '.* epochs'"):
            Span.parse(ambiguous, "swa_start", shares=True)
        assert Span.parse(ambiguous, "step_size").epochs(20) == ambiguous  # always epochs there
    for bad in ("-1 steps", "3 weeks", "150%", True, None, float("nan")):
        with pytest.raises(ConfigError):
            Span.parse(bad, "swa_start")


def swa_reference_schedule(epoch: int, lr_init: float, budget: int, swa_lr: float | None) -> float:
    """The SWA reference code's learning_rate_schedule (Izmailov et al. 2018), as it sets the lr at the start of
    each epoch: `budget` is swa_start for an SWA run, the number of epochs for an SGD run."""
    t = epoch / budget
    lr_ratio = swa_lr / lr_init if swa_lr is not None else 0.01
    if t <= 0.5:
        factor = 1.0
    elif t <= 0.9:
        factor = 1.0 - (1.0 - lr_ratio) * (t - 0.5) / 0.4
    else:
        factor = lr_ratio
    return lr_init * factor


@pytest.mark.parametrize("epochs, length, swa_lr", [(200, "100%", None), (300, 161, 0.01), (225, 126, 0.05)])
def test_ramp_down_is_the_swa_reference_codes_schedule(epochs, length, swa_lr):
    lr_init = 0.05 if swa_lr == 0.01 else 0.1
    end_factor = 0.01 if swa_lr is None else swa_lr / lr_init
    schedule = RampDown(peak=lr_init, total=epochs, interval="epoch", length=length, end_factor=end_factor)
    budget = epochs if swa_lr is None else length
    for epoch in range(epochs):
        for within in (0.0, 0.5):  # the lr is set per epoch
            assert schedule(epoch + within) == pytest.approx(swa_reference_schedule(epoch, lr_init, budget, swa_lr))


def test_linear_decay_equals_torch_linear_lr():
    spe, epochs = 7, 12
    n = spe * epochs
    expected = drive(lambda o: torch_lr.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=n), n)
    assert_same(ours(LinearDecay(peak=0.1, total=epochs, lr_min=0.01), spe, n), expected)
    schedule = LinearDecay(peak=0.1, total=10)  # straight to zero
    assert [schedule(t) for t in (0, 2.5, 5, 10, 11)] == pytest.approx([0.1, 0.075, 0.05, 0.0, 0.0])
    assert schedule.cycle_ends() == [] and schedule.cooldown_start() is None


# (progress through the cooldown, the fraction of peak - lr_min left) for each shape, written out
COOLDOWN_POINTS = {
    "linear": [(0.0, 1.0), (0.25, 0.75), (0.5, 0.5), (1.0, 0.0)],
    "cosine": [(0.0, 1.0), (0.25, (1 + math.cos(math.pi / 4)) / 2), (0.5, 0.5), (1.0, 0.0)],
    "1-sqrt": [(0.0, 1.0), (0.25, 0.5), (0.5, 1 - math.sqrt(0.5)), (0.64, 0.2), (1.0, 0.0)],
}


@pytest.mark.parametrize("shape", COOLDOWN_POINTS)
@pytest.mark.parametrize("lr_min, floor", [(0.0, 0.0), ("10%", 0.01), (0.004, 0.004)])
def test_wsd_holds_the_peak_then_cools_down_along_its_shape(shape, lr_min, floor):
    schedule = WarmupStableDecay(peak=0.1, total=50, shape=shape, lr_min=lr_min)  # cooldown: the last 20%, 10 epochs
    assert schedule.cooldown_start() == pytest.approx(40)
    assert [schedule(t) for t in (0, 13.7, 39.99, 40)] == [0.1] * 4
    for progress, left in COOLDOWN_POINTS[shape]:
        assert schedule(40 + 10 * progress) == pytest.approx(floor + (0.1 - floor) * left, abs=1e-15), progress
    assert schedule(50) == schedule(51) == pytest.approx(floor, abs=1e-15)
    lrs = [schedule(s / 10) for s in range(501)]
    assert all(b <= a for a, b in zip(lrs, lrs[1:]))  # never rises


def test_wsd_cooldown_in_epochs_or_steps_and_its_start():
    clock = Clock(25, 25 * 30)
    assert WarmupStableDecay(peak=0.1, total=30, cooldown=6).cooldown_start() == 24
    assert WarmupStableDecay(peak=0.1, total=30, cooldown="150 steps", clock=clock).cooldown_start() == 24
    whole = WarmupStableDecay(peak=0.1, total=30, cooldown="100%", shape="linear")
    assert whole.cooldown_start() == 0 and whole(15) == pytest.approx(0.05)  # all cooldown: linear decay
    assert [whole(t) for t in (0, 7, 30)] == pytest.approx([LinearDecay(peak=0.1, total=30)(t) for t in (0, 7, 30)])


def test_wsd_before_its_cooldown_depends_on_the_peak_and_the_warmup_only():
    """What lets one stable run serve several lengths: runs of 20 and 40 epochs take the same lr at every step
    before the 20-epoch run's cooldown, and the plan says in epochs of the run where each cooldown starts."""
    spe = 10
    plans = {
        epochs: LrRecipe(schedule=WarmupStableDecay, warmup=LinearWarmup(epochs=2)).build(0.1, Clock(spe, spe * epochs))
        for epochs in (20, 40)
    }
    assert plans[20].cooldown_start() == pytest.approx(2 + 0.8 * 18)  # 20% of the schedule after the warmup
    assert plans[40].cooldown_start() == pytest.approx(2 + 0.8 * 38)
    first = plans[20].clock.step_at(plans[20].cooldown_start())
    assert [plans[20].lr(s) for s in range(first + 1)] == [plans[40].lr(s) for s in range(first + 1)]
    assert plans[20].lr(first + 1) < plans[40].lr(first + 1) == 0.1
    assert plans[20].lr(5) == pytest.approx(0.025)  # in the warmup
    assert LrRecipe(schedule=Cosine).build(0.1, Clock(spe, 100)).cooldown_start() is None


def test_wsd_cooldown_longer_than_the_schedule_after_the_warmup_is_refused():
    recipe = LrRecipe(schedule=partial(WarmupStableDecay, cooldown=10), warmup=LinearWarmup(epochs=2))
    with pytest.raises(ConfigError, match=r"schedule\.cooldown='10 epochs' is invalid: .* schedule's 8 epochs"):
        recipe.build(0.1, Clock(10, 100))


@pytest.mark.parametrize(
    "factory",
    [Cosine, SGDR, LinearDecay, WarmupStableDecay, partial(Cyclic, step_size=2), snapshot_cycles, AdaptiveSGDR],
)
def test_lr_min_as_a_share_of_the_peak_is_that_lr(factory):
    share, absolute = factory(peak=0.2, total=20, lr_min="10%"), factory(peak=0.2, total=20, lr_min=0.02)
    assert share.floor == pytest.approx(0.02)
    assert [share(t / 4) for t in range(81)] == pytest.approx([absolute(t / 4) for t in range(81)], rel=1e-12)
    assert "lr_min=10%" in share.describe()  # reported as given


def test_lr_min_as_a_share_from_the_command_line(tmp_path):
    from conftest import compose_config
    from hydra.utils import instantiate

    from anneal.config import check_run_settings

    for name in ("cosine", "sgdr", "linear", "wsd", "snapshot"):
        cfg = compose_config(f"schedule={name}", "schedule.lr_min=10%", output_dir=tmp_path)
        check_run_settings(cfg)  # the types: a string with % is accepted where an lr is
        schedule = instantiate(cfg.schedule)(peak=cfg.optimizer.lr, total=cfg.trainer.max_epochs)
        assert schedule.floor == pytest.approx(0.1 * cfg.optimizer.lr), name
