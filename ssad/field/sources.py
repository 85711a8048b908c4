"""Where live audio comes from: a WAV file played as a stream, a watched folder, raw PCM on stdin, MQTT messages.

Every source yields `Chunk`s (mono float32 at the detector's rate, tagged with their stream and machine) and
`None` whenever nothing more is ready right now, which tells the monitor to score what it holds. Malformed
input in a stream of many parts (a file of a watched folder, a message) is reported on stderr and skipped; it never
stops such a source. A single file that cannot be read is the whole source: it stops with its name and the reason.
"""

from __future__ import annotations

import logging
import math
import queue
import select
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ssad.audio.reading import load_clip, log_conversions, pcm16_to_float
from ssad.core.errors import BadInputError, SsadError
from ssad.field import mqtt as mqtt_io
from ssad.field.health import Health

__all__ = ["AUDIO_SUFFIXES", "Chunk", "FileSource", "FolderSource", "MqttSource", "StdinSource", "pcm_bytes_to_float"]

log = logging.getLogger("ssad")

#: files a watched folder picks up
AUDIO_SUFFIXES = (".wav", ".flac")
#: raw PCM bytes per sample (16-bit little-endian mono)
SAMPLE_BYTES = 2


@dataclass(frozen=True)
class Chunk:
    """Consecutive samples of one stream.

    Attributes:
        stream: what the samples continue (a file, "stdin", an MQTT topic); windows never span two streams.
        machine: the machine (`type/id`) the audio is from.
        samples: mono float32 waveform at the detector's sample rate.
        final: the stream ends with this chunk.
        sent: when its sender says it was sent (Unix seconds; MQTT user property `ts`), if it says.
        received: when it arrived here (Unix seconds).
        ack: to call once the windows it completes are written (an MQTT QoS 1 acknowledgement), if any.
    """

    stream: str
    machine: str
    samples: np.ndarray
    final: bool = False
    sent: float | None = None
    received: float = field(default_factory=time.time)
    ack: Callable[[], None] | None = None


def pcm_bytes_to_float(data: bytes) -> np.ndarray:
    """16-bit little-endian PCM bytes (even length) -> float32 in [-1, 1), the scale WAVs are read at."""
    return pcm16_to_float(np.frombuffer(data, dtype="<i2"))


def _file_chunks(path: Path, machine: str, sample_rate: int, block: int, realtime: bool,
                 note: str | None = None) -> Iterator[Chunk]:
    """One audio file as a stream of chunks of `block` samples. A bad file raises BadInputError naming it, or, given
    a `note` (one file of many, as in a watched folder), is reported with it and gives nothing."""
    try:
        wave, info = load_clip(path, sample_rate=sample_rate)
    except BadInputError as error:
        if note is None:
            raise BadInputError(error.problems, header="the source cannot be read, nothing was scored") from None
        for where, why in error.problems:
            log.warning("skipped %s: %s%s", where, why, note)
        return
    log_conversions([info], sample_rate)
    started = time.monotonic()
    for begin in range(0, len(wave), block):
        if realtime:
            time.sleep(max(0.0, started + begin / sample_rate - time.monotonic()))
        yield Chunk(str(path), machine, wave[begin : begin + block], final=begin + block >= len(wave))


class FileSource:
    """A WAV (or FLAC) file played as one stream, as fast as it can be scored or, with `realtime`, at 1x.

    A file that cannot be read raises BadInputError naming it when iterated.
    """

    def __init__(self, path: str | Path, machine: str, sample_rate: int, *, block_seconds: float = 1.0,
                 realtime: bool = False) -> None:
        self.path = Path(path)
        self.machine = machine
        self.sample_rate = sample_rate
        self.block = max(1, round(block_seconds * sample_rate))
        self.realtime = realtime

    def __iter__(self) -> Iterator[Chunk | None]:
        yield from _file_chunks(self.path, self.machine, self.sample_rate, self.block, self.realtime)

    def close(self) -> None:
        """Nothing to release."""


