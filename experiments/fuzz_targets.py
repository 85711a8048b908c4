"""What `make fuzz` tries by the hundred thousand and the test suite by the dozen: hostile WAV files, MQTT payloads
and damaged detector folders. Each must end in an answer or in ssad's own error (`ssad.core.errors`), never in
another exception (a traceback in the CLI), and an accepted file is never held in more memory than its size warrants.

A target is a hypothesis strategy of cases and a check of one case that returns None, or what went wrong.
"""

from __future__ import annotations

import io
import math
import resource
import shutil
import struct
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ssad.core.errors import SsadError

__all__ = ["TARGETS", "FuzzResult", "Target", "fuzz"]

#: sizes a lying header field takes: nothing, one, the usual, the 32-bit edges (4 GB), the sign bit
LIES = [0, 1, 2, 44, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]
#: encodings whose samples take at least one byte each on disk: what is read from them is bounded by the file size
UNCOMPRESSED = ("PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW")
BATCH = 10_000  # examples per hypothesis run: its bookkeeping grows with each run's examples


def crash(error: BaseException) -> str:
    """A crash as one line: the exception type and where it was raised (the deepest frame)."""
    frame = traceback.extract_tb(error.__traceback__)[-1]
    return f"{type(error).__name__} in {Path(frame.filename).name}:{frame.lineno} ({str(error)[:80]})"


# --- WAV (and the other audio files ssad reads) --------------------------------------------------------------

def _format_subtypes() -> list[tuple[str, str]]:
    """Every (format, subtype) libsndfile writes among the formats a machine recording may come in."""
    return [(fmt, sub) for fmt in ("WAV", "WAVEX", "RF64", "W64", "FLAC", "AIFF", "AU", "CAF", "OGG")
            for sub in sf.available_subtypes(fmt) if sf.check_format(fmt, sub)]


FORMAT_SUBTYPES = _format_subtypes()
SUFFIX = {"WAV": ".wav", "WAVEX": ".wav", "RF64": ".wav", "W64": ".w64", "FLAC": ".flac", "AIFF": ".aiff",
          "AU": ".au", "CAF": ".caf", "OGG": ".ogg"}


