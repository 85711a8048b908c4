"""How often `ssad explain` points at the injected fault, per fault family, on a synthetic root with faults.csv.

    python experiments/explain_accuracy.py --detector DET --data ROOT [--faults ROOT/faults.csv] [--examples 3]

ROOT is made by `ssad synth` (its faults.csv: `path,machine_type,machine_id,family,severity,start_s,end_s,
low_hz,high_hz`, one row per anomalous clip, path relative to ROOT, the whole clip or the whole band where a
fault has neither). Every anomalous clip is explained with the detector's default scorer; over the clips the
detector flags (score above threshold), per family:
- where: the top frequency range overlaps the injected band;
- when: the top time span is shorter than the clip and overlaps the injected span, over transient faults only
  (a span shorter than `TRANSIENT_SHARE` of the clip; "throughout" would overlap any span, so it counts as a miss);
- kind: the kind is one the family is expected to show (`FAMILY_KINDS`); families missing from the table are
  reported as unknown and left out of the kind figure.
Also: how many flagged faults that last the whole clip got "throughout" as their top time span, and the share
one constant kind would get right (the best such answer), the baseline for *kind*.
Writes explain.md and explain.csv into experiments/results/ (or --out), and with --examples N the pictures
of N flagged clips of different families and kinds (right kind first) as explain_<family>.png. `--summary
LABEL=CSV` (repeatable) adds a table of those figures for other runs' explain.csv (other seeds, other code).
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

RESULTS = Path(__file__).resolve().parent / "results"
#: a fault whose span is shorter than this share of its clip is transient (the "when" figure counts it)
TRANSIENT_SHARE = 0.8
#: the kinds of change each fault family should show (ssad.explain.rules' words), written from how the synthetic
#: generator makes each fault (ssad/synthesis/machines/), before measuring; several where the physics allows more
#: than one reading. Families missing here are reported as unknown.
FAMILY_KINDS: dict[str, tuple[str, ...]] = {
    # fan: 1x/2x shaft lines up 8 dB with sidebands, and a guard rattling once per turn
    "unbalance": ("new narrowband line", "impulsive bursts"),
    # fan: the speed moves 3.5 %, every rotation line with it
    "voltage_change": ("moved narrowband line", "new narrowband line"),
    # fan and pump: the flow hump sinks, blade or vane lines rise and move, the flow surges
    "clogging": ("moved narrowband line", "new narrowband line", "broadband level drop", "broadband level rise",
                 "changed rhythm or timing"),
    # pump: a seal hissing in a narrow band, in spurts
    "leakage": ("new narrowband line", "impulsive bursts"),
    # pump: a crackle of hard hits while debris passes
    "contamination": ("impulsive bursts",),
    # slide rail: a click each time the carriage rolls over a dent
    "rail_damage": ("impulsive bursts",),
    # slide rail: stroke timing jitters, the slack belt slaps its guard
    "loose_belt": ("changed rhythm or timing", "impulsive bursts"),
    # slide rail: stick-slip squeal (a harmonic series) in some strokes, judder before each stop
    "no_grease": ("new narrowband line", "impulsive bursts"),
    # valve: the plunger opens late with a weaker click; and so lets less flow through each opening: valve.py delays
    # the opening (`stick_delay_s`, up to 60 ms of a ~190-ms opening) while the closing stays, and slows the flow's
    # rise (`stick_attack`: 18 -> up to 72 ms), so each cycle's flow noise (300-7500 Hz) is shorter and weaker,
    # about -1 to -2.5 dB over the flow band against a normal clip-to-clip spread of 0.5 dB: a broadband level
    # drop (added after the first measurement, from this reading of the code; `ORIGINAL_KINDS` is the table before)
    "contamination_sticking": ("changed rhythm or timing", "broadband level drop"),
    # valve: the plunger bounces, extra clicks for a second or two
    "contamination_chatter": ("impulsive bursts", "changed rhythm or timing"),
    # valve: the seat whistles in a narrow band, in spurts, while closed
    "contamination_leak": ("new narrowband line", "impulsive bursts"),
}
#: the table as first written, before the one correction above (contamination_sticking's level drop)
ORIGINAL_KINDS = {**FAMILY_KINDS, "contamination_sticking": ("changed rhythm or timing",)}
FIELDS = ("path", "machine_type", "machine_id", "family", "severity", "start_s", "end_s", "low_hz", "high_hz")


@dataclass
class Fault:
    """One row of faults.csv."""

    path: Path
    machine: str
    family: str
    severity: float
    start_s: float
    end_s: float
    low_hz: float
    high_hz: float


def read_faults(path: Path, root: Path) -> list[Fault]:
    """faults.csv rows, paths made absolute under `root`; a clear message for a missing file or column."""
    if not path.is_file():
        raise SystemExit(f"{path}: no faults.csv (the synthetic generator writes it at the root)")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [f for f in FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise SystemExit(f"{path}: lacks column(s) {missing}; expected {','.join(FIELDS)}")
        return [Fault(root / row["path"], f"{row['machine_type']}/{row['machine_id']}", row["family"],
                      float(row["severity"]), float(row["start_s"]), float(row["end_s"]), float(row["low_hz"]),
                      float(row["high_hz"])) for row in reader]


def overlaps(low: float, high: float, other_low: float, other_high: float) -> bool:
    """Whether two intervals share more than a point."""
    return min(high, other_high) > max(low, other_low)


def judge(fault: Fault, explanation, duration_s: float, nyquist: float) -> dict:
    """One clip's row: the decision, and whether where, when and kind point at the fault."""
    top_where = explanation.where[0] if explanation.where else None
    top_when = explanation.when[0] if explanation.when else None
    transient = fault.end_s - fault.start_s < TRANSIENT_SHARE * duration_s
    expected = FAMILY_KINDS.get(fault.family)
    return {
        "path": fault.path.name, "machine": fault.machine, "family": fault.family, "severity": fault.severity,
        "score": round(explanation.score, 4), "threshold": round(explanation.threshold, 4),
        "flagged": explanation.decision, "kind": explanation.kind,
        "where": f"{top_where.low_hz:.0f}-{top_where.high_hz:.0f}" if top_where else "",
        "where_measure": top_where.measure if top_where else "",
        "where_z": top_where.z if top_where else "",
        "fault_hz": f"{fault.low_hz:.0f}-{fault.high_hz:.0f}",
        "where_hit": int(top_where is not None and overlaps(top_where.low_hz, top_where.high_hz, fault.low_hz,
                                                           fault.high_hz)),
        "transient": int(transient),
        "whole_band": int(fault.low_hz <= 0 and fault.high_hz >= nyquist),
        "when": f"{top_when.start_s:.2f}-{top_when.end_s:.2f}" if top_when else "",
        "fault_s": f"{fault.start_s:.2f}-{fault.end_s:.2f}",
        "when_whole": int(top_when is None or top_when.whole_clip),
        "when_chance": round(chance_overlap(top_when.end_s - top_when.start_s, fault.start_s, fault.end_s, duration_s), 3)
        if transient and top_when is not None and not top_when.whole_clip else "",
        "when_hit": int(top_when is not None and not top_when.whole_clip and overlaps(
            top_when.start_s, top_when.end_s, fault.start_s, fault.end_s)) if transient else "",
        "kind_hit": int(explanation.kind in expected) if expected else "",
    }


