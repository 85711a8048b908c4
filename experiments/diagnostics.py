"""Pieces the diagnostic experiments share (embedding_views, layer_views, pseudo_anomaly_choice, fault_directions).

Cached log-mels of a loaded run's clips, the floor's features and the classifier's mean embedding of one clip,
a per-ID Ledoit-Wolf Mahalanobis distance, and mean AUC over machine types (IDs averaged within a type first,
as `make quality` does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch
from sklearn.covariance import LedoitWolf

from ssad.evaluation.metrics import auc_pauc


def cached_log_mels(model, clips: Sequence) -> list[np.ndarray]:  # noqa: ANN001 (an ssad.Encoder)
    """The (n_mels, frames) log-mel of each clip with the run's own parameters, through the feature cache."""
    from ssad.audio.reading import read_clip
    from ssad.evaluation.run import default_cache_dir
    from ssad.features import FeatureCache, compute_log_mels

    cache = FeatureCache(default_cache_dir(), model.log_mel.params, {"sample_rate": model.sample_rate})
    return compute_log_mels([c.path for c in clips], model.log_mel, cache=cache, progress=False,
                            read=partial(read_clip, sample_rate=model.sample_rate))


def floor_features(mel: np.ndarray) -> np.ndarray:
    """The spectral floor's view of one (n_mels, frames) log-mel: each band's mean, then each band's std."""
    return np.concatenate([mel.mean(1), mel.std(1)])


def mean_embedding(model, net: torch.nn.Module, mel: np.ndarray) -> np.ndarray:  # noqa: ANN001 (an ssad.Encoder)
    """The classifier's embedding of one clip: the mean over its sliding windows, as its scorers see it."""
    from ssad.features import sliding_windows

    with torch.inference_mode():
        windows = sliding_windows(torch.from_numpy(mel), model.window_frames, model.window_hop)
        return net.embed(windows).mean(0).numpy()


def gaussian_distances(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of each test row to a Ledoit-Wolf Gaussian fitted on the train rows."""
    fitted = LedoitWolf().fit(train)
    diff = test - fitted.location_
    return np.einsum("ij,jk,ik->i", diff, fitted.precision_, diff)


def machine_ids(clips: Sequence) -> np.ndarray:
    """`type/id` of each clip."""
    from ssad.audio.clips import clip_key

    return np.array([clip_key(c) for c in clips])


def auc_by_type(score: Callable[[np.ndarray, np.ndarray], np.ndarray], train_ids: np.ndarray,
                test_ids: np.ndarray, labels: np.ndarray) -> dict[str, list[tuple[float, float]]]:
    """(AUC, pAUC at FPR <= 0.1) of every ID with both labels, grouped by type; `score(train_mask, test_mask)`.

    AUC and pAUC are `ssad evaluate`'s own (`ssad.evaluation.metrics.auc_pauc`).
    """
    per_type: dict[str, list[tuple[float, float]]] = {}
    for machine in np.unique(test_ids):
        a, b = train_ids == machine, test_ids == machine
        if len(set(labels[b])) == 2:
            per_type.setdefault(machine.split("/")[0], []).append(auc_pauc(labels[b], score(a, b), max_fpr=0.1))
    return per_type


def mean_auc(per_type: dict[str, list[tuple[float, float]]]) -> float:
    """Mean over machine types of each type's mean AUC (an `auc_by_type` result)."""
    return float(np.mean([np.mean([auc for auc, _ in v]) for v in per_type.values()]))
