"""anneal's launchers (anneal.launchers) and Optuna sweeper (anneal.shared_study), where Hydra looks for plugins.
Hydra imports every module here at start-up: without the sweeps extra this one defines nothing, and choosing a
preset that needs a missing plugin says which."""

try:
    from anneal.launchers import OnThisMachine, RequeueingLauncher
except ImportError:  # no hydra-submitit-launcher
    pass
else:

    class LocalLauncher(OnThisMachine):
        _EXECUTOR = "local"

    class SlurmLauncher(RequeueingLauncher):
        _EXECUTOR = "slurm"


try:
    from anneal.shared_study import SharedStudySweeper
except ImportError:  # no hydra-optuna-sweeper
    pass
else:

    class OptunaSweeper(SharedStudySweeper):
        pass
