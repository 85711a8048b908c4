"""The monitor's health: broker connection changes at once, and a heartbeat per interval a dashboard can alarm on.

Every event is a JSON object (`"event": "heartbeat" | "broker_down" | "broker_up"`) handed to an `emit`
callback (the CLI writes it on stderr and publishes it on MQTT). Bad messages are counted by kind: the first
of each kind is logged with its details, later ones only in one summary line per interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone

__all__ = ["BAD_KINDS", "Health"]

log = logging.getLogger("ssad")

#: kinds of unusable messages: what `Health.bad` counts
BAD_KINDS = {
    "empty": "empty",
    "odd_bytes": "not whole 16-bit samples",
    "oversized": "over the size limit",
    "short": "shorter than one window",
    "unknown_machine": "for a machine the detector does not know",
    "unknown_topic": "on a topic --machine-from-topic does not match",
}
#: the kinds that are audio gone wrong on the way (the others are audio nobody asked this monitor to score)
MALFORMED = ("empty", "odd_bytes", "oversized", "short")


def now_iso() -> str:
    """The wall-clock time as ISO 8601 UTC with milliseconds, as in the monitor's lines."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Health:
    """Counters and connection state of one monitor; `tick` emits a heartbeat once per `interval` seconds.

    Args:
        emit: called with each event (a dict).
        interval: seconds between heartbeats; 0 = no heartbeats (connection events are still emitted).
        name: the monitor's name in events (its MQTT client id, or "monitor").
    """

    def __init__(self, emit: Callable[[dict], None] | None = None, *, interval: float = 10.0,
                 name: str = "monitor") -> None:
        self.emit = emit
        self.interval = interval
        self.name = name
        self.connected: bool | None = None  # None: the source is not a broker
        self.down_since: float | None = None
        self.windows_scored = 0
        self.messages = 0
        self.bad: Counter[str] = Counter()
        self._lock = threading.Lock()  # connection callbacks come from the MQTT network thread
        self._interval_bad: Counter[str] = Counter()
        self._interval_scored = 0
        self._lag_max = 0.0
        self._lag_last: float | None = None
        self._last_beat = time.monotonic()

    @property
    def malformed(self) -> int:
        """Messages whose audio was unusable (empty, odd bytes, short)."""
        return sum(self.bad[k] for k in MALFORMED)

    @property
    def dropped(self) -> int:
        """Messages not scored at all, for whatever reason (malformed, unknown machine or topic)."""
        return sum(self.bad.values()) - self.bad["odd_bytes"]  # an odd message keeps its whole samples

    def count_message(self) -> None:
        """One more message (or chunk) received."""
        self.messages += 1

    def count_bad(self, kind: str, detail: str | None) -> None:
        """One unusable message of `kind` (a key of BAD_KINDS): `detail` logged the first time, then summarised."""
        with self._lock:
            first = self.bad[kind] == 0
            self.bad[kind] += 1
            self._interval_bad[kind] += 1
        if first and detail:
            log.warning("%s (further ones are counted in the heartbeat)", detail)

    def count_scored(self, lags: list[float]) -> None:
        """Windows just written, with each one's lag (seconds from its audio's end being sent, or received, to now)."""
        self.windows_scored += len(lags)
        self._interval_scored += len(lags)
        if lags:
            self._lag_last = lags[-1]
            self._lag_max = max(self._lag_max, *lags)

    def connection(self, up: bool, where: str, reason: str = "") -> None:
        """The broker connection went down or came back: say so on stderr and as an event, at once."""
        with self._lock:
            was, self.connected = self.connected, up
            if up == was:
                return
            now = time.monotonic()
            if not up:
                self.down_since = now
                outage = None
            else:
                outage = None if self.down_since is None else round(now - self.down_since, 3)
                self.down_since = None
        if not up:
            log.warning("lost the MQTT broker at %s (%s); reconnecting", where, reason or "connection closed")
            self._send({"event": "broker_down", "broker": where, "reason": reason})
        elif was is not None:  # the first connection is no news
            log.warning("reconnected to the MQTT broker at %s and subscribed again, after %.1f s", where,
                        outage or 0.0)
            self._send({"event": "broker_up", "broker": where, "down_s": outage})

    def tick(self, queued: int = 0) -> dict | None:
        """Emit a heartbeat (returned) if an interval has passed since the last; `queued` = messages waiting."""
        if self.interval <= 0 or time.monotonic() - self._last_beat < self.interval:
            return None
        return self.beat(queued)

    def beat(self, queued: int = 0) -> dict:
        """Emit a heartbeat now and start a new interval; log one summary of the interval's bad messages."""
        with self._lock:
            bad, self._interval_bad = self._interval_bad, Counter()
        if bad:
            parts = ", ".join(f"{n} {BAD_KINDS[k]}" for k, n in sorted(bad.items()))
            log.warning("skipped %d message(s) in the last %.0f s: %s", sum(bad.values()),
                        time.monotonic() - self._last_beat, parts)
        event = {
            "event": "heartbeat", "windows_scored": self.windows_scored,
            "windows_interval": self._interval_scored,
            "lag_s": None if self._lag_last is None else round(self._lag_last, 3),
            "lag_max_s": round(self._lag_max, 3), "queued": queued, "messages": self.messages,
            "dropped": self.dropped, "malformed": self.malformed, "bad": dict(self.bad),
            "broker": None if self.connected is None else ("connected" if self.connected else "down"),
        }
        self._interval_scored, self._lag_max = 0, 0.0
        self._last_beat = time.monotonic()
        self._send(event)
        return event

    def event(self, kind: str, **fields: object) -> None:
        """Emit one event of the monitor's life (e.g. a machine armed after its learning period)."""
        self._send({"event": kind, **fields})

    def _send(self, event: dict) -> None:
        if self.emit is not None:
            self.emit({"time": now_iso(), "monitor": self.name, **event})
