"""Recordings -> the per-clip outputs a detector is fitted on and keeps: the network's, the spectral floor's features
and each clip's band statistics (for explanations); and how long the clips typically are."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ssad.encoder.encoder import Encoder
from ssad.features.bands import band_statistics, output_name

__all__ = ["clip_outputs", "typical_seconds"]


def typical_seconds(paths: Sequence[str | Path]) -> float | None:
    """Median length in seconds of these audio files, from their headers (None when there are none)."""
    from ssad.audio.reading import audio_info

    return float(np.median([audio_info(p).duration for p in paths])) if paths else None


def clip_outputs(model: Encoder, paths: Sequence[str | Path], *, cache_dir: str | Path | None = None,
                 chunk: int = 256, progress: bool = False) -> dict[str, np.ndarray]:
    """Clip-level model outputs for many files, the floor's features (`SPECTRUM`) among them.

    The outputs also hold each clip's band group statistics (`ssad.features.bands`), which a detector
    keeps per machine so that explanations can compare a clip's spectrum with the machine's normal clips.
    Works through the files in chunks so that memory stays flat; log-mels go through the on-disk cache
    when `cache_dir` is given. Logs which files are resampled or averaged to mono on the way.
    """
    from tqdm import tqdm

    from ssad.audio.reading import audio_info, log_conversions, read_clip
    from ssad.features import FeatureCache, compute_log_mels

    log_conversions([audio_info(p) for p in paths], model.sample_rate)

    read = partial(read_clip, sample_rate=model.sample_rate)
    cache = FeatureCache(cache_dir, model.log_mel.params, {"sample_rate": model.sample_rate}) if cache_dir else None
    parts: dict[str, list[np.ndarray]] = {}
    with tqdm(total=len(paths), desc="scoring clips", unit="clip", disable=not progress) as bar:
        for start in range(0, len(paths), chunk):
            batch = list(paths[start : start + chunk])
            log_mels = compute_log_mels(batch, model.log_mel, read=read, cache=cache, progress=False)
            tensors = [torch.from_numpy(m) for m in log_mels]
            for name, value in model.outputs_from_log_mels(tensors).items():
                parts.setdefault(name, []).append(value)
            statistics = [band_statistics(m) for m in log_mels]
            for measure in statistics[0] if statistics else ():
                parts.setdefault(output_name(measure), []).append(
                    np.stack([s[measure] for s in statistics]).astype(np.float32))
            bar.update(len(batch))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}
