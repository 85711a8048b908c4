"""Group MADE: masks keep it autoregressive over groups, its density is normalised and fits a known Gaussian; the window data module and the Lightning module train, save and reload."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch

from ssad.core.errors import BadInputError
from ssad.data.frame_windows import LogMelWindowDataModule
from ssad.models.base import CHECKPOINT_KEY
from ssad.models.made import GroupMADE, GroupMADEModule

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAMPLE_RATE = 16000


def write_tiny_corpus(
    root: Path, ids: tuple[str, ...] = ("00", "02"), clips_per_id: int = 5, seconds: float = 0.5
) -> Path:
    """A DCASE 2020-style folder of short normal training clips (tones plus noise), one tone per machine ID."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    folder = root / "fan" / "train"
    folder.mkdir(parents=True)
    for k, machine_id in enumerate(ids):
        for n in range(clips_per_id):
            wave = 0.3 * np.sin(2 * np.pi * (400 + 300 * k) * t) + 0.05 * rng.standard_normal(t.size)
            sf.write(
                folder / f"normal_id_{machine_id}_{n:08d}.wav",
                wave.astype(np.float32),
                SAMPLE_RATE,
                subtype="PCM_16",
            )
    (root / "fan" / "test").mkdir()
    sf.write(root / "fan" / "test" / "anomaly_id_00_00000000.wav", np.zeros(t.size, np.float32), SAMPLE_RATE)
    return root


def ranks(model: GroupMADE, ordering: int) -> torch.Tensor:
    """Position in `ordering` of each input dimension's group."""
    perm = model.orderings[ordering]
    rank_of_group = torch.empty_like(perm)
    rank_of_group[perm] = torch.arange(model.num_groups)
    return rank_of_group[model.group_of_dim]


def stacked_params(model: GroupMADE, x: torch.Tensor, ordering: int) -> torch.Tensor:
    """(batch, 3 * components, D): every output of the network, per input dimension."""
    return torch.cat(tuple(model(x, ordering)), dim=1)


FORMS = [
    pytest.param({"group": "frame"}, id="frame"),
    pytest.param({"group": "bands", "band_group_size": 3}, id="bands"),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("ordering", ["natural", "reverse", "random"])
def test_mask_product_has_no_path_to_same_or_later_groups(form: dict, ordering: str) -> None:
    model = GroupMADE(
        n_mels=8,
        context_frames=3,
        hidden_sizes=(24, 16),
        ordering=ordering,
        num_orderings=3,
        n_components=2,
        **form,
    )
    for k in range(model.num_orderings):
        rank = ranks(model, k)
        paths = model.connectivity(k)
        earlier = rank[:, None] > rank[None, :]  # [output dim, input dim]: input's group strictly earlier
        assert torch.all(paths[~earlier] == 0)
        assert torch.all(paths[earlier] > 0)  # and every allowed dependency is reachable


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("ordering", ["natural", "reverse", "random"])
def test_outputs_depend_only_on_earlier_groups(form: dict, ordering: str) -> None:
    torch.manual_seed(0)
    model = GroupMADE(
        n_mels=8,
        context_frames=3,
        hidden_sizes=(32, 32),
        ordering=ordering,
        num_orderings=2,
        n_components=2,
        **form,
    )
    x = torch.randn(4, 8, 3)
    for k in range(model.num_orderings):
        rank = ranks(model, k)
        base = stacked_params(model, x, k)
        for g in range(model.num_groups):
            # Perturb the inputs of the g-th group in the ordering and of every later one.
            perturbed = model.flatten(x).clone()
            perturbed[:, rank >= g] += torch.randn(4, int((rank >= g).sum())) * 5
            windows = perturbed.view(4, 3, 8).transpose(1, 2)
            out = stacked_params(model, windows, k)
            assert torch.allclose(out[..., rank <= g], base[..., rank <= g], atol=1e-6)
            if g < model.num_groups - 1:
                assert not torch.allclose(out[..., rank > g], base[..., rank > g])
        # The first group's density is unconditional: the same for any input.
        first = rank == 0
        other = stacked_params(model, torch.randn(4, 8, 3) * 10, k)
        assert torch.allclose(other[..., first], base[..., first], atol=1e-6)
        assert torch.allclose(base[..., first], base[:1, :, first].expand_as(base[..., first]), atol=1e-6)


def test_set_ordering_and_orderings_average() -> None:
    model = GroupMADE(n_mels=4, context_frames=4, hidden_sizes=(16,), num_orderings=3)
    assert model.orderings[0].tolist() == [0, 1, 2, 3]
    assert GroupMADE(n_mels=4, context_frames=4, ordering="reverse").orderings[0].tolist() == [3, 2, 1, 0]
    model.set_ordering([2, 0, 3, 1], index=1)
    assert model.orderings[1].tolist() == [2, 0, 3, 1]
    paths = model.connectivity(1)
    rank = ranks(model, 1)
    assert torch.all(paths[~(rank[:, None] > rank[None, :])] == 0)
    x = torch.randn(5, 4, 4)
    per_ordering = torch.stack([model.log_prob(x, k) for k in range(3)])
    assert torch.allclose(model.log_prob(x), per_ordering.mean(0), atol=1e-5)
    assert model.nll_per_dim(x).shape == (5, 16)
    with pytest.raises(ValueError, match="permutation"):
        model.set_ordering([0, 0, 1, 2])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"group": "rows"}, "group='rows'"),
        ({"ordering": "sorted"}, "ordering='sorted'"),
        ({"group": "bands", "band_group_size": 0}, "band_group_size=0"),
        ({"n_components": 0}, "n_components=0"),
        ({"num_orderings": 0}, "num_orderings=0"),
    ],
)
def test_bad_arguments_name_the_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GroupMADE(n_mels=8, **kwargs)


