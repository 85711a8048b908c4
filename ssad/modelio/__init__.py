"""Model I/O: a trained run, a saved detector's files or the shipped encoder in, a `LoadedModel` out; safetensors,
ONNX (`onnx`), the encoder shipped in the package (`pretrained`)."""

from __future__ import annotations

from ssad.modelio.loading import (
           ClipInput,
           LoadedModel,
           ModelOutputs,
           build_module,
           load,
           load_model_files,
           save_model_files,
)
from ssad.modelio.pretrained import load_pretrained
from ssad.models.checkpoint import read_checkpoint, resolve_checkpoint

__all__ = ["ClipInput", "LoadedModel", "ModelOutputs", "build_module", "load", "load_model_files", "load_pretrained", "save_model_files",
           "read_checkpoint", "resolve_checkpoint"]
