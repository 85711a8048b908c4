"""Fetch, verify and unpack the official DCASE Task 2 corpora, so that a run starts from known bytes.

Layout after `download_corpus(name, root)`::

    <root>/<machine_type>/train/*.wav
    <root>/<machine_type>/test/*.wav
    <root>/.downloads/<archive>.part      partial transfer (resumed with an HTTP Range request)
    <root>/.downloads/<archive>.done      completion marker, written last (JSON: checksums, outputs)
    <root>/.downloads/manifest.json       md5 and sha256 of every archive actually received

The corpora, their archives and checksums are in `ssad.audio.corpora`.
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
from pathlib import Path

from tqdm import tqdm

from ssad.audio.corpora import CORPORA, PARTS, Archive, Corpus
from ssad.core.atomic import write_text_atomic
from ssad.core.errors import SsadError

__all__ = ["Archive", "Corpus", "CORPORA", "PARTS", "download_corpus"]

DOWNLOADS_DIR = ".downloads"
MANIFEST_NAME = "manifest.json"
CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60.0
# Transfer attempts per archive within one call; each retry resumes where the last one stopped.
MAX_ATTEMPTS = 4
RETRY_DELAY_SECONDS = 2.0
USER_AGENT = "ssad-downloader/0.1 (+https://dcase.community)"


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
