"""The face every anomaly scorer shares: fit on normal clips per machine ID, score, save and load without pickle."""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_array, check_is_fitted

from ssad.audio.clips import THIN_CLIPS
from ssad.core.atomic import atomic_path, write_text_atomic
from ssad.core.errors import SsadError
from ssad.core.jsonable import jsonable

__all__ = [
    "THIN_CLIPS",
    "Scorer",
    "SCORER_FILE",
    "ARRAYS_FILE",
    "check_ids",
    "group_indices",
    "check_known_ids",
    "read_arrays",
    "registered_scorers",
    "select_input",
]

#: JSON file naming a saved scorer's class and parameters.
SCORER_FILE = "scorer.json"
#: numeric state of a saved scorer, loaded with ``allow_pickle=False``.
ARRAYS_FILE = "arrays.npz"
_FORMAT = "ssad-scorer"
_VERSION = 1

_REGISTRY: dict[str, type[Scorer]] = {}

log = logging.getLogger("ssad")


def registered_scorers() -> dict[str, type[Scorer]]:
    """Class name -> class of every scorer that `Scorer.load` may rebuild (ssad's own, and those registered)."""
    return dict(_REGISTRY)


def allow_loading(cls: type[Scorer]) -> None:
    """Let `Scorer.load` rebuild saved scorers of `cls`, a scorer from outside ssad registered by name."""
    _REGISTRY[cls.__name__] = cls


def check_ids(ids: Sequence[str] | np.ndarray, n: int) -> np.ndarray:
    """Machine IDs as a 1-D array of str with one entry per clip, so grouping is vectorised."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"ids must be a 1-D sequence of strings, got shape {arr.shape}")
    if len(arr) != n:
        raise ValueError(f"ids has {len(arr)} entries but X has {n} rows; one id per clip is required")
    if n and arr.dtype.kind not in ("U", "O", "S"):
        raise ValueError(f"ids must be strings such as 'fan/id_00', got dtype {arr.dtype}")
    return arr.astype(str)


def group_indices(ids: np.ndarray) -> dict[str, np.ndarray]:
    """Sorted unique id -> row indices of that id (stable order within each id)."""
    uniq, inverse = np.unique(ids, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(uniq)))[:-1]
    return {str(u): idx for u, idx in zip(uniq, np.split(order, bounds), strict=True)}


def check_known_ids(ids: Iterable[str], known: Sequence[str]) -> None:
    """Raise ValueError naming any id not seen in fit, and the known ones."""
    known_set = set(known)
    unknown = sorted(set(ids) - known_set)
    if unknown:
        raise ValueError(
            f"unknown machine id(s) {unknown}: not seen in fit; known ids are {sorted(known_set)}"
        )


def select_input(scorer: Scorer, outputs: Mapping[str, Any]) -> Any:
    """What `scorer.fit`/`score` take from a dict of per-clip model outputs: the one it names, or all for "*"."""
    if scorer.input_name == "*":
        return outputs
    if scorer.input_name not in outputs:
        raise ValueError(
            f"{type(scorer).__name__} needs model output {scorer.input_name!r}; available: {sorted(outputs)}"
        )
    return outputs[scorer.input_name]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SsadError(f"{path}: not a saved ssad scorer (missing {path.name})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SsadError(f"{path}: not a saved ssad scorer (not valid JSON: {err})") from None
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise SsadError(f"{path}: not a saved ssad scorer (expected a JSON object with format={_FORMAT!r})")
    return data


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """A saved scorer's `arrays.npz`, refused unless it holds plain numeric arrays (nothing pickled)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise SsadError(f"{path}: expected an .npz archive of numeric arrays")
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise SsadError(f"{path}: saved scorer is incomplete (missing {path.name})") from None
    except SsadError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise SsadError(f"{path}: refused: not a plain numeric .npz archive ({err})") from None
    for key, arr in arrays.items():
        if arr.dtype.kind not in "biuf":
            raise SsadError(f"{path}: refused: array {key!r} has non-numeric dtype {arr.dtype}")
    return arrays


