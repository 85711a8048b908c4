"""The live monitor: chunks in, sliding windows scored in batches by a saved detector, one JSON line per window out.

Per machine it keeps a smoothed score, an alert (smoothed score above the machine's threshold for N windows
running) and a drift test against the machine's training score distribution. With a learning period
(`MonitorSettings.learn`), a machine's first seconds of audio raise no alert: their scores set its threshold where
it stands (`AlarmThreshold.calibrated`, what `ssad calibrate` does with files), then an "armed" event says so.
A window scored while its machine is alerting is explained (`ssad.explain.explanation.explain`) as part of a flagged event, whatever
its own score (the alert is the verdict): its line gains `when` (seconds into the stream), `where`, `kind` and a
one-line `explanation`. Alerts and drift changes are also logged on stderr, and alerts optionally published (e.g. to
MQTT).

One alert is one event, and an event has one kind: the kind of the window that raised the alert, repeated on
every following window of the alert until it clears. Only "unspecified" gives way, to the first window of the
event that names a kind; `when` and `where` stay each window's own. The next alert settles its kind afresh.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TextIO

import numpy as np
import torch

from ssad.detector import Detector
from ssad.explain.explanation import Explanation, explain
from ssad.explain.rules import UNSPECIFIED
from ssad.field.alerts import AlertRule, Smoother
from ssad.field.drift import DriftTest
from ssad.field.health import Health
from ssad.field.sources import Chunk
from ssad.field.windows import WindowCutter
from ssad.scoring.thresholds import AlarmThreshold

__all__ = ["Monitor", "MonitorSettings"]

log = logging.getLogger("ssad")


@dataclass(frozen=True)
class MonitorSettings:
    """How windows are cut, smoothed, alerted on and tested for drift (lengths in seconds)."""

    window: float
    hop: float
    smoothing: str = "ema"
    smooth_windows: int = 4
    alert_after: int = 3
    drift_windows: int = 30
    drift_alpha: float = 1e-3
    batch_size: int = 16
    learn: float = 0.0

    @property
    def drift_every(self) -> int:
        """Every how many windows one enters the drift test: windows that do not overlap, so scores are close to
        independent."""
        return max(1, math.ceil(self.window / self.hop))

    @property
    def drift_seconds(self) -> float:
        """Seconds of a machine's audio before its first drift verdict (the window that completes the test)."""
        return (self.drift_windows - 1) * self.drift_every * self.hop + self.window

    def __post_init__(self) -> None:
        if not (self.window > 0 and self.hop > 0):
            msg = f"window={self.window} s and hop={self.hop} s must be positive"
            raise ValueError(msg)
        if self.batch_size < 1:
            msg = f"batch_size={self.batch_size} must be >= 1"
            raise ValueError(msg)
        if self.learn and self.learn < self.window:
            msg = f"a learning period of {self.learn:g} s is shorter than one window ({self.window:g} s)"
            raise ValueError(msg)


@dataclass(frozen=True)
class _Window:
    stream: str
    machine: str
    start: int
    samples: np.ndarray
    sent: float | None
    received: float


class _MachineState:
    """What the monitor remembers about one machine."""

    def __init__(self, detector: Detector, scorer: str, machine: str, settings: MonitorSettings) -> None:
        self.machine = machine
        self.settings = settings
        self.smoother = Smoother(settings.smoothing, settings.smooth_windows)
        self.rule = AlertRule(settings.alert_after)
        self.use(detector.thresholds[scorer])
        self.learning = settings.learn > 0
        self.heard = 0.0  # seconds of audio scored during the learning period
        self.site_scores: list[float] = []
        self.event_kind: str | None = None  # the kind of the alert going on (see the module's docstring)

    def use(self, thresholds: AlarmThreshold) -> None:
        """Decide with these thresholds from now on (and test drift against the scores they were set from)."""
        self.thresholds = thresholds
        self.drift = DriftTest(thresholds, self.machine, windows=self.settings.drift_windows,
                               alpha=self.settings.drift_alpha, every=self.settings.drift_every)

    def settle_kind(self, kind: str) -> str:
        """The kind of the alert going on, given one more of its windows' kind: the first, unless "unspecified"."""
        if self.event_kind is None or self.event_kind == UNSPECIFIED:
            self.event_kind = kind
        return self.event_kind

    @property
    def threshold(self) -> float:
        """The machine's threshold, read at each window (an updated detector changes it)."""
        return float(self.thresholds.threshold_[self.machine])

    def learn(self, score: float) -> bool:
        """Take one window's score during the learning period; return True when the period is over.

        Only windows that do not overlap count (every `drift_every`-th), so that the site's scores are close to
        independent clips, as enrolment's were.
        """
        if len(self.site_scores) * self.settings.drift_every <= round(self.heard / self.settings.hop):
            self.site_scores.append(score)
        self.heard += self.settings.hop
        return self.heard + self.settings.window - self.settings.hop >= self.settings.learn


