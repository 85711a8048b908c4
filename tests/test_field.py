"""A saved detector in the field: `ssad enroll`, `ssad score --machine`, `ssad feedback` (and --undo), `ssad export`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ssad
from ssad.cli import main
from ssad.core.errors import SsadError
from ssad.detector import enrollment, store

NEW = "site-a/fan-7"


@pytest.fixture(scope="module")
def saved_detector(tiny_run: Path, tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A detector fitted on the tiny set, saved once; tests work on copies."""
    folder = tmp_path_factory.mktemp("field") / "detector"
    ssad.Detector.fit(tiny_run, tiny_root).save(folder)
    return folder


@pytest.fixture
def det(saved_detector: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved_detector, tmp_path / "detector"))


def clips(root: Path, pattern: str, n: int) -> list[str]:
    return [str(p) for p in sorted(root.glob(pattern))[:n]]


def test_enroll_fits_only_the_new_machine_and_score_uses_it(det: Path, tiny_root: Path, capsys) -> None:
    before = ssad.Detector.load(det)
    assert main(["enroll", "--detector", str(det), "--machine", NEW, "--quiet",
                 *clips(tiny_root, "fan/train/normal_id_06_*.wav", 5)]) == 0
    after = ssad.Detector.load(det)
    assert after.version == 1 and NEW in after.machine_ids
    assert set(after.machine_ids) - set(before.machine_ids) == {NEW}
    old, new = before.scorers["gaussian"], after.scorers["gaussian"]
    for name in before.machine_ids:  # every other machine keeps its state
        np.testing.assert_array_equal(old.means_[old.ids_.index(name)], new.means_[new.ids_.index(name)])
        assert after.thresholds["gaussian"].threshold_[name] == before.thresholds["gaussian"].threshold_[name]
    assert NEW not in after.scorers["softmax"].ids_  # not a class of the model: skipped
    assert len(after.references.of(NEW)["embedding"]) == 5
    capsys.readouterr()
    tests = clips(tiny_root, "fan/test/*_id_06_*.wav", 4)
    assert main(["score", "--detector", str(det), "--machine", NEW, "--json", *tests]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["machine"] for r in rows] == [NEW] * 4
    assert all(np.isfinite(r["score"]) and r["scorer"] == "gaussian" for r in rows)


def test_softmax_says_it_cannot_score_an_enrolled_machine(det: Path, tiny_root: Path) -> None:
    enrollment.enroll(det, NEW, clips(tiny_root, "fan/train/normal_id_06_*.wav", 3))
    detector = ssad.Detector.load(det)
    test = clips(tiny_root, "fan/test/*_id_06_*.wav", 2)
    with pytest.raises(SsadError, match="cannot score machine.*site-a/fan-7"):
        detector.score(test, machine_ids=NEW, scorer="softmax")
    assert len(detector.score(test, machine_ids=NEW, scorer="knn").scores) == 2


def test_feedback_grows_the_references_and_undo_rolls_back(det: Path, tiny_root: Path, capsys) -> None:
    enrollment.enroll(det, NEW, clips(tiny_root, "fan/train/normal_id_06_*.wav", 5))
    enrolled = ssad.Detector.load(det)
    alarms = clips(tiny_root, "fan/test/normal_id_06_*.wav", 2)
    assert main(["feedback", "--detector", str(det), "--machine", NEW, "--normal", *alarms, "--quiet"]) == 0
    updated = ssad.Detector.load(det)
    assert updated.version == 2
    assert len(updated.references.of(NEW)["embedding"]) == 7
    assert len(updated.scorers["knn"]._rows(NEW)) == 7
    # a base machine learns from feedback too (its training clips are stored as references)
    enrollment.feedback(det, "fan/id_00", alarms[:1])
    assert len(ssad.Detector.load(det).references.of("fan/id_00")["embedding"]) == 7
    with pytest.raises(SsadError, match="not of site-a/fan-7"):
        enrollment.undo(det, NEW)
    assert main(["feedback", "--detector", str(det), "--machine", "fan/id_00", "--undo"]) == 0
    assert main(["feedback", "--detector", str(det), "--machine", NEW, "--undo"]) == 0
    back = ssad.Detector.load(det)
    assert back.version == enrolled.version == 1
    np.testing.assert_array_equal(back.references.of(NEW)["embedding"], enrolled.references.of(NEW)["embedding"])
    capsys.readouterr()
    assert main(["feedback", "--detector", str(det), "--machine", NEW, "--undo"]) == 2  # the enrolment: not unasked
    assert "--undo-enrolment" in capsys.readouterr().err and NEW in ssad.Detector.load(det).machine_ids
    assert main(["feedback", "--detector", str(det), "--machine", NEW, "--undo-enrolment"]) == 0
    assert NEW not in ssad.Detector.load(det).machine_ids
    capsys.readouterr()
    assert main(["feedback", "--detector", str(det), "--machine", NEW, "--undo-enrolment"]) == 2
    assert "nothing to undo" in capsys.readouterr().err
    assert sorted(p.name for p in (det / store.VERSIONS_DIR).iterdir() if p.name.isdigit()) == ["0001", "0002", "0003"]


