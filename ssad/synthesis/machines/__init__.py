"""The machine types a synthetic corpus can hold: one module each, registered here by name.

Adding a type means writing `machines/<type>.py` with a `MODEL = MachineModel(...)` and appending
its name to `MACHINE_TYPES`. A type's position in `MACHINE_TYPES` enters its units' and clips'
random streams, so new types go at the end and every existing file keeps its bytes.
"""

from __future__ import annotations

import importlib

from ssad.synthesis.machines.model import Evidence, MachineModel, Unit, retune

__all__ = ["ANOMALY_KINDS", "MACHINE_TYPES", "MODELS", "PRETRAINING_TYPES", "Evidence", "MachineModel", "Unit", "retune"]

MACHINE_TYPES: tuple[str, ...] = ("fan", "pump", "slider", "valve")
#: the types the pretraining corpus may hold: every type, and the generic machine of a wide random world (no faults,
#: never in a `ssad synth` set)
PRETRAINING_TYPES: tuple[str, ...] = (*MACHINE_TYPES, "generic")
MODELS: dict[str, MachineModel] = {
    name: importlib.import_module(f"{__name__}.{name}").MODEL for name in PRETRAINING_TYPES
}
ANOMALY_KINDS: dict[str, tuple[str, ...]] = {name: MODELS[name].anomaly_kinds for name in MACHINE_TYPES}
