"""The machine-ID classifier as a LightningModule: training on crops, clip-level validation, optimisers."""

from __future__ import annotations

import logging
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssad.features import sliding_windows
from ssad.models.base import CHECKPOINT_KEY, SsadModule, mean_and_spread
from ssad.models.classifier.torch_model import MachineIDEnsemble, MachineIDNet
from ssad.models.components.heads import AdaCosHead

__all__ = ["CLIP_POOLINGS", "MachineIDClassifier"]

log = logging.getLogger("ssad")
#: how a clip's embedding is pooled from its windows' (see `MachineIDClassifier`'s `clip_pooling`)
CLIP_POOLINGS = ("mean", "mean_std")
#: the prefix of an ensemble member's state-dict keys ("members.2.backbone..." -> "backbone...")
_MEMBER_PREFIX = re.compile(r"^members\.\d+\.")


class MachineIDClassifier(SsadModule):
    """A CNN that learns to tell machine IDs (real and synthesized) apart; its embeddings feed the scorers.

    The class list, the mel count and the crop length come from the data module at `setup`, and are
    kept in the hyper-parameters so that a checkpoint rebuilds the network on its own.

    Args:
        backbone: "mobilenetv2" or "resnet".
        width_mult: MobileNetV2 width multiplier.
        last_channels: channels of the backbone's last 1x1 convolution (MobileNetV2's 1280 is slow on a CPU).
        freq_pool: how the backbone's feature map is pooled over frequency: "flatten" (keep the position),
            "max" or "mean".
        time_pool: how it is pooled over time: "mean", "max", or "meanmax" (both concatenated: what is steady
            and what comes and goes, such as a valve's click).
        embedding_dim: size of the embedding the scorers use.
        head: "softmax", "arcface", "adacos" (adaptive-scale cosine logits, Zhang et al. 2019) or "adaproj"
            (AdaCos on projections onto class subspaces, Wilkinghoff 2024).
        n_subclusters: centres per class of the "adacos" head (> 1: sub-cluster AdaCos, Wilkinghoff 2021).
        subspace_dim: vectors spanning each class's subspace in the "adaproj" head.
        stats_branch: a second branch on each window's per-band log-mel mean and std (see
            `ssad.models.components.stats_branch`).
        cnn_frames: in training, the CNN sees a random crop of this many frames of each window while the stats
            branch sees all of it; with `data.crop_frames` the clip's length, the stats branch learns from
            whole-clip statistics (the spectral floor's input) at the CNN cost of a short crop. None = off.
        contrastive: weight of a self-supervised task beside ID classification, for data that gives each example
            as two views (`crop_views: 2`, two neighbouring crops of one recording): each view's embedding must
            pick its partner out of the batch's other examples (NT-Xent on cosine similarity), so the embedding
            keeps what tells one recording from another of the same machine; 0 = off. Both views are classified.
        contrastive_temperature: the NT-Xent temperature.
        freeze_layers: keep the first this many backbone layers at their random initialisation (their batch
            statistics still adapt): features that no synthetic machine shaped; 0 = train every layer.
        clip_loss: weight of a second task, telling which training recording a crop came from (an AdaCos
            head over the recordings, on the same embedding), so that the embedding keeps what tells one
            recording of a machine from another instead of only what tells machines apart (after FeatEx,
            Wilkinghoff ICASSP 2024, whose extra task is telling whether two views come from one clip; 0 = off).
        n_members: train this many networks side by side, each from its own initialisation and on its own loss,
            and concatenate their embeddings (`MachineIDEnsemble`): what one network's seed keeps of the
            within-ID variation is luck, and the members' luck averages out. Costs n_members x the compute.
        bn_momentum: momentum of every BatchNorm's running statistics (None = the plain average over all
            training steps: a run of a few dozen steps, like the tiny config's, otherwise ends with running
            variances still near their initial 1 while deep layers' true ones are far smaller, and in eval mode
            every clip then gets the same embedding).
        mixup_alpha: mix each training batch with a shuffled copy of itself, weight ~ Beta(alpha, alpha),
            and the loss with the two labels in the same shares (0 = off; Noisy-ArcMix uses mixup so).
        arcface_scale: ArcFace logit scale.
        arcface_margin: ArcFace additive angular margin (radians).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_epochs: linear warm-up before the cosine decay.
        compile: wrap the network in `torch.compile` for training.
        init_from: run folder, checkpoint, saved detector or "pretrained" (the encoder shipped with ssad) to start
            from (fine-tuning); head rows are kept for classes whose names match.
        inference_hop: frames between sliding windows at validation and inference (None = half a crop).
        clip_pooling: how a clip's embedding is made from its windows' embeddings: "mean", or "mean_std" (their
            mean and their standard deviation over the clip, concatenated: a fault that comes and goes, or that
            makes the sound less steady, moves the second half even when the average stays; synthetic fan +3 to +9
            and valve +3 to +6 AUC on 3200 fresh test clips per seed). A clip of one window has zero spread, and a
            model whose training clips are all one window long pools the mean alone (`setup` says so).
        class_names: filled from the data module; given only when rebuilding from a checkpoint.
        n_mels: filled from the data module.
        window_frames: filled from the data module (its `crop_frames`).
        n_clips: filled from the data module (its training recordings) when `clip_loss` > 0.
    """

    output_names = ("embedding", "neg_log_prob")
    default_scorers = {
        # per machine type, the covariance (each ID's own or pooled over the type's IDs) that better predicts
        # held-out normal clips: pooled won on every synthetic type (27 clips per ID in 64-192 dimensions); a
        # machine with as many clips as dimensions whose normal clips drift along their file order is scored
        # within its 32 leading directions (lathe / VMC +4.1 / +1.9; steady machines keep every direction)
        "gaussian": {"kind": "gaussian", "covariance": "auto", "components": 32, "components_when": "drifting"},
        "knn": {"kind": "knn", "k": 1, "metric": "cosine"},
        "softmax": {"kind": "softmax"},
    }
    monitor = ("val/acc_clip", "max")

    def __init__(
        self,
        backbone: str = "mobilenetv2",
        width_mult: float = 0.5,
        last_channels: int = 512,
        freq_pool: str = "flatten",
        time_pool: str = "mean",
        embedding_dim: int = 128,
        head: str = "softmax",
        arcface_scale: float = 30.0,
        arcface_margin: float = 0.5,
        n_subclusters: int = 1,
        subspace_dim: int = 16,
        stats_branch: bool = False,
        cnn_frames: int | None = None,
        mixup_alpha: float = 0.0,
        clip_loss: float = 0.0,
        contrastive: float = 0.0,
        contrastive_temperature: float = 0.1,
        freeze_layers: int = 0,
        n_members: int = 1,
        bn_momentum: float | None = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        warmup_epochs: int = 0,
        compile: bool = False,
        init_from: str | None = None,
        inference_hop: int | None = None,
        clip_pooling: str = "mean",
        class_names: list[str] | None = None,
        n_mels: int | None = None,
        window_frames: int | None = None,
        n_clips: int | None = None,
    ) -> None:
        super().__init__()
        if clip_pooling not in CLIP_POOLINGS:
            msg = f"clip_pooling must be one of {CLIP_POOLINGS}, got {clip_pooling!r}"
            raise ValueError(msg)
        if contrastive < 0 or contrastive_temperature <= 0:
            raise ValueError(f"contrastive must be >= 0 and contrastive_temperature > 0, got {contrastive} and "
                             f"{contrastive_temperature}")
        if contrastive > 0 and mixup_alpha > 0:
            raise ValueError("contrastive and mixup_alpha cannot both be on: mixing would pair each view with "
                             "another example's")
        self.save_hyperparameters()
        self.net: MachineIDNet | MachineIDEnsemble | None = None
        self.clip_head: AdaCosHead | None = None
        if class_names is not None and n_mels is not None and window_frames is not None:
            self._build()

    @property
    def window_frames(self) -> int:  # type: ignore[override]
        return int(self.hparams.window_frames)

    @property
    def window_hop(self) -> int:  # type: ignore[override]
        return int(self.hparams.inference_hop or max(1, self.hparams.window_frames // 2))

    @property
    def class_names(self) -> list[str]:
        """Names of the classes the head predicts, real ones first."""
        return list(self.hparams.class_names or [])

    def _build(self) -> None:
        hp = self.hparams
        net_args = dict(
            num_classes=len(hp.class_names), backbone=hp.backbone, embedding_dim=hp.embedding_dim,
            head=hp.head, width_mult=hp.width_mult, n_mels=hp.n_mels, last_channels=hp.last_channels,
            freq_pool=hp.freq_pool, time_pool=hp.get("time_pool", "mean"),
            arcface_scale=hp.arcface_scale, arcface_margin=hp.arcface_margin,
            n_subclusters=hp.get("n_subclusters", 1), stats_branch=hp.get("stats_branch", False),
            subspace_dim=hp.get("subspace_dim", 16), cnn_frames=hp.get("cnn_frames"),
        )
        n_members = int(hp.get("n_members") or 1)
        # one network keeps the plain MachineIDNet (and its state_dict keys, which the shipped encoder uses)
        self.net = MachineIDEnsemble(n_members, **net_args) if n_members > 1 else MachineIDNet(**net_args)
        momentum = hp.get("bn_momentum", 0.1)
        for module in self.net.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.momentum = momentum
        self.clip_head = (AdaCosHead(self.net.embedding_dim, int(hp.n_clips))
                          if hp.get("clip_loss") and hp.get("n_clips") else None)
        # kept out of the module tree so that the compiled wrappers add nothing to the state_dict
        members = list(self.net.members) if isinstance(self.net, MachineIDEnsemble) else [self.net]
        frozen = int(hp.get("freeze_layers") or 0)
        if frozen and any(m.backbone is None or not hasattr(m.backbone, "features") for m in members):
            raise ValueError(f"freeze_layers={frozen} needs a backbone with layers (mobilenetv2), got {hp.backbone!r}")
        for member in members if frozen else []:
            member.backbone.features[:frozen].requires_grad_(False)
        self.__dict__["_train_members"] = [torch.compile(m) if hp.compile else m for m in members]

    def setup(self, stage: str) -> None:
        if self.net is not None:
            return
        datamodule = self.trainer.datamodule
        self.hparams.class_names = list(datamodule.class_names)
        self.hparams.n_mels = int(datamodule.feature_params["n_mels"])
        self.hparams.window_frames = int(datamodule.hparams.crop_frames)
        self.hparams.n_clips = int(getattr(datamodule, "num_clips", 0)) or None
        self._settle_clip_pooling(int(getattr(datamodule, "longest_clip_frames", 0)))
        self._build()
        if self.hparams.init_from:
            self._initialise_from(self.hparams.init_from)

    def _settle_clip_pooling(self, longest_clip_frames: int) -> None:
        """Pool the mean alone when no training clip is longer than one window: every clip's spread would be zero,
        and the zeros would only dilute the embedding the scorers model (lathe_vmc's 1-s clips: lathe -5 AUC)."""
        if self.hparams.clip_pooling != "mean_std" or not longest_clip_frames:
            return
        if 1 + max(longest_clip_frames - self.window_frames, 0) // self.window_hop < 2:
            log.info("clip_pooling mean_std -> mean: the longest training clip (%d frames) is one window of %d frames,"
                     " so no clip has a spread over windows", longest_clip_frames, self.window_frames)
            self.hparams.clip_pooling = "mean"

    def _initialise_from(self, source: str) -> None:
        """Copy weights from another model: everything whose shape fits, and head rows by class name.

        `source` is a run folder or checkpoint, a saved detector, or "pretrained" (the encoder shipped with ssad,
        whose head rows are not copied: its classes are units of its pretraining corpus, whatever their names).
        """
        from ssad.models.files import UNIT_CLASSES, read_weights

        weights = read_weights(source)
        state = {k.removeprefix("net."): v for k, v in weights["state_dict"].items() if k.startswith("net.")}
        own = self.net.state_dict()
        # the shipped encoder's classes are units of its pretraining corpus: a class of the same name is another machine
        units = (weights.get(CHECKPOINT_KEY) or {}).get(UNIT_CLASSES)
        old_names = [] if units else weights["hyper_parameters"].get("class_names") or []
        row_of = {name: i for i, name in enumerate(old_names)}
        copied, head_rows = 0, 0
        for key in list(own):
            # an ensemble member starts from the same single network as the others, or from its own member
            plain = _MEMBER_PREFIX.sub("", key)
            value = state.get(key, state.get(plain))
            if value is None:
                continue
            head = plain.startswith("head.")
            if own[key].shape == value.shape and not head:
                own[key] = value
                copied += 1
            elif head and own[key].ndim >= 1 and value.shape[1:] == own[key].shape[1:]:
                for new_row, name in enumerate(self.class_names):
                    if name in row_of and row_of[name] < value.shape[0]:
                        own[key][new_row] = value[row_of[name]]
                        head_rows += 1
        self.net.load_state_dict(own)
        log.info("initialised from %s: %d of %d tensors (those whose shape fits), %d head rows by class name",
                 source, copied, len(own), head_rows)

    def forward(self, log_mel: Tensor) -> tuple[Tensor, Tensor]:
        """(batch, n_mels, frames) -> (inference logits, embeddings)."""
        return self.net(log_mel)

    def window_outputs(self, log_mel_windows: Tensor) -> dict[str, Tensor]:
        logits, embedding = self.net(log_mel_windows)
        return {"embedding": embedding, "neg_log_prob": -F.log_softmax(logits, dim=-1)}

    def _pools_spread(self, name: str) -> bool:
        """Whether output `name` of a clip is pooled with its spread over the windows (`clip_pooling`)."""
        return name == "embedding" and self.hparams.clip_pooling == "mean_std"

    def pool_windows(self, name: str, values: Tensor) -> Tensor:
        return mean_and_spread(values) if self._pools_spread(name) else values.mean(0)

    def window_rows(self, name: str, values: Tensor) -> Tensor:
        """Per window, its own embedding beside the whole clip's spread (a window alone has none)."""
        if self._pools_spread(name):
            spread = mean_and_spread(values)[values.shape[1]:]
            return torch.cat([values, spread.expand(len(values), -1)], dim=1)
        return super().window_rows(name, values)

    def extra_metadata(self) -> dict[str, Any]:
        return {"class_names": self.class_names}

    def _views(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], int]:
        """The batch with an example's views as separate rows (views of example i at rows i, i + n, ...; labels and
        recordings repeated to match), and how many views each example has: one unless the data gives crops of
        several windows."""
        log_mel = batch["log_mel"]
        views = log_mel.shape[-1] // self.window_frames
        if views < 2:
            return {**batch, "log_mel": log_mel[..., : self.window_frames]}, 1
        rows = {k: v.repeat(views) for k, v in batch.items() if k in ("label", "clip")}
        rows["log_mel"] = torch.cat(log_mel[..., : views * self.window_frames].split(self.window_frames, dim=-1))
        return rows, views

    def _contrastive_loss(self, embedding: Tensor, views: int) -> Tensor:
        """NT-Xent between the first two views of each example: each must find its partner among the batch."""
        first, second = F.normalize(embedding, dim=1).chunk(views)[:2]
        logits = first @ second.T / self.hparams.contrastive_temperature
        target = torch.arange(len(first), device=first.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        batch, views = self._views(batch)
        log_mel, labels = batch["log_mel"], batch["label"]
        members = self.__dict__["_train_members"]
        alpha = float(self.hparams.get("mixup_alpha") or 0.0)
        if alpha > 0 and len(labels) > 1:
            share = float(torch.distributions.Beta(alpha, alpha).sample())
            order = torch.randperm(len(labels), device=labels.device)
            log_mel = share * log_mel + (1 - share) * log_mel[order]
            target = labels if share >= 0.5 else labels[order]
            all_logits = [member(log_mel, target)[0] for member in members]
            loss = torch.stack([share * F.cross_entropy(logits, labels) + (1 - share) * F.cross_entropy(logits, labels[order])
                                for logits in all_logits]).mean()
        else:
            outputs = [member(log_mel, labels) for member in members]
            all_logits = [logits for logits, _ in outputs]
            loss = torch.stack([F.cross_entropy(logits, labels) for logits in all_logits]).mean()
            embedding = torch.cat([e for _, e in outputs], dim=1)
            if self.hparams.get("contrastive") and views > 1:
                contrastive = self._contrastive_loss(embedding, views)
                self.log("train/contrastive", contrastive)
                loss = loss + self.hparams.contrastive * contrastive
            if self.clip_head is not None and "clip" in batch and bool((batch["clip"] >= 0).any()):
                clips = batch["clip"]
                real = clips >= 0
                clip_loss = F.cross_entropy(self.clip_head(embedding[real], clips[real]), clips[real])
                self.log("train/clip_loss", clip_loss)
                loss = loss + self.hparams.clip_loss * clip_loss
        accuracy = (torch.stack(all_logits).mean(0).argmax(-1) == labels).float().mean()
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", accuracy, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        log_mel, labels = batch["log_mel"], batch["label"]
        # the stride windows of inference; its end window left out so that checkpoints are chosen as before
        windows = sliding_windows(log_mel, self.window_frames, self.window_hop)
        batch_size, n_windows = windows.shape[:2]
        logits, _ = self.net(windows.flatten(0, 1))
        clip_logits = logits.reshape(batch_size, n_windows, -1).mean(1)
        self.log("val/loss", F.cross_entropy(clip_logits, labels), prog_bar=True, batch_size=batch_size, sync_dist=True)
        accuracy = (clip_logits.argmax(-1) == labels).float().mean()
        self.log("val/acc_clip", accuracy, prog_bar=True, batch_size=batch_size, sync_dist=True)

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        steps_per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        warmup = min(total - 1, hp.warmup_epochs * steps_per_epoch)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup))
        if warmup > 0:
            ramp = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warmup)
            scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])
        else:
            scheduler = cosine
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
