"""Index a DCASE-style corpus folder into a clip table, so every later step works from one list of clips."""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from ssad.audio.clips import LABELS, SPLITS, Clip, clip_key
from ssad.core.errors import BadInputError

__all__ = ["DOMAINS", "ONE_MACHINE_ID", "machine_from_name", "parse_clip_name", "parse_attributes", "scan_root", "index_root", "select", "summarize"]

logger = logging.getLogger("ssad")

#: ``unknown`` is for evaluation clips whose name and folder do not say the domain.
DOMAINS = ("source", "target", "unknown")

# Folder name -> (split, domain it implies); DCASE 2021 development data splits test by domain.
_SPLIT_FOLDERS: dict[str, tuple[str, str | None]] = {
    "train": ("train", None),
    "test": ("test", None),
    "source_test": ("test", "source"),
    "target_test": ("test", "target"),
}

# DCASE 2020: normal_id_00_00000000 (development), id_01_00000000 (evaluation test, no label).
_NAME_2020 = re.compile(r"(?:(?P<label>normal|anomaly)_)?id_(?P<id>\d+)_(?P<index>\d+)")
# DCASE 2021-2024: section_00_source_train_normal_0000_<attributes>; evaluation test drops domain/label.
_NAME_2021 = re.compile(
    r"section_(?P<id>\d+)"
    r"(?:_(?P<domain>source|target))?"
    r"(?:_(?P<split>train|test))?"
    r"(?:_(?P<label>normal|anomaly))?"
    r"_(?P<index>\d+)"
    r"(?:_(?P<attrs>.+))?"
)
_CSV_PAIR = re.compile(r"d(\d+)([pv])")


def parse_attributes(raw: str) -> dict[str, str]:
    """Attributes from the tail of a 2021+ name: ``raw`` always, plus ``key_value`` pairs when they alternate cleanly."""
    attributes = {"raw": raw}
    tokens = raw.split("_")
    if len(tokens) % 2 or not all(tokens):
        return attributes
    keys, values = tokens[0::2], tokens[1::2]
    if len(set(keys)) != len(keys) or "raw" in keys or not all(re.search(r"[A-Za-z]", k) for k in keys):
        return attributes
    attributes.update(zip(keys, values, strict=True))
    return attributes


def _parse(path: Path) -> Clip | str | None:
    """The clip a path names, a string saying why name and folder disagree, or None for an unknown name."""
    stem = path.stem
    folder = path.parent.name
    machine_type = path.parent.parent.name
    if path.suffix.lower() != ".wav" or not machine_type:
        return None
    attributes: dict[str, str] = {}
    if match := _NAME_2020.fullmatch(stem):
        machine_id = f"id_{match['id']}"
        name_split, name_domain, default_domain = None, None, "source"
    elif match := _NAME_2021.fullmatch(stem):
        machine_id = f"section_{match['id']}"
        name_split, name_domain, default_domain = match["split"], match["domain"], "unknown"
        if match["attrs"]:
            attributes = parse_attributes(match["attrs"])
    else:
        return None
    name_label = match["label"]

    folder_split, folder_domain = _SPLIT_FOLDERS.get(folder, (None, None))
    if name_split and folder_split and name_split != folder_split:
        return f"name says {name_split} but the file is in the {folder!r} folder"
    if name_domain and folder_domain and name_domain != folder_domain:
        return f"name says {name_domain} domain but the file is in the {folder!r} folder"
    split = name_split or folder_split
    if split is None:
        return (f"cannot tell train from test: the name does not say and folder {folder!r} is not one of "
                f"{sorted(_SPLIT_FOLDERS)} (move it into <type>/train/ or <type>/test/)")
    if split == "train" and name_label == "anomaly":
        return "anomalous clip in the training data (training data must be normal only)"
    # Training data of these challenges is normal by definition, even when the name omits the label.
    label = name_label or ("normal" if split == "train" else "unknown")
    domain = name_domain or folder_domain or default_domain
    return Clip(
        path=path,
        machine_type=machine_type,
        machine_id=machine_id,
        split=split,
        label=label,
        domain=domain,
        attributes=tuple(sorted(attributes.items())),
    )