class FolderSource:
    """Audio files in a folder, each scored once as its own stream: those present at start, then new ones.

    A file is read once its size and modification time have stayed the same for `settle` seconds, so one
    still being written waits. A file that cannot be read (truncated, wrong format) is reported and skipped,
    and read again if it changes later (a writer that paused longer than `settle`).

    Args:
        idle_timeout: stop after this many seconds without a new file (None = watch until interrupted).
    """

    def __init__(self, folder: str | Path, machine: str, sample_rate: int, *, poll: float = 0.5,
                 settle: float = 1.0, idle_timeout: float | None = None, block_seconds: float = 1.0) -> None:
        self.folder = Path(folder)
        self.machine = machine
        self.sample_rate = sample_rate
        self.poll = poll
        self.settle = settle
        self.idle_timeout = idle_timeout
        self.block = max(1, round(block_seconds * sample_rate))
        self._done: dict[Path, tuple[int, int]] = {}  # file -> (size, mtime) when it was read or skipped
        self._changing: dict[Path, tuple[tuple[int, int], float]] = {}  # file -> (size, mtime), since when

    def _ready(self, now: float) -> list[Path]:
        """Files whose size and time have settled and that were not read in this state yet, oldest first."""
        found = []
        present = {p for p in self.folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()}
        for gone in (set(self._done) | set(self._changing)) - present:  # removed files: forget them
            self._done.pop(gone, None)
            self._changing.pop(gone, None)
        for path in present:
            try:
                stat = path.stat()
            except OSError:  # removed between listing and stat
                continue
            signature = (stat.st_size, stat.st_mtime_ns)
            if self._done.get(path) == signature:
                continue
            seen = self._changing.get(path)
            if seen is None or seen[0] != signature:
                self._changing[path] = (signature, now)
            elif now - seen[1] >= self.settle:
                found.append((stat.st_mtime_ns, path.name, path, signature))
        return [(path, signature) for _, _, path, signature in sorted(found)]

    def __iter__(self) -> Iterator[Chunk | None]:
        last_new = time.monotonic()
        while True:
            now = time.monotonic()
            for path, signature in self._ready(now):
                self._done[path] = signature
                self._changing.pop(path, None)
                last_new = now
                yield from _file_chunks(path, self.machine, self.sample_rate, self.block, realtime=False,
                                        note=" (read again if it changes)")
            yield None
            if self.idle_timeout is not None and time.monotonic() - last_new > self.idle_timeout:
                return
            time.sleep(self.poll)

    def close(self) -> None:
        """Nothing to release."""


class StdinSource:
    """Raw 16-bit little-endian mono PCM at the detector's rate from a byte stream (standard input)."""

    def __init__(self, stream: BinaryIO, machine: str, *, block_bytes: int = 16384) -> None:
        self.stream = stream
        self.machine = machine
        self.block_bytes = block_bytes
        try:
            self._fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):  # BytesIO and friends: always ready
            self._fd = None

    def _waiting(self) -> bool:
        """True when a read would block: a good moment to score what is pending."""
        if self._fd is None:
            return False
        try:
            ready, _, _ = select.select([self._fd], [], [], 0)
        except (OSError, ValueError):
            return False
        return not ready

    def __iter__(self) -> Iterator[Chunk | None]:
        read = getattr(self.stream, "read1", self.stream.read)
        carry = b""
        while True:
            if self._waiting():
                yield None
            data = read(self.block_bytes)
            if not data:
                if carry:
                    log.warning("stdin: the stream ended on half a sample (an odd number of bytes); "
                                "dropped its last byte")
                yield Chunk("stdin", self.machine, np.empty(0, dtype=np.float32), final=True)
                return
            data = carry + data
            cut = len(data) - len(data) % SAMPLE_BYTES
            carry = data[cut:]
            yield Chunk("stdin", self.machine, pcm_bytes_to_float(data[:cut]))

    def close(self) -> None:
        """Standard input stays open."""


