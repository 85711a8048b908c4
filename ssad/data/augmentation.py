"""Synthesized machine instances: new classes for the ID classifier made by warping, mixing or re-timing real IDs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ssad.audio.clips import machine_of_class, machine_type_of

__all__ = ["SyntheticClass", "describe_synthetic_classes", "plan_synthetic_classes", "plan_temporal_classes",
           "plan_equalized_classes", "equalized_count", "equalizer_gains", "retime_waveform", "warp_frequency",
           "mix_waveforms", "TEMPORAL_KINDS"]

#: Temporal synthesized instances: the ID played backwards, or amplitude-modulated at a fixed rate.
TEMPORAL_KINDS = ("reverse", "am")
#: Range (Hz) the fixed modulation rate of an "am" class is drawn from (log-uniform), and its depth.
AM_RATE_RANGE = (0.5, 16.0)
AM_DEPTH = 0.6
#: An "eq" class boosts or cuts one band of a real ID by a fixed gain: its size (dB, either sign) and its
#: width (standard deviation of the bump, as a share of the mel-scale axis) are drawn from these ranges.
EQ_GAIN_DB = (2.0, 8.0)
EQ_WIDTH = (0.02, 0.12)


@dataclass(frozen=True)
class SyntheticClass:
    """A machine instance that does not exist: `sources` warped by `warp_factor`, two sources mixed, or re-timed."""

    name: str
    kind: str  # "warp", "mix", or one of TEMPORAL_KINDS
    sources: tuple[int, ...]  # indices of the real classes it is made from
    warp_factor: float = 1.0
    modulation_hz: float = 0.0  # rate of an "am" class
    eq: tuple[float, float, float] = (0.0, 0.0, 0.0)  # an "eq" class's (centre, width) on the mel axis, gain dB


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
    """Draw up to `n_warped` warped and `n_mixed` mixed classes for real (type/id) classes, reproducibly for a seed.

    Warped classes cycle through the real classes in a shuffled order; each gets its own factor drawn
    log-uniformly from `warp_range`, redrawn while it is within `min_warp` of its source (|factor - 1|) or
    of another warp of the same source (|f / g - 1|): classes that close could not be told apart. A source
    whose range is full gets no more warps, so a root with few IDs gets fewer than `n_warped`. Mixed classes
    are distinct unordered pairs of real classes, within one machine type when `mix_within_type`, topped up
    with pairs across types when a type has too few; at most all pairs. Names are unique and the same seed
    gives the same classes.
    """
    lo, hi = warp_range
    if n_warped < 0 or n_mixed < 0:
        msg = f"n_warped and n_mixed must be >= 0, got {n_warped}, {n_mixed}"
        raise ValueError(msg)
    if n_warped and not (0 < lo < hi and (hi - 1 >= min_warp or 1 - lo >= min_warp)):
        msg = f"warp_range {warp_range} leaves no factor with |factor - 1| >= min_warp={min_warp}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    classes = _plan_warps(real_names, n_warped, rng, warp_range, min_warp) if real_names else []
    pairs = [(a, b) for a in range(len(real_names)) for b in range(a + 1, len(real_names))
             if machine_of_class(real_names[a]) != machine_of_class(real_names[b])]  # two conditions of one machine are no pair
    same_type = [(a, b) for a, b in pairs if machine_type_of(real_names[a]) == machine_type_of(real_names[b])]
    first = same_type if mix_within_type else pairs
    chosen = [first[int(k)] for k in rng.permutation(len(first))[:n_mixed]]
    if len(chosen) < n_mixed and mix_within_type:
        across = [pair for pair in pairs if pair not in set(same_type)]
        chosen += [across[int(k)] for k in rng.permutation(len(across))[: n_mixed - len(chosen)]]
    classes += [SyntheticClass(f"{real_names[a]}+{real_names[b]}", "mix", (a, b)) for a, b in chosen]
    return classes


def plan_temporal_classes(real_names: Sequence[str], n_temporal: int, *, seed: int = 0) -> list[SyntheticClass]:
    """Up to `n_temporal` classes that change a real ID's time structure and keep its long-term spectrum.

    Warping and mixing teach the network what a machine's spectrum looks like; these teach it what its
    envelope over time looks like (its rhythm, the shape of its events): the ID played backwards, and the
    ID amplitude-modulated at a fixed rate of its own. Sources cycle in a shuffled order, kinds alternate;
    at most one "reverse" per source, "am" rates at least 20 % apart within a source.
    """
    if n_temporal < 0:
        msg = f"n_temporal must be >= 0, got {n_temporal}"
        raise ValueError(msg)
    rng = np.random.default_rng((seed, 7))
    order = [int(i) for i in rng.permutation(len(real_names))]
    classes: list[SyntheticClass] = []
    rates: dict[int, list[float]] = {}
    reversed_sources: set[int] = set()
    log_lo, log_hi = math.log(AM_RATE_RANGE[0]), math.log(AM_RATE_RANGE[1])
    for i in range(4 * n_temporal * max(1, len(order)) if order else 0):
        if len(classes) >= n_temporal:
            break
        source = order[i % len(order)]
        if (i // len(order)) % 2 == 0 and source not in reversed_sources:
            reversed_sources.add(source)
            classes.append(SyntheticClass(f"{real_names[source]}@reverse", "reverse", (source,)))
            continue
        rate = float(math.exp(rng.uniform(log_lo, log_hi)))
        taken = rates.setdefault(source, [])
        if all(abs(rate / r - 1.0) >= 0.2 and abs(r / rate - 1.0) >= 0.2 for r in taken):
            taken.append(rate)
            classes.append(SyntheticClass(f"{real_names[source]}@am{rate:.2f}Hz", "am", (source,), modulation_hz=rate))
    return classes


def equalized_count(n_equalized: int, per_id: float, n_real: int) -> int:
    """How many "eq" classes to plan: `n_equalized`, or `per_id` per real ID rounded half up (one of them, not both)."""
    if per_id < 0 or n_equalized < 0:
        msg = f"n_equalized and equalized_per_id must be >= 0, got {n_equalized} and {per_id}"
        raise ValueError(msg)
    if per_id and n_equalized:
        msg = f"give n_equalized ({n_equalized}) or equalized_per_id ({per_id}), not both"
        raise ValueError(msg)
    return int(math.floor(per_id * n_real + 0.5)) if per_id else n_equalized


def plan_equalized_classes(real_names: Sequence[str], n_equalized: int, *, seed: int = 0) -> list[SyntheticClass]:
    """Up to `n_equalized` classes that boost or cut one band of a real ID by a fixed gain of their own.

    Warps move a spectrum and mixes blend two; neither asks the network to notice a few dB more or less
    in one band, which is what many faults change (a leak's hiss, a worn part's resonance). An "eq" class
    is its source with a fixed Gaussian bump on the mel axis. Sources cycle in a shuffled order.
    """
    if n_equalized < 0:
        msg = f"n_equalized must be >= 0, got {n_equalized}"
        raise ValueError(msg)
    rng = np.random.default_rng((seed, 11))
    order = [int(i) for i in rng.permutation(len(real_names))]
    classes = []
    for i in range(n_equalized if order else 0):
        source = order[i % len(order)]
        centre = float(rng.uniform(0.05, 0.95))
        width = float(rng.uniform(*EQ_WIDTH))
        gain = float(rng.choice([-1.0, 1.0]) * rng.uniform(*EQ_GAIN_DB))
        name = f"{real_names[source]}@eq{centre:.3f}w{width:.3f}{gain:+.1f}dB"
        classes.append(SyntheticClass(name, "eq", (source,), eq=(centre, width, gain)))
    return classes


def equalizer_gains(classes: Sequence[SyntheticClass], n_freq: int, sample_rate: int) -> Tensor:
    """(len(classes), n_freq) power gains of the classes' bumps on the bins of a linear-frequency spectrogram."""
    hz = torch.linspace(0.0, sample_rate / 2, n_freq, dtype=torch.float64)
    mel = 2595.0 * torch.log10(1.0 + hz / 700.0)
    position = mel / mel[-1]
    rows = []
    for synthetic in classes:
        centre, width, gain_db = synthetic.eq
        bump_db = gain_db * torch.exp(-0.5 * ((position - centre) / max(width, 1e-6)) ** 2)
        rows.append(10.0 ** (bump_db / 10.0))
    return torch.stack(rows).float() if rows else torch.ones(0, n_freq)


