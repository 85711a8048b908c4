"""The synthetic machine-sound generator: determinism, DCASE layout and format, anomalies that matter, bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
import soundfile as sf
import torch
from sklearn.covariance import LedoitWolf
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import roc_auc_score

from ssad.features import LogMel
from ssad.synthesis import corpus
from ssad.synthesis.clips import PEAK_LIMIT, synthesize_clip
from ssad.synthesis.config import PRESETS, SEVERITY_LEVELS, SynthConfig, clip_filename
from ssad.synthesis.corpus import generate
from ssad.synthesis.machines import ANOMALY_KINDS, MACHINE_TYPES, MODELS, PRETRAINING_TYPES

NAME = re.compile(r"(normal|anomaly)_id_(\d\d)_(\d{8})\.wav")
# Small but complete: two contrasting types (rotating and event-driven), two IDs, both test labels.
SMALL = SynthConfig(
    machine_types=("fan", "valve"),
    ids_per_type=2,
    train_per_id=2,
    test_normal_per_id=1,
    test_anomaly_per_id=1,
    duration_s=1.0,
)
# For the baseline check: shorter clips and fewer of them than the default preset, the default severity.
# Anomalous clips cycle through the severity levels with index // (fault families), three for every type:
# this index and the next have the strongest.
STRONG_INDEX = (len(SEVERITY_LEVELS) - 1) * 3
BASELINE = SynthConfig(duration_s=5.0, train_per_id=20, test_normal_per_id=10, test_anomaly_per_id=10)


# Per machine type, a digest of the `tiny` preset's files for two seeds, as written by the realistic generator
# (MIMII's fault families, the factory ambience pool; numpy 2.4, scipy 1.17, libsndfile via soundfile 0.14).
TINY_DIGESTS = {
    7: {"fan": "c9bde959f06b5efc", "pump": "0b4c099ff31eb138", "slider": "a0fc110634d0df44", "valve": "777386cef4be5ad4"},
    8: {"fan": "dc055e9e1f375f2f", "pump": "8f86855313903a86", "slider": "301ac1e0ac0821bd", "valve": "08a1b156235e9d1d"},
}


def corpus_digest(root: Path, machine_type: str) -> str:
    """sha256 over (path, sha256 of the file) of every WAV of one machine type, shortened to 16 hex digits."""
    digest = hashlib.sha256()
    for path in sorted((root / machine_type).rglob("*.wav")):
        digest.update(f"{path.relative_to(root).as_posix()} {hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()[:16]


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.wav"))
    }


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `tiny` preset with this module's own seed, independent of the suite's shared fixture."""
    root = tmp_path_factory.mktemp("tiny")
    summary = generate(root, "tiny", seed=3, progress=False)
    assert summary.total_clips == PRESETS["tiny"].total_clips
    return root


# --------------------------------------------------------------------------------------------------
# Determinism


@pytest.mark.slow  # writes several corpora
def test_same_seed_gives_identical_files_whatever_the_worker_count(tmp_path: Path) -> None:
    generate(tmp_path / "a", seed=5, config=SMALL, workers=1, progress=False)
    generate(tmp_path / "b", seed=5, config=SMALL, workers=2, progress=False)
    a, b = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert len(a) == SMALL.total_clips
    assert a == b


@pytest.mark.parametrize("seed", sorted(TINY_DIGESTS))
def test_tiny_preset_files_are_byte_identical_to_the_recorded_ones(tmp_path: Path, seed: int) -> None:
    generate(tmp_path, "tiny", seed=seed, workers=1, progress=False)
    assert {t: corpus_digest(tmp_path, t) for t in MACHINE_TYPES} == TINY_DIGESTS[seed]


def test_every_registered_model_lives_in_the_module_named_for_it() -> None:
    assert tuple(MODELS) == PRETRAINING_TYPES and PRETRAINING_TYPES[: len(MACHINE_TYPES)] == MACHINE_TYPES
    for name, model in MODELS.items():
        assert model.name == name and model.sound.__module__ == f"ssad.synthesis.machines.{name}"
        assert model.anomaly_kinds == ANOMALY_KINDS.get(name, ())
    assert set(ANOMALY_KINDS) == set(MACHINE_TYPES)  # the generic machine is for pretraining only: no faults


@pytest.mark.slow  # writes several corpora
def test_different_seed_gives_different_files(tmp_path: Path) -> None:
    generate(tmp_path / "a", seed=5, config=SMALL, progress=False)
    generate(tmp_path / "b", seed=6, config=SMALL, progress=False)
    a, b = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a)