def chance_overlap(span_s: float, fault_start_s: float, fault_end_s: float, duration_s: float) -> float:
    """Probability that a span of `span_s` seconds placed uniformly at random in the clip overlaps the fault's span."""
    room = duration_s - span_s
    if room <= 0:
        return 1.0
    low, high = max(fault_start_s - span_s, 0.0), min(fault_end_s, room)
    return max(high - low, 0.0) / room


def _share(hits: list) -> str:
    values = [h for h in hits if h != ""]
    return f"{100 * sum(values) / len(values):.0f} % ({sum(values)}/{len(values)})" if values else "-"


def _int(value: object) -> int | None:
    """A 0/1 cell as an int, whether fresh or read back from explain.csv ('' = not counted)."""
    return None if value in ("", None) else int(value)


def figures(rows: list[dict], table: dict[str, tuple[str, ...]] = FAMILY_KINDS) -> dict[str, tuple[int, int]]:
    """(hits, clips) over the flagged clips for where, when (transient faults), kind (known families, judged by
    `table`), the best constant kind, and "throughout" on faults lasting the whole clip."""
    flagged = [r for r in rows if _int(r["flagged"])]
    transient = [r for r in flagged if _int(r["transient"])]
    known = [r for r in flagged if r["family"] in table]
    answers = {kind for family in table.values() for kind in family}
    best = max((sum(k in table[r["family"]] for r in known) for k in answers), default=0)
    return {"where": (sum(_int(r["where_hit"]) for r in flagged), len(flagged)),
            "when": (sum(_int(r["when_hit"]) for r in transient), len(transient)),
            "kind": (sum(r["kind"] in table[r["family"]] for r in known), len(known)),
            "constant kind": (best, len(known)),
            "throughout": (sum(_int(r["when_whole"]) for r in flagged if not _int(r["transient"])),
                           len(flagged) - len(transient))}