def test_wrong_window_shape_raises() -> None:
    with pytest.raises(ValueError, match=r"\(batch, 8, 5\)"):
        GroupMADE(n_mels=8)(torch.randn(2, 5, 8))


def test_mixture_density_integrates_to_one() -> None:
    torch.manual_seed(0)
    # One dimension, one group: an unconditional three-component mixture, checked against the analytic density.
    model = GroupMADE(n_mels=1, context_frames=1, hidden_sizes=(8,), n_components=3)
    with torch.no_grad():
        model.layers[-1].bias.copy_(torch.tensor([0.5, -1.0, 0.0, -3.0, 0.0, 2.5, -1.0, 0.0, 0.5]))
    grid = torch.linspace(-25, 25, 20001, dtype=torch.float64)
    model = model.double()
    log_p = model.log_prob(grid.view(-1, 1, 1))
    assert torch.isfinite(log_p).all()
    assert torch.trapezoid(log_p.exp(), grid).item() == pytest.approx(1.0, abs=1e-4)
    logits, means, log_vars = (p[0, :, 0] for p in model(grid[:1].view(1, 1, 1)))
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=logits),
        torch.distributions.Normal(means, (0.5 * log_vars).exp()),
    )
    assert torch.allclose(log_p, mixture.log_prob(grid), atol=1e-8)

    # Two frames of one band: the conditional mixture of frame 1 given frame 0 integrates too.
    model = GroupMADE(
        n_mels=1, context_frames=2, hidden_sizes=(16, 16), n_components=2, ordering="reverse"
    ).double()
    axis = torch.linspace(-12, 12, 481, dtype=torch.float64)
    a, b = torch.meshgrid(axis, axis, indexing="ij")
    windows = torch.stack([a.flatten(), b.flatten()], dim=1).view(-1, 1, 2)
    density = model.log_prob(windows).exp().view(481, 481)
    assert torch.trapezoid(torch.trapezoid(density, axis), axis).item() == pytest.approx(1.0, abs=1e-3)


def gaussian_entropy_per_dim(covariance: np.ndarray) -> float:
    """Differential entropy of N(0, covariance) in nats, divided by the dimension."""
    d = covariance.shape[0]
    return 0.5 * (d * math.log(2 * math.pi * math.e) + np.linalg.slogdet(covariance)[1]) / d


