"""Where runs are logged: wandb online when logged in, offline when not, CSV when wandb is disabled."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssad.cli.fit import default_logger_config
from ssad.core.tracking import wandb_mode, wandb_project


@pytest.fixture
def no_wandb_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT", "WANDB_DIR"):
        monkeypatch.setenv(name, "")  # so that monkeypatch restores it, also after `setdefault` in the code
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_offline_unless_logged_in(no_wandb_settings: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert wandb_mode() == "offline"
    (no_wandb_settings / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password key\n")
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "Disabled")
    assert wandb_mode() == "disabled"


def test_training_logger_follows_the_mode(no_wandb_settings: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logger = default_logger_config(str(no_wandb_settings), "run")
    assert logger["class_path"].endswith("WandbLogger") and logger["init_args"]["offline"] is True
    assert logger["init_args"]["project"] == wandb_project() == "ssad"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert default_logger_config(str(no_wandb_settings), "run")["class_path"].endswith("CSVLogger")
