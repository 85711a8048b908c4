"""The encoder shipped inside the package: publish a trained run into it, and load it with its sha256 checked.

It lives in `ssad/pretrained/` (package data, so it is installed with ssad): `encoder.safetensors` (the
weights), `encoder.json` (metadata and hyper-parameters, as a saved detector keeps its model) and
`provenance.json` (what made it: corpus, config, commit, date, training time; and each file's sha256 and size).
`ssad pretrained publish RUN --provenance FILE` writes them after training; `ssad.load("pretrained")`,
`ssad detector --pretrained` and `--model.init_from pretrained` read them.
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
from ssad.modelio.loading import LoadedModel, from_weights, load, resolve_checkpoint, save_model_files
from ssad.models.weights import (
    ENCODER_FILES,
    MODEL_FILES,
    PACKAGE_DIR,
    PROVENANCE_FILE,
    encoder_dir,
    file_digest,
    read_pretrained,
    read_provenance,
)

__all__ = ["PACKAGE_DIR", "load_pretrained", "publish", "read_provenance"]


def load_pretrained(device: str | torch.device = "cpu", directory: str | Path | None = None) -> LoadedModel:
    """The shipped encoder (or the one in `directory`), after its files' sha256 are checked against provenance.json.

    A missing or changed file raises SsadError naming it and saying to reinstall ssad or re-run `make pretrain`.
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


def publish(source: str | Path, *, provenance: Mapping[str, Any], directory: str | Path | None = None) -> Path:
    """Make a trained model the shipped encoder: write its three files into `directory`, each atomically.

    `source` is anything `ssad.load` takes (a run folder, a checkpoint, a saved detector); `directory` defaults to
    the package's own folder (`PACKAGE_DIR`). `provenance` says what
    made it (corpus, config, training seconds, ...); the date, the checkout's commit (unless given), the source's
    file name and each file's sha256 and size are added. provenance.json is written last: a publish cut short
    leaves files whose sha256 it does not match, which loading reports.
    """
    model = load(source)
    if "embedding" not in model.module.output_names:
        raise SsadError(f"{source}: {type(model.module).__name__} gives no embeddings; the shipped encoder must "
                        "(enrolled machines are scored on them)")
    directory = encoder_dir(directory)
    commit = _git_commit(Path(__file__).resolve().parent)
    save_model_files(model, directory, ENCODER_FILES)
    record = {
        "published": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "source": _source_name(source),
        "model_class": model.metadata["model_class"],
        "embedding_dim": int(model.module.hparams.get("embedding_dim") or 0) or None,
        **jsonable(dict(provenance)),
        "files": {name: file_digest(directory / name) for name in ENCODER_FILES},
    }
    write_text_atomic(directory / PROVENANCE_FILE, json.dumps(record, indent=2) + "\n")
    return directory
