"""anneal's command line: python train.py [group=option ...] [key=value ...]   (see README.md)"""

import logging
import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from anneal.data import DataError  # imported here: --help and config errors come back fast
    from anneal.errors import ConfigError
    from anneal.run import run

    try:
        return run(cfg)
    except (ConfigError, DataError) as error:
        logging.getLogger("anneal").error("%s", error)
        print(f"anneal: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
