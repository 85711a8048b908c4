"""Does a fixed prior covariance, the same for every machine, serve a machine enrolled alone from few clips?

    python experiments/enrolment_prior.py --prior ROOT --set NAME=ROOT [--set ...] --work DIR --out CSV

Today a machine enrolled into a detector draws its covariance towards the mean covariance of the machines
enrolled before it (`GaussianScorer._fit_new`), so what it scores depends on which machines came first, and a
machine enrolled alone gets Ledoit-Wolf on its own clips. Here the prior is fixed: the within-machine covariance
of the encoder's outputs pooled over every machine of `--prior` (a DCASE-layout root of machines no reported
set holds), blended with a machine's own sample covariance as `_enrolment_fit` blends (d pseudo-clips), either
as it is or rescaled to the machine's own total variance. Both members of the shipped ensemble (embedding
Gaussian, spectral floor) are fitted so; machines enrolled alone; AUC / pAUC per machine to --out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cold_start import append_rows, set_outputs  # noqa: E402
from layer_transfer import auc_row, by_machine  # noqa: E402

MEMBERS = ("embedding", "spectrum")


def within_covariance(outputs: dict[str, np.ndarray], ids: np.ndarray) -> dict[str, np.ndarray]:
    """Per output: the covariance of each clip's deviation from its own machine's mean, pooled over machines."""
    out = {}
    for name in MEMBERS:
        parts = [outputs[name][ids == m] - outputs[name][ids == m].mean(0) for m in sorted(set(ids.tolist()))]
        dev = np.concatenate(parts)
        out[name] = dev.T @ dev / (len(dev) - len(parts))
    return out


def fitter(prior: np.ndarray | None, rescale: bool):  # noqa: ANN201
    """A (mean, precision) fit of a machine's rows: Ledoit-Wolf alone, or blended with the fixed prior as
    `GaussianScorer` blends a machine enrolled after others (`_enrolment_fit`)."""
    from sklearn.covariance import LedoitWolf

    from ssad.scoring.gaussian import _enrolment_fit

    def fit(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if prior is None or len(X) >= X.shape[1]:
            model = LedoitWolf().fit(X)
            return model.location_, model.precision_
        scale = np.trace(np.cov(X, rowvar=False)) / np.trace(prior) if rescale else 1.0
        return _enrolment_fit(X, prior * scale)
    return fit


def distances(fit, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Test distances to the fit of all training rows, and each training row's held-out distance (`_held_out`:
    left out one at a time, or in 20 folds for more than 200 rows, as the detector's scorers do)."""
    from ssad.scoring.gaussian import _held_out

    mean, precision = fit(train)
    diff = test - mean
    return np.sqrt(np.maximum(np.einsum("ij,ij->i", diff @ precision, diff), 0.0)), _held_out(train, fit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prior", type=Path, required=True, help="root whose machines make the fixed prior")
    parser.add_argument("--set", action="append", required=True, help="NAME=ROOT (a DCASE-layout root)")
    parser.add_argument("--encoder", default="pretrained")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import ssad
    from ssad.audio.clips import clip_key
    from ssad.scoring.combine import combine_standardized

    model = ssad.load(args.encoder)
    cache = args.work / "outputs"
    prior_train, prior_out, _, _ = set_outputs(model, args.prior, cache)
    priors = within_covariance(prior_out, np.array([clip_key(c) for c in prior_train]))
    variants = {"alone (Ledoit-Wolf)": (False, False), "fixed prior": (True, False),
                "fixed prior, own scale": (True, True)}
    rows = []
    for spec in args.set:
        name, _, root = spec.partition("=")
        for machine, tr, te, labels in by_machine(*set_outputs(model, Path(root), cache)):
            n, m = len(tr["embedding"]), len(labels)
            for variant, (use_prior, rescale) in variants.items():
                held, scores = {}, {}
                for member in MEMBERS:
                    fit = fitter(priors[member] if use_prior else None, rescale)
                    scores[member], held[member] = distances(fit, tr[member], te[member])
                for label, chosen in (("ensemble", MEMBERS), ("gaussian", ("embedding",)), ("floor", ("spectrum",))):
                    score = combine_standardized({k: held[k] for k in chosen}, [machine] * n,
                                                 {k: scores[k] for k in chosen}, [machine] * m)
                    rows.append(auc_row(name, machine, f"{label}: {variant}", labels, score, n))
            print(f"{name} {machine}: done", flush=True)
    args.out.unlink(missing_ok=True)
    append_rows(args.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
