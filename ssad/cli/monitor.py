"""`ssad monitor`: score live audio from a file, a folder, stdin or MQTT with a saved detector."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from ssad.cli.options import shared_options
from ssad.core.errors import SsadError

__all__ = ["add_monitor_command"]

log = logging.getLogger("ssad")

#: the DCASE 2020 Task 2 clip length, for detectors that do not record theirs
FALLBACK_WINDOW_S = 10.0


def add_mqtt_login_options(parser: argparse.ArgumentParser) -> None:
    """TLS and login options for the MQTT broker of --source and --alerts; never a password itself."""
    group = parser.add_argument_group(
        "MQTT broker login", "for mqtts:// (TLS) and brokers that want a user name and password; the password "
        "comes from SSAD_MQTT_PASSWORD or a file, never from the command line (the process list shows it)")
    group.add_argument("--mqtt-ca", default=None, metavar="FILE",
                       help="CA certificate (PEM) the broker's certificate is checked against (default: the system's)")
    group.add_argument("--mqtt-cert", default=None, metavar="FILE",
                       help="client certificate (PEM), for a broker that asks for one")
    group.add_argument("--mqtt-key", default=None, metavar="FILE",
                       help="the client certificate's private key (PEM), when not in --mqtt-cert's file")
    group.add_argument("--mqtt-username", default=None, metavar="NAME",
                       help="user name on the broker (default: $SSAD_MQTT_USERNAME)")
    group.add_argument("--mqtt-password-file", default=None, metavar="FILE",
                       help="a file whose first line is the password (default: $SSAD_MQTT_PASSWORD)")


def _credentials(args: argparse.Namespace) -> Any:
    """The MQTT login the options and environment give; SsadError when they are given without an MQTT address."""
    from ssad.field.connection import MqttCredentials
    from ssad.field.mqtt import is_mqtt_url

    given = [args.mqtt_ca, args.mqtt_cert, args.mqtt_key, args.mqtt_username, args.mqtt_password_file]
    if any(given) and not (is_mqtt_url(args.source) or args.alerts):
        raise SsadError("--mqtt-ca, --mqtt-cert, --mqtt-key, --mqtt-username and --mqtt-password-file apply to "
                        "an MQTT --source or --alerts only")
    return MqttCredentials.from_options(ca=args.mqtt_ca, cert=args.mqtt_cert, key=args.mqtt_key,
                                        username=args.mqtt_username, password_file=args.mqtt_password_file)


def add_monitor_command(commands: Any) -> None:
    """Register `ssad monitor` on the main parser's subcommands."""
    parser = commands.add_parser(
        "monitor", help="score live audio (WAV file, folder, raw PCM on stdin, MQTT) window by window",
        description="Scores sliding windows of live audio with a saved detector; one JSON line per window on "
        "stdout (time, machine, score, threshold, alert, smoothed, drift, ...), alerts and drift on stderr.",
        epilog="Drift says nothing until --drift-windows windows that do not overlap have been scored: about "
        "drift-windows x window seconds of audio per machine (30 x 10 s = 300 s with the defaults and 10-s "
        "windows).", parents=shared_options(device="cpu"))
    parser.add_argument("--detector", required=True, help="saved detector folder (from ssad evaluate/detector)")
    parser.add_argument("--source", required=True,
                        help="a WAV file (played as a stream), a folder (watched for new files), '-' (raw 16-bit "
                        "little-endian mono PCM at the detector's rate on stdin), or mqtt://HOST:PORT/TOPIC (mqtts:// for TLS)")
    parser.add_argument("--machine", default=None, help="machine (type/id) the audio is from; default: the "
                        "detector's only machine")
    parser.add_argument("--machine-from-topic", default=None, metavar="PATTERN",
                        help="MQTT: machine = the topic's parts at PATTERN's wildcards, e.g. plant/+/+")
    parser.add_argument("--share", default=None, metavar="GROUP",
                        help="MQTT: split messages with other monitors of GROUP (MQTT 5 shared subscription)")
    parser.add_argument("--client-id", default=None, metavar="ID",
                        help="MQTT: a stable client id (default: a fresh one each start); with --session-expiry "
                        "a restarted monitor resumes its session")
    parser.add_argument("--session-expiry", type=int, default=0, metavar="SECONDS",
                        help="MQTT: the broker keeps this monitor's session (subscription, unacknowledged and "
                        "newly published messages) this long after it disconnects or dies; needs --client-id")
    parser.add_argument("--heartbeat", type=float, default=10.0, metavar="SECONDS",
                        help="a health event (JSON on stderr; on MQTT also published) every this many seconds; 0 = none")
    parser.add_argument("--health-topic", default=None, metavar="TOPIC",
                        help="MQTT: where health events are published (default: ssad/monitor/CLIENT_ID/health)")
    parser.add_argument("--window", type=float, default=None,
                        help="window length in seconds (default: the detector's clip length)")
    parser.add_argument("--hop", type=float, default=None, help="seconds between windows (default: half a window)")
    parser.add_argument("--smoothing", choices=["ema", "mean"], default="ema",
                        help="smoothed score: exponential or plain moving average (default: %(default)s)")
    parser.add_argument("--smooth-windows", type=int, default=4, help="span of the smoothing, in windows (default: %(default)s)")
    parser.add_argument("--alert-after", type=int, default=3,
                        help="alert when the smoothed score stays above the threshold this many windows (default: %(default)s)")
    parser.add_argument("--alerts", default=None, metavar="mqtt://HOST:PORT/TOPIC", help="also publish alerts here")
    add_mqtt_login_options(parser)
    parser.add_argument("--drift-windows", type=int, default=30,
                        help="recent non-overlapping windows tested against the training score distribution; no drift verdict "
                        "before that many windows' audio (default: %(default)s)")
    parser.add_argument("--drift-alpha", type=float, default=1e-3, help="drift when the test's p-value is below (default: %(default)s)")
    parser.add_argument("--learn", type=duration, default=0.0, metavar="DURATION",
                        help="a learning period per machine (e.g. 90s, 10m, 1h): its first DURATION of audio raises no "
                        "alert, and its scores set the machine's threshold where it stands; then an 'armed' event. The "
                        "threshold is saved as a new detector version (`ssad feedback --undo` rolls it back) when the "
                        "detector folder is writable")
    parser.add_argument("--history", default=None, metavar="URL",
                        help="keep every scored window, event and alarm (with its explanation, picture and first "
                        "windows' audio) for `ssad serve`: an SQLite file (e.g. history.db) or postgresql://USER@HOST/DB")
    parser.add_argument("--keep", type=float, default=None, metavar="DAYS",
                        help="--history: drop what is older than DAYS (default: keep all)")
    parser.add_argument("--downsample-after", type=float, default=2.0, metavar="DAYS",
                        help="--history: fold windows older than DAYS into one row a minute per machine, keeping "
                        "the highest scores and any alert (default: %(default)s; 0 = never)")
    parser.add_argument("--alarm-clips", type=int, default=3, metavar="N",
                        help="--history: windows of audio kept per alarm, which the console's 'this was normal' "
                        "learns from (default: %(default)s)")
    parser.add_argument("--max-windows", type=int, default=None, help="stop after this many windows")
    parser.add_argument("--scorer", default=None, help="default: the detector's own choice")
    parser.add_argument("--batch", type=int, default=16, help="most windows scored in one pass (default: %(default)s)")
    parser.add_argument("--realtime", action="store_true", help="play a WAV file at 1x instead of at full speed")
    parser.add_argument("--poll", type=float, default=0.5, help="folder: seconds between looks (default: %(default)s)")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="folder: a file is read once unchanged for this many seconds (default: %(default)s)")
    parser.set_defaults(handler=run_monitor)


