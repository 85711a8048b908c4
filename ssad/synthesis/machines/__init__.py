"""The machine types a synthetic corpus can hold: one module each, registered here by name.

Adding a type means writing `machines/<type>.py` with a `MODEL = MachineModel(...)` and appending
its name to `MACHINE_TYPES`. A type's position in `MACHINE_TYPES` enters its units' and clips'
random streams, so new types go at the end and every existing file keeps its bytes.
"""

from __future__ import annotations

import importlib

from ssad.synthesis.machines.model import Evidence, MachineModel, Unit, retune

__all__ = ["ANOMALY_KINDS", "MACHINE_TYPES", "MODELS", "Evidence", "MachineModel", "Unit", "retune"]

MACHINE_TYPES: tuple[str, ...] = ("fan", "pump", "slider", "valve")
MODELS: dict[str, MachineModel] = {
    name: importlib.import_module(f"{__name__}.{name}").MODEL for name in MACHINE_TYPES
}
ANOMALY_KINDS: dict[str, tuple[str, ...]] = {name: model.anomaly_kinds for name, model in MODELS.items()}
