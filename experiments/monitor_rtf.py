"""Real-time factor of `ssad monitor` on one CPU core: audio seconds scored per wall-clock second.

    python experiments/monitor_rtf.py --detector DIR --data ROOT [--seconds 600] [--machine fan/id_00]

A long stream is made by laying a machine's normal test clips of ROOT end to end. It is scored twice:
from a WAV file (as fast as the monitor goes) and from MQTT (a publisher process on another core floods
a local mosquitto with 0.5 s messages as fast as it can; the monitor's time runs from its first message to
its last window). The monitor runs in this process, pinned to one core, with one torch thread.
Writes experiments/results/monitor_rtf.json and .md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
CHUNK_SECONDS = 0.5


def _stream(root: Path, machine: str, seconds: float, rate: int) -> np.ndarray:
    """int16 audio of `machine`'s normal test clips laid end to end (repeated if needed) up to `seconds`."""
    machine_type, machine_id = machine.split("/")
    clips = sorted((root / machine_type / "test").glob(f"normal_{machine_id}_*.wav"))
    if not clips:
        raise SystemExit(f"{root}: no normal test clips of {machine}")
    parts, total, i = [], 0, 0
    while total < seconds * rate:
        wave, clip_rate = sf.read(clips[i % len(clips)], dtype="int16")
        assert clip_rate == rate, f"{clips[i]}: {clip_rate} Hz, the detector wants {rate}"
        parts.append(wave)
        total += len(wave)
        i += 1
    return np.concatenate(parts)[: int(seconds * rate)]


def _monitor(detector, window: float, hop: float):
    from ssad.field.monitor import Monitor, MonitorSettings

    return Monitor(detector, MonitorSettings(window=window, hop=hop), out=io.StringIO())


def rtf_file(detector, audio: np.ndarray, machine: str, window: float, hop: float, work: Path) -> dict:
    """Score a WAV file of the stream as fast as the monitor goes."""
    from ssad.field.sources import FileSource

    rate = detector.model.sample_rate
    path = work / "stream.wav"
    sf.write(path, audio, rate, subtype="PCM_16")
    monitor = _monitor(detector, window, hop)
    start = time.perf_counter()
    windows = monitor.run(FileSource(path, machine, rate))
    seconds = time.perf_counter() - start
    return _figures("file", len(audio) / rate, seconds, windows, window, hop)


def _figures(source: str, audio_s: float, wall_s: float, windows: int, window: float, hop: float) -> dict:
    return {"source": source, "window_s": window, "hop_s": hop, "audio_s": round(audio_s, 1),
            "wall_s": round(wall_s, 2), "windows": windows, "real_time_factor": round(audio_s / wall_s, 1),
            "ms_per_window": round(1000 * wall_s / max(windows, 1), 1)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _publish(port: int, topic: str, payload: bytes, chunk: int, core: int | None) -> None:
    """Publisher process: the stream as fast as the broker takes it, QoS 1 so nothing is dropped."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    if core is not None:
        os.sched_setaffinity(0, {core})
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    sent = [client.publish(topic, payload[i : i + chunk], qos=1) for i in range(0, len(payload), chunk)]
    for message in sent:
        message.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def rtf_mqtt(detector, audio: np.ndarray, machine: str, window: float, hop: float, work: Path,
             publisher_core: int | None) -> dict:
    """Flood a local broker with the stream and time the monitor from its first message to its last window."""
    from ssad.field.sources import MqttSource

    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = _free_port()
    config = work / "mosquitto.conf"
    # no limit on the messages the broker queues for a busy subscriber: the monitor must see them all
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n")
    broker = subprocess.Popen([exe, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        rate = detector.model.sample_rate
        source = MqttSource(f"mqtt://127.0.0.1:{port}/plant/rtf", machine=machine)
        source.subscribed.wait(10)
        monitor = _monitor(detector, window, hop)
        expected = (len(audio) - round(window * rate)) // round(hop * rate) + 1
        publisher = multiprocessing.get_context("spawn").Process(
            target=_publish, args=(port, "plant/rtf", audio.tobytes(), int(CHUNK_SECONDS * rate) * 2, publisher_core))
        publisher.start()
        events = iter(source)
        first = next(e for e in events if e is not None)
        start = time.perf_counter()
        monitor.add(first)
        windows = monitor.run(events, max_windows=expected)
        seconds = time.perf_counter() - start
        publisher.join(60)
        source.close()
    finally:
        broker.terminate()
        broker.wait(10)
    scored_audio = window + (windows - 1) * hop
    return _figures("mqtt", scored_audio, seconds, windows, window, hop)


def _markdown(result: dict) -> str:
    lines = [
        "# `ssad monitor`: real-time factor on one CPU core",
        "",
        "Made by `python experiments/monitor_rtf.py` (see its docstring). Real-time factor = seconds of audio "
        "scored per wall-clock second, on one core (the process pinned to one CPU, one torch/OpenMP thread); "
        "the MQTT publisher runs in its own process on the other core.",
        "",
        f"- model: {result['model']}",
        f"- stream: {result['audio_s']:.0f} s of {result['machine']} normal test clips end to end, {result['data']}",
        f"- machine: {result['cpu']}; load average (1 min) before the run: {result.get('load_before', '?')}",
        "",
        "| source | window (s) | hop (s) | audio (s) | wall (s) | windows | ms / window | real-time factor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        lines.append(f"| {r['source']} | {r['window_s']:g} | {r['hop_s']:g} | {r['audio_s']:g} | {r['wall_s']:g} "
                     f"| {r['windows']} | {r['ms_per_window']:g} | **{r['real_time_factor']:g}x** |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", required=True, help="saved detector (e.g. of configs/demo.yaml)")
    parser.add_argument("--data", required=True, help="corpus root whose normal test clips make the stream")
    parser.add_argument("--machine", default="fan/id_00")
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the stream")
    parser.add_argument("--model-note", default="", help="what model the detector holds, for the report")
    parser.add_argument("--out", default=str(HERE / "results" / "monitor_rtf"))
    args = parser.parse_args()
    load_before = round(os.getloadavg()[0], 2)  # how busy the machine was: these timings depend on it

    from ssad.detector import Detector

    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[0]})
    torch.set_num_threads(1)
    detector = Detector.load(args.detector)
    window = float(detector.clip_seconds or 10.0)
    audio = _stream(Path(args.data), args.machine, args.seconds, detector.model.sample_rate)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for hop in (window / 2, window):
            runs.append(rtf_file(detector, audio, args.machine, window, hop, work))
            print(runs[-1], flush=True)
        runs.append(rtf_mqtt(detector, audio, args.machine, window, window / 2, work,
                             cores[1] if len(cores) > 1 else None))
        print(runs[-1], flush=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    result = {"model": args.model_note or str(args.detector), "data": os.path.relpath(args.data), "machine": args.machine,
              "audio_s": args.seconds, "cpu": f"{cpu}, {len(cores)} core(s)", "load_before": load_before,
              "torch_threads": 1, "runs": runs}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