@pytest.mark.slow  # writes several corpora
def test_a_machine_does_not_change_when_clips_or_types_are_added(tmp_path: Path) -> None:
    generate(tmp_path / "few", seed=2, config=SMALL, progress=False)
    more = SynthConfig(
        machine_types=("valve", "fan", "pump"),
        ids_per_type=3,
        train_per_id=3,
        test_normal_per_id=2,
        test_anomaly_per_id=1,
        duration_s=1.0,
    )
    generate(tmp_path / "more", seed=2, config=more, progress=False)
    few, lots = digests(tmp_path / "few"), digests(tmp_path / "more")
    assert few.items() <= lots.items()


def test_synthesize_clip_gives_the_samples_generate_writes(tiny_set: Path) -> None:
    wave = synthesize_clip("slider", 4, "anomaly", seed=3, split="test", index=2, config=PRESETS["tiny"])
    assert wave.dtype == np.float32 and wave.shape == (PRESETS["tiny"].num_samples,)
    stored, _ = sf.read(tiny_set / "slider" / "test" / clip_filename("anomaly", 4, 2), dtype="int16")
    np.testing.assert_array_equal(np.round(wave * 32767).astype(np.int16), stored)


# --------------------------------------------------------------------------------------------------
# Layout and format


def test_layout_names_and_format(tiny_set: Path) -> None:
    config = PRESETS["tiny"]
    assert sorted(p.name for p in tiny_set.iterdir()) == sorted([*MACHINE_TYPES, "faults.csv"])
    for machine_type in MACHINE_TYPES:
        assert sorted(p.name for p in (tiny_set / machine_type).iterdir()) == ["test", "train"]
        seen: dict[tuple[str, str, str], int] = {}
        for split in ("train", "test"):
            for path in (tiny_set / machine_type / split).iterdir():
                match = NAME.fullmatch(path.name)
                assert match, path
                key = (split, match[1], match[2])
                seen[key] = seen.get(key, 0) + 1
                info = sf.info(path)
                assert (info.samplerate, info.channels, info.subtype, info.format) == (
                    16000,
                    1,
                    "PCM_16",
                    "WAV",
                )
                assert info.frames == config.num_samples
        assert {k[2] for k in seen} == {"00", "02", "04", "06"}
        assert {(s, lab) for s, lab, _ in seen} == {
            ("train", "normal"),
            ("test", "normal"),
            ("test", "anomaly"),
        }
        for (split, label, _), count in seen.items():
            expected = {("train", "normal"): 6, ("test", "normal"): 3, ("test", "anomaly"): 3}[(split, label)]
            assert count == expected


def test_counters_restart_per_id_and_label(tiny_set: Path) -> None:
    names = sorted(p.name for p in (tiny_set / "pump" / "test").iterdir())
    assert "normal_id_02_00000000.wav" in names and "anomaly_id_02_00000000.wav" in names
    assert "anomaly_id_06_00000002.wav" in names and "anomaly_id_06_00000003.wav" not in names


def test_no_clipping_and_sensible_level(tiny_set: Path) -> None:
    peaks, levels = [], []
    for path in tiny_set.rglob("*.wav"):
        pcm, _ = sf.read(path, dtype="int16")
        peaks.append(int(np.abs(pcm.astype(np.int32)).max()))
        levels.append(20 * np.log10(np.sqrt(np.mean((pcm / 32768.0) ** 2))))
    assert max(peaks) <= round(PEAK_LIMIT * 32767)
    assert -50.0 < min(levels) and max(levels) < -20.0


@pytest.mark.slow  # writes several corpora
def test_duration_and_sample_rate_are_configurable(tmp_path: Path) -> None:
    config = SynthConfig(
        machine_types=("pump",),
        ids_per_type=1,
        train_per_id=1,
        test_normal_per_id=0,
        test_anomaly_per_id=1,
        duration_s=1.5,
        sample_rate=22050,
    )
    generate(tmp_path, seed=1, config=config, progress=False)
    infos = [sf.info(p) for p in sorted(tmp_path.rglob("*.wav"))]
    assert len(infos) == 2
    assert all((i.samplerate, i.frames, i.subtype) == (22050, 33075, "PCM_16") for i in infos)


@pytest.mark.slow  # writes a corpus
def test_summary_counts_and_table(tmp_path: Path) -> None:
    summary = generate(tmp_path, seed=1, config=SMALL, progress=False)
    assert summary.root == tmp_path
    assert summary.counts[("fan", "id_02", "train", "normal")] == 2
    assert summary.counts[("valve", "id_00", "test", "anomaly")] == 1
    assert summary.total_clips == SMALL.total_clips == 16
    assert summary.seconds > 0 and summary.clips_per_second > 0
    table = summary.format()
    for text in ("fan", "valve", "id_00", "id_02", "train/normal", "test/anomaly", "16 clips", "clips/s"):
        assert text in table


