"""Options that many `ssad` commands take, declared once: `add_parser(..., parents=shared_options(...))`."""

from __future__ import annotations

import argparse

__all__ = ["DEFAULT_FALSE_ALARM_RATE", "RATE_HELP", "false_alarm_rate", "shared_options"]


#: `ssad.scoring.thresholds.DEFAULT_FALSE_ALARM_RATE`, repeated so that parsing arguments imports no scipy
#: (tests/test_cli.py holds the two equal)
DEFAULT_FALSE_ALARM_RATE = 0.05
#: what --false-alarm-rate means, in every command that takes it
RATE_HELP = ("share of a normal machine's clips, recorded later, that may raise an alarm: each threshold aims at it "
             "(default: %s)")


def false_alarm_rate(text: str) -> float:
    """argparse type of --false-alarm-rate: a number strictly between 0 and 1."""
    try:
        rate = float(text)
    except ValueError:
        rate = float("nan")
    if not 0 < rate < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a share strictly between 0 and 1, e.g. 0.05 for 5 %")
    return rate


def shared_options(*, quiet: bool = False, device: str | None = None, skip_bad: bool = False,
                   rate: float | str | None = None) -> list[argparse.ArgumentParser]:
    """A parent parser with the options asked for: --quiet, --device (with this default), --skip-bad, and
    --false-alarm-rate (`rate`: its default, or words saying where the default comes from).

    A new parser at each call, so that one command's default (`--device auto`) is not another's.
    """
    parent = argparse.ArgumentParser(add_help=False)
    if device is not None:
        parent.add_argument("--device", default=device, help="cpu, cuda or auto (default: %(default)s)")
    if skip_bad:
        parent.add_argument("--skip-bad", action="store_true",
                            help="leave out files that cannot be read or are too short, and list them, instead of failing")
    if quiet:
        parent.add_argument("--quiet", action="store_true", help="no progress bar")
    if rate is not None:
        default = rate if isinstance(rate, float) else None
        parent.add_argument("--false-alarm-rate", type=false_alarm_rate, default=default, metavar="R",
                            help=RATE_HELP % rate)
    return [parent]
