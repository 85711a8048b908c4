"""Explanations of scores: when in a clip, in which frequencies and what kind of change made it unusual.

`Detector.explain` gives an `ssad.explain.explanation.Explanation`; `ssad.explain.plot` draws it; the
detector keeps each machine's normal band statistics (`ssad.explain.bands`) to compare clips with.
"""
