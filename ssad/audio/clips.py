"""The clip table: one row per audio file, with what its name and folder say about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ATTRIBUTE_MARK", "Clip", "LABELS", "SPLITS", "SYNTHETIC_MARKS", "THIN_CLIPS", "attribute_class", "clip_key",
    "is_synthetic_class", "machine_key", "machine_of_class",
]

LABELS = ("normal", "anomaly", "unknown")
SPLITS = ("train", "test")
#: An ID with fewer normal training clips than this is "thin": it trains, and scorers and thresholds fall back.
THIN_CLIPS = 3
#: characters that mark synthesized class names (`<type>/<id>@warp1.100`, `<a>+<b>`): no real name may hold them
SYNTHETIC_MARKS = ("@", "+")
#: separates a machine from its recording condition in an attribute class: `fan/section_00|speed=1200,mic=A`
ATTRIBUTE_MARK = "|"


def machine_key(machine_type: str, machine_id: str) -> str:
    """The name of one machine everywhere in ssad, and the class of a real one: `<machine_type>/<machine_id>`."""
    return f"{machine_type}/{machine_id}"


def machine_type_of(name: str) -> str:
    """The machine type of a `machine_key` name (or of a synthesized class named after one): the part before the slash."""
    return name.split("/")[0]


def is_synthetic_class(name: str) -> bool:
    """Whether a classifier's class name is a synthesized instance rather than a real machine."""
    return any(mark in name for mark in SYNTHETIC_MARKS)


def machine_of_class(name: str) -> str:
    """The machine a real class belongs to (an attribute class's `<type>/<id>` part); a synthesized class is its own."""
    return name if is_synthetic_class(name) else name.split(ATTRIBUTE_MARK)[0]


@dataclass(frozen=True)
class Clip:
    """One audio file of a machine-sound corpus.

    Attributes:
        path: the file.
        machine_type: e.g. ``fan``, ``ToyCar``.
        machine_id: ``id_00`` (DCASE 2020) or ``section_00`` (DCASE 2021+).
        split: ``train`` or ``test``.
        label: ``normal``, ``anomaly`` or ``unknown`` (evaluation clips without ground truth).
        domain: ``source`` or ``target`` (2021+); ``source`` for 2020, which has no domain shift.
        attributes: extra attributes from the name or the attribute CSVs (2021+), as sorted pairs.
    """

    path: Path
    machine_type: str
    machine_id: str
    split: str
    label: str
    domain: str = "source"
    attributes: tuple[tuple[str, str], ...] = field(default=())

    @property
    def key(self) -> tuple[str, str]:
        """The (machine_type, machine_id) pair that names the machine this clip came from."""
        return (self.machine_type, self.machine_id)


def clip_key(clip: Clip) -> str:
    """The machine a clip is from, as scorers group by it: `<machine_type>/<machine_id>`."""
    return machine_key(clip.machine_type, clip.machine_id)


def attribute_class(clip: Clip) -> str:
    """The clip's machine and recording condition (DCASE 2021+ attributes) as one class name; the machine alone without attributes."""
    attributes = dict(clip.attributes)
    raw = attributes.pop("raw", "")
    condition = ",".join(f"{k}={v}" for k, v in sorted(attributes.items())) or raw
    if not condition:
        return clip_key(clip)
    for mark in (*SYNTHETIC_MARKS, ATTRIBUTE_MARK):  # a value must not make the class look synthesized
        condition = condition.replace(mark, "_")
    return f"{clip_key(clip)}{ATTRIBUTE_MARK}{condition}"
