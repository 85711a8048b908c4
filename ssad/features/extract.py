"""Log-mels of many files: read ahead in threads, batched through `LogMel`, through the cache when given."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ssad.core.runtime import available_cores, torch_threads
from ssad.features.cache import FeatureCache
from ssad.features.logmel import LogMel

T = TypeVar("T")

__all__ = ["compute_log_mels"]


def _module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module with neither)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _read_ahead(load: Callable[[int], T], count: int, threads: int, depth: int) -> Iterator[T]:
    """`load(0)`, ..., `load(count - 1)` in order, each started up to `depth` items ahead in `threads` threads.

    libsndfile, numpy and hashlib release the GIL, so decoding the next files overlaps the current STFT.
    The consumer computes a whole batch between pulls, so `depth` must cover a batch or the reader idles
    (measured: 317 clips/s with 2 items ahead, 430 with two batches). `threads=0` loads inline, in order.
    """
    if threads == 0:
        yield from (load(index) for index in range(count))
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ssad-read") as pool:
        ahead: deque[Future[T]] = deque()
        submitted = 0
        while submitted < count or ahead:
            while submitted < count and len(ahead) < depth:
                ahead.append(pool.submit(load, submitted))
                submitted += 1
            yield ahead.popleft().result()


def compute_log_mels(
    paths: Sequence[str | Path],
    log_mel: LogMel,
    *,
    read: Callable[[Path], np.ndarray],
    cache: FeatureCache | None = None,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> list[np.ndarray]:
    """Log-mel spectrograms, (n_mels, frames) float32, one per path in order; cache hits skip reading.

    Misses are read with `read` (a 1-D waveform per file; a few files ahead, in a background thread) and pushed through `log_mel` on `device`
    (default: where `log_mel` already lives) in batches of waveforms of equal length; at most a few
    batches' worth of waveforms are held at once, whatever the number of paths.
    """
    if batch_size < 1:
        msg = f"batch_size must be a positive integer, got {batch_size!r}"
        raise ValueError(msg)
    paths = [Path(p) for p in paths]
    target = torch.device(device) if device is not None else _module_device(log_mel)
    log_mel.to(target)
    results: list[np.ndarray | None] = [None] * len(paths)
    keys: list[str | None] = [None] * len(paths)
    pending: dict[int, list[tuple[int, np.ndarray]]] = {}
    max_pending = 4 * batch_size
    # On a CPU one clip's STFT is too small for intra-op threads to pay (measured beside other work: 264
    # clips/s on one thread, 107 on two). A reader thread keeps ahead of the log-mel when it runs on
    # another device, or when the process has more than two cores: on two, the reader and the log-mel
    # competed for them and reading inline measured faster (550 against 457 clips/s, issue 13).
    readers = 1 if target.type != "cpu" or available_cores() > 2 else 0
    threads = torch_threads(1) if target.type == "cpu" else contextlib.nullcontext()

    with threads, tqdm(total=len(paths), desc="log-mel", unit="clip", disable=not progress) as bar:

        def flush(length: int) -> None:
            items = pending.pop(length)
            with torch.inference_mode():
                if target.type == "cpu":  # LogMel goes clip by clip on a CPU anyway: no batch to stack
                    features = list(log_mel.clip_by_clip([torch.from_numpy(wave) for _, wave in items]).numpy())
                else:
                    batch = torch.from_numpy(np.stack([wave for _, wave in items])).to(target)
                    features = list(log_mel(batch).float().cpu().numpy())
            for (index, _), feature in zip(items, features, strict=True):
                result = np.array(feature, dtype=np.float32, order="C")  # own memory, not a view of a batch
                results[index] = result
                if cache is not None:
                    cache.put(paths[index], result, key=keys[index])
            bar.update(len(items))

        def load(index: int) -> tuple[str | None, np.ndarray | None, np.ndarray | None]:
            """(cache key, cached log-mel, waveform): a hit skips the read."""
            key = cache.key(paths[index]) if cache is not None else None
            hit = cache.get(paths[index], key=key) if cache is not None else None
            return key, hit, None if hit is not None else np.asarray(read(paths[index]), dtype=np.float32)

        for index, (key, hit, wave) in enumerate(_read_ahead(load, len(paths), readers, depth=2 * batch_size)):
            path = paths[index]
            keys[index] = key
            if hit is not None:
                results[index] = hit
                bar.update(1)
                continue
            if wave.ndim != 1 or wave.size == 0:
                msg = f"read({path}) must return a non-empty 1-D waveform, got shape {wave.shape}"
                raise ValueError(msg)
            bucket = pending.setdefault(wave.shape[0], [])
            bucket.append((index, wave))
            if len(bucket) >= batch_size:
                flush(wave.shape[0])
            elif sum(len(b) for b in pending.values()) > max_pending:
                flush(max(pending, key=lambda length: len(pending[length])))
        for length in list(pending):
            flush(length)
    return results  # type: ignore[return-value]
