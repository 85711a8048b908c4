"""Could ensemble members be chosen without labels? Score each member on synthesized pseudo-anomalies.

    python experiments/pseudo_anomaly_choice.py RUN ROOT

For every machine ID of ROOT, its normal training clips are split in three folds; each member (the
classifier's mean embedding, and the floor's mean+std log-mel) fits a Ledoit-Wolf Gaussian on two folds and
scores the third fold's clips and three altered copies of them, made on the log-mel: "eq" (one band +-3-6
dB), "noise" (broadband noise at a tenth of the clip's mean power) and "tone" (one mel band +10 dB). Prints
each member's mean pseudo-AUC per alteration. No test clip is used: a member choice by these figures would be
label-free. A diagnostic for the ensemble, not a detector.
"""

from __future__ import annotations

import argparse

import numpy as np
from diagnostics import cached_log_mels, floor_features, gaussian_distances, machine_ids, mean_embedding
from sklearn.metrics import roc_auc_score

FOLDS = 3


def _altered(mel: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Pseudo-anomalous copies of one (n_mels, frames) log-mel in dB."""
    n_mels = mel.shape[0]
    position = np.arange(n_mels) / n_mels
    centre, width, gain = rng.uniform(0.1, 0.9), rng.uniform(0.03, 0.12), rng.choice([-1, 1]) * rng.uniform(3, 6)
    power = 10 ** (mel / 10)
    tone = mel.copy()
    tone[rng.integers(5, n_mels - 5)] += 10.0
    return {
        "eq": (mel + gain * np.exp(-0.5 * ((position - centre) / width) ** 2)[:, None]).astype(np.float32),
        "noise": (10 * np.log10(power + 0.1 * power.mean())).astype(np.float32),
        "tone": tone,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("root")
    args = parser.parse_args(argv)

    import ssad
    from ssad.audio.layout import index_root, select

    model = ssad.load(args.run)
    net = model.module.net.eval()
    train = select(index_root(args.root), split="train", label="normal")
    mels = cached_log_mels(model, train)
    rng = np.random.default_rng(0)

    def members(mel: np.ndarray) -> dict[str, np.ndarray]:
        return {"classifier": mean_embedding(model, net, mel), "floor": floor_features(mel)}

    plain = [members(mel) for mel in mels]
    altered: dict[str, list[dict[str, np.ndarray]]] = {}
    for mel in mels:
        for kind, copy in _altered(mel, rng).items():
            altered.setdefault(kind, []).append(members(copy))
    ids = machine_ids(train)
    aucs: dict[tuple[str, str], list[float]] = {}
    for machine in np.unique(ids):
        index = np.where(ids == machine)[0]
        folds = np.array_split(rng.permutation(index), FOLDS)
        for member in plain[0]:
            for kind, copies in altered.items():
                normal, odd = [], []
                for fold in folds:
                    fitted = np.stack([plain[i][member] for i in np.setdiff1d(index, fold)])
                    normal.append(gaussian_distances(fitted, np.stack([plain[i][member] for i in fold])))
                    odd.append(gaussian_distances(fitted, np.stack([copies[i][member] for i in fold])))
                scores = np.concatenate(normal + odd)
                labels = np.r_[np.zeros(sum(map(len, normal))), np.ones(sum(map(len, odd)))]
                aucs.setdefault((member, kind), []).append(roc_auc_score(labels, scores))
    for (member, kind), values in sorted(aucs.items()):
        print(f"{member:10s} {kind:6s} pseudo-AUC {np.mean(values):.3f}")


if __name__ == "__main__":
    main()
