"""From a trained run to decisions: `ssad evaluate`, the Detector's save/load, `ssad score`, `ssad ensemble`."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import ssad
from ssad.cli import main
from ssad.core.errors import SsadError


@pytest.fixture(scope="module")
def evaluation(tiny_run: Path, tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval")
    assert main(["evaluate", "--run", str(tiny_run), "--data", str(tiny_root), "--out", str(out), "--quiet"]) == 0
    return out


def test_evaluate_writes_results_challenge_files_and_plots(evaluation: Path) -> None:
    with (evaluation / "results.csv").open() as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames[:5] == ["scorer", "machine_type", "machine_id", "auc", "pauc"]
        rows = list(reader)
    assert {r["scorer"] for r in rows} == {"gaussian", "knn", "softmax", "floor"}  # the floor beside the run's own
    means = [r for r in rows if r["machine_id"] == "mean"]
    assert len(means) == 4 * 4 and all(0 <= float(r["auc"]) <= 1 for r in rows)
    score_files = sorted((evaluation / "gaussian").glob("anomaly_score_*_id_*.csv"))
    assert len(score_files) == 16
    first = list(csv.reader(score_files[0].open()))
    assert len(first) == 6 and all(len(r) == 2 and r[0].endswith(".wav") for r in first)
    float(first[0][1])
    decisions = list(csv.reader((evaluation / "gaussian" / score_files[0].name.replace("anomaly_score", "decision_result")).open()))
    assert {r[1] for r in decisions} <= {"0", "1"}
    plots = {p.name for p in (evaluation / "plots").glob("*.png")}
    assert any(p.startswith("roc_") for p in plots) and any(p.startswith("hist_") for p in plots)
    assert any(p.startswith("tsne_") for p in plots)
    assert "| fan |" in (evaluation / "results.md").read_text()


def test_test_metrics_use_test_clips_only(evaluation: Path) -> None:
    with (evaluation / "scores.csv").open() as f:
        rows = list(csv.DictReader(f))
    train = {r["path"] for r in rows if r["split"] == "train"}
    test = {r["path"] for r in rows if r["split"] == "test"}
    assert train and test and not (train & test)
    assert all("/test/" in p for p in test)


def test_saved_detector_gives_identical_scores(tiny_run: Path, tiny_root: Path, tmp_path: Path) -> None:
    detector = ssad.Detector.fit(tiny_run, tiny_root)
    paths = sorted(str(p) for p in tiny_root.rglob("test/*.wav"))[:5]
    before = detector.score(paths)
    detector.save(tmp_path / "det")
    after = ssad.Detector.load(tmp_path / "det").score(paths)
    assert np.array_equal(before.scores, after.scores) and np.array_equal(before.decisions, after.decisions)
    for name in detector.scorers:
        assert np.allclose(detector.score(paths, scorer=name).scores,
                           ssad.Detector.load(tmp_path / "det").score(paths, scorer=name).scores)
    assert before.machine_ids[0] == "/".join(Path(paths[0]).parts[-3:-2] + ("id_" + Path(paths[0]).name.split("_")[2],))


def test_the_leading_directions_gaussian_is_offered_on_request(tiny_run: Path, tiny_root: Path) -> None:
    """The classifier's Gaussian keeps the leading directions only for machines whose clips drift; gaussian_top always."""
    detector = ssad.Detector.fit(tiny_run, tiny_root, scorers=["gaussian", "gaussian_top"])
    own, top = detector.scorers["gaussian"], detector.scorers["gaussian_top"]
    assert (own.components, own.components_when) == (32, "drifting")
    assert (top.components, top.components_when) == (32, "always")
    paths = sorted(str(p) for p in tiny_root.rglob("test/*.wav"))[:4]
    # a tiny root has fewer clips per machine than the embedding has dimensions: every direction is kept
    np.testing.assert_allclose(detector.score(paths, scorer="gaussian_top").scores,
                               detector.score(paths, scorer="gaussian").scores)


def test_detector_needs_machine_for_waveforms(evaluation: Path, tiny_root: Path) -> None:
    detector = ssad.Detector.load(evaluation / "detector")
    wave = np.zeros(16000, dtype=np.float32)
    with pytest.raises(SsadError, match="machine_ids"):
        detector.score(wave)
    result = detector.score(wave, machine_ids="fan/id_00")
    assert result.scores.shape == (1,) and np.isfinite(result.scores).all()


def test_a_pickle_in_place_of_saved_weights_or_scorer_is_refused(evaluation: Path, tmp_path: Path) -> None:
    import shutil

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    for target in ("model.safetensors", "scorers/gaussian/arrays.npz"):
        copy = tmp_path / target.replace("/", "_")
        shutil.copytree(evaluation / "detector", copy)
        (copy / target).write_bytes(pickle.dumps(Evil()))
        with pytest.raises(SsadError):
            ssad.Detector.load(copy)
    assert not marker.exists()


def test_score_command_prints_a_line_per_file_and_json(evaluation: Path, tiny_root: Path, capsys) -> None:
    files = sorted(str(p) for p in tiny_root.rglob("test/*.wav"))[:3]
    assert main(["score", "--detector", str(evaluation / "detector"), *files]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(line.split("\t")[-1] in files for line in lines)
    assert main(["score", "--detector", str(evaluation / "detector"), "--json", *files]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in records] == files and all(r["decision"] in (0, 1) for r in records)
    # each row says what it was judged by: the threshold, and the margin above it (positive = anomalous)
    assert all(r["margin"] == pytest.approx(r["score"] - r["threshold"]) and r["decision"] == (r["margin"] > 0)
               for r in records)
    assert [float(line.split("\t")[1]) for line in lines] == pytest.approx([r["threshold"] for r in records], rel=1e-5)


def test_score_command_names_a_bad_file(evaluation: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "fan" / "test" / "normal_id_00_00000000.wav"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"RIFF0000WAVEjunk")
    assert main(["score", "--detector", str(evaluation / "detector"), str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err


def test_ensemble_command_combines_scorers(evaluation: Path, tmp_path: Path) -> None:
    out = tmp_path / "ens"
    assert main(["ensemble", "--members", f"{evaluation}:gaussian", f"{evaluation}:knn", "--out", str(out),
                 "--no-plots"]) == 0
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["scorer"] for r in rows} == {"ensemble"} and len([r for r in rows if r["machine_id"] == "mean"]) == 4