def test_a_crash_during_feedback_leaves_the_previous_version(det: Path, tiny_root: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    enrollment.enroll(det, NEW, clips(tiny_root, "fan/train/normal_id_06_*.wav", 5))
    test = clips(tiny_root, "fan/test/*_id_06_*.wav", 3)
    before = ssad.Detector.load(det).score(test, machine_ids=NEW).scores

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")  # after the scorers are written, before thresholds and references

    monkeypatch.setattr("ssad.detector.state.save_thresholds", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        enrollment.feedback(det, NEW, clips(tiny_root, "fan/test/normal_id_06_*.wav", 2))
    monkeypatch.undo()
    after = ssad.Detector.load(det)
    assert after.version == 1 and len(after.references.of(NEW)["embedding"]) == 5
    np.testing.assert_array_equal(after.score(test, machine_ids=NEW).scores, before)
    assert [p.name for p in (det / store.VERSIONS_DIR).iterdir()] == ["0001"]  # the half-written version is gone
    assert enrollment.feedback(det, NEW, clips(tiny_root, "fan/test/normal_id_06_*.wav", 1)).version == 2


def test_a_save_that_fails_leaves_the_earlier_detector_whole(det: Path, tiny_root: Path, monkeypatch) -> None:
    enrollment.enroll(det, NEW, clips(tiny_root, "fan/train/normal_id_06_*.wav", 3))
    (det / "onnx").mkdir()
    (det / "onnx" / "network.onnx").write_bytes(b"an earlier export")
    detector = ssad.Detector.load(det)

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(ssad.Detector, "save_state", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        detector.save(det, replace=True)
    monkeypatch.undo()
    assert ssad.Detector.load(det).version == 1 and (det / "onnx" / "network.onnx").is_file()
    detector.save(det, replace=True)  # a save that completes is the new base state; the old one is kept aside
    assert ssad.Detector.load(det).version == 0 and not (det / "onnx").exists()
    (kept,) = (det / store.REPLACED_DIR).iterdir()
    assert ssad.Detector.load(kept).version == 1 and (kept / "onnx" / "network.onnx").is_file()


def test_a_process_killed_mid_update_leaves_the_detector_loadable(det: Path, tiny_root: Path) -> None:
    script = (
        "import os, signal, sys\n"
        "import ssad.detector.state, ssad.detector.enrollment\n"
        "def die(*a, **k): os.kill(os.getpid(), signal.SIGKILL)\n"
        "ssad.detector.state.save_thresholds = die\n"
        "ssad.detector.enrollment.enroll(sys.argv[1], 'site-b/pump-1', sys.argv[2:])\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(det), *clips(tiny_root, "pump/train/normal_id_00_*.wav", 3)],
                          capture_output=True, timeout=300)
    assert done.returncode == -9
    detector = ssad.Detector.load(det)
    assert detector.version == 0 and "site-b/pump-1" not in detector.machine_ids
    assert any(p.name.startswith(".incoming-") for p in (det / store.VERSIONS_DIR).iterdir())
    enrollment.enroll(det, "site-b/pump-1", clips(tiny_root, "pump/train/normal_id_00_*.wav", 3))
    assert [p.name for p in (det / store.VERSIONS_DIR).iterdir()] == ["0001"]  # the next update cleans up


def test_clear_errors(det: Path, tiny_root: Path, capsys) -> None:
    files = clips(tiny_root, "fan/train/normal_id_06_*.wav", 2)
    cases = [
        (["enroll", "--detector", str(det), "--machine", NEW], "no recordings given"),
        (["enroll", "--detector", str(det), "--machine", "fan/id_00", *files], "already known"),
        (["enroll", "--detector", str(det), "--machine", "bad name", *files], "without spaces"),
        (["enroll", "--detector", str(det), "--machine", NEW, str(det / "missing.wav")], "no such file"),
        (["feedback", "--detector", str(det), "--machine", "site-z/none", "--normal", *files], "unknown machine"),
        (["feedback", "--detector", str(det), "--machine", NEW, "--undo"], "nothing to undo"),
        (["feedback", "--detector", str(det), "--machine", NEW], "feedback needs one of"),
        (["score", "--detector", str(det), "--machine", NEW, *files], "unknown to this detector"),
        (["score", "--detector", str(det), "--backend", "onnx", *files], "no ONNX export"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert ssad.Detector.load(det).version == 0


def test_base_detector_files_are_unchanged_by_updates(det: Path, tiny_root: Path) -> None:
    """The top-level files stay the saved base state, readable as before; updates live under versions/."""
    base = {p: p.read_bytes() for p in det.rglob("*") if p.is_file()}
    enrollment.enroll(det, NEW, clips(tiny_root, "fan/train/normal_id_06_*.wav", 3))
    assert all(p.read_bytes() == data for p, data in base.items())
    assert json.loads((det / "current.json").read_text()) == {"version": 1}


@pytest.mark.slow
def test_onnx_export_scores_match_torch(tiny_run: Path, tiny_root: Path, tmp_path: Path, capsys) -> None:
    from torch.optim.swa_utils import update_bn

    from ssad.audio.clips import clip_key
    from ssad.audio.layout import parse_clip_name
    from ssad.encoder import clip_outputs
    from ssad.features import sliding_windows

    model = ssad.load(tiny_run)
    # Two epochs leave the tiny model's batch-norm statistics near their initial values, which flattens its
    # outputs to round-off; re-estimate them so the parity below compares real scores, not noise.
    train = sorted(tiny_root.glob("*/train/*.wav"))
    windows = torch.cat([sliding_windows(m, model.window_frames, model.window_hop) for m in model.log_mels(train)])
    update_bn(torch.utils.data.DataLoader(windows, batch_size=64), model.module.net)
    model.module.eval()
    ids = [clip_key(parse_clip_name(p)) for p in train]
    outputs = clip_outputs(model, train)
    det = ssad.Detector.from_outputs(model, outputs, ids).save(tmp_path / "detector")
    assert main(["export", "--detector", str(det), "--format", "onnx"]) == 0
    assert (det / "onnx" / "network.onnx").is_file() and (det / "onnx" / "log_mel.onnx").is_file()
    test = clips(tiny_root, "*/test/*.wav", 200)[::5]
    torch_backend, onnx_backend = ssad.Detector.load(det), ssad.Detector.load(det, backend="onnx")
    for scorer in ("gaussian", "knn", "softmax"):
        a = torch_backend.score(test, scorer=scorer).scores
        b = onnx_backend.score(test, scorer=scorer).scores
        assert np.std(a) > 1e-3 * np.mean(np.abs(a))  # real scores, not round-off
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-9)
    capsys.readouterr()
    assert main(["score", "--detector", str(det), "--backend", "onnx", "--json", *test[:2]]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_refit_ids_replaces_one_id_and_keeps_the_others() -> None:
    from ssad.scoring import GaussianScorer, KNNScorer
    from ssad.scoring.thresholds import AlarmThreshold

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    ids = ["a"] * 30 + ["b"] * 30
    new = rng.normal(loc=3.0, size=(5, 4))
    probe = rng.normal(size=(6, 4))
    for scorer in (KNNScorer(k=2), GaussianScorer()):
        fitted = scorer.fit(X, ids)
        merged = fitted.refit_ids(new, ["c"] * 5)
        assert merged.ids_ == ["a", "b", "c"] and (merged.train_ids_ == "c").sum() == 5
        np.testing.assert_array_equal(merged.score(probe, ["a"] * 6), fitted.score(probe, ["a"] * 6))
        assert np.all(np.isfinite(merged.score(probe, ["c"] * 6)))
        replaced = merged.refit_ids(X[:10], ["b"] * 10)  # b now has 10 clips, a and c as before
        assert (replaced.train_ids_ == "b").sum() == 10
        np.testing.assert_array_equal(replaced.score(probe, ["c"] * 6), merged.score(probe, ["c"] * 6))
    knn = KNNScorer(k=2).fit(X, ids).refit_ids(new, ["c"] * 5)
    np.testing.assert_array_equal(knn.score(probe, ["c"] * 6), KNNScorer(k=2).fit(new, ["c"] * 5).score(probe, ["c"] * 6))
    thresholds = AlarmThreshold().fit(rng.gamma(4.0, size=60), ids)
    merged = thresholds.refit_ids([1.0, 2.0], ["c", "c"])  # too few clips: the median of the others
    assert merged.threshold_["a"] == thresholds.threshold_["a"]
    assert merged.threshold_["c"] == pytest.approx(np.median(list(thresholds.threshold_.values())))


def test_training_can_leave_machines_out_for_later_enrolment(tiny_root: Path) -> None:
    from ssad.data import MachineIDDataModule

    data = MachineIDDataModule(root=str(tiny_root), exclude_ids=["fan/id_00", "valve/id_06"], augment=False)
    data.setup("fit")
    assert "fan/id_00" not in data.class_names and "valve/id_06" not in data.class_names
    assert "fan/id_02" in data.class_names and len(data.class_names) == 14
