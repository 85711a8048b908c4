"""Options that many `ssad` commands take, declared once: `add_parser(..., parents=shared_options(...))`."""

from __future__ import annotations

import argparse

__all__ = ["shared_options"]


def shared_options(*, quiet: bool = False, device: str | None = None,
                   skip_bad: bool = False) -> list[argparse.ArgumentParser]:
    """A parent parser with the options asked for: --quiet, --device (with this default), --skip-bad.

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
    return [parent]
