"""What ssad costs to run, measured side by side with the DCASE baseline's feature recipe on the same files.

    python experiments/bench.py [--quick] [--device cpu|cuda]      (make bench)

Parts, each in a process of its own (so that each reports its own peak memory and thread setting):
  features   file -> log-mel: ssad's path (all threads and one) against librosa with the baseline's parameters
  scoring    file -> log-mel -> embedding -> Gaussian score, batch 1 and 64, one thread and all threads
  training   demo and full classifier steps through Lightning, with the share of step time spent waiting for data
  knn        kNN (HNSW and exact) and Gaussian query cost as the reference set grows: 1k, 10k, 100k
  sharing    two ssad processes side by side against one alone, total throughput

Writes experiments/results/bench.json and bench.md (see `bench_report.py`). `--quick` shrinks every size
so that the whole run takes seconds (used by the tests). Timings are wall-clock, best of a few repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_report  # noqa: E402  (next to this script)

PARTS = ("features", "scoring", "training", "knn", "sharing")
CLIP_SECONDS = 10
SAMPLE_RATE = 16000
#: the demo network (configs/demo.yaml), built untrained: speed does not depend on the weights
DEMO_NETWORK = {"backbone": "mobilenetv2", "width_mult": 0.5, "last_channels": 256, "embedding_dim": 64,
                "head": "adacos", "n_subclusters": 4, "stats_branch": True}


def _sizes(quick: bool) -> dict:
    """How much work each part does: full for `make bench`, tiny for the tests."""
    if quick:
        return {"clips": 4, "repeats": 1, "feature_rounds": 1, "train_steps": {"demo": 1, "full": 1}, "references": (500, 1000, 2000),
                "queries": 32, "share_seconds": 1.0, "share_batch": 4}
    return {"clips": 64, "repeats": 3, "feature_rounds": 10, "train_steps": {"demo": 12, "full": 4}, "references": (1000, 10000, 100000),
            "queries": 256, "share_seconds": 20.0, "share_batch": 16}


def _best_seconds(run: Callable[[], object], repeats: int) -> float:
    """Wall-clock seconds of the fastest of `repeats` runs, after one warm-up run."""
    return _best_interleaved([run], repeats)[0]


def _best_interleaved(runs: list[Callable[[], object]], rounds: int) -> list[float]:
    """Fastest wall-clock seconds of each run over `rounds` rounds that take them in turn, after a warm-up."""
    for run in runs:
        run()
    best = [float("inf")] * len(runs)
    for _ in range(rounds):
        for index, run in enumerate(runs):
            start = time.perf_counter()
            run()
            best[index] = min(best[index], time.perf_counter() - start)
    return best


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def write_clips(folder: Path, n_clips: int) -> list[Path]:
    """`n_clips` 10-s 16-bit 16 kHz WAV files of machine-like sound (hum, harmonics, noise), as DCASE's."""
    import numpy as np
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(CLIP_SECONDS * SAMPLE_RATE) / SAMPLE_RATE
    paths = []
    for i in range(n_clips):
        f0 = 50 + 5 * i
        wave = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.3)) / h for h in range(1, 6))
        wave = 0.1 * wave + 0.05 * rng.standard_normal(len(t))
        path = folder / f"normal_id_00_{i:08d}.wav"
        sf.write(path, (wave / np.abs(wave).max() * 0.8).astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------- parts


def part_features(paths: list[Path], device: str, sizes: dict) -> dict:
    """Clips per second from file to log-mel: librosa with the baseline's parameters, and ssad's own path."""
    import functools

    import librosa
    import numpy as np
    import torch

    from ssad.audio.reading import read_clip
    from ssad.core.runtime import torch_threads
    from ssad.features import LogMel, compute_log_mels

    log_mel = LogMel()  # the baseline's parameters: 128 mels, n_fft 1024, hop 512, power 2

    def librosa_recipe() -> None:  # dcase2020_task2_baseline common.py: file_to_vector_array's first half
        for path in paths:  # numpy's BLAS on one thread (ssad.core.runtime), as the baseline's file-by-file loop needs
            y, sr = librosa.load(path, sr=None, mono=False)
            mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=512, n_mels=128, power=2.0)
            _ = 20.0 / 2.0 * np.log10(mel + np.finfo(float).eps)

    read = functools.partial(read_clip, sample_rate=SAMPLE_RATE)

    def ssad_path() -> None:
        compute_log_mels(paths, log_mel, read=read, device=device, progress=False)

    def ssad_one_thread() -> None:
        with torch_threads(1):
            ssad_path()

    n, threads = len(paths), torch.get_num_threads()
    # Interleaved rounds: a slow spell of a shared machine then hits both recipes, not one.
    best = _best_interleaved([librosa_recipe, ssad_path, ssad_one_thread], sizes["feature_rounds"])
    librosa_rate, ssad_rate, ssad_one = (n / seconds for seconds in best)
    return {"clips": n, "clip_seconds": CLIP_SECONDS, "threads": threads, "rounds": sizes["feature_rounds"],
            "ssad_clips_per_s": round(ssad_rate, 1), "ssad_one_thread_clips_per_s": round(ssad_one, 1),
            "librosa_clips_per_s": round(librosa_rate, 1), "ratio": round(ssad_rate / librosa_rate, 2),
            "ratio_one_thread": round(ssad_one / librosa_rate, 2)}


