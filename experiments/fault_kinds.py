"""AUC per synthetic fault kind: which faults each detector hears, from `ssad evaluate` score files.

    python experiments/fault_kinds.py EVAL_DIR[:SCORER] [EVAL_DIR[:SCORER] ...]

Only for roots made by `ssad synth` with the default configuration: an anomalous clip's fault kind follows
from its type, machine ID and index as the generator cycles through them. For each kind, the AUC of that
kind's anomalous clips against all normal test clips of the same machine ID, averaged over IDs.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

NAME = re.compile(r"(normal|anomaly)_id_(\d+)_(\d+)\.wav$")


def kind_of(machine_type: str, machine_id: int, index: int) -> str:
    """The fault kind the generator gives anomalous clip `index` of this machine."""
    from ssad.synthesis.config import ID_STEP, SynthConfig

    kinds = SynthConfig().kinds_for(machine_type)
    return kinds[(index + machine_id // ID_STEP) % len(kinds)]


def per_kind(spec: str) -> dict[tuple[str, str], float]:
    """(type, kind) -> mean over IDs of the AUC of that kind against the ID's normal test clips."""
    from ssad.evaluation.table import ScoreTable

    folder, _, scorer = spec.partition(":")
    table = ScoreTable.from_csv(Path(folder) / "scores.csv").filter(split="test")
    table = table.filter(scorer=scorer or table.scorers[0])
    groups: dict[tuple[str, str], dict[str, list]] = defaultdict(lambda: {"normal": [], "anomaly": defaultdict(list)})
    for path, t, score in zip(table.path, table.machine_type, table.score, strict=True):
        match = NAME.search(str(path))
        if not match:
            continue
        label, machine_id, index = match[1], int(match[2]), int(match[3])
        entry = groups[(t, machine_id)]
        if label == "normal":
            entry["normal"].append(score)
        else:
            entry["anomaly"][kind_of(t, machine_id, index)].append(score)
    aucs: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (t, _), entry in groups.items():
        for kind, scores in entry["anomaly"].items():
            y = [0] * len(entry["normal"]) + [1] * len(scores)
            aucs[(t, kind)].append(roc_auc_score(y, entry["normal"] + scores))
    return {key: float(np.mean(v)) for key, v in aucs.items()}


def main(specs: list[str]) -> None:
    results = {spec: per_kind(spec) for spec in specs}
    keys = sorted({k for r in results.values() for k in r})
    print("| type | fault | " + " | ".join(specs) + " |")
    print("|" + "---|" * (len(specs) + 2))
    for t, kind in keys:
        print(f"| {t} | {kind} | " + " | ".join(f"{results[s].get((t, kind), float('nan')):.3f}" for s in specs) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
