"""Explanations of scores: when in a clip, in which frequencies and what kind of change made it unusual.

Above the detector: `ssad.explain.explanation.explain(detector, clip)` gives an `Explanation`; `ssad.explain.plot`
draws it; the detector keeps each machine's normal band statistics (`ssad.features.bands`) to compare clips with.
"""
