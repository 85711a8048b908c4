"""Operating conditions of the domain-shift preset: the same units at another speed, microphone place or background.

As in DCASE 2022-2024, each section (a unit here) has a source domain with plenty of training clips and a
target domain, the same unit in one changed condition, with a handful. A section's target changes one thing,
chosen by the section's number: the machine's speed, the microphone's position (its level and the room's
colouring between machine and microphone), or the background (louder, from another part of the plant).
"""

from __future__ import annotations

from dataclasses import dataclass

from ssad.synthesis.background import POOL_SIZE

__all__ = ["SOURCE", "Condition", "condition"]


@dataclass(frozen=True)
class Condition:
    """One operating condition: speed re nominal, microphone colouring and level, background level and part."""

    speed: float = 1.0
    mic: str = "A"
    mic_tilt_db_per_oct: float = 0.0
    mic_gain_db: float = 0.0
    noise: str = "A"
    background_db: float = 0.0
    ambiences: tuple[int, ...] | None = None

    @property
    def attributes(self) -> str:
        """The condition as the tail of a DCASE 2022 file name: ``speed_108_mic_A_noise_A``."""
        return f"speed_{round(self.speed * 100)}_mic_{self.mic}_noise_{self.noise}"


SOURCE = Condition(ambiences=tuple(range(POOL_SIZE - 1)))
_TARGETS = (
    Condition(speed=1.08, ambiences=SOURCE.ambiences),
    Condition(mic="B", mic_tilt_db_per_oct=-1.5, mic_gain_db=-4.0, ambiences=SOURCE.ambiences),
    Condition(noise="B", background_db=4.0, ambiences=(POOL_SIZE - 1,)),
)


def condition(section: int, domain: str) -> Condition:
    """The condition of a section's domain: the source, or the one change its target makes."""
    return SOURCE if domain == "source" else _TARGETS[section % len(_TARGETS)]
