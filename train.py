"""anneal's command line: python train.py [group=option ...] [key=value ...]   (see README.md)"""

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from anneal.errors import ConfigError, DataError, TrainingStopped  # imported here: --help comes back fast
    from anneal.run import run

    try:
        return run(cfg)
    except (ConfigError, DataError, TrainingStopped, SIGTERMException) as error:
        message = (
            f"stopped by SIGTERM: resume from its last checkpoint with hydra.run.dir={cfg.output_dir} ckpt_path=last"
            if isinstance(error, SIGTERMException)
            else str(error)
        )
        logging.getLogger("anneal").error("%s", message)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # Hydra records this job as failed and the sweep's other jobs still run
        print(f"anneal: error: {message}", file=sys.stderr)
        sys.exit(
            143 if isinstance(error, SIGTERMException) else 2 if isinstance(error, (ConfigError, DataError)) else 3
        )


if __name__ == "__main__":
    main()
