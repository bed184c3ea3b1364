"""anneal's command line: python train.py [group=option ...] [key=value ...]   (see README.md)"""

import signal

# Before any thread exists, so that every thread inherits it: SIGTERM is taken by a thread of anneal's and
# Ctrl-C waits until the run's handlers are in (anneal/interrupts.py says why).
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})

import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from anneal.console import log_to_files
    from anneal.errors import ConfigError, DataError, DirectoryTaken, TrainingStopped  # here: --help comes back fast
    from anneal.wandb_start import start_wandb_early

    start_wandb_early(cfg.logger)  # before anneal.run imports torch and Lightning: wandb_start.py says why
    from anneal.interrupts import EXIT_CODES, NAMES, Interrupted, rank
    from anneal.run import run

    try:
        return run(cfg)
    except (ConfigError, DataError, TrainingStopped, Interrupted) as error:
        if isinstance(error, Interrupted) and rank() > 0:
            sys.exit(EXIT_CODES[error.signum])  # rank 0 says what was stopped and what there is to resume
        message = str(error)
        if isinstance(error, Interrupted):
            message = stopped(NAMES[error.signum], error.phase, cfg.output_dir)
        multirun = HydraConfig.get().mode == RunMode.MULTIRUN
        if not isinstance(error, DirectoryTaken):  # its log file is another run's: not a line of this one in it
            if multirun:
                logging.getLogger("anneal").error("%s", message)
            else:
                log_to_files(message)  # the console gets it once, below
        if multirun:
            if isinstance(error, Interrupted):  # a signal stops the whole sweep
                from anneal.sweep_control import stop_sweep

                stop_sweep(error, Path(HydraConfig.get().sweep.dir))
                return None
            raise  # Hydra records this job as failed and the sweep's other jobs still run
        print(f"anneal: error: {message}", file=sys.stderr)
        asked = any(o.lstrip("+").startswith("hydra.run.dir=") for o in HydraConfig.get().overrides.hydra)
        if not (asked or isinstance(error, (Interrupted, DirectoryTaken))):
            from anneal.run_dir import discard_refused

            discard_refused(Path(cfg.output_dir))  # a refused run leaves no directory where none was asked for
        if isinstance(error, Interrupted):
            sys.exit(EXIT_CODES[error.signum])
        sys.exit(2 if isinstance(error, (ConfigError, DataError)) else 3)


def stopped(signal_name: str, phase: str, run_dir: str) -> str:
    """What a stop by a signal left, and how to go on."""
    resume = f"hydra.run.dir={run_dir} ckpt_path=last"
    if phase == "the LR range test" or not (Path(run_dir) / "checkpoints" / "last.ckpt").is_file():
        return f"stopped by {signal_name} during {phase}: no checkpoint was written, nothing to resume; run it again"
    if phase == "the final evaluation":
        return (
            f"stopped by {signal_name} during the final evaluation: training had finished and "
            f"checkpoints/last.ckpt holds it; evaluate again with {resume}"
        )
    return f"stopped by {signal_name} during {phase}: checkpoints/last.ckpt holds the run so far; resume with {resume}"


if __name__ == "__main__":
    from anneal.cli import checked_command_line

    sys.argv = checked_command_line(sys.argv, Path(__file__).resolve().parent / "conf")
    main()
