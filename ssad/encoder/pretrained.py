"""The encoder shipped inside the package: publish a trained run into it, and load it with its sha256 checked.

It lives in `ssad/pretrained/` (package data, so it is installed with ssad): `encoder.safetensors` (the
weights), `encoder.json` (metadata and hyper-parameters, as a saved detector keeps its model) and
`provenance.json` (what made it: corpus, config, commit, date, training time; and each file's sha256 and size).
`ssad pretrained publish RUN [--config FILE] [--training-seconds S] [--provenance FILE]` writes them after
training (`make pretrain` calls it); `ssad.load("pretrained")`, `ssad detector --pretrained` and
`--model.init_from pretrained` read them, and `ssad pretrained show` prints what made them.
"""

from __future__ import annotations

import datetime
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ssad.core.atomic import write_text_atomic
from ssad.core.errors import SsadError
from ssad.core.jsonable import jsonable
from ssad.encoder.encoder import Encoder
from ssad.encoder.loading import from_weights, save_model_files
from ssad.models.files import (
    ENCODER_FILES,
    MODEL_FILES,
    PACKAGE_DIR,
    PROVENANCE_FILE,
    UNIT_CLASSES,
    encoder_dir,
    file_digest,
    read_pretrained,
    read_provenance,
    read_weights,
)
from ssad.models.runs import resolve_checkpoint

__all__ = ["PACKAGE_DIR", "load_pretrained", "publish", "read_provenance"]


def load_pretrained(device: str | torch.device = "cpu", directory: str | Path | None = None) -> Encoder:
    """The shipped encoder (or the one in `directory`), after its files' sha256 are checked against provenance.json.

    A missing or changed file raises SsadError naming it and saying how to restore it.
    """
    return from_weights(read_pretrained(directory), device, encoder_dir(directory))


def _git_commit(folder: Path) -> str | None:
    """The commit of the checkout `folder` is in (`+dirty` when tracked files differ from it); None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                                capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def _source_name(source: str | Path) -> str:
    """How provenance.json names what was published: the checkpoint's file name (no path of this machine)."""
    path = Path(source)
    if (path / MODEL_FILES[0]).is_file() or (path / ENCODER_FILES[0]).is_file():
        return path.name
    return resolve_checkpoint(path).name


def _without_local_paths(value: Any) -> Any:
    """`value` with every absolute path in it cut to its last part (a corpus root names its folder, not this machine's)."""
    if isinstance(value, Mapping):
        return {k: _without_local_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_local_paths(v) for v in value]
    if isinstance(value, str) and Path(value).is_absolute():
        return Path(value).name
    return value


def _training_record(weights: Mapping[str, Any]) -> dict[str, Any]:
    """What a Lightning checkpoint says of its training: epochs, steps and the data module's settings (the corpus)."""
    if "epoch" not in weights:
        return {}  # saved model files keep no training state
    record: dict[str, Any] = {"epochs": int(weights["epoch"]) + 1, "steps": int(weights.get("global_step", 0))}
    data = dict(weights.get("datamodule_hyper_parameters") or {})
    if data:
        settings = {k: v for k, v in data.items() if not k.startswith("_")}  # Lightning's own keys
        record["corpus"] = _without_local_paths(jsonable({"data_module": data.get("_class_path"), **settings}))
    return record


def publish(source: str | Path, *, provenance: Mapping[str, Any], directory: str | Path | None = None) -> Path:
    """Make a trained model the shipped encoder: write its three files into `directory`, each atomically.

    `source` is anything `ssad.load` takes (a run folder, a checkpoint, a saved detector); `directory` defaults to
    the package's own folder (`PACKAGE_DIR`). `provenance` says what made it (config, training seconds, ...); added
    are the date, the checkout's commit, the source's file name, a checkpoint's epochs, steps and data module
    settings (`corpus`, absolute paths cut to their last part), and each file's sha256 and size; `provenance`'s
    own keys win. provenance.json is written last: a publish cut short leaves files whose sha256 it does not
    match, which loading reports.
    """
    weights = read_weights(source)
    model = from_weights(weights, "cpu", source)
    if "embedding" not in model.module.output_names:
        raise SsadError(f"{source}: {type(model.module).__name__} gives no embeddings; the shipped encoder must "
                        "(enrolled machines are scored on them)")
    directory = encoder_dir(directory)
    commit = _git_commit(Path(__file__).resolve().parent)
    model.metadata[UNIT_CLASSES] = True
    save_model_files(model, directory, ENCODER_FILES)
    record = {
        "published": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "source": _source_name(source),
        "model_class": model.metadata["model_class"],
        "embedding_dim": int(getattr(getattr(model.module, "net", None), "embedding_dim", 0)
                             or model.module.hparams.get("embedding_dim") or 0) or None,
        **_training_record(weights),
        **jsonable(dict(provenance)),
        "files": {name: file_digest(directory / name) for name in ENCODER_FILES},
    }
    write_text_atomic(directory / PROVENANCE_FILE, json.dumps(record, indent=2) + "\n")
    return directory
