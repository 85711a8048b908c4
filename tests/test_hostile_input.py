"""Hostile input: the properties `make fuzz` tries by the hundred thousand, here on a few dozen cases each; a header
claiming gigabytes; a damaged detector in the CLI; no pickle anywhere."""

from __future__ import annotations

import importlib.util
import io
import re
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssad.audio.reading import read_native
from ssad.core.errors import BadInputError
from ssad.field.payloads import MAX_PAYLOAD_BYTES, payload_samples

ROOT = Path(__file__).resolve().parents[1]
#: cases per target here: a few seconds in all (make fuzz: 100,000 each)
FEW = {"wav": 60, "mqtt": 200, "detector": 20}


@pytest.fixture(scope="module")
def fuzz_targets():
    """experiments/fuzz_targets.py as a module (it lives with the script that runs it by the hundred thousand)."""
    sys.path.insert(0, str(ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location("fuzz_targets", ROOT / "experiments" / "fuzz_targets.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_targets"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("fuzz_targets", None)
    sys.path.remove(str(ROOT / "experiments"))


@pytest.mark.parametrize("target", list(FEW))
def test_fuzz_target_holds_on_a_few_cases(fuzz_targets, target: str, tmp_path: Path) -> None:
    result = fuzz_targets.fuzz(target, FEW[target], tmp_path)
    assert result.cases >= FEW[target]
    assert not result.crashes, {what: repr(result.examples[what])[:300] for what in result.crashes}


def _flac_claiming(frames_log2: int, folder: Path) -> Path:
    """A 100-frame FLAC whose STREAMINFO claims 2**frames_log2 frames (a 36-bit field)."""
    out = io.BytesIO()
    sf.write(out, np.zeros(100), 16000, format="FLAC", subtype="PCM_16")
    data = bytearray(out.getvalue())
    claimed = (1 << frames_log2).to_bytes(5, "big")  # the low 4 bits of byte 21, then bytes 22-25
    data[21] = (data[21] & 0xF0) | claimed[0]
    data[22:26] = claimed[1:]
    path = folder / "lying.flac"
    path.write_bytes(bytes(data))
    return path


def test_a_header_claiming_gigabytes_never_allocates_them(tmp_path: Path) -> None:
    path = _flac_claiming(32, tmp_path)
    assert sf.info(str(path)).frames == 2**32  # 16 GiB of float32 samples, claimed
    tracemalloc.start()
    try:
        with pytest.raises(BadInputError):
            read_native(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20


def test_a_stream_that_decodes_forever_is_cut_short(tmp_path: Path) -> None:
    # found by make fuzz (the process took 19 GB before the kernel killed it): a W64 GSM 6.10 file whose data chunk
    # claims 2^63 bytes is not seekable to libsndfile, and its decoder gives full blocks for ever
    out = io.BytesIO()
    sf.write(out, np.zeros(1000), 8000, format="W64", subtype="GSM610")
    data = bytearray(out.getvalue())
    size = data.index(b"data") + 16  # after the chunk's 16-byte GUID: its 64-bit size
    data[size : size + 8] = (0x9C00000000000059).to_bytes(8, "little")
    path = tmp_path / "endless.w64"
    path.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        with pytest.raises(BadInputError, match=r"decodes to more than \d+ samples from 404 bytes"):
            read_native(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20


def test_a_message_over_the_size_limit_is_skipped_and_says_so() -> None:
    samples, problem = payload_samples(bytes(MAX_PAYLOAD_BYTES + 2))
    assert samples is None and problem[0] == "oversized" and str(MAX_PAYLOAD_BYTES) in problem[1]
    samples, problem = payload_samples(bytes(MAX_PAYLOAD_BYTES))
    assert problem is None and len(samples) == MAX_PAYLOAD_BYTES // 2


def test_a_damaged_detector_ends_the_cli_in_one_line(fuzz_targets, tmp_path: Path, capsys) -> None:
    from ssad.cli.main import main

    context = fuzz_targets._detector_setup(tmp_path)
    capsys.readouterr()  # what making the detector logged
    clip = tmp_path / "clip0.wav"
    for name, damage in [("detector.json", b"\xff\xfe"), ("versions/0001/references.npz", b"PK\x03\x04"),
                         ("model.json", b'{"metadata": {"model_class": "ssad.nowhere.Model"}, "hyper_parameters": {}}'),
                         ("versions/0001/scorers/knn/arrays.npz", b"")]:
        (context.folder / name).write_bytes(damage)
        assert main(["monitor", "--detector", str(context.folder), "--source", str(clip)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("ssad: error: "), err
        (context.folder / name).write_bytes(context.files[name])


def test_no_pickle_anywhere() -> None:
    """Nothing ssad reads is unpickled: no pickle module, numpy never allows it, torch only loads weights."""
    for path in (ROOT / "ssad").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import pickle|from pickle|import dill|import joblib)", text, re.M), path
        assert "allow_pickle=True" not in text, path
        for call in re.findall(r"torch\.load\(.*", text):
            assert "weights_only=True" in call, (path, call)
