"""Features: clips to log-mels, the one place where waveforms become what every model sees.

`logmel` holds the transform, `cache` the on-disk cache, `extract` the batched extraction of many files.
"""

from __future__ import annotations

from ssad.features.cache import FeatureCache
from ssad.features.extract import compute_log_mels
from ssad.features.logmel import LogMel, sliding_windows, window_starts

__all__ = ["LogMel", "sliding_windows", "window_starts", "FeatureCache", "compute_log_mels"]
