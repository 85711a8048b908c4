"""The README's cold start walked end to end with every default, as a new user walked it (issue 40, items 2-9, 11).

Every command runs as the user ran it: the `ssad` console script in its own process, from a folder of their own,
defaults untouched. The detector is the shipped encoder's (`ssad detector --pretrained`); the recordings are the tiny
synthetic set's, copied under plain names into a folder, as a user's recordings would be.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import ssad
from ssad.core.errors import SsadError
from ssad.models import files as weights

REPO = Path(__file__).resolve().parents[1]
_CONSOLE = Path(sys.executable).with_name("ssad")
SSAD = [str(_CONSOLE)] if _CONSOLE.is_file() else [sys.executable, "-m", "ssad.cli"]
MACHINE = "site/press"

needs_encoder = pytest.mark.skipif(not (weights.PACKAGE_DIR / "encoder.safetensors").is_file(),
                                   reason="no encoder shipped in this checkout")


def ssad_run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """`ssad ARGS...` as a user types it in `cwd`; never raises on a non-zero exit."""
    return subprocess.run([*SSAD, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=900,
                          env={**os.environ, "WANDB_MODE": "disabled"})


def ssad_here(*args: str | Path, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """The same command in this process (`ssad.cli.main`), for the later steps of a walk: exit code, stdout, stderr."""
    from ssad.cli import main

    capsys.readouterr()
    code = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return code, out, err


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    return target


@pytest.fixture(scope="module")
def site(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's folder: press/ (one machine's normal recordings, plain names) and new/ (recordings to score)."""
    base = tmp_path_factory.mktemp("journey")
    for i, clip in enumerate(sorted((tiny_root / "fan" / "train").glob("normal_id_00_*.wav"))):
        _copy(clip, base / "press" / f"rec{i:03d}.wav")
    for i, clip in enumerate(sorted((tiny_root / "fan" / "test").glob("normal_id_00_*.wav"))):
        _copy(clip, base / "new" / f"ok_{i}.wav")
    _copy(sorted((tiny_root / "fan" / "test").glob("anomaly_id_00_*.wav"))[0], base / "new" / "fault.wav")
    return base


@pytest.fixture(scope="module")
def enrolled(site: Path) -> Path:
    """`ssad detector --pretrained --out det`, then `ssad enroll --detector det --machine site/press press`."""
    made = ssad_run("detector", "--pretrained", "--out", "det", cwd=site)
    assert made.returncode == 0, made.stderr
    done = ssad_run("enroll", "--detector", "det", "--machine", MACHINE, "press", cwd=site)
    assert done.returncode == 0, done.stderr
    assert f"enrolled {MACHINE}: 6 normal reference clips" in done.stdout and "(version 1)" in done.stdout
    return site / "det"


@pytest.fixture
def det(enrolled: Path, site: Path, tmp_path: Path) -> Path:
    """A copy of the enrolled detector in the user's folder, for one test to change."""
    folder = site / f"det-{tmp_path.name}"
    shutil.copytree(enrolled, folder)
    return folder


