"""Scorers: ranking planted outliers, per-ID separation, validation, and pickle-free save/load."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from ssad.core.errors import SsadError
from ssad.scoring import (
    SCORERS,
    CombinedScorer,
    GaussianScorer,
    KNNScorer,
    OutputScorer,
    Scorer,
    SoftmaxScorer,
    combine_standardized,
    make_scorer,
    per_id_stats,
    select_input,
    standardize_per_id,
)
from ssad.scoring.gaussian import DRIFT_MIN, file_order_drift
from ssad.scoring.thresholds import AlarmThreshold

D = 16
IDS = ("fan/id_00", "fan/id_02")


def _cloud(rng: np.random.Generator, k: int, n: int, spread: float = 1.0) -> np.ndarray:
    center = np.zeros(D)
    center[k] = 8.0
    return center + spread * rng.normal(size=(n, D))


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    """Two IDs, each a tight cloud around its own axis; test = fresh inliers + outliers spread 3.5x wider."""
    rng = np.random.default_rng(0)
    train = np.concatenate([_cloud(rng, 0, 150), _cloud(rng, 1, 150)])
    train_ids = np.repeat(IDS, 150)
    test = np.concatenate(
        [_cloud(rng, 0, 40), _cloud(rng, 0, 20, 3.5), _cloud(rng, 1, 40), _cloud(rng, 1, 20, 3.5)]
    )
    test_ids = np.repeat(IDS, 60)
    y = np.tile(np.r_[np.zeros(40), np.ones(20)], 2)
    return {"train": train, "train_ids": train_ids, "test": test, "test_ids": test_ids, "y": y}


def _outputs(X: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Per-clip model outputs for the same clips: embeddings, a softmax-like -log p table and an own score."""
    dist = np.linalg.norm(X - X.mean(axis=0), axis=1)
    own = np.abs(np.linalg.norm(X, axis=1) - 8.0)
    nlp = np.stack([np.where(ids == c, own, 5.0 + dist) for c in IDS], axis=1)
    return {"embedding": X, "neg_log_prob": nlp, "anomaly_score": own}


def _all_scorers() -> dict[str, Scorer]:
    return {
        "gaussian": GaussianScorer(),
        "gaussian_empirical": GaussianScorer(shrinkage="empirical"),
        "gaussian_type": GaussianScorer(covariance="type"),
        "knn_cosine": KNNScorer(k=1),
        "knn_euclid_k3": KNNScorer(k=3, metric="euclidean"),
        "softmax": SoftmaxScorer(class_names=list(IDS)),
        "output": OutputScorer(),
        "combined": CombinedScorer(
            {"g": GaussianScorer(), "k": KNNScorer(k=2), "o": OutputScorer()},
            weights={"g": 1.0, "k": 0.5, "o": 0.5},
        ),
    }


@pytest.mark.parametrize("name", list(_all_scorers()))
def test_ranks_planted_outliers_above_inliers(data: dict, name: str) -> None:
    scorer = _all_scorers()[name]
    train_out, test_out = _outputs(data["train"], data["train_ids"]), _outputs(data["test"], data["test_ids"])
    assert scorer.fit(select_input(scorer, train_out), data["train_ids"]) is scorer
    scores = scorer.score(select_input(scorer, test_out), data["test_ids"])
    assert scores.shape == (len(data["test"]),)
    assert roc_auc_score(data["y"], scores) > 0.99
    assert scorer.train_scores_.shape == (len(data["train"]),)
    assert list(scorer.ids_) == sorted(IDS)


@pytest.mark.parametrize("scorer", [GaussianScorer(), KNNScorer(k=1), KNNScorer(k=5, metric="euclidean")])
def test_an_inlier_of_one_id_is_an_outlier_for_another(data: dict, scorer: Scorer) -> None:
    scorer.fit(data["train"], data["train_ids"])
    inliers_a = data["test"][:40]
    as_own = scorer.score(inliers_a, [IDS[0]] * 40)
    as_other = scorer.score(inliers_a, [IDS[1]] * 40)
    assert as_other.min() > as_own.max()


def test_knn_training_scores_are_leave_one_out(data: dict) -> None:
    scorer = KNNScorer(k=1, metric="euclidean").fit(data["train"], data["train_ids"])
    assert np.all(scorer.train_scores_ > 0)
    assert np.allclose(scorer.score(data["train"], data["train_ids"]), 0.0, atol=1e-6)


