"""What ssad may store as JSON: plain values, lists and string-keyed objects, numpy scalars as Python numbers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ssad.core.errors import SsadError

__all__ = ["jsonable"]


def jsonable(value: Any) -> Any:
    """`value` as JSON-able Python (tuples as lists, keys as strings); SsadError naming any other value."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise SsadError(f"cannot store {type(value).__name__} value {value!r} as JSON")
