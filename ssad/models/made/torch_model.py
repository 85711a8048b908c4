"""Group MADE: a masked autoencoder whose outputs give a normalised density of a log-mel window, one group at a time."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GROUP_FORMS", "ORDERINGS", "LOG_VAR_RANGE", "MixtureParams", "MaskedLinear", "GroupMADE"]

#: "frame": a group is one frame's whole set of mel bands, so the order runs over the frames of the
#: window (the form of the team's patent, US 12,205,039); "bands": a group is a block of adjacent mel
#: bands within one frame (a finer variant).
GROUP_FORMS = ("frame", "bands")
#: The group ordering of the first connectivity: natural (frame 0 first), reverse, or a seeded random one.
ORDERINGS = ("natural", "reverse", "random")
#: Bounds on each output's log-variance (inputs are normalised to about unit variance): keeps the
#: likelihood finite when a dimension is nearly constant; a numerical guard, not from the paper.
LOG_VAR_RANGE = (-9.0, 9.0)
_LOG_2PI = math.log(2.0 * math.pi)


class MixtureParams(NamedTuple):
    """Per-dimension conditional densities: mixture logits, means and log-variances, each (batch, components, D)."""

    logits: Tensor
    means: Tensor
    log_vars: Tensor


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by one of several fixed 0/1 connectivity masks (MADE, Germain et al. 2015)."""

    def __init__(self, in_features: int, out_features: int, num_masks: int) -> None:
        super().__init__(in_features, out_features)
        self.register_buffer("masks", torch.ones(num_masks, out_features, in_features, dtype=torch.bool))

    def set_mask(self, index: int, mask: Tensor) -> None:
        """Replace mask `index` by a (out_features, in_features) boolean matrix."""
        self.masks[index] = mask.to(device=self.masks.device, dtype=torch.bool)

    def forward(self, x: Tensor, mask_index: int = 0) -> Tensor:  # type: ignore[override]
        return F.linear(x, self.weight * self.masks[mask_index], self.bias)


def _generator(seed: int, index: int) -> torch.Generator:
    """A CPU generator for connectivity `index`, independent of every other index and of the global RNG."""
    state = int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(state)


