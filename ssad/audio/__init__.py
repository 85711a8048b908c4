"""Audio files on disk: a corpus folder -> clip table (layout), reading clips safely, checking them, downloads."""

from __future__ import annotations

from ssad.audio.clips import Clip
from ssad.audio.layout import index_root
from ssad.audio.reading import read_clip

__all__ = ["Clip", "index_root", "read_clip"]