class Scorer(BaseEstimator):
    """Base of ssad's anomaly scorers: per machine ID, higher score = more anomalous.

    Subclasses set `input_name` (which per-clip model output `fit`/`score` take), implement `fit` (setting
    `ids_` and `train_scores_`, the scores of the training clips themselves, leave-one-out where the scorer
    would otherwise find the clip itself) and `score`, and expose their fitted state through
    `_get_state`/`_set_state` as numeric arrays plus JSON-able metadata. `fallbacks_` maps each ID whose
    few training clips (fewer than `THIN_CLIPS`) got something other than the usual fit to what it got.
    """

    fallbacks_: dict[str, str] = {}  # noqa: RUF012  (replaced per instance by `_note_fallbacks`)

    #: per-clip model output this scorer consumes: "embedding", "neg_log_prob", "anomaly_score", ...
    input_name: str = "embedding"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("ssad.scoring."):
            _REGISTRY[cls.__name__] = cls

    def fit(self, X: Any, ids: Sequence[str]) -> Scorer:
        """Learn what normal looks like for each machine ID from normal training clips."""
        raise NotImplementedError

    def score(self, X: Any, ids: Sequence[str]) -> np.ndarray:
        """(n,) anomaly scores, higher = more anomalous, each clip judged against its own ID."""
        raise NotImplementedError

    @staticmethod
    def _grouped(X: Any, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """`fit`'s checks of feature rows: X as a float (n, d) array, ids as (n,) str, and ids' row groups."""
        X = check_array(X, dtype=np.float64)
        ids = check_ids(ids, len(X))
        return X, ids, group_indices(ids)

    def _validated(self, X: Any, ids: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """`score`'s checks of feature rows: fitted, X a float (n, n_features_in_) array, ids (n,) all seen in fit.

        Returns X as checked and the row indices of each id (see `group_indices`).
        """
        check_is_fitted(self)
        X = check_array(X, dtype=np.float64)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features but the scorer was fitted on {self.n_features_in_}"
            )
        groups = group_indices(check_ids(ids, len(X)))
        check_known_ids(groups, self.ids_)
        return X, groups

    def fold_copy(self) -> Scorer:
        """An unfitted copy to fit on a held-out fold of this scorer's clips (`ssad.scoring.held_out`): it scores the
        held-out clips as this scorer would have, had it not seen them. Scorers with data-driven choices keep them."""
        return clone(self)

    def fit_empty(self, X: Any) -> Scorer:
        """Fitted on no machine yet: a start that `refit_ids` adds machines to (an empty detector's state).

        `X` is what `fit` takes, with no rows: it gives only the width of the inputs to come. Scorers that need
        their machines up front (a classifier's softmax) raise SsadError.
        """
        n_features = int(np.shape(X)[1])
        arrays = self._empty_arrays(n_features)
        self._restore_common({"train_scores": np.empty(0), "train_id_codes": np.empty(0, dtype=np.int64)}, {"ids": []})
        self._set_state(arrays, {})
        self.n_features_in_ = n_features
        return self

    def _empty_arrays(self, n_features: int) -> dict[str, np.ndarray]:
        """`_get_state`'s arrays for no machine at all (scorers that can start empty override it)."""
        raise SsadError(f"{type(self).__name__} needs its machines when it is fitted")

    def supports_id(self, name: str) -> bool:
        """Whether this scorer can be fitted for machine `name` at all (a classifier's softmax: only its classes)."""
        return True

    def refit_ids(self, X: Any, ids: Sequence[str]) -> Scorer:
        """A copy with the IDs in `ids` fitted anew on (X, ids) alone, every other ID's state unchanged.

        This is how a new machine is enrolled, or a machine's normal references grow, without refitting the rest.
        """
        check_is_fitted(self)
        return self._merged(self._fit_new(X, ids))

    def _fit_new(self, X: Any, ids: Sequence[str]) -> Scorer:
        """A fresh scorer fitted on the refit IDs only (scorers that borrow from the other IDs override it)."""
        return clone(self).fit(X, ids)

    def _merged(self, fresh: Scorer) -> Scorer:
        """This scorer with `fresh`'s IDs taken from `fresh`: ids and training scores; subclasses add their arrays."""
        new = set(fresh.ids_)
        merged = clone(self)
        keep = ~np.isin(self.train_ids_, sorted(new))
        merged.ids_ = sorted((set(self.ids_) - new) | new)
        merged.train_ids_ = np.concatenate([np.asarray(self.train_ids_, dtype=str)[keep],
                                            np.asarray(fresh.train_ids_, dtype=str)])
        merged.train_scores_ = np.concatenate([self.train_scores_[keep], fresh.train_scores_])
        old_notes = {k: v for k, v in getattr(self, "fallbacks_", {}).items() if k not in new}
        merged.fallbacks_ = dict(sorted({**old_notes, **getattr(fresh, "fallbacks_", {})}.items()))
        if hasattr(self, "n_features_in_"):
            merged.n_features_in_ = self.n_features_in_
        return merged

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Fitted state beyond `ids_`/`train_ids_`/`train_scores_`, as numeric arrays and JSON-able metadata."""
        return {}, {}

    def _set_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Restore the fitted state written by `_get_state` (`ids_` and the training scores are already set)."""

    def _note_fallbacks(self, fallbacks: Mapping[str, str]) -> None:
        """Record what each thin ID got instead of the usual fit (`fallbacks_`), with one warning per ID."""
        self.fallbacks_ = dict(sorted(fallbacks.items()))
        for name, what in self.fallbacks_.items():
            log.warning("%s: %s: %s", type(self).__name__, name, what)

    def _common_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        codes = np.searchsorted(np.asarray(self.ids_, dtype=str), self.train_ids_)
        meta = {"ids": list(self.ids_), "fallbacks": dict(getattr(self, "fallbacks_", {}))}
        return {"train_scores": self.train_scores_, "train_id_codes": codes}, meta

    def _restore_common(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        ids = [str(i) for i in meta["ids"]]
        if ids != sorted(set(ids)):
            raise ValueError("'ids' must be sorted and unique")
        codes = np.asarray(arrays["train_id_codes"])
        scores = np.asarray(arrays["train_scores"], dtype=np.float64)
        if codes.dtype.kind not in "iu" or codes.shape != scores.shape or scores.ndim != 1:
            raise ValueError(f"train_id_codes {codes.shape} / train_scores {scores.shape} do not match")
        if len(codes) and (codes.min() < 0 or codes.max() >= len(ids)):
            raise ValueError("train_id_codes out of range")
        self.ids_ = ids
        self.train_ids_ = np.asarray(ids, dtype=str)[codes] if ids else np.array([], dtype=str)
        self.train_scores_ = scores
        self.fallbacks_ = {str(k): str(v) for k, v in dict(meta.get("fallbacks") or {}).items()}

    def save(self, directory: str | Path) -> Path:
        """Write the fitted scorer as `scorer.json` + `arrays.npz` in `directory` (no pickle), so it can be reloaded."""
        check_is_fitted(self)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays, meta = self._get_state()
        common_arrays, common_meta = self._common_state()
        arrays, meta = {**common_arrays, **arrays}, {**common_meta, **meta}
        with atomic_path(directory / ARRAYS_FILE) as tmp:
            np.savez(tmp, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
        self._write_json(directory, meta)
        return directory

    def _write_json(
        self, directory: Path, meta: Mapping[str, Any], params: Mapping[str, Any] | None = None
    ) -> None:
        doc = {
            "format": _FORMAT,
            "version": _VERSION,
            "class": type(self).__name__,
            "params": jsonable(self.get_params(deep=False) if params is None else params),
            "state": jsonable(meta),
        }
        write_text_atomic(directory / SCORER_FILE, json.dumps(doc, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> Scorer:
        """Rebuild a scorer saved by `save`; only ssad's registered scorer classes are accepted."""
        directory = Path(directory)
        doc = _read_json(directory / SCORER_FILE)
        name = doc.get("class")
        if name not in _REGISTRY:
            raise SsadError(
                f"{directory / SCORER_FILE}: refused: class {name!r} is not an ssad scorer; "
                f"allowed: {sorted(_REGISTRY)}"
            )
        target = _REGISTRY[name]
        if not issubclass(target, cls):
            raise SsadError(f"{directory}: holds a {name}, not a {cls.__name__}")
        params = doc.get("params")
        state = doc.get("state")
        if not isinstance(params, dict) or not isinstance(state, dict):
            raise SsadError(f"{directory / SCORER_FILE}: 'params' and 'state' must be JSON objects")
        return target._from_saved(directory, params, state)

    @classmethod
    def _from_saved(cls, directory: Path, params: dict[str, Any], state: dict[str, Any]) -> Scorer:
        try:
            scorer = cls(**params)
        except TypeError as err:
            raise SsadError(f"{directory / SCORER_FILE}: bad parameters for {cls.__name__}: {err}") from None
        arrays = read_arrays(directory / ARRAYS_FILE)
        try:
            scorer._restore_common(arrays, state)
            scorer._set_state(arrays, state)
        except (KeyError, ValueError, TypeError) as err:
            raise SsadError(f"{directory}: saved {cls.__name__} state is inconsistent: {err!r}") from None
        return scorer