def test_gaussian_stays_finite_with_few_clips_in_many_dimensions() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(10, 64))
    for shrinkage in ("ledoit_wolf", "empirical"):
        scorer = GaussianScorer(shrinkage=shrinkage).fit(X, ["m/id_00"] * 10)
        s = scorer.score(np.r_[rng.normal(size=(5, 64)), 6 + rng.normal(size=(5, 64))], ["m/id_00"] * 10)
        assert np.all(np.isfinite(s)) and s[5:].min() > s[:5].max()


def test_type_covariance_is_shared_by_the_ids_of_a_type_only() -> None:
    """covariance="type": one precision per machine type, each ID its own mean, training scores leave the clip out."""
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(size=(30, 4)) * [1, 1, 1, 5], rng.normal(size=(30, 4)) * [1, 1, 1, 5] + 3,
                        rng.normal(size=(30, 4)) * [5, 1, 1, 1]])
    ids = np.repeat(["fan/id_00", "fan/id_02", "pump/id_00"], 30)
    scorer = GaussianScorer(covariance="type").fit(X, ids)
    fan_a, fan_b, pump = scorer.precisions_
    np.testing.assert_array_equal(fan_a, fan_b)
    assert not np.allclose(fan_a, pump)
    np.testing.assert_allclose(scorer.means_[1], X[30:60].mean(axis=0))
    in_sample = scorer.score(X, ids)
    # out of its mean (n / (n - 1) times farther) and out of the covariance: with 30 clips in 4 dimensions, a little more
    assert np.mean(scorer.train_scores_) > np.mean(in_sample * 30 / 29)
    np.testing.assert_allclose(scorer.train_scores_, in_sample * 30 / 29, rtol=0.25)
    with pytest.raises(ValueError, match="covariance='shared'"):
        GaussianScorer(covariance="shared").fit(X, ids)


def test_auto_covariance_pools_a_type_only_where_held_out_clips_say_so(tmp_path: Path) -> None:
    """covariance="auto": a type whose IDs share a shape in many dimensions is pooled, one whose IDs differ is not."""
    rng = np.random.default_rng(2)
    shape = rng.normal(size=(24, 24))
    shared = [rng.normal(size=(20, 24)) @ shape + 4 * k for k in range(3)]  # 20 clips in 24 dims, one shape
    own = [rng.normal(size=(400, 3)) * scale for scale in ([8, 1, 1], [1, 1, 8])]  # plenty of clips, shapes apart
    lone = [rng.normal(size=(30, 24))]
    ids = np.r_[np.repeat(["fan/id_00", "fan/id_01", "fan/id_02"], 20), np.repeat(["pump/id_00", "pump/id_01"], 400)]
    fan = GaussianScorer(covariance="auto").fit(np.concatenate(shared), ids[:60])
    pump = GaussianScorer(covariance="auto").fit(np.concatenate(own), ids[60:])
    assert fan.covariance_by_type_["fan"]["covariance"] == "type"
    assert fan.covariance_by_type_["fan"]["nll_type"] < fan.covariance_by_type_["fan"]["nll_per_id"]
    assert pump.covariance_by_type_["pump"]["covariance"] == "per_id"
    X = np.concatenate(shared)
    np.testing.assert_allclose(fan.score(X, ids[:60]), GaussianScorer(covariance="type").fit(X, ids[:60]).score(X, ids[:60]))
    np.testing.assert_allclose(fan.train_scores_, GaussianScorer(covariance="type").fit(X, ids[:60]).train_scores_)
    Y = np.concatenate(own)
    np.testing.assert_allclose(pump.train_scores_, GaussianScorer().fit(Y, ids[60:]).train_scores_)
    single = GaussianScorer(covariance="auto").fit(lone[0], ["valve/id_00"] * 30)
    assert single.covariance_by_type_["valve"] == {"covariance": "per_id", "why": "one ID"}
    fan.save(tmp_path / "g")
    back = Scorer.load(tmp_path / "g")
    assert back.covariance_by_type_ == fan.covariance_by_type_
    np.testing.assert_allclose(back.score(X, ids[:60]), fan.score(X, ids[:60]))


