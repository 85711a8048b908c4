"""The encoder shipped with ssad: publish, sha256-checked loading, `ssad.load("pretrained")`, the empty detector
(`ssad detector --pretrained`, `ssad enroll`, `ssad score`, `ssad monitor`) and fine-tuning from it.

Most tests publish a small untrained network into a temporary folder that stands in for the package's own
(`ssad.models.files.PACKAGE_DIR`, monkeypatched), so they train nothing; the real shipped files are checked
for consistency only, since `make pretrain` replaces them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
import torch

import ssad
from ssad.cli import main
from ssad.core.errors import SsadError
from ssad.detector import enrollment, fit_scorers
from ssad.encoder.pretrained import load_pretrained, publish
from ssad.features import LogMel
from ssad.models import files as weights
from ssad.models.base import CHECKPOINT_KEY
from ssad.models.classifier.lightning_model import MachineIDClassifier
from ssad.models.runs import read_checkpoint
from ssad.scoring import CombinedScorer, GaussianScorer, KNNScorer, Scorer
from ssad.scoring.catalogue import PRETRAINED_SCORERS

REPO = Path(__file__).resolve().parents[1]
MACHINE = "site-a/fan-x"
#: configs/tiny.yaml's network, so that fine-tuning from it copies every tensor but the head
TINY_NET = {"backbone": "mobilenetv2", "width_mult": 0.25, "last_channels": 128, "embedding_dim": 32,
            "head": "softmax", "n_mels": 64, "window_frames": 32}


def normal_clips(root: Path, machine_type: str = "fan", machine_id: str = "id_00", n: int = 5) -> list[str]:
    return [str(p) for p in sorted(root.glob(f"{machine_type}/train/normal_{machine_id}_*.wav"))[:n]]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained classifier of configs/tiny.yaml's shape, saved as a detector keeps its model (no training)."""
    torch.manual_seed(0)
    classes = ["fan/id_00", "fan/id_02", "pump/id_00"]
    net = {k: v for k, v in TINY_NET.items() if k not in ("n_mels", "window_frames")}
    module = MachineIDClassifier(**net, class_names=classes, n_mels=64, window_frames=32).eval()
    metadata = {"model_class": f"{MachineIDClassifier.__module__}.MachineIDClassifier", "machine_types": None,
                "feature_params": LogMel(n_mels=64).params, "window_frames": 32, "window_hop": 16, "window_to_end": True,
                "output_names": list(module.output_names), "class_names": classes}
    folder = tmp_path_factory.mktemp("model")
    weights.write_model_files(module, metadata, folder)
    return folder


@pytest.fixture
def package_dir(model_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The untrained model published into a folder that stands in for the package's own."""
    folder = tmp_path / "package" / "pretrained"
    publish(model_folder, provenance={"corpus": {"name": "none (untrained, for tests)"}}, directory=folder)
    monkeypatch.setattr(weights, "PACKAGE_DIR", folder)
    return folder


def test_publish_writes_the_encoder_and_its_provenance(model_folder: Path, package_dir: Path) -> None:
    assert sorted(p.name for p in package_dir.iterdir()) == ["encoder.json", "encoder.safetensors", "provenance.json"]
    record = json.loads((package_dir / "provenance.json").read_text())
    assert record["corpus"] == {"name": "none (untrained, for tests)"}
    assert record["source"] == model_folder.name and record["published"] and "commit" in record
    for name in weights.ENCODER_FILES:
        assert record["files"][name] == weights.file_digest(package_dir / name)
    texts = [(package_dir / name).read_text() for name in ("encoder.json", "provenance.json")]
    assert not any(str(model_folder) in text for text in texts)  # no path of this machine in shipped files
    clip = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    np.testing.assert_allclose(load_pretrained().embed(clip), ssad.load(model_folder).embed(clip), atol=1e-6)


def test_publish_and_show_commands(model_folder: Path, tmp_path: Path, capsys) -> None:
    extra = tmp_path / "corpus.json"
    extra.write_text(json.dumps({"corpus": {"hours": 25.6}, "training_seconds": 5}))
    folder = tmp_path / "encoder"
    assert main(["pretrained", "publish", str(model_folder), "--dir", str(folder), "--config", "configs/tiny.yaml",
                 "--training-seconds", "3", "--provenance", str(extra)]) == 0
    assert main(["pretrained", "show", "--dir", str(folder)]) == 0
    shown = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert shown["config"] == "configs/tiny.yaml" and shown["training_seconds"] == 5  # the file's keys win
    assert shown["corpus"] == {"hours": 25.6} and shown["class_names"] == 3
    extra.write_text("[1, 2]")
    assert main(["pretrained", "publish", str(model_folder), "--dir", str(folder), "--provenance", str(extra)]) == 2
    assert "--provenance must hold a JSON object" in capsys.readouterr().err


def test_a_damaged_or_missing_file_is_named_before_loading(package_dir: Path) -> None:
    weights_file = package_dir / "encoder.safetensors"
    good = weights_file.read_bytes()
    weights_file.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))
    with pytest.raises(SsadError, match=r"encoder\.safetensors: sha256 or size differs.*reinstall.*make pretrain"):
        load_pretrained()
    weights_file.write_bytes(good)
    (package_dir / "encoder.json").unlink()
    with pytest.raises(SsadError, match=r"encoder\.json: missing"):
        ssad.load("pretrained")
    (package_dir / "provenance.json").unlink()
    with pytest.raises(SsadError, match=r"provenance\.json: missing.*reinstall"):
        ssad.Detector.pretrained()


