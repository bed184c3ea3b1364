"""The W&B logger, offline unless an API key is configured, so a run never blocks on the network."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
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


class FallbackWandbLogger(WandbLogger):
    """A WandbLogger that logs offline instead of failing when the W&B server cannot be reached or refuses
    the key: a run never dies of its logging, and `wandb sync` uploads the offline run later."""

    @property
    def experiment(self):
        try:
            return super().experiment
        except Exception as error:  # wandb raises CommError, UsageError, AuthenticationError, timeouts ...
            if self._wandb_init.get("mode") == "offline":
                raise
            log.warning("W&B could not start online (%s: %s); logging offline under %s instead",
                        type(error).__name__, error, self._wandb_init.get("dir"))
            self._wandb_init["mode"] = "offline"
            return super().experiment


def previous_run_id(save_dir: str) -> str | None:
    """The id of the newest W&B run under save_dir (online `run-<time>-<id>` or `offline-run-<time>-<id>`)."""
    runs = sorted(Path(save_dir, "wandb").glob("*run-*-*"), key=lambda p: p.stat().st_mtime)
    return runs[-1].name.rsplit("-", 1)[-1] if runs else None


def wandb_logger(project: str = "anneal", name: str | None = None, group: str | None = None,
                 tags: list[str] | None = None, save_dir: str = ".", mode: str = "auto", init_timeout: float = 30,
                 resuming_from: str | None = None, **kwargs) -> WandbLogger:
    import wandb

    mode = wandb_mode(mode)
    if resuming_from and "id" not in kwargs and (previous := previous_run_id(save_dir)):
        kwargs["id"] = previous  # a resumed training run goes on in the same W&B run
    if mode == "offline":
        log.info("W&B offline (no API key configured): the run is saved under %s/wandb; `wandb sync` uploads it",
                 save_dir)
    # mode goes to wandb.init; WandbLogger(offline=True) would set WANDB_MODE for the whole process
    return FallbackWandbLogger(project=project, name=name, group=group, tags=list(tags or []), save_dir=save_dir,
                               mode=mode, settings=wandb.Settings(init_timeout=init_timeout), **kwargs)
