"""Shared fixtures: tiny synthetic corpora built once per session, wandb kept off the network."""

from __future__ import annotations

import os

os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("SSAD_CACHE_DIR", os.path.join(os.environ.get("TMPDIR", "/tmp"), "ssad-test-cache"))

from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import pytest  # noqa: E402

if TYPE_CHECKING:
    from ssad.detector import Detector

#: fixtures that train a model: every test that needs one, directly or through another fixture, is slow
TRAINING_FIXTURES = frozenset({"tiny_run", "stats_run"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark slow each test that needs a trained run, so `-m "not slow"` (`make test-fast`) trains nothing."""
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `tiny` synthetic preset (4 types x 4 IDs, 2 s clips), generated once."""
    from ssad.synthesis import generate

    root = tmp_path_factory.mktemp("tiny")
    generate(root, preset="tiny", seed=0, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of `configs/tiny.yaml` trained from the CLI on the tiny set (2 epochs)."""
    from ssad.cli import main

    run = tmp_path_factory.mktemp("run")
    config = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    code = main(["fit", "--config", str(config), "--data.root", str(tiny_root), "--trainer.default_root_dir", str(run)])
    assert code == 0
    return run


@pytest.fixture
def one_torch_thread():
    """Tiny networks train faster on one thread than on two cores shared with other jobs."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def classifier_detector(tiny_root: Path) -> Detector:
    """A detector on an untrained classifier of fan/id_00 and fan/id_02 (no training) pooling its windows' mean and
    spread, with the scorers a classifier offers: gaussian, knn, softmax, ensemble (the floor's Gaussian among its
    members) and gaussian_top."""
    import torch

    import ssad
    from ssad.encoder import clip_outputs
    from ssad.features import LogMel
    from ssad.models.classifier.lightning_model import MachineIDClassifier

    torch.manual_seed(0)
    classes = ["fan/id_00", "fan/id_02"]
    module = MachineIDClassifier(width_mult=0.25, last_channels=64, embedding_dim=16, head="softmax",
                                 clip_pooling="mean_std", class_names=classes, n_mels=64, window_frames=16).eval()
    metadata = {"model_class": f"{MachineIDClassifier.__module__}.MachineIDClassifier", "machine_types": None,
                "feature_params": LogMel(n_mels=64).params, "window_frames": 16, "window_hop": 8,
                "output_names": list(module.output_names), "class_names": classes}
    model = ssad.encoder.Encoder(module, metadata)
    paths = [str(p) for machine_id in ("id_00", "id_02") for p in sorted(tiny_root.glob(f"fan/train/normal_{machine_id}_*.wav"))]
    ids = [f"fan/{Path(p).stem.split('_', 1)[1][:5]}" for p in paths]
    return ssad.Detector.from_outputs(model, clip_outputs(model, paths), ids,
                                      scorers=("gaussian", "knn", "softmax", "ensemble", "gaussian_top"))