def parse_clip_name(path: str | Path) -> Clip | None:
    """The clip that ``<machine_type>/<split>/<file>.wav`` names, or None if the name fits no known DCASE layout.

    Raises BadInputError when the name contradicts its folder (e.g. a ``_test_`` clip under ``train/``).
    """
    result = _parse(Path(path))
    if isinstance(result, str):
        raise BadInputError([(path, result)])
    return result


def machine_from_name(path: str | Path) -> tuple[str | None, str] | None:
    """What a file's name and folders say of its machine, for scoring (which never needs train or test).

    Returns (machine type, ID): the type is the folder above a split folder (``fan/test/x.wav``), or None where
    the folders do not say (``new/anomaly_id_00_00000000.wav``). None when the name fits no DCASE layout.
    """
    path = Path(path)
    if match := _NAME_2020.fullmatch(path.stem):
        machine_id = f"id_{match['id']}"
    elif match := _NAME_2021.fullmatch(path.stem):
        machine_id = f"section_{match['id']}"
    else:
        return None
    in_split_folder = path.parent.name in _SPLIT_FOLDERS and bool(path.parent.parent.name)
    return (path.parent.parent.name if in_split_folder else None), machine_id


def _find_wavs(root: Path) -> list[Path]:
    """Every .wav under root (any case), skipping hidden files and folders such as macOS ``._x.wav`` and ``__MACOSX``."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__MACOSX"]
        found += [Path(folder, f) for f in files if f.lower().endswith(".wav") and not f.startswith(".")]
    return found


def _read_attribute_tables(
    type_folder: Path,
) -> tuple[dict[str, dict[str, str]], list[tuple[str, str]]]:
    """Rows of ``attributes_*.csv`` in a machine-type folder keyed by ``<split folder>/<file name>`` and by file name."""
    table: dict[str, dict[str, str]] = {}
    problems: list[tuple[str, str]] = []
    for csv_path in sorted(type_folder.glob("attributes_*.csv")):
        try:
            with open(csv_path, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
                columns = [c.strip() for c in reader.fieldnames or []]
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            problems.append((str(csv_path), f"unreadable attribute table ({err})"))
            continue
        if "file_name" not in columns:
            problems.append(
                (
                    str(csv_path),
                    f"attribute table has no file_name column (columns: {', '.join(columns) or 'none'})",
                )
            )
            continue
        for row in rows:
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            name = row.pop("file_name").replace("\\", "/")
            attributes = {}
            for n in sorted({int(m[1]) for c in row if (m := _CSV_PAIR.fullmatch(c))}):
                key = row.get(f"d{n}p", "")
                if key and key != "noAttribute":
                    attributes[key] = row.get(f"d{n}v", "")
            attributes.update({k: v for k, v in row.items() if v and k and not _CSV_PAIR.fullmatch(k)})
            parts = name.split("/")
            table["/".join(parts[-2:])] = attributes
            table[parts[-1]] = attributes
    return table, problems


def _merge_attributes(clips: list[Clip]) -> tuple[list[Clip], list[tuple[str, str]]]:
    """Clips with the attribute-table rows of their machine-type folder merged in (the table wins on conflicts)."""
    tables: dict[Path, dict[str, dict[str, str]]] = {}
    problems: list[tuple[str, str]] = []
    merged = []
    for clip in clips:
        type_folder = clip.path.parent.parent
        if type_folder not in tables:
            tables[type_folder], found = _read_attribute_tables(type_folder)
            problems += found
        table = tables[type_folder]
        row = table.get(f"{clip.path.parent.name}/{clip.path.name}", table.get(clip.path.name))
        if row:
            attributes = dict(clip.attributes) | row
            clip = dataclasses.replace(clip, attributes=tuple(sorted(attributes.items())))
        merged.append(clip)
    return merged, problems


def _absolute(root: str | Path) -> Path:
    """root made absolute without resolving symlinks, so ``.`` and ``..`` cannot hide the machine-type folder name."""
    return Path(os.path.abspath(Path(root).expanduser()))


#: The ID of the one machine a folder of plain-named recordings holds.
ONE_MACHINE_ID = "id_00"
#: The subfolder of such a folder that holds its labelled test recordings.
ONE_MACHINE_TEST = "test"
_TEST_LABEL = re.compile(r"(?P<label>normal|anomaly)_.*")


def _is_dcase_name(stem: str) -> bool:
    return bool(_NAME_2020.fullmatch(stem) or _NAME_2021.fullmatch(stem))


def _one_machine_test_clip(path: Path, machine_type: str) -> Clip | str:
    """A one-machine folder's ``test/normal_*`` or ``test/anomaly_*`` recording, or why this file is not one."""
    match = _TEST_LABEL.fullmatch(path.stem)
    if not match:
        return (f"read as a test recording of the one machine {machine_type!r} (it is in {ONE_MACHINE_TEST}/), but "
                "its name says neither normal nor anomaly: name it normal_*.wav or anomaly_*.wav")
    dcase = _NAME_2020.fullmatch(path.stem)
    if dcase and f"id_{dcase['id']}" != ONE_MACHINE_ID:
        return (f"read as a test recording of the one machine {machine_type!r}, but its name says id_{dcase['id']}: "
                f"a folder of one machine's recordings holds {ONE_MACHINE_ID} only; rename it "
                f"{match['label']}_{ONE_MACHINE_ID}_*.wav, or lay several machines out as <type>/train/ and "
                "<type>/test/ folders")
    return Clip(path=path, machine_type=machine_type, machine_id=ONE_MACHINE_ID, split="test", label=match["label"])


