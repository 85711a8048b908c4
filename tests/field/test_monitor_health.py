"""The monitor's health with a real mosquitto: broker restarts reported and survived, heartbeats, bad messages
counted (not logged one by one), and a persistent session that keeps messages for a monitor that was away."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from conftest import tone
from paho.mqtt.enums import CallbackAPIVersion

from ssad.field.broker import LocalBroker
from ssad.field.sources import MqttSource

RATE = 16000
WAIT_S = 120  # a generous bound for a busy machine: never a timing threshold


def _client(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    client = _client(port)
    for topic, payload in messages:
        client.publish(topic, payload, qos=1).wait_for_publish(30)
    client.disconnect()
    client.loop_stop()


class _Reader:
    """Reads a process's stream line by line in a thread; `wait_for` blocks until a line passes a test."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._new = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:
            with self._new:
                self.lines.append(line.rstrip("\n"))
                self._new.notify_all()

    def wait_for(self, test: Callable[[str], bool], after: int = 0) -> int:
        """The index of the first line from `after` on that passes `test` (fails the test after WAIT_S)."""
        with self._new:
            found = self._new.wait_for(lambda: next((i for i, line in enumerate(self.lines) if i >= after
                                                     and test(line)), None) is not None, WAIT_S)
            assert found, "\n".join(self.lines[-30:])
            return next(i for i, line in enumerate(self.lines) if i >= after and test(line))

    def events(self, kind: str) -> list[dict]:
        return [json.loads(line) for line in self.lines if line.startswith("{") and f'"event": "{kind}"' in line]


def _is_event(kind: str, **fields: object) -> Callable[[str], bool]:
    def test(line: str) -> bool:
        if not (line.startswith("{") and f'"event": "{kind}"' in line):
            return False
        event = json.loads(line)
        return all(event.get(k) == v for k, v in fields.items())
    return test


def test_monitor_reports_a_broker_restart_resumes_and_counts_bad_messages_in_heartbeats(
        local_broker: LocalBroker, field_detector: Path) -> None:
    port = local_broker.port
    command = [sys.executable, "-m", "ssad.cli", "monitor", "--detector", str(field_detector),
               "--source", f"mqtt://127.0.0.1:{port}/plant/+/+", "--machine-from-topic", "plant/+/+",
               "--share", "scorers", "--client-id", "test-monitor", "--session-expiry", "60",
               "--heartbeat", "0.5", "--window", "1", "--hop", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = _Reader(process.stdout), _Reader(process.stderr)
        err.wait_for(lambda line: line.startswith("subscribed to $share/scorers/plant/+/+"))
        window = tone(1.0).tobytes()
        garbage = [("plant/fan/id_00", b"")] * 4 + [("plant/fan/id_00", window[: RATE // 2])] * 3 \
            + [("plant/fan/id_99", window)] * 3
        _publish(port, [("plant/fan/id_00", window), *garbage, ("plant/pump/id_02", window)])
        out.wait_for(lambda line: '"pump/id_02"' in line)
        beat = err.wait_for(_is_event("heartbeat", malformed=7, dropped=10))
        assert json.loads(err.lines[beat])["bad"] == {"empty": 4, "short": 3, "unknown_machine": 3}
        assert json.loads(err.lines[beat])["broker"] == "connected"
        text = "\n".join(err.lines)
        # the first of each kind in full, the rest in one summary per interval, never one line per message
        assert text.count("empty message skipped") == 1 and text.count("s of audio, shorter than one window") == 1
        assert text.count("'fan/id_99' is unknown") == 1
        summaries = [line for line in err.lines if "message(s) in the last" in line]
        assert summaries and len(summaries) < len(garbage)

        local_broker.stop()
        down = err.wait_for(lambda line: line.startswith("lost the MQTT broker at mqtt://127.0.0.1"))
        err.wait_for(_is_event("broker_down"), after=down - 1)
        err.wait_for(_is_event("heartbeat", broker="down"), after=down)
        local_broker.start()
        up = err.wait_for(lambda line: line.startswith("reconnected to the MQTT broker"), after=down)
        err.wait_for(_is_event("broker_up"), after=up - 1)
        _publish(port, [("plant/fan/id_00", tone(1.0, seed=3).tobytes())])
        assert out.wait_for(lambda line: '"fan/id_00"' in line, after=2) >= 2  # scored after the restart
    finally:
        process.terminate()
        process.wait(60)
    assert process.returncode == 130, "\n".join(err.lines[-20:])


def _delivered_on_return(port: int, client_id: str, session_expiry: int) -> int:
    """Messages published while a monitor's source was away that it receives when it comes back."""
    url = f"mqtt://127.0.0.1:{port}/plant/fan/id_00"
    first = MqttSource(url, machine="fan/id_00", client_id=client_id, session_expiry=session_expiry)
    assert first.subscribed.wait(30)
    first.close()
    backlog = tone(0.5).tobytes()
    _publish(port, [("plant/fan/id_00", backlog)] * 3)
    again = MqttSource(url, machine="fan/id_00", client_id=client_id, session_expiry=session_expiry)
    try:
        assert again.subscribed.wait(30)
        # a last message sent now: anything kept for the session arrives before it
        _publish(port, [("plant/fan/id_00", tone(0.25).tobytes())])
        chunks: queue.Queue = queue.Queue()
        for chunk in again:
            if chunk is None:
                continue
            chunk.ack()
            if len(chunk.samples) != len(backlog) // 2:
                break
            chunks.put(chunk)
        return chunks.qsize()
    finally:
        again.close()


def test_a_persistent_session_keeps_the_messages_sent_while_the_monitor_was_away(broker: int) -> None:
    assert _delivered_on_return(broker, "kept-session", session_expiry=60) == 3
    assert _delivered_on_return(broker, "no-session", session_expiry=0) == 0