_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def duration(text: str) -> float:
    """argparse type of a duration: seconds, or a number with s, m, min, h or d (e.g. 90s, 10m, 1h)."""
    number = text.rstrip("smhind")
    unit = text[len(number):] or "s"
    try:
        seconds = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"{text!r}: give a duration such as 90s, 10m or 1h") from None
    if not seconds >= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration cannot be negative")
    return seconds


def _keeper(directory: str) -> Any:
    """What saves a machine's threshold after its learning period: a new version of the detector in `directory`."""
    from ssad.detector.enrollment import keep_calibration

    def keep(machine: str, scorer: str, thresholds: Any) -> None:
        try:
            update = keep_calibration(directory, machine, scorer, thresholds, source="ssad monitor --learn")
        except (OSError, SsadError) as error:
            log.warning("could not save %s's learned threshold in %s (%s); it holds until this monitor stops",
                        machine, directory, error)
            return
        log.info("saved %s's learned threshold as version %d of %s", machine, update.version, directory)

    return keep


def _machine(args: argparse.Namespace, detector: Any, known: list[str]) -> str | None:
    """The machine named on the command line (checked; a type names its only machine), the detector's only one,
    or None for topic machines."""
    detector.require_machines()
    if args.machine is not None:
        machine = detector.resolve_machine(args.machine)
        if machine not in known:
            raise SsadError(f"machine {machine!r} has no {args.scorer or detector.default_scorer} scorer in the "
                            f"detector {args.detector}; it has {', '.join(known)}")
        return machine
    if args.machine_from_topic is not None:
        return None
    if len(known) == 1:
        return known[0]
    raise SsadError(f"give --machine (the detector knows {', '.join(known)})")


