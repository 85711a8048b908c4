"""The machine-ID classifier: data module classes and batches, CLI and Python fits, resume, and embedding."""

from __future__ import annotations

import pickle
import signal
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch

import ssad
from ssad.core.errors import SsadError
from ssad.data.machine_ids import MachineIDDataModule
from ssad.models import MachineIDClassifier
from ssad.models.runs import read_checkpoint, resolve_checkpoint

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"


def _datamodule(root: Path, **overrides) -> MachineIDDataModule:
    args = dict(root=str(root), n_warped=3, n_mixed=2, crop_frames=16, features={"n_mels": 32}, batch_size=8, seed=1)
    args.update(overrides)
    datamodule = MachineIDDataModule(**args)
    datamodule.setup("fit")
    return datamodule


def _first_batch(datamodule: MachineIDDataModule) -> dict[str, torch.Tensor]:
    batch = next(iter(datamodule.train_dataloader()))
    return datamodule.on_after_batch_transfer(batch, 0)


def test_class_count_is_real_ids_plus_synthesized(tiny_root: Path) -> None:
    datamodule = _datamodule(tiny_root)
    real = sorted({f"{p.parts[-3]}/id_{p.name.split('_')[2]}" for p in tiny_root.rglob("train/*.wav")})
    assert datamodule.num_classes == len(real) + 3 + 2
    assert datamodule.class_names[: len(real)] == real
    assert sum("@warp" in n for n in datamodule.class_names) == 3
    assert sum("+" in n for n in datamodule.class_names) == 2
    plain = _datamodule(tiny_root, n_warped=0, n_mixed=0)
    assert plain.num_classes == len(real)


def test_mixed_and_warped_examples_carry_their_class_label(tiny_root: Path) -> None:
    datamodule = _datamodule(tiny_root, augment=False)
    dataset = datamodule._train
    names = datamodule.class_names
    mixed = [i for i, e in enumerate(dataset.examples) if len(e.pools) == 2]
    warped = [i for i, e in enumerate(dataset.examples) if e.warp_factor != 1.0]
    assert mixed and warped
    for index in mixed[:5]:
        item = dataset[index]
        assert "+" in names[int(item["label"])]
        assert float(item["warp"]) == 1.0
    for index in warped[:5]:
        item = dataset[index]
        assert "@warp" in names[int(item["label"])]
        assert float(item["warp"]) == pytest.approx(float(names[int(item["label"])].split("@warp")[1]), abs=1e-3)


def test_validation_split_is_by_clip(tiny_root: Path) -> None:
    datamodule = _datamodule(tiny_root, val_fraction=0.25)
    train_clips = {k for e in datamodule._train.examples for pool in e.pools for k in pool}
    val_waves = {id(w) for w in datamodule._val.waves}
    train_waves = {id(datamodule._train.waves[k]) for k in train_clips}
    assert val_waves and not (val_waves & train_waves)


def test_same_seed_gives_the_same_batches(tiny_root: Path) -> None:
    a, b = _first_batch(_datamodule(tiny_root)), _first_batch(_datamodule(tiny_root))
    assert torch.equal(a["label"], b["label"]) and torch.equal(a["log_mel"], b["log_mel"])
    assert a["log_mel"].shape[1:] == (32, 16)
    c = _first_batch(_datamodule(tiny_root, seed=2))
    assert not torch.equal(a["log_mel"], c["log_mel"])


def test_fit_from_the_cli_leaves_checkpoints_and_config(tiny_run: Path) -> None:
    assert (tiny_run / "checkpoints" / "last.ckpt").is_file()
    assert list(tiny_run.rglob("config.yaml"))
    checkpoint = read_checkpoint(tiny_run)
    assert checkpoint["ssad"]["model_class"].endswith("MachineIDClassifier")
    assert len(checkpoint["hyper_parameters"]["class_names"]) == 16 + 4 + 2


@pytest.mark.slow
def test_fit_from_python(tiny_root: Path, tmp_path: Path) -> None:
    datamodule = MachineIDDataModule(root=str(tiny_root), machine_types=["fan", "pump"], n_warped=2, crop_frames=16,
                                     features={"n_mels": 32}, batch_size=16)
    model = MachineIDClassifier(width_mult=0.25, last_channels=64, embedding_dim=16)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, default_root_dir=tmp_path,
                        enable_progress_bar=False)
    trainer.fit(model, datamodule=datamodule)
    assert model.net is not None and len(model.class_names) == 8 + 2
    assert "val/acc_clip" in trainer.callback_metrics


