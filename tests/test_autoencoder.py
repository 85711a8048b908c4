"""The DCASE 2020 baseline autoencoder: its layer sizes and vector layout, outliers reconstructing worse, and a Lightning fit that saves and reloads."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from ssad.data.frame_windows import LogMelWindowDataModule
from ssad.models.autoencoder import BaselineAutoencoder, BaselineAutoencoderModule
from ssad.models.autoencoder.torch_model import flatten_windows
from ssad.models.base import CHECKPOINT_KEY

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAMPLE_RATE = 16000


def test_layer_sizes_are_the_baseline_s() -> None:
    model = BaselineAutoencoder()
    linears = [m for m in model.network if isinstance(m, nn.Linear)]
    widths = [(m.in_features, m.out_features) for m in linears]
    assert widths == [(640, 128)] + [(128, 128)] * 3 + [(128, 8), (8, 128)] + [(128, 128)] * 3 + [(128, 640)]
    norms = [m for m in model.network if isinstance(m, nn.BatchNorm1d)]
    assert [m.num_features for m in norms] == [128] * 4 + [8] + [128] * 4
    assert isinstance(model.network[-1], nn.Linear)  # linear output: no BatchNorm or ReLU after it
    assert all(torch.all(m.bias == 0) for m in linears)
    model.eval()
    assert model(torch.randn(3, 640)).shape == (3, 640)
    assert model.reconstruction_error(torch.randn(3, 640)).shape == (3,)
    with pytest.raises(ValueError, match=r"\(batch, 640\)"):
        model(torch.randn(3, 128))
    with pytest.raises(ValueError, match="bottleneck_dim=0"):
        BaselineAutoencoder(bottleneck_dim=0)


def test_windows_flatten_frame_major_as_the_baseline() -> None:
    # Entry (band m, frame t) holds 1000 t + m; the baseline's vector is frame 0's 128 bands, then frame 1's, ...
    windows = (1000 * torch.arange(5)[None, :] + torch.arange(128)[:, None]).float()[None]
    vector = flatten_windows(windows)[0]
    assert vector.shape == (640,)
    assert torch.equal(vector, torch.arange(640).float() // 128 * 1000 + torch.arange(640) % 128)


def auc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    """Area under the ROC curve: the chance that an anomalous score exceeds a normal one (ties count half)."""
    diff = anomalous[:, None] - normal[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


@pytest.mark.slow  # trains a model
def test_reconstruction_error_rises_on_outliers() -> None:
    torch.manual_seed(0)
    # Normal vectors lie near a 4-dimensional subspace; outliers add a narrow peak off it.
    basis = torch.randn(4, 640)

    def normal(n: int) -> torch.Tensor:
        return torch.randn(n, 4) @ basis + 0.1 * torch.randn(n, 640)

    model = BaselineAutoencoder()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    for _ in range(250):
        x = normal(128)
        loss = (model(x) - x).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    outliers = normal(200)
    bands = torch.randint(0, 640 - 16, (200,))
    for row, start in zip(outliers, bands, strict=True):
        row[start : start + 16] += 4.0
    with torch.no_grad():
        normal_scores = model.reconstruction_error(normal(200)).numpy()
        outlier_scores = model.reconstruction_error(outliers).numpy()
    assert auc(normal_scores, outlier_scores) > 0.9


def write_tiny_corpus(root: Path, clips: int = 6, seconds: float = 0.5) -> Path:
    """A DCASE 2020-style folder of short normal training clips (a tone plus noise)."""
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    folder = root / "ToyCar" / "train"
    folder.mkdir(parents=True)
    for n in range(clips):
        wave = 0.3 * np.sin(2 * np.pi * 700 * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(folder / f"normal_id_01_{n:08d}.wav", wave.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    return root


@pytest.mark.slow
def test_lightning_fit_save_and_reload(tmp_path: Path) -> None:
    root = write_tiny_corpus(tmp_path / "data")
    dm = LogMelWindowDataModule(str(root), batch_size=64, max_windows_per_clip=12)
    module = BaselineAutoencoderModule()
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(module, datamodule=dm)
    assert "train/loss" in trainer.callback_metrics and "val/loss" in trainer.callback_metrics
    assert module.window_frames == 5 and module.window_hop == 1

    path = tmp_path / "ae.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint[CHECKPOINT_KEY]["feature_params"]["n_mels"] == 128
    assert checkpoint[CHECKPOINT_KEY]["window_frames"] == 5
    reloaded = BaselineAutoencoderModule(**checkpoint["hyper_parameters"])
    reloaded.load_state_dict(checkpoint["state_dict"])
    module.eval()
    reloaded.eval()
    windows = next(iter(dm.train_dataloader()))
    with torch.no_grad():
        expected, got = module.window_outputs(windows), reloaded.window_outputs(windows)
    assert set(got) == {"anomaly_score"} and got["anomaly_score"].shape == (windows.shape[0],)
    assert torch.equal(expected["anomaly_score"], got["anomaly_score"])


def test_mismatched_data_is_refused(tmp_path: Path) -> None:
    root = write_tiny_corpus(tmp_path / "data", clips=3)
    dm = LogMelWindowDataModule(str(root), window_frames=3, features={"n_mels": 32})
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    with pytest.raises(ValueError, match="n_mels=32"):
        trainer.fit(BaselineAutoencoderModule(), datamodule=dm)
