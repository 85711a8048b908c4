"""Classification heads over embeddings: softmax logits, ArcFace angular margin, and (sub-cluster) AdaCos cosine logits."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ARCFACE_SCALE", "ARCFACE_MARGIN", "SoftmaxHead", "ArcFaceHead", "AdaCosHead", "AdaProjHead"]

#: ArcFace defaults, Deng et al. 2019 (s = 64 there for faces; 30 is the common choice for few classes).
ARCFACE_SCALE = 30.0
ARCFACE_MARGIN = 0.5

#: Floor of sin^2(theta) before its square root, so the gradient stays finite at cos(theta) = +-1.
_SIN2_FLOOR = 1e-7


def _check_dims(embedding_dim: int, num_classes: int) -> None:
    """Both must be positive integers."""
    if embedding_dim < 1 or num_classes < 1:
        msg = f"embedding_dim and num_classes must be >= 1, got {embedding_dim} and {num_classes}"
        raise ValueError(msg)


def _check_labels(labels: Tensor, embedding: Tensor) -> None:
    """Labels must be one class index per embedding row."""
    if labels.shape != embedding.shape[:1]:
        msg = f"labels must have shape ({embedding.shape[0]},), got {tuple(labels.shape)}"
        raise ValueError(msg)


class SoftmaxHead(nn.Module):
    """Linear logits for cross-entropy; `labels` is accepted (and ignored) so every head has one face."""

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        _check_dims(embedding_dim, num_classes)
        self.linear = nn.Linear(embedding_dim, num_classes)

    def forward(self, embedding: Tensor, labels: Tensor | None = None) -> Tensor:
        """(B, embedding_dim) -> (B, num_classes) logits."""
        if labels is not None:
            _check_labels(labels, embedding)
        return self.linear(embedding)


class ArcFaceHead(nn.Module):
    """Additive angular margin logits, Deng et al. 2019: s * cos(theta_y + m) for the target, s * cos(theta) else.

    Cosines are between the L2-normalised embedding and L2-normalised class weights. The target term uses
    cos(theta + m) = cos(theta) cos(m) - sin(theta) sin(m); where theta + m would pass pi (cos(theta) <=
    cos(pi - m)), where the logit would stop decreasing in theta, it falls back to cos(theta) - m sin(m)
    (the reference implementation's threshold), or with `easy_margin` to no margin where cos(theta) <= 0.

    Args:
        embedding_dim: size of the input embedding.
        num_classes: number of classes.
        scale: s, the norm the cosines are scaled to (sharpens the softmax).
        margin: m in radians, in [0, pi).
        easy_margin: apply the margin only where cos(theta) > 0.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        scale: float = ARCFACE_SCALE,
        margin: float = ARCFACE_MARGIN,
        easy_margin: bool = False,
    ) -> None:
        super().__init__()
        _check_dims(embedding_dim, num_classes)
        if scale <= 0:
            msg = f"scale must be > 0, got {scale}"
            raise ValueError(msg)
        if not 0.0 <= margin < math.pi:
            msg = f"margin must be in [0, pi), got {margin}"
            raise ValueError(msg)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)
        self.scale = float(scale)
        self.margin = float(margin)
        self.easy_margin = bool(easy_margin)
        self.cos_m = math.cos(margin)
        self.sin_m = math.sin(margin)
        self.threshold = math.cos(math.pi - margin)
        self.fallback = math.sin(math.pi - margin) * margin

    def cosine(self, embedding: Tensor) -> Tensor:
        """(B, embedding_dim) -> (B, num_classes) cosine similarity to each class centre."""
        return F.linear(F.normalize(embedding, dim=1), F.normalize(self.weight, dim=1))

    def forward(self, embedding: Tensor, labels: Tensor | None = None) -> Tensor:
        """(B, embedding_dim) -> (B, num_classes) logits; margin on the target class only when `labels` given."""
        cosine = self.cosine(embedding)
        if labels is None:
            return self.scale * cosine
        _check_labels(labels, embedding)
        sine = torch.sqrt((1.0 - cosine.square()).clamp(min=_SIN2_FLOOR))
        with_margin = cosine * self.cos_m - sine * self.sin_m
        if self.easy_margin:
            with_margin = torch.where(cosine > 0, with_margin, cosine)
        else:
            with_margin = torch.where(cosine > self.threshold, with_margin, cosine - self.fallback)
        target = F.one_hot(labels.long(), cosine.shape[1]).to(dtype=torch.bool, device=cosine.device)
        return self.scale * torch.where(target, with_margin, cosine)