def retime_waveform(wave: np.ndarray, kind: str, modulation_hz: float, sample_rate: int,
                    rng: np.random.Generator) -> np.ndarray:
    """A crop of a temporal class: reversed, or multiplied by 1 + depth sin(2 pi f t + random phase), same RMS."""
    if kind == "reverse":
        return np.ascontiguousarray(wave[::-1])
    if kind == "am":
        t = np.arange(len(wave), dtype=np.float64) / sample_rate
        envelope = 1.0 + AM_DEPTH * np.sin(2 * math.pi * modulation_hz * t + rng.uniform(0, 2 * math.pi))
        return (wave * envelope / math.sqrt(1.0 + AM_DEPTH**2 / 2)).astype(np.float32)
    msg = f"unknown temporal kind {kind!r}; known: {TEMPORAL_KINDS}"
    raise ValueError(msg)


# A source's warps are drawn at most this many times each before its range counts as full.
_WARP_DRAWS = 200


def _plan_warps(real_names: Sequence[str], n_warped: int, rng: np.random.Generator,
                warp_range: tuple[float, float], min_warp: float) -> list[SyntheticClass]:
    """Warped classes, cycling through the sources in a shuffled order until `n_warped` or every source is full."""
    log_lo, log_hi = math.log(warp_range[0]), math.log(warp_range[1])
    order = [int(i) for i in rng.permutation(len(real_names))]
    factors: dict[int, list[float]] = {}
    names: set[str] = set()
    classes: list[SyntheticClass] = []
    full: set[int] = set()
    i = 0
    while len(classes) < n_warped and len(full) < len(order):
        source = order[i % len(order)]
        i += 1
        if source in full:
            continue
        taken = factors.setdefault(source, [])
        for _ in range(_WARP_DRAWS):
            factor = float(math.exp(rng.uniform(log_lo, log_hi)))
            name = f"{real_names[source]}@warp{factor:.3f}"
            if abs(factor - 1.0) >= min_warp and name not in names and all(
                abs(factor / other - 1.0) >= min_warp and abs(other / factor - 1.0) >= min_warp for other in taken
            ):
                taken.append(factor)
                names.add(name)
                classes.append(SyntheticClass(name, "warp", (source,), factor))
                break
        else:
            full.add(source)
    return classes


