"""anneal's command line: python train.py [group=option ...] [key=value ...]   (see README.md)"""

import logging
import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from anneal.data import DataError  # imported here: --help and config errors come back fast
    from anneal.errors import ConfigError, TrainingStopped
    from anneal.run import run

    try:
        return run(cfg)
    except (ConfigError, DataError, TrainingStopped) as error:
        stop(f"{error}", code=2 if isinstance(error, (ConfigError, DataError)) else 3)
    except SIGTERMException:
        stop(f"stopped by SIGTERM; checkpoints/last.ckpt was saved: resume with "
             f"hydra.run.dir={cfg.output_dir} ckpt_path=last", code=143)


def stop(message: str, code: int) -> None:
    logging.getLogger("anneal").error("%s", message)
    print(f"anneal: error: {message}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
