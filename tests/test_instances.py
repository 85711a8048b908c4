"""Synthesized machine instances: spectral warping moves tones where it should; classes are planned as configured."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ssad.data.augmentation import (
    describe_synthetic_classes,
    mix_waveforms,
    plan_synthetic_classes,
    warp_frequency,
)
from ssad.features import LogMel

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


def test_plan_makes_as_many_as_the_root_allows() -> None:
    one = plan_synthetic_classes(["deskfan/id_00"], n_warped=16, n_mixed=8, seed=0)
    factors = sorted(c.warp_factor for c in one)
    assert 4 <= len(one) < 16 and all(c.kind == "warp" for c in one)
    assert all(b / a - 1 >= 0.04 for a, b in zip(factors, factors[1:], strict=False))
    assert len({c.name for c in one}) == len(one)
    assert one == plan_synthetic_classes(["deskfan/id_00"], n_warped=16, n_mixed=8, seed=0)
    assert "0 mixed (of 8 asked" in describe_synthetic_classes(["deskfan/id_00"], one, 16, 8)

    two_types = ["fan/id_00", "pump/id_00"]
    planned = plan_synthetic_classes(two_types, n_warped=0, n_mixed=8)
    assert [c.sources for c in planned] == [(0, 1)]
    assert "cross machine types" in describe_synthetic_classes(two_types, planned, 0, 8)

    names = ["fan/id_00", "fan/id_02", "fan/id_04", "pump/id_00"]
    planned = plan_synthetic_classes(names, n_warped=0, n_mixed=4)
    assert sum(names[a][:3] != names[b][:3] for a, b in (c.sources for c in planned)) == 1
    assert len(plan_synthetic_classes(names[:3], n_warped=0, n_mixed=12)) == 3
    assert len(plan_synthetic_classes(names, n_warped=0, n_mixed=4, mix_within_type=False)) == 4


def test_plan_rejects_impossible_requests() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        plan_synthetic_classes(["fan/id_00", "fan/id_02"], n_warped=-1, n_mixed=2)
    with pytest.raises(ValueError, match="min_warp"):
        plan_synthetic_classes(["fan/id_00"], n_warped=1, n_mixed=0, warp_range=(0.99, 1.01), min_warp=0.05)


def test_mix_ratio() -> None:
    a, b = np.ones(4, np.float32), np.zeros(4, np.float32)
    assert np.allclose(mix_waveforms(a, b, 0.3), 0.3)


def test_temporal_classes_are_unique_reproducible_and_up_to_the_count() -> None:
    from ssad.data.augmentation import plan_temporal_classes

    names = ["fan/id_00", "fan/id_02", "pump/id_00"]
    first = plan_temporal_classes(names, 8, seed=3)
    assert first == plan_temporal_classes(names, 8, seed=3)
    assert len(first) == 8 and len({c.name for c in first}) == 8
    assert sum(c.kind == "reverse" for c in first) == 3  # one per source
    assert all(c.modulation_hz > 0 for c in first if c.kind == "am")
    assert plan_temporal_classes(["fan/id_00"], 3, seed=0)  # one ID still gets some
    assert plan_temporal_classes(names, 0) == []
    with pytest.raises(ValueError, match="n_temporal"):
        plan_temporal_classes(names, -1)


def test_retiming_keeps_the_spectrum_level_and_changes_the_envelope() -> None:
    from ssad.data.augmentation import retime_waveform

    rng = np.random.default_rng(0)
    t = np.arange(RATE) / RATE
    wave = (np.exp(-20 * (t % 0.25)) * rng.standard_normal(RATE)).astype(np.float32)  # decaying events
    backwards = retime_waveform(wave, "reverse", 0.0, RATE, rng)
    np.testing.assert_array_equal(backwards, wave[::-1])
    noise = rng.standard_normal(4 * RATE).astype(np.float32)
    modulated = retime_waveform(noise, "am", 4.0, RATE, rng)
    assert modulated.dtype == np.float32 and modulated.shape == noise.shape
    assert np.std(modulated) == pytest.approx(np.std(noise), rel=0.05)  # same level, hence the same mean spectrum
    envelope = np.abs(modulated).reshape(-1, RATE // 16).mean(1)
    assert envelope.std() > 3 * np.abs(noise).reshape(-1, RATE // 16).mean(1).std()
    with pytest.raises(ValueError, match="unknown temporal kind"):
        retime_waveform(wave, "shuffle", 0.0, RATE, rng)


def test_equalized_classes_are_reproducible_and_bump_one_band() -> None:
    """Each "eq" class has its own fixed bump: unity far from its centre, its gain (dB) at the centre."""
    from ssad.data.augmentation import EQ_GAIN_DB, equalizer_gains, plan_equalized_classes

    names = ["fan/id_00", "fan/id_02", "pump/id_00"]
    first = plan_equalized_classes(names, 7, seed=3)
    assert first == plan_equalized_classes(names, 7, seed=3)
    assert len(first) == 7 and len({c.name for c in first}) == 7 and all(c.kind == "eq" for c in first)
    assert {c.sources[0] for c in first} == {0, 1, 2}
    gains = equalizer_gains(first, 513, 16000)
    assert gains.shape == (7, 513)
    for row, synthetic in zip(gains, first, strict=True):
        _, _, gain_db = synthetic.eq
        assert EQ_GAIN_DB[0] <= abs(gain_db) <= EQ_GAIN_DB[1]
        peak_db = 10 * torch.log10(row[(row.log() * gain_db).argmax()])  # the bump's extreme
        assert abs(float(peak_db) - gain_db) < 0.5
        assert torch.isclose(torch.minimum(row[0], row[-1]) if gain_db > 0 else torch.maximum(row[0], row[-1]),
                             torch.tensor(1.0), atol=0.35)
    assert plan_equalized_classes(names, 0) == []
    with pytest.raises(ValueError, match="n_equalized"):
        plan_equalized_classes(names, -1)


def test_equalized_count_is_absolute_or_per_real_id_rounded_half_up() -> None:
    from ssad.data.augmentation import equalized_count

    assert equalized_count(7, 0.0, 16) == 7
    assert [equalized_count(0, 2.5, n) for n in (16, 3, 2, 1)] == [40, 8, 5, 3]
    assert equalized_count(0, 0.0, 5) == 0
    with pytest.raises(ValueError, match="not both"):
        equalized_count(4, 2.5, 3)
    with pytest.raises(ValueError, match=">= 0"):
        equalized_count(0, -1.0, 3)
