"""Tests of ssad.audio.layout: both DCASE naming schemes, corpus roots of every shape, and every bad-input case."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssad.audio.clips import Clip
from ssad.audio.layout import index_root, parse_attributes, parse_clip_name, select, summarize
from ssad.core.errors import BadInputError


def write_wav(path: Path, seconds: float = 0.1, sample_rate: int = 16000) -> Path:
    """A short noise clip at path (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * sample_rate))).astype(np.float32), sample_rate)
    return path


@pytest.fixture
def dev2020(tmp_path: Path) -> Path:
    """A tiny DCASE 2020 development root with fan and pump."""
    root = tmp_path / "dev_data"
    for machine_type in ("fan", "pump"):
        write_wav(root / machine_type / "train" / "normal_id_00_00000000.wav")
        write_wav(root / machine_type / "train" / "normal_id_02_00000000.wav")
        write_wav(root / machine_type / "test" / "normal_id_00_00000000.wav")
        write_wav(root / machine_type / "test" / "anomaly_id_02_00000017.wav")
    return root


# --- parse_clip_name -------------------------------------------------------------------------------


def test_parse_2020_development() -> None:
    clip = parse_clip_name(Path("/d/fan/train/normal_id_00_00000000.wav"))
    assert clip == Clip(
        Path("/d/fan/train/normal_id_00_00000000.wav"), "fan", "id_00", "train", "normal", "source"
    )
    clip = parse_clip_name(Path("/d/ToyCar/test/anomaly_id_02_00000017.wav"))
    assert (clip.machine_type, clip.machine_id, clip.split, clip.label) == (
        "ToyCar",
        "id_02",
        "test",
        "anomaly",
    )
    assert clip.key == ("ToyCar", "id_02")


def test_parse_2020_evaluation_unlabelled() -> None:
    clip = parse_clip_name(Path("eval_data/valve/test/id_01_00000000.wav"))
    assert (clip.machine_id, clip.split, clip.label, clip.domain) == ("id_01", "test", "unknown", "source")


def test_parse_2021_plus_with_attributes() -> None:
    clip = parse_clip_name(Path("fan/train/section_00_source_train_normal_0000_m-n_W_vel_6_loc_A.wav"))
    assert (clip.machine_id, clip.split, clip.label, clip.domain) == (
        "section_00",
        "train",
        "normal",
        "source",
    )
    assert dict(clip.attributes) == {"raw": "m-n_W_vel_6_loc_A", "m-n": "W", "vel": "6", "loc": "A"}
    assert list(clip.attributes) == sorted(clip.attributes)

    clip = parse_clip_name(Path("ToyCar/test/section_01_target_test_anomaly_0012_pro_A1_speed_28V.wav"))
    assert (clip.machine_id, clip.split, clip.label, clip.domain) == (
        "section_01",
        "test",
        "anomaly",
        "target",
    )
    assert dict(clip.attributes) == {"raw": "pro_A1_speed_28V", "pro": "A1", "speed": "28V"}


@pytest.mark.parametrize("raw", ["noAttribute", "strength_1_ambient", "a__b", "1_2_3_4"])
def test_attributes_that_do_not_alternate_keep_only_raw(raw: str) -> None:
    assert parse_attributes(raw) == {"raw": raw}


def test_parse_2021_style_and_domain_folders() -> None:
    clip = parse_clip_name(Path("fan/train/section_00_source_train_normal_0000_strength_1_ambient.wav"))
    assert dict(clip.attributes) == {"raw": "strength_1_ambient"}
    clip = parse_clip_name(Path("fan/target_test/section_02_target_test_normal_0003.wav"))
    assert (clip.split, clip.domain, clip.attributes) == ("test", "target", ())


@pytest.mark.parametrize("name", ["section_00_test_0000.wav", "section_03_0000.wav"])
def test_parse_2022_plus_unlabelled_evaluation(name: str) -> None:
    clip = parse_clip_name(Path("bearing/test") / name)
    assert clip.machine_id == name[:10]
    assert (clip.split, clip.label, clip.domain) == ("test", "unknown", "unknown")


