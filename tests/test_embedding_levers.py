"""The classifier's levers for fault-sensitive embeddings: AdaCos heads, the stats branch, mixup, clip pooling."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ssad.models.classifier.torch_model import MachineIDNet
from ssad.models.components import AdaCosHead, AdaProjHead
from ssad.models.components.stats_branch import SpectralStatsBranch


def test_adacos_starts_at_its_fixed_point_scale_and_adapts_in_training() -> None:
    """Initial s = sqrt(2) log(C K - 1); a training batch moves it; eval batches and no labels leave it."""
    torch.manual_seed(0)
    head = AdaCosHead(8, num_classes=5, n_subclusters=3)
    assert float(head.scale) == pytest.approx(math.sqrt(2) * math.log(5 * 3 - 1))
    embedding, labels = torch.randn(16, 8), torch.randint(0, 5, (16,))
    before = float(head.scale)
    head.eval()
    head(embedding, labels)
    assert float(head.scale) == before
    head.train()
    head(embedding)
    assert float(head.scale) == before
    head(embedding, labels)
    assert float(head.scale) != before and math.isfinite(float(head.scale))


def test_subcluster_logits_are_log_sum_exp_of_centre_cosines() -> None:
    """A class's probability is the sum of its centres' probabilities."""
    torch.manual_seed(0)
    head = AdaCosHead(6, num_classes=3, n_subclusters=2).eval()
    embedding = torch.randn(4, 6)
    cosine = F.normalize(embedding, dim=1) @ F.normalize(head.weight, dim=1).T
    centre_probs = torch.softmax(head.scale * cosine, dim=1).reshape(4, 3, 2).sum(-1)
    torch.testing.assert_close(torch.softmax(head(embedding), dim=1), centre_probs)


def test_adacos_centres_are_fixed_unless_trainable() -> None:
    assert not any(p is AdaCosHead(4, 2).weight for p in AdaCosHead(4, 2).parameters())
    assert isinstance(AdaCosHead(4, 2, trainable_centres=True).weight, torch.nn.Parameter)
    with pytest.raises(ValueError, match="n_subclusters"):
        AdaCosHead(4, 2, n_subclusters=0)


def test_adaproj_cosine_is_the_projection_onto_each_class_subspace() -> None:
    """A vector inside a class's subspace has cosine 1 to it; a random one |P x| / |x|; the scale is AdaCos's."""
    torch.manual_seed(0)
    head = AdaProjHead(12, num_classes=4, subspace_dim=3).eval()
    assert float(head.scale) == pytest.approx(math.sqrt(2) * math.log(4 - 1))
    bases = head.weight.reshape(4, 3, 12)
    torch.testing.assert_close(bases @ bases.transpose(1, 2), torch.eye(3).expand(4, 3, 3), atol=1e-5, rtol=0)
    inside = 2.5 * (torch.tensor([0.3, -1.0, 0.4]) @ bases[2])
    assert float(head.cosine(inside[None])[0, 2, 0]) == pytest.approx(1.0, abs=1e-5)
    x = torch.randn(5, 12)
    expected = torch.stack([(x @ bases[c].T).norm(dim=1) / x.norm(dim=1) for c in range(4)], dim=1)
    torch.testing.assert_close(head.cosine(x)[..., 0], expected)
    torch.testing.assert_close(head(x), head.scale * expected)
    with pytest.raises(ValueError, match="subspace_dim"):
        AdaProjHead(4, 2, subspace_dim=5)


def test_stats_branch_sees_band_means_and_spreads() -> None:
    """Two windows with the same mean spectrum but different spread give different features."""
    torch.manual_seed(0)
    branch = SpectralStatsBranch(32, out_features=16).eval()
    flat = torch.zeros(1, 32, 40)
    bursty = torch.zeros(1, 32, 40)
    bursty[..., ::2] = 1.0
    bursty[..., 1::2] = -1.0
    out = branch(torch.cat([flat, bursty]))
    assert out.shape == (2, 16)
    assert not torch.allclose(out[0], out[1])


@pytest.mark.slow  # trains a model
@pytest.mark.parametrize(("backbone", "head"), [("mobilenetv2", "adacos"), ("none", "adacos"), ("none", "adaproj")])
def test_net_with_stats_branch_and_angular_head_trains(backbone: str, head: str, one_torch_thread: None) -> None:
    """The two-branch net (or the stats branch alone) learns to tell two classes apart."""
    torch.manual_seed(0)
    net = MachineIDNet(2, backbone=backbone, head=head, n_subclusters=2, subspace_dim=2, n_mels=32,
                       embedding_dim=8, width_mult=0.25, last_channels=None, stats_branch=True)
    x = torch.randn(16, 32, 24)
    x[8:, :8] += 2.0
    y = torch.tensor([0] * 8 + [1] * 8)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(40):
        logits, _ = net(x, y)
        loss = F.cross_entropy(logits, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    net.eval()
    assert (net(x)[0].argmax(1) == y).float().mean() == 1.0


@pytest.mark.slow
def test_mixup_classifier_fits_from_the_cli(tiny_root: Path, tmp_path: Path, one_torch_thread: None) -> None:
    """`--model.mixup_alpha` with the AdaCos head and the stats branch trains and leaves a loadable run."""
    import ssad
    from ssad.cli import main

    config = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    code = main(["fit", "--config", str(config), "--data.root", str(tiny_root), "--trainer.default_root_dir",
                 str(tmp_path), "--trainer.max_epochs", "1", "--model.head", "adacos", "--model.n_subclusters", "2",
                 "--model.stats_branch", "true", "--model.mixup_alpha", "0.5", "--trainer.enable_progress_bar", "false"])
    assert code == 0
    model = ssad.load(tmp_path)
    clip = next((tiny_root / "fan" / "test").glob("*.wav"))
    embedding = model.embed(clip)
    assert embedding.shape == (2 * model.module.net.embedding_dim,) and torch.isfinite(torch.as_tensor(embedding)).all()


@pytest.mark.slow  # the ONNX exporter takes seconds
def test_adaproj_head_exports_to_onnx_with_any_batch(tmp_path: Path) -> None:
    """The head's reshape keeps the batch dynamic, as `ssad export` needs."""
    import onnxruntime

    head = AdaProjHead(16, num_classes=5, subspace_dim=4).eval()
    path = tmp_path / "head.onnx"
    torch.onnx.export(head, (torch.randn(2, 16),), path, dynamo=True, input_names=["embedding"],
                      output_names=["logits"], dynamic_shapes={"embedding": {0: torch.export.Dim("batch")}})
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    embedding = torch.randn(7, 16)
    (logits,) = session.run(None, {"embedding": embedding.numpy()})
    torch.testing.assert_close(torch.from_numpy(logits), head(embedding), atol=1e-5, rtol=1e-5)