def demo_model(device: str):
    """The demo classifier (untrained) as a `Encoder`: the file -> embedding path users run."""
    from ssad.encoder import Encoder
    from ssad.features import LogMel
    from ssad.models.classifier.lightning_model import MachineIDClassifier

    classes = [f"fan/id_{i:02d}" for i in range(16)] + [f"fan/id_{i:02d}@warp" for i in range(24)]
    module = MachineIDClassifier(**DEMO_NETWORK, class_names=classes, n_mels=128, window_frames=64)
    metadata = {"model_class": "ssad.models.classifier.lightning_model.MachineIDClassifier",
                "feature_params": LogMel().params, "window_frames": 64, "window_hop": 32,
                "output_names": list(module.output_names)}
    return Encoder(module, metadata, device)


def part_scoring(paths: list[Path], device: str, sizes: dict) -> dict:
    """File -> score throughput of the demo network and a Gaussian scorer, by batch size and thread count."""
    import torch

    from ssad.scoring import GaussianScorer

    model = demo_model(device)
    ids = ["fan/id_00"] * len(paths)
    scorer = GaussianScorer().fit(model.embed(paths), ids)
    threads_all = torch.get_num_threads()
    runs = []
    for threads in sorted({1, threads_all}):
        torch.set_num_threads(threads)
        for batch in (1, 64):
            def score_all(batch: int = batch) -> None:
                for start in range(0, len(paths), batch):
                    chunk = paths[start : start + batch]
                    scorer.score(model.embed(chunk), ids[: len(chunk)])

            seconds = _best_seconds(score_all, sizes["repeats"]) / len(paths)
            runs.append({"batch": batch, "threads": threads, "clips_per_s": round(1 / seconds, 1),
                         "ms_per_clip": round(1000 * seconds, 2), "realtime_factor": round(CLIP_SECONDS / seconds, 1)})
    torch.set_num_threads(threads_all)
    one_core = next(r for r in runs if r["threads"] == 1 and r["batch"] == 1)
    return {"network": "demo (MobileNetV2 x0.5, 64-frame windows, hop 32)", "scorer": "gaussian",
            "clips": len(paths), "realtime_factor_one_core": one_core["realtime_factor"], "runs": runs}


def part_training(device: str, sizes: dict, work: Path) -> dict:
    """Steps per second of the demo and full classifiers through Lightning, and the data-wait share."""
    import lightning as L
    import yaml

    from ssad.data import MachineIDDataModule
    from ssad.models import MachineIDClassifier
    from ssad.synthesis import generate

    root = work / "synth-tiny"
    if not root.exists():
        generate(root, preset="tiny", seed=1, progress=False)

    class StepTimer(L.Callback):
        """Time between steps (data loading, transfer, log-mel) and inside them (forward, backward, update)."""

        def __init__(self) -> None:
            self.wait, self.step, self.mark = [], [], None

        def on_train_batch_start(self, trainer, module, batch, index) -> None:
            now = time.perf_counter()
            if self.mark is not None:
                self.wait.append(now - self.mark)
            self.start = now

        def on_train_batch_end(self, trainer, module, outputs, batch, index) -> None:
            self.mark = time.perf_counter()
            self.step.append(self.mark - self.start)

    results = {}
    for name, config in (("demo", "demo.yaml"), ("full", "all.yaml")):
        spec = yaml.safe_load((HERE.parent / "configs" / config).read_text())
        data_args = {**spec["data"]["init_args"], "root": str(root), "val_fraction": 0.0}
        model_args = spec["model"]["init_args"]
        datamodule = MachineIDDataModule(**data_args)
        module = MachineIDClassifier(**model_args)
        timer = StepTimer()
        steps = sizes["train_steps"][name] + 2  # the first two (start-up, first batch) are left out
        trainer = L.Trainer(accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1, max_steps=steps,
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, limit_val_batches=0, callbacks=[timer])
        trainer.fit(module, datamodule=datamodule)
        step, wait = timer.step[2:], timer.wait[1:]
        per_step = (sum(step) + sum(wait)) / max(1, len(step))
        batch = int(data_args["batch_size"])
        results[name] = {"config": f"configs/{config}", "batch": batch, "crop_frames": int(data_args["crop_frames"]),
                         "num_workers": int(data_args.get("num_workers", 0)), "steps_timed": len(step),
                         "crops_per_s": round(batch / per_step, 1), "step_ms": round(1000 * per_step, 1),
                         "data_wait_share": round(sum(wait) / max(1e-9, sum(wait) + sum(step)), 3)}
    return results


