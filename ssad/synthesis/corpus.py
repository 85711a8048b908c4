"""Writing a synthetic corpus: every clip of a configuration as 16-bit WAV in the DCASE 2020 layout, in parallel."""

from __future__ import annotations

import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ssad.core.atomic import atomic_path, write_text_atomic
from ssad.core.runtime import available_cores, tune_allocator
from ssad.synthesis.background import ambience_pool
from ssad.synthesis.clips import render_clip
from ssad.synthesis.config import (
    ID_STEP,
    PRESETS,
    SPLITS,
    SynthConfig,
    clip_filename,
    is_int,
    machine_ids,
    section_filename,
)
from ssad.synthesis.domains import condition

__all__ = ["FAULT_COLUMNS", "SynthSummary", "generate"]

#: faults.csv, one row per anomalous clip: what fault it holds and where its evidence lies (path from the root).
FAULT_COLUMNS = ("path", "machine_type", "machine_id", "family", "severity", "start_s", "end_s", "low_hz", "high_hz")

PCM_SCALE = 32767.0
AUTO_WORKERS_MIN_AUDIO_S = 600.0  # below this much audio a process pool costs more than it saves
MAX_AUTO_WORKERS = 8


@dataclass
class SynthSummary:
    """What `generate` wrote: per (type, id, split, label) clip counts, and how fast.

    Attributes:
        root: the output folder.
        counts: clips per (machine_type, "id_XX", split, label).
        seconds: wall time taken.
        clips_per_second: clips written per second of wall time.
        duration_s: length of each clip.
        sample_rate: Hz.
        workers: processes used.
        seed: the seed the set was made with.
    """

    root: Path
    counts: dict[tuple[str, str, str, str], int]
    seconds: float
    clips_per_second: float
    duration_s: float = 10.0
    sample_rate: int = 16000
    workers: int = 1
    seed: int = 0

    @property
    def total_clips(self) -> int:
        """All clips written."""
        return sum(self.counts.values())

    def format(self) -> str:
        """A readable table: one row per (type, id) with counts per split and label, then totals and speed."""
        columns = [("train", "normal"), ("test", "normal"), ("test", "anomaly")]
        if any(k[2].startswith("target_") for k in self.counts):
            columns += [("target_train", "normal"), ("target_test", "normal"), ("target_test", "anomaly")]
        header = ["type", "id", *(f"{s}/{lab}" for s, lab in columns)]
        rows = []
        for machine_type, machine_id in sorted({(k[0], k[1]) for k in self.counts}):
            rows.append(
                [
                    machine_type,
                    machine_id,
                    *(str(self.counts.get((machine_type, machine_id, s, lab), 0)) for s, lab in columns),
                ]
            )
        totals = [
            "total",
            "",
            *(str(sum(v for k, v in self.counts.items() if (k[2], k[3]) == col)) for col in columns),
        ]
        widths = [max(len(r[i]) for r in [header, *rows, totals]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            return "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
            )

        hours = self.total_clips * self.duration_s / 3600.0
        lines = [line(header), line(["-" * w for w in widths]), *map(line, rows), line(totals), ""]
        lines.append(
            f"{self.total_clips} clips of {self.duration_s:g} s at {self.sample_rate} Hz ({hours:.2f} h of audio), seed {self.seed}, in {self.root}"
        )
        lines.append(
            f"written in {self.seconds:.1f} s with {self.workers} worker(s): {self.clips_per_second:.1f} clips/s"
        )
        return "\n".join(lines)


@dataclass(frozen=True)
class _Job:
    machine_type: str
    machine_id: int
    split: str
    label: str
    index: int
    domain: str = "source"

    def relative_path(self, config: SynthConfig) -> str:
        """Where the clip goes under the root, in the configuration's layout."""
        if config.layout == "dcase2022":
            section = self.machine_id // ID_STEP
            attributes = condition(section, self.domain).attributes
            name = section_filename(section, self.domain, self.split, self.label, self.index, attributes)
        else:
            name = clip_filename(self.label, self.machine_id, self.index)
        return f"{self.machine_type}/{self.split}/{name}"

    def machine(self, config: SynthConfig) -> str:
        """The machine's name as the data layer reads it: ``id_02`` or ``section_01``."""
        if config.layout == "dcase2022":
            return f"section_{self.machine_id // ID_STEP:02d}"
        return f"id_{self.machine_id:02d}"


def _jobs(config: SynthConfig) -> list[_Job]:
    per_split = [
        ("train", "normal", config.train_per_id, "source"),
        ("test", "normal", config.test_normal_per_id, "source"),
        ("test", "anomaly", config.test_anomaly_per_id, "source"),
    ]
    if config.layout == "dcase2022":
        per_split += [
            ("train", "normal", config.target_train_per_id, "target"),
            ("test", "normal", config.target_test_per_id, "target"),
            ("test", "anomaly", config.target_test_per_id, "target"),
        ]
    return [
        _Job(t, i, split, label, k, domain)
        for t in config.machine_types
        for i in machine_ids(config)
        for split, label, count, domain in per_split
        for k in range(count)
    ]


def _write_clip(root: str, config: SynthConfig, seed: int, job: _Job) -> list[str] | None:
    """Synthesize one clip and write it as 16-bit PCM WAV atomically; its faults.csv row if it is anomalous."""
    rendered = render_clip(
        job.machine_type, job.machine_id, job.label, seed, job.split, job.index, config, None, job.domain
    )
    pcm = np.round(np.clip(rendered.audio, -1.0, 1.0) * PCM_SCALE).astype(np.int16)
    relative = job.relative_path(config)
    target = Path(root) / relative
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        sf.write(handle, pcm, config.sample_rate, subtype="PCM_16", format="WAV")
    if rendered.family is None:
        return None
    e = rendered.evidence
    assert e is not None, f"{job.machine_type} fault {rendered.family} says nothing of where it lies"
    return [relative, job.machine_type, job.machine(config), rendered.family, f"{rendered.severity:.3f}",
            f"{e.start_s:.3f}", f"{e.end_s:.3f}", f"{e.low_hz:.1f}", f"{e.high_hz:.1f}"]


def _write_chunk(args: tuple[str, SynthConfig, int, list[_Job]]) -> list[list[str] | None]:
    root, config, seed, jobs = args
    return [_write_clip(root, config, seed, job) for job in jobs]


def _write_tables(root: Path, config: SynthConfig, jobs: list[_Job], faults: list[list[str]]) -> None:
    """faults.csv at the root and, for the dcase2022 layout, each section's attribute table."""
    lines = [",".join(FAULT_COLUMNS), *(",".join(row) for row in sorted(faults))]
    write_text_atomic(root / "faults.csv", "\n".join(lines) + "\n")
    if config.layout != "dcase2022":
        return
    tables: dict[tuple[str, str], list[str]] = {}
    for job in jobs:
        key = (job.machine_type, job.machine(config))
        values = condition(job.machine_id // ID_STEP, job.domain)
        row = f"{job.relative_path(config)},speed,{round(values.speed * 100)},mic,{values.mic},noise,{values.noise}"
        tables.setdefault(key, ["file_name,d1p,d1v,d2p,d2v,d3p,d3v"]).append(row)
    for (machine_type, machine), rows in tables.items():
        write_text_atomic(root / machine_type / f"attributes_{machine.split('_')[1]}.csv", "\n".join(rows) + "\n")


def _init_worker() -> None:
    """Worker set-up: keep freed memory (unless SSAD_MALLOC=default); re-faulting fresh pages for each array doubles the time."""
    tune_allocator()


def _auto_workers(config: SynthConfig) -> int:
    if config.total_clips * config.duration_s < AUTO_WORKERS_MIN_AUDIO_S:
        return 1
    return max(1, min(available_cores(), MAX_AUTO_WORKERS))


def generate(
    out: str | Path,
    preset: str = "default",
    seed: int = 0,
    *,
    config: SynthConfig | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> SynthSummary:
    """Write a synthetic machine-sound data set in the DCASE 2020 layout under `out`; same seed, same bytes.

    Files with the names being written are overwritten; other files in `out` are left alone.

    Args:
        out: output folder (created if missing; must not be a file).
        preset: a name from `PRESETS`; ignored when `config` is given.
        seed: non-negative integer; fixes every unit and clip.
        config: the full configuration, overriding `preset`.
        workers: processes (None: one per core for large sets, one for small ones).
        progress: show a tqdm progress bar.
    """
    if config is None:
        if preset not in PRESETS:
            msg = f"preset must be one of {sorted(PRESETS)}, got {preset!r}"
            raise ValueError(msg)
        config = PRESETS[preset]
    elif not isinstance(config, SynthConfig):
        msg = f"config must be a SynthConfig or None, got {type(config).__name__}"
        raise ValueError(msg)
    if not is_int(seed) or seed < 0:
        msg = f"seed must be a non-negative integer, got {seed!r}"
        raise ValueError(msg)
    if workers is not None and (not is_int(workers) or workers < 1):
        msg = f"workers must be None or a positive integer, got {workers!r}"
        raise ValueError(msg)
    root = Path(out)
    if root.exists() and not root.is_dir():
        msg = f"out must be a folder, but {str(root)!r} is an existing file"
        raise ValueError(msg)
    for machine_type in config.machine_types:
        for split in SPLITS:
            (root / machine_type / split).mkdir(parents=True, exist_ok=True)

    jobs = _jobs(config)
    ambience_pool(int(seed), config.sample_rate)  # made once here, before workers fork, instead of once in each
    workers = _auto_workers(config) if workers is None else int(workers)
    workers = min(workers, max(1, len(jobs)))
    start = time.perf_counter()
    faults: list[list[str]] = []
    with tqdm(total=len(jobs), disable=not progress, unit="clip", desc="synth") as bar:
        if workers == 1:
            for job in jobs:
                row = _write_clip(str(root), config, int(seed), job)
                faults += [row] if row else []
                bar.update(1)
        else:
            chunk = max(1, min(8, len(jobs) // (workers * 8)))
            tasks = [(str(root), config, int(seed), jobs[i : i + chunk]) for i in range(0, len(jobs), chunk)]
            # Forked workers start at once and need no `if __name__ == "__main__"` guard in the caller's
            # script; they only run numpy and scipy code, so the parent's threads (torch, tqdm) do no harm.
            context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            with ProcessPoolExecutor(
                max_workers=workers, mp_context=context, initializer=_init_worker
            ) as pool:
                for rows in pool.map(_write_chunk, tasks):
                    faults += [row for row in rows if row]
                    bar.update(len(rows))
    _write_tables(root, config, jobs, faults)
    seconds = time.perf_counter() - start

    counts: dict[tuple[str, str, str, str], int] = {}
    for job in jobs:
        split = job.split if job.domain == "source" else f"{job.domain}_{job.split}"
        key = (job.machine_type, job.machine(config), split, job.label)
        counts[key] = counts.get(key, 0) + 1
    return SynthSummary(
        root=root,
        counts=counts,
        seconds=seconds,
        clips_per_second=len(jobs) / seconds if seconds > 0 else float("inf"),
        duration_s=config.duration_s,
        sample_rate=config.sample_rate,
        workers=workers,
        seed=int(seed),
    )
