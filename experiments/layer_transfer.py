"""Which of the shipped encoder's layers carry a new machine's faults? Views of each clip scored per machine.

    python experiments/layer_transfer.py --set NAME=ROOT [--set ...] --work DIR --out CSV [--encoder pretrained]
    python experiments/layer_transfer.py --report DEV_CSV GUARD_CSV REAL_CSV --out MD

For every clip of each root (DCASE layout): the encoder's clip outputs as `ssad detector --pretrained` scores them
(embedding, spectrum), and per backbone layer of the network the channel means and spreads over each window's
frequency and time, averaged over the clip's windows. Each machine is enrolled alone, as the coldstart check
enrols it: a Gaussian (the product's `GaussianScorer`) per view fitted on its normal training clips, and ensembles
of views standardised on held-out training scores (`combine_standardized`), judged on its test clips. Writes AUC
and pAUC per machine, candidate and set. A diagnostic for choosing a scorer on sets no check reports.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cold_start import append_rows, clips_key, encoder_identity, set_outputs  # noqa: E402

#: backbone layers whose channel statistics are kept
LAYERS = (0, 1, 2, 3, 4, 6, 8, 10, 13, 16, 18)
#: layers also kept with their frequency axis in `BANDS` equal bands
BANDED = (0, 1, 2, 3, 4)
BANDS = 8


def layer_views(model, clips: list, cache: Path) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Per clip and kept layer: each channel's mean and spread over a window's frequency and time, window-averaged."""
    from diagnostics import cached_log_mels

    from ssad.features import sliding_windows

    path = cache / f"layers2-{clips_key(clips)}.npz"
    if path.is_file():
        with np.load(path) as npz:
            return {name: npz[name] for name in npz.files}
    net = model.module.net.eval()
    rows: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for mel in cached_log_mels(model, clips):
            windows = sliding_windows(torch.from_numpy(mel), model.window_frames, model.window_hop)
            x = net.input_norm(windows).unsqueeze(1)
            for index, layer in enumerate(net.backbone.features):
                x = layer(x)
                if index in LAYERS:
                    flat = x.flatten(2)
                    stats = torch.cat([flat.mean(-1), flat.std(-1, correction=0)], dim=1).mean(0)
                    rows.setdefault(f"layer{index}", []).append(stats.numpy())
                if index in BANDED:
                    bands = min(BANDS, x.shape[2])  # a small network's deep layers may have fewer rows
                    banded = x.unflatten(2, (bands, -1)).flatten(3)  # (windows, channels, bands, freq x time)
                    stats = torch.cat([banded.mean(-1), banded.std(-1, correction=0)], dim=1).mean(0)
                    rows.setdefault(f"bands{index}", []).append(stats.flatten().numpy())
    views = {name: np.stack(r) for name, r in rows.items()}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **views)
    return views


def candidates() -> dict[str, list[tuple[str, dict]]]:
    """Candidate scorers: name -> members (view, GaussianScorer parameters); one member = a Gaussian alone."""
    shipped = {"covariance": "auto", "components": 32, "components_when": "drifting"}
    out: dict[str, list[tuple[str, dict]]] = {
        "ensemble (shipped)": [("embedding", shipped), ("spectrum", {})],
        "gaussian (shipped)": [("embedding", shipped)],
        "floor": [("spectrum", {})],
    }
    for layer in LAYERS:
        out[f"layer{layer}"] = [(f"layer{layer}", {})]
        out[f"floor+layer{layer}"] = [("spectrum", {}), (f"layer{layer}", {})]
        out[f"ensemble+layer{layer}"] = [("embedding", shipped), ("spectrum", {}), (f"layer{layer}", {})]
    out["floor+layers0-4"] = [("spectrum", {})] + [(f"layer{k}", {}) for k in (0, 1, 2, 3, 4)]
    out["ensemble+layers0-4"] = [("embedding", shipped), ("spectrum", {})] + [(f"layer{k}", {}) for k in (0, 1, 2, 3, 4)]
    out["all layers"] = [(f"layer{k}", {}) for k in LAYERS]
    for k in BANDED:
        out[f"bands{k}"] = [(f"bands{k}", {})]
        out[f"floor+bands{k}"] = [("spectrum", {}), (f"bands{k}", {})]
        out[f"ensemble+bands{k}"] = [("embedding", shipped), ("spectrum", {}), (f"bands{k}", {})]
    out["ensemble+bands0+bands2"] = [("embedding", shipped), ("spectrum", {}), ("bands0", {}), ("bands2", {})]
    knnz, diag = {"kind": "knnz"}, {"kind": "diag"}
    out["knnz(embedding)"] = [("embedding", knnz)]
    out["knnz(spectrum)"] = [("spectrum", knnz)]
    out["knnz(embedding)+knnz(spectrum)"] = [("embedding", knnz), ("spectrum", knnz)]
    out["ensemble+knnz(spectrum)"] = [("embedding", shipped), ("spectrum", {}), ("spectrum", knnz)]
    out["ensemble+knnz(embedding)+knnz(spectrum)"] = [("embedding", shipped), ("spectrum", {}), ("embedding", knnz),
                                                      ("spectrum", knnz)]
    out["diag(embedding)+diag(spectrum)"] = [("embedding", diag), ("spectrum", diag)]
    out["ensemble+diag(spectrum)"] = [("embedding", shipped), ("spectrum", {}), ("spectrum", diag)]
    out["ensemble (max)"] = [("embedding", shipped), ("spectrum", {})]
    out["ensemble+second encoder"] = [("embedding", shipped), ("spectrum", {}), ("embedding2", shipped)]
    for kind in ("frames-gauss", "frames-pca"):
        out[kind] = [("frames", {"kind": kind})]
        out[f"ensemble+{kind}"] = [("embedding", shipped), ("spectrum", {}), ("frames", {"kind": kind})]
    return out


