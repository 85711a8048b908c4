"""`ssad pretrained`: publish a trained run as the encoder shipped inside the package, or show the one there."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ssad.core.errors import SsadError

__all__ = ["add_pretrained_command"]


def _read_provenance_file(path: str | None) -> dict[str, Any]:
    """The JSON object `--provenance` names (corpus, config, training seconds, ...); {} when none is given."""
    if path is None:
        return {}
    try:
        provenance = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SsadError(f"{path}: cannot read the --provenance JSON ({error})") from None
    if not isinstance(provenance, dict):
        raise SsadError(f"{path}: --provenance must hold a JSON object, e.g. {{\"corpus\": ..., \"config\": ...}}")
    return provenance


def _cmd_publish(args: argparse.Namespace) -> None:
    from ssad.encoder.pretrained import publish

    given = {"config": args.config, "training_seconds": args.training_seconds}
    provenance = {k: v for k, v in given.items() if v is not None} | _read_provenance_file(args.provenance)
    folder = publish(args.run, provenance=provenance, directory=args.dir)
    print(f"published {args.run} as the shipped encoder in {folder}")


def _cmd_show(args: argparse.Namespace) -> None:
    from ssad.encoder.pretrained import load_pretrained, read_provenance

    model = load_pretrained(directory=args.dir)  # checks every file's sha256 first
    record = read_provenance(args.dir)
    print(json.dumps({**record, "class_names": len(model.class_names)}, indent=2))


def add_pretrained_command(commands: Any) -> None:
    """Register `ssad pretrained publish` and `ssad pretrained show`."""
    parser = commands.add_parser("pretrained", help="the encoder shipped with ssad: publish a run as it, or show it")
    actions = parser.add_subparsers(dest="pretrained_command", metavar="ACTION", required=True)
    publish = actions.add_parser("publish", help="write a trained run's model into the package as the shipped encoder "
                                 "(encoder.safetensors, encoder.json, provenance.json with their sha256)")
    publish.add_argument("run", help="run folder, checkpoint or saved detector (anything ssad.load takes)")
    publish.add_argument("--config", default=None, metavar="FILE", help="the config the run was trained with, "
                         "recorded as given (e.g. configs/pretrain.yaml)")
    publish.add_argument("--training-seconds", type=float, default=None, help="how long training took, recorded")
    publish.add_argument("--provenance", default=None, metavar="FILE",
                         help="a JSON object merged into provenance.json (its keys win), e.g. a corpus description")
    publish.add_argument("--dir", default=None, help="where to write (default: the package's own folder, ssad/pretrained)")
    publish.set_defaults(handler=_cmd_publish)
    show = actions.add_parser("show", help="check the shipped encoder's sha256 and print its provenance")
    show.add_argument("--dir", default=None, help="folder of the encoder (default: the package's own, ssad/pretrained)")
    show.set_defaults(handler=_cmd_show)
