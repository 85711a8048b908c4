"""A new user's first hour, the way they meet it: the README's commands run as processes, their messages read as text."""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
RATE = 16000


def ssad(*args: str | Path, umask: int | None = None, **env: str) -> subprocess.CompletedProcess:
    """Run the `ssad` command as a user would, in its own process; never raises on a non-zero exit."""
    environment = {**os.environ, "WANDB_MODE": "disabled", **env}
    command = [sys.executable, "-m", "ssad.cli", *map(str, args)]
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run(command, capture_output=True, text=True, env=environment, cwd=REPO, preexec_fn=preexec,
                          timeout=900)


def _tone(path: Path, seconds: float = 1.0, *, rate: int = RATE, channels: int = 1, freq: float = 440.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.default_rng(int(freq)).standard_normal(len(t))
    data = np.stack([wave] * channels, 1) if channels > 1 else wave
    sf.write(path, data.astype(np.float32), rate, subtype="PCM_16")
    return path


def _one_machine_folder(folder: Path, train: int = 4, test: int = 2) -> Path:
    """The README's layout: plain-named recordings of one machine, labelled test recordings in test/."""
    for i in range(train):
        _tone(folder / f"rec{i:03d}.wav", freq=400 + i)
    for i in range(test):
        _tone(folder / "test" / f"normal_id_00_{i:08d}.wav", freq=410 + i)
        _tone(folder / "test" / f"anomaly_id_00_{i:08d}.wav", freq=2500 + i)
    return folder


def test_data_check_reads_a_one_machine_folder_with_its_test_folder(tmp_path: Path) -> None:
    press = _one_machine_folder(tmp_path / "press")
    done = ssad("data", "check", "--quiet", press)
    assert done.returncode == 0, done.stderr
    rows = {tuple(line.split()) for line in done.stdout.splitlines()}
    assert ("id_00", "train", "4", "0") in rows and ("id_00", "test", "2", "2") in rows
    assert "press: 8 clips, 1 IDs (id_00)" in done.stdout


def test_an_ambiguous_layout_says_how_each_file_was_read_and_what_to_do(tmp_path: Path) -> None:
    press = _one_machine_folder(tmp_path / "press")
    _tone(press / "normal_id_00_00000099.wav")
    _tone(press / "train" / "normal_id_00_00000000.wav")
    _tone(press / "test" / "rec-late.wav")
    _tone(press / "test" / "anomaly_id_03_00000000.wav")
    done = ssad("data", "check", "--quiet", press)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    problems = dict(re.findall(r"^\s+(\S+\.wav): (.*)$", done.stderr, flags=re.M))
    assert set(map(lambda p: Path(p).name, problems)) == {"normal_id_00_00000099.wav", "normal_id_00_00000000.wav",
                                                        "rec-late.wav", "anomaly_id_03_00000000.wav"}
    assert all(why.startswith("read as ") for why in problems.values()), problems
    assert all("rename" in why or "move" in why or "name it" in why for why in problems.values()), problems


def test_data_check_names_a_clip_shorter_than_one_fft_frame(tmp_path: Path) -> None:
    folder = tmp_path / "short"
    for i in range(3):
        _tone(folder / f"rec{i:03d}.wav")
    _tone(folder / "rec999.wav", seconds=0.01)
    done = ssad("data", "check", "--quiet", folder)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert re.search(r"rec999\.wav: too short: 0\.010 s, less than one FFT frame", done.stderr), done.stderr
    assert "--skip-bad" in done.stderr and "skip_bad" not in done.stderr
    skipped = ssad("data", "check", "--quiet", "--skip-bad", folder)
    assert skipped.returncode == 0 and "3 usable clips" in skipped.stdout and "rec999.wav" in skipped.stdout


@pytest.mark.slow  # Lightning's CLI starts in about ten seconds per process
def test_a_failed_fit_leaves_no_run_folder(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "press"
    done = ssad("fit", "--config", REPO / "configs" / "tiny.yaml", "--data.root", tmp_path / "no-such-folder",
                "--trainer.default_root_dir", run, WANDB_MODE="offline", WANDB_DIR=str(tmp_path))
    assert done.returncode != 0 and "no-such-folder: no such folder" in done.stderr
    assert not run.exists()


@pytest.mark.slow  # Lightning's CLI starts in about ten seconds per process
def test_fit_help_leads_to_the_model_and_data_options_by_short_class_name() -> None:
    done = ssad("fit", "--help")
    assert done.returncode == 0 and "--model.help MachineIDClassifier" in done.stdout
    model = ssad("fit", "--model.help", "MachineIDClassifier")
    assert model.returncode == 0 and "--model.embedding_dim" in model.stdout, model.stderr
    data = ssad("fit", "--data.help", "MachineIDDataModule")
    assert data.returncode == 0 and "--data.skip_bad" in data.stdout and "--data.n_warped" in data.stdout


def test_monitor_help_shows_defaults_and_how_much_audio_drift_needs() -> None:
    done = ssad("monitor", "--help")
    text = " ".join(done.stdout.split())
    assert "(default: 30)" in text and "(default: 0.001)" in text and "(default: 4)" in text
    assert "300 s" in text


def test_make_help_lists_every_target_the_readme_uses() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make")
    listed = subprocess.run([make, "-s", "help"], capture_output=True, text=True, cwd=REPO, check=True).stdout
    listed_targets = set(re.findall(r"^make ([\w-]+)", listed, flags=re.M))
    readme_targets = set(re.findall(r"\bmake ([a-z][\w-]*)", (REPO / "README.md").read_text()))
    assert readme_targets | {"setup", "test-fast", "lint", "clean"} <= listed_targets


def test_readme_commands_run_the_installed_ssad() -> None:
    """Every command line in the README's code blocks starts `ssad` from .venv/bin, where `make setup` puts it."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    bare = [line for block in blocks for line in block.splitlines() if re.search(r"(^|\| )ssad ", line.strip())]
    assert bare == []


def test_cli_messages_name_flags_not_python_parameters() -> None:
    from ssad.cli import in_cli_words

    assert in_cli_words("bad files (pass skip_bad=True to leave them out)") == "bad files (pass --skip-bad to leave them out)"
    assert in_cli_words("pass machine_ids (one of fan/id_00)") == "pass --machine (one of fan/id_00)"
    assert in_cli_words("(skip_bad=True leaves these files out)", lightning=True) == \
        "(--data.skip_bad true leaves these files out)"
    assert in_cli_words("/data/skip_bad/x.wav: empty") == "/data/skip_bad/x.wav: empty"  # paths stay as they are


def test_files_written_atomically_get_the_umask_not_a_private_mode(tmp_path: Path) -> None:
    from ssad.core.atomic import write_text_atomic
    from ssad.detector.store import commit

    previous = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.json", "{}")
        commit(tmp_path, lambda folder: (folder / "state.json").write_text("{}"), {"action": "test"})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "current.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "versions" / "0001").stat().st_mode) == 0o755


def test_a_thin_machine_s_threshold_fallback_names_its_scorer(caplog: pytest.LogCaptureFixture) -> None:
    from ssad.scoring.thresholds import AlarmThreshold

    with caplog.at_level(logging.WARNING, logger="ssad.scoring.thresholds"):
        AlarmThreshold(0.1, "knn").fit(np.r_[np.ones(8), [2.0]], ["fan/id_00"] * 8 + ["fan/id_02"])
    assert "knn threshold of fan/id_02: 1 training score(s): the median threshold" in caplog.text


@pytest.mark.slow
def test_the_readme_one_folder_workflow_from_fit_to_score(tiny_root: Path, tmp_path: Path) -> None:
    """fit, detector, evaluate and score on a folder of plain-named recordings plus test/, as the README has it."""
    press = tmp_path / "recordings" / "press"
    for i, clip in enumerate(sorted((tiny_root / "fan" / "train").glob("normal_id_*.wav"))):
        (press / f"rec{i:03d}.wav").parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, press / f"rec{i:03d}.wav")
    (press / "test").mkdir()
    for clip in sorted((tiny_root / "fan" / "test").glob("*_id_00_*.wav")):
        shutil.copy(clip, press / "test" / clip.name)
    run, detector, evaluation = tmp_path / "runs" / "press", tmp_path / "detector", tmp_path / "eval"

    fit = ssad("fit", "--config", REPO / "configs" / "tiny.yaml", "--data.root", press,
               "--trainer.default_root_dir", run, "--trainer.max_epochs", "1")
    assert fit.returncode == 0, fit.stderr[-2000:]
    made = ssad("detector", "--run", run, "--data", press, "--out", detector, "--quiet", umask=0o022)
    assert made.returncode == 0, made.stderr
    private = [p for p in detector.rglob("*") if stat.S_IMODE(p.stat().st_mode) & 0o044 != 0o044]
    assert private == []
    evaluated = ssad("evaluate", "--run", run, "--data", press, "--out", evaluation, "--no-plots", "--quiet")
    assert evaluated.returncode == 0, evaluated.stderr
    assert (evaluation / "results.csv").read_text().count("press,id_00") >= 1

    anomaly = sorted((press / "test").glob("anomaly_*.wav"))[0]
    by_folder_name = ssad("score", "--detector", detector, "--machine", "press", anomaly)
    assert by_folder_name.returncode == 0 and by_folder_name.stdout.strip().endswith(anomaly.name)
    elsewhere = _copy(anomaly, tmp_path / "new" / "anomaly_id_00_00000000.wav")
    dcase_named = ssad("score", "--detector", detector, elsewhere)
    assert dcase_named.returncode == 0, dcase_named.stderr

    bad = tmp_path / "bad"
    good = _copy(anomaly, bad / "good.wav")
    (bad / "empty.wav").write_bytes(b"")
    (bad / "text.wav").write_text("not audio")
    _tone(bad / "short.wav", seconds=0.01)
    stereo = _tone(bad / "stereo44k.wav", seconds=2.0, rate=44100, channels=2)
    files = [good, bad / "empty.wav", bad / "text.wav", bad / "short.wav", stereo]
    refused = ssad("score", "--detector", detector, *files)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    named = {Path(p).name for p in re.findall(r"^\s+(\S+\.wav): ", refused.stderr, flags=re.M)}
    assert named == {"empty.wav", "text.wav", "short.wav"} and "--skip-bad" in refused.stderr
    skipped = ssad("score", "--detector", detector, "--skip-bad", *files)
    assert skipped.returncode == 0, skipped.stderr
    assert [Path(line.split("\t")[-1]).name for line in skipped.stdout.splitlines()] == ["good.wav", "stereo44k.wav"]
    assert "resampled to 16000 Hz (stereo44k.wav)" in skipped.stderr
    assert "averaged to mono (stereo44k.wav)" in skipped.stderr


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    return target
