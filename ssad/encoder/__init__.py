"""The encoder: the one place a recording becomes model outputs (log-mels, windows, pooling, every output and the
band statistics), whether the network comes from a trained run, a saved detector or the package (`pretrained`);
ONNX export and its runtime (`onnx`)."""

from __future__ import annotations

from ssad.encoder.encoder import SPECTRUM, ClipInput, Encoder, ModelOutputs
from ssad.encoder.file_outputs import clip_outputs, typical_seconds
from ssad.encoder.loading import build_module, load, load_model_files, save_model_files
from ssad.encoder.pretrained import load_pretrained

__all__ = ["SPECTRUM", "ClipInput", "Encoder", "ModelOutputs", "build_module", "clip_outputs", "load", "load_model_files",
           "load_pretrained", "save_model_files", "typical_seconds"]
