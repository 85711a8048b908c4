"""The serving bundle: a detector (model + scorers + thresholds), its saved versions (`store`), enrolment."""

from __future__ import annotations

from ssad.detector.detector import DetectionResult, Detector, fit_scorers
from ssad.detector.state import ConfirmedAnomalies, References

__all__ = ["ConfirmedAnomalies", "Detector", "DetectionResult", "References", "fit_scorers"]
