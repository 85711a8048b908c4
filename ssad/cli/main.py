"""The `ssad` command: synth, data, fit (LightningCLI), evaluate, detector, score, explain, ensemble; monitor, enroll,
feedback, export; serve; pretrained."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from ssad.cli.explain import add_explain_command
from ssad.cli.machines import add_machine_commands
from ssad.cli.monitor import add_monitor_command
from ssad.cli.options import DEFAULT_FALSE_ALARM_RATE, SuggestingParser, shared_options
from ssad.cli.pretrained import add_pretrained_command
from ssad.cli.serve import add_serve_command
from ssad.core.errors import SsadError

__all__ = ["main"]

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
#: options of `ssad` itself, which may stand before any command (Lightning's included)
GLOBAL_FLAGS = ("-v", "--verbose")

#: Python parameters that library messages name -> the flags that set them, in ssad's own commands and in
#: Lightning's (`ssad fit`), so that a message tells the user what to type.
_FLAGS = {"skip_bad=True": "--skip-bad", "skip_bad": "--skip-bad", "machine_ids": "--machine",
          "replace=True": "--force", "undo_enrolment=True": "--undo-enrolment"}
_LIGHTNING_FLAGS = {"skip_bad=True": "--data.skip_bad true", "skip_bad": "--data.skip_bad",
                    "n_warped": "--data.n_warped", "n_mixed": "--data.n_mixed"}


def in_cli_words(message: str, lightning: bool = False) -> str:
    """A library message with each Python parameter it names replaced by its command-line flag."""
    for name, flag in (_LIGHTNING_FLAGS if lightning else _FLAGS).items():
        message = re.sub(rf"(?<![\w./-]){re.escape(name)}(?![\w/=-])", flag, message)
    return message


def _lightning_cli(argv: Sequence[str]) -> None:
    """Run Lightning's own CLI (imported only here: `import lightning` costs seconds)."""
    from ssad.cli.fit import run_lightning_cli

    run_lightning_cli(list(argv))


def _cmd_synth(args: argparse.Namespace) -> None:
    import dataclasses

    from ssad.synthesis import PRESETS, generate

    config = PRESETS[args.preset]
    if args.snr_db is not None:
        config = dataclasses.replace(config, snr_db=args.snr_db)
    summary = generate(args.out, seed=args.seed, config=config, workers=args.workers, progress=not args.quiet)
    print(summary.format())


def _cmd_data_check(args: argparse.Namespace) -> None:
    from ssad.audio.corpus_check import check_root

    print(check_root(args.root, skip_bad=args.skip_bad, progress=not args.quiet).format())