def test_load_pretrained_by_name_and_a_folder_of_that_name_wins(package_dir: Path, model_folder: Path,
                                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = np.random.default_rng(1).normal(0, 0.1, 16000).astype(np.float32)
    shipped = ssad.load("pretrained").embed(clip)
    np.testing.assert_allclose(shipped, load_pretrained().embed(clip))
    here = tmp_path / "cwd"
    other = MachineIDClassifier(**{k: v for k, v in TINY_NET.items() if k not in ("n_mels", "window_frames")},
                                class_names=["a/b"], n_mels=64, window_frames=32)
    weights.write_model_files(other, weights.read_model_files(model_folder)[CHECKPOINT_KEY], here / "pretrained")
    monkeypatch.chdir(here)
    assert not np.allclose(ssad.load("pretrained").embed(clip), shipped)


@pytest.mark.parametrize("scorer", [GaussianScorer(), KNNScorer(k=2)])
def test_a_scorer_fitted_on_no_machine_saves_loads_and_takes_machines_as_a_fresh_fit(scorer: Scorer,
                                                                                      tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X, ids = rng.normal(size=(12, 6)), ["a"] * 6 + ["b"] * 6
    empty = Scorer.load(scorer.fit_empty(np.empty((0, 6))).save(tmp_path / "empty"))
    assert empty.ids_ == [] and len(empty.train_scores_) == 0
    grown = empty.refit_ids(X[:6], ids[:6]).refit_ids(X[6:], ids[6:])
    fresh = type(scorer)(**scorer.get_params()).fit(X[:6], ids[:6])
    test = rng.normal(size=(4, 6))
    np.testing.assert_allclose(grown.score(test, ["a"] * 4), fresh.score(test, ["a"] * 4))
    assert grown.ids_ == ["a", "b"]


def test_an_ensemble_starts_empty_member_by_member(tmp_path: Path) -> None:
    members = {"gaussian": GaussianScorer(), "knn": KNNScorer()}
    no_clips = {"embedding": np.empty((0, 6)), "spectrum": np.empty((0, 4))}
    empty = Scorer.load(CombinedScorer(members).fit_empty(no_clips).save(tmp_path / "ensemble"))
    assert empty.ids_ == [] and empty.means_.shape == (2, 0)
    assert [m.n_features_in_ for m in empty.members.values()] == [6, 6] and empty.members["knn"].ids_ == []


def test_empty_detector_enrol_score_and_monitor(package_dir: Path, tiny_root: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "det"
    assert main(["detector", "--pretrained", "--out", str(folder)]) == 0
    empty = ssad.Detector.load(folder)
    assert empty.machine_ids == [] and list(empty.scorers) == list(PRETRAINED_SCORERS)
    assert empty.default_scorer == "ensemble" and empty.clip_seconds is None
    test_clip = str(sorted(tiny_root.glob("fan/test/*_id_00_*.wav"))[0])
    with pytest.raises(SsadError, match="knows no machine yet.*ssad enroll"):
        empty.score([test_clip], MACHINE)
    capsys.readouterr()
    assert main(["monitor", "--detector", str(folder), "--source", test_clip]) == 2
    assert "ssad enroll" in capsys.readouterr().err

    assert main(["enroll", "--detector", str(folder), "--machine", MACHINE, "--quiet", *normal_clips(tiny_root)]) == 0
    assert f"enrolled {MACHINE}: 5 normal reference clips" in capsys.readouterr().out
    detector = ssad.Detector.load(folder)
    assert detector.machine_ids == [MACHINE] and detector.clip_seconds == pytest.approx(2.0)
    assert detector.model.window_to_end  # published from a model saved with the end window, and saved with it
    assert detector.references.of(MACHINE)["embedding"].shape == (5, 32)

    tests = [str(p) for p in sorted(tiny_root.glob("fan/test/*_id_00_*.wav"))]
    assert main(["score", "--detector", str(folder), "--machine", MACHINE, "--json", *tests]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in rows] == tests and {r["machine"] for r in rows} == {MACHINE}
    assert all(np.isfinite(r["score"]) and r["scorer"] == "ensemble" for r in rows)
    assert main(["score", "--detector", str(folder), "--machine", "fan/id_02", *tests]) == 2
    assert "unknown to this detector" in capsys.readouterr().err

    assert main(["monitor", "--detector", str(folder), "--source", test_clip, "--heartbeat", "0"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines and all(line["machine"] == MACHINE and line["threshold"] == detector.thresholds["ensemble"].threshold_[MACHINE]
                         for line in lines)


def test_first_machine_needs_four_clips_later_ones_borrow_a_threshold(package_dir: Path, tiny_root: Path,
                                                                      tmp_path: Path) -> None:
    folder = ssad.Detector.pretrained().save(tmp_path / "det")
    with pytest.raises(SsadError, match="first machine.*at least 4 normal recordings of it, not 3"):
        enrollment.enroll(folder, MACHINE, normal_clips(tiny_root, n=3))
    enrollment.enroll(folder, MACHINE, normal_clips(tiny_root, n=4))
    update = enrollment.enroll(folder, "site-a/pump-y", normal_clips(tiny_root, "pump", n=2))
    detector = ssad.Detector.load(folder)
    for name, threshold in detector.thresholds.items():
        assert threshold.threshold_["site-a/pump-y"] == threshold.threshold_[MACHINE] == update.thresholds[name]
        assert "median threshold of the other machines" in threshold.fallbacks_["site-a/pump-y"]


def test_detector_command_refuses_pretrained_with_a_run(tmp_path: Path, capsys) -> None:
    assert main(["detector", "--pretrained", "--run", str(tmp_path), "--out", str(tmp_path / "d")]) == 2
    assert "give no --run or --data" in capsys.readouterr().err
    assert main(["detector", "--out", str(tmp_path / "d")]) == 2
    assert "--run and --data" in capsys.readouterr().err


def test_fine_tuning_copies_what_fits_from_the_encoder_or_a_detector(package_dir: Path, model_folder: Path,
                                                                     tmp_path: Path) -> None:
    encoder = weights.read_pretrained()["state_dict"]
    folder = ssad.Detector.pretrained().save(tmp_path / "det")
    for source in ("pretrained", str(folder)):
        net = {k: v for k, v in TINY_NET.items() if k not in ("n_mels", "window_frames")}
        model = MachineIDClassifier(**net, class_names=["pump/id_00", "valve/id_00"], n_mels=64, window_frames=32,
                                    init_from=source)
        model._initialise_from(source)
        state = model.net.state_dict()
        copied = [k for k in state if not k.startswith("head.") and torch.equal(state[k], encoder[f"net.{k}"])]
        assert len(copied) == sum(not k.startswith("head.") for k in state)
        # pump/id_00 of the pretraining corpus is another machine than the user's pump/id_00: its row is not copied
        assert not torch.equal(state["head.linear.weight"][0], encoder["net.head.linear.weight"][2])


def test_the_shipped_encoders_classes_never_score_a_machine_of_the_same_name(package_dir: Path) -> None:
    model = load_pretrained()
    assert model.metadata[weights.UNIT_CLASSES] and "fan/id_00" in model.class_names
    rng = np.random.default_rng(0)
    outputs = {"embedding": rng.normal(size=(8, 32)), "neg_log_prob": rng.random((8, 3))}
    assert sorted(fit_scorers(model, outputs, ["fan/id_00"] * 8)) == ["gaussian", "knn"]


@pytest.mark.slow
def test_fit_one_epoch_from_the_pretrained_encoder(package_dir: Path, tiny_root: Path, tmp_path: Path) -> None:
    config = REPO / "configs" / "tiny.yaml"
    code = main(["fit", "--config", str(config), "--data.root", str(tiny_root), "--trainer.max_epochs", "1",
                 "--model.init_from", "pretrained", "--trainer.default_root_dir", str(tmp_path / "run")])
    assert code == 0
    assert read_checkpoint(tmp_path / "run")["hyper_parameters"]["init_from"] == "pretrained"
    assert ssad.load(tmp_path / "run").embed(normal_clips(tiny_root, n=2)).shape == (2, 2 * 32)  # mean and spread
    record = json.loads((publish(tmp_path / "run", provenance={}, directory=tmp_path / "pub") / "provenance.json").read_text())
    assert record["epochs"] == 1 and record["steps"] > 0 and record["source"] in ("best.ckpt", "last.ckpt")
    assert record["corpus"]["data_module"] == "ssad.data.MachineIDDataModule"
    assert record["corpus"]["root"] == tiny_root.name  # the corpus folder's name, not this machine's path
    assert str(tmp_path) not in (tmp_path / "pub" / "encoder.json").read_text()


def test_the_shipped_encoder_is_whole_and_embeds() -> None:
    """The files in the package (a placeholder until `make pretrain` ships real ones): sha256 and shape only."""
    folder = weights.PACKAGE_DIR
    if not (folder / "encoder.safetensors").is_file():
        pytest.skip("no encoder shipped in this checkout")
    record = weights.read_provenance()
    model = load_pretrained()
    embedding = model.embed(np.zeros(model.sample_rate, dtype=np.float32))
    assert embedding.ndim == 1 and np.all(np.isfinite(embedding))
    assert record.get("embedding_dim") in (None, embedding.shape[0])
    assert sorted(record["files"]) == sorted(weights.ENCODER_FILES)
    assert model.window_to_end  # its windows reach each clip's last frame, and a detector made from it keeps that


def test_the_wheel_takes_the_shipped_files() -> None:
    """pyproject's package data holds every file of ssad/pretrained (the wheel itself is built in the report)."""
    tomllib = pytest.importorskip("tomllib")
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["ssad"]
    names = [*weights.ENCODER_FILES, weights.PROVENANCE_FILE]
    assert all(any(fnmatch(f"pretrained/{name}", p) for p in patterns) for name in names)


@pytest.mark.slow
def test_a_new_user_scores_a_machine_minutes_after_install(tiny_root: Path, tmp_path: Path) -> None:
    """The shipped encoder through the installed `ssad` command: an empty detector, five clips, scores."""
    if not (weights.PACKAGE_DIR / "encoder.safetensors").is_file():
        pytest.skip("no encoder shipped in this checkout")
    ssad_cmd = [sys.executable, "-m", "ssad.cli"]
    folder = tmp_path / "det"
    for args in (["detector", "--pretrained", "--out", str(folder)],
                 ["enroll", "--detector", str(folder), "--machine", MACHINE, "--quiet", *normal_clips(tiny_root)]):
        subprocess.run([*ssad_cmd, *args], check=True, capture_output=True)
    tests = [str(p) for p in sorted(tiny_root.glob("fan/test/*_id_00_*.wav"))]
    out = subprocess.run([*ssad_cmd, "score", "--detector", str(folder), "--machine", MACHINE, "--json", *tests],
                         check=True, capture_output=True, text=True).stdout
    assert len(json.loads(out)) == len(tests)
    shutil.rmtree(folder)
