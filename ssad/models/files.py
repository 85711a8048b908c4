"""Model files, read and written: a saved model (safetensors + JSON), the encoder shipped in the package, any of them or a run.

A saved model is two plain files in a folder, safetensors weights and a JSON description (nothing pickled):
`model.*` in a saved detector, `encoder.*` in the package's `pretrained/` folder, beside whose files
`provenance.json` says what made them and holds their sha256, checked before they are read. Lightning
checkpoints are found and read by `ssad.models.runs`; `read_weights` takes any of the three.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ssad.core.atomic import atomic_path, write_text_atomic
from ssad.core.errors import SsadError
from ssad.core.jsonable import jsonable
from ssad.models.base import CHECKPOINT_KEY
from ssad.models.runs import read_checkpoint, warn_if_unfinished

__all__ = [
    "ENCODER_FILES",
    "MODEL_FILES",
    "PACKAGE_DIR",
    "PRETRAINED",
    "UNIT_CLASSES",
    "PROVENANCE_FILE",
    "encoder_dir",
    "file_digest",
    "read_model_files",
    "read_pretrained",
    "read_provenance",
    "read_weights",
    "write_model_files",
]

log = logging.getLogger("ssad")

#: a saved detector's model: safetensors weights and the JSON description (metadata + hyper-parameters)
MODEL_FILES = ("model.safetensors", "model.json")
#: the shipped encoder's files, in `PACKAGE_DIR`
ENCODER_FILES = ("encoder.safetensors", "encoder.json")
#: what made the shipped encoder (corpus, config, commit, date, training time) and its files' sha256 and size
PROVENANCE_FILE = "provenance.json"
#: the name that means the shipped encoder (`ssad.load("pretrained")`, `--model.init_from pretrained`)
PRETRAINED = "pretrained"
#: the shipped encoder's metadata says so: its classes are units of its synthetic pretraining corpus, so a
#: machine of the same name (`fan/id_00`) is not one of them and its softmax scores none
UNIT_CLASSES = "classes_are_pretraining_units"
#: the package folder the shipped encoder lives in (package data, installed with ssad)
PACKAGE_DIR = Path(__file__).resolve().parents[1] / "pretrained"
_CHUNK = 1 << 20
_REMEDY = ("reinstall ssad (pip install --force-reinstall ssad); in a checkout, `git checkout -- ssad/pretrained` "
           "restores the committed files and `make pretrain` trains them anew")


def write_model_files(module: torch.nn.Module, metadata: Mapping[str, Any], directory: str | Path,
                      files: tuple[str, str] = MODEL_FILES) -> None:
    """Write a model's weights (safetensors) and its description (JSON: metadata + hyper-parameters) atomically.

    `init_from` is left out of the hyper-parameters: where training started is no part of the model (and may
    be a path of the machine it was trained on).
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights, description = files
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(directory / weights) as tmp:
        save_file(state, tmp)
    hyper_parameters = {k: v for k, v in dict(getattr(module, "hparams", {})).items() if k != "init_from"}
    text = json.dumps({"metadata": jsonable(metadata), "hyper_parameters": jsonable(hyper_parameters)}, indent=2)
    write_text_atomic(directory / description, text)


def read_model_files(directory: str | Path, files: tuple[str, str] = MODEL_FILES) -> dict[str, Any]:
    """A saved model as a checkpoint holds it: `state_dict`, `hyper_parameters` and the ssad metadata."""
    from safetensors.torch import load_file

    directory = Path(directory)
    weights, description = files
    try:
        text = json.loads((directory / description).read_text())
        state = load_file(directory / weights)
        metadata, hyper_parameters = text["metadata"], text["hyper_parameters"]
    except Exception as error:  # safetensors raises its own error type for a file that is not safetensors
        raise SsadError(f"{directory}: not a saved ssad model ({error})") from None
    return {"state_dict": state, "hyper_parameters": hyper_parameters, CHECKPOINT_KEY: metadata}


def file_digest(path: str | Path) -> dict[str, Any]:
    """sha256 and size in bytes of a file, as provenance.json records them."""
    sha256, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha256.update(chunk)
            size += len(chunk)
    return {"sha256": sha256.hexdigest(), "bytes": size}


def encoder_dir(directory: str | Path | None = None) -> Path:
    """`directory`, or when None the package's own folder of the shipped encoder (`PACKAGE_DIR`, read at each call)."""
    return PACKAGE_DIR if directory is None else Path(directory)


def read_provenance(directory: str | Path | None = None) -> dict[str, Any]:
    """The shipped encoder's provenance.json; SsadError naming the file when it is missing or unreadable."""
    path = encoder_dir(directory) / PROVENANCE_FILE
    if not path.is_file():
        raise SsadError(f"{path}: missing, so the shipped encoder cannot be checked; {_REMEDY}")
    try:
        provenance = json.loads(path.read_text())
        dict(provenance["files"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SsadError(f"{path}: unreadable ({error!r}); {_REMEDY}") from None
    return provenance


def read_pretrained(directory: str | Path | None = None) -> dict[str, Any]:
    """The shipped encoder, as `read_model_files` gives it, once every file's sha256 matches provenance.json."""
    directory = encoder_dir(directory)
    recorded = read_provenance(directory)["files"]
    for name in ENCODER_FILES:
        path = directory / name
        expected = recorded.get(name) or {}
        if not path.is_file():
            raise SsadError(f"{path}: missing from the shipped encoder; {_REMEDY}")
        if file_digest(path) != {"sha256": expected.get("sha256"), "bytes": expected.get("bytes")}:
            raise SsadError(f"{path}: sha256 or size differs from {directory / PROVENANCE_FILE} (a damaged or "
                            f"replaced file); {_REMEDY}")
    return read_model_files(directory, ENCODER_FILES)


def read_weights(source: str | Path) -> dict[str, Any]:
    """A model's `state_dict`, `hyper_parameters` and ssad metadata from wherever they are.

    `source` is a run folder or checkpoint, a saved detector's folder, a folder of the shipped encoder's files, or
    `"pretrained"`: the encoder shipped in the package, unless a file or folder of that name is in the current
    folder (a run folder called `pretrained` is read then, and the log says so).
    """
    path = Path(source)
    if str(source) == PRETRAINED:
        if not path.exists():
            return read_pretrained()
        log.info("reading ./%s, a file or folder of that name here, not the encoder shipped with ssad "
                 "(that one is %s)", PRETRAINED, encoder_dir())
    if (path / MODEL_FILES[0]).is_file():
        return read_model_files(path)
    if (path / ENCODER_FILES[0]).is_file():
        return read_pretrained(path)
    warn_if_unfinished(path)
    return read_checkpoint(path)

