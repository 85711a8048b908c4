"""The cold-start benchmark end to end on tiny data with an untrained encoder: nothing is trained."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture(scope="module")
def cold_start():
    """experiments/cold_start.py as a module (a script, not part of the package); importable by name for its timing process."""
    sys.path.insert(0, str(EXPERIMENTS))
    import cold_start

    yield cold_start
    sys.path.remove(str(EXPERIMENTS))


@pytest.fixture(scope="module")
def untrained_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny machine-ID classifier with its initial weights, saved as a detector's model files."""
    from ssad.encoder import Encoder, save_model_files
    from ssad.models.classifier.lightning_model import MachineIDClassifier

    classes = ["fan/id_00", "pump/id_00"]
    module = MachineIDClassifier(width_mult=0.25, last_channels=32, embedding_dim=8, class_names=classes, n_mels=32,
                                 window_frames=16)
    metadata = {"model_class": f"{MachineIDClassifier.__module__}.{MachineIDClassifier.__qualname__}",
                "feature_params": {"n_mels": 32}, "window_frames": 16, "window_hop": 8,
                "output_names": list(module.output_names), "class_names": classes}
    folder = tmp_path_factory.mktemp("encoder")
    save_model_files(Encoder(module, metadata), folder)
    return folder


def test_writes_the_table_and_the_csv(cold_start, untrained_encoder: Path, tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    code = cold_start.main(["--encoder", str(untrained_encoder), "--data", str(tiny_root), "--synthetic-seeds",
                            "--real-dev", "", "--compare", "--sizes", "3", "--draws", "2", "--no-timing",
                            "--work", str(tmp_path / "work"), "--out", str(out)])
    assert code == 0
    with (out / "cold_start.csv").open() as f:
        rows = list(csv.DictReader(f))
    cold = [r for r in rows if r["detector"] == cold_start.COLD]
    assert {r["clips"] for r in cold} == {"3", "all"}
    assert {r["enrolment"] for r in cold} == {cold_start.IN_TURN, cold_start.ALONE}
    assert {r["scorer"] for r in cold} == set(cold_start.SCORERS)
    assert {r["draw"] for r in cold if r["clips"] == "3"} == {"0", "1"}
    assert len({r["machine_type"] + r["machine_id"] for r in cold}) == 16  # tiny: 4 types x 4 IDs
    text = (out / "cold_start.md").read_text()
    assert untrained_encoder.name in text and "## Scorer: gaussian" in text and "## Scorer: knn" in text
    assert "| tiny" in text
    assert str(tmp_path) not in text  # no absolute paths in a committed result file


def test_times_a_usable_detector(cold_start, untrained_encoder: Path, tiny_root: Path) -> None:
    # in this process: the benchmark runs it in a fresh one, whose imports would cost the fast suite seconds
    measured = cold_start.time_to_detector(str(untrained_encoder), str(tiny_root), 3)
    assert measured["machines"] == 16 and measured["clips"] == 16 * 3
    assert measured["total_s"] >= measured["enrol_s"] > 0 and measured["maxrss_mb"] > 0
    text = cold_start.markdown([], [{"set": "tiny", "data_seed": None, "clips_per_machine": 5, **measured}],
                               cold_start.encoder_identity(str(untrained_encoder)), None, 3, 1.0, 1.0)
    assert "first score of a new machine" in text and "| tiny | 5 | 16 |" in text


def test_refuses_a_synthetic_seed_the_encoder_heard(cold_start, untrained_encoder: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="pretraining seed"):
        cold_start.main(["--encoder", str(untrained_encoder), "--pretrain-seed", "2", "--synthetic-seeds", "2",
                         "--real-dev", "", "--work", str(tmp_path), "--out", str(tmp_path)])


@pytest.fixture(scope="module")
def transfer_dev():
    """experiments/transfer_dev.py as a module."""
    sys.path.insert(0, str(EXPERIMENTS))
    import transfer_dev

    yield transfer_dev
    sys.path.remove(str(EXPERIMENTS))


def test_added_faults_are_heard_and_stay_in_range(transfer_dev) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    clip = 0.1 * rng.standard_normal(transfer_dev.SR)
    for kind, fault in transfer_dev.FAULTS.items():
        added = fault(clip, np.random.default_rng(1))
        assert added.shape == clip.shape and np.all(np.isfinite(added)), kind
        level_db = 20 * np.log10(np.sqrt(np.mean(added**2)) / np.sqrt(np.mean(clip**2)))
        assert -45 < level_db < 0, (kind, level_db)  # under the clip, but there


def test_development_set_from_training_normals_only(transfer_dev, untrained_encoder: Path, tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    real = tmp_path / "real"
    rng = np.random.default_rng(0)
    for folder in transfer_dev.MACHINES:
        for split in ("train", "test"):
            (real / folder / split).mkdir(parents=True)
        for i in range(10):
            sf.write(real / folder / "train" / f"normal_id_00_{i:08d}.wav", 0.1 * rng.standard_normal(8000), 16000)
        sf.write(real / folder / "test" / "anomaly_id_00_00000000.wav", np.zeros(8000), 16000)  # must not be read
    out = tmp_path / "dev.csv"
    assert transfer_dev.main(["--encoder", str(untrained_encoder), "--real-dev", str(real), "--work",
                              str(tmp_path / "work"), "--out", str(out)]) == 0
    root = tmp_path / "work" / "root"
    for machine in transfer_dev.MACHINES.values():
        assert len(list((root / machine / "train").glob("normal_*.wav"))) == 7
        assert len(list((root / machine / "test").glob("normal_*.wav"))) == 3
        assert len(list((root / machine / "test").glob("anomaly_*.wav"))) == 3 * len(transfer_dev.KINDS)
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert {r["machine"] for r in rows} == set(transfer_dev.MACHINES.values())
    assert {r["kind"] for r in rows} == {*transfer_dev.KINDS, "all"}
    assert {r["scorer"] for r in rows} == set(transfer_dev.SCORERS)
    assert all(0 <= float(r["auc"]) <= 1 for r in rows)


@pytest.fixture
def selection_real():
    """experiments/selection_real.py as a module."""
    sys.path.insert(0, str(EXPERIMENTS))
    import selection_real

    yield selection_real
    sys.path.remove(str(EXPERIMENTS))


def _mirror(path: Path, files: dict[str, object]) -> None:
    """A bare git mirror at `path` whose HEAD holds `files` (name -> audio, written as 16-kHz PCM16)."""
    import subprocess

    import soundfile as sf

    work = path.parent / (path.parent.name + "-work")
    for name, audio in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(work / name, audio, 16000, subtype="PCM_16")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", str(work)], check=True)
    subprocess.run([*git, "-C", str(work), "add", "."], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-qm", "clips"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(path)], check=True)


def test_selection_sets_are_built_in_folds_from_the_mirrors(selection_real, untrained_encoder: Path,
                                                           tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    noise = lambda channels=1: 0.1 * rng.standard_normal((8000, channels) if channels > 1 else 8000)  # noqa: E731
    mirrors = tmp_path / "mirrors"
    fan = {f"sample_dataset/fan/id_00/{label}/{i:08d}.wav": noise(8) for label in ("normal", "abnormal")
           for i in range(4)}
    fan["sample_dataset/fan/id_02/normal/00000000.wav"] = noise()  # another ID: not read
    _mirror(mirrors / "Mohxen+sound-anomaly-detection" / "repo", fan)
    section = {f"data/dcase2023t2/dev_data/raw/x/{part}/section_00_{domain}_test_{label}_{i:04d}_pat_0{i % 2}.wav":
               noise() for part, domain in (("train", "source"), ("val", "target")) for label in ("normal", "anomaly")
               for i in range(3)}
    _mirror(mirrors / "hubtru+dcase2023Challenge" / "repo", section)
    out = tmp_path / "sel.csv"
    assert selection_real.main(["--encoder", str(untrained_encoder), "--mirror-root", str(mirrors),
                                "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    roots = tmp_path / "work" / "roots"
    for fold in ("f0", "f1"):
        fan_root, section_root = roots / fold / "mimii_fan", roots / fold / "dcase23_s00"
        assert len(list((fan_root / "train").glob("normal_*.wav"))) == 2  # half the 4 normals, the other half tested
        assert len(list((fan_root / "test").glob("normal_*.wav"))) == 2
        assert len(list((fan_root / "test").glob("anomaly_*.wav"))) == 4
        assert len(list((section_root / "train").glob("normal_*.wav"))) == 3  # of 6 normals, both domains
        assert len(list((section_root / "test").glob("anomaly_*.wav"))) == 6
    import soundfile as sf

    assert sf.info(next((roots / "f0" / "mimii_fan" / "train").glob("*.wav"))).channels == 1  # channel 0 kept
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert {(r["set"], r["fold"]) for r in rows} == {(s, f) for s in selection_real.SOURCES for f in ("f0", "f1")}
    assert all(0 <= float(r[k]) <= 1 for r in rows for k in ("auc", "false_alarms", "recall"))


def test_selection_sets_name_a_missing_mirror(selection_real, untrained_encoder: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="fetch github:Mohxen/sound-anomaly-detection"):
        selection_real.main(["--encoder", str(untrained_encoder), "--mirror-root", str(tmp_path),
                             "--work", str(tmp_path / "work"), "--out", str(tmp_path / "sel.csv")])


def test_the_pretraining_seed_is_the_corpus_seed_not_the_data_modules(cold_start) -> None:
    published = {"corpus": {"corpus_seed": 1000, "seed": 0}}  # `seed`: the data module's crop order
    assert cold_start.pretraining_seed({"provenance": published}, None) == 1000
    assert cold_start.pretraining_seed({"provenance": {"corpus": {"seed": 1000}}}, None) == 1000  # older provenance
    assert cold_start.pretraining_seed({"provenance": published}, 7) == 7


@pytest.fixture
def levers():
    """experiments/layer_transfer.py and experiments/enrolment_prior.py as modules."""
    sys.path.insert(0, str(EXPERIMENTS))
    import enrolment_prior
    import layer_transfer

    yield layer_transfer, enrolment_prior
    sys.path.remove(str(EXPERIMENTS))


def test_layer_views_score_every_machine_alone_and_tabulate(levers, untrained_encoder: Path, tiny_root: Path,
                                                          tmp_path: Path) -> None:
    layer_transfer, _ = levers
    chosen = ["ensemble (shipped)", "floor+layer0", "ensemble+bands1"]
    out = tmp_path / "dev.csv"
    assert layer_transfer.main(["--encoder", str(untrained_encoder), "--candidates", *chosen, "--set",
                                f"sel-f0={tiny_root}", "--set", f"tdev={tiny_root}", "--work", str(tmp_path / "w"),
                                "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    machines = {r["machine"] for r in rows}
    assert len(machines) == 16 and len(rows) == 2 * 16 * len(chosen)
    assert {r["candidate"] for r in rows} == set(chosen)
    assert all(0.0 <= float(r["auc"]) <= 1.0 and int(r["train"]) > 0 for r in rows)
    means = layer_transfer.mean_auc(out)
    ensemble = means["ensemble (shipped)"]
    assert ensemble["dev"] == pytest.approx((ensemble["sel"] + ensemble["tdev"]) / 2)
    table = tmp_path / "table.md"
    assert layer_transfer.main(["--report", str(out), str(out), str(out), "--out", str(table)]) == 0
    assert all(f"| {c} |" in table.read_text() for c in chosen)


def test_scoring_and_frame_candidates_score_held_out_and_run_end_to_end(levers, untrained_encoder: Path,
                                                                       tiny_root: Path, tmp_path: Path) -> None:
    import numpy as np

    layer_transfer, _ = levers
    train = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 10.0], [1.0, 10.0]])  # dimension 2 spreads 10x wider
    held, test = layer_transfer.knn_z(train, np.array([[0.5, 0.0], [0.5, 5.0]]))
    assert np.allclose(held, 2.0)  # each row's nearest *other* row: one standardised unit along dimension 1
    assert np.allclose(test, [1.0, np.sqrt(1.0 + 1.0)])  # dimension 2 counts in its own spread
    held, test = layer_transfer.diagonal_gaussian(train, train[:1])
    assert held.shape == (4,) and np.all(held > test[0] - 1e-9)  # a clip left out is farther than one kept in
    clips = np.empty(6, dtype=object)
    clips[:] = [np.full((4, 3), float(k)) for k in range(6)]
    held, test = layer_transfer.KINDS["frames-gauss"](clips, clips[:2])
    assert held.shape == (6,) and test.shape == (2,) and np.all(np.isfinite(held))
    chosen = ["ensemble (shipped)", "knnz(spectrum)", "ensemble+frames-pca", "ensemble+second encoder"]
    out = tmp_path / "dev.csv"
    assert layer_transfer.main(["--encoder", str(untrained_encoder), "--second-encoder", str(untrained_encoder),
                                "--candidates", *chosen, "--set", f"tdev={tiny_root}", "--work", str(tmp_path / "w"),
                                "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert {r["candidate"] for r in rows} == set(chosen) and len(rows) == 16 * len(chosen)
    assert all(0.0 <= float(r["auc"]) <= 1.0 for r in rows)
    with pytest.raises(SystemExit):  # a candidate that needs a second encoder, asked for without one
        layer_transfer.main(["--encoder", str(untrained_encoder), "--candidates", "ensemble+second encoder", "--set",
                             f"tdev={tiny_root}", "--work", str(tmp_path / "w"), "--out", str(out)])


def test_a_fixed_prior_blends_only_machines_of_fewer_clips_than_dimensions(levers, untrained_encoder: Path,
                                                                           tiny_root: Path, tmp_path: Path) -> None:
    import numpy as np

    _, enrolment_prior = levers
    rng = np.random.default_rng(0)
    prior = np.diag(np.arange(1.0, 5.0))
    many, few = rng.standard_normal((50, 4)), rng.standard_normal((3, 4))
    alone, blended = enrolment_prior.fitter(None, False), enrolment_prior.fitter(prior, False)
    assert np.allclose(alone(many)[1], blended(many)[1])  # enough clips: Ledoit-Wolf either way
    weight = 2 / (2 + 4)
    expected = np.linalg.inv(weight * np.cov(few, rowvar=False) + (1 - weight) * prior)
    assert np.allclose(blended(few)[1], expected)
    out = tmp_path / "prior.csv"
    assert enrolment_prior.main(["--encoder", str(untrained_encoder), "--prior", str(tiny_root), "--set",
                                 f"tiny={tiny_root}", "--work", str(tmp_path / "w"), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 16 * 9 and all(0.0 <= float(r["auc"]) <= 1.0 for r in rows)