def _standardised(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets with each dimension standardised by the training rows' own mean and spread."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 1e-12 * max(float(np.abs(mean).max()), 1.0), std, 1.0)
    return (train - mean) / std, (test - mean) / std


def knn_z(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Held-out training and test scores: Euclidean distance to the nearest (other) training row, per-dimension
    standardised on the machine's own training rows."""
    from sklearn.neighbors import NearestNeighbors

    tr, te = _standardised(train, test)
    index = NearestNeighbors(n_neighbors=min(2, len(tr))).fit(tr)
    held_out = index.kneighbors(tr)[0][:, -1]  # the nearest row other than itself
    return held_out, index.kneighbors(te, n_neighbors=1)[0][:, 0]


def diagonal_gaussian(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Held-out training and test scores: Mahalanobis distance under a per-dimension variance (ridge as the product's
    empirical Gaussian)."""
    from ssad.scoring.gaussian import _held_out

    def fit(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        var = X.var(axis=0)
        return X.mean(axis=0), np.diag(1.0 / (var + 1e-3 * max(float(var.mean()), np.finfo(float).tiny)))

    mean, precision = fit(train)
    diff = test - mean
    return _held_out(train, fit), np.sqrt(np.einsum("ij,ij->i", diff @ precision, diff))


#: frame vectors: this many consecutive log-mel frames, one vector starting every `FRAME_STEP` frames
FRAME_CONTEXT, FRAME_STEP = 5, 4
#: principal directions frames-pca keeps, and the clip folds both frame members' held-out scores come from
FRAME_COMPONENTS, FRAME_FOLDS = 32, 5


def frame_vectors(model, clips: list, cache: Path) -> np.ndarray:  # noqa: ANN001
    """Per clip, its (vectors, FRAME_CONTEXT * n_mels) stacked log-mel frames, as an object array."""
    from diagnostics import cached_log_mels

    path = cache / f"frames{FRAME_CONTEXT}x{FRAME_STEP}-{clips_key(clips)}.npz"
    if not path.is_file():
        per_clip = []
        for mel in cached_log_mels(model, clips):
            starts = np.arange(0, mel.shape[1] - FRAME_CONTEXT + 1, FRAME_STEP)
            per_clip.append(np.stack([mel[:, s:s + FRAME_CONTEXT].T.ravel() for s in starts]).astype(np.float32))
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, rows=np.concatenate(per_clip), offsets=np.cumsum([0] + [len(v) for v in per_clip]))
    with np.load(path) as npz:
        rows, offsets = npz["rows"], npz["offsets"]
    out = np.empty(len(offsets) - 1, dtype=object)
    out[:] = [rows[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    return out


def _frame_gauss(rows: np.ndarray):  # noqa: ANN202
    """A clip scorer from training frame vectors: the mean Mahalanobis distance of its vectors to their Gaussian."""
    from sklearn.covariance import LedoitWolf

    est = LedoitWolf().fit(rows.astype(np.float64))

    def score(vectors: np.ndarray) -> float:
        diff = vectors - est.location_
        return float(np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", diff, est.precision_, diff), 0.0)).mean())
    return score


def _frame_pca(rows: np.ndarray):  # noqa: ANN202
    """A clip scorer from training frame vectors: the mean squared error of its vectors rebuilt from the leading
    principal directions."""
    mean = rows.mean(axis=0, dtype=np.float64)
    basis = np.linalg.eigh(np.cov(rows - mean, rowvar=False))[1][:, ::-1][:, :FRAME_COMPONENTS]

    def score(vectors: np.ndarray) -> float:
        centred = vectors - mean
        return float(((centred - centred @ basis @ basis.T) ** 2).mean())
    return score


def _frame_member(make):  # noqa: ANN001, ANN202
    """(training clips, test clips) -> held-out training scores (clips in `FRAME_FOLDS` folds) and test scores."""
    def member(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fold_of = np.arange(len(train)) % FRAME_FOLDS
        held = np.empty(len(train))
        for fold in range(min(FRAME_FOLDS, len(train))):
            score = make(np.concatenate(list(train[fold_of != fold])))
            held[fold_of == fold] = [score(v) for v in train[fold_of == fold]]
        score = make(np.concatenate(list(train)))
        return held, np.array([score(v) for v in test])
    return member


#: member kinds other than the product's GaussianScorer: (training rows, test rows) -> (held-out, test) scores
KINDS = {"knnz": knn_z, "diag": diagonal_gaussian, "frames-gauss": _frame_member(_frame_gauss),
         "frames-pca": _frame_member(_frame_pca)}


#: candidates whose members' standardised scores are combined by their maximum instead of their mean
BY_MAXIMUM = {"ensemble (max)"}


def score_machine(train: dict, test: dict, members: list[tuple[str, dict]], machine: str,
                  maximum: bool = False) -> np.ndarray:
    """Test scores of one machine enrolled alone: its members' scores standardised on their held-out training
    scores and averaged (with `maximum`, the largest)."""
    from ssad.scoring.combine import combine_standardized, standardize_per_id
    from ssad.scoring.gaussian import GaussianScorer

    n, m = len(next(iter(train.values()))), len(next(iter(test.values())))
    tr_scores, te_scores = {}, {}
    for j, (view, params) in enumerate(members):
        if "kind" in params:
            tr_scores[str(j)], te_scores[str(j)] = KINDS[params["kind"]](train[view], test[view])
            continue
        scorer = GaussianScorer(**params).fit(train[view], [machine] * n)
        tr_scores[str(j)], te_scores[str(j)] = scorer.train_scores_, scorer.score(test[view], [machine] * m)
    if len(members) == 1:
        return te_scores["0"]
    if maximum:
        return np.max([standardize_per_id(tr_scores[k], [machine] * n, te_scores[k], [machine] * m)
                       for k in tr_scores], axis=0)
    return combine_standardized(tr_scores, [machine] * n, te_scores, [machine] * m)


def mean_auc(path: Path) -> dict[str, dict[str, float]]:
    """Candidate -> column -> mean AUC: per selection set (folds averaged), per other set's machine type, and the
    dev score (selection sets' mean and transfer_dev's mean, averaged) where those sets are in the file."""
    import csv

    cells: dict[tuple[str, str], list[float]] = {}
    for row in csv.DictReader(path.open()):
        kind = row["machine"].split("/")[0]
        column = f"sel:{kind}" if row["set"].startswith("sel") else f"{row['set']}:{kind}"
        cells.setdefault((row["candidate"], column), []).append(float(row["auc"]))
    out: dict[str, dict[str, float]] = {}
    for (cand, column), values in cells.items():
        out.setdefault(cand, {})[column] = float(np.mean(values))
    for columns in out.values():
        for part in ("sel", "tdev", "synth2", "synth3"):
            chosen = [v for k, v in columns.items() if k.startswith(part + ":")]
            if chosen:
                columns[part] = float(np.mean(chosen))
        if "sel" in columns and "tdev" in columns:
            columns["dev"] = (columns["sel"] + columns["tdev"]) / 2
    return out


def report(dev: Path, guard: Path, real: Path) -> str:
    """Markdown: every candidate's dev score and parts, its guard means and the real development machines."""
    d, g, r = mean_auc(dev), mean_auc(guard), mean_auc(real)
    real_cols = sorted({c for v in r.values() for c in v})
    head = ["candidate", "dev", "selection", "transfer_dev", "synthetic 2", "synthetic 3", *real_cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cand in sorted(d, key=lambda c: -d[c].get("dev", 0)):
        cells = [d[cand].get("dev"), d[cand].get("sel"), d[cand].get("tdev"), g.get(cand, {}).get("synth2"),
                 g.get(cand, {}).get("synth3"), *[r.get(cand, {}).get(c) for c in real_cols]]
        lines.append(f"| {cand} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"


def auc_row(name: str, machine: str, candidate: str, labels: np.ndarray, scores: np.ndarray, train: int) -> dict:
    """One CSV row: a candidate's AUC and pAUC on one machine's test clips."""
    from ssad.evaluation.metrics import auc_pauc

    auc, pauc = auc_pauc(labels, scores)
    return {"set": name, "machine": machine, "candidate": candidate, "auc": round(float(auc), 4),
            "pauc": round(float(pauc), 4), "train": train, "test": len(labels)}


def by_machine(train: list, train_out: dict, test: list, test_out: dict):  # noqa: ANN201
    """Per machine of a set: its name, its training outputs, its test outputs and its test labels (1 = anomaly)."""
    from ssad.audio.clips import clip_key

    train_ids = np.array([clip_key(c) for c in train])
    test_ids = np.array([clip_key(c) for c in test])
    labels = np.array([c.label == "anomaly" for c in test], dtype=int)
    for machine in sorted(set(train_ids.tolist())):
        a, b = train_ids == machine, test_ids == machine
        yield machine, {k: v[a] for k, v in train_out.items()}, {k: v[b] for k, v in test_out.items()}, labels[b]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", nargs=3, type=Path, metavar=("DEV", "GUARD", "REAL"),
                        help="write the markdown table of three measured CSVs to --out")
    parser.add_argument("--set", action="append", help="NAME=ROOT (a DCASE-layout root)")
    parser.add_argument("--encoder", default="pretrained")
    parser.add_argument("--second-encoder", help="an encoder whose embedding is the view `embedding2`")
    parser.add_argument("--candidates", nargs="+", help="only these candidates (no layer views unless one needs them)")
    parser.add_argument("--work", type=Path, help="where clip outputs are cached")
    parser.add_argument("--out", type=Path, required=True, help="CSV of AUC / pAUC per machine and candidate")
    args = parser.parse_args(argv)
    if args.report:
        args.out.write_text(report(*args.report))
        return 0
    if not args.set or args.work is None:
        parser.error("--set and --work are needed to measure (or --report to tabulate)")

    import ssad

    model = ssad.load(args.encoder)
    cache = args.work / encoder_identity(args.encoder)["sha256"][:16]  # by its weights: two runs' best.ckpt differ
    chosen = {c: m for c, m in candidates().items() if not args.candidates or c in args.candidates}
    if not args.second_encoder:
        if args.candidates and any(v == "embedding2" for m in chosen.values() for v, _ in m):
            parser.error("a chosen candidate needs --second-encoder")
        chosen = {c: m for c, m in chosen.items() if all(view != "embedding2" for view, _ in m)}
    second = ssad.load(args.second_encoder) if args.second_encoder else None
    second_cache = args.work / encoder_identity(args.second_encoder)["sha256"][:16] if second is not None else None
    rows = []
    for spec in args.set:
        name, _, root = spec.partition("=")
        train, train_out, test, test_out = set_outputs(model, Path(root), cache)
        if second is not None:
            _, train2, _, test2 = set_outputs(second, Path(root), second_cache)
            train_out, test_out = train_out | {"embedding2": train2["embedding"]}, test_out | {"embedding2": test2["embedding"]}
        if any(view == "frames" for members in chosen.values() for view, _ in members):
            train_out, test_out = (train_out | {"frames": frame_vectors(model, train, cache)},
                                   test_out | {"frames": frame_vectors(model, test, cache)})
        if any(view not in train_out for members in chosen.values() for view, _ in members):
            train_out |= layer_views(model, train, cache)
            test_out |= layer_views(model, test, cache)
        for machine, tr, te, labels in by_machine(train, train_out, test, test_out):
            n = len(next(iter(tr.values())))
            rows += [auc_row(name, machine, cand, labels, score_machine(tr, te, members, machine, cand in BY_MAXIMUM), n)
                     for cand, members in chosen.items()]
            print(f"{name} {machine}: done", flush=True)
    args.out.unlink(missing_ok=True)
    append_rows(args.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