def test_cnn_frames_crops_the_cnn_input_in_training_only() -> None:
    """With `cnn_frames` the CNN sees one contiguous crop per example in training and the whole window otherwise."""
    torch.manual_seed(0)
    net = MachineIDNet(3, n_mels=16, embedding_dim=8, width_mult=0.25, last_channels=None, stats_branch=True,
                       cnn_frames=10)
    x = torch.arange(4 * 16 * 40, dtype=torch.float32).reshape(4, 16, 40)
    net.train()
    crops = net._cnn_input(x)
    assert crops.shape == (4, 16, 10)
    for example, crop in zip(x, crops, strict=True):
        start = int(crop[0, 0] - example[0, 0])
        assert torch.equal(crop, example[:, start:start + 10])
    assert net(x)[1].shape == (4, 8)
    net.eval()
    assert torch.equal(net._cnn_input(x), x)
    with pytest.raises(ValueError, match="cnn_frames"):
        MachineIDNet(3, n_mels=16, cnn_frames=4)


def test_ensemble_members_start_apart_and_their_embeddings_sit_side_by_side() -> None:
    """Each member has its own initialisation; the embedding is theirs concatenated, the logits their mean."""
    from ssad.models.classifier.torch_model import MachineIDEnsemble

    torch.manual_seed(0)
    ensemble = MachineIDEnsemble(3, num_classes=4, n_mels=16, embedding_dim=8, width_mult=0.25,
                                 last_channels=None, head="adacos", stats_branch=True).eval()
    first, second = (m.embedding[1].weight for m in ensemble.members[:2])
    assert not torch.equal(first, second)
    x = torch.randn(5, 16, 12)
    logits, embedding = ensemble(x)
    assert embedding.shape == (5, 24) and ensemble.embedding_dim == 24
    torch.testing.assert_close(embedding, torch.cat([m.embed(x) for m in ensemble.members], dim=1))
    torch.testing.assert_close(logits, torch.stack([m(x)[0] for m in ensemble.members]).mean(0))
    torch.testing.assert_close(ensemble.log_probs(x), F.log_softmax(logits, dim=1))
    with pytest.raises(ValueError, match="n_members"):
        MachineIDEnsemble(0, num_classes=4, n_mels=16)


