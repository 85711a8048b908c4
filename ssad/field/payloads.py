"""What one MQTT message may carry: raw 16-bit little-endian mono PCM, within a stated size limit."""

from __future__ import annotations

import numpy as np

from ssad.audio.reading import pcm16_to_float

__all__ = ["MAX_PAYLOAD_BYTES", "PACKET_HEADROOM", "SAMPLE_BYTES", "payload_samples", "pcm_bytes_to_float"]

#: raw PCM bytes per sample (16-bit little-endian mono)
SAMPLE_BYTES = 2
#: the largest message a source takes: 8 MiB, 262 s of 16-kHz audio (a message holds a window or less)
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
#: a PUBLISH packet's topic (at most 65,535 bytes) and properties beside its payload
PACKET_HEADROOM = 128 * 1024


def pcm_bytes_to_float(data: bytes) -> np.ndarray:
    """16-bit little-endian PCM bytes (even length) -> float32 in [-1, 1), the scale WAVs are read at."""
    return pcm16_to_float(np.frombuffer(data, dtype="<i2"))


def payload_samples(payload: bytes, limit: int = MAX_PAYLOAD_BYTES) -> tuple[np.ndarray | None, tuple[str, str] | None]:
    """A message's samples (None when it has none usable) and what was wrong with it, if anything: (kind, note),
    kind a key of `ssad.field.health.BAD_KINDS`. A stray last byte is dropped and the whole samples kept."""
    if not payload:
        return None, ("empty", "empty message skipped")
    if len(payload) > limit:
        return None, ("oversized", f"message of {len(payload)} bytes is over the limit of {limit} bytes; skipped")
    problem = None
    if len(payload) % SAMPLE_BYTES:
        problem = ("odd_bytes", f"message of {len(payload)} bytes is not whole 16-bit samples; its last byte was dropped")
        payload = payload[: len(payload) - 1]
        if not payload:
            return None, problem
    return pcm_bytes_to_float(payload), problem
