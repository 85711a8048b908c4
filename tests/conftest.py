"""Shared fixtures: tiny synthetic corpora built once per session, wandb kept off the network."""

from __future__ import annotations

import os

os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("SSAD_CACHE_DIR", os.path.join(os.environ.get("TMPDIR", "/tmp"), "ssad-test-cache"))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

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
