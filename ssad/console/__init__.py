"""The operator's console (`ssad serve`): the plant's machines, their trends and alarms from a monitor's history,
with feedback buttons, behind a token."""

from ssad.console.app import create_app

__all__ = ["create_app"]