def _embedding_like(rng, n: int, dim: int = 64):
    """Rows like one machine's embeddings: four sub-clusters, each spread along 8 directions, plus noise."""
    import numpy as np

    centres = 3 * np.random.default_rng(7).standard_normal((4, dim))
    spread = np.random.default_rng(8).standard_normal((4, 8, dim))
    which = rng.integers(0, 4, n)
    return centres[which] + np.einsum("nl,nld->nd", rng.standard_normal((n, 8)), spread[which]) + 0.1 * rng.standard_normal((n, dim))


def part_knn(device: str, sizes: dict) -> dict:
    """Seconds per query of kNN (HNSW index and exact) and the Gaussian as one ID's references grow."""
    import numpy as np

    from ssad.scoring import GaussianScorer
    from ssad.scoring.neighbours import build_index

    rng = np.random.default_rng(0)
    queries = _embedding_like(rng, sizes["queries"])
    query_ids = ["fan/id_00"] * len(queries)
    out: dict = {"index": "hnsw", "metric": "cosine", "k": 1, "dim": 64, "queries_per_call": len(queries),
                 "seconds_per_query": {}, "exact_seconds_per_query": {}, "build_seconds": {}, "recall": {}}
    gaussian: dict = {"fit_seconds": {}, "seconds_per_query": {}}
    for n in sizes["references"]:
        references = _embedding_like(rng, n)
        key = str(n)
        start = time.perf_counter()
        hnsw = build_index(references, 1, "cosine", "hnsw")
        out["build_seconds"][key] = round(time.perf_counter() - start, 2)
        exact = build_index(references, 1, "cosine", "exact")
        out["seconds_per_query"][key] = _best_seconds(lambda h=hnsw: h.query(queries), sizes["repeats"]) / len(queries)
        out["exact_seconds_per_query"][key] = _best_seconds(lambda e=exact: e.query(queries), sizes["repeats"]) / len(queries)
        found, truth = hnsw.query(queries)[:, -1], exact.query(queries)[:, -1]
        out["recall"][key] = round(float(np.mean(np.isclose(found, truth, rtol=1e-4, atol=1e-6))), 4)
        ids = ["fan/id_00"] * n
        start = time.perf_counter()
        scorer = GaussianScorer().fit(references, ids)
        gaussian["fit_seconds"][key] = round(time.perf_counter() - start, 3)
        gaussian["seconds_per_query"][key] = _best_seconds(
            lambda s=scorer: s.score(queries, query_ids), sizes["repeats"]) / len(queries)
    first, last = (str(n) for n in (sizes["references"][0], sizes["references"][-1]))
    out["growth"] = round(out["seconds_per_query"][last] / out["seconds_per_query"][first], 2)
    out["exact_growth"] = round(out["exact_seconds_per_query"][last] / out["exact_seconds_per_query"][first], 2)
    return {"knn": out, "gaussian": gaussian}


def sharing_worker(seconds: float, batch: int, device: str) -> dict:
    """Demo-network training steps per second over a window of `seconds` that starts when stdin says "go".

    The worker warms up, prints "ready", and waits: so that side-by-side workers count over the same window.
    """
    import torch

    from ssad.models.classifier.torch_model import MachineIDNet

    torch.manual_seed(0)
    net = MachineIDNet(num_classes=40, n_mels=128, width_mult=0.5, last_channels=256, embedding_dim=64).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x, y = torch.randn(batch, 128, 64, device=device), torch.randint(0, 40, (batch,), device=device)

    def step() -> None:
        logits, _ = net(x, y)
        loss = torch.nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    while time.time() < start_at:
        time.sleep(0.001)
    steps, end, last = 0.0, start_at + seconds, start_at
    while last < end:
        step()
        now = time.time()
        # a step that straddles the window's end counts for the share of it inside the window
        steps += 1.0 if now <= end else (end - last) / (now - last)
        last = now
    return {"steps": round(steps, 2), "steps_per_s": steps / seconds, "threads": torch.get_num_threads()}