def _one_machine_folder(root: Path, wavs: list[Path]) -> tuple[list[Clip], list[tuple[str, str]]] | None:
    """A folder of one machine's recordings with its clips and problems, or None when no plain-named .wav is in it.

    Plain-named recordings directly in the folder (no name of a DCASE layout) are one machine's normal training
    clips: type = the folder's name, ID ``id_00``. ``test/normal_*.wav`` and ``test/anomaly_*.wav`` are its
    labelled test clips. Any other .wav makes the layout ambiguous; it is reported with what it was read as and
    how to fix it.
    """
    plain = sorted(p for p in wavs if p.parent == root and not _is_dcase_name(p.stem))
    if not plain:
        return None
    machine_type = root.name
    because = (f"{root.name}/ is read as the recordings of one machine because plain-named recordings such as "
               f"{plain[0].name} lie directly in it")
    clips = [Clip(path=p, machine_type=machine_type, machine_id=ONE_MACHINE_ID, split="train", label="normal")
             for p in plain]
    problems: list[tuple[str, str]] = []
    for path in sorted(set(wavs) - set(plain)):
        if path.parent == root:
            why = (f"read as a DCASE-named clip, but {because}: give it a plain name if it is a normal training "
                   f"recording, or move it into {ONE_MACHINE_TEST}/ if it is a test recording")
        elif path.parent == root / ONE_MACHINE_TEST:
            result = _one_machine_test_clip(path, machine_type)
            if isinstance(result, Clip):
                clips.append(result)
                continue
            why = result
        else:
            why = (f"read as part of the folder {root.name}/, but {because}, and such a folder takes test "
                   f"recordings from {ONE_MACHINE_TEST}/ only: move this file into {ONE_MACHINE_TEST}/ (named "
                   "normal_*.wav or anomaly_*.wav), or, for a DCASE layout, move the plain-named recordings into "
                   "<type>/train/ named normal_id_00_*.wav")
        problems.append((str(path), why))
    return clips, problems


