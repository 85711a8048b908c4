"""What `ssad monitor --history` keeps: every scored window, the monitor's events, and each alarm with its
explanation, its picture and the audio of its first windows (for feedback from the console).

The monitor hands each window's JSON line (with its samples and, while alerting, its explanation) to `window`,
and each health event to `event`. Retention runs when the recorder starts and then once an hour.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from ssad.history import History
from ssad.history.retention import prune

if TYPE_CHECKING:
    from ssad.explain.explanation import Explanation

__all__ = ["HistoryRecorder"]

log = logging.getLogger("ssad")

#: events not worth a row: the heartbeat says nothing the windows do not
SKIPPED_EVENTS = frozenset({"heartbeat"})
PRUNE_EVERY_S = 3600.0


def epoch(iso: str) -> float:
    """Seconds since the epoch of an ISO 8601 time with its offset (the monitor's `time`)."""
    return datetime.fromisoformat(iso).timestamp()


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """Float samples in [-1, 1] as a 16-bit WAV file's bytes."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def picture_png(explanation: Explanation) -> bytes | None:
    """The explanation's picture (`ssad explain`'s), as PNG bytes; None when it holds no evidence to draw."""
    from ssad.explain.plot import explanation_png

    return None if explanation.evidence is None else explanation_png(explanation)


class HistoryRecorder:
    """Writes a monitor's windows, events and alarms into a `History`.

    Args:
        history: the open history.
        sample_rate: the windows' sample rate (for the alarm clips).
        clips_per_alarm: windows of audio kept per alarm (0: none; the console's "this was normal" needs them).
        keep: days of history kept (None: all).
        downsample_after: days after which windows are folded into one row a minute per machine (None: never).
    """

    def __init__(self, history: History, *, sample_rate: int, clips_per_alarm: int = 3, keep: float | None = None,
                 downsample_after: float | None = None) -> None:
        self.history = history
        self.sample_rate = sample_rate
        self.clips_per_alarm = clips_per_alarm
        self.keep = keep
        self.downsample_after = downsample_after
        self._alarms: dict[str, tuple[int, int]] = {}  # machine -> (open alarm id, clips kept)
        self._seen: set[str] = set()
        self._pruned = -PRUNE_EVERY_S
        self._maybe_prune()

    def _maybe_prune(self) -> None:
        if (self.keep is None and self.downsample_after is None) or time.monotonic() - self._pruned < PRUNE_EVERY_S:
            return
        self._pruned = time.monotonic()
        done = prune(self.history, keep=self.keep, downsample_after=self.downsample_after)
        if done.dropped or done.folded:
            log.info("history: dropped %d row(s) older than %s days, downsampled %d window(s)", done.dropped,
                     self.keep, done.folded)

    def window(self, line: dict[str, Any], samples: np.ndarray, explanation: Explanation | None) -> None:
        """Keep one scored window (its JSON line); open, extend or close its machine's alarm."""
        machine, t = line["machine"], epoch(line["time"])
        if machine not in self._seen:
            self._seen.add(machine)
            if self.history.close_open_alarms(machine, t):
                log.info("history: closed %s's alarm left open by a monitor that stopped", machine)
        self.history.add_window(machine, t=t, score=line["score"], threshold=line["threshold"],
                                smoothed=line["smoothed"], alert=line["alert"], drift=line["drift"],
                                learning=bool(line.get("learning")), summary=line.get("explanation"))
        if line["alert"]:
            self._alarm_window(line, t, samples, explanation)
        elif machine in self._alarms:
            alarm_id, _ = self._alarms.pop(machine)
            self.history.close_alarm(alarm_id, t)
            self.history.add_event("alarm_over", t, machine, alarm=alarm_id, smoothed=line["smoothed"])
        self._maybe_prune()

    def _alarm_window(self, line: dict[str, Any], t: float, samples: np.ndarray,
                      explanation: Explanation | None) -> None:
        machine = line["machine"]
        if machine not in self._alarms:
            detail = {k: line.get(k) for k in ("score", "threshold", "smoothed", "above_for", "stream", "start",
                                               "when", "where")}
            titled = None if explanation is None else replace(explanation, path=f"{line['stream']} at {line['start']} s")
            alarm_id = self.history.open_alarm(
                machine, t, kind=line.get("kind", ""), summary=line.get("explanation", ""), detail=detail,
                picture=picture_png(titled) if titled is not None else None)
            self.history.add_event("alarm", t, machine, alarm=alarm_id, summary=line.get("explanation"),
                                   score=line["score"], threshold=line["threshold"])
            self._alarms[machine] = (alarm_id, 0)
        alarm_id, kept = self._alarms[machine]
        if kept < self.clips_per_alarm:
            self.history.add_clip(alarm_id, t, wav_bytes(samples, self.sample_rate))
            self._alarms[machine] = (alarm_id, kept + 1)

    def event(self, event: dict[str, Any]) -> None:
        """Keep one of the monitor's events (armed, broker_down, broker_up, ...; not heartbeats)."""
        kind = event.get("event", "event")
        if kind in SKIPPED_EVENTS:
            return
        data = {k: v for k, v in event.items() if k not in ("event", "time", "machine")}
        self.history.add_event(kind, epoch(event["time"]) if "time" in event else time.time(), event.get("machine"),
                               **data)

    def close(self) -> None:
        """Commit what is buffered and close the history."""
        self.history.close()
