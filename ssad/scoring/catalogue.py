"""The scorer catalogue, in one place: every scorer by short name, the ones any model with embeddings offers beside
its own, the presets (the shipped encoder's, the default choice, the spectral floor); open to scorers from outside
ssad (`register_scorer`, or a package's `ssad.scorers` entry point)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from ssad.core.errors import SsadError
from ssad.scoring.base import Scorer, allow_loading
from ssad.scoring.combine import CombinedScorer
from ssad.scoring.gaussian import GaussianScorer, SpectrumScorer
from ssad.scoring.knn import KNNScorer
from ssad.scoring.output import OutputScorer
from ssad.scoring.softmax import SoftmaxScorer

__all__ = ["EMBEDDING_SCORERS", "ENTRY_POINT_GROUP", "FLOOR", "PREFERRED_SCORERS", "PRETRAINED_SCORERS", "SCORERS",
           "make_scorer", "offered_scorers", "register_scorer"]

log = logging.getLogger("ssad")

#: short name -> scorer class, for configs, the CLI and `make_scorer`
SCORERS: dict[str, type[Scorer]] = {
    "gaussian": GaussianScorer,
    "floor": SpectrumScorer,
    "knn": KNNScorer,
    "softmax": SoftmaxScorer,
    "output": OutputScorer,
    "combined": CombinedScorer,
}
#: scorers any model with a Gaussian on its embeddings also offers (`--scorers floor ensemble gaussian_top`), beside
#: its own (a model declares those in its `default_scorers`): the spectral floor on the clip's band statistics, the
#: floor and the Gaussian standardised per ID and added, and the Gaussian on the 32 leading principal directions of a
#: machine known from more clips than the embedding has dimensions, whether or not its clips drift (the classifier's
#: own Gaussian does so only for machines whose clips drift; on steady synthetic machines -3:
#: experiments/results/quality_realistic.md)
EMBEDDING_SCORERS: dict[str, dict[str, Any]] = {
    "floor": {"kind": "floor"},
    "ensemble": {"kind": "combined", "members": ("gaussian", "floor")},
    "gaussian_top": {"kind": "gaussian", "covariance": "auto", "components": 32},
}
#: the shipped encoder's detector, its default first: an encoder that heard only synthetic machines scores a new
#: machine better beside its spectral floor than alone (chosen on lathe_vmc and synthetic seed 1: +0.8 and +0.9
#: mean AUC over the Gaussian alone; experiments/results/cold_start.md)
PRETRAINED_SCORERS = ("ensemble", "gaussian", "knn", "floor")
#: the scorer a detector uses when none is named: the first of these that it has
PREFERRED_SCORERS = ("gaussian", "knn", "softmax")
#: the spectral floor, evaluated beside every run: a per-ID Gaussian (Ledoit-Wolf) on each clip's per-band log-mel
#: mean and std. A learned detector that cannot beat it adds nothing.
FLOOR = "floor"
#: the entry-point group through which an installed package adds scorers: `name = "package.module:ScorerClass"`
ENTRY_POINT_GROUP = "ssad.scorers"
_entry_points_read = False


def register_scorer(name: str, cls: type[Scorer], *, with_embeddings: Mapping[str, Any] | None = None) -> None:
    """Add a scorer from outside ssad under a short name; `with_embeddings` (its `make_scorer` arguments) also
    offers it beside the own scorers of every model with embeddings. Saved detectors holding it load again once it
    is registered."""
    if not (isinstance(cls, type) and issubclass(cls, Scorer)):
        raise SsadError(f"scorer {name!r}: {cls!r} is not a subclass of ssad.scoring.Scorer")
    if name in SCORERS and SCORERS[name] is not cls:
        raise SsadError(f"a scorer named {name!r} exists already ({SCORERS[name].__name__})")
    SCORERS[name] = cls
    allow_loading(cls)
    if with_embeddings is not None:
        EMBEDDING_SCORERS[name] = {"kind": name, **with_embeddings}


def _read_entry_points() -> None:
    """Register the scorers installed packages declare in `ENTRY_POINT_GROUP`, once."""
    global _entry_points_read
    if _entry_points_read:
        return
    _entry_points_read = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            register_scorer(point.name, point.load())
        except Exception as error:  # a broken plug-in must not stop ssad's own scorers
            log.warning("scorer %r from %s not registered: %s", point.name, point.value, error)


def make_scorer(kind: str, **params: Any) -> Scorer:
    """Build a scorer by its short name (see `SCORERS`), so configs can name detectors as strings."""
    _read_entry_points()
    if kind not in SCORERS:
        raise ValueError(f"unknown scorer kind {kind!r}; allowed: {sorted(SCORERS)}")
    try:
        return SCORERS[kind](**params)
    except TypeError as err:
        raise ValueError(f"bad parameters {sorted(params)} for scorer {kind!r}: {err}") from None


def offered_scorers(own: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Name -> `make_scorer` arguments of what a model offers: its own scorers, and with a Gaussian on its embeddings
    the `EMBEDDING_SCORERS` it does not name itself."""
    _read_entry_points()
    offered = {name: dict(spec) for name, spec in own.items()}
    if "gaussian" in own:
        offered |= {name: dict(spec) for name, spec in EMBEDDING_SCORERS.items() if name not in own}
    return offered
