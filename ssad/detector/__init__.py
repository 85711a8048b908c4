"""The serving bundle: a detector (model + scorers + thresholds), its saved versions (`store`), enrolment."""

from __future__ import annotations

from ssad.data.clips import clip_key
from ssad.detector.detector import DetectionResult, Detector, fit_scorers
from ssad.detector.outputs import clip_outputs, typical_seconds
from ssad.detector.state import ConfirmedAnomalies, References

__all__ = ["ConfirmedAnomalies", "Detector", "DetectionResult", "References", "clip_key", "clip_outputs", "fit_scorers",
           "typical_seconds"]
