"""The quality benchmark: its tables from rows, merging split runs, and one end-to-end run on tiny data."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture(scope="module")
def quality():
    """experiments/quality.py as a module (it is a script, not part of the package)."""
    sys.path.insert(0, str(EXPERIMENTS))
    spec = importlib.util.spec_from_file_location("quality", EXPERIMENTS / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(EXPERIMENTS))


def _rows(dataset: str, seed: int, detector: str, aucs: list[float]) -> list[dict]:
    return [{"dataset": dataset, "seed": seed, "detector": detector, "machine_type": f"t{i}", "auc": a, "pauc": a / 2}
            for i, a in enumerate(aucs)]


def test_summary_means_over_types_then_seeds(quality) -> None:
    rows = (_rows("synthetic", 1, "spectral_stats:gaussian", [0.8, 0.6]) + _rows("synthetic", 2, "spectral_stats:gaussian", [0.9, 0.9])
            + _rows("synthetic", 1, "classifier:gaussian", [0.5, 0.5]))
    table = quality.summary(rows)
    floor = table[("synthetic", "spectral_stats:gaussian")]
    assert floor["seeds"] == {1: pytest.approx((0.7, 0.35)), 2: pytest.approx((0.9, 0.45))}
    assert floor["auc"] == pytest.approx(0.8) and floor["auc_sd"] == pytest.approx(0.1414, abs=1e-3)
    text = quality.markdown(rows)
    assert "## synthetic" in text and "| classifier:gaussian | 50.0 / 25.0 | – |" in text
    assert "-30.0 |" in text  # the classifier's lead over the floor, in AUC points


def test_collect_merges_split_runs_and_replaces_repeated_keys(quality, tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    quality._merge(first, _rows("synthetic", 1, "x:gaussian", [0.6]))
    quality._merge(second, _rows("lathe_vmc", 1, "x:gaussian", [0.7]) + _rows("synthetic", 1, "x:gaussian", [0.9]))
    assert quality.main(["--collect", str(first), str(second), "--out", str(tmp_path / "out")]) == 0
    with (tmp_path / "out" / "quality.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["dataset"], r["auc"]) for r in rows) == [("lathe_vmc", "0.7000"), ("synthetic", "0.9000")]
    assert (tmp_path / "out" / "quality.md").read_text().startswith("# Detector quality")


@pytest.mark.slow
def test_floor_and_classifier_on_a_tiny_root(quality, tiny_root: Path, tmp_path: Path, one_torch_thread: None) -> None:
    """Both detectors train and evaluate; the two ensembles appear; published figures print on DCASE types."""
    code = quality.main(["--data", str(tiny_root), "--seeds", "1", "--profile", "tiny", "--detectors", "spectral_stats",
                         "classifier", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")])
    assert code == 0
    with (tmp_path / "out" / "quality.csv").open() as f:
        detectors = {r["detector"] for r in csv.DictReader(f)}
    assert {"spectral_stats:gaussian", "spectral_stats:knn", "classifier:gaussian", "ensemble", "ensemble_all"} <= detectors
    text = (tmp_path / "out" / "quality.md").read_text()
    assert "DCASE 2020 baseline AE" in text and "65.16 / 52.59" in text
