"""Fetch, verify and unpack the official DCASE Task 2 corpora, so that a run starts from known bytes.

Layout after `download_corpus(name, root)`::

    <root>/<machine_type>/train/*.wav
    <root>/<machine_type>/test/*.wav
    <root>/.downloads/<archive>.part      partial transfer (resumed with an HTTP Range request)
    <root>/.downloads/<archive>.done      completion marker, written last (JSON: checksums, outputs)
    <root>/.downloads/manifest.json       md5 and sha256 of every archive actually received

Checksums: the md5 values in `CORPORA` are the ones listed for each file on its Zenodo record, as
copied into the soundata loaders (github.com/soundata/soundata, `soundata/datasets/dcase2020task2.py`
and `soundata/datasets/dcase23_task2.py`); several also appear, independently, in other projects'
download scripts that checked them against the Zenodo API. Archives with `md5=None` have no published
checksum: for those the download is checked only by the zip CRCs (read while unpacking), and the
sha256 received is recorded in the manifest so a later run can be compared against it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ssad.core.atomic import write_text_atomic
from ssad.core.errors import SsadError

__all__ = ["Archive", "Corpus", "CORPORA", "PARTS", "download_corpus"]

PARTS = ("dev", "additional", "eval", "eval_ground_truth")

DOWNLOADS_DIR = ".downloads"
MANIFEST_NAME = "manifest.json"
CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60.0
# Transfer attempts per archive within one call; each retry resumes where the last one stopped.
MAX_ATTEMPTS = 4
RETRY_DELAY_SECONDS = 2.0
USER_AGENT = "ssad-downloader/0.1 (+https://dcase.community)"


@dataclass(frozen=True)
class Archive:
    """One file to fetch: a zip unpacked into `<root>/<machine_type>/...`, or any other file placed at `<root>/<name>`.

    Attributes:
        name: file name, unique within its corpus (also the name of its `.part` and `.done` files).
        url: where to fetch it.
        md5: the published md5 hex digest, or None when no checksum is published.
        part: which portion of the corpus it belongs to, one of `PARTS`.
        machine_type: the machine type it holds; None for files that cover every type (ground truth).
    """

    name: str
    url: str
    md5: str | None
    part: str
    machine_type: str | None = None

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            msg = f"Archive {self.name!r}: part must be one of {PARTS}, got {self.part!r}"
            raise ValueError(msg)
        if self.md5 is not None and not re.fullmatch(r"[0-9a-f]{32}", self.md5):
            msg = f"Archive {self.name!r}: md5 must be 32 lowercase hex digits or None, got {self.md5!r}"
            raise ValueError(msg)
        if not self.name or "/" in self.name or "\\" in self.name or self.name.startswith("."):
            msg = f"Archive name must be a plain file name, got {self.name!r}"
            raise ValueError(msg)

    @property
    def is_zip(self) -> bool:
        """Whether this archive is unpacked (a zip) or placed as it is."""
        return self.name.lower().endswith(".zip")


@dataclass(frozen=True)
class Corpus:
    """A named set of archives that together make one year's Task 2 data."""

    name: str
    description: str
    archives: tuple[Archive, ...]

    @property
    def parts(self) -> tuple[str, ...]:
        """The parts this corpus offers, in `PARTS` order."""
        present = {a.part for a in self.archives}
        return tuple(p for p in PARTS if p in present)

    @property
    def machine_types(self) -> tuple[str, ...]:
        """The machine types this corpus covers, sorted case-insensitively."""
        return tuple(sorted({a.machine_type for a in self.archives if a.machine_type}, key=str.lower))


def _zenodo(record: str, name: str) -> str:
    """The direct-download URL of file `name` in Zenodo record `record`."""
    return f"https://zenodo.org/record/{record}/files/{name}?download=1"


