"""Roots that are not DCASE-shaped: one machine, few IDs, thin IDs, many clips, odd audio formats."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssad.audio.header_check import check_class_names
from ssad.core.errors import BadInputError
from ssad.data.machine_ids import MachineIDDataModule

RATE = 16000


def _write_root(root: Path, clips: dict[str, int], *, seconds: float = 1.0, rate: int = RATE,
                channels: int = 1, subtype: str = "PCM_16", tests: int = 0) -> Path:
    """A DCASE 2020 root of noise with a tone per ID: `clips` maps "type/id_XX" to training clips."""
    rng = np.random.default_rng(0)
    for k, (name, n_train) in enumerate(sorted(clips.items())):
        machine_type, machine_id = name.split("/")
        t = np.arange(int(seconds * rate)) / rate
        files = [("train", "normal", i) for i in range(n_train)]
        files += [("test", label, i) for label in ("normal", "anomaly") for i in range(tests)]
        for split, label, i in files:
            tone = 0.3 * np.sin(2 * np.pi * (300 + 150 * k) * t)
            wave = tone + 0.05 * rng.standard_normal(len(t))
            if label == "anomaly":
                wave += 0.3 * np.sin(2 * np.pi * 2500 * t)
            data = np.stack([wave] * channels, 1) if channels > 1 else wave
            folder = root / machine_type / split
            folder.mkdir(parents=True, exist_ok=True)
            sf.write(folder / f"{label}_{machine_id}_{i:08d}.wav", data.astype(np.float32), rate, subtype=subtype)
    return root


@contextlib.contextmanager
def _ssad_log(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Capture the `ssad` logger even after the CLI has given it its own handler (and stopped propagation)."""
    logger = logging.getLogger("ssad")
    logger.addHandler(caplog.handler)
    try:
        yield
    finally:
        logger.removeHandler(caplog.handler)


def _datamodule(root: Path, **overrides) -> MachineIDDataModule:
    args = dict(root=str(root), n_warped=16, n_mixed=8, crop_frames=16, features={"n_mels": 32}, batch_size=8,
                augment=False, seed=0)
    args.update(overrides)
    datamodule = MachineIDDataModule(**args)
    datamodule.setup("fit")
    return datamodule


def test_one_machine_with_one_id_gets_warps_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _write_root(tmp_path, {"deskfan/id_00": 6})
    with caplog.at_level(logging.INFO, logger="ssad"), _ssad_log(caplog):
        datamodule = _datamodule(root)
    warped = [n for n in datamodule.class_names if "@warp" in n]
    assert datamodule.class_names[0] == "deskfan/id_00" and len(warped) >= 4
    assert len(set(datamodule.class_names)) == datamodule.num_classes
    assert not any("+" in n for n in datamodule.class_names)
    assert "0 mixed (of 8 asked" in caplog.text


