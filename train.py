"""anneal's command line: python train.py [group=option ...] [key=value ...]   (see README.md)

Importing this file changes nothing in the process (tests call `main` in-process); run as a script, it first
blocks SIGINT and SIGTERM, before any thread exists (anneal/interrupts.py says why)."""

import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

CONF = Path(__file__).resolve().parent / "conf"  # absolute: Hydra finds it whether run as a script or imported


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from anneal.cli import report_ending  # here: --help comes back fast
    from anneal.wandb_start import start_wandb_early

    start_wandb_early(cfg.logger)  # before anneal.run imports torch and Lightning: wandb_start.py says why
    from anneal.run import run

    try:
        return run(cfg)
    except Exception as error:
        hydra_config = HydraConfig.get()
        multirun = hydra_config.mode == RunMode.MULTIRUN
        asked = any(o.lstrip("+").startswith("hydra.run.dir=") for o in hydra_config.overrides.hydra)
        code = report_ending(error, cfg.output_dir, multirun=multirun, dir_asked=asked)
        if code is None:
            raise
        if multirun:  # a job stopped by a signal stops its sweep: no further job starts
            from anneal.interrupts import Interrupted
            from anneal.sweep_control import stop_sweep

            assert isinstance(error, Interrupted)
            stop_sweep(error, Path(hydra_config.sweep.dir))  # the basic launcher: SystemExit; the others: a mark
            return None
        sys.exit(code)


if __name__ == "__main__":
    # Before any thread exists, so that every thread inherits it: SIGTERM is taken by a thread of anneal's and
    # Ctrl-C waits until the run's handlers are in (anneal/interrupts.py says why).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    from anneal.cli import checked_command_line

    sys.argv = checked_command_line(sys.argv, CONF)
    main()