# DCASE 2020 Task 2. Development: record 3678171; additional training: 3727685; evaluation test: 3841772.
# All 18 md5 values below are published (Zenodo file listings, via soundata's dcase2020task2 loader).
# The evaluation ground truth (eval_data_list.csv) was released later without a URL and checksum we
# could confirm, so it is not listed here rather than guessed.
_DCASE2020_MD5 = {
    "dev_data_fan.zip": "649bdfc06263ae7a838963f43b6641e6",
    "dev_data_pump.zip": "90e7091ef722b7238a7f1009365779cd",
    "dev_data_slider.zip": "da24a757719f0d94d5aa2d646bbfdc86",
    "dev_data_ToyCar.zip": "4dec75ca8d9f666aa9e4c1894a740501",
    "dev_data_ToyConveyor.zip": "03b6aa1bfd09a39d53af0ba39f71fa91",
    "dev_data_valve.zip": "34d2672f55bb041589ef79c10dc89934",
    "eval_data_train_fan.zip": "567798854130c8019df8b664c095ed1e",
    "eval_data_train_pump.zip": "4e33ae9c0db5cc88437675f5e317caee",
    "eval_data_train_slider.zip": "f84f186f4295fc23754abcdd1b0580a7",
    "eval_data_train_ToyCar.zip": "a5d4ccd498af70b04dd74b644b820006",
    "eval_data_train_ToyConveyor.zip": "0e808ac0b761e9fb13d5e0c65caff00d",
    "eval_data_train_valve.zip": "057cdd560caffb8305449541afd28c6d",
    "eval_data_test_fan.zip": "1eb9356a768cadfd0f2e59a5c57e578b",
    "eval_data_test_pump.zip": "23a8f8f924be218c69df67fe07360348",
    "eval_data_test_slider.zip": "0193c769073840332ce3aad84b1ccaa2",
    "eval_data_test_ToyCar.zip": "bea2bdd612f616be8f2b8eb087b32c7c",
    "eval_data_test_ToyConveyor.zip": "ccfcc9847c7d3404d7ee9d6d9e0b2ba2",
    "eval_data_test_valve.zip": "f69c551d2088691050d20cccca9d631c",
}
_DCASE2020_TYPES = ("fan", "pump", "slider", "valve", "ToyCar", "ToyConveyor")


def _dcase2020() -> Corpus:
    """The DCASE 2020 Task 2 registry entry."""
    archives: list[Archive] = []
    for part, record, pattern in (
        ("dev", "3678171", "dev_data_{}.zip"),
        ("additional", "3727685", "eval_data_train_{}.zip"),
        ("eval", "3841772", "eval_data_test_{}.zip"),
    ):
        for machine_type in _DCASE2020_TYPES:
            name = pattern.format(machine_type)
            archives.append(Archive(name, _zenodo(record, name), _DCASE2020_MD5[name], part, machine_type))
    return Corpus(
        "dcase2020",
        "DCASE 2020 Task 2 (MIMII + ToyADMOS): development, additional training and evaluation test data",
        tuple(archives),
    )


