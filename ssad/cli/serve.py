"""`ssad serve`: the operator's console over a monitor's history, in a browser."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from ssad.core.errors import SsadError

__all__ = ["add_serve_command"]

log = logging.getLogger("ssad")

#: addresses of this computer only: the console then answers only to requests naming it (no DNS rebinding)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_serve_command(commands: Any) -> None:
    """Register `ssad serve` on the main parser's subcommands."""
    parser = commands.add_parser(
        "serve", help="the operator's console: machines, trends, alarms with explanations, feedback buttons",
        description="Serves a web page over the history `ssad monitor --history` keeps: each machine's state and "
        "last score, its trend over an hour, a day or a week, every alarm with its explanation and picture, and "
        "buttons 'this was normal' (`ssad feedback --normal`: a refit, undoable) and 'confirmed fault'. Access needs "
        "the token SSAD_CONSOLE_TOKEN (or one generated and printed here): open /?token=... once in a browser.")
    parser.add_argument("--history", required=True, metavar="URL",
                        help="the history: an SQLite file or postgresql://USER@HOST/DB, as given to ssad monitor")
    parser.add_argument("--detector", required=True, help="the detector folder the monitor uses (feedback updates it)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this computer only; 0.0.0.0 opens it to "
                        "the network: put it behind HTTPS)")
    parser.add_argument("--port", type=int, default=8765, help="default: %(default)s")
    parser.add_argument("--silent-after", type=float, default=60.0, metavar="SECONDS",
                        help="a machine with no window scored for this long is shown silent (default: %(default)s)")
    parser.add_argument("--poll", type=float, default=5.0, metavar="SECONDS",
                        help="how often an open page asks for new windows and alarms (default: %(default)s)")
    parser.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> None:
    """The `ssad serve` handler: open the history, build the app, serve it until Ctrl-C."""
    try:
        import uvicorn

        from ssad.console import create_app
        from ssad.console.auth import Access, console_token
        from ssad.history import History
    except ModuleNotFoundError as error:
        raise SsadError(f"ssad serve needs the console extra ({error.name} is missing): pip install 'ssad[console]' "
                        "(make setup installs it)") from None
    from ssad.detector import store

    if not store.holds_detector(args.detector):
        raise SsadError(f"{args.detector}: no saved detector there (give the folder `ssad monitor --detector` uses)")
    if not (args.history.startswith(("postgresql://", "postgres://", "sqlite://")) or Path(args.history).is_file()):
        raise SsadError(f"{args.history}: no such history file (start `ssad monitor --history {args.history}` first)")
    token, generated = console_token()
    history = History(args.history)
    if args.poll <= 0:
        raise SsadError(f"--poll {args.poll}: give a positive number of seconds")
    loopback = args.host in LOOPBACK
    app = create_app(history, args.detector, Access(token), silent_after=args.silent_after, poll_seconds=args.poll,
                     allowed_hosts=["127.0.0.1", "localhost", "[::1]", "::1"] if loopback else None)
    where = f"http://{'localhost' if loopback else args.host}:{args.port}/"
    if generated:
        print(f"ssad console: open {where}?token={token} (a new token; set SSAD_CONSOLE_TOKEN to keep one)",
              flush=True)
    else:
        print(f"ssad console: open {where}?token=<SSAD_CONSOLE_TOKEN> once to log in", flush=True)
    if not loopback:
        print(f"ssad console: listening on {args.host}, not only this computer: anyone who can reach it sees the "
              "login page; serve it behind HTTPS", file=sys.stderr)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        history.close()
