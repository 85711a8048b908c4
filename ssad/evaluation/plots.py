"""Pictures of an evaluation: ROC curves, score histograms with thresholds, and t-SNE maps of raw features vs embeddings."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from ssad.core.atomic import atomic_path
from ssad.evaluation.metrics import binary_labels
from ssad.evaluation.table import ScoreTable, machine_key

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_roc", "plot_histograms", "plot_tsne_pair", "safe_name"]

_COLORS = {"normal": "tab:blue", "anomaly": "tab:red", "unknown": "tab:gray"}


def safe_name(name: str) -> str:
    """`name` with anything but letters, digits, ``.``, ``-`` and ``_`` replaced by ``_``, for file names."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    return cleaned or "unnamed"


def _figure(
    n_panels: int, panel_size: tuple[float, float] = (4.5, 3.8), max_cols: int = 4
) -> tuple[Figure, np.ndarray]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(max_cols, max(1, n_panels))
    rows = math.ceil(max(1, n_panels) / cols)
    fig = Figure(figsize=(panel_size[0] * cols, panel_size[1] * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[n_panels:]:
        ax.set_axis_off()
    return fig, axes


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    fig.clear()
    return path


def plot_roc(table: ScoreTable, out_dir: str | Path, max_fpr: float = 0.1) -> list[Path]:
    """One PNG per machine type (``roc_<type>.png``): a panel per scorer, a ROC curve per machine ID."""
    test = table.filter(split="test", label=["normal", "anomaly"])
    written = []
    for mtype in sorted(set(test.machine_type.tolist())):
        part = test.filter(machine_type=mtype)
        scorers = part.scorers
        fig, axes = _figure(len(scorers))
        for ax, scorer in zip(axes, scorers, strict=False):
            mine = part.filter(scorer=scorer)
            for mid in sorted(set(mine.machine_id.tolist())):
                sel = mine.machine_id == mid
                y = binary_labels(mine.label[sel])
                if len(np.unique(y)) < 2:
                    continue
                fpr, tpr, _ = roc_curve(y, mine.score[sel])
                ax.plot(fpr, tpr, lw=1.4, label=f"{mid} (AUC {roc_auc_score(y, mine.score[sel]):.3f})")
            ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
            ax.axvline(max_fpr, color="0.4", lw=0.8, ls=":")
            ax.set(
                xlim=(0, 1),
                ylim=(0, 1.01),
                xlabel="false positive rate",
                ylabel="true positive rate",
                title=scorer,
            )
            ax.legend(loc="lower right", fontsize="small")
        fig.suptitle(f"ROC: {mtype}")
        written.append(_save(fig, Path(out_dir) / f"roc_{safe_name(mtype)}.png"))
    return written


def _threshold_for(thresholds: Mapping[str, Any] | None, scorer: str, key: str) -> float | None:
    if thresholds is None or scorer not in thresholds:
        return None
    per_id = thresholds[scorer]
    per_id = getattr(per_id, "threshold_", per_id)
    value = per_id.get(key) if isinstance(per_id, Mapping) else None
    return None if value is None else float(value)


def plot_histograms(
    table: ScoreTable, thresholds: Mapping[str, Any] | None, out_dir: str | Path
) -> list[Path]:
    """One PNG per (scorer, machine type) (``hist_<scorer>_<type>.png``): per machine ID, histograms of the
    normal, anomalous (and unlabelled) test scores with the ID's decision threshold as a vertical line.

    `thresholds` maps scorer -> a fitted `AlarmThreshold` or a dict ``"type/id"`` -> threshold (or is None).
    """
    test = table.filter(split="test")
    written = []
    for scorer in test.scorers:
        mine = test.filter(scorer=scorer)
        for mtype in sorted(set(mine.machine_type.tolist())):
            part = mine.filter(machine_type=mtype)
            ids = sorted(set(part.machine_id.tolist()))
            fig, axes = _figure(len(ids), panel_size=(4.2, 3.2))
            for ax, mid in zip(axes, ids, strict=False):
                sel = part.machine_id == mid
                scores, labels = part.score[sel], part.label[sel]
                bins = np.histogram_bin_edges(scores, bins=min(40, max(5, int(np.sqrt(scores.size)) * 2)))
                for label, color in _COLORS.items():
                    s = scores[labels == label]
                    if s.size:
                        ax.hist(s, bins=bins, alpha=0.55, color=color, label=f"{label} ({s.size})")
                t = _threshold_for(thresholds, scorer, str(machine_key(mtype, mid)))
                if t is not None:
                    ax.axvline(t, color="k", lw=1.2, ls="--", label=f"threshold {t:.3g}")
                ax.set(title=mid, xlabel="anomaly score", ylabel="clips")
                ax.legend(fontsize="small")
            fig.suptitle(f"{scorer}: {mtype}")
            written.append(_save(fig, Path(out_dir) / f"hist_{safe_name(scorer)}_{safe_name(mtype)}.png"))
    return written


def _tsne(X: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    n = len(X)
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    perplexity = min(perplexity, n - 1.0)
    Z = StandardScaler().fit_transform(X)
    # t-SNE's OpenMP loops spin-wait when cores are shared; for one machine's few hundred clips a single
    # thread is several times faster than two
    with threadpool_limits(limits=1, user_api="openmp"):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(Z)


def plot_tsne_pair(
    raw_features: Any, embeddings: Any, labels: Any, path: str | Path, title: str = "", seed: int = 0
) -> Path:
    """Two t-SNE maps side by side of one machine's clips, normal vs anomalous: raw features (e.g. per-clip mean
    log-mel) on the left, learned embeddings on the right, to show what the embedding separates.
    """
    raw = np.asarray(raw_features, dtype=np.float64)
    emb = np.asarray(embeddings, dtype=np.float64)
    lab = np.asarray(labels)
    if raw.ndim != 2 or emb.ndim != 2:
        raise ValueError(f"raw_features {raw.shape} and embeddings {emb.shape} must be 2-D (clips, features)")
    if not len(raw) == len(emb) == len(lab):
        raise ValueError(
            f"raw_features, embeddings and labels differ in length: {len(raw)}, {len(emb)}, {len(lab)}"
        )
    if len(lab) < 5:
        raise ValueError(f"t-SNE needs at least 5 clips, got {len(lab)}")
    if lab.dtype.kind not in "USO":
        lab = np.where(binary_labels(lab) == 1, "anomaly", "normal")
    lab = lab.astype(str)
    fig, axes = _figure(2, panel_size=(5.0, 4.6))
    for ax, X, name in zip(axes, (raw, emb), ("raw features", "embeddings"), strict=True):
        Y = _tsne(X, seed)
        for label, color in _COLORS.items():
            sel = lab == label
            if np.any(sel):
                ax.scatter(
                    Y[sel, 0], Y[sel, 1], s=10, alpha=0.75, color=color, label=f"{label} ({int(sel.sum())})"
                )
        ax.set(title=f"t-SNE of {name}", xticks=[], yticks=[])
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, Path(path))
