"""Field load: machines `ssad monitor` holds in real time through a real MQTT broker, and what faults cost.

    python experiments/field_load.py [--quick]          (make field-load [ARGS=--quick])

A mosquitto on 127.0.0.1 (a free port, persistence on, started and stopped here); a publisher process plays N
simulated machines, each sending one 10-s window of 16-bit PCM every 10 s at real-time pace (phases spread
evenly), QoS 1, its send time in the MQTT 5 user property `ts`; two `ssad monitor` processes share the
subscription (`$share/load/plant/+`), monitor B with a persistent session (stable client id, session expiry),
monitor A without. Steps: N is raised until the monitors fall behind (a window lost, or p99 latency >= 2 s);
latency = a window's publish to its score line. Then, at the fault load, with 10 % garbage messages (empty,
shorter than a window, unknown machine): the broker is restarted, B is killed (SIGKILL) and restarted, A is
killed and restarted (no session). Writes experiments/results/field_load.{json,md,png} (field_load_report.py).

The detector: the configs/demo.yaml network (scoring cost depends on the architecture, not on the weights),
from runs/demo/train when `make demo` made it, else trained 1 epoch of 3 batches on `ssad synth --preset tiny`
(cached under runs/field-load/); its base machine's scorers are cloned to the N simulated machines.
"""

from __future__ import annotations

import argparse
import heapq
import json
import multiprocessing as mp
import os
import queue
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import field_load_report  # next to this script
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = ROOT / "runs" / "field-load"
WINDOW_S = 10.0
HEARTBEAT_S = 2.0
P99_TARGET_S = 2.0
SESSION_EXPIRY_S = 300
GARBAGE = ("empty", "short", "unknown")  # every 9th message is followed by one of these: 10 % of all
#: each fault's figures count the windows published from this long before it to this long before the next
LEAD_S = 3.0
NO_MATCHING_SUBSCRIBERS = 16  # an MQTT 5 PUBACK reason code


def _run(command: list[str], log: Path) -> None:
    with log.open("w") as out:
        if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "WANDB_MODE": "disabled"},
                          cwd=ROOT).returncode:
            raise SystemExit(f"{' '.join(command)} failed; see {log}")


def prepare_detector(machines: int) -> tuple[Path, str]:
    """A saved detector knowing `machines` machines m000..., and a note on where its network came from."""
    from ssad.detector import Detector

    target = CACHE / f"detector-{machines}"
    note_file = CACHE / "model-note.txt"
    if (target / "detector.json").is_file() and note_file.is_file():
        return target, note_file.read_text()
    CACHE.mkdir(parents=True, exist_ok=True)
    ssad = [sys.executable, "-m", "ssad.cli"]
    demo_run, demo_data = ROOT / "runs" / "demo" / "train", ROOT / "runs" / "demo" / "data"
    if demo_run.is_dir() and demo_data.is_dir():
        run, data = demo_run, demo_data
        note = "configs/demo.yaml network from `make demo` (runs/demo/train)"
    else:
        run, data = CACHE / "train", CACHE / "data"
        if not (data / ".done").is_file():
            print("field-load: making a tiny synthetic set for the detector", flush=True)
            _run(ssad + ["synth", "--out", str(data), "--preset", "tiny", "--seed", "1"], CACHE / "synth.log")
            (data / ".done").touch()
        if not (run / ".done").is_file():
            print("field-load: training configs/demo.yaml for 1 epoch of 3 batches (speed, not quality)", flush=True)
            _run(ssad + ["fit", "--config", "configs/demo.yaml", "--data.root", str(data),
                         "--trainer.default_root_dir", str(run), "--trainer.max_epochs", "1",
                         "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1"], CACHE / "fit.log")
            (run / ".done").touch()
        note = ("configs/demo.yaml network trained 1 epoch of 3 batches on `ssad synth --preset tiny --seed 1` "
                "(runs/field-load/train): scoring cost depends on the architecture, not on the weights")
    fitted = Detector.fit(run, data)
    references = fitted.references.of(fitted.machine_ids[0])
    clips = len(next(iter(references.values())))
    outputs = {name: np.concatenate([value] * machines) for name, value in references.items()}
    ids = [f"m{i:03d}" for i in range(machines) for _ in range(clips)]
    Detector.from_outputs(fitted.model, outputs, ids, scorers=["gaussian"],
                          clip_seconds=fitted.clip_seconds).save(target, replace=True, keep_replaced=False)
    note_file.write_text(note)
    return target, note


