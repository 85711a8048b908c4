"""Where does a data set's fault evidence live? The floor's own features squeezed to few directions, and others.

    python experiments/fault_directions.py RUN ROOT

Every view is a per-ID Gaussian (Ledoit-Wolf) fitted on the root's normal training clips and judged on its
test clips, as the floor is. The views:
- the floor (each clip's per-band log-mel mean and std), and its mean or std half alone;
- the floor's features projected onto their top k principal directions (fitted on all training clips) and
  onto the ID-discriminant directions (shrunk LDA): what any compact embedding that keeps the directions in
  which clips vary most, or those that tell IDs apart, could keep at best;
- the whole clip's log power spectrum (Welch) at two resolutions: the input of a second, spectrum branch;
- the trained classifier's mean embedding, and its over-fitting gap: the median leave-one-out distance of a
  training clip over the median distance of a normal test clip (1 when the network has not memorised its
  training clips).
A diagnostic for choosing levers, not a detector. RUN is a trained classifier run; its log-mel settings are
used for every view.
"""

from __future__ import annotations

import sys

import numpy as np
import soundfile as sf
from diagnostics import (
    auc_by_type,
    cached_log_mels,
    floor_features,
    gaussian_distances,
    machine_ids,
    mean_auc,
    mean_embedding,
)
from scipy.signal import welch
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

WELCH_SEGMENTS = (1024, 4096)  # samples per Welch segment: 513 and 2049 frequency bins


def _log_psds(path: str) -> list[np.ndarray]:
    """Log power spectrum of the whole clip (first channel), averaged over Welch segments of each length."""
    x, rate = sf.read(path, dtype="float32", always_2d=True)
    return [np.log(welch(x[:, 0], rate, nperseg=n)[1] + 1e-12) for n in WELCH_SEGMENTS]


def _loo_distances(x: np.ndarray, at_most: int = 40) -> np.ndarray:
    """Distance of each of the first `at_most` rows to a Gaussian fitted on all the other rows."""
    return np.array([gaussian_distances(np.delete(x, i, 0), x[i:i + 1])[0] for i in range(min(len(x), at_most))])


def main(run: str, root: str) -> None:
    import ssad
    from ssad.audio.layout import index_root, select

    model = ssad.load(run)
    net = model.module.net.eval()
    clips = index_root(root)
    train, test = select(clips, split="train", label="normal"), select(clips, split="test")
    tr_ids, te_ids = machine_ids(train), machine_ids(test)
    labels = np.array([c.label == "anomaly" for c in test], dtype=int)

    def features(chosen: list) -> tuple[np.ndarray, np.ndarray]:
        mels = cached_log_mels(model, chosen)
        return np.stack([floor_features(m) for m in mels]), np.stack([mean_embedding(model, net, m) for m in mels])

    (s_tr, e_tr), (s_te, e_te) = features(train), features(test)

    def report(name: str, x_tr: np.ndarray, x_te: np.ndarray) -> None:
        per_type = auc_by_type(lambda a, b: gaussian_distances(x_tr[a], x_te[b]), tr_ids, te_ids, labels)
        auc = mean_auc(per_type)
        types = " ".join(f"{t}:{np.mean([a for a, _ in v]):.3f}" for t, v in per_type.items())
        print(f"{name:40s} auc {auc:.3f}  ({x_tr.shape[1]} dims)  {types}", flush=True)

    half = s_tr.shape[1] // 2
    report("floor: mean+std log-mel", s_tr, s_te)
    report("floor, mean half", s_tr[:, :half], s_te[:, :half])
    report("floor, std half", s_tr[:, half:], s_te[:, half:])
    for k in (k for k in (8, 16, 32, 64) if k < min(s_tr.shape)):
        pca = PCA(k).fit(s_tr)
        report(f"floor on its top {k} principal directions", pca.transform(s_tr), pca.transform(s_te))
    if len(set(tr_ids)) > 2:
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(s_tr, tr_ids)
        report(f"floor on its {len(set(tr_ids)) - 1} ID-discriminant directions", lda.transform(s_tr),
               lda.transform(s_te))
    psd_tr, psd_te = ([_log_psds(str(c.path)) for c in chosen] for chosen in (train, test))
    for k, nperseg in enumerate(WELCH_SEGMENTS):
        report(f"whole-clip log spectrum, {nperseg // 2 + 1} bins",
               np.stack([p[k] for p in psd_tr]), np.stack([p[k] for p in psd_te]))
    report("classifier: mean embedding", e_tr, e_te)
    for name, x_tr, x_te in (("classifier embedding", e_tr, e_te), ("floor", s_tr, s_te)):
        ratios = []
        for machine in np.unique(te_ids):
            a, b = tr_ids == machine, (te_ids == machine) & (labels == 0)
            if b.any() and a.sum() > 2:
                ratios.append(np.median(_loo_distances(x_tr[a])) / np.median(gaussian_distances(x_tr[a], x_te[b])))
        print(f"{name}: leave-one-out training / normal test distance, median over IDs {np.median(ratios):.2f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
