"""Draws every schedule option, composed from the real config, into docs/schedules.png (the README's picture).

python docs/schedule_gallery.py [--epochs 60] [--steps-per-epoch 40]
"""

import argparse
import textwrap
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from matplotlib.figure import Figure

from anneal.config import instantiate_optional
from anneal.schedules import Clock, LrRecipe

CONF = Path(__file__).resolve().parents[1] / "conf"
PANELS = [
    ("constant", []),
    ("step", ["schedule.step_size=20"]),
    ("multistep", []),
    ("exp", []),
    ("cosine", []),
    ("sgdr", ["schedule.T_0=5", "schedule.T_mult=2"]),
    ("snapshot", ["schedule.cycles=3"]),
    ("cyclic", ["schedule.mode=triangular2", "schedule.step_size=5"]),
    ("onecycle", []),
    ("cosine", ["warmup=linear", "warmup.epochs=5"]),
    ("sgdr", ["schedule.T_0=1", "schedule.T_mult=1.5", "schedule.cycle_decay=0.8"]),
    ("cyclic", ["averaging=swa", "averaging.swa_start=60%", "averaging.swa_lr=0.02"]),
    ("linear", []),
    ("cosine", ["schedule.lr_min=10%"]),
    ("wsd", ["warmup=linear", "warmup.epochs=3"]),
    ("wsd", ["schedule.shape=linear", "schedule.cooldown=30%"]),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--steps-per-epoch", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "schedules.png")
    args = parser.parse_args()
    fig = Figure(figsize=(16, 13), layout="constrained")
    axes = fig.subplots(4, 4).flat
    clock = Clock(args.steps_per_epoch, args.epochs * args.steps_per_epoch)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        for ax, (option, overrides) in zip(axes, PANELS):
            cfg = compose(
                "train",
                [
                    f"schedule={option}",
                    f"trainer.max_epochs={args.epochs}",
                    "output_dir=.",
                    "optimizer.lr=0.1",
                    *overrides,
                ],
            )
            averaging = instantiate_optional(cfg.averaging)
            switch = averaging.lr_switch() if averaging else None
            recipe = LrRecipe(instantiate(cfg.schedule), instantiate(cfg.warmup), switch)
            plan = recipe.build(cfg.optimizer.lr, clock)
            steps = range(clock.total_steps)
            ax.plot([clock.epochs(s) for s in steps], [plan.lr(s) for s in steps], lw=1.2)
            for end in plan.cycle_ends():
                ax.axvline(end, color="tab:red", ls="--", lw=0.7)
            if (cooldown := plan.cooldown_start()) is not None:
                ax.axvline(cooldown, color="tab:green", ls=":", lw=0.9)
            ax.set_title(textwrap.fill(" ".join([f"schedule={option}", *overrides]), 48), fontsize=8.5)
            ax.set(xlim=(0, args.epochs), xlabel="epoch", ylabel="lr")
            ax.grid(alpha=0.3)
    title = f"anneal's schedules, optimizer.lr=0.1, {args.epochs} epochs (red: cycle ends; green: cooldown start)"
    fig.suptitle(title, fontsize=12)
    fig.savefig(args.out, dpi=80)
    print(args.out)


if __name__ == "__main__":
    main()
