"""The field commands of `ssad`: enroll a new machine, calibrate it on site, feedback on a false alarm (and undo),
export to ONNX."""

from __future__ import annotations

import argparse
from typing import Any

from ssad.cli.options import shared_options

__all__ = ["add_field_commands"]


def _cmd_enroll(args: argparse.Namespace) -> None:
    from ssad.detector.enrollment import enroll

    update = enroll(args.detector, args.machine, args.files, progress=not args.quiet,
                    false_alarm_rate=args.false_alarm_rate)
    print(f"enrolled {update.format()}")


def _cmd_calibrate(args: argparse.Namespace) -> None:
    from ssad.detector.enrollment import calibrate

    update = calibrate(args.detector, args.machine, args.files, progress=not args.quiet)
    print(f"calibrated on {len(args.files)} site recording(s): {update.format()}")


def _cmd_feedback(args: argparse.Namespace) -> None:
    from ssad.detector.enrollment import feedback, undo

    if args.undo == bool(args.normal):
        raise ValueError("feedback needs either --normal FILES (a false alarm) or --undo")
    if args.undo:
        record = undo(args.detector, args.machine)
        print(f"undid version {record['version']} ({record['action']} of {record['machine']} with "
              f"{len(record.get('files', []))} clip(s)); the detector is back at version {record['parent']}")
        return
    update = feedback(args.detector, args.machine, args.normal, progress=not args.quiet)
    print(f"learned from {len(args.normal)} false alarm(s): {update.format()}")


def _cmd_export(args: argparse.Namespace) -> None:
    from ssad.modelio.onnx import export_onnx

    folder = export_onnx(args.detector)
    print(f"exported the log-mel front end and the network as ONNX to {folder}")


def add_field_commands(commands: Any) -> None:
    """Register `enroll`, `feedback` and `export` on the `ssad` sub-command parser."""
    enroll = commands.add_parser("enroll", help="add a new machine to a saved detector from a few normal recordings",
                                 parents=shared_options(quiet=True, rate="the detector's, 0.05 unless it was made "
                                                                         "with another"))
    enroll.add_argument("--detector", required=True)
    enroll.add_argument("--machine", required=True, help="any name, e.g. site-a/fan-7")
    enroll.add_argument("files", nargs="*", help="normal recordings of the machine")
    enroll.set_defaults(handler=_cmd_enroll)

    calibrate = commands.add_parser(
        "calibrate", help="a learning period: recordings of the normal machine where it stands set its thresholds",
        description="Scores recordings of a machine in its normal state, made where it stands (after enrolment), "
        "and sets its thresholds anew from them beside its enrolment recordings, so that the false-alarm rate it "
        "aims at holds on site. The model is not changed; `ssad feedback --undo` rolls it back.",
        parents=shared_options(quiet=True))
    calibrate.add_argument("--detector", required=True)
    calibrate.add_argument("--machine", required=True, help="the machine, as enrolled")
    calibrate.add_argument("files", nargs="+", help="normal recordings of it made on site")
    calibrate.set_defaults(handler=_cmd_calibrate)

    feedback = commands.add_parser("feedback", help="a false alarm: add normal clips to a machine and refit it; "
                                   "or --undo the last update", parents=shared_options(quiet=True))
    feedback.add_argument("--detector", required=True)
    feedback.add_argument("--machine", required=True)
    feedback.add_argument("--normal", nargs="+", default=[], help="recordings wrongly flagged as anomalous")
    feedback.add_argument("--undo", action="store_true", help="roll the machine's last update back")
    feedback.set_defaults(handler=_cmd_feedback)

    export = commands.add_parser("export", help="export a detector's network (and log-mel front end) for onnxruntime")
    export.add_argument("--detector", required=True)
    export.add_argument("--format", required=True, choices=["onnx"])
    export.set_defaults(handler=_cmd_export)
