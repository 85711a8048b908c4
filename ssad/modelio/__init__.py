"""Model I/O: a trained run or a saved detector's files in, a `LoadedModel` out; safetensors, ONNX (`onnx`)."""

from __future__ import annotations

from ssad.modelio.loading import (
           ClipInput,
           LoadedModel,
           build_module,
           load,
           load_model_files,
           save_model_files,
)
from ssad.models.checkpoint import read_checkpoint, resolve_checkpoint

__all__ = ["ClipInput", "LoadedModel", "build_module", "load", "load_model_files", "save_model_files",
           "read_checkpoint", "resolve_checkpoint"]
