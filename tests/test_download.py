"""Tests for ssad.audio.download: transfer, resume, verification and atomic unpacking, served from 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssad.audio import download
from ssad.audio.download import CORPORA, PARTS, Archive, Corpus, download_corpus
from ssad.core.errors import SsadError

SAMPLE_RATE = 16000
MAX_REQUESTS = 200


def _wav_bytes(seed: int) -> bytes:
    """A 0.1-s 16-bit mono WAV of noise."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    sf.write(
        buffer,
        rng.uniform(-0.5, 0.5, SAMPLE_RATE // 10).astype(np.float32),
        SAMPLE_RATE,
        format="WAV",
        subtype="PCM_16",
    )
    return buffer.getvalue()


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip (stored, so bytes can be corrupted in place) holding `members`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


DEV_MEMBERS = {
    "fan/train/normal_id_00_00000000.wav": _wav_bytes(0),
    "fan/train/normal_id_00_00000001.wav": _wav_bytes(1),
    "fan/test/normal_id_00_00000000.wav": _wav_bytes(2),
    "fan/test/anomaly_id_00_00000000.wav": _wav_bytes(3),
}
ADDITIONAL_MEMBERS = {
    "fan/train/normal_id_01_00000000.wav": _wav_bytes(4),
    "fan/train/normal_id_01_00000001.wav": _wav_bytes(5),
}
DEV_ZIP = _zip_bytes(DEV_MEMBERS)
ADDITIONAL_ZIP = _zip_bytes(ADDITIONAL_MEMBERS)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class FileServer:
    """A threaded HTTP server on 127.0.0.1 that serves byte strings with Range support and scripted faults."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_first: dict[str, int] = {}
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/files"

    def ranges(self, name: str) -> list[str | None]:
        """The Range headers of the requests made for `name`, in order."""
        return [r for n, r in self.requests if n == name]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
                range_header = self.headers.get("Range")
                with server._lock:
                    server.requests.append((name, range_header))
                    count = len(server.requests)
                    cut = server.cut_first.pop(name, None)
                if count > MAX_REQUESTS or name not in server.files:
                    self.send_error(503 if count > MAX_REQUESTS else 404)
                    return
                data = server.files[name]
                match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
                if match and not server.ignore_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    body = data[start:]
                else:
                    self.send_response(200)
                    body = data
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if cut is None:
                    self.wfile.write(body)
                    return
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.request.shutdown(socket.SHUT_RDWR)

        return Handler

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(download, "RETRY_DELAY_SECONDS", 0.0)
    monkeypatch.setattr(download, "TIMEOUT_SECONDS", 10.0)
    with FileServer() as srv:
        srv.files["dev_data_fan.zip"] = DEV_ZIP
        srv.files["eval_data_train_fan.zip"] = ADDITIONAL_ZIP
        yield srv


def _register(monkeypatch: pytest.MonkeyPatch, *archives: Archive) -> str:
    monkeypatch.setitem(CORPORA, "tiny", Corpus("tiny", "test corpus", tuple(archives)))
    return "tiny"


def _dev(md5: str | None = _md5(DEV_ZIP)) -> Archive:
    return Archive(
        "dev_data_fan.zip", "https://zenodo.org/record/1/files/dev_data_fan.zip?download=1", md5, "dev", "fan"
    )


def _additional(md5: str | None = None) -> Archive:
    return Archive(
        "eval_data_train_fan.zip",
        "https://zenodo.org/record/2/files/eval_data_train_fan.zip?download=1",
        md5,
        "additional",
        "fan",
    )


def _wavs(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*.wav") if ".downloads" not in p.parts}


def test_download_unpacks_and_merges_into_layout(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name = _register(monkeypatch, _dev(), _additional())
    out = download_corpus(name, tmp_path, base_url=server.base_url, progress=False)
    assert out == [tmp_path / "fan"]
    assert _wavs(tmp_path) == set(DEV_MEMBERS) | set(ADDITIONAL_MEMBERS)
    for member, data in {**DEV_MEMBERS, **ADDITIONAL_MEMBERS}.items():
        assert (tmp_path / member).read_bytes() == data
        assert sf.info(str(tmp_path / member)).samplerate == SAMPLE_RATE
    downloads = tmp_path / ".downloads"
    assert sorted(p.name for p in downloads.iterdir()) == [
        "dev_data_fan.zip.done",
        "eval_data_train_fan.zip.done",
        "manifest.json",
    ]
    manifest = json.loads((downloads / "manifest.json").read_text())
    assert manifest["dev_data_fan.zip"]["md5"] == _md5(DEV_ZIP)
    assert manifest["dev_data_fan.zip"]["md5_published"] == _md5(DEV_ZIP)
    assert manifest["eval_data_train_fan.zip"]["md5_published"] is None
    assert manifest["eval_data_train_fan.zip"]["sha256"] == hashlib.sha256(ADDITIONAL_ZIP).hexdigest()
    marker = json.loads((downloads / "dev_data_fan.zip.done").read_text())
    assert marker["outputs"] == ["fan"]

    from ssad.audio.layout import index_root

    clips = index_root(tmp_path)
    assert {(c.machine_type, c.machine_id, c.split, c.label) for c in clips} == {
        ("fan", "id_00", "train", "normal"),
        ("fan", "id_01", "train", "normal"),
        ("fan", "id_00", "test", "normal"),
        ("fan", "id_00", "test", "anomaly"),
    }
    assert len(clips) == len(DEV_MEMBERS) + len(ADDITIONAL_MEMBERS)


def test_parts_and_keep_archives(server: FileServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    name = _register(monkeypatch, _dev(), _additional())
    download_corpus(
        name, tmp_path, parts=["additional"], base_url=server.base_url, progress=False, keep_archives=True
    )
    assert _wavs(tmp_path) == set(ADDITIONAL_MEMBERS)
    assert (tmp_path / ".downloads" / "eval_data_train_fan.zip").read_bytes() == ADDITIONAL_ZIP
    assert server.ranges("dev_data_fan.zip") == []


def test_wrong_md5_raises_and_leaves_nothing(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    corrupted = bytearray(DEV_ZIP)
    corrupted[len(corrupted) // 2] ^= 0xFF
    server.files["dev_data_fan.zip"] = bytes(corrupted)
    name = _register(monkeypatch, _dev())
    with pytest.raises(SsadError) as info:
        download_corpus(name, tmp_path, base_url=server.base_url, progress=False)
    message = str(info.value)
    assert "dev_data_fan.zip" in message and _md5(DEV_ZIP) in message and _md5(bytes(corrupted)) in message
    assert not (tmp_path / "fan").exists()
    assert sorted(p.name for p in (tmp_path / ".downloads").iterdir()) == []


def test_crc_error_without_md5_raises_and_leaves_nothing(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    info = zipfile.ZipFile(io.BytesIO(DEV_ZIP)).infolist()[1]
    corrupted = bytearray(DEV_ZIP)
    corrupted[info.header_offset + 30 + len(info.filename) + len(info.extra) + 500] ^= 0xFF
    server.files["dev_data_fan.zip"] = bytes(corrupted)
    name = _register(monkeypatch, _dev(md5=None))
    with pytest.raises(SsadError, match="damaged"):
        download_corpus(name, tmp_path, base_url=server.base_url, progress=False)
    assert not (tmp_path / "fan").exists()
    assert list((tmp_path / ".downloads").iterdir()) == []


def test_interrupted_transfer_resumes_on_rerun(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(download, "MAX_ATTEMPTS", 1)
    cut = len(DEV_ZIP) // 3
    server.cut_first["dev_data_fan.zip"] = cut
    name = _register(monkeypatch, _dev())
    with pytest.raises(SsadError, match="resume"):
        download_corpus(name, tmp_path, base_url=server.base_url, progress=False)
    part = tmp_path / ".downloads" / "dev_data_fan.zip.part"
    assert part.stat().st_size == cut
    assert not (tmp_path / "fan").exists()
    assert not (tmp_path / ".downloads" / "dev_data_fan.zip.done").exists()

    download_corpus(name, tmp_path, base_url=server.base_url, progress=False)
    assert server.ranges("dev_data_fan.zip") == [None, f"bytes={cut}-"]
    assert _wavs(tmp_path) == set(DEV_MEMBERS)
    assert not part.exists()
    manifest = json.loads((tmp_path / ".downloads" / "manifest.json").read_text())
    assert manifest["dev_data_fan.zip"]["size"] == len(DEV_ZIP)


def test_interrupted_transfer_is_retried_within_one_call(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.cut_first["dev_data_fan.zip"] = 1000
    name = _register(monkeypatch, _dev())
    download_corpus(name, tmp_path, base_url=server.base_url, progress=False)
    assert server.ranges("dev_data_fan.zip") == [None, "bytes=1000-"]
    assert _wavs(tmp_path) == set(DEV_MEMBERS)


def test_server_ignoring_range_restarts_from_scratch(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    downloads = tmp_path / ".downloads"
    downloads.mkdir()
    (downloads / "dev_data_fan.zip.part").write_bytes(DEV_ZIP[:700])
    server.ignore_range = True
    name = _register(monkeypatch, _dev())
    download_corpus(name, tmp_path, base_url=server.base_url, progress=False)
    assert server.ranges("dev_data_fan.zip") == ["bytes=700-"]
    assert _wavs(tmp_path) == set(DEV_MEMBERS)


def test_range_not_satisfiable_means_complete(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    downloads = tmp_path / ".downloads"
    downloads.mkdir()
    (downloads / "dev_data_fan.zip.part").write_bytes(DEV_ZIP)
    name = _register(monkeypatch, _dev())
    download_corpus(name, tmp_path, base_url=server.base_url, progress=False)
    assert server.ranges("dev_data_fan.zip") == [f"bytes={len(DEV_ZIP)}-"]
    assert _wavs(tmp_path) == set(DEV_MEMBERS)


def test_rerun_after_success_does_nothing(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name = _register(monkeypatch, _dev(), _additional())
    first = download_corpus(name, tmp_path, base_url=server.base_url, progress=False)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    count = len(server.requests)
    second = download_corpus(name, tmp_path, base_url=server.base_url, progress=False)
    assert second == first
    assert len(server.requests) == count
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


def test_path_traversal_member_is_refused(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    evil = _zip_bytes({"fan/train/normal_id_00_00000000.wav": _wav_bytes(0), "../evil": b"pwned"})
    server.files["dev_data_fan.zip"] = evil
    root = tmp_path / "root"
    name = _register(monkeypatch, _dev(md5=_md5(evil)))
    with pytest.raises(SsadError, match="refusing"):
        download_corpus(name, root, base_url=server.base_url, progress=False)
    assert not (tmp_path / "evil").exists() and not (root / "evil").exists()
    assert not (root / "fan").exists()
    assert not (root / ".downloads" / "dev_data_fan.zip.done").exists()


@pytest.mark.parametrize(
    "member", ["/abs/evil.wav", "fan/../../evil.wav", "C:/evil.wav", "fan\\..\\..\\evil.wav"]
)
def test_unsafe_member_names_are_detected(member: str) -> None:
    assert download._safe_member_path(member) is None
    assert download._safe_member_path("fan/train/./a.wav") == ("fan", "train", "a.wav")


def test_failed_extraction_leaves_no_layout_and_no_marker(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_copy = download.shutil.copyfileobj
    calls = {"n": 0}

    def failing_copy(src, dst, length=0):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_copy(src, dst, length)

    name = _register(monkeypatch, _dev())
    monkeypatch.setattr(download.shutil, "copyfileobj", failing_copy)
    with pytest.raises(OSError, match="disk full"):
        download_corpus(name, tmp_path, base_url=server.base_url, progress=False)
    assert not (tmp_path / "fan").exists()
    downloads = tmp_path / ".downloads"
    assert not (downloads / "dev_data_fan.zip.done").exists()
    assert not list(downloads.glob("*.unpack-*"))

    monkeypatch.setattr(download.shutil, "copyfileobj", real_copy)
    download_corpus(name, tmp_path, base_url=server.base_url, progress=False)
    assert _wavs(tmp_path) == set(DEV_MEMBERS)


def test_failed_merge_leaves_no_marker_and_rerun_completes(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name = _register(monkeypatch, _dev(), _additional())
    download_corpus(name, tmp_path, parts=["dev"], base_url=server.base_url, progress=False)
    real_replace = download.os.replace
    calls = {"n": 0}

    def failing_replace(src, dst):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("interrupted")
        return real_replace(src, dst)

    monkeypatch.setattr(download.os, "replace", failing_replace)
    with pytest.raises(OSError, match="interrupted"):
        download_corpus(name, tmp_path, parts=["additional"], base_url=server.base_url, progress=False)
    downloads = tmp_path / ".downloads"
    assert not (downloads / "eval_data_train_fan.zip.done").exists()
    assert (downloads / "eval_data_train_fan.zip.unpacking").exists()
    assert set(DEV_MEMBERS) <= _wavs(tmp_path)

    monkeypatch.setattr(download.os, "replace", real_replace)
    download_corpus(name, tmp_path, base_url=server.base_url, progress=False)
    assert _wavs(tmp_path) == set(DEV_MEMBERS) | set(ADDITIONAL_MEMBERS)
    assert not (downloads / "eval_data_train_fan.zip.unpacking").exists()


def test_plain_file_is_placed_at_root(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.files["eval_data_list.csv"] = b"fan\nid_01_00000000.wav,0\n"
    name = _register(
        monkeypatch,
        _dev(),
        Archive("eval_data_list.csv", "https://example.org/a/eval_data_list.csv", None, "eval_ground_truth"),
    )
    out = download_corpus(name, tmp_path, machine_types=["fan"], base_url=server.base_url, progress=False)
    assert out == [tmp_path / "eval_data_list.csv", tmp_path / "fan"]
    assert (tmp_path / "eval_data_list.csv").read_bytes() == server.files["eval_data_list.csv"]


def test_http_404_is_a_clear_error(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    del server.files["dev_data_fan.zip"]
    name = _register(monkeypatch, _dev())
    with pytest.raises(SsadError, match="HTTP 404"):
        download_corpus(name, tmp_path, base_url=server.base_url, progress=False)


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dcase2020"):
        download_corpus("nope", tmp_path)
    with pytest.raises(ValueError, match="'dev'"):
        download_corpus("dcase2020", tmp_path, parts=["devv"])
    with pytest.raises(ValueError, match="ToyConveyor"):
        download_corpus("dcase2020", tmp_path, machine_types=["toaster"])
    with pytest.raises(ValueError, match="part"):
        Archive("a.zip", "https://x/a.zip", None, "training")
    with pytest.raises(ValueError, match="md5"):
        Archive("a.zip", "https://x/a.zip", "ABC", "dev")


def test_rebase_keeps_file_name_and_query() -> None:
    url = "https://zenodo.org/record/3678171/files/dev_data_fan.zip?download=1"
    assert (
        download._rebase(url, "http://127.0.0.1:8000/") == "http://127.0.0.1:8000/dev_data_fan.zip?download=1"
    )
    assert download._rebase("https://h/a/b.csv", "http://m/x") == "http://m/x/b.csv"


def test_registry_is_consistent() -> None:
    dcase2020 = CORPORA["dcase2020"]
    assert dcase2020.machine_types == ("fan", "pump", "slider", "ToyCar", "ToyConveyor", "valve")
    assert dcase2020.parts == ("dev", "additional", "eval")
    assert len(dcase2020.archives) == 18 and all(a.md5 for a in dcase2020.archives)
    records = {"dev": "3678171", "additional": "3727685", "eval": "3841772"}
    for archive in dcase2020.archives:
        assert (
            archive.url
            == f"https://zenodo.org/record/{records[archive.part]}/files/{archive.name}?download=1"
        )
    dcase2023 = CORPORA["dcase2023"]
    assert set(dcase2023.parts) == set(PARTS)
    assert all(a.md5 for a in dcase2023.archives if a.is_zip)
    for corpus in CORPORA.values():
        assert len({a.name for a in corpus.archives}) == len(corpus.archives)