def scan_root(
    root: str | Path, *, machine_types: Sequence[str] | None = None
) -> tuple[list[Clip], list[tuple[str, str]]]:
    """Clips under root plus (path, why) for each file that cannot be used, so callers can gather every problem.

    Raises BadInputError at once for problems with the root itself: missing, a file, no audio, or a
    requested machine type absent.
    """
    root = _absolute(root)
    header = f"cannot index {root}"
    if not root.exists():
        raise BadInputError([(root, "no such folder")], header=header)
    if not root.is_dir():
        raise BadInputError([(root, "is a file, not a folder")], header=header)
    wavs = _find_wavs(root)
    if not wavs:
        raise BadInputError([(root, "no .wav files found in this folder or below it")], header=header)

    one_machine = _one_machine_folder(root, wavs)
    found_types = [root.name] if one_machine is not None else sorted({p.parent.parent.name for p in wavs})
    if machine_types is not None:
        wanted = [machine_types] if isinstance(machine_types, str) else list(machine_types)
        missing = [t for t in wanted if t not in found_types]
        if missing:
            raise BadInputError(
                [(root, f"no machine type {t!r} (found: {', '.join(found_types)})") for t in missing],
                header=header,
            )
        wavs = [p for p in wavs if p.parent.parent.name in wanted]
    if one_machine is not None:
        return one_machine

    clips: list[Clip] = []
    problems: list[tuple[str, str]] = []
    for path in sorted(wavs):
        result = _parse(path)
        if isinstance(result, Clip):
            clips.append(result)
        else:
            why = result or (
                "name fits no known layout (expected e.g. normal_id_00_00000000.wav, "
                "id_00_00000000.wav or section_00_source_train_normal_0000_<attributes>.wav)"
            )
            problems.append((str(path), why))
    clips, table_problems = _merge_attributes(clips)
    return clips, problems + table_problems


def index_root(
    root: str | Path, *, machine_types: Sequence[str] | None = None, skip_bad: bool = False
) -> list[Clip]:
    """Every clip under a corpus root, sorted by path; badly named files raise, or are skipped with a warning.

    The root may hold ``<type>/{train,test}/`` folders, hold such roots (``dev_data/``, ``eval_data/``),
    or be a single ``<type>`` folder. Attribute tables (``<type>/attributes_*.csv``) are merged in. A folder
    of recordings named in no DCASE layout, directly in it, is one machine's normal training clips (type = the
    folder's name, ID ``id_00``), with its labelled test clips in ``test/normal_*.wav`` and ``test/anomaly_*.wav``.
    """
    clips, problems = scan_root(root, machine_types=machine_types)
    root = _absolute(root)
    header = f"cannot index {root}"
    if problems and not skip_bad:
        raise BadInputError(problems, header=f"{header} (skip_bad=True leaves these files out)")
    if problems:
        logger.warning(
            "skipped %d unusable file(s) under %s:\n%s",
            len(problems),
            root,
            "\n".join(f"  {p}: {why}" for p, why in problems),
        )
    if not clips:
        raise BadInputError([(root, "no usable clips: every .wav file was skipped")], header=header)
    return sorted(clips, key=lambda c: c.path)


def _check_choice(name: str, value: str | None, allowed: Sequence[str]) -> None:
    """Raise ValueError if value is given and not one of allowed."""
    if value is not None and value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(allowed)}")


def select(
    clips: Iterable[Clip],
    *,
    split: str | None = None,
    label: str | None = None,
    machine_types: Sequence[str] | None = None,
    domain: str | None = None,
) -> list[Clip]:
    """The clips matching every given filter (None means any), in their original order."""
    _check_choice("split", split, SPLITS)
    _check_choice("label", label, LABELS)
    _check_choice("domain", domain, DOMAINS)
    types = {machine_types} if isinstance(machine_types, str) else set(machine_types or ())
    return [
        c
        for c in clips
        if (split is None or c.split == split)
        and (label is None or c.label == label)
        and (domain is None or c.domain == domain)
        and (machine_types is None or c.machine_type in types)
    ]


def summarize(clips: Iterable[Clip]) -> dict[str, Counter]:
    """Clip counts by machine type, machine (``type/id``), split, label, domain, and by all of them together (``rows``)."""
    summary: dict[str, Counter] = {
        k: Counter() for k in ("machine_type", "machine", "split", "label", "domain", "rows")
    }
    for c in clips:
        summary["machine_type"][c.machine_type] += 1
        summary["machine"][clip_key(c)] += 1
        summary["split"][c.split] += 1
        summary["label"][c.label] += 1
        summary["domain"][c.domain] += 1
        summary["rows"][(c.machine_type, c.machine_id, c.split, c.domain, c.label)] += 1
    return summary
