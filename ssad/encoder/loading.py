"""An encoder from files: a trained run, a checkpoint, a saved detector's model or the shipped encoder, rebuilt from
what `ssad.models.files` reads; and a model's files written."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ssad.core.errors import SsadError
from ssad.encoder.encoder import Encoder
from ssad.models.base import CHECKPOINT_KEY, SsadModule
from ssad.models.files import MODEL_FILES, read_model_files, read_weights, write_model_files
from ssad.models.runs import resolve_checkpoint

__all__ = ["build_module", "from_weights", "load", "load_model_files", "save_model_files"]


def _model_class(dotted: str) -> type[SsadModule]:
    """Import a model class by name, only from inside ssad and only an SsadModule."""
    module_name, _, class_name = dotted.rpartition(".")
    if not module_name.startswith("ssad."):
        raise SsadError(f"refusing to load model class {dotted!r}: not an ssad model")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, SsadModule)):
        raise SsadError(f"refusing to load model class {dotted!r}: not an ssad model")
    return cls


def build_module(metadata: dict[str, Any], hyper_parameters: dict[str, Any], state_dict: dict[str, Tensor]) -> SsadModule:
    """Rebuild a model from what a checkpoint or a saved detector holds."""
    cls = _model_class(metadata["model_class"])
    hparams = {k: v for k, v in hyper_parameters.items() if not k.startswith("_")}
    hparams.pop("init_from", None)
    module = cls(**hparams)
    module.load_state_dict(state_dict)
    return module


def save_model_files(model: Encoder, directory: str | Path, files: tuple[str, str] = MODEL_FILES) -> None:
    """Write a model into a folder as safetensors weights plus a JSON description (nothing pickled)."""
    write_model_files(model.module, model.metadata, directory, files)


def from_weights(weights: dict[str, Any], device: str | torch.device = "cpu", source: str | Path = "") -> Encoder:
    """The model that `ssad.models.files.read_weights` read (`source` names it in errors)."""
    metadata = weights.get(CHECKPOINT_KEY)
    if not metadata:
        raise SsadError(f"{source}: not an ssad checkpoint (no '{CHECKPOINT_KEY}' metadata)")
    module = build_module(metadata, weights.get("hyper_parameters", {}), weights["state_dict"])
    return Encoder(module, metadata, device)


def load_model_files(directory: str | Path, device: str | torch.device = "cpu") -> Encoder:
    """Rebuild the model a detector folder holds (safetensors weights + JSON description)."""
    return from_weights(read_model_files(directory), device, directory)


def load(source: str | Path, device: str | torch.device = "cpu") -> Encoder:
    """Load a run folder (its best, else last, checkpoint), a checkpoint file, a saved detector's model, or the
    encoder shipped with ssad: `"pretrained"` (sha256 checked first; a file or folder of that name here wins).
    """
    weights = read_weights(source)
    path = Path(source)
    return from_weights(weights, device, resolve_checkpoint(path) if CHECKPOINT_KEY not in weights else path)