# DCASE 2023 Task 2. Development: record 7882613; additional training: 7830345; evaluation test: 7860847.
# All 21 zip md5 values are published (Zenodo file listings, via soundata's dcase23_task2 loader).
# The evaluation ground truth is the organisers' list in the baseline repository, pinned to a commit;
# no checksum is published for it (md5=None: its sha256 goes to the manifest).
_DCASE2023_MD5 = {
    "dev_bearing.zip": "8a813bc8d8f156b5395bfccdfac7673c",
    "dev_fan.zip": "9348591e96fb0ad499a1e33b082562fc",
    "dev_gearbox.zip": "b6e55f6a31faa0fc8569ec0afdd53ccf",
    "dev_slider.zip": "b3f8dee36b4718c36d659a4fd1c4afe0",
    "dev_ToyCar.zip": "4e3bf15f4101ed4ed4f1fecde2e2b2a3",
    "dev_ToyTrain.zip": "6b02a6c65eebb3b8b1ae59a6b25bb897",
    "dev_valve.zip": "b2051a2022eadb53cd97581120811cae",
    "eval_data_bandsaw_train.zip": "9274dfe63de028743823f1123f8b4b47",
    "eval_data_grinder_train.zip": "17569c1f9df23621a0dbabc430684a35",
    "eval_data_shaker_train.zip": "35f821b5645b731fb5a1750e33b95fc3",
    "eval_data_ToyDrone_train.zip": "7fea367d1384a1521ae24f72203238de",
    "eval_data_ToyNscale_train.zip": "9332822f3e47afd984c01f2ecb5ca3af",
    "eval_data_ToyTank_train.zip": "b1fd3ab7de7561290df2d477de1c9d33",
    "eval_data_Vacuum_train.zip": "1c8de33d9a8c7850a1f7aaddb97d87be",
    "eval_data_bandsaw_test.zip": "2a8e8f39f6584ab366a8f4da52d4d7a6",
    "eval_data_grinder_test.zip": "631b3e1608b6077772829a6e68c82c77",
    "eval_data_shaker_test.zip": "ba98c98caa96051ec80e24e44b8fca56",
    "eval_data_ToyDrone_test.zip": "fdae7b8d1f4cadb2bea88bc93e2367db",
    "eval_data_ToyNscale_test.zip": "62f5f5043d8fb3a305b1c2e1025872de",
    "eval_data_ToyTank_test.zip": "f5639bf58c47169c622751f19c6fc321",
    "eval_data_Vacuum_test.zip": "a32524fd8c45b574a560685b38acc4e1",
}
_DCASE2023_DEV_TYPES = ("bearing", "fan", "gearbox", "slider", "ToyCar", "ToyTrain", "valve")
_DCASE2023_EVAL_TYPES = ("bandsaw", "grinder", "shaker", "ToyDrone", "ToyNscale", "ToyTank", "Vacuum")
_DCASE2023_GROUND_TRUTH_URL = (
    "https://raw.githubusercontent.com/nttcslab/dcase2023_task2_baseline_ae/"
    "2605ba1ae306d087d87e8fac8e19c20068e989e2/datasets/eval_data_list_2023.csv"
)


def _dcase2023() -> Corpus:
    """The DCASE 2023 Task 2 registry entry."""
    archives: list[Archive] = []
    for machine_type in _DCASE2023_DEV_TYPES:
        name = f"dev_{machine_type}.zip"
        archives.append(Archive(name, _zenodo("7882613", name), _DCASE2023_MD5[name], "dev", machine_type))
    for part, record, suffix in (("additional", "7830345", "train"), ("eval", "7860847", "test")):
        for machine_type in _DCASE2023_EVAL_TYPES:
            name = f"eval_data_{machine_type}_{suffix}.zip"
            archives.append(Archive(name, _zenodo(record, name), _DCASE2023_MD5[name], part, machine_type))
    archives.append(
        Archive("eval_data_list_2023.csv", _DCASE2023_GROUND_TRUTH_URL, None, "eval_ground_truth")
    )
    return Corpus(
        "dcase2023",
        "DCASE 2023 Task 2 (MIMII DG + ToyADMOS2, first-shot): development, additional training and evaluation data",
        tuple(archives),
    )


CORPORA: dict[str, Corpus] = {corpus.name: corpus for corpus in (_dcase2020(), _dcase2023())}