def test_two_types_with_one_id_each_mix_across_types(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _write_root(tmp_path, {"fan/id_00": 4, "pump/id_00": 4})
    with caplog.at_level(logging.INFO, logger="ssad"), _ssad_log(caplog):
        datamodule = _datamodule(root, n_warped=2)
    assert sum("@warp" in n for n in datamodule.class_names) == 2
    assert datamodule.class_names[-1] == "fan/id_00+pump/id_00"
    assert "cross machine types" in caplog.text


def test_epoch_follows_classes_and_budget_not_folder_size(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _write_root(tmp_path, {"lathe/id_00": 50, "vmc/id_00": 50})
    with caplog.at_level(logging.INFO, logger="ssad"), _ssad_log(caplog):
        budget = _datamodule(root, n_warped=4, n_mixed=1, examples_per_class=8)
    assert budget.num_classes == 7 and len(budget._train) == 7 * 8
    assert "7 classes x 8 (examples_per_class=8" in caplog.text
    labels = [e.label for e in budget._train.examples]
    assert all(labels.count(c) == 8 for c in range(7))
    one_pass = _datamodule(root, n_warped=4, n_mixed=1, examples_per_class=None)
    assert len(one_pass._train) == 2 * 45 + 5 * 45
    small = _datamodule(_write_root(tmp_path / "small", {"fan/id_00": 6, "fan/id_02": 4}),
                        n_warped=0, n_mixed=0, examples_per_class=32, val_fraction=0.0)
    assert len(small._train) == 2 * 5  # at most one pass: the mean of a real class's clips
    with pytest.raises(ValueError, match="examples_per_class"):
        MachineIDDataModule(root=str(root), examples_per_class=0)


def test_fit_refuses_a_bad_root_before_training_naming_files_and_ids(tmp_path: Path, capsys) -> None:
    from ssad.cli import main

    root = _write_root(tmp_path / "root", {"fan/id_00": 4, "fan/id_02": 4})
    (root / "fan" / "train" / "normal_id_02_00000003.wav").write_bytes(b"RIFF junk")
    sf.write(root / "fan" / "train" / "normal_id_00_00000009.wav", np.zeros(100, np.float32), RATE)
    (root / "fan" / "test").mkdir()
    sf.write(root / "fan" / "test" / "anomaly_id_04_00000000.wav", np.zeros(RATE, np.float32), RATE)
    config = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    start = time.perf_counter()
    code = main(["fit", "--config", str(config), "--data.root", str(root),
                 "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.logger", "false"])
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2 and seconds < 30
    assert "normal_id_02_00000003.wav: not a readable audio file" in err
    assert "normal_id_00_00000009.wav: too short" in err
    assert "fan/id_04: has labelled test clips but no usable normal training clip" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_one_class_without_warps_and_reserved_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="nothing to tell apart"):
        _datamodule(_write_root(tmp_path / "one", {"deskfan/id_00": 3}), n_warped=0, n_mixed=0)
    with pytest.raises(BadInputError, match="fan\\+pump"):
        _datamodule(_write_root(tmp_path / "plus", {"fan+pump/id_00": 3, "fan/id_00": 3}))
    with pytest.raises(BadInputError, match="repeats"):
        check_class_names(["fan/id_00", "fan/id_00@warp1.108", "fan/id_00@warp1.108"])


def test_thin_id_trains_and_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _write_root(tmp_path, {"fan/id_00": 6, "fan/id_02": 1})
    with caplog.at_level(logging.INFO, logger="ssad"), _ssad_log(caplog):
        datamodule = _datamodule(root, n_warped=2, n_mixed=1)
    assert "fan/id_02" in datamodule.class_names
    assert "fan/id_02 has only 1 normal training clip" in caplog.text


@pytest.mark.slow
def test_fit_and_evaluate_a_thin_id_in_odd_formats_from_the_cli(tmp_path: Path, caplog) -> None:
    from ssad.cli import main

    root = tmp_path / "root"
    _write_root(root, {"fan/id_00": 6}, rate=44100, channels=2, subtype="PCM_24", tests=3)
    _write_root(root, {"fan/id_02": 1}, seconds=1.7, rate=22050, subtype="PCM_U8", tests=3)
    config = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    run, out = tmp_path / "run", tmp_path / "eval"
    with _ssad_log(caplog):
        assert main(["fit", "--config", str(config), "--data.root", str(root), "--trainer.default_root_dir",
                     str(run), "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]) == 0
    fit_log = caplog.text
    assert "fan/id_02 has only 1 normal training clip" in fit_log
    assert "resampled to 16000 Hz" in fit_log and "averaged to mono" in fit_log
    assert "each clip is used whole" in fit_log
    assert main(["evaluate", "--run", str(run), "--data", str(root), "--out", str(out), "--no-plots",
                 "--quiet"]) == 0
    results = (out / "results.csv").read_text()
    assert "fan,id_00," in results and "fan,id_02," in results
    notes = (out / "results.md").read_text().split("## IDs with few training clips")[1]
    assert "| fan/id_02 | 1 | gaussian |" in notes and "median threshold" in notes


@pytest.mark.slow
def test_your_own_machine_in_three_commands(tmp_path: Path, capsys) -> None:
    from ssad.cli import main

    source = _write_root(tmp_path / "src", {"deskfan/id_00": 8})
    recordings = tmp_path / "deskfan"
    recordings.mkdir()
    for i, path in enumerate(sorted((source / "deskfan" / "train").glob("*.wav"))):
        path.rename(recordings / f"recording {i}.wav")
    config = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    run = tmp_path / "runs" / "deskfan"
    assert main(["fit", "--config", str(config), "--data.root", str(recordings), "--trainer.default_root_dir",
                 str(run), "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]) == 0
    assert main(["detector", "--run", str(run), "--data", str(recordings), "--out", str(run / "detector"),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["score", "--detector", str(run / "detector"), str(recordings / "recording 0.wav")]) == 0
    line = capsys.readouterr().out.strip()
    assert line.endswith("recording 0.wav") and line.split("\t")[3] in ("normal", "ANOMALY")


def test_a_folder_of_recordings_is_one_machine_and_dcase_names_are_not(tmp_path: Path) -> None:
    from ssad.audio.layout import index_root

    folder = tmp_path / "press"
    folder.mkdir()
    for name in ("a.wav", "b.WAV"):
        sf.write(folder / name, np.zeros(RATE, np.float32), RATE)
    clips = index_root(folder)
    assert {(c.machine_type, c.machine_id, c.split, c.label) for c in clips} == {("press", "id_00", "train", "normal")}
    with pytest.raises(BadInputError, match="no machine type 'fan'"):
        index_root(folder, machine_types=["fan"])
    sf.write(folder / "anomaly_id_00_00000000.wav", np.zeros(RATE, np.float32), RATE)
    with pytest.raises(BadInputError, match="anomaly_id_00_00000000.wav: read as a DCASE-named clip, but press/ is "
                                            "read as the recordings of one machine"):
        index_root(folder)
    for name in ("a.wav", "b.WAV", "anomaly_id_00_00000000.wav"):
        (folder / name).unlink()
    sf.write(folder / "normal_id_00_00000000.wav", np.zeros(RATE, np.float32), RATE)
    with pytest.raises(BadInputError, match="cannot tell train from test"):  # DCASE names only: not one machine
        index_root(folder)
