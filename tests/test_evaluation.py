"""Evaluation: score tables, AUC/pAUC, means, thresholds, challenge files, reports and plots."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ssad.core.errors import BadInputError, SsadError
from ssad.evaluation import (
    MEAN_ID,
    RESULTS_HEADER,
    AlarmThreshold,
    ResultRow,
    ScoreTable,
    auc_pauc,
    decision_metrics,
    ensemble_tables,
    evaluate,
    harmonic_mean,
    load_thresholds,
    plot_histograms,
    plot_roc,
    plot_tsne_pair,
    summarize,
    write_challenge_files,
    write_evaluation,
    write_results,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _table(
    scores, labels, *, mtype="fan", mid="id_00", scorer="s", split="test", domain="source"
) -> ScoreTable:
    n = len(scores)
    return ScoreTable(
        path=[f"/data/{mtype}/{split}/{lab}_{mid}_{i:08d}.wav" for i, lab in enumerate(labels)],
        machine_type=mtype,
        machine_id=mid,
        split=split,
        label=list(labels),
        domain=domain if isinstance(domain, str) else list(domain),
        scorer=scorer,
        score=np.asarray(scores, dtype=float)[:n],
    )


# -- pAUC by hand -------------------------------------------------------------------------------------------

ANOMALY_SCORES = [0.95, 0.9, 0.3, 0.2]
NORMAL_SCORES = [0.85, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35, 0.15, 0.1]


def _mcclish(partial_area: float, max_fpr: float) -> float:
    lo, hi = 0.5 * max_fpr**2, max_fpr
    return 0.5 * (1 + (partial_area - lo) / (hi - lo))


@pytest.mark.parametrize("max_fpr", [0.1, 0.15])
def test_pauc_matches_a_hand_computed_mcclish_value(max_fpr: float) -> None:
    # ROC: the two top anomalies come before every normal clip, so TPR jumps to 0.5 at FPR 0 and stays
    # there until FPR 0.8; the partial area up to max_fpr is 0.5 * max_fpr.
    labels = ["anomaly"] * 4 + ["normal"] * 10
    auc, pauc = auc_pauc(labels, ANOMALY_SCORES + NORMAL_SCORES, max_fpr=max_fpr)
    # AUC: pairs (anomaly > normal): 10 + 10 + 2 + 2 of 40
    assert auc == pytest.approx(24 / 40)
    assert pauc == pytest.approx(_mcclish(0.5 * max_fpr, max_fpr))
    assert pauc == pytest.approx({0.1: 0.736842105, 0.15: 0.729729730}[max_fpr])


def test_auc_pauc_accepts_0_1_labels_and_refuses_one_class() -> None:
    assert auc_pauc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="only one class"):
        auc_pauc([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"\['broken'\].*normal"):
        auc_pauc(["normal", "broken"], [0.1, 0.2])


def test_harmonic_and_arithmetic_means() -> None:
    assert harmonic_mean([1.0, 0.5]) == pytest.approx(2 / 3)
    assert harmonic_mean([0.8, 0.0]) == 0.0
    assert math.isnan(harmonic_mean([]))
    assert harmonic_mean([0.6, float("nan")]) == pytest.approx(0.6)


# -- evaluate / summarize ------------------------------------------------------------------------------------


def _separating(auc_kind: str, rng: np.random.Generator, n_norm: int = 20, n_anom: int = 10) -> np.ndarray:
    if auc_kind == "perfect":
        return np.r_[rng.uniform(0, 1, n_norm), rng.uniform(2, 3, n_anom)]
    if auc_kind == "inverted":
        return np.r_[rng.uniform(2, 3, n_norm), rng.uniform(0, 1, n_anom)]
    return np.r_[np.arange(n_norm) % 2, np.arange(n_anom) % 2].astype(float)  # AUC exactly 0.5


@pytest.fixture()
def labelled() -> ScoreTable:
    rng = np.random.default_rng(0)
    labels = ["normal"] * 20 + ["anomaly"] * 10
    parts = [
        _table(_separating("perfect", rng), labels, mtype="fan", mid="id_00"),
        _table(_separating("half", rng), labels, mtype="fan", mid="id_02"),
        _table(_separating("perfect", rng), labels, mtype="pump", mid="id_00"),
        _table(_separating("perfect", rng), labels, mtype="pump", mid="id_02"),
    ]
    return ScoreTable.concat(parts)


def test_evaluate_rows_per_id_and_type_means(labelled: ScoreTable) -> None:
    rows = evaluate(labelled)
    keys = [(r.machine_type, r.machine_id) for r in rows]
    assert keys == [
        ("fan", "id_00"),
        ("fan", "id_02"),
        ("fan", MEAN_ID),
        ("pump", "id_00"),
        ("pump", "id_02"),
        ("pump", MEAN_ID),
    ]
    by = {k: r for k, r in zip(keys, rows, strict=True)}
    assert by["fan", "id_00"].auc == 1.0 and by["fan", "id_02"].auc == pytest.approx(0.5)
    assert by["fan", MEAN_ID].auc == pytest.approx(0.75)
    assert by["fan", MEAN_ID].pauc == pytest.approx(
        np.mean([by["fan", "id_00"].pauc, by["fan", "id_02"].pauc])
    )
    assert by["pump", MEAN_ID].auc == 1.0
    assert by["fan", "id_00"].n_normal == 20 and by["fan", MEAN_ID].n_anomaly == 20
    assert math.isnan(by["fan", "id_00"].auc_source) and math.isnan(by["fan", "id_00"].f1)

    (summary,) = summarize(rows)
    assert summary.n_types == 2
    assert summary.auc_mean == pytest.approx((0.75 + 1.0) / 2)
    assert summary.auc_hmean == pytest.approx(2 * 0.75 * 1.0 / (0.75 + 1.0))
    fan_p, pump_p = by["fan", MEAN_ID].pauc, by["pump", MEAN_ID].pauc
    assert summary.pauc_hmean == pytest.approx(2 * fan_p * pump_p / (fan_p + pump_p))
    assert math.isnan(summary.official)


def test_evaluate_skips_single_class_ids_and_unlabelled_clips(labelled: ScoreTable, caplog) -> None:
    only_normal = _table([0.1, 0.2, 0.3], ["normal"] * 3, mtype="valve", mid="id_04")
    unknown = _table([0.1, 0.2, 0.3], ["unknown"] * 3, mtype="valve", mid="id_06")
    train = _table([0.1, 0.2], ["normal"] * 2, mtype="fan", mid="id_00", split="train")
    with caplog.at_level(logging.WARNING):
        rows = evaluate(ScoreTable.concat([labelled, only_normal, unknown, train]))
    assert "valve/id_04" in caplog.text
    assert all(r.machine_type != "valve" for r in rows)
    assert evaluate(labelled)[0].n_normal == rows[0].n_normal


def test_evaluate_with_domains_gives_the_official_score() -> None:
    rng = np.random.default_rng(1)
    labels = ["normal"] * 10 + ["anomaly"] * 4 + ["normal"] * 10 + ["anomaly"] * 4
    domain = ["source"] * 14 + ["target"] * 14
    scores = np.r_[rng.normal(0, 1, 10), rng.normal(3, 1, 4), rng.normal(1.5, 1, 10), rng.normal(3, 1, 4)]
    table = _table(scores, labels, mtype="ToyCar", mid="section_00", domain=domain)
    row, mean = evaluate(table)
    y = np.array([lab == "anomaly" for lab in labels], dtype=int)
    src = np.array([d == "source" for d in domain]) | (y == 1)
    tgt = np.array([d == "target" for d in domain]) | (y == 1)
    assert row.auc_source == pytest.approx(roc_auc_score(y[src], scores[src]))
    assert row.auc_target == pytest.approx(roc_auc_score(y[tgt], scores[tgt]))
    assert row.pauc == pytest.approx(roc_auc_score(y, scores, max_fpr=0.1))
    assert row.official == pytest.approx(harmonic_mean([row.auc_source, row.auc_target, row.pauc]))
    assert mean.official == pytest.approx(row.official)
    assert summarize([row, mean])[0].official == pytest.approx(row.official)


def test_decision_metrics_by_hand() -> None:
    labels = ["anomaly", "anomaly", "anomaly", "normal", "normal"]
    p, r, f = decision_metrics(labels, [1, 1, 0, 1, 0])
    assert (p, r) == pytest.approx((2 / 3, 2 / 3)) and f == pytest.approx(2 / 3)
    assert decision_metrics([1, 0], [0, 0]) == (0.0, 0.0, 0.0)


# -- thresholds ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.1, 0.2])
def test_threshold_on_steady_scores_lets_through_the_rate(rate: float) -> None:
    """Scores of clips that do not shift between recordings: each method's threshold flags about `rate` of new ones."""
    rng = np.random.default_rng(2)
    train = np.r_[rng.gamma(2.0, 1.0, 2000), rng.gamma(5.0, 30.0, 2000)]
    ids = np.repeat(["fan/id_00", "fan/id_02"], 2000)
    fresh = np.r_[rng.gamma(2.0, 1.0, 20000), rng.gamma(5.0, 30.0, 20000)]
    for method in ("gamma", "quantile", "predictive"):
        thr = AlarmThreshold(rate, method=method).fit(train, ids, np.tile(np.arange(2000) * 5 // 2000, 2))
        decided = thr.decide(fresh, np.repeat(["fan/id_00", "fan/id_02"], 20000))
        assert decided.dtype.kind == "i" and set(np.unique(decided)) <= {0, 1}
        for i in range(2):
            # the predictive threshold is read from a normal: on these skewed scores it lets through a little more
            assert decided[i * 20000 : (i + 1) * 20000].mean() == pytest.approx(rate, abs=0.03 if method != "predictive" else 0.04)


def test_gamma_threshold_handles_negative_scores_and_falls_back() -> None:
    rng = np.random.default_rng(3)
    nll = rng.normal(-120.0, 4.0, 1000)
    thr = AlarmThreshold(0.1, method="gamma").fit(np.r_[nll, np.full(50, 2.5)], ["a"] * 1000 + ["const"] * 50)
    assert (rng.normal(-120.0, 4.0, 20000) > thr.threshold_["a"]).mean() == pytest.approx(0.1, abs=0.025)
    assert thr.how_["const"] == "quantile" and thr.threshold_["const"] == 2.5


def test_threshold_validation_and_json_round_trip(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"false_alarm_rate=90"):
        AlarmThreshold(90).fit([1.0, 2.0], ["a", "a"])
    thr = AlarmThreshold().fit(np.random.default_rng(4).gamma(2, 1, 300), ["a"] * 300, np.arange(300) // 60)
    with pytest.raises(ValueError, match=r"\['b'\].*\['a'\]"):
        thr.decide([1.0], ["b"])
    loaded = AlarmThreshold.load(thr.save(tmp_path / "t.json"))
    assert loaded.threshold_ == thr.threshold_ and loaded.false_alarm_rate == thr.false_alarm_rate
    np.testing.assert_allclose(loaded.normal_scores_["a"], thr.normal_scores_["a"], atol=1e-6)
    np.testing.assert_array_equal(loaded.groups_["a"], thr.groups_["a"])
    (tmp_path / "bad.json").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(SsadError):
        AlarmThreshold.load(tmp_path / "bad.json")


def test_thresholds_of_earlier_ssad_read_their_percentile_as_the_rate(tmp_path: Path) -> None:
    old = {"class": "GammaThreshold", "percentile": 0.9, "scorer": "gaussian", "thresholds": {"fan/id_00": 3.5},
           "gamma_params": {"fan/id_00": None}, "fallbacks": {}}
    loaded = AlarmThreshold.from_dict(old)
    assert loaded.false_alarm_rate == pytest.approx(0.1) and loaded.threshold_ == {"fan/id_00": 3.5}
    assert loaded.decide([3.0, 4.0], ["fan/id_00"] * 2).tolist() == [0, 1]


# -- tables and files ----------------------------------------------------------------------------------------


def test_score_table_csv_round_trip_filter_concat(tmp_path: Path, labelled: ScoreTable) -> None:
    back = ScoreTable.from_csv(labelled.to_csv(tmp_path / "scores.csv"))
    for name in ("path", "machine_type", "machine_id", "split", "label", "domain", "scorer"):
        np.testing.assert_array_equal(getattr(back, name), getattr(labelled, name))
    np.testing.assert_array_equal(back.score, labelled.score)
    assert len(labelled.filter(machine_type="fan", label="anomaly")) == 20
    assert len(labelled.filter(machine_id=["id_00", "id_02"], machine_type="pump")) == 60
    assert labelled.ids[0] == "fan/id_00"
    assert len(ScoreTable.concat([labelled, labelled])) == 2 * len(labelled)
    with pytest.raises(ValueError, match=r"label values \['weird'\]"):
        _table([1.0], ["weird"])
    with pytest.raises(ValueError, match="cannot filter on 'colour'"):
        labelled.filter(colour="red")
    (tmp_path / "bad.csv").write_text("file,score\nx,1\n")
    with pytest.raises(BadInputError, match="lacks column"):
        ScoreTable.from_csv(tmp_path / "bad.csv")


def test_challenge_files_have_the_baseline_format(tmp_path: Path, labelled: ScoreTable) -> None:
    decisions = (labelled.score > 1.5).astype(int)
    written = write_challenge_files(labelled, tmp_path, decisions)
    assert {p.name for p in written} == {
        f"{kind}_{t}_{i}.csv"
        for kind in ("anomaly_score", "decision_result")
        for t in ("fan", "pump")
        for i in ("id_00", "id_02")
    }
    with (tmp_path / "anomaly_score_fan_id_00.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 30 and all(len(r) == 2 for r in rows)
    assert rows[0][0] == "normal_id_00_00000000.wav"  # base name, no header
    np.testing.assert_allclose(
        [float(r[1]) for r in rows], labelled.filter(machine_type="fan", machine_id="id_00").score
    )
    with (tmp_path / "decision_result_pump_id_02.csv").open(newline="") as f:
        assert {r[1] for r in csv.reader(f)} <= {"0", "1"}
    with pytest.raises(ValueError, match="one scorer"):
        write_challenge_files(ScoreTable.concat([labelled, _table([1.0], ["normal"], scorer="t")]), tmp_path)


def test_results_csv_and_markdown(tmp_path: Path, labelled: ScoreTable) -> None:
    rows = evaluate(labelled, decisions=(labelled.score > 1.5).astype(int))
    csv_path, md_path = write_results(rows, tmp_path)
    lines = csv_path.read_text().splitlines()
    assert lines[0].split(",")[:5] == list(RESULTS_HEADER)
    assert lines[0].startswith("scorer,machine_type,machine_id,auc,pauc")
    with csv_path.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) and {r["machine_id"] for r in table} == {"id_00", "id_02", "mean"}
    for r in table:
        for col in ("auc", "pauc", "precision", "recall", "f1"):
            value = r[col]
            assert len(value.split(".")[1]) >= 4 and 0.0 <= float(value) <= 1.0
    md = md_path.read_text()
    assert "## s" in md and "arithmetic mean" in md and "harmonic mean" in md and "| fan |" in md
    assert "87.50" in md  # arithmetic mean AUC across fan (75%) and pump (100%)


def test_write_evaluation_end_to_end(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    tables_train, tables_test = [], []
    for scorer, shift in (("gaussian", 3.0), ("knn", 1.0)):
        for mid in ("id_00", "id_02"):
            tables_train.append(
                _table(rng.gamma(3, 1, 100), ["normal"] * 100, mid=mid, scorer=scorer, split="train")
            )
            s = np.r_[rng.gamma(3, 1, 30), shift + rng.gamma(3, 1, 15)]
            tables_test.append(_table(s, ["normal"] * 30 + ["anomaly"] * 15, mid=mid, scorer=scorer))
        tables_train.append(
            _table(rng.gamma(3, 1, 50), ["normal"] * 50, mid="id_01", scorer=scorer, split="train")
        )
        tables_test.append(_table(rng.gamma(3, 1, 20), ["unknown"] * 20, mid="id_01", scorer=scorer))
    train, test = ScoreTable.concat(tables_train), ScoreTable.concat(tables_test)
    chosen = {"gaussian": {"fan": {"covariance": "type", "nll_per_id": -41.25, "nll_type": -52.5},
                           "pump": {"covariance": "per_id", "why": "one ID"}}, "knn": {}}
    kept = {"gaussian": {"fan/id_00": {"drift": 17.46, "components": 32}, "fan/id_02": {"drift": 1.1, "components": None}}}
    rows = write_evaluation(train, test, tmp_path / "eval", covariances=chosen, directions=kept)
    out = tmp_path / "eval"
    md = (out / "results.md").read_text()
    assert "| gaussian | fan | type | -41.2 | -52.5 | the lower NLL |" in md
    assert "| gaussian | pump | per_id |  |  | one ID |" in md
    assert "| gaussian | fan/id_00 | 17.5 | the 32 leading |" in md
    assert "| gaussian | fan/id_02 | 1.1 | all |" in md
    assert {(r.scorer, r.machine_id) for r in rows} == {
        (s, i) for s in ("gaussian", "knn") for i in ("id_00", "id_02", "mean")
    }
    assert all(0 <= r.f1 <= 1 for r in rows)
    for scorer in ("gaussian", "knn"):
        for mid in ("id_00", "id_01", "id_02"):
            assert (out / scorer / f"anomaly_score_fan_{mid}.csv").is_file()
            assert (out / scorer / f"decision_result_fan_{mid}.csv").is_file()
    for name in ("scores.csv", "thresholds.json", "results.csv", "results.md"):
        assert (out / name).is_file()
    assert len(ScoreTable.from_csv(out / "scores.csv")) == len(train) + len(test)
    assert set(load_thresholds(out / "thresholds.json")) == {"gaussian", "knn"}
    pngs = sorted((out / "plots").glob("*.png"))
    assert {p.name for p in pngs} == {"roc_fan.png", "hist_gaussian_fan.png", "hist_knn_fan.png"}
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in pngs)
    gauss = {r.machine_id: r for r in rows if r.scorer == "gaussian"}
    assert gauss["mean"].auc > 0.8


def test_plots_write_png_files(tmp_path: Path, labelled: ScoreTable) -> None:
    thr = {"s": {"fan/id_00": 1.5}}
    paths = plot_roc(labelled, tmp_path) + plot_histograms(labelled, thr, tmp_path)
    rng = np.random.default_rng(6)
    labels = ["normal"] * 12 + ["anomaly"] * 6
    raw, emb = rng.normal(size=(18, 64)), np.r_[rng.normal(size=(12, 8)), 4 + rng.normal(size=(6, 8))]
    paths.append(plot_tsne_pair(raw, emb, labels, tmp_path / "tsne" / "fan_id_00.png", title="fan id_00"))
    assert len(paths) == 2 + 2 + 1
    assert all(Path(p).read_bytes()[:8] == PNG_MAGIC for p in paths)
    with pytest.raises(ValueError, match="at least 5 clips"):
        plot_tsne_pair(raw[:3], emb[:3], labels[:3], tmp_path / "x.png")


def test_ensemble_tables_combines_detectors_read_back_from_csv(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    labels = ["normal"] * 60 + ["anomaly"] * 40
    # detector a sees the first half of the anomalies, detector b (on a 1000x scale) the second half
    a = np.r_[rng.normal(size=60), 4 + rng.normal(size=20), rng.normal(size=20)]
    b = 1000 * np.r_[rng.normal(size=60), rng.normal(size=20), 4 + rng.normal(size=20)]
    test = ScoreTable.concat([_table(a, labels, scorer="a"), _table(b, labels, scorer="b")])
    train = ScoreTable.concat(
        [
            _table(rng.normal(size=80), ["normal"] * 80, scorer="a", split="train"),
            _table(1000 * rng.normal(size=80), ["normal"] * 80, scorer="b", split="train"),
        ]
    )
    train = ScoreTable.from_csv(train.to_csv(tmp_path / "train.csv"))
    ens_train, ens_test = ensemble_tables(train, test, ["a", "b"], name="a+b")
    assert ens_test.scorers == ["a+b"] and len(ens_train) == 80 and len(ens_test) == 100
    by = {r.scorer: r.auc for r in evaluate(ScoreTable.concat([test, ens_test])) if r.machine_id == MEAN_ID}
    assert by["a+b"] >= max(by["a"], by["b"]) + 0.05
    with pytest.raises(ValueError, match=r"\['c'\]"):
        ensemble_tables(train, test, ["a", "c"])


def test_result_row_columns_start_with_the_results_header() -> None:
    assert tuple(ResultRow.field_names()[:5]) == RESULTS_HEADER


def test_threshold_of_a_thin_id_is_the_median_of_the_others(tmp_path: Path, caplog) -> None:
    rng = np.random.default_rng(6)
    scores = np.r_[rng.gamma(2, 1, 300), rng.gamma(2, 2, 300), [5.0]]
    ids = ["a"] * 300 + ["b"] * 300 + ["thin"] * 1
    thr = AlarmThreshold(0.1).fit(scores, ids)
    assert thr.threshold_["thin"] == pytest.approx(np.median([thr.threshold_["a"], thr.threshold_["b"]]))
    assert set(thr.fallbacks_) == {"thin"} and "median threshold" in thr.fallbacks_["thin"]
    assert "thin" in caplog.text
    assert AlarmThreshold.load(thr.save(tmp_path / "t.json")).fallbacks_ == thr.fallbacks_
    alone = AlarmThreshold(0.1).fit([1.0, 2.0], ["x", "x"])
    assert alone.threshold_["x"] == pytest.approx(1.9) and alone.how_["x"] == "quantile"