def describe_synthetic_classes(real_names: Sequence[str], classes: Sequence[SyntheticClass],
                               n_warped: int, n_mixed: int) -> str:
    """One line on what was synthesized against what was asked, and why fewer when fewer."""
    warped = sum(c.kind == "warp" for c in classes)
    mixed = [c for c in classes if c.kind == "mix"]
    across = sum(machine_type_of(real_names[c.sources[0]]) != machine_type_of(real_names[c.sources[1]]) for c in mixed)
    n_real = len(real_names)
    line = f"synthesized classes from {n_real} real class{'es' if n_real != 1 else ''}: {warped} warped"
    if warped < n_warped:
        line += f" (of {n_warped} asked: every real class's warp range is full)"
    line += f", {len(mixed)} mixed"
    if len(mixed) < n_mixed:
        n_pairs = n_real * (n_real - 1) // 2
        line += f" (of {n_mixed} asked: only {n_pairs} pair{'s' if n_pairs != 1 else ''} of real classes)"
    if across:
        line += f"; {across} mixed pair{'s' if across != 1 else ''} cross machine types (too few pairs within a type)"
    temporal = sum(c.kind in TEMPORAL_KINDS for c in classes)
    if temporal:
        line += f"; {temporal} re-timed (reversed or amplitude-modulated)"
    equalized = sum(c.kind == "eq" for c in classes)
    if equalized:
        line += f"; {equalized} equalized (one band boosted or cut)"
    return line


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
