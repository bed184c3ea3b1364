"""anneal's submitit launchers (anneal.launchers), where Hydra looks for plugins; it imports every module here
at start-up, so without the sweeps extra this one defines nothing."""

try:
    from anneal.launchers import RequeueingLauncher
except ImportError:  # no hydra-submitit-launcher: `hydra/launcher=slurm` says so when it is chosen
    pass
else:

    class LocalLauncher(RequeueingLauncher):
        _EXECUTOR = "local"

    class SlurmLauncher(RequeueingLauncher):
        _EXECUTOR = "slurm"
