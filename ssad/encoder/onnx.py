"""ONNX export of a detector's network, and an onnxruntime backend that scores with it.

Two graphs go into ``<detector>/onnx/``: the log-mel front end (waveform batch -> log-mel batch; its STFT
exports with torch's dynamo-based exporter, which the older TorchScript exporter cannot do for complex
spectra) and the network (log-mel windows -> per-window outputs). Cutting a clip into windows and
pooling the window outputs stay in torch, as they are two lines of tensor indexing.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ssad.core.atomic import atomic_path, write_text_atomic
from ssad.core.errors import SsadError
from ssad.encoder.encoder import Encoder
from ssad.encoder.loading import load_model_files

__all__ = ["ONNX_DIR", "OnnxModel", "export_onnx"]

log = logging.getLogger("ssad")

ONNX_DIR = "onnx"
FRONT_END_FILE = "log_mel.onnx"
NETWORK_FILE = "network.onnx"
EXPORT_FILE = "export.json"


class _FrontEnd(nn.Module):
    def __init__(self, model: Encoder) -> None:
        super().__init__()
        self.log_mel = model.log_mel

    def forward(self, waveform: Tensor) -> Tensor:
        # the batched path: LogMel.forward loops over a CPU batch clip by clip, which would fix the batch size
        return self.log_mel.log_mel_from_spectrogram(self.log_mel.spectrogram(waveform))


class _Network(nn.Module):
    def __init__(self, model: Encoder) -> None:
        super().__init__()
        self.module = model.module
        self.names = list(model.module.output_names)

    def forward(self, windows: Tensor) -> tuple[Tensor, ...]:
        outputs = self.module.window_outputs(windows)
        return tuple(outputs[name] for name in self.names)


def _export(module: nn.Module, example: Tensor, path: Path, input_name: str, output_names: list[str],
            dynamic: dict[int, Any]) -> None:
    """Export with the dynamo exporter into a temporary file, then move it into place."""
    import onnx  # noqa: F401  (the exporter needs it; fail here with a clear ImportError)

    torch_onnx_log = logging.getLogger("torch.onnx")
    level = torch_onnx_log.level
    torch_onnx_log.setLevel(logging.ERROR)  # it warns that torchvision's detection ops are missing; none are used
    try:
        with warnings.catch_warnings(), atomic_path(path) as tmp:
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module.eval(), (example,), dynamo=True, input_names=[input_name],
                                        output_names=output_names, dynamic_shapes=({**dynamic},),
                                        external_data=False, verbose=False)
            program.save(tmp)
    finally:
        torch_onnx_log.setLevel(level)


def export_onnx(directory: str | Path) -> Path:
    """Write the detector's front end and network as ONNX into `<directory>/onnx/`; returns that folder."""
    directory = Path(directory)
    model = load_model_files(directory)
    out = directory / ONNX_DIR
    out.mkdir(exist_ok=True)
    names = list(model.module.output_names)
    samples = model.log_mel.num_samples(model.window_frames) * 2
    log.info("exporting the log-mel front end")
    _export(_FrontEnd(model), torch.zeros(2, samples).normal_(), out / FRONT_END_FILE, "waveform", ["log_mel"],
            {0: torch.export.Dim("batch"), 1: torch.export.Dim("samples", min=model.log_mel.n_fft, max=1 << 28)})
    log.info("exporting the network")
    windows = torch.zeros(2, model.log_mel.n_mels, model.window_frames).normal_()
    _export(_Network(model), windows, out / NETWORK_FILE, "log_mel_windows", names,
            {0: torch.export.Dim("batch", max=1 << 20)})
    _check(model, out)
    info = {"front_end": FRONT_END_FILE, "network": NETWORK_FILE, "outputs": names, "torch": torch.__version__,
            "window_frames": model.window_frames, "window_hop": model.window_hop,
            "window_to_end": model.window_to_end}
    write_text_atomic(out / EXPORT_FILE, json.dumps(info, indent=2) + "\n")
    return out


def _check(model: Encoder, folder: Path) -> None:
    """Run both graphs on inputs of other sizes than the export's examples and compare with torch.

    An exporter that fixed a size it should have kept free (or a graph that computes something else) is
    caught here, at export time, rather than when a monitor first meets a clip of another length.
    """
    onnx_model = OnnxModel(model, folder)
    generator = torch.Generator().manual_seed(0)
    wave = torch.randn(model.log_mel.num_samples(model.window_frames) * 3 + 77, generator=generator)
    windows = torch.randn(3, model.log_mel.n_mels, model.window_frames, generator=generator)
    with torch.no_grad():
        pairs = [("log_mel", model.log_mel_batch(wave[None])[0], onnx_model.log_mel_batch(wave[None])[0])]
        expected, got = model.window_outputs(windows), onnx_model.window_outputs(windows)
    pairs += [(name, expected[name], got[name]) for name in expected]
    for name, a, b in pairs:
        if a.shape != b.shape or not torch.allclose(b, a, rtol=1e-3, atol=1e-4 * float(a.abs().max()) + 1e-12):
            raise SsadError(f"{folder}: the exported {name} differs from torch (shape {tuple(b.shape)} vs "
                            f"{tuple(a.shape)}); the export is not usable")


class OnnxModel(Encoder):
    """A `Encoder` whose log-mels and window outputs come from the exported graphs, run by onnxruntime.

    Windowing and pooling are the torch model's own, so scores match the torch backend's.
    """

    def __init__(self, model: Encoder, folder: str | Path) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        if not (folder / NETWORK_FILE).is_file() or not (folder / FRONT_END_FILE).is_file():
            raise SsadError(f"{folder.parent}: no ONNX export; run `ssad export --detector {folder.parent} --format onnx`")
        super().__init__(model.module, model.metadata, "cpu")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        self._front_end = ort.InferenceSession(str(folder / FRONT_END_FILE), options, providers=providers)
        self._network = ort.InferenceSession(str(folder / NETWORK_FILE), options, providers=providers)
        self._names = [o.name for o in self._network.get_outputs()]

    def log_mel_batch(self, waveforms: Tensor) -> Tensor:
        """Log-mels of same-length waveforms by the exported front end, one waveform per run."""
        waves = np.ascontiguousarray(waveforms.detach().cpu().numpy(), dtype=np.float32)
        return torch.stack([torch.from_numpy(self._front_end.run(None, {"waveform": w[None]})[0][0]) for w in waves])

    def window_outputs(self, windows: Tensor) -> dict[str, Tensor]:
        """Window outputs by the exported network."""
        batch = np.ascontiguousarray(windows.detach().cpu().numpy(), dtype=np.float32)
        values = self._network.run(None, {"log_mel_windows": batch})
        return {name: torch.from_numpy(v) for name, v in zip(self._names, values, strict=True)}
