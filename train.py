"""anneal's command line: python train.py [group=option ...] [key=value ...]   (see README.md)"""

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from anneal.errors import ConfigError, DataError, DirectoryTaken, TrainingStopped  # here: --help comes back fast
    from anneal.interrupts import EXIT_CODES, NAMES, Interrupted
    from anneal.run import run

    try:
        return run(cfg)
    except (ConfigError, DataError, TrainingStopped, Interrupted) as error:
        message = str(error)
        if isinstance(error, Interrupted):
            message = stopped(NAMES[error.signum], error.phase, cfg.output_dir)
        if not isinstance(error, DirectoryTaken):  # its log file is another run's: not a line of this one in it
            logging.getLogger("anneal").error("%s", message)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # Hydra records this job as failed and the sweep's other jobs still run
        print(f"anneal: error: {message}", file=sys.stderr)
        if isinstance(error, Interrupted):
            sys.exit(EXIT_CODES[error.signum])
        sys.exit(2 if isinstance(error, (ConfigError, DataError)) else 3)


def stopped(signal_name: str, phase: str, run_dir: str) -> str:
    """What a stop by a signal left, and how to go on."""
    resume = f"hydra.run.dir={run_dir} ckpt_path=last"
    if phase == "training":
        return f"stopped by {signal_name} during training: checkpoints/last.ckpt holds it; resume with {resume}"
    if phase == "the final evaluation":
        return (
            f"stopped by {signal_name} during the final evaluation: training had finished and "
            f"checkpoints/last.ckpt holds it; evaluate again with {resume}"
        )
    return f"stopped by {signal_name} during {phase}, before training began: nothing to resume; run it again"


if __name__ == "__main__":
    from anneal.cli import checked_command_line

    sys.argv = checked_command_line(sys.argv, Path(__file__).resolve().parent / "conf")
    main()
