"""The spectral floor as a detector: fitted statistics, clip embeddings, evaluation and ensembles like any other."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "spectral_stats.yaml"


@pytest.fixture(scope="module")
def stats_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/spectral_stats.yaml fitted on the tiny set (64 mels, as the tiny classifier)."""
    from ssad.cli import main

    run = tmp_path_factory.mktemp("stats")
    code = main(["fit", "--config", str(CONFIG), "--data.root", str(tiny_root), "--trainer.default_root_dir", str(run),
                 "--model.n_mels", "64", "--data.features", '{"n_mels": 64, "n_fft": 1024, "hop_length": 512}', "--trainer.enable_progress_bar", "false"])
    assert code == 0
    return run


def test_fit_records_the_training_frames_band_statistics(stats_run: Path, tiny_root: Path) -> None:
    """band_mean/band_std are the mean and std of every training frame, per band."""
    import ssad
    from ssad.audio.layout import index_root, select

    model = ssad.load(stats_run)
    train = select(index_root(tiny_root), split="train", label="normal")
    frames = torch.cat([m for m in model.log_mels([c.path for c in train])], dim=1).double()
    torch.testing.assert_close(model.module.band_mean.double(), frames.mean(1), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(model.module.band_std.double(), frames.std(1, unbiased=False), rtol=1e-3, atol=1e-3)


def test_clip_embedding_is_standardised_mean_and_std(stats_run: Path, tiny_root: Path) -> None:
    import ssad

    model = ssad.load(stats_run)
    clip = next((tiny_root / "pump" / "test").glob("*.wav"))
    log_mel = model.log_mels(clip)[0]
    z = (log_mel - model.module.band_mean[:, None]) / model.module.band_std[:, None]
    expected = torch.cat([z.mean(1), z.std(1, unbiased=False)]).numpy()
    np.testing.assert_allclose(model.embed(clip), expected, rtol=1e-4, atol=1e-4)


def test_evaluate_and_join_an_ensemble(stats_run: Path, tiny_root: Path, tiny_run: Path, tmp_path: Path) -> None:
    """`ssad evaluate` gives the floor's Gaussian and kNN rows; it combines with the classifier's scores."""
    import ssad
    from ssad.evaluation.run import evaluate_ensemble, evaluate_run
    from ssad.scoring.catalogue import FLOOR

    rows = evaluate_run(stats_run, tiny_root, tmp_path / "stats", plots=False, progress=False, floor=False)
    assert {r.scorer for r in rows} == {"gaussian", "knn"}
    assert all(0.0 <= r.auc <= 1.0 for r in rows)
    assert (tmp_path / "stats" / "detector").is_dir()
    clf_rows = evaluate_run(tiny_run, tiny_root, tmp_path / "clf", plots=False, progress=False)
    assert {"gaussian", "knn", "softmax", FLOOR} <= {r.scorer for r in clf_rows}  # the floor beside the run's own
    assert FLOOR not in ssad.Detector.load(tmp_path / "clf" / "detector").scorers
    ensemble = evaluate_ensemble([f"{tmp_path / 'stats'}:gaussian", f"{tmp_path / 'clf'}:gaussian"],
                                 tmp_path / "ens", plots=False)
    with (tmp_path / "ens" / "results.csv").open() as f:
        assert {r["scorer"] for r in csv.DictReader(f)} == {"ensemble"}
    assert ensemble


def test_saved_detector_scores_the_same_after_reload(stats_run: Path, tiny_root: Path, tmp_path: Path) -> None:
    import ssad

    detector = ssad.Detector.fit(stats_run, tiny_root, machine_types=["valve"])
    detector.save(tmp_path / "det")
    test = sorted((tiny_root / "valve" / "test").glob("*.wav"))[:4]
    first = detector.score(test).scores
    again = ssad.Detector.load(tmp_path / "det").score(test).scores
    np.testing.assert_allclose(first, again)