def _cmd_data_download(args: argparse.Namespace) -> None:
    from ssad.audio.download import download_corpus

    paths = download_corpus(
        args.corpus, args.root, parts=args.parts, machine_types=args.machine_types,
        base_url=args.base_url, progress=not args.quiet, keep_archives=args.keep_archives,
    )
    print(f"{args.corpus}: {len(paths)} archive(s) ready under {args.root}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from ssad.evaluation.run import evaluate_run

    evaluate_run(
        args.run, args.data, args.out, scorers=args.scorers, false_alarm_rate=args.false_alarm_rate,
        plots=not args.no_plots, device=args.device, cache_dir=args.cache_dir, skip_bad=args.skip_bad,
        progress=not args.quiet, floor=not args.no_floor,
    )


def _cmd_detector(args: argparse.Namespace) -> None:
    from ssad.detector import Detector
    from ssad.detector.store import refuse_replacing

    if args.pretrained and (args.run or args.data):
        raise SsadError("--pretrained makes a detector of the encoder shipped with ssad and no machine: give "
                        "no --run or --data (machines are added with `ssad enroll`)")
    if not args.pretrained and not (args.run and args.data):
        raise SsadError("give --run and --data (a trained run and the recordings to fit on), or --pretrained")
    if not args.force:
        refuse_replacing(args.out)  # before any work: fitting takes minutes
    if args.pretrained:
        detector = Detector.pretrained(scorers=args.scorers, false_alarm_rate=args.false_alarm_rate, device=args.device)
        detector.save(args.out, replace=args.force)
        print(f"detector saved to {args.out}: the encoder shipped with ssad, no machine yet; scorers "
              f"{', '.join(detector.scorers)} (default {detector.default_scorer}); thresholds aim at "
              f"{args.false_alarm_rate:g} false alarms on later recordings (--false-alarm-rate). Add a machine: "
              f"ssad enroll --detector {args.out} --machine NAME FILES...")
        return
    detector = Detector.fit(args.run, args.data, scorers=args.scorers, false_alarm_rate=args.false_alarm_rate,
                            device=args.device, skip_bad=args.skip_bad, progress=not args.quiet)
    detector.save(args.out, replace=args.force)
    print(f"detector saved to {args.out}: machines {', '.join(detector.machine_ids)}; scorers "
          f"{', '.join(detector.scorers)} (default {detector.default_scorer}); thresholds aim at "
          f"{args.false_alarm_rate:g} false alarms on later recordings (--false-alarm-rate)")


def _cmd_score(args: argparse.Namespace) -> None:
    from ssad.detector import Detector

    detector = Detector.load(args.detector, device=args.device, backend=args.backend)
    result = detector.score(args.files, machine_ids=args.machine, scorer=args.scorer, skip_bad=args.skip_bad)
    rows = result.as_records()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if sys.stdout.isatty():
        print(f"score ({result.scorer})\tthreshold\tmargin\tdecision\tfile")
    for row in rows:
        verdict = "ANOMALY" if row["decision"] else "normal"
        print(f"{row['score']:.6g}\t{row['threshold']:.6g}\t{row['margin']:+.4g}\t{verdict}\t{row['path']}")


def _cmd_ensemble(args: argparse.Namespace) -> None:
    from ssad.evaluation.run import evaluate_ensemble

    evaluate_ensemble(args.members, args.out, weights=args.weights, false_alarm_rate=args.false_alarm_rate, plots=not args.no_plots)


def _add_detector_arguments(parser: argparse.ArgumentParser, data_help: str, out_help: str,
                            required: bool = True) -> None:
    """What `evaluate` and `detector` share: the run, the root its scorers are fitted on, where to, how."""
    parser.add_argument("--run", required=required, help="run folder or checkpoint")
    parser.add_argument("--data", required=required, help=data_help)
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--scorers", nargs="+", default=None, help="default: every scorer the model supports")


def version_text() -> str:
    """`ssad --version`: ssad's version, with torch's and Python's read from their metadata (no torch import)."""
    from importlib.metadata import PackageNotFoundError, version

    from ssad import __version__

    try:
        torch = f"torch {version('torch')}"
    except PackageNotFoundError:
        torch = "torch not installed"
    return f"ssad {__version__} ({torch}, Python {sys.version.split()[0]})"


def _parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(
        prog="ssad",
        description="Self-supervised anomalous machine-sound detection (DCASE Task 2 style).",
        epilog="Training: `ssad fit --config configs/tiny.yaml --data.root ROOT` (Lightning's CLI; "
        "`ssad fit --help` lists every option).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument("--version", action="version", version=version_text(), help="print ssad's version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in LIGHTNING_COMMANDS:
        commands.add_parser(name, help=f"{name} a model from YAML configs (Lightning CLI)", add_help=False)

    synth = commands.add_parser("synth", help="generate synthetic machine sounds in the DCASE 2020 layout",
                                parents=shared_options(quiet=True))
    synth.add_argument("--out", required=True, help="folder to write")
    synth.add_argument("--preset", default="default", choices=["tiny", "default", "shift"],
                       help="tiny: for tests; default: the embedded benchmark (DCASE 2020 layout); shift: domain "
                       "shift in the DCASE 2022-2024 layout (sections, source/target, attribute tables)")
    synth.add_argument("--snr-db", type=float, default=None, choices=[-6.0, 0.0, 6.0],
                       help="machine-to-background ratio per type, as MIMII's three versions (default: the preset's, 0)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    synth.set_defaults(handler=_cmd_synth)

    data = commands.add_parser("data", help="check or download corpora")
    data_commands = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = data_commands.add_parser("check", help="index and validate a corpus root, print its summary",
                                     parents=shared_options(skip_bad=True, quiet=True))
    check.add_argument("root")
    check.set_defaults(handler=_cmd_data_check)
    download = data_commands.add_parser("download", help="fetch, verify and unpack an official corpus",
                                        parents=shared_options(quiet=True))
    download.add_argument("corpus", help="e.g. dcase2020")
    download.add_argument("--root", required=True)
    download.add_argument("--parts", nargs="+", default=None, help="e.g. dev additional eval")
    download.add_argument("--machine-types", nargs="+", default=None)
    download.add_argument("--base-url", default=None, help="mirror to fetch from instead of the official host")
    download.add_argument("--keep-archives", action="store_true")
    download.set_defaults(handler=_cmd_data_download)

    evaluate = commands.add_parser("evaluate", help="fit scorers on training clips, score test clips, write results",
                                   parents=shared_options(device="auto", skip_bad=True, quiet=True, rate=DEFAULT_FALSE_ALARM_RATE))
    _add_detector_arguments(evaluate, "corpus root", "folder for results, score files and plots")
    evaluate.add_argument("--no-plots", action="store_true")
    evaluate.add_argument("--no-floor", action="store_true",
                          help="leave out the spectral floor (per-ID Gaussian on each clip's log-mel mean and std)")
    evaluate.add_argument("--cache-dir", default=None, help="log-mel cache folder")
    evaluate.set_defaults(handler=_cmd_evaluate)

    detector = commands.add_parser("detector", help="fit scorers and thresholds on a root's normal training clips "
                                   "and save a detector (no test clips needed); or --pretrained: an empty one",
                                   parents=shared_options(device="cpu", skip_bad=True, quiet=True, rate=DEFAULT_FALSE_ALARM_RATE))
    _add_detector_arguments(detector, "corpus root, or a folder of one machine's recordings",
                            "folder to save the detector in (for `ssad score`)", required=False)
    detector.add_argument("--force", action="store_true",
                          help="replace a detector already in --out; it is kept whole in OUT/replaced/<time>/")
    detector.add_argument("--pretrained", action="store_true",
                          help="no --run or --data: the encoder shipped with ssad and no machine yet; add machines "
                          "with `ssad enroll`")
    detector.set_defaults(handler=_cmd_detector)

    score = commands.add_parser("score", help="score recordings with a saved detector",
                                parents=shared_options(device="cpu", skip_bad=True))
    score.add_argument("--detector", required=True)
    score.add_argument("files", nargs="+", help="recordings: files, folders (the .wav files directly in them) or "
                       "quoted patterns such as 'new/*.wav'")
    score.add_argument("--scorer", default=None, help="default: the detector's own choice")
    score.add_argument("--json", action="store_true")
    score.add_argument("--machine", default=None, help="the machine all files are from: type/id, or a type of one "
                       "machine (e.g. the folder it was fitted on); default: from DCASE file names, or the "
                       "detector's only machine")
    score.add_argument("--backend", default="torch", choices=["torch", "onnx"], help="onnx: the `ssad export` graphs")
    score.set_defaults(handler=_cmd_score)
    add_machine_commands(commands)
    add_pretrained_command(commands)

    add_monitor_command(commands)
    add_explain_command(commands)
    add_serve_command(commands)

    ensemble = commands.add_parser("ensemble", help="combine evaluated detectors' scores and evaluate the mix",
                                   parents=shared_options(rate=DEFAULT_FALSE_ALARM_RATE))
    ensemble.add_argument("--members", nargs="+", required=True,
                          help="EVAL_DIR[:SCORER] of `ssad evaluate` outputs (all scorers of a folder without :SCORER)")
    ensemble.add_argument("--weights", nargs="+", type=float, default=None)
    ensemble.add_argument("--out", required=True)
    ensemble.add_argument("--no-plots", action="store_true")
    ensemble.set_defaults(handler=_cmd_ensemble)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Log lines to whatever `sys.stderr` is when they are written, not the stream it was when the handler was made
    (a program that calls `main` in-process may swap stderr between calls, and close the old one)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _configure_logging() -> None:
    """ssad's own log lines on stderr, once (Lightning configures its own loggers)."""
    logger = logging.getLogger("ssad")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def lightning_command(argv: Sequence[str]) -> tuple[bool, list[str] | None]:
    """Whether `ssad`'s global flags ask for more logging, and the Lightning command line when one is asked for."""
    lead = 0
    while lead < len(argv) and argv[lead] in GLOBAL_FLAGS:
        lead += 1
    rest = list(argv[lead:])
    return lead > 0, rest if rest and rest[0] in LIGHTNING_COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ssad` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _configure_logging()
    verbose, lightning = lightning_command(argv)
    logger = logging.getLogger("ssad")
    level = logger.level
    if verbose:
        logger.setLevel(logging.DEBUG)
    try:
        from ssad.core.runtime import configure_runtime

        configure_runtime()
        if lightning is not None:
            _lightning_cli(lightning)
            return 0
        args = _parser().parse_args(argv)
        if not getattr(args, "handler", None):
            _parser().print_help()
            return 0
        args.handler(args)
        return 0
    except (SsadError, ValueError, FileNotFoundError) as error:
        # Bad input and bad arguments get one readable message; -v shows where it came from.
        if logger.isEnabledFor(logging.DEBUG):
            raise
        print(f"ssad: error: {in_cli_words(str(error), lightning=lightning is not None)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ssad: interrupted (a training run resumes with --ckpt_path last)", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`ssad score ... | head`): stop quietly, as command-line tools do on SIGPIPE
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        logger.setLevel(level)  # a second call in the same process starts from the same level


if __name__ == "__main__":
    sys.exit(main())
