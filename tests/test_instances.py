"""Synthesized machine instances: spectral warping moves tones where it should; classes are planned as configured."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ssad.features import LogMel
from ssad.synthesis.instances import mix_waveforms, plan_synthetic_classes, warp_frequency

RATE = 16000


def _peak_hz(spectrogram: torch.Tensor, n_fft: int) -> float:
    return float(spectrogram.mean(-1).argmax(-1)) * RATE / n_fft


@pytest.mark.parametrize("factor", [0.8, 0.9, 1.1, 1.25])
def test_warp_moves_a_pure_tone_to_factor_times_its_frequency(factor: float) -> None:
    tone_hz = 1000.0
    t = torch.arange(RATE) / RATE
    wave = torch.sin(2 * math.pi * tone_hz * t).unsqueeze(0)
    features = LogMel(n_fft=2048, hop_length=512)
    spectrogram = features.spectrogram(wave)
    warped = warp_frequency(spectrogram, torch.tensor([factor]))
    bin_hz = RATE / 2048
    assert _peak_hz(spectrogram, 2048) == pytest.approx(tone_hz, abs=bin_hz)
    assert _peak_hz(warped, 2048) == pytest.approx(tone_hz * factor, abs=1.5 * bin_hz)


def test_warp_factor_one_is_identity_and_factors_apply_per_example() -> None:
    spectrogram = torch.rand(3, 65, 7)
    out = warp_frequency(spectrogram, torch.tensor([1.0, 1.2, 0.8]))
    assert torch.allclose(out[0], spectrogram[0])
    assert not torch.allclose(out[1], spectrogram[1])
    assert torch.allclose(out[1], warp_frequency(spectrogram[1:2], torch.tensor([1.2]))[0])


def test_plan_counts_factors_and_pairs() -> None:
    names = [f"{t}/id_0{i}" for t in ("fan", "pump") for i in range(4)]
    planned = plan_synthetic_classes(names, n_warped=10, n_mixed=5, min_warp=0.05, seed=3)
    warped = [c for c in planned if c.kind == "warp"]
    mixed = [c for c in planned if c.kind == "mix"]
    assert len(warped) == 10 and len(mixed) == 5
    assert all(abs(c.warp_factor - 1) >= 0.05 and 0.8 <= c.warp_factor <= 1.25 for c in warped)
    assert len({c.sources for c in mixed}) == 5
    assert all(names[a].split("/")[0] == names[b].split("/")[0] for a, b in (c.sources for c in mixed))
    assert planned == plan_synthetic_classes(names, n_warped=10, n_mixed=5, min_warp=0.05, seed=3)
    assert len({c.name for c in planned}) == len(planned)


def test_plan_rejects_impossible_requests() -> None:
    with pytest.raises(ValueError, match="pairs"):
        plan_synthetic_classes(["fan/id_00", "fan/id_02"], n_warped=0, n_mixed=2)
    with pytest.raises(ValueError, match="min_warp"):
        plan_synthetic_classes(["fan/id_00"], n_warped=1, n_mixed=0, warp_range=(0.99, 1.01), min_warp=0.05)


def test_mix_ratio() -> None:
    a, b = np.ones(4, np.float32), np.zeros(4, np.float32)
    assert np.allclose(mix_waveforms(a, b, 0.3), 0.3)