class _Events:
    """Where health events go: one JSON line each on stderr, and the MQTT health topic once there is a client."""

    def __init__(self, topic: str | None) -> None:
        self.topic = topic
        self.client: Any = None
        self.recorder: Any = None

    def __call__(self, event: dict) -> None:
        text = json.dumps(event)
        print(text, file=sys.stderr, flush=True)
        if self.client is not None:
            self.client.publish(self.topic, text.encode(), qos=0)
        if self.recorder is not None:
            self.recorder.event(event)


def _recorder(args: argparse.Namespace, sample_rate: int) -> Any:
    """The history `--history` names, opened (and upgraded), behind a recorder; None without --history."""
    if args.history is None:
        if args.keep is not None:
            raise SsadError("--keep applies to --history")
        return None
    from ssad.field.recorder import HistoryRecorder
    from ssad.history import History

    if (args.keep is not None and args.keep <= 0) or args.downsample_after < 0 or args.alarm_clips < 0:
        raise SsadError("--keep must be > 0, --downsample-after and --alarm-clips >= 0")
    return HistoryRecorder(History(args.history), sample_rate=sample_rate, clips_per_alarm=args.alarm_clips,
                           keep=args.keep, downsample_after=args.downsample_after or None)


def _source(args: argparse.Namespace, machine: str | None, sample_rate: int, health: Any, events: _Events,
            credentials: Any) -> Any:
    """The source `--source` names."""
    from ssad.field import sources
    from ssad.field.mqtt import is_mqtt_url

    spec = args.source
    if is_mqtt_url(spec):
        source = sources.MqttSource(spec, machine=machine, topic_pattern=args.machine_from_topic, share=args.share,
                                    client_id=health.name, session_expiry=args.session_expiry, health=health,
                                    will=(events.topic, json.dumps({"event": "offline", "monitor": health.name})),
                                    credentials=credentials)
        events.client = source.client
        return source
    if args.machine_from_topic or args.share or args.client_id or args.session_expiry or args.health_topic:
        raise SsadError("--machine-from-topic, --share, --client-id, --session-expiry and --health-topic apply to "
                        "an mqtt:// or mqtts:// source only")
    if machine is None:
        raise SsadError("give --machine for a file, folder or stdin source")
    if spec == "-":
        return sources.StdinSource(sys.stdin.buffer, machine)
    path = Path(spec)
    if path.is_dir():
        return sources.FolderSource(path, machine, sample_rate, poll=args.poll, settle=args.settle)
    if path.is_file():
        return sources.FileSource(path, machine, sample_rate, realtime=args.realtime)
    raise SsadError(f"{spec}: no such file or folder (a source is a WAV file, a folder, '-' or mqtt://...)")