def _some(names: set[str], most: int = 6) -> str:
    """Up to `most` of the names, sorted, and how many more."""
    shown = sorted(names)[:most]
    return ", ".join(shown) + (f" and {len(names) - most} more" if len(names) > most else "")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Monitor:
    """Scores live audio of known machines with a saved detector.

    Args:
        detector: a loaded `Detector`; its machines are the ones that can be monitored.
        settings: windows, smoothing, alert and drift settings.
        scorer: the detector's scorer to use (default: its own default).
        out: where JSON lines go (one per scored window, flushed after each batch).
        publish: called with a JSON text for each alert raised or cleared (e.g. an MQTT publisher).
        health: counts scored windows, their lag and bad input, and emits heartbeats (default: counts only).
        keep: called with (machine, scorer, calibrated thresholds) when a machine's learning period ends, e.g. to
            save them as a new detector version.
        record: given each window's line, samples and explanation (None unless alerting), e.g. a
            `ssad.field.recorder.HistoryRecorder`.
    """

    def __init__(self, detector: Detector, settings: MonitorSettings, *, scorer: str | None = None,
                 out: TextIO | None = None, publish: Callable[[str], None] | None = None,
                 health: Health | None = None,
                 keep: Callable[[str, str, AlarmThreshold], None] | None = None,
                 record: Callable[[dict, np.ndarray, Explanation | None], None] | None = None) -> None:
        self.detector = detector
        self.keep = keep
        self.record = record
        self.settings = settings
        self.scorer = detector.scorer_name(scorer)
        self.sample_rate = detector.model.sample_rate
        self.window_samples = round(settings.window * self.sample_rate)
        self.hop_samples = max(1, round(settings.hop * self.sample_rate))
        self.out = out if out is not None else sys.stdout
        self.publish = publish
        self.health = health if health is not None else Health(interval=0)
        self.known = set(detector.thresholds[self.scorer].threshold_)
        self.machines: dict[str, _MachineState] = {}
        self.windows_scored = 0
        self.alerts_raised = 0
        self._cutters: dict[str, WindowCutter] = {}
        self._pending: list[_Window] = []
        self._cut = 0  # windows cut so far (scored in the same order)
        self._acks: deque[tuple[int, Callable[[], None]]] = deque()  # (windows to score first, acknowledgement)

    def add(self, chunk: Chunk) -> None:
        """Cut a chunk into the windows it completes; they wait in the batch until `score_pending`."""
        if chunk.machine not in self.known:
            self.health.count_bad("unknown_machine", f"machine {chunk.machine!r} is unknown to the detector (it "
                                  f"knows {_some(self.known)}): its audio is skipped")
            if chunk.ack is not None:
                chunk.ack()
            return
        cutter = self._cutters.get(chunk.stream)
        if cutter is None:
            cutter = self._cutters[chunk.stream] = WindowCutter(self.window_samples, self.hop_samples)
        for start, samples in cutter.push(chunk.samples):
            self._pending.append(_Window(chunk.stream, chunk.machine, start, samples, chunk.sent, chunk.received))
            self._cut += 1
        if chunk.ack is not None:
            self._acks.append((self._cut, chunk.ack))
        if chunk.final:
            del self._cutters[chunk.stream]
            if cutter.position < self.window_samples:
                self.health.count_bad("short", f"{chunk.stream}: {cutter.position / self.sample_rate:.2f} s of "
                                      f"audio, shorter than one window ({self.settings.window:g} s): not scored")
        self._acknowledge()

    def _acknowledge(self) -> None:
        """Acknowledge the chunks whose windows are all written (a monitor killed before that gets them again)."""
        while self._acks and self._acks[0][0] <= self.windows_scored:
            self._acks.popleft()[1]()

    def score_pending(self, limit: int | None = None) -> int:
        """Score the waiting windows (at most `limit`) in one batch and write their lines; return how many."""
        batch = self._pending if limit is None else self._pending[:limit]
        if not batch:
            return 0
        with torch.inference_mode():
            result = self.detector.score([w.samples for w in batch], [w.machine for w in batch], scorer=self.scorer)
        self._pending = self._pending[len(batch):]  # only now: an interrupted batch is scored again
        for window, score in zip(batch, result.scores, strict=True):
            self._emit(window, float(score))
        self.out.flush()
        self.windows_scored += len(batch)
        now = time.time()
        self.health.count_scored([now - (w.sent if w.sent is not None else w.received) for w in batch])
        self._acknowledge()
        return len(batch)

    def _emit(self, window: _Window, score: float) -> None:
        """Update the machine's state with one score and write its JSON line (and any alert or drift news)."""
        state = self.machines.get(window.machine)
        if state is None:
            state = self.machines[window.machine] = _MachineState(self.detector, self.scorer, window.machine,
                                                                  self.settings)
        smoothed = state.smoother.update(score)
        learning, threshold = state.learning, state.threshold  # the last learning window still shows the old one
        if learning:
            alert_changed = drift_changed = False
            if state.learn(score):
                self._arm(state)
        else:
            alert_changed = state.rule.update(smoothed, state.threshold)
            drift_changed = state.drift.update(score)
        drift = state.drift.state
        line = {
            "time": _now(), "machine": window.machine, "score": score, "threshold": threshold,
            "alert": state.rule.alerting, "smoothed": smoothed, "above_for": state.rule.run,
            "drift": state.drift.drifting, "drift_stat": drift.statistic if drift else None,
            "drift_p": drift.p_value if drift else None,
            "stream": window.stream, "start": round(window.start / self.sample_rate, 3),
        }
        if learning:
            line["learning"] = True
        if window.sent is not None:
            line["sent"] = window.sent
        explanation = None
        if state.rule.alerting:  # only what alarms is explained: other windows cost nothing more
            explanation = explain(self.detector, window.samples, window.machine, scorer=self.scorer, flagged=True)
            explanation = replace(explanation, kind=state.settle_kind(explanation.kind))
            line |= explanation.alert_fields(offset_s=line["start"])
            line["explanation"] = explanation.summary(offset_s=line["start"])
        else:
            state.event_kind = None
        if self.record is not None:  # kept before it is printed: a line on stdout is in the history too
            self.record(line, window.samples, explanation)
        self.out.write(json.dumps(line) + "\n")
        if alert_changed:
            self._alert(line)
        if drift_changed and drift is not None:
            if drift.drifting:
                log.warning("drift: %s's last %d window scores left its training distribution (%s statistic "
                            "%.3g, p=%.2g)", window.machine, state.drift.windows, drift.test,
                            drift.statistic, drift.p_value)
            else:
                log.info("drift over: %s's recent scores follow its training distribution again (p=%.2g)",
                         window.machine, drift.p_value)

    def _arm(self, state: _MachineState) -> None:
        """End a machine's learning period: its threshold from the site's scores, an "armed" event, kept if asked."""
        was, heard = state.threshold, state.heard + self.settings.window - self.settings.hop
        calibrated = self.detector.thresholds[self.scorer].calibrated(state.machine, state.site_scores)
        self.detector.thresholds[self.scorer] = calibrated
        state.use(calibrated)
        state.learning = False
        log.info("armed %s after a learning period of %.0f s (%d windows): threshold %.4g (was %.4g), aiming at "
                 "%.3g false alarms", state.machine, heard, len(state.site_scores), state.threshold, was,
                 calibrated.rate_of(state.machine))
        self.health.event("armed", machine=state.machine, threshold=state.threshold, was=was,
                          learned_s=round(heard, 3), windows=len(state.site_scores),
                          false_alarm_rate=calibrated.rate_of(state.machine))
        if self.keep is not None:
            self.keep(state.machine, self.scorer, calibrated)

    def _alert(self, line: dict) -> None:
        if line["alert"]:
            self.alerts_raised += 1
            log.warning("ALERT %s: smoothed score %.4g above threshold %.4g for %d windows (%s at %.1f s): %s",
                        line["machine"], line["smoothed"], line["threshold"], line["above_for"], line["stream"],
                        line["start"], line["explanation"])
        else:
            log.info("alert over: %s (smoothed score %.4g)", line["machine"], line["smoothed"])
        if self.publish is not None:
            self.publish(json.dumps({"event": "alert" if line["alert"] else "clear", **line}))

    def run(self, events: Iterable[Chunk | None], max_windows: int | None = None) -> int:
        """Consume a source until it ends or `max_windows` windows are scored; return the windows scored.

        Windows are scored in batches of up to `batch_size`, or as soon as the source has nothing more ready.
        On KeyboardInterrupt the windows already cut are scored and written before it propagates.
        """
        def room() -> int | None:
            return None if max_windows is None else max_windows - self.windows_scored

        try:
            for event in events:
                if event is not None:
                    self.add(event)
                if event is None or len(self._pending) >= self.settings.batch_size:
                    self.score_pending(room())
                self.health.tick(getattr(events, "queued", 0))
                if max_windows is not None and self.windows_scored >= max_windows:
                    return self.windows_scored
            self.score_pending(room())
        except KeyboardInterrupt:
            self.score_pending(room())
            raise
        return self.windows_scored
