"""Names for W&B runs, from their settings."""

from __future__ import annotations

GROUPS = (
    "data",
    "model",
    "optimizer",
    "schedule",
    "warmup",
    "averaging",
    "ensemble",
    "logger",
    "trainer",
    "callbacks",
    "experiment",
    "hparams_search",
)

NAMED_GROUPS = ("experiment", "model", "optimizer", "schedule", "warmup", "averaging", "ensemble")

SWEEP_SYNTAX = (",", "range(", "choice(", "interval(", "glob(")


def swept_keys(sweep_overrides: list[str]) -> set[str]:
    """The keys a multirun's command line sweeps (`schedule.T_0=1,5`, `seed=range(3)`)."""
    pairs = (o.lstrip("+~").partition("=") for o in sweep_overrides)
    return {key for key, _, value in pairs if any(s in value for s in SWEEP_SYNTAX)}


def run_name(overrides: list[str], swept: set[str] | None = None) -> str:
    """A short name from a run's overrides: its choices of schedule, model, preset ... by their values and, of
    the other settings, the swept ones (all, outside a sweep) by their last key:
    `schedule=sgdr schedule.T_0=5 seed=1` -> `sgdr T_0=5 seed=1`."""
    parts = []
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key in NAMED_GROUPS:
            parts.append(value)
        elif (
            "/" not in key
            and key not in GROUPS
            and (
                key in swept
                if swept is not None
                else not key.startswith(
                    ("hydra.", "logger.", "data.root", "trainer.enable_", "output_dir", "ckpt_path", "mode")
                )
            )
        ):
            parts.append(f"{key.rsplit('.', 1)[-1]}={value}")
    return " ".join(parts)
