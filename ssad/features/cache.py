"""On-disk cache of log-mels per file: repeated runs skip decoding and the STFT."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import numpy as np

from ssad.core.atomic import atomic_path
from ssad.core.errors import BadInputError

__all__ = ["FEATURE_CACHE_FORMAT", "FeatureCache"]

# Bump when the stored array format or the meaning of a cached entry changes: every old entry then misses.
FEATURE_CACHE_FORMAT = 1
_HASH_CHUNK_BYTES = 1 << 20


def _canonical(value: object, where: str) -> object:
    """`value` as plain JSON data, numbers as floats, so equal settings hash equally (2 and 2.0 alike)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    msg = f"{where} must be JSON-like (None, bool, number, str, list, dict), got {type(value).__name__}: {value!r}"
    raise ValueError(msg)


class FeatureCache:
    """On-disk cache of per-file feature arrays (one `.npy` each), so repeated runs skip decoding and the STFT.

    An entry's key is the sha256 of the canonical JSON of (`feature_params`, `read_params`, format version)
    followed by the file's bytes: a changed parameter or a changed file misses, while an identical file
    under another name or folder hits. Entries are written to a temporary file and renamed into place, and
    an entry that cannot be loaded counts as a miss, so an interrupted run never leaves a bad hit behind.

    Args:
        directory: where entries live (created as needed), as `<directory>/<key[:2]>/<key>.npy`.
        feature_params: what defines the features, e.g. `LogMel.params`.
        read_params: what defines the waveform read from a file (sample rate, length, length policy).
    """

    def __init__(self, directory: str | Path, feature_params: dict, read_params: dict | None = None) -> None:
        if not isinstance(feature_params, dict) or not (read_params is None or isinstance(read_params, dict)):
            msg = f"feature_params and read_params must be dicts, got {type(feature_params).__name__} and {type(read_params).__name__}"
            raise ValueError(msg)
        self.directory = Path(directory)
        self.feature_params = dict(feature_params)
        self.read_params = dict(read_params or {})
        spec = {
            "format": FEATURE_CACHE_FORMAT,
            "features": _canonical(self.feature_params, "feature_params"),
            "read": _canonical(self.read_params, "read_params"),
        }
        canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)
        self._params_digest = hashlib.sha256(canonical.encode()).digest()

    def key(self, path: str | Path) -> str:
        """The entry key of `path` under this cache's parameters (reads the file once)."""
        digest = hashlib.sha256(self._params_digest)
        try:
            with open(path, "rb") as f:
                while chunk := f.read(_HASH_CHUNK_BYTES):
                    digest.update(chunk)
        except OSError as error:
            raise BadInputError(
                [(path, f"cannot read: {error.strerror or error}")], header="feature cache"
            ) from error
        return digest.hexdigest()

    def entry_path(self, key: str) -> Path:
        """Where the entry for `key` is stored."""
        return self.directory / key[:2] / f"{key}.npy"

    def get(self, path: str | Path, *, key: str | None = None) -> np.ndarray | None:
        """The cached float32 array for `path`, or None on a miss (a corrupt entry is removed and misses)."""
        entry = self.entry_path(key or self.key(path))
        if not entry.is_file():
            return None
        try:
            array = np.load(entry, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            array = None
        if not isinstance(array, np.ndarray) or array.dtype != np.float32:
            with contextlib.suppress(OSError):
                entry.unlink()
            return None
        return array

    def put(self, path: str | Path, array: np.ndarray, *, key: str | None = None) -> Path:
        """Store `array` (as float32) as the entry for `path`, atomically; return the entry's path."""
        entry = self.entry_path(key or self.key(path))
        data = np.ascontiguousarray(array, dtype=np.float32)
        with atomic_path(entry) as tmp, open(tmp, "wb") as f:
            np.save(f, data, allow_pickle=False)
        return entry
