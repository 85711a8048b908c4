"""The scorer catalogue: one place for names and presets, open to a scorer from outside the package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ssad.core.errors import SsadError
from ssad.scoring import Scorer, make_scorer, offered_scorers, register_scorer
from ssad.scoring.catalogue import EMBEDDING_SCORERS, SCORERS


class DistanceToMean(Scorer):
    """A scorer written outside ssad: the Euclidean distance of a clip's embedding to its machine's mean."""

    def fit(self, X, ids):
        X, ids = np.asarray(X, float), np.asarray(ids, str)
        self.ids_ = sorted(set(ids.tolist()))
        self.means_ = {i: X[ids == i].mean(0) for i in self.ids_}
        self.train_ids_, self.train_scores_ = ids, self.score(X, ids)
        return self

    def score(self, X, ids):
        return np.array([np.linalg.norm(x - self.means_[i]) for x, i in zip(np.asarray(X, float), ids, strict=True)])

    def _get_state(self):
        return {"means": np.stack([self.means_[i] for i in self.ids_])}, {}

    def _set_state(self, arrays, meta):
        self.means_ = dict(zip(self.ids_, np.asarray(arrays["means"]), strict=True))


@pytest.fixture
def registered():
    before_scorers, before_offered = dict(SCORERS), dict(EMBEDDING_SCORERS)
    register_scorer("distance", DistanceToMean, with_embeddings={})
    yield
    SCORERS.clear(), SCORERS.update(before_scorers)
    EMBEDDING_SCORERS.clear(), EMBEDDING_SCORERS.update(before_offered)


def test_a_scorer_from_outside_is_made_by_name_and_offered_with_embeddings(registered) -> None:
    rng = np.random.default_rng(0)
    X, ids = rng.normal(size=(20, 4)), ["m/a"] * 10 + ["m/b"] * 10
    scorer = make_scorer("distance").fit(X, ids)
    assert scorer.score(X[:2] + 100, ids[:2]).min() > scorer.train_scores_.max()
    assert offered_scorers({"gaussian": {"kind": "gaussian"}})["distance"] == {"kind": "distance"}
    assert "distance" not in offered_scorers({"baseline_ae": {"kind": "output"}})  # no embeddings, not offered


def test_a_registered_outside_scorer_saves_and_loads(registered, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    X, ids = rng.normal(size=(12, 3)), ["m/a"] * 12
    scorer = make_scorer("distance").fit(X, ids)
    loaded = Scorer.load(scorer.save(tmp_path / "s"))
    assert type(loaded) is DistanceToMean
    np.testing.assert_allclose(loaded.score(X + 1, ids), scorer.score(X + 1, ids))


def test_what_is_not_a_scorer_or_takes_a_name_is_refused() -> None:
    with pytest.raises(SsadError, match="not a subclass"):
        register_scorer("nope", dict)
    with pytest.raises(SsadError, match="exists already"):
        register_scorer("gaussian", DistanceToMean)
