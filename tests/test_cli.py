"""The `ssad` command as a user meets it: help, synth, data check, and bad input as one readable error."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssad.cli import lightning_command, main


def _tone_root(root: Path) -> Path:
    t = np.linspace(0, 1, 16000, dtype=np.float32)
    for split, label in (("train", "normal"), ("train", "normal"), ("test", "normal"), ("test", "anomaly")):
        folder = root / "fan" / split
        folder.mkdir(parents=True, exist_ok=True)
        n = len(list(folder.glob("*.wav")))
        sf.write(folder / f"{label}_id_00_{n:08d}.wav", 0.1 * np.sin(2 * np.pi * 440 * t), 16000, subtype="PCM_16")
    return root


def test_help_lists_the_commands(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("synth", "data", "fit", "evaluate", "score", "ensemble"):
        assert command in out


def test_global_flags_may_stand_before_a_lightning_command() -> None:
    assert lightning_command(["-v", "fit", "--help"]) == (True, ["fit", "--help"])
    assert lightning_command(["fit", "--config", "c.yaml"]) == (False, ["fit", "--config", "c.yaml"])
    assert lightning_command(["-v", "evaluate", "--run", "r"]) == (True, None)


@pytest.mark.slow  # Lightning's CLI starts in seconds
def test_verbose_fit_help_runs_lightning(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["-v", "fit", "--help"])
    assert exit_info.value.code == 0
    assert "--data.help" in capsys.readouterr().out
    assert not logging.getLogger("ssad").isEnabledFor(logging.DEBUG)  # -v held for that call only


def test_data_check_summarises_a_clean_root(tmp_path: Path, capsys) -> None:
    assert main(["data", "check", str(_tone_root(tmp_path)), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "fan" in out and "id_00" in out


@pytest.mark.parametrize("case", ["truncated", "empty", "nan", "badname"])
def test_bad_files_give_one_message_naming_every_file(tmp_path: Path, case: str, capsys) -> None:
    root = _tone_root(tmp_path)
    good = root / "fan" / "train" / "normal_id_00_00000000.wav"
    bad = root / "fan" / "train" / ("whatever.wav" if case == "badname" else "normal_id_00_00000099.wav")
    second = root / "fan" / "test" / "normal_id_00_00000098.wav"
    if case == "truncated":
        bad.write_bytes(good.read_bytes()[:3000])
    elif case == "empty":
        bad.write_bytes(b"")
    elif case == "nan":
        samples = np.zeros(1600, np.float32)
        samples[3] = np.nan
        sf.write(bad, samples, 16000, subtype="FLOAT")
    else:
        bad.write_bytes(good.read_bytes())
    second.write_bytes(b"")
    assert main(["data", "check", str(root), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert bad.name in err and second.name in err and "Traceback" not in err
    assert main(["data", "check", str(root), "--quiet", "--skip-bad"]) == 0
    assert bad.name in capsys.readouterr().out


def test_missing_folder_from_the_installed_command(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "ssad.cli", "data", "check", str(tmp_path / "nope")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "nope" in result.stderr and "no such folder" in result.stderr and "Traceback" not in result.stderr


def test_synth_command_prints_its_summary(tmp_path: Path, capsys) -> None:
    assert main(["synth", "--out", str(tmp_path / "s"), "--preset", "tiny", "--seed", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "valve" in out and "clips" in out
    assert len(list((tmp_path / "s").rglob("*.wav"))) > 0