def test_type_pooled_training_scores_leave_each_clip_out_of_the_covariance_too() -> None:
    """covariance="type" with fewer clips than dimensions: a training clip's score is its distance to its ID's mean
    and the pooled covariance both fitted without it, so it sits where a new normal clip's does (in the covariance,
    it sat at about half), and a 90 % threshold flags about a tenth of new normal clips instead of all."""
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(4)
    shape = rng.normal(size=(80, 80)) / np.sqrt(80)
    draw = lambda n, k: rng.normal(size=(n, 80)) @ shape + 3.0 * k  # noqa: E731
    names = ["fan/id_00", "fan/id_01"]
    X = np.concatenate([draw(5, 0), draw(5, 1)])  # 10 clips in 80 dimensions: one clip per fold
    ids = np.repeat(names, 5)
    scorer = GaussianScorer(covariance="type").fit(X, ids)
    for i in range(len(X)):
        kept = np.arange(len(X)) != i
        means = {n: X[kept & (ids == n)].mean(axis=0) for n in names}
        deviations = np.stack([X[j] - means[ids[j]] for j in np.flatnonzero(kept)])
        diff = X[i] - means[ids[i]]
        assert scorer.train_scores_[i] == pytest.approx(np.sqrt(diff @ LedoitWolf().fit(deviations).precision_ @ diff))

    X = np.concatenate([draw(20, 0), draw(20, 1)])  # 40 clips: 20 folds of 2 (in the covariance: ratio 0.76, 94 % flagged)
    ids = np.repeat(names, 20)
    scorer = GaussianScorer(covariance="type").fit(X, ids)
    new = np.concatenate([draw(200, 0), draw(200, 1)])
    new_scores = scorer.score(new, np.repeat(names, 200))
    assert 0.9 < np.median(scorer.train_scores_) / np.median(new_scores) < 1.15
    flagged = AlarmThreshold(0.1, method="gamma").fit(scorer.train_scores_, ids).decide(new_scores, np.repeat(names, 200))
    assert 0.02 < flagged.mean() < 0.25


def test_components_score_only_the_leading_directions_and_only_with_enough_clips(tmp_path: Path) -> None:
    """components=k: with at least as many clips as dimensions, the distance within the k leading principal
    directions (a clip moved along a faint direction scores as normal); with fewer clips, all directions."""
    rng = np.random.default_rng(3)
    scales = np.r_[np.full(3, 3.0), np.full(9, 1.0), np.full(4, 0.2)]  # 3 strong, 9 medium, 4 faint directions
    X = rng.normal(size=(200, D)) * scales
    ids = ["fan/id_00"] * 200
    full = GaussianScorer().fit(X, ids)
    top = GaussianScorer(components=3).fit(X, ids)
    assert np.linalg.matrix_rank(top.precisions_[0]) == 3
    faint, strong = np.zeros((1, D)), np.zeros((1, D))
    faint[0, -1], strong[0, 0] = 2.0, 12.0  # 10 faint sds out; 4 strong sds out
    assert full.score(faint, ids[:1])[0] > full.score(strong, ids[:1])[0]
    assert top.score(faint, ids[:1])[0] < 0.5 < 3.0 < top.score(strong, ids[:1])[0]
    # the distance is the Ledoit-Wolf Mahalanobis distance of the projection onto the 3 leading directions
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA
    pca = PCA(n_components=3).fit(X)
    Z = rng.normal(size=(20, D)) * scales * 1.5
    expected = LedoitWolf().fit(pca.transform(X)).mahalanobis(pca.transform(Z)) ** 0.5
    np.testing.assert_allclose(top.score(Z, ids[:20]), expected, rtol=1e-6)
    few = X[:D - 1]  # fewer clips than dimensions: every direction kept
    np.testing.assert_allclose(GaussianScorer(components=3).fit(few, ids[: D - 1]).score(Z, ids[:20]),
                               GaussianScorer().fit(few, ids[: D - 1]).score(Z, ids[:20]))
    top.save(tmp_path / "g")
    back = Scorer.load(tmp_path / "g")
    assert back.components == 3
    np.testing.assert_allclose(back.score(Z, ids[:20]), top.score(Z, ids[:20]))
    enrolled = top.refit_ids(np.r_[X[:D - 1], X[:200]], ["fan/id_02"] * (D - 1) + ["fan/id_04"] * 200)
    by_id = dict(zip(enrolled.ids_, enrolled.precisions_, strict=True))
    assert np.linalg.matrix_rank(by_id["fan/id_02"]) == D  # few clips: drawn towards the others, every direction
    np.testing.assert_allclose(by_id["fan/id_04"], top.precisions_[0])  # enough clips: as `fit` makes it
    assert set(enrolled.fallbacks_) == {"fan/id_02"}  # only the machine drawn towards the others says so
    with pytest.raises(ValueError, match="components=0"):
        GaussianScorer(components=0).fit(X, ids)


