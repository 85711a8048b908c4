"""The speed benchmark's plumbing: the thread policy, the HNSW index against exact search, and bench.json's shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ssad.core.errors import SsadError
from ssad.core.runtime import THREADS_ENV, available_cores, configure_threads, default_threads
from ssad.features import LogMel, sliding_windows
from ssad.scoring import KNNScorer
from ssad.scoring.neighbours import build_index

BENCH = Path(__file__).resolve().parents[1] / "experiments" / "bench.py"


def test_default_threads_follow_the_affinity_mask_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert available_cores() == 3
    assert default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert default_threads() == 2
    monkeypatch.setenv(THREADS_ENV, "1")
    assert default_threads() == 1  # ssad's own variable wins over OpenMP's
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(SsadError, match=f"{THREADS_ENV}='many'"):
        default_threads()


def test_configure_threads_sets_torch_and_numpy_blas_and_rejects_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    from threadpoolctl import threadpool_info

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["internal_api"] == "openblas")
    with pytest.raises(SsadError, match="positive integer"):
        configure_threads(0)


def test_ssad_asks_openmp_threads_to_sleep_rather_than_spin() -> None:
    code = "import os, ssad; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "PASSIVE"


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_hnsw_index_finds_what_exact_search_finds_on_small_data(metric: str) -> None:
    rng = np.random.default_rng(0)
    references, queries = rng.standard_normal((300, 16)), rng.standard_normal((40, 16))
    exact, hnsw = (build_index(references, 3, metric, kind) for kind in ("exact", "hnsw"))
    for found, truth in ((hnsw.query(queries), exact.query(queries)),
                         (hnsw.query_references(), exact.query_references())):
        assert found.shape == truth.shape
        assert np.all(found >= truth - 1e-5)  # an approximate index may miss a neighbour, never invent one
        assert np.isclose(found, truth, rtol=1e-4, atol=1e-5).mean() >= 0.95


def test_knn_scorer_with_hnsw_scores_as_exact_and_survives_save_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    X, ids = rng.standard_normal((200, 8)), ["a/id_00"] * 120 + ["a/id_01"] * 80
    queries = rng.standard_normal((10, 8))
    exact = KNNScorer(k=2, index="exact").fit(X, ids)
    hnsw = KNNScorer(k=2, index="hnsw").fit(X, ids)
    assert np.isclose(hnsw.train_scores_, exact.train_scores_, rtol=1e-4, atol=1e-6).mean() >= 0.95
    reloaded = KNNScorer.load(hnsw.save(tmp_path / "knn"))
    assert reloaded.get_params()["index"] == "hnsw"
    found, truth = reloaded.score(queries, ["a/id_01"] * 10), exact.score(queries, ["a/id_01"] * 10)
    assert np.all(found >= truth - 1e-6) and np.isclose(found, truth, rtol=1e-4, atol=1e-6).mean() >= 0.9
    auto = KNNScorer(k=2).fit(X, ids)  # "auto" is exact at this size
    np.testing.assert_allclose(auto.score(queries, ["a/id_00"] * 10), exact.score(queries, ["a/id_00"] * 10))
    with pytest.raises(ValueError, match="index='hnsw' supports"):
        KNNScorer(index="hnsw", metric="manhattan").fit(X, ids)


def test_sliding_windows_are_views_equal_to_copied_windows() -> None:
    log_mel = torch.randn(2, 8, 50)
    windows = sliding_windows(log_mel, 16, 8)
    copied = torch.stack([torch.stack([clip[:, s : s + 16] for s in range(0, 50 - 16 + 1, 8)]) for clip in log_mel])
    assert torch.equal(windows, copied)
    assert windows.untyped_storage().data_ptr() == log_mel.untyped_storage().data_ptr()  # no copy


def test_log_mel_of_a_batch_equals_that_of_each_clip() -> None:
    log_mel, waves = LogMel(n_mels=32), torch.randn(3, 8000)
    batch = log_mel(waves)
    for wave, row in zip(waves, batch, strict=True):
        torch.testing.assert_close(log_mel(wave), row)


@pytest.mark.slow
def test_bench_quick_run_writes_every_figure_the_issue_asks_for(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(BENCH), "--quick", "--out", str(tmp_path),
                    "--parts", "features", "scoring", "knn", "sharing"], check=True, capture_output=True, text=True)
    result = json.loads((tmp_path / "bench.json").read_text())
    for key in ("device", "threads", "versions", "cores_available"):
        assert key in result
    assert result["features"]["ssad_clips_per_s"] > 0 and result["features"]["librosa_clips_per_s"] > 0
    assert result["scoring"]["realtime_factor_one_core"] > 0
    assert {(r["batch"], r["threads"]) for r in result["scoring"]["runs"]} >= {(1, 1), (64, 1)}
    assert set(result["knn"]["seconds_per_query"]) == {"500", "1000", "2000"}
    assert set(result["gaussian"]["seconds_per_query"]) == {"500", "1000", "2000"}
    assert result["sharing"]["throughput_ratio"] > 0
    for part in ("features", "scoring", "knn", "sharing"):
        assert result[part]["peak_rss_mb"] > 0
    text = (tmp_path / "bench.md").read_text()
    assert "librosa" in text and "real time" in text and "HNSW" in text


@pytest.mark.slow
def test_bench_training_part_reports_throughput_and_data_wait(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(BENCH), "--quick", "--out", str(tmp_path), "--parts", "training"],
                   check=True, capture_output=True, text=True)
    training = json.loads((tmp_path / "bench.json").read_text())["training"]
    for name in ("demo", "full"):
        assert training[name]["crops_per_s"] > 0
        assert 0.0 <= training[name]["data_wait_share"] < 1.0
