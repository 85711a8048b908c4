"""Lightning checkpoints, found in a run folder and read without unpickling: what fine-tuning and loading start from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ssad.core.errors import SsadError

__all__ = ["read_checkpoint", "resolve_checkpoint"]


def resolve_checkpoint(source: str | Path) -> Path:
    """A checkpoint file, or a run folder's best checkpoint (else its last one)."""
    path = Path(source)
    if path.is_file():
        return path
    if not path.is_dir():
        raise SsadError(f"{path}: no such run folder or checkpoint")
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    for name in ("best.ckpt", "last.ckpt"):
        if (folder / name).is_file():
            return folder / name
    found = sorted(path.rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if found:
        return found[-1]
    raise SsadError(f"{path}: no checkpoint (*.ckpt) in this run folder")


def read_checkpoint(source: str | Path) -> dict[str, Any]:
    """Read a checkpoint without unpickling arbitrary objects (`weights_only=True`)."""
    path = resolve_checkpoint(source)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError and friends with long messages
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SsadError(f"{path}: not a loadable ssad checkpoint ({first})") from None
