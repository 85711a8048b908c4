"""Does ID training teach the network's layers to hear faults? Each layer's time statistics, trained and untrained.

    python experiments/layer_views.py RUN ROOT [--untrained]

For every backbone layer of a trained classifier run: each clip's feature map averaged over time (channels x
frequency, flattened), and its channel means and spreads over time (averaged over frequency); a per-ID
Gaussian (Ledoit-Wolf) on each, fitted on the root's normal training clips, judged on its test clips. Also the
embedding of the whole clip as one window, and the spectral floor (mean and std log-mel). With `--untrained`
the same network with freshly initialised weights (the trained input normalisation kept): what the
architecture gives before any training. A diagnostic, not a detector.
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
from diagnostics import (
    auc_by_type,
    cached_log_mels,
    floor_features,
    gaussian_distances,
    machine_ids,
    mean_auc,
)


def _untrained(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of `net` with every layer re-initialised except the input normalisation (the data's z-scoring)."""
    fresh = copy.deepcopy(net)
    for module in fresh.modules():
        if module is not fresh and module is not fresh.input_norm and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return fresh.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("root")
    parser.add_argument("--untrained", action="store_true", help="re-initialise the network's weights first")
    parser.add_argument("--seed", type=int, default=0, help="seed of the re-initialisation")
    args = parser.parse_args(argv)

    import ssad
    from ssad.audio.layout import index_root, select

    model = ssad.load(args.run)
    net = model.module.net.eval()
    if args.untrained:
        torch.manual_seed(args.seed)
        net = _untrained(net)
    clips = index_root(args.root)
    train, test = select(clips, split="train", label="normal"), select(clips, split="test")

    def views(chosen: list) -> dict[str, np.ndarray]:
        mels = cached_log_mels(model, chosen)
        out: dict[str, list[np.ndarray]] = {}
        with torch.inference_mode():
            for mel in mels:
                x = net.input_norm(torch.from_numpy(mel)[None]).unsqueeze(1)
                for index, layer in enumerate(net.backbone.features):
                    x = layer(x)  # (1, channels, freq, time)
                    mean, spread = x.mean(-1)[0], x.std(-1, correction=0)[0]
                    out.setdefault(f"layer {index:2d}: time mean, flat", []).append(mean.flatten().numpy())
                    out.setdefault(f"layer {index:2d}: channel mean+std", []).append(
                        torch.cat([mean.mean(-1), spread.mean(-1)]).numpy())
                out.setdefault("embedding, whole clip", []).append(net.embed(torch.from_numpy(mel)[None])[0].numpy())
                out.setdefault("floor: mean+std log-mel", []).append(floor_features(mel))
        return {name: np.stack(rows) for name, rows in out.items()}

    tr, te = views(train), views(test)
    tr_ids, te_ids = machine_ids(train), machine_ids(test)
    labels = np.array([c.label == "anomaly" for c in test], dtype=int)
    which = f"untrained (seed {args.seed})" if args.untrained else "trained"
    for name in tr:
        per_type = auc_by_type(lambda a, b, name=name: gaussian_distances(tr[name][a], te[name][b]),
                               tr_ids, te_ids, labels)
        auc = mean_auc(per_type)
        print(f"{which:20s} {name:34s} dim {tr[name].shape[1]:5d} auc {auc:.3f}", flush=True)


if __name__ == "__main__":
    main()