@pytest.mark.slow  # writes several corpora
def test_rewrites_in_place_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    generate(tmp_path, seed=1, config=SMALL, progress=False)
    before = digests(tmp_path)
    generate(tmp_path, seed=1, config=SMALL, progress=False)
    assert digests(tmp_path) == before
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == sorted([*before, "faults.csv"])


def test_an_interrupted_write_leaves_no_wav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_write(file: BinaryIO, *args: object, **kwargs: object) -> None:
        file.write(b"RIFF half a header")
        raise KeyboardInterrupt

    monkeypatch.setattr(corpus.sf, "write", broken_write)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path, seed=1, config=SMALL, workers=1, progress=False)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# --------------------------------------------------------------------------------------------------
# The sounds mean something


@pytest.mark.parametrize("machine_type", MACHINE_TYPES)
def test_every_fault_is_audible_over_the_background(machine_type: str) -> None:
    """The same clip with and without its fault (same random stream, strongest severity vs 0) differs by > 3 dB in 0.1% of cells."""
    log_mel = LogMel()
    for kind in ANOMALY_KINDS[machine_type]:
        with_fault, without = (
            log_mel(
                torch.from_numpy(
                    synthesize_clip(
                        machine_type,
                        4,
                        "anomaly",
                        seed=11,
                        anomaly_kind=kind,
                        index=STRONG_INDEX,
                        config=SynthConfig(duration_s=3.0, severity=s),
                    )
                )
            )
            for s in (1.0, 0.0)
        )
        change = float(torch.quantile((with_fault - without).abs().flatten(), 0.999))
        assert change > 3.0, (kind, change)


