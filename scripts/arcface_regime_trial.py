"""Does ArcFace collapse from a random initialisation? A short trial of its settings on FairFace.

Trains ResNet-18 + ArcFace with each setting below (one seed, notebook 03's engine) and prints, per
epoch, the validation accuracy, the median angle θ_y between an embedding and its own class weight and
the share of validation samples in the head's fallback branch (beyond π − m for ArcFace, beyond 90° with
the easy margin, where its margin is off), beside CosFace as a head without that trap. Notebook 03 chose its ArcFace regime from such trials:

    python scripts/arcface_regime_trial.py                                   # synthetic, 3 epochs
    python scripts/arcface_regime_trial.py --source shared --limit 4000 --epochs 2

Nothing is written except the decoded-image cache; checkpoints are not kept.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lib import fairface_experiment as experiment, paths, synthetic

SETTINGS = {
    "arcface s=64 m=0.5 (the paper's)": ("arcface", {"scale": 64.0, "margin": 0.5}),
    "arcface s=30 m=0.5": ("arcface", {"scale": 30.0, "margin": 0.5}),
    "arcface s=30 m=0.5 easy margin": ("arcface", {"scale": 30.0, "margin": 0.5, "easy_margin": True}),
    "arcface s=30 m=0.2": ("arcface", {"scale": 30.0, "margin": 0.2}),
    "arcface s=30 m=0.1 (notebook 03)": ("arcface", {"scale": 30.0, "margin": 0.1}),
    "cosface s=30 m=0.35": ("cosface", {}),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="synthetic", help="synthetic | shared | a FairFace folder")
    parser.add_argument("--target", default="race", choices=experiment.TARGETS)
    parser.add_argument("--limit", type=int, default=None, help="first N images of each split")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.source == "synthetic":
        synthetic.ensure_synthetic(preset="default")
    root = paths.dataset_root(args.source, "fairface", "default")
    data = experiment.load_classification(root, target=args.target, size=args.image_size, limit=args.limit,
                                          progress=False)
    print(f"{args.target} on {root}: {len(data.train_labels)} train / {len(data.val_labels)} val images, "
          f"{args.image_size}px, {args.epochs} epochs, Adam 1e-3 cosine, seed {args.seed}", flush=True)
    for name, (head, hparams) in SETTINGS.items():
        start = time.perf_counter()
        run = experiment.train_classifier(head, data, seed=args.seed, head_hparams=hparams, epochs=args.epochs,
                                          lr=1e-3, schedule="cosine", device="cpu", progress=False)
        print(f"\n{name} ({time.perf_counter() - start:.0f} s)")
        for row in run.history.to_dict("records"):
            share = row[experiment.FALLBACK_SHARE]
            branch = "no fallback branch" if np.isnan(share) else f"in the fallback branch {share:.1%}"
            print(f"  epoch {row['epoch']}: val accuracy {row['overall']:.3f}, {branch}")
        angles = np.degrees(np.arccos(np.clip(run.predictions["target_cosine"], -1, 1)))
        print(f"  final: median θ_y {np.median(angles):.1f}°, beyond 90° {np.mean(angles > 90):.1%}, "
              f"beyond 151.4° {np.mean(angles > 151.4):.1%}", flush=True)


if __name__ == "__main__":
    main()
