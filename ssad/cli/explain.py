"""`ssad explain`: score recordings with a saved detector and say when, where and what kind of change, with a picture."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ssad.cli.options import shared_options
from ssad.core.errors import SsadError

__all__ = ["add_explain_command", "plot_paths"]


def add_explain_command(commands: Any) -> None:
    """Register `ssad explain` on the main parser's subcommands."""
    parser = commands.add_parser(
        "explain", help="score recordings and explain each score: when, which frequencies, what kind of change",
        description="For each clip: score, threshold, decision, its percentile among the machine's normal clips, "
        "the time spans that raised the score, the frequency ranges that depart from the machine's normal "
        "clips (change in dB and z-score) and the kind of change in words.", parents=shared_options(device="cpu"))
    parser.add_argument("--detector", required=True, help="saved detector folder (from ssad evaluate/detector)")
    parser.add_argument("clips", nargs="+", metavar="CLIP", help="recordings to explain")
    parser.add_argument("--machine", default=None, help="the machine all clips are from (default: from DCASE names)")
    parser.add_argument("--scorer", default=None, help="default: the detector's own choice")
    parser.add_argument("--json", action="store_true", help="a JSON list, one object per clip")
    parser.add_argument("--plot", default=None, metavar="OUT.png",
                        help="draw the explanation; with several clips, OUT_<clip name>.png for each")
    parser.set_defaults(handler=run_explain)


def plot_paths(out: str | Path, clips: list[str]) -> list[Path]:
    """Where each clip's picture goes: `out` itself for one clip, else `out`'s stem + '_' + the clip's stem."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise SsadError(f"--plot {out}: give a .png file name")
    if len(clips) == 1:
        return [out]
    return [out.with_name(f"{out.stem}_{Path(c).stem}.png") for c in clips]


def _text(explanation: Any) -> str:
    from ssad.explain.rules import WITHIN_NORMAL

    normal = explanation.kind == WITHIN_NORMAL
    lines = [f"{explanation.path}", f"  {explanation.verdict()}", f"  kind: {explanation.kind}"]
    for span in explanation.when if not normal else ():
        where = "throughout the clip" if span.whole_clip else f"{span.start_s:.2f}-{span.end_s:.2f} s"
        lines.append(f"  when: {where} (window score up to {span.peak_score:.4g})")
    label = "observed, within normal range" if normal else "where"
    lines += [f"  {label}: {r.low_hz:.0f}-{r.high_hz:.0f} Hz, {r.measure} {r.change_db:+.1f} dB (z {r.z:+.1f})"
              for r in explanation.where]
    if not explanation.where and explanation.note is None and not normal:
        lines.append("  where: no frequency range departs from the machine's normal clips")
    if explanation.note:
        lines.append(f"  note: {explanation.note}")
    return "\n".join(lines)


def run_explain(args: argparse.Namespace) -> None:
    """The `ssad explain` handler."""
    from ssad.detector import Detector
    from ssad.explain.explanation import explain
    from ssad.explain.plot import plot_explanation

    missing = [c for c in args.clips if not Path(c).is_file()]
    if missing:
        raise SsadError(f"no such file(s): {', '.join(missing)}")
    pictures = plot_paths(args.plot, args.clips) if args.plot else [None] * len(args.clips)
    detector = Detector.load(args.detector, device=args.device)
    explanations = []
    for clip, picture in zip(args.clips, pictures, strict=True):
        explanation = explain(detector, clip, args.machine, scorer=args.scorer)
        if picture is not None:
            plot_explanation(explanation, picture)
        explanations.append(explanation)
        if not args.json:
            print(_text(explanation) + (f"\n  picture: {picture}" if picture is not None else ""), flush=True)
    if args.json:
        print(json.dumps([e.as_dict() for e in explanations], indent=2))
