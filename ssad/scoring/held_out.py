"""Scores of normal clips as a later recording would get them: each scored by the scorer fitted without its recording.

A scorer's own training scores (`Scorer.train_scores_`) leave out one clip at a time, so the clips beside it, of
the same recording, are still in the fit, and the scores never show how far a new recording shifts them. Here a
machine's clips are held out a whole recording group at a time (`ssad.audio.recordings`): the scores carry the shift
between recordings, which is what a threshold promising a false-alarm rate on later recordings must see.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ssad.scoring.base import Scorer, check_ids

__all__ = ["MAX_FOLDS", "MIN_KEPT", "held_out_scores", "rows_of"]

#: most fits one held-out pass makes: a machine's groups beyond this many share folds
MAX_FOLDS = 10
#: fewest clips of a machine a held-out fold must keep: with fewer, the machine's clips are held out one at a time
#: (its scorer's own training scores), since a fit on two or three clips scores far worse than a later recording
MIN_KEPT = 4


def rows_of(X: Any, index: np.ndarray) -> Any:
    """The rows `index` of what a scorer takes: an array, or a dict of arrays (an ensemble's inputs)."""
    if isinstance(X, Mapping):
        return {name: np.asarray(value)[index] for name, value in X.items()}
    return np.asarray(X)[index]


def _folds(ids: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each clip's fold: its group's rank within its machine, modulo the folds; -1 for a machine of one group, or
    whose folds would keep fewer than `MIN_KEPT` of its clips."""
    folds = np.full(len(ids), -1, dtype=np.int64)
    for machine in np.unique(ids):
        rows = np.flatnonzero(ids == machine)
        ranks = np.unique(groups[rows], return_inverse=True)[1] % MAX_FOLDS
        if ranks.max() > 0 and len(rows) - np.bincount(ranks).max() >= MIN_KEPT:
            folds[rows] = ranks
    return folds


def held_out_scores(scorer: Scorer, X: Any, ids: Sequence[str], groups: Sequence[Any], *,
                    base: Scorer | None = None) -> np.ndarray:
    """Each clip's score by `scorer` fitted on its machine's other recording groups (`groups`: a label per clip).

    `scorer` is the fitted scorer (on all of `X`); its own training scores stand in for a machine of one group.
    Without `base` every machine is refitted from scratch per fold (`scorer.fold_copy().fit`), as `Detector.fit`
    does; with `base` (the scorer before these machines were added) each fold refits the machines into it
    (`base.refit_ids`), as enrolment does, so the held-out fits borrow from the other machines as the real one did.
    """
    ids = check_ids(ids, len(np.asarray(groups)))
    groups = np.asarray(groups)
    folds = _folds(ids, groups)
    out = np.full(len(ids), np.nan)
    for fold in np.unique(folds[folds >= 0]):
        held = folds == fold
        kept = np.flatnonzero(~held)
        fitted = (base.refit_ids(rows_of(X, kept), ids[kept]) if base is not None
                  else scorer.fold_copy().fit(rows_of(X, kept), ids[kept]))
        target = np.flatnonzero(held)
        out[target] = fitted.score(rows_of(X, target), ids[target])
    single = folds < 0
    if single.any():
        out[single] = _own_training_scores(scorer, ids)[single]
    return out


def _own_training_scores(scorer: Scorer, ids: np.ndarray) -> np.ndarray:
    """The fitted scorer's training scores of these clips, in their order (each machine's rows as fitted)."""
    out = np.full(len(ids), np.nan)
    train_ids = np.asarray(scorer.train_ids_, dtype=str)
    for machine in np.unique(ids):
        mine = train_ids == machine
        rows = np.flatnonzero(ids == machine)
        if mine.sum() == len(rows):
            out[rows] = np.asarray(scorer.train_scores_)[mine]
    return out
