"""Experiment trackers: W&B that goes offline by itself when the user is not logged in."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)


def wandb_credentials_present() -> bool:
    """An API key in ``WANDB_API_KEY`` or in ~/.netrc for the W&B host (where ``wandb login`` stores it)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_logger(save_dir: str, offline: bool | None = None, **kwargs) -> WandbLogger:
    """Lightning's WandbLogger, online when logged in and offline otherwise, so a run never waits on a login.

    ``offline`` forces the mode; ``WANDB_MODE`` (online/offline/disabled) is respected as wandb defines it.
    """
    if offline is None:
        offline = "WANDB_MODE" not in os.environ and not wandb_credentials_present()
        if offline:
            log.warning(
                "W&B: not logged in, so this run is logged offline under %s. Upload it later with: wandb sync %s",
                Path(save_dir) / "wandb",
                Path(save_dir) / "wandb" / "offline-run-*",
            )
    return WandbLogger(save_dir=save_dir, offline=offline, **kwargs)


def finish_wandb() -> None:
    """Close the current W&B run (if any), so the next job of a sweep in this process starts its own."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()