@pytest.mark.parametrize(
    "path",
    [
        "fan/train/foo.wav",
        "fan/test/normal_00.wav",
        "fan/test/section_00_source_test.wav",
        "fan/test/id_00.wav",
    ],
)
def test_parse_unknown_name_is_none(path: str) -> None:
    assert parse_clip_name(Path(path)) is None


def test_parse_name_contradicting_folder_raises() -> None:
    with pytest.raises(BadInputError, match="section_00_source_test_normal_0000.wav: name says test"):
        parse_clip_name(Path("fan/train/section_00_source_test_normal_0000.wav"))
    with pytest.raises(BadInputError, match="anomalous clip in the training data"):
        parse_clip_name(Path("fan/train/anomaly_id_00_00000000.wav"))
    with pytest.raises(BadInputError, match="cannot tell train from test"):
        parse_clip_name(Path("fan/other/normal_id_00_00000000.wav"))


# --- index_root --------------------------------------------------------------------------------------


def test_index_corpus_root(dev2020: Path) -> None:
    clips = index_root(dev2020)
    assert len(clips) == 8
    assert [c.path for c in clips] == sorted(c.path for c in clips)
    assert {c.machine_type for c in clips} == {"fan", "pump"}
    assert [c.label for c in clips if c.machine_type == "fan"] == ["anomaly", "normal", "normal", "normal"]


def test_index_root_above_dev_and_eval(dev2020: Path) -> None:
    write_wav(dev2020.parent / "eval_data" / "fan" / "train" / "normal_id_01_00000000.wav")
    write_wav(dev2020.parent / "eval_data" / "fan" / "test" / "id_01_00000000.wav")
    clips = index_root(dev2020.parent)
    assert len(clips) == 10
    assert sorted({c.machine_id for c in clips if c.machine_type == "fan"}) == ["id_00", "id_01", "id_02"]
    assert [c.label for c in clips if c.machine_id == "id_01"] == ["unknown", "normal"]


def test_index_single_type_folder_and_filter(dev2020: Path) -> None:
    assert {c.machine_type for c in index_root(dev2020 / "pump")} == {"pump"}
    assert {c.machine_type for c in index_root(dev2020, machine_types=["fan"])} == {"fan"}


@pytest.mark.parametrize(("cwd", "root"), [("fan", "."), ("fan/train", ".."), ("fan/test", "../../pump")])
def test_index_relative_root(dev2020: Path, monkeypatch: pytest.MonkeyPatch, cwd: str, root: str) -> None:
    monkeypatch.chdir(dev2020 / cwd)
    clips = index_root(root)
    assert len(clips) == 4 and all(c.path.is_absolute() for c in clips)
    assert {c.machine_type for c in clips} == {Path(root).resolve().name}


def test_index_finds_upper_case_extension_and_skips_hidden(dev2020: Path) -> None:
    write_wav(dev2020 / "fan" / "test" / "normal_id_04_00000001.WAV")
    (dev2020 / "fan" / "test" / "._normal_id_04_00000001.WAV").write_bytes(b"\0\5\26\7 AppleDouble")
    (dev2020 / "__MACOSX").mkdir()
    (dev2020 / "__MACOSX" / "junk.wav").write_bytes(b"junk")
    clips = index_root(dev2020)
    assert len(clips) == 9
    assert any(c.path.name == "normal_id_04_00000001.WAV" for c in clips)


def test_index_merges_attribute_csv(tmp_path: Path) -> None:
    bearing = tmp_path / "bearing"
    write_wav(bearing / "train" / "section_00_source_train_normal_0000_vel_6_loc_A.wav")
    write_wav(bearing / "test" / "section_00_0000.wav")
    write_wav(bearing / "test" / "section_01_0000.wav")
    (bearing / "attributes_00.csv").write_text(
        "file_name,d1p,d1v,d2p,d2v\n"
        "bearing/train/section_00_source_train_normal_0000_vel_6_loc_A.wav,vel,6,loc,A\n"
        "bearing/test/section_00_0000.wav,vel,8,loc,B\n"
    )
    (bearing / "attributes_01.csv").write_text(
        "file_name,d1p,d1v,note\nbearing/test/section_01_0000.wav,noAttribute,,x\n"
    )
    by_name = {c.path.name: dict(c.attributes) for c in index_root(tmp_path)}
    assert by_name["section_00_source_train_normal_0000_vel_6_loc_A.wav"] == {
        "raw": "vel_6_loc_A",
        "vel": "6",
        "loc": "A",
    }
    assert by_name["section_00_0000.wav"] == {"vel": "8", "loc": "B"}
    assert by_name["section_01_0000.wav"] == {"note": "x"}


