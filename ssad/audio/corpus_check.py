"""Validate every file of a corpus root and summarise it, so bad data is found before hours of training, not during."""

from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ssad.audio.clips import LABELS, Clip
from ssad.audio.header_check import clip_problem, type_name_problems
from ssad.audio.layout import scan_root
from ssad.audio.reading import DEFAULT_N_FFT, DEFAULT_SAMPLE_RATE, AudioInfo, read_native
from ssad.audio.screening import screen
from ssad.core.errors import BadInputError

__all__ = ["CheckReport", "check_root"]


def _table(header: Sequence[str], rows: Iterable[Sequence[object]], indent: str = "  ") -> list[str]:
    """Lines of a plain-text table: text columns left-aligned, numbers right-aligned."""
    rows = [list(r) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    numeric = [all(isinstance(r[i], int) for r in rows) and bool(rows) for i in range(len(header))]

    def line(cells: Sequence[object]) -> str:
        text = [
            str(c).rjust(w) if num else str(c).ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ]
        return (indent + "  ".join(text)).rstrip()

    return [line(header)] + [line(r) for r in rows]


def _spread(values: Iterable[object], unit: str = "") -> str:
    """``16000 Hz`` when all values agree, else each value with its clip count."""
    counts = Counter(values)
    if len(counts) == 1:
        return f"{next(iter(counts))}{unit}"
    return ", ".join(f"{v}{unit} ({n} clips)" for v, n in sorted(counts.items(), key=lambda kv: str(kv[0])))


@dataclass
class CheckReport:
    """Outcome of `check_root`: the usable clips with their header facts, and the files skipped as bad."""

    root: Path
    clips: list[Clip]
    infos: list[AudioInfo]
    bad: list[tuple[str, str]] = field(default_factory=list)

    def format(self) -> str:
        """A readable summary: per machine type the IDs or sections, counts, rates and durations; totals; bad files."""
        types = sorted({c.machine_type for c in self.clips}, key=str.lower)
        lines = [
            f"root: {self.root}",
            f"{len(self.clips)} usable clips in {len(types)} machine type(s); {len(self.bad)} bad file(s) skipped",
        ]
        for machine_type in types:
            pairs = [
                (c, i) for c, i in zip(self.clips, self.infos, strict=True) if c.machine_type == machine_type
            ]
            lines += [""] + self._format_type(machine_type, pairs)

        lines += ["", "totals:"]
        labels = [lb for lb in LABELS if any(c.label == lb for c in self.clips)]
        counts = Counter((c.split, c.label) for c in self.clips)
        rows = [
            [split, *(counts[split, lb] for lb in labels), sum(counts[split, lb] for lb in labels)]
            for split in ("train", "test")
            if any(counts[split, lb] for lb in labels)
        ]
        rows.append(
            ["all", *(sum(counts[s, lb] for s in ("train", "test")) for lb in labels), len(self.clips)]
        )
        lines += _table(["split", *labels, "total"], rows)
        if self.infos:
            seconds = sum(i.duration for i in self.infos)
            if seconds >= 3600:
                length = f"{seconds / 3600:.2f} h"
            else:
                length = f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"
            lines.append(f"  audio: {length}")

        if self.bad:
            lines += ["", f"bad files (skipped): {len(self.bad)}"]
            lines += [f"  {path}: {why}" for path, why in self.bad]
        return "\n".join(lines)

    @staticmethod
    def _format_type(machine_type: str, pairs: list[tuple[Clip, AudioInfo]]) -> list[str]:
        """The block of `format` for one machine type."""
        clips = [c for c, _ in pairs]
        infos = [i for _, i in pairs]
        ids = sorted({c.machine_id for c in clips})
        kind = "sections" if all(i.startswith("section_") for i in ids) else "IDs"
        with_domain = any(c.machine_id.startswith("section_") for c in clips)
        labels = [lb for lb in LABELS if any(c.label == lb for c in clips)]

        def group(c: Clip) -> tuple[str, ...]:
            return (c.machine_id, c.split, c.domain) if with_domain else (c.machine_id, c.split)

        counts = Counter((*group(c), c.label) for c in clips)
        groups = sorted({group(c) for c in clips}, key=lambda g: (g[0], g[1] != "train", *g[2:]))
        header = [
            "section" if kind == "sections" else "id",
            "split",
            *(["domain"] if with_domain else []),
            *labels,
        ]
        rows = [[*g, *(counts[(*g, lb)] for lb in labels)] for g in groups]

        durations = [i.duration for i in infos]
        return [
            f"{machine_type}: {len(clips)} clips, {len(ids)} {kind} ({', '.join(ids)})",
            *_table(header, rows),
            f"  sample rate: {_spread((i.sample_rate for i in infos), ' Hz')}; "
            f"channels: {_spread(i.channels for i in infos)}; "
            f"encoding: {_spread(i.subtype for i in infos)}",
            f"  duration: min {min(durations):.2f} s, mean {statistics.fmean(durations):.2f} s, "
            f"max {max(durations):.2f} s",
        ]


def check_root(root: str | Path, *, skip_bad: bool = False, progress: bool = True,
               sample_rate: int = DEFAULT_SAMPLE_RATE, min_samples: int = DEFAULT_N_FFT) -> CheckReport:
    """Index root and read every clip, collecting every problem; raise BadInputError listing all unless `skip_bad`.

    A file passes when `ssad fit` would take it: fully readable and at least one FFT frame (`min_samples`,
    default the log-mel's n_fft, at `sample_rate`) long, in an allowed machine type.
    """
    clips, problems = scan_root(root)
    root = Path(os.path.abspath(Path(root).expanduser()))
    problems += type_name_problems(clips)
    def probe(clip: Clip) -> tuple[AudioInfo, str | None]:
        info = read_native(clip.path)[1]
        return info, clip_problem(info, sample_rate=sample_rate, min_samples=min_samples)

    screened = screen(clips, probe, progress="checking clips" if progress else None)
    good, infos = screened.kept, screened.results
    problems += screened.problems
    problems.sort()
    if problems and not skip_bad:
        raise BadInputError(problems, header=f"{root} has bad files (pass skip_bad=True to leave them out)")
    return CheckReport(root=root, clips=good, infos=infos, bad=problems)