def _window_seconds(args: argparse.Namespace, detector: Any) -> float:
    if args.window is not None:
        return args.window
    if detector.clip_seconds:
        return float(detector.clip_seconds)
    log.warning("the detector records no clip length: windows of %g s (give --window to match its clips)",
                FALLBACK_WINDOW_S)
    return FALLBACK_WINDOW_S


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_monitor(args: argparse.Namespace) -> None:
    """The `ssad monitor` handler: build detector, source and monitor, run until the source ends or Ctrl-C."""
    from ssad.detector import Detector
    from ssad.field.health import Health
    from ssad.field.monitor import Monitor, MonitorSettings
    from ssad.field.mqtt import MqttPublisher

    if args.max_windows is not None and args.max_windows < 1:
        raise SsadError(f"--max-windows {args.max_windows} must be >= 1")
    if args.session_expiry < 0 or args.heartbeat < 0:
        raise SsadError("--session-expiry and --heartbeat must be >= 0")
    if args.session_expiry and not args.client_id:
        raise SsadError("--session-expiry needs --client-id: the stable id a restarted monitor resumes its session by")
    if args.health_topic is not None and (not args.health_topic or any(c in args.health_topic for c in "+#")):
        raise SsadError(f"--health-topic {args.health_topic!r}: give one plain topic (no + or #), e.g. plant/health")
    credentials = _credentials(args)
    name = args.client_id or f"ssad-monitor-{uuid.uuid4().hex[:8]}"
    events = _Events(args.health_topic or f"ssad/monitor/{name}/health")
    health = Health(events, interval=args.heartbeat, name=name)
    monitor = source = publisher = recorder = None
    main_thread = threading.current_thread() is threading.main_thread()
    # a service manager's stop (SIGTERM) takes the same clean way out as Ctrl-C
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        detector = Detector.load(args.detector, device=args.device)
        scorer = args.scorer or detector.default_scorer
        if scorer not in detector.thresholds:
            raise SsadError(f"no scorer {scorer!r} in {args.detector}; it has {sorted(detector.thresholds)}")
        machine = _machine(args, detector, sorted(detector.thresholds[scorer].threshold_))
        window = _window_seconds(args, detector)
        settings = MonitorSettings(window=window, hop=args.hop or window / 2, smoothing=args.smoothing,
                                   smooth_windows=args.smooth_windows, alert_after=args.alert_after,
                                   drift_windows=args.drift_windows, drift_alpha=args.drift_alpha,
                                   batch_size=args.batch, learn=args.learn)
        publisher = MqttPublisher(args.alerts, credentials) if args.alerts else None
        recorder = events.recorder = _recorder(args, detector.model.sample_rate)
        monitor = Monitor(detector, settings, scorer=scorer, publish=publisher.publish if publisher else None,
                          health=health, keep=_keeper(args.detector) if args.learn else None,
                          record=recorder.window if recorder else None)
        source = _source(args, machine, monitor.sample_rate, health, events, credentials)
        log.info("monitoring %s: windows of %g s every %g s, %s scorer; drift from about %g s of audio on",
                 args.source, settings.window, settings.hop, scorer, settings.drift_seconds)
        if settings.learn:
            log.info("learning period: each machine's first %g s of audio raise no alert and set its threshold",
                     settings.learn)
        monitor.run(source, max_windows=args.max_windows)
        if publisher is not None:  # the last alerts' acknowledgements come at close
            publisher.close()
            publisher.check()
    except KeyboardInterrupt:
        done = f"{monitor.windows_scored} window(s) scored and written, {monitor.alerts_raised} alert(s)" \
            if monitor else "nothing scored yet"
        print(f"ssad monitor: interrupted; {done}", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        if source is not None:
            source.close()
        if publisher is not None:
            publisher.close()
        if recorder is not None:
            events.recorder = None
            recorder.close()  # the windows still buffered are committed: a restart loses nothing
    log.info("monitor done: %d window(s) scored, %d alert(s)", monitor.windows_scored, monitor.alerts_raised)
