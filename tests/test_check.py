"""Tests of ssad.audio.corpus_check: the summary of a good root, every bad file reported at once, and the real DCASE clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssad.audio.corpus_check import CheckReport, check_root
from ssad.core.errors import BadInputError

REAL_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "real-samples" / "dcase2020"


def write_wav(path: Path, seconds: float = 0.1, sample_rate: int = 16000, subtype: str = "PCM_16") -> Path:
    """A short noise clip at path (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sf.write(
        path,
        (0.1 * rng.standard_normal(int(seconds * sample_rate))).astype(np.float32),
        sample_rate,
        subtype=subtype,
    )
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A 2020-style fan and a 2023-style bearing, side by side."""
    root = tmp_path / "data"
    write_wav(root / "dev" / "fan" / "train" / "normal_id_00_00000000.wav", 0.2)
    write_wav(root / "dev" / "fan" / "train" / "normal_id_00_00000001.wav", 0.4)
    write_wav(root / "dev" / "fan" / "test" / "anomaly_id_00_00000000.wav", 0.3)
    bearing = root / "dev" / "bearing"
    write_wav(bearing / "train" / "section_00_source_train_normal_0000_vel_6.wav", 0.1, 22050)
    write_wav(bearing / "train" / "section_00_target_train_normal_0000_vel_8.wav", 0.1)
    write_wav(bearing / "test" / "section_00_target_test_anomaly_0000_vel_8.wav", 0.1)
    write_wav(root / "eval" / "bearing" / "test" / "section_00_0000.wav", 0.1)
    return root


def test_report_of_good_root(corpus: Path) -> None:
    report = check_root(corpus, progress=False)
    assert isinstance(report, CheckReport)
    assert len(report.clips) == len(report.infos) == 7 and report.bad == []
    text = report.format()
    assert f"root: {corpus}" in text
    assert "fan: 3 clips, 1 IDs (id_00)" in text
    assert "bearing: 4 clips, 1 sections (section_00)" in text
    assert "domain" in text and "target" in text
    assert "sample rate: 16000 Hz (3 clips), 22050 Hz (1 clips)" in text
    assert "duration: min 0.20 s, mean 0.30 s, max 0.40 s" in text
    assert "bad file" in text.splitlines()[1]
    totals = text[text.index("totals:") :]
    assert "train" in totals and "all" in totals


def test_every_bad_file_is_reported(corpus: Path) -> None:
    good = corpus / "dev" / "fan" / "train" / "normal_id_00_00000000.wav"
    cut = corpus / "dev" / "fan" / "test" / "normal_id_00_00000005.wav"
    cut.write_bytes(good.read_bytes()[:3000])
    nan = np.zeros(100, np.float32)
    nan[3] = np.nan
    sf.write(corpus / "dev" / "fan" / "test" / "normal_id_00_00000006.wav", nan, 16000, subtype="FLOAT")
    (corpus / "dev" / "fan" / "test" / "normal_id_00_00000007.wav").write_bytes(b"")
    (corpus / "dev" / "fan" / "test" / "normal_id_00_00000008.wav").write_bytes(b"not audio at all")
    write_wav(corpus / "dev" / "fan" / "test" / "mystery.wav")

    with pytest.raises(BadInputError) as info:
        check_root(corpus, progress=False)
    message = str(info.value)
    expected = {
        "normal_id_00_00000005.wav": "truncated",
        "normal_id_00_00000006.wav": "NaN",
        "normal_id_00_00000007.wav": "empty",
        "normal_id_00_00000008.wav": "not a readable audio file",
        "mystery.wav": "fits no known layout",
    }
    assert len(info.value.problems) == len(expected)
    for name, why in expected.items():
        assert any(Path(p).name == name and why in w for p, w in info.value.problems), name
        assert name in message

    report = check_root(corpus, skip_bad=True, progress=False)
    assert len(report.clips) == 7
    assert sorted(Path(p).name for p, _ in report.bad) == sorted(expected)
    text = report.format()
    assert "bad files (skipped): 5" in text
    for name in expected:
        assert name in text


def test_root_problems_raise(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="no such folder"):
        check_root(tmp_path / "absent", progress=False)
    with pytest.raises(BadInputError, match="no .wav files"):
        check_root(tmp_path, progress=False)


@pytest.mark.skipif(not REAL_SAMPLES.is_dir(), reason="real DCASE 2020 samples not available")
def test_real_dcase2020_samples() -> None:
    report = check_root(REAL_SAMPLES, progress=False)
    assert len(report.clips) == 24 and report.bad == []
    text = report.format()
    for machine_type in ("fan", "pump", "slider", "valve", "ToyCar", "ToyConveyor"):
        assert f"\n{machine_type}: 4 clips" in text
    toycar = text[text.index("\nToyCar:") :].split("\n\n")[0]
    assert "duration: min 11.00 s, mean 11.00 s, max 11.00 s" in toycar
    assert "sample rate: 16000 Hz" in toycar
