"""Hydra's Optuna sweeper for a study that several sweeps share through one storage (`hydra.sweeper.storage`:
sqlite:///sgdr.db on one machine, an RDB URL such as postgresql://... on a cluster), each asking the storage for
its next trial. Three things the plugin gets wrong there:
- sweeps that start together race to create the storage's tables, and all but one fail: the tables are created
  here first, retried while another sweep is creating them;
- sweeps with the same sampler seed draw the same points (a study resumed later repeats its first ones): with a
  storage, the sampler draws from fresh entropy instead of its seed;
- optimization_results.yaml says nothing of the other sweeps: here it names the study's best trial by number and
  counts the study's trials, so the sweeps' reports agree on one best trial, and one that ends while others still
  run trials says how many."""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import OmegaConf

log = logging.getLogger("anneal")


def create_tables(storage: str, attempts: int = 8) -> None:
    """The storage's tables, created once for every sweep that shares them."""
    import optuna
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            optuna.storages.RDBStorage(storage)
            return
        except sqlalchemy.exc.SQLAlchemyError:  # another sweep is creating them at this moment
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 + random.random())


class SharedStudySweeper(OptunaSweeper):
    """The plugin's Optuna sweeper (its settings unchanged), safe for a study shared through `storage`."""

    def sweep(self, arguments: list[str]) -> None:
        settings = self.sweeper
        if settings.storage is None:
            return super().sweep(arguments)
        if not str(settings.storage).startswith("redis"):
            create_tables(str(settings.storage))
        if hasattr(settings.sampler, "reseed_rng"):  # (a grid sampler has no randomness to share)
            settings.sampler.reseed_rng()
            log.info("a study in a storage: the sampler draws from fresh entropy, not from its seed")
        super().sweep(arguments)
        assert settings.config is not None  # (set by setup)
        self.report(str(settings.storage), Path(str(settings.config.hydra.sweep.dir)) / "optimization_results.yaml")

    def report(self, storage: str, path: Path) -> None:
        """The plugin's results, with the study's best trial and trial counts as the storage has them now."""
        import optuna

        study = optuna.load_study(study_name=self.sweeper.study_name, storage=storage)
        counts = {state.name.lower(): 0 for state in optuna.trial.TrialState}
        for trial in study.get_trials(deepcopy=False):
            counts[trial.state.name.lower()] += 1
        results: dict[str, Any] = OmegaConf.to_container(OmegaConf.load(path))  # type: ignore[assignment]
        results |= {"study_name": study.study_name, "storage": storage, "trials": counts}
        if len(study.directions) == 1 and counts["complete"]:
            results["best_trial"] = study.best_trial.number
        OmegaConf.save(OmegaConf.create(results), path)
        log.info(
            "study %s: %d trials complete, %d running in other sweeps; best trial #%s",
            study.study_name,
            counts["complete"],
            counts["running"],
            results.get("best_trial", "-"),
        )
