"""bench.json and bench.md from the figures `bench.py` measured: each figure beside its baseline, ratio or growth."""

from __future__ import annotations

import json
from pathlib import Path

from ssad.core.atomic import write_text_atomic

__all__ = ["write", "markdown"]


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def markdown(r: dict) -> str:
    """The results as a Markdown page: setup, then one table per part."""
    v = r["versions"]
    lines = [
        "# ssad benchmarks",
        "",
        "Measured by `make bench` (`experiments/bench.py`); raw figures in `bench.json`. Every part runs in a",
        "process of its own, with ssad's default thread policy (threads = cores in the process's affinity mask,",
        "or `SSAD_THREADS`; idle OpenMP threads sleep) and allocator policy (freed memory kept for reuse,",
        "`ssad/core/runtime.py`), as the `ssad` command runs, and reports that process's peak resident memory.",
        "",
        f"- device: {r['device']}; threads: {r['threads']} of {r['cores_available']} cores available; "
        f"OMP_WAIT_POLICY={r['omp_wait_policy']}; machine: {r['machine']}",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
        f"- whole run: {r['seconds_total']} s" + (" (--quick sizes)" if r.get("quick") else ""),
        "",
    ]
    if "features" in r:
        f = r["features"]
        lines += [
            f"## Features: file -> log-mel ({f['clips']} clips of {f['clip_seconds']} s, 16 kHz 16-bit WAV)",
            "",
            "| path | clips/s | vs librosa recipe |",
            "| --- | ---: | ---: |",
            f"| DCASE baseline recipe (librosa.load + melspectrogram + log10, 128 mels, n_fft 1024, hop 512) | "
            f"{f['librosa_clips_per_s']} | 1.0x |",
            f"| ssad `compute_log_mels` as shipped (files read inline on two cores, a thread ahead on more; "
            f"log-mel clip by clip on one torch "
            f"thread, in reused work buffers, with a banded mel product), "
            f"process at {f['threads']} torch threads | {f['ssad_clips_per_s']} | {f['ratio']}x |",
            f"| the same, process at 1 torch thread | {f['ssad_one_thread_clips_per_s']} | {f['ratio_one_thread']}x |",
            "",
            "The librosa recipe runs file by file with numpy's BLAS on one thread (ssad's policy; the baseline's",
            "loop gains nothing from more). Each figure is the fastest of "
            f"{f.get('rounds', 'several')} rounds that take the three paths in turn,",
            f"so a slow spell of a shared machine hits all of them. Target: 5x. Peak memory {f['peak_rss_mb']} MB.",
            "",
        ]
    if "scoring" in r:
        s = r["scoring"]
        lines += [
            f"## Scoring, end to end: file -> log-mel -> embedding -> {s['scorer']} score",
            "",
            f"Network: {s['network']}; {s['clips']} clips of 10 s. Real-time factor = seconds of audio scored per second.",
            "",
            "| batch | threads | clips/s | ms per clip | real-time factor |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        lines += [f"| {x['batch']} | {x['threads']} | {x['clips_per_s']} | {x['ms_per_clip']} | {x['realtime_factor']}x |"
                  for x in s["runs"]]
        lines += ["", f"One core, one clip at a time: **{s['realtime_factor_one_core']}x real time** "
                  f"(target 200x). Peak memory {s['peak_rss_mb']} MB.", ""]
    if "training" in r:
        t = r["training"]
        lines += [
            "## Training throughput (Lightning, synthetic tiny preset)",
            "",
            "Data wait = time between steps (loading, cropping, log-mel of the batch) over all step time.",
            "",
            "| classifier | config | batch x frames | loader workers | crops/s | ms per step | data wait |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        lines += [f"| {name} | `{x['config']}` | {x['batch']} x {x['crop_frames']} | {x['num_workers']} | "
                  f"{x['crops_per_s']} | {x['step_ms']} | {100 * x['data_wait_share']:.1f} % |"
                  for name, x in t.items() if isinstance(x, dict)]
        lines += ["", f"Peak memory {t['peak_rss_mb']} MB.", ""]
    if "knn" in r:
        k, g = r["knn"], r["gaussian"]
        sizes = list(k["seconds_per_query"])
        lines += [
            "## Scoring cost as one ID's reference set grows",
            "",
            f"{k['queries_per_call']} queries per call, {k['dim']}-d rows shaped like one machine's embeddings "
            "(four sub-clusters, each spread along 8 directions). kNN: k=1, cosine; HNSW = faiss "
            "`IndexHNSWFlat` (what `KNNScorer(index=\"hnsw\")` uses, and `index=\"auto\"` from 20k references); "
            "recall = share of queries whose HNSW distance equals the exact one.",
            "",
            "| references | kNN HNSW per query | exact kNN per query | HNSW recall | HNSW build | Gaussian per query | Gaussian fit |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        lines += [f"| {n} | {_us(k['seconds_per_query'][n])} | {_us(k['exact_seconds_per_query'][n])} | "
                  f"{k['recall'][n]} | {k['build_seconds'][n]} s | {_us(g['seconds_per_query'][n])} | "
                  f"{g['fit_seconds'][n]} s |" for n in sizes]
        lines += ["", f"Growth from {sizes[0]} to {sizes[-1]} references: HNSW **{k['growth']}x** (target < 10x), "
                  f"exact {k['exact_growth']}x. Peak memory {k['peak_rss_mb']} MB.", ""]
    if "sharing" in r:
        s = r["sharing"]
        lines += [
            "## Sharing the machine",
            "",
            f"Workload: {s['workload']}, counted over the same {s['window_seconds']} s window; {s['policy']}; "
            f"{s['threads_each']} threads each.",
            "",
            "| processes | steps/s (each) | total | vs one alone |",
            "| ---: | --- | ---: | ---: |",
            f"| 1 | {s['one_alone_steps_per_s']} | {s['one_alone_steps_per_s']} | 1.0 |",
            f"| 2 | {' + '.join(str(x) for x in s['two_side_by_side_steps_per_s'])} | "
            f"{round(sum(s['two_side_by_side_steps_per_s']), 2)} | **{s['throughput_ratio']}** |",
            "",
            f"Target: two processes keep at least 0.8 of one's throughput. Peak memory {s['peak_rss_mb']} MB.",
            "",
        ]
    return "\n".join(lines)


def write(results: dict, out: Path) -> None:
    """Write `bench.json` and `bench.md` into `out`."""
    write_text_atomic(out / "bench.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(out / "bench.md", markdown(results))