def _window_audio(data_root: Path) -> bytes:
    """10 s of int16 PCM from normal training clips of the detector's data, as one message's payload."""
    import soundfile as sf

    clips = sorted(data_root.glob("*/train/normal_*.wav"))
    parts, total = [], 0
    while total < WINDOW_S * 16000:
        wave, _ = sf.read(clips[len(parts) % len(clips)], dtype="int16")
        parts.append(wave)
        total += len(wave)
    return np.concatenate(parts)[: int(WINDOW_S * 16000)].tobytes()


def publisher(port: int, audio: bytes, commands: mp.Queue, records: mp.Queue) -> None:
    """Process: N machines each publishing a window every WINDOW_S s (plus garbage when asked).

    Each message the broker acknowledged (QoS 1: it has taken charge of it) goes to `records` as
    (machine, ts, kind, routed); routed is False when the broker said no subscription matched (PUBACK reason 16),
    so it dropped the message. Messages published while the broker is away wait in the client until it is back.
    """
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    sent: dict[int, tuple[str, float, str]] = {}
    early: dict[int, bool] = {}  # acknowledged before `publish` returned its mid
    lock = threading.Lock()  # never held while calling paho: paho calls on_publish holding its own lock

    def on_publish(client: object, userdata: object, mid: int, reason: object, properties: object) -> None:
        routed = getattr(reason, "value", 0) != NO_MATCHING_SUBSCRIBERS
        with lock:
            record = sent.pop(mid, None)
            if record is None:
                early[mid] = routed
        if record is not None:
            records.put((*record, routed))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="field-load-plant", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.reconnect_delay_set(0.25, 1)
    client.on_publish = on_publish
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = SESSION_EXPIRY_S
    client.connect("127.0.0.1", port, clean_start=True, properties=properties)
    client.loop_start()

    def publish(topic: str, payload: bytes, machine: str, kind: str) -> None:
        props = Properties(PacketTypes.PUBLISH)
        stamp = time.time()
        props.UserProperty = ("ts", repr(stamp))
        info = client.publish(topic, payload, qos=1, properties=props)
        with lock:
            routed = early.pop(info.mid, None)
            if routed is None:
                sent[info.mid] = (machine, stamp, kind)
        if routed is not None:
            records.put((machine, stamp, kind, routed))

    machines, garbage, due, count = 0, False, [], 0
    while True:
        try:
            command = commands.get(timeout=0.005)
            if command[0] == "stop":
                break
            machines, garbage = command[1], command[2]
            start = time.time()
            due = [(start + WINDOW_S * (i + 1) / machines, i) for i in range(machines)]
            heapq.heapify(due)
        except queue.Empty:
            pass
        now = time.time()
        while due and due[0][0] <= now:
            at, i = heapq.heappop(due)
            heapq.heappush(due, (at + WINDOW_S, i))
            machine = f"m{i:03d}"
            publish(f"plant/{machine}", audio, machine, "good")
            count += 1
            if garbage and count % 9 == 0:
                kind = GARBAGE[(count // 9) % len(GARBAGE)]
                payload = {"empty": b"", "short": audio[:32000], "unknown": audio}[kind]
                other = f"x{i:03d}" if kind == "unknown" else machine
                publish(f"plant/{other}", payload, other, kind)
    deadline = time.time() + 30
    while sent and time.time() < deadline:
        time.sleep(0.1)
    client.disconnect()
    client.loop_stop()
    records.put("done")


def _stamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class MonitorProcess:
    """One `ssad monitor` process sharing the plant's subscription; its stdout and stderr go to files."""

    def __init__(self, name: str, detector: Path, port: int, work: Path, session: bool) -> None:
        self.name, self.detector, self.port, self.work, self.session = name, detector, port, work, session
        self.runs: list[dict] = []  # one per start: files, pid, start time, usage
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start (again): same client id; a session only for the persistent one."""
        n = len(self.runs)
        out, err = self.work / f"{self.name}-{n}.out", self.work / f"{self.name}-{n}.err"
        command = [sys.executable, "-m", "ssad.cli", "monitor", "--detector", str(self.detector),
                   "--source", f"mqtt://127.0.0.1:{self.port}/plant/+", "--machine-from-topic", "plant/+",
                   "--share", "load", "--client-id", f"field-load-{self.name}", "--heartbeat", str(HEARTBEAT_S),
                   "--window", str(WINDOW_S), "--hop", str(WINDOW_S)]
        if self.session:
            command += ["--session-expiry", str(SESSION_EXPIRY_S)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
        with out.open("w") as o, err.open("w") as e:
            self.process = subprocess.Popen(command, stdout=o, stderr=e, env=env, cwd=ROOT)
        self.runs.append({"out": out, "err": err, "pid": self.process.pid, "started": time.time()})

    def wait_subscribed(self, timeout: float = 180) -> float:
        """Wait for the current run's "subscribed to" line; return when it was seen."""
        run = self.runs[-1]
        deadline = time.time() + timeout
        while time.time() < deadline:
            if "subscribed to" in run["err"].read_text():
                run["subscribed"] = time.time()
                return run["subscribed"]
            if self.process.poll() is not None:
                raise SystemExit(f"monitor {self.name} exited: {run['err'].read_text()[-2000:]}")
            time.sleep(0.1)
        raise SystemExit(f"monitor {self.name} did not subscribe within {timeout} s")

    def usage(self) -> dict:
        """CPU seconds and peak resident memory (MB) of the current run so far."""
        return _usage(self.process.pid) if self.process is not None else {"cpu_s": 0.0, "peak_mb": 0.0}

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """End the current run with `sig` (SIGKILL: as a crash), noting its last usage."""
        if self.process is None:
            return
        self.runs[-1].update(self.usage(), ended=time.time(), signal=int(sig))
        self.process.send_signal(sig)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def lines(self) -> list[dict]:
        """Every window line of every run, tagged with its run."""
        rows = []
        for k, run in enumerate(self.runs):
            for line in run["out"].read_text().splitlines():
                if line.startswith("{") and line.endswith("}"):
                    row = json.loads(line)
                    row["run"], row["monitor"] = k, self.name
                    rows.append(row)
        return rows

    def events(self) -> list[dict]:
        """Every JSON health event on stderr, tagged with its run."""
        rows = []
        for k, run in enumerate(self.runs):
            for line in run["err"].read_text().splitlines():
                if line.startswith("{") and line.endswith("}"):
                    rows.append({**json.loads(line), "run": k})
        return rows

    def stderr(self) -> str:
        """All stderr text of all runs."""
        return "".join(run["err"].read_text() for run in self.runs)


class Plant:
    """The broker, the publisher process, two monitors, and what was published and scored."""

    def __init__(self, detector: Path, data_root: Path, work: Path) -> None:
        from ssad.field.broker import LocalBroker

        self.work = work
        self.broker = LocalBroker(work / "broker", persistence=True,
                                  extra="max_queued_messages 0\nmax_inflight_messages 100\n")
        self.broker.start()
        self.monitors = [MonitorProcess("a", detector, self.broker.port, work, session=False),
                         MonitorProcess("b", detector, self.broker.port, work, session=True)]
        for monitor in self.monitors:
            monitor.start()
        for monitor in self.monitors:
            monitor.wait_subscribed()
        context = mp.get_context("spawn")
        self.commands, self.records = context.Queue(), context.Queue()
        self.publisher = context.Process(target=publisher, args=(self.broker.port, _window_audio(data_root),
                                                                 self.commands, self.records), daemon=True)
        self.publisher.start()
        self.published: list[tuple[str, float, str, bool]] = []

    def machines(self, n: int, garbage: bool = False) -> None:
        """From now on, n machines publish (0: none)."""
        self.commands.put(("machines", n, garbage))

    def collect(self) -> None:
        """Take in the publisher's records of acknowledged messages."""
        while True:
            try:
                record = self.records.get_nowait()
            except queue.Empty:
                return
            if isinstance(record, tuple):
                self.published.append(record)

    def scored(self) -> dict[tuple[str, float], list[dict]]:
        """Window lines of all monitors by (machine, ts): more than one line = scored twice."""
        found: dict[tuple[str, float], list[dict]] = {}
        for monitor in self.monitors:
            for row in monitor.lines():
                if row.get("sent") is not None:
                    found.setdefault((row["machine"], row["sent"]), []).append(row)
        return found

    def expected(self, start: float, end: float) -> list[tuple[str, float]]:
        """Good windows published in [start, end) that the broker acknowledged and routed to a subscription."""
        self.collect()
        return [(m, ts) for m, ts, kind, routed in self.published if kind == "good" and routed and start <= ts < end]

    def unrouted(self, start: float, end: float) -> int:
        """Good windows published in [start, end) that the broker dropped: no subscription matched then."""
        return sum(kind == "good" and not routed and start <= ts < end for _, ts, kind, routed in self.published)

    def drain(self, start: float, end: float, timeout: float) -> None:
        """Wait (up to `timeout` s) until every window published in [start, end) is scored."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            scored = self.scored()
            if all(key in scored for key in self.expected(start, end)):
                return
            time.sleep(0.5)

    def figures(self, start: float, end: float) -> dict:
        """Windows expected, scored, lost and scored twice among those published in [start, end), and latency."""
        scored = self.scored()
        expected = self.expected(start, end)
        got = [scored[key] for key in expected if key in scored]
        latency = np.array([_stamp(rows[0]["time"]) - rows[0]["sent"] for rows in got])
        return {"windows_expected": len(expected), "windows_scored": len(got), "lost": len(expected) - len(got),
                "dropped_by_broker_no_subscriber": self.unrouted(start, end),
                "scored_twice": sum(len(rows) > 1 for rows in got),
                "latency_p50_s": round(float(np.percentile(latency, 50)), 3) if len(latency) else None,
                "latency_p99_s": round(float(np.percentile(latency, 99)), 3) if len(latency) else None,
                "latency_max_s": round(float(latency.max()), 3) if len(latency) else None}

    def close(self) -> None:
        """Stop publishing, the monitors (cleanly) and the broker."""
        self.commands.put(("stop",))
        self.publisher.join(40)
        self.collect()
        for monitor in self.monitors:
            monitor.stop()
        self.broker.stop()


def load_steps(plant: Plant, steps: list[int], step_s: float, drain_s: float) -> list[dict]:
    """Raise the machine count step by step until a window is lost or p99 latency reaches the target."""
    rows = []
    for n in steps:
        before = [m.usage() for m in plant.monitors]
        broker_before = _usage(plant.broker.process.pid)
        publisher_before = _usage(plant.publisher.pid)
        start = time.time()
        plant.machines(n)
        time.sleep(step_s)
        plant.machines(0)
        end = time.time()
        plant.drain(start, end, drain_s)
        wall = time.time() - start
        after = [m.usage() for m in plant.monitors]
        row = {"machines": n, "seconds": round(end - start, 1), "span": [start, end], **plant.figures(start, end),
               "monitor_cpu_cores": round(sum(a["cpu_s"] - b["cpu_s"] for a, b in zip(after, before, strict=True)) / wall, 2),
               "broker_cpu_cores": round((_usage(plant.broker.process.pid)["cpu_s"] - broker_before["cpu_s"]) / wall, 2),
               "publisher_cpu_cores": round((_usage(plant.publisher.pid)["cpu_s"] - publisher_before["cpu_s"]) / wall, 2),
               "monitor_peak_mb": max(a["peak_mb"] for a in after), "load_average": _load()}
        row["held"] = row["lost"] == 0 and row["latency_p99_s"] is not None and row["latency_p99_s"] < P99_TARGET_S
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not row["held"]:
            break
    return rows


def _usage(pid: int) -> dict:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {"cpu_s": 0.0, "peak_mb": 0.0}
    peak = next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM")), 0.0)
    return {"cpu_s": (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK"), "peak_mb": round(peak, 1)}


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _silence(times: list[float], start: float, end: float) -> float:
    """The longest stretch within [start, end] without a line."""
    marks = [start] + sorted(t for t in times if start < t < end) + [end]
    return round(max(b - a for a, b in zip(marks, marks[1:], strict=False)), 2)


def _crash_and_restart(monitor: MonitorProcess, after_s: float) -> tuple[float, float]:
    """SIGKILL a monitor, start it again `after_s` later as a service manager would; (killed, subscribed again)."""
    killed = time.time()
    monitor.stop(signal.SIGKILL)
    time.sleep(after_s)
    monitor.start()
    back = monitor.wait_subscribed()
    print(f"monitor {monitor.name} killed and back after {back - killed:.1f} s", flush=True)
    return killed, back


def faults(plant: Plant, machines: int, settle_s: float, down_s: float, restart_after_s: float) -> dict:
    """At `machines` with 10 % garbage: restart the broker, SIGKILL monitor B (session) and A (none), each restarted."""
    a, b = plant.monitors
    plant.machines(machines, garbage=True)
    start = time.time()
    time.sleep(settle_s)
    down_at = time.time()
    plant.broker.stop()
    time.sleep(down_s)
    up_at = plant.broker.start()
    print(f"broker restarted: down {up_at - down_at:.1f} s", flush=True)
    time.sleep(settle_s)
    kill_b, back_b = _crash_and_restart(b, restart_after_s)
    time.sleep(settle_s)
    kill_a, back_a = _crash_and_restart(a, restart_after_s)
    time.sleep(settle_s)
    plant.machines(0)
    end = time.time()
    plant.drain(start, end, 30)

    events = [e for m in plant.monitors for e in m.events()]
    downs = [e for e in events if e.get("event") == "broker_down" and _stamp(e["time"]) >= down_at]
    ups = [e for e in events if e.get("event") == "broker_up" and _stamp(e["time"]) >= up_at]
    said = [m.name for m in plant.monitors if "lost the MQTT broker" in m.stderr()]
    restart = {
        "down_s": round(up_at - down_at, 2),
        "reported": len(said) == 2 and {e["monitor"] for e in downs} == {f"field-load-{m.name}" for m in plant.monitors},
        "report_delay_s": round(max(_stamp(e["time"]) - down_at for e in downs), 3) if downs else None,
        "reconnect_s": round(max(_stamp(e["time"]) - up_at for e in ups), 3) if len(ups) >= 2 else None,
        **plant.figures(down_at - LEAD_S, kill_b - LEAD_S),
    }
    a_times = [_stamp(r["time"]) for r in a.lines()]
    kill = {"monitor": "b (persistent session)", "back_after_s": round(back_b - kill_b, 2),
            "other_longest_silence_s": _silence(a_times, kill_b, back_b),
            **plant.figures(kill_b - LEAD_S, kill_a - LEAD_S)}
    sessions = {}
    for monitor, since, until, back, label in ((b, kill_b, kill_a, back_b, "with"), (a, kill_a, end + LEAD_S, back_a, "without")):
        returned = [r for r in monitor.lines() if r["run"] == len(monitor.runs) - 1 and r.get("sent", 1e18) < back]
        sessions[label] = {"delivered_on_return": len(returned),
                           "lost": plant.figures(since - LEAD_S, until - LEAD_S)["lost"]}
    plant.collect()
    garbage = [kind for _, ts, kind, _ in plant.published if kind != "good" and start <= ts < end]
    counted = 0
    for monitor in plant.monitors:
        for run in range(len(monitor.runs)):
            beats = [e for e in monitor.events() if e["run"] == run and e.get("event") == "heartbeat"]
            counted += sum(beats[-1]["bad"].values()) if beats else 0
    summaries = sum(m.stderr().count("message(s) in the last") for m in plant.monitors)
    heartbeats = sum(1 for m in plant.monitors for e in m.events() if e.get("event") == "heartbeat")
    bad = {"sent": len(garbage), "kinds": {k: garbage.count(k) for k in GARBAGE}, "counted": counted,
           "summary_lines": summaries, "heartbeats": heartbeats,
           "scored_alongside": plant.figures(start, end)}
    scored = plant.scored()
    lost = sorted(round(ts - start, 2) for key in plant.expected(start, end) if key not in scored for ts in [key[1]])
    marks = {key: round(value - start, 2) for key, value in (("broker_stopped", down_at), ("broker_back", up_at),
                                                              ("b_killed", kill_b), ("b_back", back_b),
                                                              ("a_killed", kill_a), ("a_back", back_a))}
    return {"broker_restart": restart, "monitor_kill": kill, "persistent_session": sessions, "malformed": bad,
            "lost_published_at_s": lost, "marks_s": marks,
            "timeline": {"start": start, "down_at": down_at, "up_at": up_at, "kill_b": kill_b, "back_b": back_b,
                         "kill_a": kill_a, "back_a": back_a, "end": end}}


def profile_monitor(detector_dir: Path, port: int, audio: bytes, windows: int) -> dict:
    """Where one monitor's time goes (in this process, one torch thread): the network, log-mels, and the rest
    (MQTT, decoding, windows, JSON lines, acknowledgements), scoring `windows` messages flooded onto the broker."""
    import cProfile
    import io
    import logging
    import pstats

    import paho.mqtt.client as mqtt
    import torch
    from paho.mqtt.enums import CallbackAPIVersion

    from ssad.detector import Detector
    from ssad.field.monitor import Monitor, MonitorSettings
    from ssad.field.sources import MqttSource

    torch.set_num_threads(1)
    logging.getLogger("ssad").setLevel(logging.ERROR)  # the cloned machines alert on this audio
    detector = Detector.load(detector_dir)
    source = MqttSource(f"mqtt://127.0.0.1:{port}/profile/+", topic_pattern="profile/+", share="profile")
    source.subscribed.wait(30)
    monitor = Monitor(detector, MonitorSettings(window=WINDOW_S, hop=WINDOW_S), out=io.StringIO())
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    for i in range(windows):
        client.publish(f"profile/m{i % 40:03d}", audio, qos=1)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    monitor.run(source, max_windows=windows)
    profiler.disable()
    wall = time.perf_counter() - start
    source.close()
    client.disconnect()
    client.loop_stop()
    spent = {}
    for (path, _, name), (_, _, _, cumulative, _) in pstats.Stats(profiler).stats.items():
        for key, (tail, function) in {"scoring": ("ssad/detector/detector.py", "score"),
                                      "log_mels": ("ssad/encoder/loading.py", "log_mels"),
                                      "network": ("ssad/encoder/loading.py", "window_outputs")}.items():
            if path.endswith(tail) and name == function:
                spent[key] = cumulative
    rest = wall - spent.get("scoring", 0.0)
    return {"windows": windows, "ms_per_window": round(1000 * wall / windows, 1),
            "network_share": round(spent.get("network", 0.0) / wall, 3),
            "log_mel_share": round(spent.get("log_mels", 0.0) / wall, 3),
            "scorer_and_batching_share": round((spent.get("scoring", 0.0) - spent.get("network", 0.0)
                                                - spent.get("log_mels", 0.0)) / wall, 3),
            "mqtt_decoding_python_share": round(rest / wall, 3), "load_average": _load()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 2 minutes: 20 and 40 machines, short faults")
    parser.add_argument("--steps", default=None, help="machine counts to try, e.g. 50,100,200")
    parser.add_argument("--step-seconds", type=float, default=None)
    parser.add_argument("--fault-machines", type=int, default=None)
    parser.add_argument("--out", default=str(HERE / "results" / "field_load"))
    args = parser.parse_args()
    steps = [int(n) for n in args.steps.split(",")] if args.steps else \
        ([20, 40] if args.quick else [50, 100, 200, 300, 400, 600, 800, 1000])
    step_s = args.step_seconds or (15.0 if args.quick else 60.0)
    fault_machines = args.fault_machines or (20 if args.quick else 100)
    load_before = _load()
    detector, note = prepare_detector(max(steps + [fault_machines]))
    data_root = CACHE / "data" if not (ROOT / "runs" / "demo" / "train").is_dir() else ROOT / "runs" / "demo" / "data"
    with tempfile.TemporaryDirectory(prefix="field-load-") as tmp:
        plant = Plant(detector, data_root, Path(tmp))
        try:
            profile = profile_monitor(detector, plant.broker.port, _window_audio(data_root), 100 if args.quick else 400)
            print(json.dumps(profile), flush=True)
            rows = load_steps(plant, steps, step_s, drain_s=10.0)
            plant.drain(0.0, time.time(), 180.0)  # a step the monitors fell behind in leaves a backlog
            for row in rows:  # "lost" above: not scored by the end of the step's drain; some were only late
                row["never_scored"] = plant.figures(*row["span"])["lost"]
            fault = faults(plant, fault_machines, settle_s=5.0 if args.quick else 15.0, down_s=3.0,
                           restart_after_s=2.0)
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            field_load_report.plot([(f"monitor {m.name}" + (" (session)" if m.session else ""), m.lines())
                                    for m in plant.monitors], fault["timeline"], out.with_suffix(".png"))
            peak = max(run.get("peak_mb", 0.0) for m in plant.monitors for run in m.runs + [m.usage()])
        finally:
            plant.close()
    held = [row for row in rows if row["held"]]
    best = held[-1] if held else rows[0]
    from ssad.core.runtime import available_cores

    cores = available_cores()
    failed = next((row for row in rows if not row["held"]), None)
    if failed is None:
        limit = f"not reached: every step held (up to {rows[-1]['machines']} machines); try more with --steps"
    else:
        limit = (f"at {failed['machines']} machines {failed['lost']} windows were not scored in time and p99 was "
                 f"{failed['latency_p99_s']} s; CPU then: monitors {failed['monitor_cpu_cores']}, broker "
                 f"{failed['broker_cpu_cores']}, publisher {failed.get('publisher_cpu_cores', '?')} cores of {cores}, "
                 f"with a load average of {failed['load_average']} (other users' work included)")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    result = {
        "command": "make field-load" + (" ARGS=--quick" if args.quick else ""), "quick": args.quick, "model": note,
        "cpu": f"{cpu}, {cores} core(s)", "load_before": load_before, "load_after": _load(), "window_s": WINDOW_S,
        "max_machines_realtime": held[-1]["machines"] if held else 0,
        "machines_per_core": round((held[-1]["machines"] if held else 0) / cores, 1),
        "latency_p50_s": best["latency_p50_s"], "latency_p99_s": best["latency_p99_s"],
        "windows_expected": sum(r["windows_expected"] for r in rows),
        "windows_scored": sum(r["windows_scored"] for r in rows),
        "monitor_cpu_cores_at_max": best["monitor_cpu_cores"],
        "machines_per_monitor_core": round(best["machines"] / best["monitor_cpu_cores"]) if held and
        best["monitor_cpu_cores"] else None, "monitor_peak_mb": peak, "limit": limit,
        "steps": rows, "profile": profile, "fault_machines": fault_machines, "lead_s": LEAD_S,
        "session_expiry_s": SESSION_EXPIRY_S,
        "broker_restart": fault["broker_restart"], "monitor_kill": fault["monitor_kill"],
        "persistent_session": fault["persistent_session"], "malformed": fault["malformed"],
        "malformed_counted": fault["malformed"]["counted"],
        "fault_marks_s": fault["marks_s"], "fault_lost_published_at_s": fault["lost_published_at_s"],
    }
    field_load_report.write(result, out)


if __name__ == "__main__":
    main()
