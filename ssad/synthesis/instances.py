"""Synthesized machine instances: new classes for the ID classifier made by warping or mixing real IDs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["SyntheticClass", "plan_synthetic_classes", "warp_frequency", "mix_waveforms"]


@dataclass(frozen=True)
class SyntheticClass:
    """A machine instance that does not exist: `sources` warped by `warp_factor`, or two sources mixed."""

    name: str
    kind: str  # "warp" or "mix"
    sources: tuple[int, ...]  # indices of the real classes it is made from
    warp_factor: float = 1.0


def plan_synthetic_classes(
    real_names: Sequence[str],
    n_warped: int,
    n_mixed: int,
    *,
    warp_range: tuple[float, float] = (0.8, 1.25),
    min_warp: float = 0.04,
    mix_within_type: bool = True,
    seed: int = 0,
) -> list[SyntheticClass]:
    """Draw the synthesized classes for a set of real (type/id) classes, reproducibly for a seed.

    Warped classes cycle through the real classes in a shuffled order; each gets its own factor drawn
    log-uniformly from `warp_range`, redrawn while |factor - 1| < `min_warp` (a class that close to its
    source could not be told apart). Mixed classes are distinct unordered pairs of real classes, drawn
    within one machine type when `mix_within_type` and such pairs exist.
    """
    lo, hi = warp_range
    if n_warped < 0 or n_mixed < 0:
        msg = f"n_warped and n_mixed must be >= 0, got {n_warped}, {n_mixed}"
        raise ValueError(msg)
    if n_warped and not (0 < lo < hi and (hi - 1 >= min_warp or 1 - lo >= min_warp)):
        msg = f"warp_range {warp_range} leaves no factor with |factor - 1| >= min_warp={min_warp}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    classes: list[SyntheticClass] = []
    order = rng.permutation(len(real_names))
    for i in range(n_warped):
        source = int(order[i % len(order)])
        factor = 1.0
        while abs(factor - 1.0) < min_warp:
            factor = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        classes.append(SyntheticClass(f"{real_names[source]}@warp{factor:.3f}", "warp", (source,), factor))

    pairs = [(a, b) for a in range(len(real_names)) for b in range(a + 1, len(real_names))]
    if mix_within_type:
        same_type = [(a, b) for a, b in pairs if real_names[a].split("/")[0] == real_names[b].split("/")[0]]
        pairs = same_type or pairs
    if n_mixed > len(pairs):
        msg = f"n_mixed={n_mixed} but only {len(pairs)} distinct pairs of real classes can be mixed"
        raise ValueError(msg)
    for k in rng.permutation(len(pairs))[:n_mixed]:
        a, b = pairs[int(k)]
        classes.append(SyntheticClass(f"{real_names[a]}+{real_names[b]}", "mix", (a, b)))
    return classes


def warp_frequency(spectrogram: Tensor, factors: Tensor) -> Tensor:
    """Warp (batch, freq, frames) linear-frequency spectrograms along frequency: bin f moves to f * factor.

    Linear interpolation between bins; frequencies warped in from beyond Nyquist are zero. A factor of 1
    returns the input unchanged.
    """
    batch, n_freq, _ = spectrogram.shape
    factors = factors.to(device=spectrogram.device, dtype=spectrogram.dtype).reshape(batch, 1)
    bins = torch.arange(n_freq, device=spectrogram.device, dtype=spectrogram.dtype).reshape(1, n_freq)
    source = bins / factors  # (batch, freq): where each output bin reads from
    lower = source.floor().clamp(0, n_freq - 1)
    frac = (source - lower).unsqueeze(-1)
    lower_idx = lower.long()
    upper_idx = (lower_idx + 1).clamp(max=n_freq - 1)
    gather = lambda idx: torch.gather(spectrogram, 1, idx.unsqueeze(-1).expand(-1, -1, spectrogram.shape[-1]))  # noqa: E731
    warped = gather(lower_idx) * (1 - frac) + gather(upper_idx) * frac
    inside = (source <= n_freq - 1).unsqueeze(-1)
    return torch.where(inside, warped, torch.zeros((), dtype=warped.dtype, device=warped.device))


def mix_waveforms(first: np.ndarray, second: np.ndarray, ratio: float) -> np.ndarray:
    """`ratio` of the first waveform plus `1 - ratio` of the second (same length)."""
    return (ratio * first + (1.0 - ratio) * second).astype(np.float32, copy=False)