def test_attribute_csv_without_file_name_column(tmp_path: Path) -> None:
    write_wav(tmp_path / "bearing" / "test" / "section_00_0000.wav")
    (tmp_path / "bearing" / "attributes_00.csv").write_text("name,d1p,d1v\nx.wav,a,b\n")
    with pytest.raises(BadInputError, match="attributes_00.csv: attribute table has no file_name column"):
        index_root(tmp_path)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="nowhere: no such folder") as info:
        index_root(tmp_path / "nowhere")
    assert info.value.problems == [(str(tmp_path / "nowhere"), "no such folder")]


def test_root_is_a_file(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "fan" / "train" / "normal_id_00_00000000.wav")
    with pytest.raises(BadInputError, match="normal_id_00_00000000.wav: is a file"):
        index_root(path)


def test_folder_without_audio(tmp_path: Path) -> None:
    (tmp_path / "fan" / "train").mkdir(parents=True)
    (tmp_path / "fan" / "train" / "notes.txt").write_text("no audio here")
    with pytest.raises(BadInputError, match="no .wav files found"):
        index_root(tmp_path / "fan")


def test_badly_named_files_are_all_listed(dev2020: Path) -> None:
    bad = [
        write_wav(dev2020 / "fan" / "train" / "recording1.wav"),
        write_wav(dev2020 / "pump" / "test" / "normal_id_x_1.wav"),
        write_wav(dev2020 / "pump" / "train" / "section_00_source_test_normal_0000.wav"),
    ]
    with pytest.raises(BadInputError) as info:
        index_root(dev2020)
    assert [p for p, _ in info.value.problems] == sorted(str(p) for p in bad)
    for path in bad:
        assert path.name in str(info.value)
    assert str(dev2020) in str(info.value).splitlines()[0]


def test_skip_bad_warns_and_keeps_the_rest(dev2020: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_wav(dev2020 / "fan" / "train" / "recording1.wav")
    write_wav(dev2020 / "pump" / "test" / "whatever.wav")
    with caplog.at_level(logging.WARNING, logger="ssad"):
        clips = index_root(dev2020, skip_bad=True)
    assert len(clips) == 8
    assert "recording1.wav" in caplog.text and "whatever.wav" in caplog.text


def test_skip_bad_with_nothing_left_raises(tmp_path: Path) -> None:
    write_wav(tmp_path / "fan" / "train" / "recording1.wav")
    with pytest.raises(BadInputError, match="no usable clips"):
        index_root(tmp_path, skip_bad=True)


def test_bad_names_of_unrequested_types_do_not_matter(dev2020: Path) -> None:
    write_wav(dev2020 / "pump" / "train" / "recording1.wav")
    assert len(index_root(dev2020, machine_types=["fan"])) == 4


def test_absent_machine_type_names_those_found(dev2020: Path) -> None:
    with pytest.raises(BadInputError, match=r"no machine type 'valve' \(found: fan, pump\)"):
        index_root(dev2020, machine_types=["fan", "valve"])


# --- select / summarize -----------------------------------------------------------------------------


def test_select_and_summarize(dev2020: Path) -> None:
    clips = index_root(dev2020)
    assert len(select(clips, split="train")) == 4
    assert len(select(clips, split="test", label="anomaly", machine_types=["pump"])) == 1
    assert len(select(clips, machine_types="fan", domain="source")) == 4
    summary = summarize(clips)
    assert summary["machine_type"] == {"fan": 4, "pump": 4}
    assert summary["label"] == {"normal": 6, "anomaly": 2}
    assert summary["rows"][("fan", "id_02", "test", "source", "anomaly")] == 1


@pytest.mark.parametrize("kwargs", [{"split": "dev"}, {"label": "abnormal"}, {"domain": "both"}])
def test_select_rejects_unknown_values(kwargs: dict[str, str]) -> None:
    ((name, value),) = kwargs.items()
    with pytest.raises(ValueError, match=f"{name}='{value}' is not one of"):
        select([], **kwargs)
