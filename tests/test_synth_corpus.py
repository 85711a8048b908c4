"""The pretraining corpus: shards that partition every unit's clips, the same audio when rendered again, and a
`ssad fit` that walks through the shards and resumes where it stopped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ssad.data.synth_corpus import CorpusPlan, SynthCorpusDataModule, render_jobs

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pretrain.yaml"
TINY = ["--data.units_per_type", "2", "--data.clips_per_unit", "4", "--data.shards", "2", "--data.epochs_per_shard",
        "1", "--data.duration_s", "1.0", "--data.n_warped", "2", "--data.n_mixed", "1", "--data.validation_per_unit",
        "1", "--data.batch_size", "8", "--model.width_mult", "0.25", "--model.last_channels", "32",
        "--model.embedding_dim", "8", "--data.features", "{n_mels: 32}"]


def test_shards_partition_each_units_clips_and_validation_stays_apart() -> None:
    plan = CorpusPlan(units_per_type=3, clips_per_unit=10, shards=3, duration_s=1.0)
    shards = [plan.shard(k) for k in range(3)]
    assert sum(len(s) for s in shards) == plan.total_clips == 4 * 3 * 10
    keys = [(j.machine_type, j.machine_id, j.index) for s in shards for j in s]
    assert len(set(keys)) == len(keys)
    validation = {(j.machine_type, j.machine_id, j.index) for j in plan.validation()}
    assert len(validation) == 4 * 3 * plan.validation_per_unit and not validation & set(keys)
    assert {j.class_name for j in shards[0]} == set(plan.class_names)  # every shard holds every unit
    assert plan.shard(1) == CorpusPlan(units_per_type=3, clips_per_unit=10, shards=3, duration_s=1.0).shard(1)


def test_clips_draw_their_snr_and_domain_from_the_plan() -> None:
    jobs = CorpusPlan(units_per_type=4, clips_per_unit=40, shards=1, target_share=0.25, duration_s=1.0).shard(0)
    assert {j.snr_db for j in jobs} == {-6.0, 0.0, 6.0}
    share = np.mean([j.domain == "target" for j in jobs])
    assert 0.15 < share < 0.35
    only_source = CorpusPlan(units_per_type=2, clips_per_unit=8, shards=1, target_share=0.0, snr_db=(6.0,), duration_s=1.0)
    assert {(j.domain, j.snr_db) for j in only_source.shard(0)} == {("source", 6.0)}


def test_rendering_is_the_same_in_one_process_or_several() -> None:
    plan = CorpusPlan(machine_types=("fan", "valve"), units_per_type=1, clips_per_unit=3, shards=1, duration_s=0.5)
    jobs = plan.shard(0)
    one = render_jobs(plan, jobs, workers=1)
    two = render_jobs(plan, jobs, workers=2)
    assert len(one) == len(jobs) and all(a.shape == (8000,) for a in one)
    assert all(np.array_equal(a, b) for a, b in zip(one, two, strict=True))
    assert not np.array_equal(one[0], one[1])


def test_generic_units_differ_by_design_and_recordings_are_coloured_apart() -> None:
    from ssad.data.synth_corpus import recorded

    plan = CorpusPlan(machine_types=("generic",), units_per_type=3, clips_per_unit=2, shards=1, duration_s=1.0,
                      recording_eq=1.0)
    jobs = plan.shard(0)
    waves = render_jobs(plan, jobs, workers=1)
    assert all(np.isfinite(w).all() and w.shape == (16000,) for w in waves)

    def spectrum(wave: np.ndarray) -> np.ndarray:
        power = np.abs(np.fft.rfft(wave)) ** 2
        return 10 * np.log10(np.add.reduceat(power, np.geomspace(1, len(power) - 1, 24).astype(int)) + 1e-12)

    same = np.abs(spectrum(waves[0]) - spectrum(waves[1])).mean()  # two recordings of unit 0
    other = np.abs(spectrum(waves[0]) - spectrum(waves[2])).mean()  # unit 0 against unit 1
    assert other > same
    plain = CorpusPlan(machine_types=("generic",), units_per_type=3, clips_per_unit=2, shards=1, duration_s=1.0)
    assert np.array_equal(recorded(waves[0], plain, jobs[0]), waves[0])  # recording_eq 0 leaves a clip alone
    coloured = recorded(waves[0], plan, jobs[0])
    assert not np.allclose(coloured, waves[0])
    assert np.isclose(np.sqrt(np.mean(coloured.astype(float) ** 2)), np.sqrt(np.mean(waves[0].astype(float) ** 2)),
                      rtol=1e-3)


@pytest.mark.parametrize(("arguments", "message"), [
    ({"units_per_type": 0}, "units_per_type"),
    ({"clips_per_unit": 2, "shards": 3}, "clips_per_unit"),
    ({"machine_types": ("fan", "lathe")}, "machine_types"),
    ({"target_share": 1.5}, "target_share"),
    ({"recording_eq": -1.0}, "recording_eq"),
])
def test_bad_plans_say_what_is_wrong(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CorpusPlan(**arguments)


def test_the_data_module_refuses_a_trainer_that_keeps_one_shard() -> None:
    from types import SimpleNamespace

    module = SynthCorpusDataModule(units_per_type=1, clips_per_unit=2, shards=2, duration_s=0.5)
    module.trainer = SimpleNamespace(reload_dataloaders_every_n_epochs=0, current_epoch=0)
    with pytest.raises(ValueError, match="reload_dataloaders_every_n_epochs"):
        module.setup("fit")


@pytest.mark.slow
def test_pretraining_walks_the_shards_and_resumes(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    from ssad.cli import main
    from ssad.encoder import load
    from ssad.models.runs import read_checkpoint

    run = tmp_path / "pretrain"
    common = ["fit", "--config", str(CONFIG), *TINY, "--trainer.default_root_dir", str(run)]
    assert main([*common, "--trainer.max_epochs", "2"]) == 0
    err = capfd.readouterr().err
    assert "shard 1/2: " in err and "shard 2/2: " in err  # epoch 0 on the first shard, epoch 1 on the second
    assert main([*common, "--trainer.max_epochs", "3", "--ckpt_path", "last"]) == 0
    assert "shard 1/2: " in capfd.readouterr().err  # the resumed epoch 2 is the first shard's again
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 2
    model = load(run)
    import yaml

    types = yaml.safe_load(CONFIG.read_text())["data"]["init_args"]["machine_types"]  # the shipped corpus's types
    plan = CorpusPlan(machine_types=tuple(types), units_per_type=2)
    assert model.class_names[:len(plan.class_names)] == plan.class_names
    assert len(model.class_names) == len(plan.class_names) + 2 + 1  # the units, 2 warped and 1 mixed
    assert model.embed(np.zeros(16000, dtype=np.float32), 16000).shape == (8,)