def fit(model: GroupMADE, sample: Callable[[int], torch.Tensor], steps: int, lr: float = 1e-2) -> float:
    """Train on fresh draws of `sample(n)` for `steps` Adam steps; return the mean NLL per dimension on a held-out draw."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        loss = model.nll_per_dim(sample(256)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        return model.nll_per_dim(sample(20000)).mean().item()


@pytest.mark.slow  # trains a model
def test_fit_approaches_the_entropy_of_a_known_gaussian() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    # Frame 1 = A @ frame 0 + noise, bands independent within frame 0: the frame-group factorisation is exact.
    scales0 = np.array([1.0, 0.5, 2.0, 1.0])
    scales1 = np.array([0.3, 0.5, 0.4, 0.6])
    mixing = 0.5 * rng.standard_normal((4, 4))
    cov0 = np.diag(scales0**2)
    cross = mixing @ cov0
    covariance = np.block([[cov0, cross.T], [cross, mixing @ cov0 @ mixing.T + np.diag(scales1**2)]])
    m = torch.tensor(mixing, dtype=torch.float32)

    def frames(n: int) -> torch.Tensor:
        f0 = torch.randn(n, 4) * torch.tensor(scales0, dtype=torch.float32)
        f1 = f0 @ m.T + torch.randn(n, 4) * torch.tensor(scales1, dtype=torch.float32)
        return torch.stack([f0, f1], dim=2)  # (n, bands, frames)

    model = GroupMADE(n_mels=4, context_frames=2, group="frame", hidden_sizes=(64, 64))
    nll = fit(model, frames, steps=300)
    entropy = gaussian_entropy_per_dim(covariance)
    assert entropy - 0.01 < nll < entropy + 0.03

    # A fully correlated Gaussian needs one dimension per group (group="bands", size 1): plain MADE.
    chol = np.linalg.cholesky(0.5 * np.eye(8) + 0.5 * np.ones((8, 8)) + 0.3 * np.diag(rng.random(8)))
    c = torch.tensor(chol, dtype=torch.float32)

    def correlated(n: int) -> torch.Tensor:
        return (torch.randn(n, 8) @ c.T).view(n, 2, 4).transpose(1, 2)

    model = GroupMADE(
        n_mels=4, context_frames=2, group="bands", band_group_size=1, hidden_sizes=(64, 64), ordering="random"
    )
    nll = fit(model, correlated, steps=300)
    entropy = gaussian_entropy_per_dim(chol @ chol.T)
    assert entropy - 0.01 < nll < entropy + 0.03


def test_window_data_module_splits_by_clip(tmp_path: Path) -> None:
    root = write_tiny_corpus(tmp_path / "data")
    kwargs = dict(
        root=str(root), features={"n_mels": 16}, window_frames=3, val_fraction=0.2, max_windows_per_clip=7
    )
    dm = LogMelWindowDataModule(**kwargs)
    dm.setup("fit")
    assert dm.n_mels == 16 and dm.feature_params["n_mels"] == 16
    assert len(dm.train_clips) == 8 and len(dm.val_clips) == 2
    assert {c.machine_id for c in dm.val_clips} == {"id_00", "id_02"}  # one per machine
    assert not {c.path for c in dm.train_clips} & {c.path for c in dm.val_clips}
    assert all(c.split == "train" and c.label == "normal" for c in dm.train_clips + dm.val_clips)
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (56, 16, 3)
    assert dm.frame_mean.shape == dm.frame_std.shape == (16,)
    again = LogMelWindowDataModule(**kwargs)
    again.setup("fit")
    assert [c.path for c in again.val_clips] == [c.path for c in dm.val_clips]
    assert torch.equal(again._train.starts, dm._train.starts)
    only = LogMelWindowDataModule(**(kwargs | {"machine_ids": ["id_02"]}))
    only.setup("fit")
    assert {c.machine_id for c in only.train_clips} == {"id_02"}
    with pytest.raises(ValueError, match="val_fraction=1.5"):
        LogMelWindowDataModule(str(root), val_fraction=1.5)
    with pytest.raises(BadInputError, match="id_09"):
        LogMelWindowDataModule(**(kwargs | {"machine_ids": "id_09"})).setup("fit")


def test_window_data_module_skips_bad_files_only_when_asked(tmp_path: Path) -> None:
    root = write_tiny_corpus(tmp_path / "data")
    (root / "fan" / "train" / "normal_id_00_00000099.wav").write_bytes(b"")
    with pytest.raises(BadInputError, match="normal_id_00_00000099"):
        LogMelWindowDataModule(str(root), features={"n_mels": 16}).setup("fit")
    dm = LogMelWindowDataModule(str(root), features={"n_mels": 16}, skip_bad=True)
    dm.setup("fit")
    assert len(dm.train_clips) + len(dm.val_clips) == 10


@pytest.mark.slow
def test_lightning_fit_save_and_reload(tmp_path: Path) -> None:
    root = write_tiny_corpus(tmp_path / "data")
    dm = LogMelWindowDataModule(
        str(root), features={"n_mels": 16}, window_frames=3, batch_size=64, max_windows_per_clip=10
    )
    module = GroupMADEModule(n_mels=16, context_frames=3, hidden_sizes=[32], n_components=2, num_orderings=2)
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(module, datamodule=dm)
    assert torch.allclose(module.frame_mean, dm.frame_mean) and bool(module.normaliser_fitted)
    assert "train/loss" in trainer.callback_metrics and "val/loss" in trainer.callback_metrics

    path = tmp_path / "made.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint[CHECKPOINT_KEY]["window_frames"] == 3
    assert checkpoint[CHECKPOINT_KEY]["feature_params"]["n_mels"] == 16
    reloaded = GroupMADEModule(**checkpoint["hyper_parameters"])
    reloaded.load_state_dict(checkpoint["state_dict"])
    module.eval()
    reloaded.eval()
    windows = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        expected, got = module.window_outputs(windows), reloaded.window_outputs(windows)
    assert set(got) == set(GroupMADEModule.output_names) == {"anomaly_score"}
    assert got["anomaly_score"].shape == (windows.shape[0],)
    assert torch.equal(expected["anomaly_score"], got["anomaly_score"])
    assert reloaded.window_frames == 3 and reloaded.window_hop == 1