class MqttSource:
    """Messages of an MQTT topic (filter), each payload a chunk of raw 16-bit little-endian mono PCM.

    Messages are taken at QoS 1 and acknowledged only once the monitor has written the windows they complete,
    so a message a monitor dies holding is delivered again (to its resumed session). A message may carry the
    time it was sent as MQTT 5 user property `ts` (Unix seconds): lines and heartbeats then give the lag.

    Args:
        url: `mqtt://HOST:PORT/TOPIC`; TOPIC may have wildcards, and may be left out when `topic_pattern` is given.
        machine: the machine of every message, unless `topic_pattern` says.
        topic_pattern: e.g. `plant/+/+`: a message's machine is its topic's parts at the wildcards, joined by '/'.
        share: MQTT 5 shared-subscription group: monitors of one group each get a share of the messages. Each
            message is then its own stream (the next chunk of a topic may go to another monitor), so a
            message must hold at least one window.
        client_id, session_expiry: a stable client id and a session the broker keeps this many seconds after a
            disconnection (0 = none): messages published meanwhile wait for the monitor's return.
        health: where connection changes and bad messages are counted and reported.
        will: (topic, text) the broker publishes if this monitor's connection dies uncleanly.
    """

    def __init__(self, url: str, *, machine: str | None = None, topic_pattern: str | None = None,
                 share: str | None = None, client_id: str | None = None, session_expiry: int = 0,
                 health: Health | None = None, will: tuple[str, str] | None = None) -> None:
        self.address = mqtt_io.parse_mqtt_url(url)
        topic = self.address.topic or topic_pattern
        if not topic:
            raise SsadError(f"{url!r}: name the topic (mqtt://HOST:PORT/TOPIC) or give --machine-from-topic")
        if machine is None and topic_pattern is None:
            raise SsadError("MQTT source: give --machine, or --machine-from-topic to read machines from topics")
        self.machine = machine
        self.topic_pattern = topic_pattern
        self.share = share
        self.health = health if health is not None else Health(interval=0)
        self.subscription = f"$share/{share}/{topic}" if share else topic
        self.where = f"mqtt://{self.address.host}:{self.address.port}"
        self._messages: queue.Queue = queue.Queue()
        self._count = 0
        self._closed = threading.Event()
        #: set once the broker has acknowledged the subscription
        self.subscribed = threading.Event()
        self.client = mqtt_io.connect(self.address, client_id=client_id, session_expiry=session_expiry,
                                      manual_ack=True, will=will, on_message=self._on_message)
        self.health.connection(True, self.where)
        self.client.on_subscribe = self._on_subscribe
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.subscribe(self.subscription, qos=1)

    @property
    def queued(self) -> int:
        """Messages received and not yet taken by the monitor."""
        return self._messages.qsize()

    def _on_message(self, client: object, userdata: object, message: mqtt_io.mqtt.MQTTMessage) -> None:
        sent = None
        for key, value in getattr(message.properties, "UserProperty", None) or ():
            if key == "ts":
                try:
                    sent = float(value)
                except ValueError:
                    continue
                sent = sent if math.isfinite(sent) else None
        self._messages.put((message.topic, message.payload, message.mid, message.qos, sent, time.time()))

    def _on_connect(self, client: mqtt_io.mqtt.Client, userdata: object, flags: object, reason_code: object,
                    properties: object) -> None:
        if not getattr(reason_code, "is_failure", False):
            client.subscribe(self.subscription, qos=1)  # back once the broker acknowledges it (_on_subscribe)

    def _on_disconnect(self, client: object, userdata: object, flags: object, reason_code: object,
                       properties: object) -> None:
        if not self._closed.is_set():
            self.health.connection(False, self.where, str(reason_code))

    def _on_subscribe(self, client: object, userdata: object, mid: int, reason_codes: list, properties: object) -> None:
        failed = [code for code in reason_codes if getattr(code, "is_failure", False)]
        if failed:
            log.error("%s: the broker refused the subscription to %s (%s)", self.where, self.subscription, failed[0])
        elif not self.subscribed.is_set():
            log.info("subscribed to %s on %s", self.subscription, self.where)
            self.subscribed.set()
        else:  # subscribed again after a reconnection: messages flow again
            self.health.connection(True, self.where)

    def _acker(self, mid: int, qos: int) -> Callable[[], None]:
        return lambda: self.client.ack(mid, qos) if qos else None

    def _chunk(self, topic: str, payload: bytes, ack: Callable[[], None], sent: float | None,
               received: float) -> Chunk | None:
        """The chunk a message carries, or None (counted, and acknowledged) when it carries nothing usable."""
        machine = self.machine
        self.health.count_message()
        if self.topic_pattern is not None:
            machine = mqtt_io.machine_from_topic(self.topic_pattern, topic)
            if machine is None:
                self.health.count_bad("unknown_topic", f"{topic}: topic does not match --machine-from-topic "
                                      f"{self.topic_pattern}; its messages are skipped")
                ack()
                return None
        if not payload:
            self.health.count_bad("empty", f"{topic}: empty message skipped")
            ack()
            return None
        if len(payload) % SAMPLE_BYTES:
            self.health.count_bad("odd_bytes", f"{topic}: message of {len(payload)} bytes is not whole 16-bit "
                                  "samples; its last byte was dropped")
            payload = payload[: len(payload) - 1]
            if not payload:
                ack()
                return None
        self._count += 1
        samples = pcm_bytes_to_float(payload)
        if self.share:
            return Chunk(f"{topic}#{self._count}", machine, samples, final=True, sent=sent, received=received,
                         ack=ack)
        return Chunk(topic, machine, samples, sent=sent, received=received, ack=ack)

    def __iter__(self) -> Iterator[Chunk | None]:
        while not self._closed.is_set():
            try:
                topic, payload, mid, qos, sent, received = self._messages.get(timeout=0.2)
            except queue.Empty:
                yield None
                continue
            chunk = self._chunk(topic, payload, self._acker(mid, qos), sent, received)
            if chunk is not None:
                yield chunk
            if self._messages.empty():
                yield None

    def close(self) -> None:
        """Leave the broker; an iteration in progress ends."""
        if not self._closed.is_set():
            self._closed.set()
            mqtt_io.close(self.client)