def summary_table(runs: list[tuple[str, list[dict]]]) -> str:
    """One row per labelled run: where, when, kind and the best constant kind (by `FAMILY_KINDS` and by
    `ORIGINAL_KINDS`), and "throughout" on whole-clip faults."""
    lines = ["| run | flagged | where | when (transient) | kind | best constant kind | kind, first table | "
             "best constant, first table | \"throughout\" (whole-clip faults) |", "|---|---|---|---|---|---|---|---|---|"]
    for label, rows in runs:
        numbers, first = figures(rows), figures(rows, ORIGINAL_KINDS)
        cells = [numbers["where"], numbers["when"], numbers["kind"], numbers["constant kind"], first["kind"],
                 first["constant kind"], numbers["throughout"]]
        lines.append(f"| {label} | {numbers['where'][1]} | "
                     + " | ".join(_share([1] * hits + [0] * (n - hits)) for hits, n in cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict], examples: list[tuple[str, str]], note: str = "") -> str:
    """The per-family table and notes."""
    by_family: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_family[row["family"]].append(row)
    lines = [
        "# Does the explanation point at the fault?",
        "",
        "`python experiments/explain_accuracy.py --detector DET --data ROOT`: every anomalous clip of the "
        "root's faults.csv explained with the detector's default scorer; the figures are over the clips the "
        "detector flags. *where*: the top frequency range overlaps the injected band; *when*: the top time span is "
        f"shorter than the clip and overlaps the injected span, transient faults only (span < {TRANSIENT_SHARE:.0%} "
        "of the clip; \"throughout\" counts as a miss); *kind*: "
        "one of the kinds the family should show (`FAMILY_KINDS` in the script); *throughout*: faults that last the "
        "whole clip answered \"throughout\". Targets: where and when >= 70 %, kind >= the best constant answer + 15 "
        "points, on seeds the rules were not chosen on.",
        "",
        *([note, ""] if note else []),
        "| family | anomalous clips | flagged | where | when (transient) | kind | kinds reported |",
        "|---|---|---|---|---|---|---|",
    ]
    unknown = []
    for family in sorted(by_family) + ["all"]:
        group = rows if family == "all" else by_family[family]
        flagged = [r for r in group if r["flagged"]]
        kinds = Counter(r["kind"] for r in flagged).most_common(3)
        kind_share = _share([r["kind_hit"] for r in flagged]) if family == "all" or family in FAMILY_KINDS \
            else "unknown family"
        if family != "all" and family not in FAMILY_KINDS:
            unknown.append(family)
        name = f"**{family}**" if family == "all" else family
        lines.append(f"| {name} | {len(group)} | {len(flagged)} | {_share([r['where_hit'] for r in flagged])} | "
                     f"{_share([r['when_hit'] for r in flagged])} | {kind_share} | "
                     f"{', '.join(f'{k} {n}' for k, n in kinds)} |")
    if unknown:
        lines += ["", f"Families without an expected kind in `FAMILY_KINDS` (not counted in *kind*): "
                  f"{', '.join(unknown)}."]
    from ssad.explain.explanation import WHERE_Z

    flagged = [r for r in rows if r["flagged"]]
    empty = sum(1 for r in flagged if not r["where"])
    weak = sum(1 for r in flagged if r["where"] and abs(r["where_z"]) < WHERE_Z[r["where_measure"]])
    whole_band = sum(1 for r in flagged if r["whole_band"])
    known = [r for r in flagged if r["family"] in FAMILY_KINDS]
    if known:
        from ssad.explain.rules import KINDS

        best = max(KINDS, key=lambda k: sum(k in FAMILY_KINDS[r["family"]] for r in known))
        share = sum(best in FAMILY_KINDS[r["family"]] for r in known) / len(known)
        lines += ["", f"Baseline for *kind*: one answer for every flagged clip, the best being \"{best}\", would be "
                  f"right on {100 * share:.0f} % of them."]
    transient = [r for r in flagged if r["transient"]]
    if transient:
        lines += ["", f"Of the {len(transient)} flagged transient faults, {sum(r['when_whole'] for r in transient)} "
                  "got \"throughout\" as their top time span: neither their window scores nor the level of their "
                  "strongest frequency range rose in part of the clip only."]
        chances = [r["when_chance"] for r in transient if r["when_chance"] != ""]
        if chances:
            lines += ["", f"Chance level for *when*: a span as long as each reported one, placed at random in the "
                      f"clip, would overlap the injected span on {100 * sum(chances) / len(transient):.0f} % of the "
                      f"flagged transient faults (\"throughout\" counted as a miss, as above)."]
    whole = [r for r in flagged if not r["transient"]]
    if whole:
        lines += ["", f"Of the {len(whole)} flagged faults that last the whole clip, {sum(r['when_whole'] for r in whole)} "
                  "got \"throughout\" as their top time span; the others a span where they showed most."]
    lines += ["", f"Of the {len(flagged)} flagged clips, {weak} report as their top range only their strongest "
              f"departure, below the z-score an unflagged clip needs ({empty} report no range: a miss for *where*). "
              f"For {whole_band} faults.csv gives the whole band (any range is a hit)."]
    if examples:
        lines += ["", "## Examples", ""] + [f"- {family}: `{name}`" for family, name in examples]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", required=True, help="saved detector (ssad detector / ssad evaluate)")
    parser.add_argument("--data", required=True, help="synthetic root whose anomalous clips faults.csv lists")
    parser.add_argument("--faults", default=None, help="default: DATA/faults.csv")
    parser.add_argument("--out", default=str(RESULTS), help="folder for explain.md, explain.csv and pictures")
    parser.add_argument("--examples", type=int, default=0, help="draw this many flagged clips of different families")
    parser.add_argument("--note", default="", help="a paragraph for the report: what data and detector these are")
    parser.add_argument("--summary", action="append", default=[], metavar="LABEL=CSV",
                        help="add a row of figures for another run's explain.csv (repeatable)")
    args = parser.parse_args()

    from ssad.audio.reading import audio_info
    from ssad.detector import Detector
    from ssad.explain.explanation import explain
    from ssad.explain.plot import plot_explanation

    root, out = Path(args.data), Path(args.out)
    faults = read_faults(Path(args.faults) if args.faults else root / "faults.csv", root)
    detector = Detector.load(args.detector)
    rows, explained = [], []
    for fault in tqdm(faults, desc="explaining", unit="clip"):
        explanation = explain(detector, fault.path, fault.machine)
        rows.append(judge(fault, explanation, audio_info(fault.path).duration, detector.model.sample_rate / 2))
        explained.append(explanation)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "explain.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else list(FIELDS))
        writer.writeheader()
        writer.writerows(rows)
    examples: list[tuple[str, str]] = []
    shown_kinds: set[str] = set()
    ranked = sorted(range(len(rows)), key=lambda i: (-int(rows[i]["kind_hit"] == 1), -int(rows[i]["where_hit"]),
                                                     -rows[i]["score"] / max(rows[i]["threshold"], 1e-9)))
    for i in ranked:
        if len(examples) >= args.examples or not rows[i]["flagged"]:
            continue
        if rows[i]["family"] in {family for family, _ in examples} or rows[i]["kind"] in shown_kinds:
            continue
        shown_kinds.add(rows[i]["kind"])
        name = f"explain_{rows[i]['family']}.png"
        plot_explanation(explained[i], out / name)
        examples.append((rows[i]["family"], name))
    report = markdown(rows, examples, args.note)
    if args.summary:
        runs = []
        for item in args.summary:
            label, _, path = item.partition("=")
            with open(path, newline="") as handle:
                runs.append((label, list(csv.DictReader(handle))))
        report += "\n## Per run\n\n" + summary_table(runs)
    (out / "explain.md").write_text(report)
    print((out / "explain.md").read_text())


if __name__ == "__main__":
    main()