def test_leading_directions_when_drifting_only_for_clips_that_drift_in_file_order(tmp_path: Path) -> None:
    """components_when="drifting": a machine whose clips move from one recording session to the next (in file
    order) is scored within its leading directions; the same clips shuffled (a steady machine) keep every one."""
    rng = np.random.default_rng(5)
    scales = np.r_[np.full(3, 3.0), np.full(9, 1.0), np.full(4, 0.2)]
    sessions = np.repeat(rng.normal(size=(8, D)) * scales, 25, axis=0)  # 8 sessions of 25 clips, each its own mean
    drifting = rng.normal(size=(200, D)) * scales + sessions
    steady = drifting[rng.permutation(200)]
    assert file_order_drift(drifting) > DRIFT_MIN > 2.0 > file_order_drift(steady)
    assert file_order_drift(drifting[:10]) == 0.0  # too few clips to cut into blocks
    ids = ["fan/id_00"] * 200
    gate = {"components": 3, "components_when": "drifting"}
    wandering = GaussianScorer(**gate).fit(drifting, ids)
    np.testing.assert_allclose(wandering.precisions_, GaussianScorer(components=3).fit(drifting, ids).precisions_)
    kept = GaussianScorer(**gate).fit(steady, ids)
    np.testing.assert_allclose(kept.precisions_, GaussianScorer().fit(steady, ids).precisions_)
    assert wandering.leading_by_id_["fan/id_00"]["components"] == 3
    assert kept.leading_by_id_["fan/id_00"]["components"] is None
    assert kept.leading_by_id_["fan/id_00"]["drift"] < DRIFT_MIN
    wandering.save(tmp_path / "g")
    assert Scorer.load(tmp_path / "g").leading_by_id_ == wandering.leading_by_id_
    enrolled = wandering.refit_ids(steady, ["fan/id_02"] * 200)
    assert enrolled.leading_by_id_["fan/id_02"]["components"] is None  # a steady machine enrolled later
    assert enrolled.leading_by_id_["fan/id_00"] == wandering.leading_by_id_["fan/id_00"]
    with pytest.raises(ValueError, match="components_when='sometimes'"):
        GaussianScorer(components=3, components_when="sometimes").fit(drifting, ids)


def test_unknown_id_is_refused_with_the_known_ones(data: dict) -> None:
    for scorer in (GaussianScorer(), KNNScorer(), OutputScorer(), SoftmaxScorer(list(IDS))):
        out = _outputs(data["train"], data["train_ids"])
        scorer.fit(select_input(scorer, out), data["train_ids"])
        one = {k: v[:1] for k, v in out.items()}
        with pytest.raises(ValueError, match=r"pump/id_09.*fan/id_00"):
            scorer.score(select_input(scorer, one), ["pump/id_09"])


def test_invalid_arguments_name_the_bad_value_and_the_allowed(data: dict) -> None:
    X, ids = data["train"], data["train_ids"]
    with pytest.raises(ValueError, match=r"shrinkage='oas'.*ledoit_wolf"):
        GaussianScorer(shrinkage="oas").fit(X, ids)
    with pytest.raises(ValueError, match=r"k=0"):
        KNNScorer(k=0).fit(X, ids)
    with pytest.raises(ValueError, match=r"metric='jaccard'.*cosine"):
        KNNScorer(metric="jaccard").fit(X, ids)
    assert "neighbour 149 instead of k=150" in KNNScorer(k=150).fit(X, ids).fallbacks_["fan/id_00"]
    with pytest.raises(ValueError, match=r"3 columns.*2 classes"):
        SoftmaxScorer(list(IDS)).fit(np.zeros((4, 3)), [IDS[0]] * 4)
    with pytest.raises(ValueError, match=r"not among class_names"):
        SoftmaxScorer(list(IDS)).fit(np.zeros((4, 2)), ["pump/id_00"] * 4)
    with pytest.raises(ValueError, match=r"ids has 3 entries but X has 300"):
        GaussianScorer().fit(X, ids[:3])
    with pytest.raises(ValueError, match=r"weights must name exactly"):
        CombinedScorer({"g": GaussianScorer()}, weights={"x": 1.0}).fit({"embedding": X}, ids)
    with pytest.raises(ValueError, match=r"needs model output 'anomaly_score'"):
        CombinedScorer({"o": OutputScorer()}).fit({"embedding": X}, ids)
    with pytest.raises(ValueError, match=r"unknown scorer kind 'lof'.*gaussian"):
        make_scorer("lof")


