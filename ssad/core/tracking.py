"""How runs are logged to wandb: online when the user is logged in, offline otherwise, or not at all.

Training and evaluation both ask here, so that neither depends on the other for it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["wandb_logged_in", "wandb_mode", "wandb_project"]


def wandb_logged_in() -> bool:
    """Whether the user has a wandb API key (environment or ~/.netrc), so runs may go online."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def wandb_mode() -> str:
    """$WANDB_MODE lower-cased (e.g. "disabled"), else "online" when logged in and "offline" when not."""
    return (os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")).lower()


def wandb_project() -> str:
    """The wandb project runs go to: $WANDB_PROJECT, else "ssad"."""
    return os.environ.get("WANDB_PROJECT", "ssad")