def download_corpus(
    name: str,
    root: str | Path,
    *,
    parts: Sequence[str] | None = None,
    machine_types: Sequence[str] | None = None,
    base_url: str | None = None,
    progress: bool = True,
    keep_archives: bool = False,
) -> list[Path]:
    """Fetch, verify and unpack corpus `name` into `root`; return the folders and files it provides.

    Archives whose completion marker exists are skipped, so a rerun after success does nothing and a
    rerun after a failure picks up where it stopped (a partial transfer is resumed, not restarted).

    Args:
        name: a key of `CORPORA`.
        root: where `<machine_type>/{train,test}` go.
        parts: which parts to fetch (default: all the corpus offers).
        machine_types: which machine types to fetch (default: all); files that cover every type, such
            as ground-truth lists, are fetched whatever this says.
        base_url: replaces everything of each URL before its file name (a mirror, or a test server).
        progress: show tqdm progress bars.
        keep_archives: keep the downloaded archives in `<root>/.downloads/` after unpacking.
    """
    if name not in CORPORA:
        msg = f"unknown corpus {name!r}; choose one of {sorted(CORPORA)}"
        raise ValueError(msg)
    corpus = CORPORA[name]
    archives = _select(corpus, parts, machine_types)
    root = Path(root)
    downloads = root / DOWNLOADS_DIR
    downloads.mkdir(parents=True, exist_ok=True)
    outputs: list[Path] = []
    for archive in archives:
        url = _rebase(archive.url, base_url) if base_url else archive.url
        outputs += _fetch_one(archive, url, root, downloads, progress=progress, keep_archive=keep_archives)
    return sorted(set(outputs))


def _select(
    corpus: Corpus, parts: Sequence[str] | None, machine_types: Sequence[str] | None
) -> list[Archive]:
    """The corpus' archives restricted to `parts` and `machine_types`, after checking both."""
    if isinstance(parts, str) or isinstance(machine_types, str):
        msg = f"parts and machine_types must be sequences of names, not a single string: {parts!r}, {machine_types!r}"
        raise ValueError(msg)
    if parts is not None:
        bad = [p for p in parts if p not in corpus.parts]
        if bad:
            msg = f"corpus {corpus.name!r} has no part(s) {bad}; choose from {list(corpus.parts)}"
            raise ValueError(msg)
    if machine_types is not None:
        bad = [m for m in machine_types if m not in corpus.machine_types]
        if bad:
            msg = f"corpus {corpus.name!r} has no machine type(s) {bad}; choose from {list(corpus.machine_types)}"
            raise ValueError(msg)
    selected = [
        a
        for a in corpus.archives
        if (parts is None or a.part in parts)
        and (machine_types is None or a.machine_type is None or a.machine_type in machine_types)
    ]
    if not selected:
        msg = f"corpus {corpus.name!r} has no archive for parts={parts!r}, machine_types={machine_types!r}"
        raise ValueError(msg)
    return selected


def _rebase(url: str, base_url: str) -> str:
    """`url` with everything before its last path segment replaced by `base_url` (query kept)."""
    parsed = urllib.parse.urlsplit(url)
    file_name = parsed.path.rsplit("/", 1)[-1]
    rebased = base_url.rstrip("/") + "/" + file_name
    return f"{rebased}?{parsed.query}" if parsed.query else rebased


def _fetch_one(
    archive: Archive, url: str, root: Path, downloads: Path, *, progress: bool, keep_archive: bool
) -> list[Path]:
    """Bring one archive to its completed state (marker present) and return what it provides."""
    marker = downloads / f"{archive.name}.done"
    if marker.is_file():
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            return [root / p for p in json.loads(marker.read_text())["outputs"]]
        # An unreadable marker is not trusted: redo the archive, which rewrites the marker.
        marker.unlink()
    local = downloads / archive.name
    if not local.is_file():
        _transfer(url, local, progress=progress)
    digests = _verify(archive, local)
    if archive.is_zip:
        outputs = _unpack_zip(archive, local, root, downloads, progress=progress)
    else:
        destination = root / archive.name
        tmp = downloads / f"{archive.name}.placing"
        shutil.copyfile(local, tmp)
        os.replace(tmp, destination)
        outputs = [destination]
    relative = [str(p.relative_to(root)) for p in outputs]
    record = {
        "archive": archive.name,
        "url": url,
        "part": archive.part,
        "machine_type": archive.machine_type,
        "md5_published": archive.md5,
        **digests,
        "outputs": relative,
    }
    _update_manifest(downloads, archive.name, record)
    write_text_atomic(marker, json.dumps(record, indent=2) + "\n")
    if not keep_archive:
        local.unlink()
    return outputs