def test_make_scorer_and_params() -> None:
    assert set(SCORERS) == {"gaussian", "floor", "knn", "softmax", "output", "combined"}
    assert make_scorer("floor").input_name == "spectrum"
    knn = make_scorer("knn", k=4, metric="euclidean")
    assert isinstance(knn, KNNScorer) and knn.get_params() == {"k": 4, "metric": "euclidean", "index": "auto"}
    assert clone(knn).get_params() == knn.get_params()
    assert make_scorer("output", input_name="nll").input_name == "nll"
    assert CombinedScorer.input_name == "*" and SoftmaxScorer.input_name == "neg_log_prob"


@pytest.mark.parametrize("name", list(_all_scorers()))
def test_save_load_gives_identical_scores(data: dict, name: str, tmp_path: Path) -> None:
    scorer = _all_scorers()[name]
    train_out, test_out = _outputs(data["train"], data["train_ids"]), _outputs(data["test"], data["test_ids"])
    scorer.fit(select_input(scorer, train_out), data["train_ids"])
    scorer.save(tmp_path / name)
    loaded = Scorer.load(tmp_path / name)
    assert type(loaded) is type(scorer)
    assert loaded.get_params(deep=False).keys() == scorer.get_params(deep=False).keys()
    before = scorer.score(select_input(scorer, test_out), data["test_ids"])
    after = loaded.score(select_input(loaded, test_out), data["test_ids"])
    np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(loaded.train_scores_, scorer.train_scores_)
    np.testing.assert_array_equal(loaded.train_ids_, scorer.train_ids_)
    assert not list((tmp_path / name).rglob("*.pkl"))


