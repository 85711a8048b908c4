"""The picture of an explanation: log-mel with flagged spans and ranges, per-window scores, the clip on its normals."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ssad.core.atomic import write_bytes_atomic
from ssad.core.errors import SsadError
from ssad.explain.explanation import Explanation, format_hz
from ssad.explain.rules import WITHIN_NORMAL

__all__ = ["explanation_png", "plot_explanation"]

_FLAG = "tab:red"


def _band_position(edges_hz: np.ndarray, hz: float) -> float:
    """Where `hz` falls on the spectrogram's band axis (band i spans i to i + 1)."""
    return float(np.interp(hz, edges_hz, np.arange(len(edges_hz))))


def _hz_label(hz: float) -> str:
    return f"{hz / 1000:.1f}k" if hz >= 1000 else f"{hz:.0f}"


def plot_explanation(explanation: Explanation, path: str | Path) -> Path:
    """Draw `explanation` into a PNG at `path` (written atomically): spectrogram, score curve, normal histogram."""
    path = Path(path)
    write_bytes_atomic(path, explanation_png(explanation))
    return path


def explanation_png(explanation: Explanation) -> bytes:
    """The picture of `explanation` (spectrogram, score curve, normal histogram) as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    evidence = explanation.evidence
    if evidence is None:
        raise SsadError("this explanation holds no evidence to draw (it was not made by explain_clip)")
    fig = Figure(figsize=(8.0, 6.6), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(3, 1, height_ratios=[3.0, 1.4, 1.6])
    spec_ax = fig.add_subplot(grid[0])
    curve_ax = fig.add_subplot(grid[1], sharex=spec_ax)
    hist_ax = fig.add_subplot(grid[2])

    duration = evidence.log_mel.shape[1] * evidence.frame_seconds
    n_mels = evidence.log_mel.shape[0]
    image = spec_ax.imshow(evidence.log_mel, origin="lower", aspect="auto", cmap="magma",
                           extent=(0.0, duration, 0.0, n_mels), interpolation="nearest")
    fig.colorbar(image, ax=spec_ax, label="dB", pad=0.01)
    ticks = np.linspace(0, n_mels, 7)
    spec_ax.set_yticks(ticks, [_hz_label(np.interp(t, np.arange(n_mels + 1), evidence.band_edges_hz)) for t in ticks])
    spec_ax.set_ylabel("frequency (Hz, mel scale)")
    observed = explanation.kind == WITHIN_NORMAL  # a normal clip's ranges are observations, drawn dashed
    for number, r in enumerate(explanation.where, start=1):
        low, high = _band_position(evidence.band_edges_hz, r.low_hz), _band_position(evidence.band_edges_hz, r.high_hz)
        spec_ax.axhspan(low, high, facecolor="none", edgecolor="lightgrey" if observed else "cyan", linewidth=1.5,
                        linestyle="--" if observed else "-",
                        label=f"{number}: {format_hz(r.low_hz, r.high_hz)} {r.measure} {r.change_db:+.1f} dB (z {r.z:+.1f})")
        spec_ax.annotate(str(number), (1.0, (low + high) / 2 / n_mels), xycoords="axes fraction", xytext=(3, 0),
                         textcoords="offset points", va="center", fontsize=8, color="black")
    if explanation.where:
        spec_ax.legend(loc="upper left", fontsize=7, framealpha=0.8,
                       title="observed, within normal range" if observed else None, title_fontsize=7)
    for span in explanation.when:
        if not span.whole_clip:
            spec_ax.axvspan(span.start_s, span.end_s, facecolor="none", edgecolor=_FLAG, linewidth=1.5)
    spec_ax.set_title(f"{Path(explanation.path).name}\n{explanation.verdict()}\n{explanation.summary()}", fontsize=8)

    curve_ax.plot(evidence.window_centres_s, evidence.window_scores, marker="o", markersize=3, color="black")
    for span in explanation.when:
        if not span.whole_clip:
            curve_ax.axvspan(span.start_s, span.end_s, color=_FLAG, alpha=0.2)
    curve_ax.set_ylabel("window score")
    curve_ax.set_xlabel("time (s)")
    curve_ax.set_xlim(0.0, duration)

    normal = evidence.normal_scores
    if normal.size:
        hist_ax.hist(normal, bins=min(30, max(5, normal.size // 3)), color="tab:blue", alpha=0.7,
                     label=f"normal training clips ({normal.size})")
    hist_ax.axvline(explanation.threshold, color="black", linestyle="--", label=f"threshold {explanation.threshold:.4g}")
    hist_ax.axvline(explanation.score, color=_FLAG, linewidth=2,
                    label=f"this clip {explanation.score:.4g} (percentile {explanation.percentile:.1f})")
    hist_ax.set_xlabel(f"{explanation.machine} score ({explanation.scorer})")
    hist_ax.set_ylabel("clips")
    hist_ax.legend(fontsize=8, loc="upper right")

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=75)
    return _palette_png(buffer.getvalue())


def _palette_png(png: bytes) -> bytes:
    """The PNG with at most 256 colours: a third of the bytes, the same picture to the eye."""
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256).save(out, format="PNG", optimize=True)
    return out.getvalue()
