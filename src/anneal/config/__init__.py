"""The config layer: builds anneal's objects from the composed Hydra config, and the one place that knows the
config's key names. Every group is built and checked inside `keys(group)`, so that a setting error raised
under the name a setting has where it is used (`T_0`) reaches the user under the key they type
(`schedule.T_0`)."""

from anneal.config.build import (
    NetworkSpec,
    build_callbacks,
    build_data,
    build_network,
    build_optimizer,
    build_plan,
    build_trainer,
)
from anneal.config.checks import check_optimized_metric, check_run_settings
from anneal.config.identity import arm_label_soon, arm_of_config, name_wandb_run, part, start_record, wandb_config
from anneal.config.keys import instantiate, instantiate_optional, keys
from anneal.config.resume import RESUMABLE, check_resume, settings_of

__all__ = [
    "RESUMABLE",
    "NetworkSpec",
    "arm_label_soon",
    "arm_of_config",
    "build_callbacks",
    "build_data",
    "build_network",
    "build_optimizer",
    "build_plan",
    "build_trainer",
    "check_optimized_metric",
    "check_resume",
    "check_run_settings",
    "instantiate",
    "instantiate_optional",
    "keys",
    "name_wandb_run",
    "part",
    "settings_of",
    "start_record",
    "wandb_config",
]
