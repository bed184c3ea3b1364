"""The W&B logger, offline unless an API key is configured, so a run never blocks on the network."""

from __future__ import annotations

import logging
import netrc
import os
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)
WANDB_MODES = ("auto", "online", "offline", "disabled")


def wandb_api_key_configured() -> bool:
    """True when WANDB_API_KEY is set or ~/.netrc holds a login for the W&B host (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(mode: str = "auto") -> str:
    """`auto`: WANDB_MODE if set, else online with an API key and offline without one."""
    if mode not in WANDB_MODES:
        from anneal.errors import ConfigError

        raise ConfigError(f"logger.mode={mode!r} is invalid: one of {WANDB_MODES}")
    if mode != "auto":
        return mode
    return os.environ.get("WANDB_MODE") or ("online" if wandb_api_key_configured() else "offline")


def wandb_logger(project: str = "anneal", name: str | None = None, group: str | None = None,
                 tags: list[str] | None = None, save_dir: str = ".", mode: str = "auto", **kwargs) -> WandbLogger:
    mode = wandb_mode(mode)
    if mode == "offline":
        log.info("W&B offline (no API key configured): the run is saved under %s/wandb; `wandb sync` uploads it",
                 save_dir)
    # mode goes to wandb.init; WandbLogger(offline=True) would set WANDB_MODE for the whole process
    return WandbLogger(project=project, name=name, group=group, tags=list(tags or []), save_dir=save_dir,
                       mode=mode, **kwargs)
