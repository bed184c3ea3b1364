"""What a resume may change. A checkpoint records the settings that decide what its run computes (its arm and
seed); a resume must keep them, except for the few changes it can honour exactly, listed on purpose in
`resume_changes`. Everything else, and any key that does not exist, is refused before training."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from omegaconf import DictConfig, ListConfig, OmegaConf

from anneal.callbacks import RunCallback
from anneal.errors import ConfigError, require
from anneal.record import ARM, SEED, classify, flatten
from anneal.schedules import Clock, LrPlan

# The changes a resume can honour exactly (README, "What a resume may change"):
RESUMABLE = {
    # the run goes on to the new length; refused if the lr (or an average, a snapshot) of the steps already
    # taken would differ under it, since the run would then match no run started with the new length
    "trainer.max_epochs": "the run's length",
    "trainer.max_steps": "the run's length in optimizer steps",
    # only the final ensemble evaluation reads them
    "ensemble.max_members": "how many of the newest snapshots the ensemble uses",
    "ensemble.include_final": "whether the last weights join the ensemble when training ends mid-cycle",
}
UNSET = "(unset)"
EXACT_STEPS = 200_000  # past this many steps the lrs already used are compared on a sample


def settings_of(cfg: DictConfig) -> dict[str, Any]:
    """The resolved settings that decide what a run computes (its arm and its seed), by key."""
    mode = str(cfg.mode)
    flat = flatten(OmegaConf.to_container(cfg, resolve=True))
    return {k: v for k, v in flat.items() if classify(k, mode) in (ARM, SEED)}


def intended_changes(cfg: DictConfig, known: set[str]) -> list[str]:
    """`resume_changes`, checked: a list of existing keys that a resume may change."""
    listed = cfg.get("resume_changes") or []
    require(
        isinstance(listed, (list, ListConfig)) and all(isinstance(k, str) for k in listed),
        "resume_changes",
        OmegaConf.to_container(listed) if isinstance(listed, ListConfig) else listed,
        f"a list of settings a resume may change, e.g. [trainer.max_epochs]: one of {sorted(RESUMABLE)}",
    )
    for key in listed:
        require(key in known, "resume_changes", key, "not a setting of this run (a typo?)")
        require(
            key in RESUMABLE,
            "resume_changes",
            key,
            f"a resume can honour exactly only changes of {sorted(RESUMABLE)}; start a new run to change {key}",
        )
    return list(listed)


def steps_compared(step: int) -> range | list[int]:
    if step <= EXACT_STEPS:
        return range(step)
    stride = math.ceil(step / EXACT_STEPS)
    return sorted({*range(0, step, stride), *range(max(step - 1000, 0), step)})


def past_of_plan_differs(old: LrPlan, new: LrPlan, step: int) -> str | None:
    """Where the lr of a step already taken differs between the two plans, if anywhere."""
    for s in steps_compared(step):
        a, b = old.lr(s), new.lr(s)
        if not math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15):
            return f"the lr of step {s}, already trained with, would change from {a:.6g} to {b:.6g}"
    return None


def check_resume(
    cfg: DictConfig, checkpoint_path: str, checkpoint: dict[str, Any], plan: LrPlan, callbacks: dict[str, L.Callback]
) -> list[str]:
    """The keys whose values differ from those the checkpoint was written with, all of them intended
    (`resume_changes`) and honoured exactly; anything else stops the run before training."""
    saved = checkpoint.get("settings")
    if saved is None:
        return []  # a checkpoint from before anneal recorded its settings
    current = settings_of(cfg)
    mode = str(cfg.mode)
    keys = {k for k in saved.keys() | current.keys() if classify(k, mode) in (ARM, SEED)}
    changed = sorted(k for k in keys if saved.get(k, UNSET) != current.get(k, UNSET))
    allowed = intended_changes(cfg, set(flatten(OmegaConf.to_container(cfg))) | keys)
    refused = [k for k in changed if k not in allowed]
    if refused:
        listed = "; ".join(
            f"{k}: {saved.get(k, UNSET)!r} in the checkpoint, {current.get(k, UNSET)!r} now" for k in refused
        )
        resumable = [k for k in refused if k in RESUMABLE]
        advice = (
            f"say which changes are intended with 'resume_changes=[{','.join(resumable)}]'"
            if resumable == refused
            else f"a resume can change only {sorted(RESUMABLE)}; start a new run for anything else"
        )
        raise ConfigError(
            "ckpt_path",
            checkpoint_path,
            text=(
                f"{{key}}={checkpoint_path} was written by a run with other settings ({listed}). A resume continues "
                f"the same run: keep those settings, or {advice}"
            ),
        )
    step = int(checkpoint.get("global_step", 0))
    if changed and step > 0:
        check_the_past(checkpoint_path, saved, plan, callbacks, step)
    return changed


def check_the_past(
    checkpoint_path: str, saved: dict[str, Any], plan: LrPlan, callbacks: dict[str, L.Callback], step: int
) -> None:
    """A changed length is honoured only if the steps already taken stay what they were under it."""
    old_clock = Clock.of_length(
        plan.clock.steps_per_epoch,
        max_epochs=saved.get("trainer.max_epochs"),
        max_steps=saved.get("trainer.max_steps", -1),
    )
    if plan.clock.total_steps < step:
        raise ConfigError(
            "ckpt_path",
            checkpoint_path,
            text=(
                f"{{key}}={checkpoint_path} has trained {step} optimizer steps ({plan.clock.epochs(step):g} epochs), "
                f"more than the new length of {plan.clock.total_steps} steps: the run cannot be shortened below "
                f"where it is"
            ),
        )
    old = plan.for_clock(old_clock)
    reasons = [past_of_plan_differs(old, plan, step)]
    for key, callback in callbacks.items():
        if isinstance(callback, RunCallback) and (reason := callback.past_differs(old, plan, step)):
            reasons.append(f"{key}: {reason}")
    found = [r for r in reasons if r]
    if found:
        raise ConfigError(
            "ckpt_path",
            checkpoint_path,
            text=(
                f"{{key}}={checkpoint_path}: the new length ({plan.clock.total_steps} steps, was "
                f"{old_clock.total_steps}) changes the part of the run already done: {'; '.join(found)}. The "
                f"resumed run would match no run started with the new length (a schedule or a start given as a "
                f"share of training moves with the length); start a new run, or use times in epochs or steps"
            ),
        )
