"""Sliding windows over a stream of audio chunks: each stream keeps only the samples its next window needs."""

from __future__ import annotations

import numpy as np

__all__ = ["WindowCutter"]


class WindowCutter:
    """Cuts one stream into windows of `size` samples starting every `hop` samples, as chunks arrive.

    Args:
        size: samples per window.
        hop: samples between the starts of consecutive windows (may exceed `size`: samples between are skipped).
    """

    def __init__(self, size: int, hop: int) -> None:
        if size < 1 or hop < 1:
            msg = f"window size and hop must be >= 1 sample, got size={size}, hop={hop}"
            raise ValueError(msg)
        self.size = size
        self.hop = hop
        self._buffer = np.empty(0, dtype=np.float32)
        self._buffer_start = 0  # stream position of _buffer[0]
        self._next_start = 0  # stream position where the next window begins

    @property
    def position(self) -> int:
        """Samples of the stream seen so far."""
        return self._buffer_start + len(self._buffer)

    def push(self, samples: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Add samples; return each completed window as (its first sample's stream position, samples)."""
        self._buffer = np.concatenate([self._buffer, np.asarray(samples, dtype=np.float32)])
        windows = []
        while self._next_start + self.size <= self.position:
            offset = self._next_start - self._buffer_start
            windows.append((self._next_start, self._buffer[offset : offset + self.size].copy()))
            self._next_start += self.hop
        keep_from = min(self._next_start, self.position) - self._buffer_start
        self._buffer = self._buffer[keep_from:]
        self._buffer_start += keep_from
        return windows
