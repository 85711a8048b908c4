"""`ssad monitor` over MQTT with a real mosquitto: topics to machines, odd payloads, alerts, shared subscriptions."""

from __future__ import annotations

import io
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from conftest import tone
from paho.mqtt.enums import CallbackAPIVersion

from ssad.detector import Detector
from ssad.field.monitor import Monitor, MonitorSettings
from ssad.field.sources import MqttSource

RATE = 16000


def _client(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _always_alerting_detector(source: Path, target: Path, machine: str) -> Path:
    """A copy of the detector whose threshold for `machine` every window exceeds, so alerts do not rest on quality."""
    shutil.copytree(source, target)
    path = target / "thresholds.json"
    thresholds = json.loads(path.read_text())
    for fitted in thresholds.values():
        fitted["thresholds"][machine] = -1e9
    path.write_text(json.dumps(thresholds))
    return target


def test_monitor_over_mqtt_maps_topics_repairs_odd_payloads_and_publishes_alerts(
        broker: int, field_detector: Path, tmp_path: Path) -> None:
    detector = _always_alerting_detector(field_detector, tmp_path / "detector", "fan/id_00")
    url = f"mqtt://127.0.0.1:{broker}"
    command = [sys.executable, "-m", "ssad.cli", "monitor", "--detector", str(detector),
               "--source", f"{url}/plant/+/+", "--machine-from-topic", "plant/+/+", "--alerts", f"{url}/plant/alerts",
               "--window", "1", "--hop", "1", "--alert-after", "2", "--max-windows", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    alerts: queue.Queue = queue.Queue()
    listener = _client(broker)
    listener.on_message = lambda client, userdata, message: alerts.put(json.loads(message.payload))
    listener.subscribe("plant/alerts", qos=1)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    err_lines: list[str] = []
    subscribed = threading.Event()

    def read_stderr() -> None:
        for line in process.stderr:
            err_lines.append(line)
            if line.startswith("subscribed to plant/+/+"):
                subscribed.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    assert subscribed.wait(180), "".join(err_lines)
    publisher = _client(broker)
    audio = tone(4.0).tobytes()
    half = RATE  # bytes in 0.5 s
    messages = [audio[i : i + half] for i in range(0, len(audio), half)]
    messages[0] += b"\x7f"  # one stray byte: reported, the whole samples kept
    publisher.publish("plant/fan/id_99", audio[:half], qos=1).wait_for_publish(10)  # a machine the detector lacks
    for payload in messages:
        publisher.publish("plant/fan/id_00", payload, qos=1).wait_for_publish(10)
    # stdout here, stderr only in the reader thread: `communicate` would read stderr too and take lines from it
    watchdog = threading.Timer(120, process.kill)
    watchdog.start()
    out = process.stdout.read()
    process.wait()
    watchdog.cancel()
    reader.join(10)
    err = "".join(err_lines)
    assert process.returncode == 0, err
    rows = _lines(out)
    assert [r["start"] for r in rows] == [0.0, 1.0, 2.0, 3.0]
    assert {r["machine"] for r in rows} == {"fan/id_00"} and {r["stream"] for r in rows} == {"plant/fan/id_00"}
    assert [r["alert"] for r in rows] == [False, True, True, True]
    assert "16001 bytes is not whole 16-bit samples" in err and "'fan/id_99' is unknown" in err
    published = alerts.get(timeout=10)
    assert published["event"] == "alert" and published["machine"] == "fan/id_00" and published["start"] == 1.0
    listener.loop_stop()
    publisher.loop_stop()


def test_monitors_sharing_a_group_split_the_messages_and_score_each_once(broker: int, field_detector: Path) -> None:
    url = f"mqtt://127.0.0.1:{broker}/plant/+/+"
    monitors, sources, outputs, threads = [], [], [], []
    for _ in range(2):
        out = io.StringIO()
        source = MqttSource(url, topic_pattern="plant/+/+", share="scorers")
        assert source.subscribed.wait(10)
        monitor = Monitor(Detector.load(field_detector), MonitorSettings(window=1.0, hop=1.0), out=out)
        thread = threading.Thread(target=monitor.run, args=(source,), daemon=True)
        thread.start()
        monitors.append(monitor)
        sources.append(source)
        outputs.append(out)
        threads.append(thread)
    publisher = _client(broker)
    topics = ["plant/fan/id_00", "plant/pump/id_02"]
    published = 0
    for i in range(10):  # each message one whole window: under --share each message is its own stream
        publisher.publish(topics[i % 2], tone(1.0, seed=i).tobytes(), qos=1).wait_for_publish(10)
        published += 1
    deadline = time.monotonic() + 120
    while sum(m.windows_scored for m in monitors) < published and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # anything scored twice would show up now
    for source in sources:
        source.close()
    for thread in threads:
        thread.join(30)
    publisher.loop_stop()
    rows = [_lines(out.getvalue()) for out in outputs]
    assert sum(len(r) for r in rows) == published, "every message scored exactly once over both monitors"
    assert all(len(r) > 0 for r in rows), f"both monitors get a share: {[len(r) for r in rows]}"
    machines = [row["machine"] for part in rows for row in part]
    assert machines.count("fan/id_00") == machines.count("pump/id_02") == published // 2