@st.composite
def _samples(draw: Any) -> np.ndarray:
    """A few frames of a few channels: noise, silence, full scale, or floats with NaN and infinities."""
    frames, channels = draw(st.integers(0, 48)), draw(st.sampled_from([1, 1, 2, 3, 8]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    data = rng.uniform(-1.2, 1.2, (frames, channels)).astype(np.float64)
    if frames and draw(st.booleans()):
        specials = draw(st.lists(st.sampled_from([math.nan, math.inf, -math.inf, 1e30, -1e-40, 0.0]), max_size=4))
        for value in specials:
            data[rng.integers(frames), rng.integers(channels)] = value
    return data


@st.composite
def _written(draw: Any) -> tuple[bytes, str, str]:
    """A file libsndfile wrote in one of its subtypes (else a handmade header when it refuses to write it)."""
    fmt, subtype = draw(st.sampled_from(FORMAT_SUBTYPES))
    data, rate = draw(_samples()), draw(st.sampled_from([8000, 16000, 44100, 48000]))
    if subtype not in ("FLOAT", "DOUBLE"):  # libsndfile's encoders crash on 1e30 (u-law), NaN and inf are floats'
        data = np.clip(np.nan_to_num(data), -1.0, 1.0)
    out = io.BytesIO()
    try:
        sf.write(out, data, rate, format=fmt, subtype=subtype)
    except Exception:  # e.g. GSM610 wants mono 8 kHz, OGG some frames
        return draw(_handmade())
    return out.getvalue(), SUFFIX[fmt], fmt


@st.composite
def _handmade(draw: Any) -> tuple[bytes, str, str]:
    """A RIFF/RF64 WAV header with every field free to lie, then whatever bytes follow."""
    magic = draw(st.sampled_from([b"RIFF", b"RIFF", b"RF64", b"RIFX"]))
    tag = draw(st.sampled_from([1, 3, 6, 7, 2, 0x11, 0xFFFE]) | st.integers(0, 0xFFFF))
    channels = draw(st.sampled_from([0, 1, 2, 255, 1024, 1025, 0xFFFF]) | st.integers(0, 0xFFFF))
    rate = draw(st.sampled_from([0, 1, 16000, 0x7FFFFFFF, 0xFFFFFFFF]) | st.integers(0, 0xFFFFFFFF))
    bits = draw(st.sampled_from([0, 8, 16, 24, 32, 64, 0xFFFF]) | st.integers(0, 0xFFFF))
    align = draw(st.sampled_from([0, 1, 2, 4, 8, 0xFFFF]) | st.integers(0, 0xFFFF))
    fmt = struct.pack("<HHIIHH", tag, channels, rate, draw(st.integers(0, 0xFFFFFFFF)), align, bits)
    fmt += draw(st.binary(max_size=24))
    if draw(st.booleans()):  # IEEE floats with NaN and infinities as the samples
        payload = draw(_samples()).astype("<f4").tobytes()
    else:
        payload = draw(st.binary(max_size=512))
    data_size = draw(st.sampled_from([len(payload)] + LIES) | st.integers(0, 0xFFFFFFFF))
    chunks = b"fmt " + struct.pack("<I", draw(st.sampled_from([len(fmt), 14, 16, 18, 40]) | st.sampled_from(LIES))) + fmt
    if magic == b"RF64":  # the 64-bit sizes of the ds64 chunk, free to claim terabytes
        big = draw(st.sampled_from([len(payload), 2**32, 2**40, 2**63 - 1, 2**64 - 1]))
        chunks = b"ds64" + struct.pack("<IQQQI", 28, big, big, big // 2, 0) + chunks
    if draw(st.booleans()):
        chunks += b"LIST" + struct.pack("<I", draw(st.sampled_from(LIES))) + draw(st.binary(max_size=16))
    chunks += b"data" + struct.pack("<I", data_size) + payload
    riff = draw(st.sampled_from([4 + len(chunks)] + LIES))
    return magic + struct.pack("<I", riff) + b"WAVE" + chunks, ".wav", "WAV"


@st.composite
def wav_cases(draw: Any) -> tuple[bytes, str, str]:
    """A written or handmade file, then damaged: truncated, bytes overwritten, a size field made to lie."""
    data, suffix, fmt = draw(_written() | _handmade())
    data = bytearray(data)
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        where = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["truncate", "byte", "size"]))
        if action == "truncate":
            del data[where:]
        elif action == "byte":
            data[where] = draw(st.integers(0, 255))
        else:
            data[where : where + 4] = struct.pack("<I", draw(st.sampled_from(LIES)))
    return bytes(data), draw(st.sampled_from([suffix, suffix, ".wav", ".flac"])), fmt


def _wav_setup(folder: Path) -> Any:
    return folder


def check_wav(folder: Path, case: tuple[bytes, str, str]) -> str | None:
    """Read the file as every ssad command does (`ssad.audio.reading.read_native`, under `load_clip`)."""
    from ssad.audio.reading import read_native
    from ssad.core.errors import BadInputError

    data, suffix, fmt = case
    path = folder / f"case{suffix}"
    path.write_bytes(data)
    try:
        samples, info = read_native(path)
    except BadInputError:
        return None
    except Exception as error:  # anything else would be a traceback in the CLI
        return crash(error)
    if samples.dtype != np.float32 or samples.ndim != 2 or not len(samples) or samples.shape[1] != info.channels:
        return f"accepted with samples of shape {samples.shape} and type {samples.dtype}"
    if not np.isfinite(samples).all():
        return "accepted NaN or infinite samples"
    held = samples.base.nbytes if isinstance(samples.base, np.ndarray) else samples.nbytes
    if info.subtype in UNCOMPRESSED and held > 4 * len(data) + 4096:
        return f"held {held} bytes of samples for a {info.subtype} file of {len(data)} bytes"
    return None


# --- MQTT payloads and topics ------------------------------------------------------------------------------------

@st.composite
def mqtt_cases(draw: Any) -> tuple[bytes, int, str, str]:
    """A message (empty, odd, at and past a size limit, or any bytes), the limit, a topic and a topic pattern."""
    limit = draw(st.sampled_from([2, 3, 64, 4096]))
    size = draw(st.sampled_from([0, 1, limit - 1, limit, limit + 1, limit + 2]) | st.integers(0, 2 * limit))
    payload = draw(st.binary(min_size=size, max_size=size)) if size <= 256 else bytes(size)
    level = st.sampled_from(["plant", "fan", "id_00", "", "+", "#", "a/b", "\x00", "é"])
    topic = "/".join(draw(st.lists(level, max_size=5)))
    pattern = "/".join(draw(st.lists(level, max_size=5)))
    return payload, limit, topic, pattern


def check_mqtt(context: Any, case: tuple[bytes, int, str, str]) -> str | None:
    """A message as `ssad.field.sources.MqttSource` takes it: its samples within the limit, or a counted problem."""
    from ssad.field.health import BAD_KINDS
    from ssad.field.mqtt import machine_from_topic
    from ssad.field.payloads import payload_samples

    payload, limit, topic, pattern = case
    try:
        samples, problem = payload_samples(payload, limit)
        machine = machine_from_topic(pattern, topic)
    except Exception as error:
        return crash(error)
    if machine is not None and not isinstance(machine, str):
        return f"machine {machine!r} from topic {topic!r}"
    if problem is not None and problem[0] not in BAD_KINDS:
        return f"problem of unknown kind {problem[0]!r}"
    if samples is None:
        return None if problem is not None else "no samples and no reason"
    if len(payload) > limit:
        return f"took a message of {len(payload)} bytes over the limit of {limit}"
    if samples.dtype != np.float32 or len(samples) != len(payload) // 2 or not np.all(np.abs(samples) <= 1):
        return f"samples {samples.dtype} x {len(samples)} from {len(payload)} bytes"
    return None


# --- detector folders ----------------------------------------------------------------------------------------------

@dataclass
class DetectorFolder:
    """A saved detector (a tiny untrained network, two scorers, one enrolled machine), its pristine files, and
    its network loaded once."""

    folder: Path
    files: dict[str, bytes] = field(default_factory=dict)
    model: Any = None


def _detector_setup(folder: Path) -> DetectorFolder:
    """Save a detector of a tiny untrained classifier, enrol one machine on 5 synthetic clips, keep its files."""
    import torch

    from ssad.detector import Detector
    from ssad.encoder import Encoder
    from ssad.features import LogMel
    from ssad.models.classifier.lightning_model import MachineIDClassifier

    torch.manual_seed(0)
    classes = ["fan/id_00", "pump/id_00"]
    module = MachineIDClassifier(backbone="mobilenetv2", width_mult=0.25, last_channels=64, embedding_dim=16,
                                 head="softmax", class_names=classes, n_mels=64, window_frames=32).eval()
    metadata = {"model_class": f"{MachineIDClassifier.__module__}.MachineIDClassifier", "machine_types": None,
                "feature_params": LogMel(n_mels=64).params, "window_frames": 32, "window_hop": 16,
                "output_names": list(module.output_names), "class_names": classes}
    detector = Detector.empty(Encoder(module, metadata, "cpu"), scorers=["gaussian", "knn"])
    target = folder / "detector"
    detector.save(target)
    rng = np.random.default_rng(0)
    clips = []
    for i in range(5):
        clip = folder / f"clip{i}.wav"
        sf.write(clip, (0.3 * np.sin(np.arange(16000) * 0.05 * (i + 1)) + rng.normal(0, 0.05, 16000)), 16000)
        clips.append(clip)
    Detector.load(target).enroll("site/fan", clips)
    files = {str(p.relative_to(target)): p.read_bytes() for p in sorted(target.rglob("*"))
             if p.is_file() and not p.name.startswith(".")}
    return DetectorFolder(target, files, Detector.load(target).model)


@st.composite
def detector_cases(draw: Any, names: list[str]) -> tuple[str, list[tuple[str, int, int]]]:
    """One file of the folder and its damage: cut short, bytes overwritten, a JSON value replaced, or emptied."""
    name = draw(st.sampled_from(names))
    damage = draw(st.lists(st.tuples(st.sampled_from(["truncate", "byte", "size", "json", "empty", "remove"]),
                                     st.integers(0, 2**31), st.integers(0, 255)), min_size=1, max_size=3))
    return name, damage


JSON_VALUES = [b"null", b"0", b"-1", b"1e999", b"NaN", b"\"\"", b"[]", b"{}", b"true", b"\"../../etc\"", b"[[[[[[[[",
               b"\"x\"", b"99999999999999999999"]


def _damaged(data: bytes, damage: list[tuple[str, int, int]]) -> bytes | None:
    out = bytearray(data)
    for action, where, value in damage:
        if action == "remove":
            return None
        if action == "empty" or not out:
            return b""
        where %= len(out)
        if action == "truncate":
            del out[where:]
        elif action == "byte":
            out[where] = value
        elif action == "size":
            out[where : where + 8] = struct.pack("<Q", [2**32, 2**63 - 1, 2**64 - 1, 0][value % 4])
        else:  # a JSON value (or a token in any file) replaced by another
            end = min(len(out), where + 1 + value % 12)
            out[where:end] = JSON_VALUES[value % len(JSON_VALUES)]
    return bytes(out)


def check_detector(context: DetectorFolder, case: tuple[str, list[tuple[str, int, int]]]) -> str | None:
    """Load the damaged folder as `Detector.load` does, then put the file back. A damaged network file goes
    through the whole `Detector.load`; any other file through everything it does but rebuild the (intact) network,
    which would cost most of the time of a case."""
    from ssad.detector import Detector
    from ssad.detector.state import MANIFEST_FILE, DetectorState, read_manifest, read_state
    from ssad.models.files import MODEL_FILES

    name, damage = case
    path = context.folder / name
    damaged = _damaged(context.files[name], damage)
    try:
        if damaged is None:
            path.unlink()
        else:
            path.write_bytes(damaged)
        if name in MODEL_FILES:
            Detector.load(context.folder)
        else:
            DetectorState(context.model, *read_state(context.folder, read_manifest(context.folder / MANIFEST_FILE))[1])
    except SsadError:
        return None
    except Exception as error:
        return crash(error)
    finally:
        path.write_bytes(context.files[name])
    return None


# --- running ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """A fuzz target: what it feeds, what it checks, how its fixture is made."""

    name: str
    about: str
    setup: Callable[[Path], Any]
    strategy: Callable[[Any], st.SearchStrategy]
    check: Callable[[Any, Any], str | None]
    #: the fuzz process's address-space limit in bytes (None: torch's mappings want more than any such limit)
    address_space: int | None = 4 << 30


TARGETS = {
    "wav": Target("wav", "audio files: lying headers, every subtype, NaN/inf floats, truncation (read_native)",
                  _wav_setup, lambda context: wav_cases(), check_wav),
    "mqtt": Target("mqtt", "MQTT payloads (empty, odd, at and over the size limit) and topics (payload_samples, "
                   "machine_from_topic)", _wav_setup, lambda context: mqtt_cases(), check_mqtt),
    "detector": Target("detector", "detector folders: damaged JSON, npz and safetensors files (Detector.load)",
                       _detector_setup, lambda context: detector_cases(sorted(context.files)), check_detector,
                       address_space=None),
}


@dataclass
class FuzzResult:
    """Cases tried, and each distinct crash with its count and first case."""

    target: str
    cases: int = 0
    setup_kib: int = 0  # the process's peak resident set once the target's fixture was made, before any case
    crashes: Counter = field(default_factory=Counter)
    examples: dict[str, Any] = field(default_factory=dict)


def fuzz(name: str, cases: int, workdir: Path | None = None, progress: bool = False) -> FuzzResult:
    """Try `cases` cases of target `name` (hypothesis, in runs of BATCH), gathering crashes instead of stopping."""
    target = TARGETS[name]
    result = FuzzResult(name)
    folder = Path(tempfile.mkdtemp(prefix=f"ssad-fuzz-{name}-", dir=workdir))
    try:
        context = target.setup(folder)
        result.setup_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        strategy = target.strategy(context)

        def one(case: Any) -> None:
            result.cases += 1
            problem = target.check(context, case)
            if problem is not None:
                result.crashes[problem] += 1
                result.examples.setdefault(problem, case)

        while result.cases < cases:
            before = result.cases
            # a fresh test each run: hypothesis takes one settings object per function
            run = settings(max_examples=min(BATCH, cases - result.cases), database=None, deadline=None,
                           phases=[Phase.generate], suppress_health_check=list(HealthCheck))(given(strategy)(one))
            run()
            if progress:
                print(f"{name}: {result.cases} cases, {sum(result.crashes.values())} crashes", flush=True)
            if result.cases == before:
                break
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return result
