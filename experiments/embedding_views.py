"""Score one trained classifier run many ways, beside the spectral floor, to see where its embeddings lose.

    python experiments/embedding_views.py RUN ROOT

For every machine ID: a Gaussian (Ledoit-Wolf) or cosine nearest neighbour on the clip's mean embedding,
on its L2-normalised mean and std over windows, on the backbone's pooled features before the embedding
layer, on each window with the mean or max over the clip, and the classifier's own doubt (softmax) -
all fitted on the root's normal training clips, judged on its test clips. Prints mean AUC / pAUC over
machine types, one line per view. A diagnostic for choosing levers, not a detector.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import torch
from diagnostics import (
    auc_by_type,
    cached_log_mels,
    floor_features,
    gaussian_distances,
    machine_ids,
    mean_auc,
)
from sklearn.covariance import LedoitWolf


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _knn(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    return -(_l2(test) @ _l2(train).T).max(1)


def main(run: str, root: str) -> None:
    import ssad
    from ssad.audio.layout import index_root, select
    from ssad.features import sliding_windows

    model = ssad.load(run)
    net = model.module.net
    clips = index_root(root)
    train, test = select(clips, split="train", label="normal"), select(clips, split="test")

    def windows(chosen: list) -> dict[str, list[np.ndarray]]:
        mels = cached_log_mels(model, chosen)
        out: dict[str, list[np.ndarray]] = {"emb": [], "logp": [], "pooled": [], "stats": []}
        with torch.no_grad():
            for mel in mels:
                w = sliding_windows(torch.from_numpy(mel), model.window_frames, model.window_hop)
                logits, embedding = net(w)
                z = net.input_norm(w)
                parts = [] if net.backbone is None else [net.backbone(z.unsqueeze(1))]
                if net.stats_branch is not None:
                    parts.append(net.stats_branch(z))
                out["emb"].append(embedding.numpy())
                out["logp"].append(torch.log_softmax(logits, -1).numpy())
                out["pooled"].append(torch.cat(parts, 1).numpy())
                out["stats"].append(floor_features(mel))
        return out

    tr, te = windows(train), windows(test)
    tr_ids, te_ids = machine_ids(train), machine_ids(test)
    labels = np.array([c.label == "anomaly" for c in test], dtype=int)

    def report(name: str, score: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        per_type = auc_by_type(score, tr_ids, te_ids, labels)
        auc = mean_auc(per_type)
        pauc = np.mean([np.mean([p for _, p in v]) for v in per_type.values()])
        types = " ".join(f"{t}:{np.mean([a for a, _ in v]):.3f}" for t, v in per_type.items())
        print(f"{name:28s} auc {auc:.3f} pauc {pauc:.3f}  {types}", flush=True)

    def clip_view(key: str, how: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return np.stack([how(x) for x in tr[key]]), np.stack([how(x) for x in te[key]])

    stats_tr, stats_te = np.stack(tr["stats"]), np.stack(te["stats"])
    report("floor: mean+std log-mel", lambda a, b: gaussian_distances(stats_tr[a], stats_te[b]))
    views = {
        "embedding mean": clip_view("emb", lambda x: x.mean(0)),
        "embedding l2 mean+std": clip_view("emb", lambda x: np.concatenate([_l2(x).mean(0), _l2(x).std(0)])),
        "pooled features mean": clip_view("pooled", lambda x: x.mean(0)),
    }
    for name, (x_tr, x_te) in views.items():
        report(f"{name} gaussian", lambda a, b, x_tr=x_tr, x_te=x_te: gaussian_distances(x_tr[a], x_te[b]))
        report(f"{name} knn", lambda a, b, x_tr=x_tr, x_te=x_te: _knn(x_tr[a], x_te[b]))

    def per_window(agg: Callable[[np.ndarray], float]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        def score(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            fitted = LedoitWolf().fit(_l2(np.concatenate([tr["emb"][j] for j in np.where(a)[0]])))
            out = []
            for j in np.where(b)[0]:
                diff = _l2(te["emb"][j]) - fitted.location_
                out.append(agg(np.einsum("ij,jk,ik->i", diff, fitted.precision_, diff)))
            return np.array(out)
        return score

    report("window gaussian, clip mean", per_window(np.mean))
    report("window gaussian, clip max", per_window(np.max))
    names = model.class_names
    report("softmax doubt", lambda a, b: np.array([-te["logp"][j][:, names.index(te_ids[j])].mean()
                                                   for j in np.where(b)[0]]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
