"""Where live audio comes from: a WAV file played as a stream, a watched folder, raw PCM on stdin, MQTT messages.

Every source yields `Chunk`s (mono float32 at the detector's rate, tagged with their stream and machine) and
`None` whenever nothing more is ready right now, which tells the monitor to score what it holds. Malformed
input is reported on stderr and skipped; it never stops a source.
"""

from __future__ import annotations

import logging
import queue
import select
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ssad.data.audio import load_clip, log_conversions, pcm16_to_float
from ssad.errors import BadInputError, SsadError
from ssad.field import mqtt as mqtt_io

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
    """

    stream: str
    machine: str
    samples: np.ndarray
    final: bool = False


def pcm_bytes_to_float(data: bytes) -> np.ndarray:
    """16-bit little-endian PCM bytes (even length) -> float32 in [-1, 1), the scale WAVs are read at."""
    return pcm16_to_float(np.frombuffer(data, dtype="<i2"))


def _file_chunks(path: Path, machine: str, sample_rate: int, block: int, realtime: bool,
                 note: str = "") -> Iterator[Chunk]:
    """One audio file as a stream of chunks of `block` samples; a bad file is reported (with `note`) and gives nothing."""
    try:
        wave, info = load_clip(path, sample_rate=sample_rate)
    except BadInputError as error:
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
    """A WAV (or FLAC) file played as one stream, as fast as it can be scored or, with `realtime`, at 1x."""

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

    Args:
        url: `mqtt://HOST:PORT/TOPIC`; TOPIC may have wildcards, and may be left out when `topic_pattern` is given.
        machine: the machine of every message, unless `topic_pattern` says.
        topic_pattern: e.g. `plant/+/+`: a message's machine is its topic's parts at the wildcards, joined by '/'.
        share: MQTT 5 shared-subscription group: monitors of one group each get a share of the messages. Each
            message is then its own stream (the next chunk of a topic may go to another monitor), so a
            message must hold at least one window.
    """

    def __init__(self, url: str, *, machine: str | None = None, topic_pattern: str | None = None,
                 share: str | None = None) -> None:
        self.address = mqtt_io.parse_mqtt_url(url)
        topic = self.address.topic or topic_pattern
        if not topic:
            raise SsadError(f"{url!r}: name the topic (mqtt://HOST:PORT/TOPIC) or give --machine-from-topic")
        if machine is None and topic_pattern is None:
            raise SsadError("MQTT source: give --machine, or --machine-from-topic to read machines from topics")
        self.machine = machine
        self.topic_pattern = topic_pattern
        self.share = share
        self.subscription = f"$share/{share}/{topic}" if share else topic
        self._messages: queue.Queue = queue.Queue()
        self._warned: set[str] = set()
        self._count = 0
        self._closed = threading.Event()
        #: set once the broker has acknowledged the subscription
        self.subscribed = threading.Event()
        self.client = mqtt_io.connect(self.address)
        self.client.on_message = lambda client, userdata, message: self._messages.put((message.topic, message.payload))
        self.client.on_subscribe = self._on_subscribe
        self.client.on_connect = lambda client, *args: client.subscribe(self.subscription, qos=1)
        self.client.subscribe(self.subscription, qos=1)

    def _on_subscribe(self, client: object, userdata: object, mid: int, reason_codes: list, properties: object) -> None:
        failed = [code for code in reason_codes if getattr(code, "is_failure", False)]
        where = f"mqtt://{self.address.host}:{self.address.port}"
        if failed:
            log.error("%s: the broker refused the subscription to %s (%s)", where, self.subscription, failed[0])
        else:
            log.info("subscribed to %s on %s", self.subscription, where)
            self.subscribed.set()

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def _chunk(self, topic: str, payload: bytes) -> Chunk | None:
        """The chunk a message carries, or None (reported) when it carries nothing usable."""
        machine = self.machine
        if self.topic_pattern is not None:
            machine = mqtt_io.machine_from_topic(self.topic_pattern, topic)
            if machine is None:
                self._warn_once(f"topic:{topic}", "%s: topic does not match --machine-from-topic %s; its messages "
                                "are skipped", topic, self.topic_pattern)
                return None
        if not payload:
            log.warning("%s: empty message skipped", topic)
            return None
        if len(payload) % SAMPLE_BYTES:
            log.warning("%s: message of %d bytes is not whole 16-bit samples; its last byte was dropped",
                        topic, len(payload))
            payload = payload[: len(payload) - 1]
            if not payload:
                return None
        self._count += 1
        if self.share:
            return Chunk(f"{topic}#{self._count}", machine, pcm_bytes_to_float(payload), final=True)
        return Chunk(topic, machine, pcm_bytes_to_float(payload))

    def __iter__(self) -> Iterator[Chunk | None]:
        while not self._closed.is_set():
            try:
                topic, payload = self._messages.get(timeout=0.2)
            except queue.Empty:
                yield None
                continue
            chunk = self._chunk(topic, payload)
            if chunk is not None:
                yield chunk
            if self._messages.empty():
                yield None

    def close(self) -> None:
        """Leave the broker; an iteration in progress ends."""
        if not self._closed.is_set():
            self._closed.set()
            mqtt_io.close(self.client)
