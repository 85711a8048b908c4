"""The serving bundle: a detector (model + scorers + thresholds), its saved versions (`store`), enrolment."""

from __future__ import annotations

from ssad.detector.detector import (
    DetectionResult,
    Detector,
    References,
    clip_key,
    clip_outputs,
    fit_scorers,
    typical_seconds,
)

__all__ = ["Detector", "DetectionResult", "References", "clip_key", "clip_outputs", "fit_scorers", "typical_seconds"]