def _transfer(url: str, destination: Path, *, progress: bool) -> None:
    """Download `url` to `destination` via `<destination>.part`, resuming it after interruptions."""
    part = destination.with_name(destination.name + ".part")
    last_error: Exception | None = None
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            time.sleep(RETRY_DELAY_SECONDS * attempt)
        try:
            if _transfer_attempt(url, part, progress=progress, label=destination.name):
                os.replace(part, destination)
                return
        except _Interrupted as error:
            last_error = error
        except urllib.error.HTTPError as error:
            if 400 <= error.code < 500 and error.code not in (408, 429):
                msg = f"cannot download {destination.name} from {url}: HTTP {error.code} {error.reason}"
                raise SsadError(msg) from error
            last_error = error
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            last_error = error
    size = part.stat().st_size if part.exists() else 0
    msg = (
        f"download of {destination.name} from {url} failed after {MAX_ATTEMPTS} attempt(s): {last_error}; "
        f"{size} bytes kept in {part}, run the command again to resume"
    )
    raise SsadError(msg) from last_error


class _Interrupted(Exception):
    """The server stopped sending before the whole file arrived."""


def _transfer_attempt(url: str, part: Path, *, progress: bool, label: str) -> bool:
    """One HTTP request continuing `part`; True when `part` now holds the whole file."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS)  # noqa: S310 (URL from registry)
    except urllib.error.HTTPError as error:
        if error.code != 416 or not offset:
            raise
        # 416: nothing left after `offset`. Complete only if the server's size agrees with ours.
        total = _total_from_content_range(error.headers.get("Content-Range", ""))
        error.close()
        if total is not None and total != offset:
            part.unlink()
            raise _Interrupted(
                f"partial file is larger than the remote file ({offset} > {total} bytes)"
            ) from None
        return True
    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        remaining = int(length) if length is not None and length.isdigit() else None
        if status == 206:
            start = _start_from_content_range(response.headers.get("Content-Range", ""))
            if start != offset:
                part.unlink(missing_ok=True)
                raise _Interrupted(f"server resumed at byte {start}, expected {offset}; starting over")
            mode = "ab"
        elif status == 200:
            # The server ignored the Range header (or there was none): the body is the whole file.
            offset = 0
            mode = "wb"
        else:
            raise _Interrupted(f"unexpected HTTP status {status}")
        total = offset + remaining if remaining is not None else None
        received = 0
        with (
            open(part, mode) as out,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (http.client.IncompleteRead, ConnectionError, TimeoutError) as error:
                    raise _Interrupted(
                        f"connection lost after {offset + received} bytes: {error!r}"
                    ) from error
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if remaining is not None and received != remaining:
        raise _Interrupted(f"connection closed after {offset + received} of {total} bytes")
    return True


def _start_from_content_range(header: str) -> int | None:
    """First byte of a `Content-Range: bytes a-b/n` header, or None."""
    match = re.match(r"\s*bytes\s+(\d+)-\d+/(?:\d+|\*)", header)
    return int(match.group(1)) if match else None


def _total_from_content_range(header: str) -> int | None:
    """Total size of a `Content-Range: bytes .../n` header, or None."""
    match = re.match(r"\s*bytes\s+[^/]*/(\d+)", header)
    return int(match.group(1)) if match else None


def _digests(path: Path) -> dict[str, str | int]:
    """md5, sha256 and size of a file, in one pass."""
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            md5.update(chunk)
            sha256.update(chunk)
            size += len(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest(), "size": size}


def _verify(archive: Archive, local: Path) -> dict[str, str | int]:
    """Check a downloaded archive against its published md5 and, for zips, its structure; delete it if bad."""
    digests = _digests(local)
    if archive.md5 is not None and digests["md5"] != archive.md5:
        local.unlink()
        msg = (
            f"checksum mismatch for {archive.name}: expected md5 {archive.md5}, got {digests['md5']}; "
            "the corrupt file was deleted, run the command again to download it anew"
        )
        raise SsadError(msg)
    if archive.is_zip and not zipfile.is_zipfile(local):
        local.unlink()
        msg = (
            f"{archive.name} is not a valid zip archive (md5 {digests['md5']}, sha256 {digests['sha256']}); "
            "the file was deleted, run the command again to download it anew"
        )
        raise SsadError(msg)
    return digests


def _safe_member_path(name: str) -> tuple[str, ...] | None:
    """The path parts of a zip member name, or None when the name could escape the target folder."""
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or re.match(r"^[A-Za-z]:", normalized):
        return None
    parts = tuple(p for p in normalized.split("/") if p not in ("", "."))
    if any(p == ".." for p in parts):
        return None
    return parts


def _unpack_zip(archive: Archive, local: Path, root: Path, downloads: Path, *, progress: bool) -> list[Path]:
    """Extract a verified zip into a scratch folder, then merge it into `root`; return the top-level outputs."""
    for stale in downloads.glob(f"{archive.name}.unpack-*"):
        shutil.rmtree(stale, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{archive.name}.unpack-", dir=downloads))
    try:
        _extract_all(archive, local, scratch, progress=progress)
        base = _layout_base(scratch)
        journal = downloads / f"{archive.name}.unpacking"
        journal.write_text("merging into the layout; without a .done marker this archive is incomplete\n")
        outputs = []
        for entry in sorted(base.iterdir()):
            outputs.append(_merge(entry, root / entry.name))
        journal.unlink()
        return outputs
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _extract_all(archive: Archive, local: Path, scratch: Path, *, progress: bool) -> None:
    """Extract every member into `scratch`, refusing unsafe names; a CRC error deletes the archive."""
    try:
        with zipfile.ZipFile(local) as zf:
            members = zf.infolist()
            unsafe = [m.filename for m in members if _safe_member_path(m.filename) is None]
            if unsafe:
                local.unlink()
                msg = (
                    f"refusing to unpack {archive.name}: member name(s) {unsafe[:5]} would escape the target "
                    "folder; the archive was deleted"
                )
                raise SsadError(msg)
            for member in tqdm(members, desc=f"unpack {archive.name}", disable=not progress, leave=False):
                parts = _safe_member_path(member.filename)
                if not parts or parts[0] == "__MACOSX":
                    continue
                target = scratch.joinpath(*parts)
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK_BYTES)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as error:
        local.unlink(missing_ok=True)
        msg = f"{archive.name} is damaged ({error}); the archive was deleted, run the command again to download it anew"
        raise SsadError(msg) from error


def _layout_base(scratch: Path) -> Path:
    """The folder inside an extracted archive whose children are machine-type folders.

    Descends through single wrapper folders (e.g. `dev_data/`) until a child holds `train/` or `test/`.
    """
    level = scratch
    while True:
        entries = list(level.iterdir())
        dirs = [e for e in entries if e.is_dir()]
        if any((d / "train").is_dir() or (d / "test").is_dir() for d in dirs):
            return level
        if len(entries) == 1 and dirs:
            level = dirs[0]
            continue
        return level


def _merge(source: Path, destination: Path) -> Path:
    """Move `source` to `destination`, merging into an existing folder file by file; return `destination`."""
    if not destination.exists():
        os.replace(source, destination)
        return destination
    if source.is_dir() != destination.is_dir():
        kind = "folder" if source.is_dir() else "file"
        msg = f"cannot unpack: the archive has a {kind} {source.name!r} where {destination} is not a {kind}"
        raise SsadError(msg)
    if source.is_dir():
        for child in sorted(source.iterdir()):
            _merge(child, destination / child.name)
    else:
        os.replace(source, destination)
    return destination


def _update_manifest(downloads: Path, archive_name: str, record: dict) -> None:
    """Record what was received for `archive_name` in `<root>/.downloads/manifest.json`."""
    path = downloads / MANIFEST_NAME
    manifest: dict = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(path.read_text())
        if isinstance(loaded, dict):
            manifest = loaded
    manifest[archive_name] = record
    write_text_atomic(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