def part_sharing(device: str, sizes: dict, work: Path, quick: bool) -> dict:
    """Total training throughput of two ssad processes side by side over that of one alone (default threads each)."""

    def run(count: int) -> list[dict]:
        command = [sys.executable, __file__, "--part", "sharing-worker", "--device", device, "--work", str(work)]
        workers = [subprocess.Popen(command + (["--quick"] if quick else []), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True) for _ in range(count)]
        for worker in workers:
            if worker.stdout.readline().strip() != "ready":
                raise RuntimeError("a sharing worker failed to start")
        start_at = time.time() + 0.5
        for worker in workers:
            worker.stdin.write(f"{start_at}\n")
            worker.stdin.flush()
        return [json.loads(w.communicate()[0].strip().splitlines()[-1]) for w in workers]

    alone = run(1)[0]
    pair = run(2)
    total = sum(w["steps_per_s"] for w in pair)
    return {"workload": f"demo-network training steps, batch {sizes['share_batch']}, random input",
            "policy": "each process with ssad's default thread policy (threads = cores in its affinity mask, "
                      "OMP_WAIT_POLICY=PASSIVE)",
            "threads_each": alone["threads"], "window_seconds": sizes["share_seconds"],
            "one_alone_steps_per_s": round(alone["steps_per_s"], 2),
            "two_side_by_side_steps_per_s": [round(w["steps_per_s"], 2) for w in pair],
            "throughput_ratio": round(total / alone["steps_per_s"], 3)}


def run_part(name: str, args: argparse.Namespace) -> dict:
    """Run one part in this process (threads set by ssad's default policy) and add its peak memory."""
    from ssad.core.runtime import configure_threads, tune_allocator

    # the kNN and Gaussian query costs are per core: one thread keeps their growth free of scheduling noise
    configure_threads(1 if name == "knn" else None)
    tune_allocator()  # as the `ssad` command does; the librosa recipe runs in the same process
    sizes = _sizes(args.quick)
    if name == "sharing-worker":
        return sharing_worker(sizes["share_seconds"], sizes["share_batch"], args.device)
    paths = sorted((args.work / "clips").glob("*.wav"))
    if name == "features":
        result = part_features(paths, args.device, sizes)
    elif name == "scoring":
        result = part_scoring(paths, args.device, sizes)
    elif name == "training":
        result = part_training(args.device, sizes, args.work)
    elif name == "knn":
        result = part_knn(args.device, sizes)
    else:
        result = part_sharing(args.device, sizes, args.work, args.quick)
    result["peak_rss_mb"] = _peak_rss_mb()
    if args.device.startswith("cuda"):
        import torch

        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("ssad", "torch", "torchaudio", "numpy", "scikit-learn", "faiss-cpu", "librosa", "lightning"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds instead of minutes (tests)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (librosa and the kNN index stay on the CPU)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--part", help=argparse.SUPPRESS)  # internal: run one part in this process
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part:
        print(json.dumps(run_part(args.part, args)))
        return 0

    from ssad.core.runtime import WAIT_POLICY_ENV, available_cores, default_threads

    began = time.perf_counter()
    results: dict = {"device": args.device, "threads": default_threads(), "cores_available": available_cores(),
                     "omp_wait_policy": os.environ.get(WAIT_POLICY_ENV, "PASSIVE"), "quick": args.quick,
                     "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "versions": _versions()}
    with tempfile.TemporaryDirectory(prefix="ssad-bench-") as tmp:
        work = Path(tmp)
        write_clips(work / "clips", _sizes(args.quick)["clips"])
        for name in args.parts:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            part_began = time.perf_counter()
            command = [sys.executable, __file__, "--part", name, "--device", args.device, "--work", str(work)]
            done = subprocess.run(command + (["--quick"] if args.quick else []), stdout=subprocess.PIPE,
                                  text=True, check=True)
            part = json.loads(done.stdout.strip().splitlines()[-1])
            if name == "knn":
                results["knn"], results["gaussian"] = part["knn"], part["gaussian"]
                results["knn"]["peak_rss_mb"] = part["peak_rss_mb"]
            else:
                results[name] = part
            print(f"bench: {name} took {time.perf_counter() - part_began:.1f} s", file=sys.stderr, flush=True)
    results["seconds_total"] = round(time.perf_counter() - began, 1)
    bench_report.write(results, args.out)
    print((args.out / "bench.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