def _fit(root: Path, run: Path, *extra: str, callbacks: tuple = ()) -> None:
    from ssad.cli.fit import run_lightning_cli

    run_lightning_cli(["fit", "--config", str(CONFIG), "--data.root", str(root), "--data.machine_types", "[fan, valve]",
                       "--trainer.default_root_dir", str(run), "--trainer.max_epochs", "2", *extra],
                      trainer_defaults={"callbacks": list(callbacks)})


class _CtrlCAtSecondEpoch(L.Callback):
    """Presses Ctrl-C as the second epoch starts, after the first epoch's checkpoint was written."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_resume_after_ctrl_c_matches_an_uninterrupted_run(tiny_root: Path, tmp_path: Path) -> None:
    _fit(tiny_root, tmp_path / "whole")
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning shuts down gracefully, then exits
            _fit(tiny_root, tmp_path / "cut", callbacks=(_CtrlCAtSecondEpoch(),))
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C after the first
    interrupted = torch.load(tmp_path / "cut/checkpoints/last.ckpt", weights_only=True)
    assert interrupted["epoch"] == 0
    _fit(tiny_root, tmp_path / "cut", "--ckpt_path", "last")
    whole = torch.load(tmp_path / "whole/checkpoints/last.ckpt", weights_only=True)
    resumed = torch.load(tmp_path / "cut/checkpoints/last.ckpt", weights_only=True)
    assert whole["global_step"] == resumed["global_step"] > interrupted["global_step"]
    for key, value in whole["state_dict"].items():
        assert torch.allclose(value.float(), resumed["state_dict"][key].float(), atol=1e-5), key


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tiny_root: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    run = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "ssad.cli", "fit", "--config", str(CONFIG), "--data.root", str(tiny_root),
         "--data.machine_types", "[fan, valve]", "--trainer.default_root_dir", str(run), "--trainer.max_epochs", "1",
         "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Starting with 2 processes" in result.stderr + result.stdout
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert ssad.load(run).embed(next(tiny_root.rglob("test/*.wav"))).shape == (2 * 32,)  # windows' mean and spread


def test_embed_accepts_paths_lists_waveforms_and_batches(tiny_run: Path, tiny_root: Path) -> None:
    model = ssad.load(tiny_run)
    paths = sorted(tiny_root.rglob("test/*.wav"))[:3]
    one = model.embed(paths[0])
    many = model.embed([str(p) for p in paths])
    wave, rate = sf.read(paths[0], dtype="float32")
    from_wave = model.embed(wave)
    batch = model.embed(np.stack([sf.read(p, dtype="float32")[0] for p in paths]))
    from_tensor = model.embed(torch.from_numpy(wave))
    assert one.shape == (64,) and many.shape == (3, 64) and batch.shape == (3, 64)  # 32 dims: mean and spread
    assert np.allclose(one, many[0], atol=1e-5) and np.allclose(one, from_wave, atol=1e-5)
    assert np.allclose(many, batch, atol=1e-5) and np.allclose(one, from_tensor, atol=1e-5)
    assert np.isfinite(many).all()


def test_run_folder_resolves_to_best_checkpoint(tiny_run: Path) -> None:
    assert resolve_checkpoint(tiny_run).name.startswith("best")


def test_loading_refuses_a_pickled_object(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    bad = tmp_path / "evil.ckpt"
    bad.write_bytes(pickle.dumps({"state_dict": Evil()}))
    with pytest.raises(SsadError, match="not a loadable"):
        ssad.load(bad)
    assert not marker.exists()


def test_fine_tuning_starts_from_a_run_and_keeps_head_rows_by_name(tiny_run: Path, tiny_root: Path, tmp_path: Path) -> None:
    source = read_checkpoint(tiny_run)
    hp = source["hyper_parameters"]
    datamodule = MachineIDDataModule(root=str(tiny_root), machine_types=["fan"], n_warped=0, n_mixed=0,
                                     crop_frames=hp["window_frames"], features={"n_mels": hp["n_mels"]})
    model = MachineIDClassifier(width_mult=hp["width_mult"], last_channels=hp["last_channels"],
                                embedding_dim=hp["embedding_dim"], init_from=str(tiny_run))
    trainer = L.Trainer(max_epochs=0, accelerator="cpu", logger=False, default_root_dir=tmp_path,
                        enable_progress_bar=False)
    trainer.fit(model, datamodule=datamodule)
    state = model.net.state_dict()
    first_conv = next(k for k in state if k.startswith("backbone.") and k.endswith("weight"))
    assert torch.equal(state[first_conv], source["state_dict"][f"net.{first_conv}"])
    old_names = hp["class_names"]
    for row, name in enumerate(model.class_names):
        assert torch.equal(state["head.linear.weight"][row], source["state_dict"]["net.head.linear.weight"][old_names.index(name)])


def test_temporal_classes_and_clip_labels_reach_the_batches(tiny_root: Path) -> None:
    """Re-timed classes carry their label; real crops carry their recording, synthesized ones -1."""
    datamodule = _datamodule(tiny_root, augment=False, n_temporal=4)
    names = datamodule.class_names
    assert sum("@reverse" in n or "@am" in n for n in names) == 4
    dataset = datamodule._train
    for index, example in enumerate(dataset.examples):
        item = dataset[index]
        synthesized = example.retime is not None or len(example.pools) == 2 or example.warp_factor != 1.0
        assert (int(item["clip"]) == -1) == synthesized
        if example.retime is not None:
            assert names[int(item["label"])].split("@")[1].startswith(("reverse", "am"))
    assert 0 < datamodule.num_clips


def test_equalized_classes_per_id_scale_with_the_real_ids(tiny_root: Path) -> None:
    """`equalized_per_id` plans that many "eq" classes per real ID; with `n_equalized` too it is refused."""
    datamodule = _datamodule(tiny_root, augment=False, n_warped=0, n_mixed=0, equalized_per_id=1.5)
    n_real = len(datamodule.class_names) - len(datamodule.synthetic_classes)
    assert sum("@eq" in n for n in datamodule.class_names) == int(1.5 * n_real + 0.5)
    with pytest.raises(ValueError, match="not both"):
        _datamodule(tiny_root, n_equalized=2, equalized_per_id=1.0)


def test_equalized_classes_reach_the_batches_with_their_bump(tiny_root: Path) -> None:
    """An "eq" crop is its source's spectrum times its class's gains; other crops are untouched."""
    datamodule = _datamodule(tiny_root, augment=False, n_warped=0, n_mixed=0, n_equalized=3)
    names = datamodule.class_names
    assert sum("@eq" in n for n in names) == 3
    dataset = datamodule._train
    eq_index = next(i for i, e in enumerate(dataset.examples) if e.eq >= 0)
    real_index = next(i for i, e in enumerate(dataset.examples) if e.eq < 0)
    items = [dataset[eq_index], dataset[real_index]]
    assert int(items[0]["clip"]) == -1 and int(items[1]["clip"]) >= 0
    batch = {key: torch.stack([item[key] for item in items]) for key in items[0]}
    plain = datamodule.log_mel.log_mel_from_spectrogram(datamodule.log_mel.spectrogram(batch["wave"]))
    out = datamodule.on_after_batch_transfer(batch, 0)["log_mel"]
    assert torch.allclose(out[1], plain[1])
    difference = (out[0] - plain[0]).mean(dim=-1)  # per mel band, the bump in the log domain
    assert float(difference.abs().max()) > 0.1 and not torch.allclose(out[0], plain[0])


def test_tiny_config_run_gives_clips_different_embeddings(tiny_run: Path, tiny_root: Path) -> None:
    """A few dozen training steps still leave usable BatchNorm statistics (bn_momentum: null in tiny.yaml)."""
    import numpy as np

    import ssad

    model = ssad.load(tiny_run)
    clips = sorted((tiny_root / "fan" / "test").glob("*.wav"))[:6]
    embeddings = np.stack([model.embed(clip) for clip in clips])
    assert float(embeddings.std(axis=0).mean()) > 1e-3 * max(1.0, float(np.abs(embeddings).mean()))
    norms = [m for m in model.module.net.modules() if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d)]
    assert norms and all(m.momentum is None for m in norms)


def test_a_clip_shorter_than_a_crop_repeats_from_a_random_point_only_when_asked(tmp_path: Path) -> None:
    (tmp_path / "fan" / "train").mkdir(parents=True)
    for k in range(2):  # one clip per ID: every crop of a class comes from the same recording
        sf.write(tmp_path / "fan" / "train" / f"normal_id_0{2 * k}_00000000.wav",
                 0.1 * np.random.default_rng(k).standard_normal(3000).astype(np.float32), 16000)
    crops = {}
    for phase in (False, True):
        datamodule = _datamodule(tmp_path, n_warped=0, n_mixed=0, crop_frames=16, augment=False, val_fraction=0.0,
                                 random_phase=phase, features={"n_mels": 32, "n_fft": 512, "hop_length": 256})
        dataset = datamodule._train
        assert dataset.crop_samples > 3000
        firsts = set()
        for epoch in range(4):
            dataset.epoch = epoch
            wave = dataset[0]["wave"].numpy()
            np.testing.assert_array_equal(wave[3000:], wave[: len(wave) - 3000])  # the clip, repeated
            firsts.add(float(wave[0]))
        crops[phase] = firsts
    assert len(crops[False]) == 1 and len(crops[True]) == 4


def test_attribute_classes_split_each_machine_by_recording_condition(tmp_path: Path) -> None:
    import dataclasses

    from ssad.synthesis import PRESETS, generate

    config = dataclasses.replace(PRESETS["shift"], machine_types=("pump",), ids_per_type=2, duration_s=1.0,
                                 train_per_id=3, test_normal_per_id=1, test_anomaly_per_id=1,
                                 target_train_per_id=2, target_test_per_id=1)
    generate(tmp_path, seed=0, config=config, progress=False)
    plain = _datamodule(tmp_path, n_warped=0, n_mixed=0, val_fraction=0.0)
    assert plain.class_names == ["pump/section_00", "pump/section_01"]
    split = _datamodule(tmp_path, n_warped=2, n_mixed=4, val_fraction=0.0, attribute_classes=True)
    real = [n for n in split.class_names if "@" not in n and "+" not in n]
    assert len(real) == 4 and {n.split("|")[0] for n in real} == set(plain.class_names)
    assert any("speed=108" in n for n in real)  # section 0's target domain runs at another speed
    for name in split.class_names:
        if "+" in name:  # a mixed class pairs two machines, never two conditions of one machine
            first, second = name.split("+")
            assert first.split("|")[0] != second.split("|")[0]
    sizes = sorted(len(e.pools[0]) for e in split._train.examples if e.label < 4)
    assert sizes[0] == 2 and sizes[-1] == 3  # each condition trains on its own clips


def test_two_views_are_neighbouring_windows_of_one_recording_and_both_train(tiny_root: Path) -> None:
    """`crop_views: 2` gives crops of two windows; the model classifies both and pairs them in the contrastive task."""
    datamodule = _datamodule(tiny_root, augment=False, n_warped=0, n_mixed=0, crop_views=2)
    batch = _first_batch(datamodule)
    assert batch["log_mel"].shape[-1] == 2 * 16
    model = MachineIDClassifier(width_mult=0.25, last_channels=64, embedding_dim=16, contrastive=0.5,
                                class_names=datamodule.class_names, n_mels=32, window_frames=16)
    rows, views = model._views(batch)
    log_mel, labels = rows["log_mel"], rows["label"]
    assert views == 2 and log_mel.shape == (2 * len(batch["label"]), 32, 16)
    assert torch.equal(rows["clip"], batch["clip"].repeat(2)) and len(batch["clip"]) == len(batch["label"])
    assert torch.equal(log_mel[: len(labels) // 2], batch["log_mel"][..., :16])
    assert torch.equal(log_mel[len(labels) // 2 :], batch["log_mel"][..., 16:])
    assert torch.equal(labels, batch["label"].repeat(2))
    logged: dict[str, torch.Tensor] = {}
    model.log = lambda name, value, **kw: logged.__setitem__(name, value)  # no trainer attached
    loss = model.training_step(dict(batch), 0)
    assert torch.isfinite(loss) and "train/contrastive" in logged
    loss.backward()
    assert all(p.grad is not None for p in model.net.backbone.parameters() if p.requires_grad)
    # a partner that is its own view scores far better than one shuffled to another example
    embedding = torch.randn(8, 16)
    paired = model._contrastive_loss(torch.cat([embedding, embedding]), 2)
    shuffled = model._contrastive_loss(torch.cat([embedding, embedding.roll(1, 0)]), 2)
    assert paired < shuffled


def test_contrastive_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="mixup_alpha"):
        MachineIDClassifier(contrastive=0.5, mixup_alpha=0.2)
    with pytest.raises(ValueError, match="contrastive_temperature"):
        MachineIDClassifier(contrastive=0.5, contrastive_temperature=0.0)
    with pytest.raises(ValueError, match="crop_views"):
        MachineIDDataModule(root="unused", crop_views=0)


def test_frozen_layers_keep_their_initial_weights_and_the_rest_learn() -> None:
    model = MachineIDClassifier(width_mult=0.25, last_channels=32, embedding_dim=8, class_names=["a/id_00", "b/id_00"],
                                n_mels=32, window_frames=16, freeze_layers=4)
    frozen = [p.clone() for p in model.net.backbone.features[:4].parameters()]
    later = [p.clone() for p in model.net.backbone.features[4].parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    labels = torch.tensor([0, 1, 0, 1])
    logits, _ = model.net(torch.randn(4, 32, 16), labels)
    torch.nn.functional.cross_entropy(logits, labels).backward()
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(frozen, model.net.backbone.features[:4].parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(later, model.net.backbone.features[4].parameters(), strict=True))
    with pytest.raises(ValueError, match="freeze_layers"):
        MachineIDClassifier(backbone="none", class_names=["a/id_00"], n_mels=32, window_frames=16, freeze_layers=2)