class GroupMADE(nn.Module):
    """Masked autoencoder for distribution estimation over a window of log-mel frames, autoregressive over groups.

    A window (batch, n_mels, context_frames) is flattened frame-major into D = context_frames * n_mels
    dimensions (dimension d = frame * n_mels + band) and split into groups. Masked connections make every
    output of a group depend only on the input groups before it in the ordering, so the outputs
    parameterise p(x_g | x_<g) and their product is a normalised density of the window (the first
    group's density is unconditional). Each dimension of a group gets a Gaussian, or a mixture of
    `n_components` Gaussians, conditioned on the earlier groups.

    Several connectivities (orderings with their hidden-unit degrees) share the weights: ordering 0 is
    the one named by `ordering`, the other `num_orderings - 1` are seeded random orderings. Training
    samples one per batch (MADE's order-agnostic training); `nll_per_dim` and `log_prob` with
    `ordering=None` average the log-likelihood over all of them.

    Args:
        n_mels: mel bands of each frame.
        context_frames: frames of one window.
        group: "frame" (a group is one frame, all bands) or "bands" (a block of adjacent bands in a frame).
        band_group_size: bands per group when `group="bands"` (the last block of a frame may be smaller).
        hidden_sizes: widths of the masked hidden layers (empty = a masked linear model).
        n_components: Gaussians per dimension (1 = one Gaussian with mean and log-variance).
        ordering: group ordering of connectivity 0: "natural", "reverse" or "random".
        num_orderings: connectivities (orderings) shared by the weights.
        seed: fixes the random orderings and the hidden-unit degrees.
    """

    def __init__(
        self,
        n_mels: int,
        context_frames: int = 5,
        group: str = "frame",
        band_group_size: int = 16,
        hidden_sizes: Sequence[int] = (512, 512),
        n_components: int = 1,
        ordering: str = "natural",
        num_orderings: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if n_mels < 1 or context_frames < 1:
            msg = f"n_mels and context_frames must be >= 1, got n_mels={n_mels}, context_frames={context_frames}"
            raise ValueError(msg)
        if group not in GROUP_FORMS:
            msg = f"group={group!r} is not one of {', '.join(GROUP_FORMS)}"
            raise ValueError(msg)
        if group == "bands" and not 1 <= band_group_size <= n_mels:
            msg = f"band_group_size={band_group_size} must be between 1 and n_mels={n_mels}"
            raise ValueError(msg)
        hidden_sizes = [int(h) for h in hidden_sizes]
        if any(h < 1 for h in hidden_sizes):
            msg = f"hidden_sizes={hidden_sizes} must all be >= 1"
            raise ValueError(msg)
        if n_components < 1:
            msg = f"n_components={n_components} must be >= 1"
            raise ValueError(msg)
        if ordering not in ORDERINGS:
            msg = f"ordering={ordering!r} is not one of {', '.join(ORDERINGS)}"
            raise ValueError(msg)
        if num_orderings < 1:
            msg = f"num_orderings={num_orderings} must be >= 1"
            raise ValueError(msg)
        self.n_mels = n_mels
        self.context_frames = context_frames
        self.group = group
        self.band_group_size = band_group_size
        self.hidden_sizes = tuple(hidden_sizes)
        self.n_components = n_components
        self.ordering = ordering
        self.num_orderings = num_orderings
        self.seed = seed
        self.input_dim = n_mels * context_frames
        # One Gaussian: (mean, log-var); a mixture: (logit, mean, log-var) per component.
        self.params_per_dim = 2 if n_components == 1 else 3 * n_components

        frame = torch.arange(self.input_dim) // n_mels
        band = torch.arange(self.input_dim) % n_mels
        if group == "frame":
            group_of_dim, self.num_groups = frame, context_frames
        else:
            per_frame = -(-n_mels // band_group_size)
            group_of_dim, self.num_groups = (
                frame * per_frame + band // band_group_size,
                context_frames * per_frame,
            )
        self.register_buffer("group_of_dim", group_of_dim)
        self.register_buffer("orderings", torch.zeros(num_orderings, self.num_groups, dtype=torch.long))

        sizes = [self.input_dim, *hidden_sizes, self.input_dim * self.params_per_dim]
        self.layers = nn.ModuleList(
            MaskedLinear(sizes[i], sizes[i + 1], num_orderings) for i in range(len(sizes) - 1)
        )
        for index in range(num_orderings):
            if index == 0 and ordering != "random":
                perm = torch.arange(self.num_groups)
                self.set_ordering(perm.flip(0) if ordering == "reverse" else perm, index)
            else:
                self.set_ordering(torch.randperm(self.num_groups, generator=_generator(seed, index)), index)

    def set_ordering(self, perm: Sequence[int] | Tensor, index: int = 0) -> None:
        """Make connectivity `index` follow group order `perm` (perm[0] comes first) and re-draw its hidden degrees."""
        perm = torch.as_tensor(perm, dtype=torch.long).cpu()
        if sorted(perm.tolist()) != list(range(self.num_groups)):
            msg = f"perm={perm.tolist()} is not a permutation of the {self.num_groups} groups 0..{self.num_groups - 1}"
            raise ValueError(msg)
        if not 0 <= index < self.num_orderings:
            msg = f"index={index} must be between 0 and num_orderings - 1 = {self.num_orderings - 1}"
            raise ValueError(msg)
        self.orderings[index] = perm.to(self.orderings.device)
        rank_of_group = torch.empty_like(perm)
        rank_of_group[perm] = torch.arange(self.num_groups)
        input_rank = rank_of_group[self.group_of_dim.cpu()]

        # A hidden unit of degree k sees input groups of rank <= k; an output of rank r sees units of degree < r.
        # Degrees lie in [lowest degree below, G - 2] so that no unit is cut off (Germain et al. 2015); they are
        # spread evenly over that range and shuffled, so every allowed dependency has a path when width allows.
        generator = _generator(self.seed, index)
        previous = input_rank
        for layer in self.layers[:-1]:
            low = int(previous.min())
            span = max(self.num_groups - 2, low) - low + 1
            degrees = low + torch.randperm(layer.out_features, generator=generator) % span
            layer.set_mask(index, degrees[:, None] >= previous[None, :])
            previous = degrees
        output_rank = input_rank.repeat(self.params_per_dim)
        self.layers[-1].set_mask(index, output_rank[:, None] > previous[None, :])

    def connectivity(self, ordering: int = 0) -> Tensor:
        """(D, D) count of paths from input dimension j (column) to the outputs of dimension i (row), for one ordering."""
        path = self.layers[0].masks[ordering].double()
        for layer in self.layers[1:]:
            path = layer.masks[ordering].double() @ path
        return path.view(self.params_per_dim, self.input_dim, self.input_dim).sum(0)

    def flatten(self, windows: Tensor) -> Tensor:
        """(batch, n_mels, context_frames) -> (batch, D), frame-major: frame 0's bands, then frame 1's, ..."""
        expected = (self.n_mels, self.context_frames)
        if windows.dim() != 3 or tuple(windows.shape[1:]) != expected:
            msg = (
                f"expected windows of shape (batch, {expected[0]}, {expected[1]}), got {tuple(windows.shape)}"
            )
            raise ValueError(msg)
        return windows.transpose(1, 2).reshape(windows.shape[0], self.input_dim)

    def forward(self, windows: Tensor, ordering: int = 0) -> MixtureParams:
        """(batch, n_mels, context_frames) -> the conditional density parameters of every dimension under one ordering."""
        h = self.flatten(windows)
        for layer in self.layers[:-1]:
            h = F.relu(layer(h, ordering))
        # float32 even under autocast: the squared error times exp(-log-variance) can overflow float16.
        out = self.layers[-1](h, ordering).float().view(h.shape[0], self.params_per_dim, self.input_dim)
        if self.n_components == 1:
            means, log_vars = out[:, :1], out[:, 1:]
            logits = torch.zeros_like(means)
        else:
            logits, means, log_vars = out.view(h.shape[0], 3, self.n_components, self.input_dim).unbind(1)
        return MixtureParams(logits, means, log_vars.clamp(*LOG_VAR_RANGE))

    def _nll_one(self, windows: Tensor, ordering: int) -> Tensor:
        """(batch, D) negative log-likelihood of each dimension under one ordering."""
        x = self.flatten(windows)[:, None, :]
        logits, means, log_vars = self(windows, ordering)
        log_normal = -0.5 * (_LOG_2PI + log_vars + (x - means).square() * torch.exp(-log_vars))
        return -torch.logsumexp(F.log_softmax(logits, dim=1) + log_normal, dim=1)

    def nll_per_dim(self, windows: Tensor, ordering: int | None = None) -> Tensor:
        """(batch, D) negative log-likelihood of each dimension given the earlier groups; None = mean over the orderings."""
        if ordering is not None:
            return self._nll_one(windows, ordering)
        return torch.stack([self._nll_one(windows, k) for k in range(self.num_orderings)]).mean(0)

    def log_prob(self, windows: Tensor, ordering: int | None = None) -> Tensor:
        """(batch,) log-density of each window in nats; None = the log-density averaged over the orderings."""
        return -self.nll_per_dim(windows, ordering).sum(-1)