def test_version_names_ssad_and_torch_without_importing_torch() -> None:
    shown = ssad_run("--version", cwd=REPO)
    assert shown.returncode == 0 and shown.stdout.startswith(f"ssad {ssad.__version__} (torch ")
    probe = ("import sys\nfrom ssad.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
             "print('torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("ssad ") and done.stderr.strip() == "False"


def test_a_mistyped_command_or_flag_gets_a_suggestion(tmp_path: Path) -> None:
    command = ssad_run("scroe", "--detector", "det", "x.wav", cwd=tmp_path)
    assert command.returncode == 2 and "did you mean 'score'?" in command.stderr
    flag = ssad_run("enroll", "--detector", "det", "--machine", "m", "--skipbad", "x.wav", cwd=tmp_path)
    assert flag.returncode == 2 and "did you mean '--skip-bad' for '--skipbad'?" in flag.stderr
    assert "usage: ssad enroll" in flag.stderr  # the command's own usage, not the top level's
    action = ssad_run("data", "chek", "x", cwd=tmp_path)
    assert action.returncode == 2 and "did you mean 'check'?" in action.stderr


def test_configs_ship_with_ssad_as_the_checkouts_own_folder() -> None:
    """One copy: the package's configs are the checkout's configs/ folder (a link), and the wheel takes them."""
    tomllib = pytest.importorskip("tomllib")

    from ssad.cli.fit import PACKAGE_CONFIGS

    assert PACKAGE_CONFIGS.resolve() == (REPO / "configs").resolve()
    assert sorted(p.name for p in PACKAGE_CONFIGS.glob("*.yaml")) == sorted(p.name for p in (REPO / "configs").glob("*.yaml"))
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["ssad"]
    assert "configs/*.yaml" in patterns


@pytest.mark.slow
def test_fit_takes_the_shipped_config_from_outside_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    by_name = ssad_run("fit", "--config", "demo", "--print_config", cwd=tmp_path)
    assert by_name.returncode == 0, by_name.stderr
    assert "max_epochs: 12" in by_name.stdout and "using the config shipped with ssad" in by_name.stderr

    from ssad.cli.fit import PACKAGE_CONFIGS, resolve_config_args

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SsadError, match="--config dmeo: no such file.*did you mean demo?"):
        resolve_config_args(["--config", "dmeo"])
    shipped = str(PACKAGE_CONFIGS / "tiny.yaml")
    assert resolve_config_args(["--config", "configs/tiny.yaml"]) == ["--config", shipped]  # as the README has it
    assert resolve_config_args(["--config=tiny", "--trainer.max_epochs", "1"]) == [f"--config={shipped}",
                                                                                 "--trainer.max_epochs", "1"]
    (tmp_path / "demo.yaml").write_text("seed_everything: 1\n")
    assert resolve_config_args(["--config", "demo.yaml"]) == ["--config", "demo.yaml"]  # a file here wins


@needs_encoder
@pytest.mark.slow
def test_a_second_detector_out_refuses_and_force_keeps_the_first(det: Path, site: Path) -> None:
    again = ssad_run("detector", "--pretrained", "--out", det.name, cwd=site)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert f"{det.name} already holds a detector (machines {MACHINE}; at version 1, after the enrolment of " \
           f"{MACHINE}" in again.stderr and "--force" in again.stderr
    new = sorted(str(p) for p in (site / "new").glob("*.wav"))
    before = ssad.Detector.load(det).score(new, MACHINE).scores  # still there, as it was

    forced = ssad_run("detector", "--pretrained", "--out", det.name, "--force", cwd=site)
    assert forced.returncode == 0, forced.stderr
    (kept,) = (det / "replaced").iterdir()
    assert f"kept whole in {det.name}/replaced/{kept.name}" in forced.stderr and MACHINE in forced.stderr
    assert ssad.Detector.load(det).machine_ids == []
    old = ssad.Detector.load(kept)  # usable where it was kept
    np.testing.assert_array_equal(old.score(new, MACHINE).scores, before)

    with pytest.raises(SsadError, match="already holds a detector.*no machine yet.*replace=True"):
        old.save(det)  # Python refuses too, and replace=True keeps what it replaces
    old.save(det, replace=True)
    assert ssad.Detector.load(det).machine_ids == [MACHINE] and len(list((det / "replaced").iterdir())) == 2


