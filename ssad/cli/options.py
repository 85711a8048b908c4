"""What every `ssad` command's parser shares: options declared once (`shared_options`), and a parser that
suggests the nearest command or flag for a mistyped one (`SuggestingParser`)."""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["DEFAULT_FALSE_ALARM_RATE", "RATE_HELP", "SuggestingParser", "false_alarm_rate", "shared_options", "suggestion"]

_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (.*)")


def suggestion(word: str, candidates: Sequence[str]) -> str | None:
    """The candidate closest to a mistyped `word`, when one is close enough to be what was meant."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


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


class SuggestingParser(argparse.ArgumentParser):
    """An argparse parser whose errors add "did you mean ...?" for a mistyped command, choice or flag.

    Python's argparse suggests nothing before 3.14; the flags of an unrecognized argument are looked up in the
    (sub)command the command line chose.
    """

    _argv: list[str] | None = None

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        """argparse's, remembering the command line it parses (for `error`'s suggestions)."""
        self._argv = None if args is None else list(args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        if _UNRECOGNIZED.search(message):
            chosen = self._chosen_parser()
            if chosen is not self:  # its usage and its flags, not the top command's
                chosen.error(message)
        hint = self._hint(message)
        super().error(f"{message}{hint}")

    def _hint(self, message: str) -> str:
        invalid = _INVALID_CHOICE.search(message)
        if invalid:
            choices = re.findall(r"'([^']*)'", invalid.group(2))
            near = suggestion(invalid.group(1), choices)
            return f"; did you mean '{near}'?" if near else ""
        unrecognized = _UNRECOGNIZED.search(message)
        if not unrecognized:
            return ""
        flags = self.option_strings()
        hints = []
        for word in unrecognized.group(1).split():
            name = word.split("=", 1)[0]
            near = suggestion(name, flags) if name.startswith("-") else None
            if near:
                hints.append(f"'{near}' for '{name}'")
        return f"; did you mean {', '.join(hints)}?" if hints else ""

    def option_strings(self) -> list[str]:
        """Every flag this parser takes."""
        return [flag for action in self._actions for flag in action.option_strings]

    def _chosen_parser(self) -> SuggestingParser:
        """The deepest (sub)command parser the current command line names (this one when it names none)."""
        import sys

        parser: SuggestingParser = self
        for word in sys.argv[1:] if self._argv is None else self._argv:
            commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            chosen = commands[0].choices.get(word) if commands else None
            if isinstance(chosen, SuggestingParser):
                parser = chosen
        return parser
