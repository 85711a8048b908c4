"""Every `ssad` command: the parser and routing (`main`), training (`fit`), evaluation, the field commands."""

from __future__ import annotations

from ssad.cli.main import in_cli_words, lightning_command, main

__all__ = ["main", "in_cli_words", "lightning_command"]
