"""Features: clips to log-mels, the one place where waveforms become what every model sees (transform, cache, batches)."""

from __future__ import annotations

from ssad.features.logmel import FeatureCache, LogMel, compute_log_mels, sliding_windows

__all__ = ["LogMel", "sliding_windows", "FeatureCache", "compute_log_mels"]