@pytest.mark.slow
def test_evaluate_again_replaces_its_detector_and_keeps_one_a_user_updated(tiny_run: Path, tiny_root: Path,
                                                                          tmp_path: Path) -> None:
    def evaluate() -> None:
        done = ssad_run("evaluate", "--run", tiny_run, "--data", tiny_root, "--out", "eval", "--no-plots", "--quiet",
                        cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]

    evaluate()
    folder = tmp_path / "eval" / "detector"
    ssad.Detector.load(folder).enroll(MACHINE, sorted((tiny_root / "fan" / "train").glob("normal_id_06_*.wav"))[:4])
    evaluate()  # a re-run: the enrolled machine is no part of the new detector, and it is kept
    assert MACHINE not in ssad.Detector.load(folder).machine_ids
    (kept,) = (folder / "replaced").iterdir()
    assert MACHINE in ssad.Detector.load(kept).machine_ids
    from ssad.evaluation.run import evaluate_run

    evaluate_run(tiny_run, tiny_root, tmp_path / "eval", plots=False, progress=False)
    assert len(list((folder / "replaced").iterdir())) == 1  # the run before had no update: nothing more kept


@needs_encoder
@pytest.mark.slow
def test_feedback_undo_says_what_it_undoes_stops_at_the_enrolment_and_redo_restores(
        det: Path, site: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    def feedback(*args: str) -> tuple[int, str, str]:
        return ssad_here("feedback", "--detector", det.name, "--machine", MACHINE, *args, capsys=capsys)

    monkeypatch.chdir(site)
    enrolled = ssad.Detector.load(det)
    assert feedback("--normal", "new/ok_0.wav")[0] == 0
    learned = ssad.Detector.load(det)
    fault = ssad_run("feedback", "--detector", det.name, "--machine", MACHINE, "--anomaly", "new/fault.wav", cwd=site)
    assert fault.returncode == 0 and f"recorded 1 confirmed fault(s) of {MACHINE}" in fault.stdout
    labelled = ssad.Detector.load(det)
    assert labelled.version == 3
    assert labelled.list_confirmed_anomalies(MACHINE) == [{"machine": MACHINE, "path": str(site / "new" / "fault.wav")}]
    assert labelled.confirmed_anomalies.of(MACHINE)["embedding"].shape[0] == 1
    # a confirmed fault is a label: the machine's normal references and thresholds stay as they were
    np.testing.assert_array_equal(labelled.references.of(MACHINE)["embedding"], learned.references.of(MACHINE)["embedding"])
    assert labelled.thresholds["ensemble"].threshold_ == learned.thresholds["ensemble"].threshold_

    undone = ssad_run("feedback", "--detector", det.name, "--machine", MACHINE, "--undo", cwd=site)
    assert undone.returncode == 0
    assert f"undid the feedback on {MACHINE} (1 confirmed fault(s): fault.wav): version 3 -> 2" in undone.stdout
    code, out, _ = feedback("--undo")
    assert f"undid the feedback on {MACHINE} (1 false alarm(s) learnt as normal: ok_0.wav): version 2 -> 1" in out
    stopped = ssad_run("feedback", "--detector", det.name, "--machine", MACHINE, "--undo", cwd=site)
    assert stopped.returncode == 2 and "is the enrolment of" in stopped.stderr and "--undo-enrolment" in stopped.stderr
    assert ssad.Detector.load(det).machine_ids == enrolled.machine_ids  # the machine is still there

    assert "version 1 -> 2" in feedback("--redo")[1]
    code, out, _ = feedback("--redo")
    assert "redid the feedback on" in out and "version 2 -> 3" in out
    assert ssad.Detector.load(det).list_confirmed_anomalies(MACHINE) == labelled.list_confirmed_anomalies(MACHINE)
    code, _, err = feedback("--redo")
    assert code == 2 and "nothing to redo" in err
    assert feedback("--undo")[0] == 0 and feedback("--normal", "new/ok_1.wav")[0] == 0
    assert "nothing to redo" in feedback("--redo")[2]  # an update after an undo starts anew
    code, _, err = feedback("--undo", "--anomaly", "new/fault.wav")
    assert code == 2 and "got --normal/--anomaly and --undo" in err


@needs_encoder
@pytest.mark.slow
def test_enroll_takes_folders_and_patterns_and_names_every_bad_file(det: Path, site: Path, capsys: pytest.CaptureFixture,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    bad = site / f"bad-{det.name}"
    for i, clip in enumerate(sorted((site / "press").glob("*.wav"))[:4]):
        _copy(clip, bad / f"good{i}.wav")
    (bad / "empty.wav").write_bytes(b"")
    (bad / "text.wav").write_text("not audio")
    sf.write(bad / "short.wav", np.zeros(160, dtype=np.float32), 16000, subtype="PCM_16")
    refused = ssad_run("enroll", "--detector", det.name, "--machine", "site/other", bad.name, cwd=site)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr and "--skip-bad" in refused.stderr
    assert all(f"{bad.name}/{name}: " in refused.stderr for name in ("empty.wav", "text.wav", "short.wav"))
    assert ssad.Detector.load(det).version == 1  # nothing written
    skipped = ssad_run("enroll", "--detector", det.name, "--machine", "site/other", bad.name, "--skip-bad", cwd=site)
    assert skipped.returncode == 0 and "site/other: 4 normal reference clips" in skipped.stdout
    assert "skipped 3 input(s)" in skipped.stderr

    monkeypatch.chdir(site)
    code, out, _ = ssad_here("enroll", "--detector", det.name, "--machine", "site/third", "press/rec00[0-4].wav",
                             capsys=capsys)
    assert code == 0 and "site/third: 5 normal reference clips" in out
    code, _, err = ssad_here("enroll", "--detector", det.name, "--machine", "site/fourth", "press/*.flac", capsys=capsys)
    assert code == 2 and "press/*.flac: no such file, and as a pattern it matches none" in err
    code, out, _ = ssad_here("feedback", "--detector", det.name, "--machine", "site/other", "--normal", bad.name,
                             "--skip-bad", "--quiet", capsys=capsys)
    assert code == 0 and "learned from 4 false alarm(s): site/other: 8 normal reference clips" in out


@needs_encoder
@pytest.mark.slow
def test_score_shows_each_clips_threshold_and_margin(enrolled: Path, site: Path) -> None:
    text = ssad_run("score", "--detector", "det", "--machine", MACHINE, "new", cwd=site)
    assert text.returncode == 0, text.stderr
    rows = [line.split("\t") for line in text.stdout.splitlines()]
    assert [Path(r[-1]).name for r in rows] == ["fault.wav", "ok_0.wav", "ok_1.wav", "ok_2.wav"]  # the folder, sorted
    for score, threshold, margin, decision, _ in rows:
        assert float(margin) == pytest.approx(float(score) - float(threshold), rel=1e-3, abs=1e-3)
        assert decision == ("ANOMALY" if float(margin) > 0 else "normal")
    records = ssad.Detector.load(enrolled).score(str(site / "new"), MACHINE).as_records()  # what --json prints
    assert [r["threshold"] for r in records] == pytest.approx([float(r[1]) for r in rows], rel=1e-5)
    assert len({r["threshold"] for r in records}) == 1  # one machine, one threshold
    assert all(r["margin"] == pytest.approx(r["score"] - r["threshold"]) for r in records)


@needs_encoder
@pytest.mark.slow
def test_the_library_enrols_as_the_cli_does_with_the_same_scores(enrolled: Path, site: Path, tmp_path: Path) -> None:
    new = sorted(str(p) for p in (site / "new").glob("*.wav"))
    cli = json.loads(ssad_run("score", "--detector", "det", "--machine", MACHINE, "--json", *new, cwd=site).stdout)
    folder = ssad.Detector.pretrained().save(tmp_path / "det")
    updated = ssad.Detector.load(folder).enroll(MACHINE, site / "press")  # committed as `ssad enroll` does
    assert updated.version == 1 and updated.directory == folder and updated.last_update.references == 6
    assert ssad.Detector.load(folder).machine_ids == [MACHINE]
    in_memory = ssad.Detector.pretrained().enroll(MACHINE, str(site / "press"))
    assert in_memory.directory is None and not any((tmp_path / "det" / "versions").glob("0002"))
    for detector in (updated, in_memory):
        result = detector.score(new, MACHINE)
        np.testing.assert_allclose(result.scores, [r["score"] for r in cli], rtol=1e-5)
        np.testing.assert_allclose(result.thresholds, [r["threshold"] for r in cli], rtol=1e-5)
    back = ssad.Detector.load(folder).feedback(MACHINE, anomaly=[new[0]]).undo(MACHINE)
    assert back.version == 1 and "undid the feedback" in back.last_update.format()


@needs_encoder
@pytest.mark.slow
def test_the_library_sets_up_threads_as_the_command_does() -> None:
    """The first model the library builds sets numpy's BLAS to one thread (as `ssad` does) and keeps a lower torch
    count the user chose; the spinning BLAS threads made Detector.fit 10x slower from Python than from the command."""
    probe = ("import torch\ntorch.set_num_threads(1)\nimport ssad\nfrom threadpoolctl import threadpool_info\n"
             "ssad.load('pretrained')\n"
             "print(torch.get_num_threads(), max(i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'))")
    environment = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    environment.pop("SSAD_THREADS", None)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]


def _as_from_a_shell() -> None:
    """In the child before it runs: Ctrl-C delivered and handled as a shell starts a command. A child inherits
    ignored and blocked signals, and in the full suite this process had come to hold SIGINT so (the run then
    trained all 1000 epochs); a user's `ssad fit` never starts that way."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_an_interrupted_run_is_named_wherever_it_is_used(site: Path, tmp_path: Path) -> None:
    """Ctrl-C after a few epochs of 1000; `ssad detector --run` then says so and how to resume. On this one-machine
    folder, validation tells held-out clips from their warped copies (val/acc_clip over the machine alone was 0)."""
    command = [*SSAD, "fit", "--config", "tiny", "--data.root", site / "press", "--trainer.default_root_dir", "run",
               "--trainer.max_epochs", "1000"]  # far more than can pass before the signal, on any machine
    fit = subprocess.Popen(list(map(str, command)), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, env={**os.environ, "WANDB_MODE": "disabled"}, preexec_fn=_as_from_a_shell)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while not last.is_file() and fit.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    seen = None  # a checkpoint being written is not one to stop on: wait until it stays the same for a moment
    while fit.poll() is None and time.monotonic() < deadline and seen != (now := (last.stat().st_size,
                                                                                 last.stat().st_mtime_ns)):
        seen = now
        time.sleep(0.05)  # well under an epoch: a sampling period near one never sees the file at rest
    assert fit.poll() is None, "the run ended before it could be interrupted"
    fit.send_signal(signal.SIGINT)
    log = fit.communicate(timeout=300)[0]
    assert last.is_file(), log[-2000:]
    assert "one machine: validation tells its 1 held-out clip(s) from 4 warped or equalized cop(ies)" in log
    made = ssad_run("detector", "--run", "run", "--data", site / "press", "--out", "det", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "run: its training stopped after" in made.stderr and "of 1000 epochs" in made.stderr
    assert "--ckpt_path last" in made.stderr and "config.yaml" in made.stderr


@needs_encoder
@pytest.mark.slow
def test_wrong_detector_folders_and_unreadable_sources_are_named(enrolled: Path, site: Path,
                                                                capsys: pytest.CaptureFixture,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (site / "broken.wav").write_text("not audio")
    monitor = ssad_run("monitor", "--detector", "det", "--machine", MACHINE, "--source", "broken.wav", cwd=site)
    assert monitor.returncode == 2 and "broken.wav: not a readable audio file" in monitor.stderr
    assert "Traceback" not in monitor.stderr
    monkeypatch.chdir(site)
    code, _, err = ssad_here("score", "--detector", "nowhere", "new", capsys=capsys)
    assert code == 2 and f"no such folder: nowhere (relative to {site})" in err
    code, _, err = ssad_here("enroll", "--detector", "press", "--machine", "m", "new", capsys=capsys)
    assert code == 2 and "press is a folder but not a saved ssad detector (no detector.json)" in err
