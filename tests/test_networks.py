"""Networks: backbone and head shapes, eval-mode batch independence, ArcFace margin, trainability, bad options."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssad.models.classifier.torch_model import BACKBONES, HEADS, MachineIDNet
from ssad.models.components import (
    MOBILENETV2_SMALL_SETTINGS,
    ArcFaceHead,
    MobileNetV2Backbone,
    ResNetBackbone,
    SoftmaxHead,
)

N_MELS, FRAMES, BATCH = 64, 32, 3
SMALL_RESNET = {"resnet_channels": (16, 32, 64), "resnet_blocks": (1, 1, 1)}
SMALL_MOBILENET = {"width_mult": 0.5, "mobilenet_settings": MOBILENETV2_SMALL_SETTINGS, "last_channels": None}


def small_net(
    backbone: str = "mobilenetv2", head: str = "softmax", num_classes: int = 4, **kwargs
) -> MachineIDNet:
    """A fast MachineIDNet on 64-mel input."""
    options = SMALL_MOBILENET if backbone == "mobilenetv2" else SMALL_RESNET
    return MachineIDNet(
        num_classes, backbone=backbone, head=head, n_mels=N_MELS, embedding_dim=16, **options, **kwargs
    )


@pytest.mark.parametrize(
    "shape", [(3, 1, 64, 32), (2, 1, 128, 32), (2, 1, 64, 16), (2, 1, 8, 4), (1, 1, 1, 1)]
)
@pytest.mark.parametrize(
    "backbone",
    [
        lambda: MobileNetV2Backbone(),
        lambda: MobileNetV2Backbone(0.5, settings=MOBILENETV2_SMALL_SETTINGS, last_channels=None),
        lambda: ResNetBackbone(),
        lambda: ResNetBackbone((8, 16), (1, 1), freq_pool="mean"),
    ],
    ids=["mobilenetv2", "mobilenetv2-small", "resnet", "resnet-small-meanpool"],
)
def test_backbones_pool_to_vector_without_collapsing(backbone, shape: tuple[int, ...]) -> None:
    """Even tiny spectrograms give a finite (B, out_channels) vector: no spatial size reaches zero."""
    torch.manual_seed(0)
    model = backbone().eval()
    out = model(torch.randn(shape))
    assert out.shape == (shape[0], model.out_channels)
    assert torch.isfinite(out).all()


def test_backbone_channel_counts() -> None:
    """out_channels follows the width multiplier, `last_channels` and the stage channels."""
    assert MobileNetV2Backbone().out_channels == 1280
    assert MobileNetV2Backbone(2.0).out_channels == 2560
    assert MobileNetV2Backbone(last_channels=None).out_channels == 320
    assert MobileNetV2Backbone(0.5, last_channels=None).out_channels == 160
    assert ResNetBackbone().out_channels == 256
    assert ResNetBackbone(channels=(8, 24), blocks_per_stage=(1, 3)).out_channels == 24


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_machine_id_net_shapes(backbone: str, head: str) -> None:
    """forward -> (logits, embedding); embed and log_probs agree with it."""
    torch.manual_seed(0)
    model = small_net(backbone, head).eval()
    x = torch.randn(BATCH, N_MELS, FRAMES)
    logits, embedding = model(x)
    assert logits.shape == (BATCH, 4)
    assert embedding.shape == (BATCH, 16)
    torch.testing.assert_close(model.embed(x), embedding)
    log_probs = model.log_probs(x)
    assert log_probs.shape == (BATCH, 4)
    torch.testing.assert_close(log_probs.exp().sum(dim=1), torch.ones(BATCH))
    torch.testing.assert_close(log_probs, F.log_softmax(logits, dim=1))
    train_logits, _ = model(x, torch.tensor([0, 1, 3]))
    assert train_logits.shape == (BATCH, 4)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_eval_is_deterministic_and_batch_independent(backbone: str) -> None:
    """In eval mode a clip's embedding and log-probs are the same alone, in a batch, and on a second call."""
    torch.manual_seed(0)
    model = small_net(backbone, dropout=0.3)
    x = torch.randn(5, N_MELS, FRAMES) * 10 - 40
    with torch.no_grad():
        for _ in range(3):  # move the BatchNorm running statistics away from their initial values
            model(x)
    model.eval()
    with torch.no_grad():
        batch = model.embed(x)
        torch.testing.assert_close(model.embed(x), batch, rtol=0, atol=0)
        for i in range(len(x)):
            torch.testing.assert_close(model.embed(x[i : i + 1]), batch[i : i + 1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.log_probs(x[2:3]), model.log_probs(x)[2:3], rtol=1e-5, atol=1e-5)


def test_arcface_margin_and_inference_logits() -> None:
    """With labels only the target logit drops (below s*cos); without labels the logits are s*cos."""
    torch.manual_seed(0)
    head = ArcFaceHead(8, 5, scale=30.0, margin=0.5)
    embedding = torch.randn(6, 8)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    cosine = F.normalize(embedding, dim=1) @ F.normalize(head.weight, dim=1).T
    plain = head(embedding)
    torch.testing.assert_close(plain, 30.0 * cosine)
    torch.testing.assert_close(head.cosine(embedding), cosine)
    margined = head(embedding, labels)
    rows = torch.arange(6)
    assert (margined[rows, labels] < plain[rows, labels]).all()
    target = F.one_hot(labels, 5).bool()
    torch.testing.assert_close(margined[~target], plain[~target])
    # where theta + m stays below pi the target logit is exactly s * cos(theta + m)
    theta = torch.acos(cosine[rows, labels].clamp(-1, 1))
    ok = theta + 0.5 < math.pi
    torch.testing.assert_close(margined[rows, labels][ok], 30.0 * torch.cos(theta + 0.5)[ok])


@pytest.mark.parametrize("easy_margin", [False, True])
def test_arcface_is_numerically_safe_at_the_extremes(easy_margin: bool) -> None:
    """Embeddings on (or opposite to) a class centre give finite logits and gradients."""
    head = ArcFaceHead(4, 2, margin=0.5, easy_margin=easy_margin)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    embedding = torch.tensor([[2.0, 0, 0, 0], [-3.0, 0, 0, 0], [0, 0, 1.0, 0]], requires_grad=True)
    logits = head(embedding, torch.tensor([0, 0, 1]))
    F.cross_entropy(logits, torch.tensor([0, 0, 1])).backward()
    assert torch.isfinite(logits).all()
    assert torch.isfinite(embedding.grad).all() and torch.isfinite(head.weight.grad).all()
    # cos(theta) = -1 is past the threshold: the target logit falls back below s * cos(theta), not above it
    assert logits[1, 0] <= -30.0


def test_softmax_head_is_linear_and_ignores_labels() -> None:
    """Softmax logits are the same with or without labels."""
    torch.manual_seed(0)
    head = SoftmaxHead(8, 3)
    embedding = torch.randn(4, 8)
    torch.testing.assert_close(head(embedding, torch.tensor([0, 1, 2, 0])), head(embedding))
    torch.testing.assert_close(head(embedding), head.linear(embedding))


@pytest.mark.slow  # trains a model
@pytest.mark.parametrize(
    ("backbone", "head"), [("mobilenetv2", "softmax"), ("resnet", "softmax"), ("mobilenetv2", "arcface")]
)
def test_overfits_a_tiny_batch(backbone: str, head: str) -> None:
    """Gradients reach every parameter, and 30 Adam steps fit 8 random examples of 2 classes (train-mode loss)."""
    torch.manual_seed(0)
    model = small_net(backbone, head, num_classes=2)
    x = torch.randn(8, N_MELS, FRAMES // 2)
    labels = torch.tensor([0, 1] * 4)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        logits, _ = model(x, labels)
        loss = F.cross_entropy(logits, labels)
        optimiser.zero_grad()
        loss.backward()
        if step == 0:
            missing = [
                name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
            ]
            assert not missing, f"no gradient reached {missing}"
        optimiser.step()
        losses.append(loss.item())
    # train-mode loss only: a net overfitting 8 random inputs leans on razor-thin margins that BatchNorm's
    # running (unbiased) variance, used in eval mode, can flip; real data and batches do not behave so
    assert losses[-1] < 0.5 * losses[0], losses
    assert min(losses[:5]) > min(losses[-5:]), losses


@pytest.mark.parametrize(
    ("build", "allowed"),
    [
        (lambda: MachineIDNet(3, backbone="vgg"), ["mobilenetv2", "resnet"]),
        (lambda: MachineIDNet(3, head="cosface"), ["softmax", "arcface"]),
        (lambda: MachineIDNet(3, freq_pool="median"), ["max", "mean"]),
        (lambda: MobileNetV2Backbone(freq_pool="median"), ["max", "mean"]),
        (lambda: MachineIDNet(3, time_pool="median"), ["mean", "meanmax"]),
        (lambda: MobileNetV2Backbone(settings=[(6, 32, 2, 3)]), ["(1, 2)"]),
        (lambda: MobileNetV2Backbone(width_mult=0), ["width_mult"]),
        (lambda: ResNetBackbone(channels=(8, 16), blocks_per_stage=(1,)), ["equal length"]),
        (lambda: ArcFaceHead(8, 2, margin=-0.1), ["[0, pi)"]),
        (lambda: ArcFaceHead(8, 2, scale=0.0), ["scale"]),
        (lambda: SoftmaxHead(0, 2), ["embedding_dim"]),
    ],
)
def test_invalid_options_raise(build, allowed: list[str]) -> None:
    """Bad options raise ValueError naming the bad value and what is allowed."""
    with pytest.raises(ValueError) as error:
        build()
    for word in allowed:
        assert word in str(error.value)


def test_wrong_input_shape_raises() -> None:
    """The network checks its (B, n_mels, frames) input instead of failing deep inside."""
    model = small_net().eval()
    with pytest.raises(ValueError, match=f"batch, {N_MELS}, frames"):
        model(torch.randn(2, N_MELS + 1, FRAMES))
    with pytest.raises(ValueError, match="labels must have shape"):
        model(torch.randn(2, N_MELS, FRAMES), torch.tensor([0, 1, 0]))


@pytest.mark.parametrize("n_mels", [64, 128])
def test_flatten_pooling_keeps_frequency_position(n_mels: int) -> None:
    torch.manual_seed(0)
    net = MachineIDNet(num_classes=3, width_mult=0.25, last_channels=32, embedding_dim=8, n_mels=n_mels,
                       freq_pool="flatten").eval()
    x = torch.randn(2, n_mels, 24)
    assert net.embed(x).shape == (2, 8)
    pooled = net.backbone(net.input_norm(x).unsqueeze(1))
    assert pooled.shape[1] == net.embedding[1].in_features > net.backbone.out_channels


def test_time_pool_meanmax_keeps_a_burst_that_the_mean_dilutes() -> None:
    from ssad.models.components.mobilenet import TimeFrequencyPool

    steady = torch.ones(1, 2, 3, 16)
    burst = steady.clone()
    burst[..., 5] = 9.0  # one frame of a click
    mean, both = TimeFrequencyPool("max", "mean"), TimeFrequencyPool("max", "meanmax")
    assert both(steady).shape == (1, 4) and mean(steady).shape == (1, 2)
    assert torch.allclose(both(steady)[:, 2:], both(steady)[:, :2])
    assert both(burst)[0, 2] == 9.0 and mean(burst)[0, 0] == 1.5
    net = small_net(time_pool="meanmax")
    logits, embedding = net(torch.randn(BATCH, N_MELS, FRAMES))
    assert logits.shape == (BATCH, 4) and embedding.shape[0] == BATCH
