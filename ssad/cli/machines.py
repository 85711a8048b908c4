"""The commands that change a saved detector's machines: enroll a new one, calibrate it on site, feedback (false
alarms, confirmed faults; undo, redo); and export its network for onnxruntime."""

from __future__ import annotations

import argparse
from typing import Any

from ssad.cli.options import shared_options
from ssad.core.errors import SsadError

__all__ = ["add_machine_commands"]

#: what the recordings arguments take, as `ssad score` does
_RECORDINGS = "files, folders (the .wav files directly in them) or quoted patterns such as 'new/*.wav'"


def _cmd_enroll(args: argparse.Namespace) -> None:
    from ssad.detector.enrollment import enroll

    update = enroll(args.detector, args.machine, args.files, skip_bad=args.skip_bad, progress=not args.quiet,
                    false_alarm_rate=args.false_alarm_rate)
    print(update.format())


def _cmd_calibrate(args: argparse.Namespace) -> None:
    from ssad.detector.enrollment import calibrate

    update = calibrate(args.detector, args.machine, args.files, skip_bad=args.skip_bad, progress=not args.quiet)
    print(update.format())


def _cmd_feedback(args: argparse.Namespace) -> None:
    from ssad.detector import enrollment

    undo = args.undo or args.undo_enrolment
    given = [name for name, used in (("--normal/--anomaly", bool(args.normal or args.anomaly)), ("--undo", undo),
                                     ("--redo", args.redo)) if used]
    if len(given) != 1:
        raise SsadError("feedback needs one of: --normal FILES (false alarms) and/or --anomaly FILES (confirmed "
                        "faults), --undo (roll the machine's last update back), --redo (re-apply what --undo rolled "
                        f"back); {'got ' + ' and '.join(given) if given else 'got none'}")
    if undo:
        print(enrollment.undo(args.detector, args.machine, undo_enrolment=args.undo_enrolment).format())
    elif args.redo:
        print(enrollment.redo(args.detector, args.machine).format())
    else:
        update = enrollment.feedback(args.detector, args.machine, args.normal, anomaly=args.anomaly,
                                     skip_bad=args.skip_bad, progress=not args.quiet)
        print(update.format())


def _cmd_export(args: argparse.Namespace) -> None:
    from ssad.encoder.onnx import export_onnx

    folder = export_onnx(args.detector)
    print(f"exported the log-mel front end and the network as ONNX to {folder}")


def add_machine_commands(commands: Any) -> None:
    """Register `enroll`, `feedback` and `export` on the `ssad` sub-command parser."""
    enroll = commands.add_parser("enroll", help="add a new machine to a saved detector from a few normal recordings",
                                 parents=shared_options(quiet=True, skip_bad=True,
                                                        rate="the detector's, 0.05 unless it was made with another"))
    enroll.add_argument("--detector", required=True)
    enroll.add_argument("--machine", required=True, help="any name, e.g. site-a/fan-7")
    enroll.add_argument("files", nargs="*", help=f"normal recordings of the machine: {_RECORDINGS}")
    enroll.set_defaults(handler=_cmd_enroll)

    calibrate = commands.add_parser(
        "calibrate", help="a learning period: recordings of the normal machine where it stands set its thresholds",
        description="Scores recordings of a machine in its normal state, made where it stands (after enrolment), "
        "and sets its thresholds anew from them beside its enrolment recordings, so that the false-alarm rate it "
        "aims at holds on site. The model is not changed; `ssad feedback --undo` rolls it back.",
        parents=shared_options(quiet=True, skip_bad=True))
    calibrate.add_argument("--detector", required=True)
    calibrate.add_argument("--machine", required=True, help="the machine, as enrolled")
    calibrate.add_argument("files", nargs="+", help=f"normal recordings of it made on site: {_RECORDINGS}")
    calibrate.set_defaults(handler=_cmd_calibrate)

    feedback = commands.add_parser(
        "feedback", help="an operator's word on a machine: --normal FILES (false alarms: learnt as normal, the "
        "machine refitted), --anomaly FILES (confirmed faults: kept as labelled clips); or --undo / --redo the "
        "machine's last update", parents=shared_options(quiet=True, skip_bad=True))
    feedback.add_argument("--detector", required=True)
    feedback.add_argument("--machine", required=True)
    feedback.add_argument("--normal", nargs="+", default=[], help=f"recordings wrongly flagged as anomalous: {_RECORDINGS}")
    feedback.add_argument("--anomaly", nargs="+", default=[],
                          help="recordings of confirmed faults, kept as labelled clips of the machine (its normal "
                          "references and thresholds stay as they are)")
    feedback.add_argument("--undo", action="store_true",
                          help="roll the machine's last update back (not its enrolment: see --undo-enrolment)")
    feedback.add_argument("--undo-enrolment", action="store_true",
                          help="as --undo, and roll back the machine's enrolment too when that is its last update "
                          "(which removes the machine)")
    feedback.add_argument("--redo", action="store_true",
                          help="re-apply the update --undo rolled back last (until the next update)")
    feedback.set_defaults(handler=_cmd_feedback)

    export = commands.add_parser("export", help="export a detector's network (and log-mel front end) for onnxruntime")
    export.add_argument("--detector", required=True)
    export.add_argument("--format", required=True, choices=["onnx"])
    export.set_defaults(handler=_cmd_export)
