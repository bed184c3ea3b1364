"""Which W&B mode a run gets, and W&B's start begun before torch and Lightning are imported, for a run that logs
to it. Why early: `wandb.init` imports W&B Launch's modules, whose pydantic models read their docstrings through
`inspect.getmodule`, which scans every loaded module: with torch and Lightning loaded, W&B's import and start take
a third longer. And W&B's service process can boot on the other core while this one imports Lightning."""

from __future__ import annotations

import contextlib
import importlib
import netrc
import os
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from anneal.errors import require

WANDB_MODES = ("auto", "online", "offline", "disabled")
WANDB_LOGGER = "anneal.loggers.wandb_logger"
# what the first wandb.init imports (wandb_run.Run._detect_and_apply_job_inputs); a test pins the name
WANDB_INIT_IMPORTS = ("wandb", "wandb.sdk.launch.inputs.internal")


def wandb_api_key_configured() -> bool:
    """True when WANDB_API_KEY is set or ~/.netrc holds a login for the W&B host (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    if host is None:
        return False
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(mode: str = "auto") -> str:
    """`auto`: WANDB_MODE if set, else online with an API key and offline without one."""
    require(mode in WANDB_MODES, "mode", mode, f"one of {WANDB_MODES}")
    if mode != "auto":
        return mode
    return os.environ.get("WANDB_MODE") or ("online" if wandb_api_key_configured() else "offline")


def start_wandb_early(logger: Mapping[str, Any] | None) -> bool:
    """If this process will start a W&B run (rank 0, the W&B logger, not disabled): import what its start needs
    and start W&B's service process on a thread. Call it before torch and Lightning are imported. Whether it did."""
    if not logger or logger.get("_target_") != WANDB_LOGGER or not rank_zero():
        return False
    mode = logger.get("mode", "auto")
    if mode not in WANDB_MODES or wandb_mode(mode) == "disabled":
        return False  # (a bad mode is refused later, with the other settings)
    for name in WANDB_INIT_IMPORTS:
        importlib.import_module(name)
    threading.Thread(target=start_wandb_service, name="anneal-wandb-service", daemon=True).start()
    return True


def rank_zero() -> bool:
    """Whether the launcher's environment makes this process rank 0: the variables Lightning's `rank_zero_only`
    reads, in its order (the first one set decides), read here without importing Lightning (which imports torch)."""
    names = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
    return next((os.environ[name] for name in names if name in os.environ), "0") == "0"


def start_wandb_service() -> None:
    """`wandb.setup()` starts the service that `wandb.init` would start (and waits for); it mostly waits."""
    import wandb

    with contextlib.suppress(Exception):  # wandb.init starts it again, and reports what is wrong
        wandb.setup()