class _Planted:
    """Unpickling this would create `marker`: proof that a crafted file was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("target", ["arrays.npz", "scorer.json"])
def test_crafted_pickle_is_refused_and_not_executed(data: dict, tmp_path: Path, target: str) -> None:
    scorer = GaussianScorer().fit(data["train"], data["train_ids"])
    folder = scorer.save(tmp_path / "scorer")
    marker = tmp_path / "pwned"
    (folder / target).write_bytes(pickle.dumps(_Planted(marker)))
    with pytest.raises(SsadError, match="refused|not a saved ssad scorer"):
        Scorer.load(folder)
    assert not marker.exists()


def test_object_arrays_inside_the_npz_are_refused(data: dict, tmp_path: Path) -> None:
    scorer = GaussianScorer().fit(data["train"], data["train_ids"])
    folder = scorer.save(tmp_path / "scorer")
    marker = tmp_path / "pwned"
    np.savez(folder / "arrays.npz", means=np.array([_Planted(marker)], dtype=object))
    with pytest.raises(SsadError, match="refused"):
        Scorer.load(folder)
    assert not marker.exists()


def test_load_dispatches_only_to_ssad_scorers(data: dict, tmp_path: Path) -> None:
    folder = OutputScorer().fit(np.arange(4.0), ["a"] * 4).save(tmp_path / "s")
    doc = json.loads((folder / "scorer.json").read_text())
    doc["class"] = "LedoitWolf"
    (folder / "scorer.json").write_text(json.dumps(doc))
    with pytest.raises(SsadError, match=r"'LedoitWolf' is not an ssad scorer.*GaussianScorer"):
        Scorer.load(folder)
    with pytest.raises(SsadError, match="missing scorer.json"):
        Scorer.load(tmp_path / "nowhere")
    folder = OutputScorer().fit(np.arange(4.0), ["a"] * 4).save(tmp_path / "t")
    with pytest.raises(SsadError, match="holds a OutputScorer, not a GaussianScorer"):
        GaussianScorer.load(folder)


def test_standardize_per_id_uses_each_ids_training_scores() -> None:
    train = np.r_[np.arange(10.0), 100 + 10 * np.arange(10.0)]
    train_ids = np.repeat(["a", "b"], 10)
    z = standardize_per_id(train, train_ids, train, train_ids)
    for i in ("a", "b"):
        assert z[train_ids == i].mean() == pytest.approx(0, abs=1e-12)
        assert z[train_ids == i].std() == pytest.approx(1)
    np.testing.assert_allclose(
        standardize_per_id(train, train_ids, [4.5, 145.0], ["a", "b"]), [0.0, 0.0], atol=1e-12
    )
    with pytest.raises(ValueError, match=r"\['c'\]"):
        standardize_per_id(train, train_ids, [1.0], ["c"])


def _complementary(seed: int) -> dict:
    """Anomalies of two kinds: half visible only in the embedding, half only in a model score on a 1000x scale."""
    rng = np.random.default_rng(seed)
    n_tr, n_norm, n_half = 200, 100, 50

    def clips(n: int, emb_shift: float, out_shift: float) -> tuple[np.ndarray, np.ndarray]:
        emb = rng.normal(size=(n, 8))
        emb[:, 0] += emb_shift
        return emb, 1000.0 * (5 + rng.normal(size=n) + out_shift)

    tr = clips(n_tr, 0, 0)
    parts = [clips(n_norm, 0, 0), clips(n_half, 4, 0), clips(n_half, 0, 4)]
    te = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    y = np.r_[np.zeros(n_norm), np.ones(2 * n_half)]
    return {
        "train": {"embedding": tr[0], "anomaly_score": tr[1]},
        "test": {"embedding": te[0], "anomaly_score": te[1]},
        "train_ids": ["m/id_00"] * n_tr,
        "test_ids": ["m/id_00"] * len(y),
        "y": y,
    }


def test_combined_is_at_least_as_good_as_its_best_member_when_they_complement() -> None:
    d = _complementary(3)
    members = {"gauss": GaussianScorer(), "own": OutputScorer()}
    combined = CombinedScorer(members).fit(d["train"], d["train_ids"])
    auc = roc_auc_score(d["y"], combined.score(d["test"], d["test_ids"]))
    member_aucs = [
        roc_auc_score(d["y"], m.score(select_input(m, d["test"]), d["test_ids"])) for m in members.values()
    ]
    assert auc >= max(member_aucs)
    assert auc > max(member_aucs) + 0.05


def test_combine_standardized_matches_the_combined_scorer() -> None:
    d = _complementary(4)
    combined = CombinedScorer({"gauss": GaussianScorer(), "own": OutputScorer()}).fit(
        d["train"], d["train_ids"]
    )
    g = combined.members["gauss"]
    table = combine_standardized(
        {"gauss": g.train_scores_, "own": d["train"]["anomaly_score"]},
        d["train_ids"],
        {"gauss": g.score(d["test"]["embedding"], d["test_ids"]), "own": d["test"]["anomaly_score"]},
        d["test_ids"],
    )
    np.testing.assert_allclose(table, combined.score(d["test"], d["test_ids"]))


@pytest.mark.parametrize("n_thin", [1, 2])
def test_thin_ids_get_named_fallbacks_and_the_others_are_scored_as_usual(
    data: dict, n_thin: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(5)
    X = np.r_[data["train"], _cloud(rng, 2, n_thin)]
    ids = np.r_[data["train_ids"], ["fan/id_04"] * n_thin]
    test = np.r_[data["test"], _cloud(rng, 2, 10), _cloud(rng, 2, 10, 3.5)]
    test_ids = np.r_[data["test_ids"], ["fan/id_04"] * 20]
    for scorer in (GaussianScorer(), KNNScorer(k=2), CombinedScorer({"g": GaussianScorer(), "k": KNNScorer()})):
        usual = clone(scorer).fit(data["train"], data["train_ids"]) if not isinstance(scorer, CombinedScorer) else None
        out = {"embedding": X} if isinstance(scorer, CombinedScorer) else X
        scorer.fit(out, ids)
        assert "fan/id_04" in scorer.fallbacks_ and "fan/id_00" not in scorer.fallbacks_
        scores = scorer.score({"embedding": test} if isinstance(scorer, CombinedScorer) else test, test_ids)
        assert np.all(np.isfinite(scores)) and np.all(np.isfinite(scorer.train_scores_))
        assert roc_auc_score(np.r_[np.zeros(10), np.ones(10)], scores[-20:]) > 0.9
        if usual is not None:
            assert np.allclose(scores[:-20], usual.score(data["test"], data["test_ids"]))
            loaded = Scorer.load(scorer.save(tmp_path / type(scorer).__name__ / str(n_thin)))
            assert loaded.fallbacks_ == scorer.fallbacks_
            assert np.allclose(loaded.score(test, test_ids), scores)
    assert "fan/id_04" in caplog.text
    knn = KNNScorer(k=2).fit(X, ids)
    expected = "distance to it" if n_thin == 1 else "neighbour 1 instead of k=2"
    assert expected in knn.fallbacks_["fan/id_04"]


def test_a_single_clip_is_enough_for_a_gaussian_and_knn() -> None:
    X = np.ones((1, D))
    for scorer in (GaussianScorer(), KNNScorer()):
        scorer.fit(X, ["m/id_00"])
        assert np.isfinite(scorer.score(np.zeros((2, D)), ["m/id_00"] * 2)).all()
    assert "Euclidean" in GaussianScorer().fit(X, ["m/id_00"]).fallbacks_["m/id_00"]


def test_gaussian_training_scores_are_leave_one_out() -> None:
    """A training clip's score is its distance to its ID's Gaussian fitted without it: a new clip's scale."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 6))
    ids = ["a/id_00"] * 12
    scorer = GaussianScorer().fit(X, ids)
    alone = GaussianScorer().fit(X[1:], ids[1:])
    np.testing.assert_allclose(scorer.train_scores_[0], alone.score(X[:1], ids[:1])[0])
    in_sample = scorer.score(X, ids)
    assert np.all(scorer.train_scores_ > in_sample)