@pytest.mark.slow
def test_ensemble_classifier_trains_each_member_and_starts_from_one_network(
    tiny_root: Path, tiny_run: Path, tmp_path: Path, one_torch_thread: None
) -> None:
    """`--model.n_members 2` trains both members and gives their joint embedding; `init_from` a single network
    starts every member from its weights."""
    import ssad
    from ssad.cli import main
    from ssad.models import MachineIDClassifier

    config = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    code = main(["fit", "--config", str(config), "--data.root", str(tiny_root), "--trainer.default_root_dir",
                 str(tmp_path), "--trainer.max_epochs", "1", "--model.n_members", "2"])
    assert code == 0
    model = ssad.load(tmp_path)
    members = model.module.net.members
    assert len(members) == 2 and not torch.equal(members[0].embedding[1].weight, members[1].embedding[1].weight)
    clip = next((tiny_root / "fan" / "test").glob("*.wav"))
    assert model.embed(clip).shape == (2 * 2 * 32,)  # two members, each window's mean and spread

    single = ssad.load(tiny_run).module
    hp = single.hparams
    ensemble = MachineIDClassifier(backbone=hp.backbone, width_mult=hp.width_mult, last_channels=hp.last_channels,
                                   embedding_dim=hp.embedding_dim, head=hp.head, n_members=2,
                                   class_names=single.class_names, n_mels=hp.n_mels, window_frames=hp.window_frames)
    ensemble._initialise_from(str(tiny_run))
    source = single.net.state_dict()
    for member in ensemble.net.members:
        for key, value in member.state_dict().items():
            if not key.startswith("head."):
                assert torch.equal(value, source[key]), key


def test_mean_std_clip_pooling_keeps_how_a_clip_varies_over_its_windows() -> None:
    """Two clips with the same mean window embedding: "mean" pools them alike, "mean_std" tells them apart by their
    spread; the softmax outputs stay averaged, and a window explains itself beside its clip's spread."""
    from ssad.models import MachineIDClassifier

    steady = torch.zeros(4, 3)
    steady[:, 0] = 1.0
    varying = steady.clone()
    varying[:2, 1], varying[2:, 1] = 1.0, -1.0
    mean, both = MachineIDClassifier(), MachineIDClassifier(clip_pooling="mean_std")
    torch.testing.assert_close(mean.pool_windows("embedding", varying), mean.pool_windows("embedding", steady))
    pooled = both.pool_windows("embedding", varying)
    torch.testing.assert_close(pooled, torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))
    torch.testing.assert_close(both.pool_windows("embedding", steady), torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(both.pool_windows("embedding", varying[:1]), torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(both.pool_windows("neg_log_prob", varying), varying.mean(0))
    rows = both.window_rows("embedding", varying)
    torch.testing.assert_close(rows, torch.cat([varying, pooled[3:].expand(4, 3)], dim=1))
    torch.testing.assert_close(mean.window_rows("embedding", varying), varying)
    with pytest.raises(ValueError, match="clip_pooling"):
        MachineIDClassifier(clip_pooling="max")


@pytest.mark.parametrize(("longest_frames", "pooling"), [(32, "mean"), (64, "mean"), (95, "mean"), (96, "mean_std"),
                                                         (313, "mean_std")])
def test_mean_std_pooling_falls_back_to_the_mean_when_every_training_clip_is_one_window(longest_frames: int,
                                                                                         pooling: str) -> None:
    """64-frame windows every 32 frames: a clip needs 96 frames for a second window, and so a spread."""
    from ssad.models import MachineIDClassifier

    model = MachineIDClassifier(clip_pooling="mean_std", window_frames=64)
    model._settle_clip_pooling(longest_frames)
    assert model.hparams.clip_pooling == pooling


@pytest.mark.slow
def test_a_trained_run_embeds_a_clip_as_its_windows_mean_and_spread(tiny_run: Path, tiny_root: Path) -> None:
    """configs/tiny.yaml pools as the demo does: a 2-s clip's embedding is its windows' mean beside their spread."""
    import ssad

    model = ssad.load(tiny_run)
    clip = sorted((tiny_root / "valve" / "test").glob("anomaly_*.wav"))[0]
    per_window, counts = model.per_window_outputs(model.log_mels([clip]))
    windows = per_window["embedding"]
    assert counts == [len(windows)] and len(windows) >= 2
    expected = torch.cat([windows.mean(0), windows.std(0, unbiased=False)]).numpy()
    assert model.embed(clip).shape == expected.shape == (2 * windows.shape[1],)
    assert float(expected[windows.shape[1]:].max()) > 0
    torch.testing.assert_close(torch.from_numpy(model.embed(clip)), torch.from_numpy(expected), rtol=1e-5, atol=1e-6)
