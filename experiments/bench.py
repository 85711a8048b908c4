"""Speed and memory benchmarks on this machine: synthesis, log-mel features, training and inference throughput.

    python experiments/bench.py [--quick]      (make bench)

Writes experiments/results/bench.json and bench.md. Numbers depend on the machine; the point is to
see regressions and to know what a CPU run costs before starting one.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_synthesis(work: Path, preset: str) -> dict:
    from ssad.synthesis import generate

    start = time.perf_counter()
    summary = generate(work / "synth", preset=preset, seed=1, progress=False)
    seconds = time.perf_counter() - start
    clips = sum(1 for _ in (work / "synth").rglob("*.wav"))
    return {"preset": preset, "clips": clips, "seconds": round(seconds, 2), "clips_per_s": round(clips / seconds, 1),
            "summary_clips_per_s": round(getattr(summary, "clips_per_second", clips / seconds), 1)}


def bench_features(n_clips: int = 64) -> dict:
    from ssad.features import LogMel

    log_mel = LogMel()
    waves = torch.randn(n_clips, 160000) * 0.1
    log_mel(waves[:2])
    start = time.perf_counter()
    for i in range(0, n_clips, 16):
        log_mel(waves[i : i + 16])
    seconds = time.perf_counter() - start
    return {"clips": n_clips, "clip_seconds": 10, "clips_per_s": round(n_clips / seconds, 1)}


def bench_training(steps: int = 5) -> dict:
    from ssad.models.classifier.torch_model import MachineIDNet

    results = {}
    for name, kwargs, frames in (
        ("demo (MobileNetV2 x0.5, 128 mels x 64 frames)", {"width_mult": 0.5, "last_channels": 256, "embedding_dim": 64}, 64),
        ("full (MobileNetV2 x1.0, 128 mels x 128 frames)", {"width_mult": 1.0, "last_channels": 512, "embedding_dim": 128}, 128),
    ):
        torch.manual_seed(0)
        net = MachineIDNet(num_classes=40, n_mels=128, **kwargs)
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
        x, y = torch.randn(64, 128, frames), torch.randint(0, 40, (64,))
        for step in range(steps + 1):
            if step == 1:
                start = time.perf_counter()
            logits, _ = net(x, y)
            loss = torch.nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds = (time.perf_counter() - start) / steps
        results[name] = {"batch": 64, "crops_per_s": round(64 / seconds, 1),
                         "params_M": round(sum(p.numel() for p in net.parameters()) / 1e6, 2)}
    return results


def bench_inference(n_windows: int = 512) -> dict:
    from ssad.models.classifier.torch_model import MachineIDNet

    net = MachineIDNet(num_classes=40, n_mels=128, width_mult=0.5, last_channels=256, embedding_dim=64).eval()
    x = torch.randn(n_windows, 128, 64)
    with torch.no_grad():
        net(x[:8])
        start = time.perf_counter()
        for i in range(0, n_windows, 256):
            net(x[i : i + 256])
    seconds = time.perf_counter() - start
    windows_per_clip = (313 - 64) // 32 + 1
    return {"windows_per_s": round(n_windows / seconds, 1), "clips_per_s_10s": round(n_windows / seconds / windows_per_clip, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny synthesis preset instead of the default one")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ssad-bench-"))
    try:
        results = {
            "torch_threads": torch.get_num_threads(),
            "synthesis": bench_synthesis(work, "tiny" if args.quick else "default"),
            "log_mel": bench_features(),
            "training": bench_training(),
            "inference": bench_inference(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["peak_rss_MB"] = round(_peak_rss_mb(), 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(results, indent=2))
    lines = ["# ssad benchmarks", "", f"torch threads: {results['torch_threads']}", "",
             f"- synthesis ({results['synthesis']['preset']}): {results['synthesis']['clips']} clips in "
             f"{results['synthesis']['seconds']} s = {results['synthesis']['clips_per_s']} clips/s",
             f"- log-mel (10 s clips, batches of 16): {results['log_mel']['clips_per_s']} clips/s"]
    for name, r in results["training"].items():
        lines.append(f"- training {name}: {r['crops_per_s']} crops/s ({r['params_M']} M parameters)")
    lines += [f"- inference (demo network): {results['inference']['windows_per_s']} windows/s = "
              f"{results['inference']['clips_per_s_10s']} 10-s clips/s",
              f"- peak memory: {results['peak_rss_MB']} MB"]
    text = "\n".join(lines) + "\n"
    (args.out / "bench.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
