"""A run folder: its Lightning checkpoints, found and read without unpickling (what fine-tuning and loading start
from), whether the run that wrote them finished, and the clips its network never trained on."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ssad.core.errors import SsadError

__all__ = ["TRAINING_KEY", "read_checkpoint", "resolve_checkpoint", "training_progress", "unseen_clips",
           "warn_if_unfinished"]

log = logging.getLogger("ssad")

#: what a checkpoint records of the training that wrote it (`SsadModule.on_save_checkpoint`): the epochs and steps
#: it was to run, so that a run stopped early can be told from a finished one
TRAINING_KEY = "ssad_training"


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


def _run_config(run: Path) -> Path | None:
    """The newest config.yaml `ssad fit` saved in a run folder (the logger's, not wandb's own)."""
    found = [p for p in run.rglob("config.yaml") if "wandb" not in p.relative_to(run).parts]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _planned(checkpoint: dict[str, Any], run: Path) -> tuple[int | None, int | None]:
    """The epochs and steps the run was to train: from the checkpoint, else from the config it saved."""
    recorded = checkpoint.get(TRAINING_KEY) or {}
    if recorded:
        return recorded.get("max_epochs"), recorded.get("max_steps")
    config = _run_config(run)
    if config is None:
        return None, None
    try:
        import yaml

        trainer = (yaml.safe_load(config.read_text()) or {}).get("trainer") or {}
    except (OSError, ValueError):
        return None, None
    return trainer.get("max_epochs"), trainer.get("max_steps")


def training_progress(source: str | Path) -> tuple[int, int] | None:
    """(epochs done, epochs planned) of an unfinished run, judged by its latest checkpoint (`last.ckpt`); None for a
    finished run or when the checkpoints do not say."""
    chosen = resolve_checkpoint(source)
    latest = chosen.parent / "last.ckpt" if (chosen.parent / "last.ckpt").is_file() else chosen
    run = chosen.parent.parent if chosen.parent.name == "checkpoints" else chosen.parent
    try:
        checkpoint = torch.load(latest, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # an unreadable checkpoint is reported by whoever reads it for its weights
        return None
    epochs, steps = _planned(checkpoint, run)
    done = int(checkpoint.get("epoch", -1)) + 1
    if not isinstance(epochs, int) or epochs <= 0 or done >= epochs:
        return None
    if isinstance(steps, int) and steps > 0 and int(checkpoint.get("global_step", 0)) >= steps:
        return None  # stopped by its step budget, as planned
    return done, epochs


def warn_if_unfinished(source: str | Path) -> None:
    """Log a warning when the run `source` belongs to stopped before its planned epochs, saying how to resume it."""
    progress = training_progress(source)
    if progress is None:
        return
    done, planned = progress
    chosen = resolve_checkpoint(source)
    run = chosen.parent.parent if chosen.parent.name == "checkpoints" else chosen.parent
    config = _run_config(run)
    resume = (f"ssad fit --config {config} --ckpt_path last" if config else
              "the same `ssad fit` command with --ckpt_path last")
    log.warning("%s: its training stopped after %d of %d epochs (interrupted?); using %s as it is. To finish "
                "training it: %s", run, done, planned, chosen.name, resume)


def unseen_clips(source: str | Path) -> set[str] | None:
    """The training clips a run held out for validation, which its network never trained on (resolved paths), as
    its data module recorded them in the checkpoint; None for anything else (a detector's model, the shipped
    encoder, a run that did not record them)."""
    path = Path(source)
    if not (path.is_dir() or path.suffix == ".ckpt"):
        return None
    try:
        checkpoint = torch.load(resolve_checkpoint(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # no checkpoint here, or an unreadable one: whoever reads its weights reports it
        return None
    for value in checkpoint.values():
        if isinstance(value, dict) and isinstance(value.get("validation_clips"), list):
            return {str(p) for p in value["validation_clips"]}
    return None
