"""What the console's buttons do, with the same code as `ssad feedback`: "this was normal" learns an alarm's
clips as normal (a refit, a new detector version), "confirmed fault" keeps them as labelled faults, "undo" rolls the
machine's last update back. Each is recorded in the history as an event, and on the alarm as its label.

The alarm's clips (kept in the history by `ssad monitor --history`) are written as WAV files into the detector's
folder, `console-clips/`, since a detector version names the files it learnt from.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from ssad.core.errors import SsadError
from ssad.detector import enrollment, store
from ssad.history import History, queries

__all__ = ["CLIPS_DIR", "Actions"]

CLIPS_DIR = "console-clips"


class Actions:
    """The console's changes to one detector folder and its history (one at a time)."""

    def __init__(self, history: History, detector: str | Path) -> None:
        self.history = history
        self.detector = Path(detector)
        self._lock = threading.Lock()

    def version(self) -> int:
        """The detector's current version."""
        return store.current_version(self.detector)

    def _clips(self, alarm: dict[str, Any]) -> list[str]:
        """The alarm's kept windows as WAV files in the detector's folder (written once)."""
        folder = self.detector / CLIPS_DIR
        folder.mkdir(exist_ok=True)
        paths = []
        for number, wav in enumerate(queries.alarm_clips(self.history, alarm["id"]), start=1):
            path = folder / f"alarm-{alarm['id']}-{number}.wav"
            if not path.exists():
                path.write_bytes(wav)
            paths.append(str(path))
        if not paths:
            raise SsadError(f"alarm {alarm['id']} kept no audio (the monitor ran with --alarm-clips 0): give "
                            "feedback with `ssad feedback` and the recordings")
        return paths

    def label(self, alarm_id: int, label: str) -> dict[str, Any]:
        """'normal' (a false alarm: learnt, refit) or 'fault' (confirmed: kept as labelled clips) for one alarm."""
        if label not in ("normal", "fault"):
            raise SsadError(f"an alarm is labelled 'normal' or 'fault', not {label!r}")
        with self._lock:
            alarm = queries.alarm(self.history, alarm_id)
            if alarm is None:
                raise SsadError(f"no alarm {alarm_id} in this history")
            if alarm["label"] is not None:
                raise SsadError(f"alarm {alarm_id} is already labelled {alarm['label']!r}; undo its update first")
            clips = self._clips(alarm)
            kinds = {"normal": clips} if label == "normal" else {"anomaly": clips}
            update = enrollment.feedback(self.detector, alarm["machine"], **kinds)
            self.history.label_alarm(alarm_id, label, update.version)
            message = update.format()
            self.history.add_event("feedback", time.time(), alarm["machine"], alarm=alarm_id, label=label,
                                   version=update.version, message=message)
        return {"alarm": alarm_id, "label": label, "version": update.version, "message": message}

    def undo(self, machine: str) -> dict[str, Any]:
        """Roll the machine's last update back (`ssad feedback --undo`); alarms it labelled lose their label."""
        with self._lock:
            rollback = enrollment.undo(self.detector, machine)
            message = rollback.format()
            for alarm in queries.alarms(self.history, machine, limit=1000):
                if alarm["version"] == rollback.before:
                    self.history.unlabel_alarm(alarm["id"])
            self.history.add_event("undo", time.time(), machine, version=rollback.after, message=message)
        return {"machine": machine, "version": rollback.after, "message": message}

    def versions(self, machine: str) -> list[dict[str, Any]]:
        """The detector's updates of `machine` in force now (enrolment, feedback, calibration), newest first."""
        found, version = [], self.version()
        while version:
            record = store.version_record(self.detector, version)
            if record.get("machine") == machine:
                found.append({**record, "text": store.describe_update(record)})
            version = record.get("parent") or 0
        return found