@pytest.mark.parametrize("machine_type", ["pump", "slider"])
def test_anomalous_clips_stand_out_from_normal_ones(machine_type: str) -> None:
    """Strong pump and slider faults lie farther from their ID's normal clips than a left-out normal clip does.

    Fan and valve faults are left out on purpose: as on real machines, they live in narrow lines and in
    transients that clip statistics average away (each is still audible, see the test above).
    """
    config = SynthConfig(duration_s=3.0, severity=1.0)
    log_mel = LogMel()

    def features(label: str, index: int, kind: str | None = None) -> np.ndarray:
        m = log_mel(
            torch.from_numpy(
                synthesize_clip(
                    machine_type, 2, label, seed=11, index=index, config=config, anomaly_kind=kind
                )
            )
        )
        return torch.cat([m.mean(-1), m.std(-1), m.amax(-1)]).numpy()

    def outlyingness(f: np.ndarray, reference: np.ndarray) -> float:
        """Mean of the largest tenth of |z| over the features: large when any part of the sound is off."""
        z = np.abs(f - reference.mean(0)) / (reference.std(0) + 0.5)
        return float(np.sort(z)[-len(z) // 10 :].mean())

    normals = np.array([features("normal", i) for i in range(10)])
    normal = np.mean([outlyingness(normals[i], np.delete(normals, i, 0)) for i in range(len(normals))])
    anomalous = np.mean(
        [
            outlyingness(features("anomaly", i, k), normals)
            for k in ANOMALY_KINDS[machine_type]
            for i in (STRONG_INDEX, STRONG_INDEX + 1)
        ]
    )
    assert anomalous > 1.1 * normal, (anomalous, normal)


@pytest.fixture(scope="module")
def baseline_features(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, list[tuple[str, str, str, np.ndarray]]]:
    root = tmp_path_factory.mktemp("baseline")
    generate(root, seed=1, config=BASELINE, progress=False)
    log_mel = LogMel()
    out: dict[str, list[tuple[str, str, str, np.ndarray]]] = {}
    for machine_type in MACHINE_TYPES:
        paths = sorted((root / machine_type).rglob("*.wav"))
        waves = torch.from_numpy(np.stack([sf.read(p, dtype="float32")[0] for p in paths]))
        means = torch.cat([log_mel(chunk).mean(-1) for chunk in waves.split(64)]).numpy()
        matches = [NAME.fullmatch(p.name) for p in paths]
        out[machine_type] = [
            (p.parent.name, m[1], m[2], f) for p, m, f in zip(paths, matches, means, strict=True)
        ]
    return out


@pytest.mark.slow  # fits a detector on a generated set
@pytest.mark.parametrize("machine_type", MACHINE_TYPES)
def test_a_mean_log_mel_gaussian_finds_some_but_not_all_anomalies(
    machine_type: str, baseline_features: dict[str, list[tuple[str, str, str, np.ndarray]]]
) -> None:
    """The set is neither noise nor trivial: a per-ID Gaussian on per-clip mean log-mel gets 0.6 < AUC < 0.97."""
    rows = baseline_features[machine_type]
    labels, scores = [], []
    for machine_id in {r[2] for r in rows}:
        train = np.array([f for split, _, i, f in rows if split == "train" and i == machine_id])
        gaussian = LedoitWolf().fit(train)
        for split, label, i, f in rows:
            if split == "test" and i == machine_id:
                d = f - gaussian.location_
                scores.append(float(d @ gaussian.precision_ @ d))
                labels.append(int(label == "anomaly"))
    auc = roc_auc_score(labels, scores)
    assert 0.6 < auc < 0.97, auc


@pytest.mark.slow  # fits a classifier on a generated set
@pytest.mark.parametrize("machine_type", MACHINE_TYPES)
def test_machine_ids_are_distinguishable(
    machine_type: str, baseline_features: dict[str, list[tuple[str, str, str, np.ndarray]]]
) -> None:
    """A linear classifier on mean log-mel tells a type's four IDs apart well above chance (1/4)."""
    rows = baseline_features[machine_type]
    train = [(i, f) for split, _, i, f in rows if split == "train"]
    test = [(i, f) for split, label, i, f in rows if split == "test" and label == "normal"]
    classifier = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(
        [f for _, f in train], [i for i, _ in train]
    )
    accuracy = classifier.score([f for _, f in test], [i for i, _ in test])
    assert accuracy > 0.6, accuracy


# --------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"machine_types": ("fan", "ToyCar")}, "machine_types"),
        ({"machine_types": ("fan", "fan")}, "machine_types"),
        ({"machine_types": ()}, "machine_types"),
        ({"ids_per_type": 0}, "ids_per_type"),
        ({"ids_per_type": 51}, "ids_per_type"),
        ({"train_per_id": -1}, "train_per_id"),
        ({"test_anomaly_per_id": 1.5}, "test_anomaly_per_id"),
        ({"train_per_id": 0, "test_normal_per_id": 0, "test_anomaly_per_id": 0}, "nothing to synthesize"),
        ({"duration_s": 0.0}, "duration_s"),
        ({"duration_s": float("nan")}, "duration_s"),
        ({"duration_s": 0.01}, "duration_s"),
        ({"sample_rate": 4000}, "sample_rate"),
        ({"sample_rate": 16000.0}, "sample_rate"),
        ({"snr_db": float("inf")}, "snr_db"),
        ({"severity": -0.1}, "severity"),
        ({"severity": 2.5}, "severity"),
        ({"anomaly_kinds": ("meltdown",)}, "anomaly_kinds"),
        ({"anomaly_kinds": ("leakage",)}, "leaves no kind"),
        ({"layout": "dcase2021"}, "layout"),
        ({"target_train_per_id": 3}, "dcase2022"),
    ],
)
def test_config_rejects_bad_values(changes: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        SynthConfig(**changes)


def test_anomaly_kinds_restrict_the_faults() -> None:
    config = SynthConfig(machine_types=("fan", "pump"), anomaly_kinds=("clogging",), duration_s=1.0)
    assert config.kinds_for("fan") == ("clogging",) and config.kinds_for("pump") == ("clogging",)
    # without anomalous test clips a type may have no kind left
    SynthConfig(anomaly_kinds=("leakage",), test_anomaly_per_id=0)


def test_generate_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="preset"):
        generate(tmp_path, "huge", progress=False)
    with pytest.raises(ValueError, match="seed"):
        generate(tmp_path, "tiny", seed=-1, progress=False)
    with pytest.raises(ValueError, match="workers"):
        generate(tmp_path, "tiny", workers=0, progress=False)
    with pytest.raises(ValueError, match="config"):
        generate(tmp_path, config={"duration_s": 1.0}, progress=False)  # type: ignore[arg-type]
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    with pytest.raises(ValueError, match="existing file"):
        generate(a_file, "tiny", progress=False)
    assert not list(tmp_path.rglob("*.wav"))


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        (("drill", 0, "normal"), {}, "machine_type"),
        (("fan", 100, "normal"), {}, "machine_id"),
        (("fan", 0, "broken"), {}, "label"),
        (("fan", 0, "normal"), {"split": "dev"}, "split"),
        (("fan", 0, "anomaly"), {"split": "train"}, "train split"),
        (("fan", 0, "normal"), {"seed": -3}, "seed"),
        (("fan", 0, "anomaly"), {"anomaly_kind": "leakage"}, "anomaly_kind"),
        (("fan", 0, "normal"), {"anomaly_kind": "unbalance"}, "anomaly_kind"),
        (("fan", 0, "normal"), {"domain": "target"}, "domain"),
    ],
)
def test_synthesize_clip_rejects_bad_arguments(args: tuple, kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        synthesize_clip(*args, **kwargs)


# --------------------------------------------------------------------------------------------------
# What each corpus says about itself: faults.csv, the domain-shift layout, the SNR presets


def test_faults_csv_names_every_anomalous_clip_and_where_its_fault_lies(tiny_set: Path) -> None:
    import csv

    from ssad.synthesis.corpus import FAULT_COLUMNS

    with (tiny_set / "faults.csv").open() as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == FAULT_COLUMNS
        rows = list(reader)
    anomalous = sorted(str(p.relative_to(tiny_set)) for p in tiny_set.rglob("anomaly_*.wav"))
    assert sorted(r["path"] for r in rows) == anomalous
    duration = PRESETS["tiny"].duration_s
    for r in rows:
        assert r["family"] in ANOMALY_KINDS[r["machine_type"]]
        assert r["machine_id"] == "id_" + NAME.fullmatch(Path(r["path"]).name)[2]
        assert 0.0 < float(r["severity"]) <= 2.0
        assert 0.0 <= float(r["start_s"]) < float(r["end_s"]) <= duration + 1e-6
        assert 0.0 < float(r["low_hz"]) < float(r["high_hz"]) <= PRESETS["tiny"].sample_rate / 2
    # every family of every type, and the graded severities, are represented
    assert {(r["machine_type"], r["family"]) for r in rows} == {(t, k) for t in MACHINE_TYPES for k in ANOMALY_KINDS[t]}


@pytest.mark.slow  # writes a corpus
def test_the_shift_preset_writes_the_dcase2022_layout_that_the_data_layer_reads(tmp_path: Path) -> None:
    from ssad.audio.layout import index_root

    config = dataclasses.replace(PRESETS["shift"], machine_types=("pump",), ids_per_type=3, duration_s=1.0,
                                 train_per_id=2, test_normal_per_id=1, test_anomaly_per_id=1,
                                 target_train_per_id=1, target_test_per_id=1)
    summary = generate(tmp_path, seed=2, config=config, progress=False)
    assert summary.counts[("pump", "section_01", "target_train", "normal")] == 1
    clips = index_root(tmp_path)
    assert len(clips) == config.total_clips == 3 * (2 + 1 + 1 + 1 + 2)
    assert {c.machine_id for c in clips} == {"section_00", "section_01", "section_02"}
    assert {(c.split, c.domain) for c in clips} == {("train", "source"), ("train", "target"),
                                                     ("test", "source"), ("test", "target")}
    attributes = {c.machine_id: dict(c.attributes) for c in clips if c.domain == "target"}
    # each section's target changes one condition: speed, microphone, background
    assert attributes["section_00"]["speed"] == "108" and attributes["section_01"]["mic"] == "B"
    assert attributes["section_02"]["noise"] == "B"
    assert sorted(p.name for p in (tmp_path / "pump").glob("attributes_*.csv")) == [
        "attributes_00.csv", "attributes_01.csv", "attributes_02.csv"]


@pytest.mark.slow  # writes several corpora
def test_snr_sets_the_background_level_per_type_not_per_clip(tmp_path: Path) -> None:
    """A lower SNR raises the background under the same machine; clip levels still differ (MIMII's mixing)."""
    config = dataclasses.replace(SMALL, machine_types=("fan",), ids_per_type=1, train_per_id=4)
    levels = {}
    for snr in (-6.0, 6.0):
        generate(tmp_path / str(snr), seed=4, config=dataclasses.replace(config, snr_db=snr), progress=False)
        levels[snr] = [float(np.sqrt(np.mean(sf.read(p)[0] ** 2))) for p in sorted((tmp_path / str(snr)).rglob("*.wav"))]
    assert all(lo > hi for lo, hi in zip(levels[-6.0], levels[6.0], strict=True))
    assert np.ptp(20 * np.log10(levels[6.0])) > 0.1


def test_synth_cli_takes_the_snr_presets(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = subprocess.run([sys.executable, "-m", "ssad.cli", "synth", "--out", str(tmp_path), "--snr-db", "3"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "--snr-db" in bad.stderr