class AdaCosHead(nn.Module):
    """Cosine logits with an adaptive scale (AdaCos, Zhang et al. 2019), optionally with sub-clusters.

    With `n_subclusters` = K > 1 each class has K centres and a class's probability is the sum of its
    centres' softmax probabilities (sub-cluster AdaCos, Wilkinghoff, IJCNN 2021), so the logits returned
    per class are the log-sum-exp of its centres' scaled cosines and plain cross-entropy on them is the
    sub-cluster loss. The scale starts at sqrt(2) log(K C - 1) and, in training, follows
    log(B_avg) / cos(min(pi/4, theta_med)), computed without gradient from the batch: B_avg the mean sum
    of exp(s cos) over other classes' centres, theta_med the median angle to the nearest own centre.
    Centres are fixed random unit vectors unless `trainable_centres` (Wilkinghoff keeps them fixed, so
    the embedding cannot collapse them together).

    Args:
        embedding_dim: size of the input embedding.
        num_classes: number of classes.
        n_subclusters: centres per class (1 = AdaCos).
        trainable_centres: learn the centres instead of keeping them fixed.
    """

    _own_term = 0.0  # what a sample's own centres add to B_avg

    def __init__(self, embedding_dim: int, num_classes: int, n_subclusters: int = 1,
                 trainable_centres: bool = False) -> None:
        super().__init__()
        _check_dims(embedding_dim, num_classes)
        if n_subclusters < 1:
            msg = f"n_subclusters must be >= 1, got {n_subclusters}"
            raise ValueError(msg)
        self.num_classes = num_classes
        self.n_subclusters = n_subclusters
        centres = F.normalize(torch.randn(num_classes * n_subclusters, embedding_dim), dim=1)
        if trainable_centres:
            self.weight = nn.Parameter(centres)
        else:
            self.register_buffer("weight", centres)
        n_centres = num_classes * n_subclusters
        self.register_buffer("scale", torch.tensor(math.sqrt(2.0) * math.log(max(2, n_centres - 1))))

    def cosine(self, embedding: Tensor) -> Tensor:
        """(B, embedding_dim) -> (B, num_classes, n_subclusters) cosine to each centre."""
        cosine = F.linear(F.normalize(embedding, dim=1), F.normalize(self.weight, dim=1))
        return cosine.reshape(embedding.shape[0], self.num_classes, self.n_subclusters)  # len() would fix the batch in an ONNX export

    @torch.no_grad()
    def _update_scale(self, cosine: Tensor, labels: Tensor) -> None:
        target = F.one_hot(labels.long(), self.num_classes).to(dtype=torch.bool, device=cosine.device)
        others = torch.where(target.unsqueeze(-1), torch.full_like(cosine, self._own_term),
                             torch.exp(self.scale * cosine)).flatten(1).sum(1)
        nearest_own = cosine[target].max(dim=-1).values.clamp(-1.0, 1.0)
        theta_med = torch.acos(nearest_own).median()
        b_avg = others.mean().clamp(min=1e-12)
        self.scale.copy_(torch.log(b_avg) / torch.cos(theta_med.clamp(max=math.pi / 4)))

    def forward(self, embedding: Tensor, labels: Tensor | None = None) -> Tensor:
        """(B, embedding_dim) -> (B, num_classes) logits; `labels` (training) update the adaptive scale."""
        cosine = self.cosine(embedding)
        if labels is not None:
            _check_labels(labels, embedding)
            if self.training:
                self._update_scale(cosine, labels)
        return torch.logsumexp(self.scale * cosine, dim=-1)


class AdaProjHead(AdaCosHead):
    """AdaCos logits on the cosine between an embedding and its projection onto each class's own subspace.

    AdaProj (Wilkinghoff, ICASSP 2024): a class is a fixed random subspace of `subspace_dim` dimensions, and
    an embedding is close to the class when it lies near that subspace, so a class's normal sounds may
    spread inside it instead of being drawn to one centre, and the embedding keeps more of what varies
    inside a class. With an orthonormal basis per class, the cosine between a unit embedding x and its
    projection P x is |P x|, the norm of its coordinates in the basis. The scale follows AdaCos, with a sample's own
    class counted as exp(0) = 1 in B_avg, as in Wilkinghoff's code: with two classes B_avg would otherwise
    hold a single exp(s cos), and the scale would fall to 0 and stay there.

    Args:
        embedding_dim: size of the input embedding.
        num_classes: number of classes.
        subspace_dim: dimension of each class's subspace (at most `embedding_dim`).
    """

    _own_term = 1.0

    def __init__(self, embedding_dim: int, num_classes: int, subspace_dim: int = 16) -> None:
        if not 1 <= subspace_dim <= embedding_dim:
            msg = f"subspace_dim must be in [1, embedding_dim={embedding_dim}], got {subspace_dim}"
            raise ValueError(msg)
        super().__init__(embedding_dim, num_classes, n_subclusters=subspace_dim)
        bases = torch.linalg.qr(torch.randn(num_classes, embedding_dim, subspace_dim)).Q  # orthonormal columns
        self.weight.copy_(bases.transpose(1, 2).reshape(num_classes * subspace_dim, embedding_dim))
        self.scale.fill_(math.sqrt(2.0) * math.log(max(2, num_classes - 1)))

    @property
    def subspace_dim(self) -> int:
        """Dimension of each class's subspace (held where AdaCos keeps its centres per class)."""
        return self.n_subclusters

    def cosine(self, embedding: Tensor) -> Tensor:
        """(B, embedding_dim) -> (B, num_classes, 1) cosine to the projection onto each class's subspace."""
        coordinates = F.linear(F.normalize(embedding, dim=1), self.weight)
        coordinates = coordinates.reshape(embedding.shape[0], self.num_classes, self.subspace_dim)
        return coordinates.norm(dim=-1, keepdim=True).clamp(max=1.0)