def test_an_ensemble_enrols_a_machine_member_by_member() -> None:
    """refit_ids: each member refitted as alone, the new ID standardised on its own training scores, the others untouched."""
    from ssad.scoring import SpectrumScorer

    rng = np.random.default_rng(3)
    ids = np.repeat(["fan/id_00", "fan/id_02", "new/x"], 40)
    X = {"embedding": rng.normal(size=(120, 4)) + (ids == "new/x")[:, None] * 3,
         "spectrum": rng.normal(size=(120, 6))}
    old = ids != "new/x"
    new_X = {k: v[~old] for k, v in X.items()}
    base = CombinedScorer({"gaussian": GaussianScorer(), "floor": SpectrumScorer()}).fit(
        {k: v[old] for k, v in X.items()}, ids[old])
    refit = base.refit_ids(new_X, ids[~old])
    assert refit.ids_ == ["fan/id_00", "fan/id_02", "new/x"]
    for j, (name, member) in enumerate(base.members.items()):
        alone = member.refit_ids(new_X[member.input_name], ids[~old])
        np.testing.assert_allclose(refit.members[name].train_scores_, alone.train_scores_)
        _, mean, std = per_id_stats(alone.train_scores_, alone.train_ids_)
        np.testing.assert_allclose(refit.means_[j], mean)
        np.testing.assert_allclose(refit.stds_[j], std)
        np.testing.assert_allclose(refit.means_[j, :2], base.means_[j])
    test = {k: rng.normal(size=(5, v.shape[1])) for k, v in X.items()}
    np.testing.assert_allclose(refit.score(test, ["fan/id_00"] * 5), base.score(test, ["fan/id_00"] * 5))
    assert np.all(np.isfinite(refit.score(test, ["new/x"] * 5)))


def test_softmax_scores_a_machine_trained_as_attribute_classes_by_their_summed_probability() -> None:
    # a class synthesized from an attribute class is another machine: its probability is not the section's
    names = ["fan/section_00|speed=100", "fan/section_00|speed=110", "fan/section_01", "fan/section_00|speed=100@warp1.10"]
    probs = np.array([[0.5, 0.3, 0.1, 0.1], [0.05, 0.05, 0.8, 0.1], [0.1, 0.1, 0.7, 0.1]])
    ids = ["fan/section_00", "fan/section_00", "fan/section_01"]
    scorer = SoftmaxScorer(names).fit(-np.log(probs), ids)
    np.testing.assert_allclose(scorer.score(-np.log(probs), ids), -np.log([0.8, 0.1, 0.7]))
    assert scorer.supports_id("fan/section_00") and not scorer.supports_id("fan/section_00|speed=100")
