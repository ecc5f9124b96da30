"""Which ArcFace regime trains without collapsing from a random initialisation? Trials on a held-out split.

Trains ResNet-18 + ArcFace with each setting below (notebook 03's engine and settings, one seed) on
80 % of FairFace's *training* images and scores the other 20 % (seeded, stratified by race and label;
``lib.fairface_experiment.hold_out_of_train``), so the validation images notebook 03 reports are never
used to choose. Per run it prints the held-out accuracy, the median angle θ_y between an embedding and
its own class weight, and ``lib.head_comparison.run_health``'s verdict (collapsed when most samples sit in
the fallback branch or more than 90° from their class weight, or the accuracy is not above the majority
class's share). A CosFace run is the reference of a head without that trap.

The rule, fixed before the trials: notebook 03 uses the setting with the **largest margin** whose run is
healthy on every target tried (race and gender), a tie between settings of that margin going to the higher
mean held-out accuracy; with none healthy, ArcFace stays flagged. The centred-weight settings
(``ArcFaceHead(centered_weights=True)``) were added after the first four had all collapsed on gender,
under the same rule.

    python scripts/arcface_regime_trial.py                                          # synthetic, quick
    python scripts/arcface_regime_trial.py --source shared --image-size 32 --epochs 4 \\
        --out data/results/real/03_arcface_trials.csv                               # what notebook 03 shows

Nothing is written except the decoded-image cache and ``--out``; checkpoints are not kept.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lib import fairface_experiment as experiment, head_comparison, paths, synthetic
from lib.tables import write_csv

# One epoch of the full 16,000-image training split at batch 64 is 250 steps.
WARMUP_STEPS = 250
SETTINGS = {
    "s=30 m=0.1, no warm-up": ("arcface", {"scale": 30.0, "margin": 0.1}),
    "s=30 m=0.1, warm-up 250 steps": ("arcface", {"scale": 30.0, "margin": 0.1, "margin_warmup_steps": WARMUP_STEPS}),
    "s=30 m=0.2, warm-up 250 steps": ("arcface", {"scale": 30.0, "margin": 0.2, "margin_warmup_steps": WARMUP_STEPS}),
    "s=30 m=0.5, warm-up 250 steps": ("arcface", {"scale": 30.0, "margin": 0.5, "margin_warmup_steps": WARMUP_STEPS}),
    "cosface s=30 m=0.35 (reference)": ("cosface", {}),
    "s=30 m=0.1, centred weights": ("arcface", {"scale": 30.0, "margin": 0.1, "centered_weights": True}),
    "s=30 m=0.2, warm-up 250 steps, centred weights": (
        "arcface", {"scale": 30.0, "margin": 0.2, "margin_warmup_steps": WARMUP_STEPS, "centered_weights": True}),
    "s=30 m=0.5, warm-up 250 steps, centred weights": (
        "arcface", {"scale": 30.0, "margin": 0.5, "margin_warmup_steps": WARMUP_STEPS, "centered_weights": True}),
}


def trial_rows(data, *, epochs: int, seed: int, lr: float, batch_size: int, settings=None) -> list[dict]:
    rows = []
    for name in settings or SETTINGS:
        head, hparams = SETTINGS[name]
        start = time.perf_counter()
        settings = experiment.classifier_settings(head, seed, head_hparams=hparams, image_size=data.train_images.shape[-1],
                                                  epochs=epochs, lr=lr, batch_size=batch_size, schedule="cosine",
                                                  amp="off")
        run = experiment.train_classifier(settings, data, device="cpu", progress=False)
        health = head_comparison.run_health(run.predictions).iloc[0]
        angles = np.degrees(np.arccos(np.clip(run.predictions["target_cosine"], -1, 1)))
        row = {"target": data.target, "setting": name, "head": head,
               "margin": hparams.get("margin", np.nan), "warmup_steps": hparams.get("margin_warmup_steps", 0),
               "centered_weights": bool(hparams.get("centered_weights", False)),
               "held_out_accuracy": round(float(health["accuracy"]), 4),
               "median_angle_deg": round(float(np.median(angles)), 1),
               "share_beyond_90deg": round(float(health["away_share"]), 4),
               "fallback_share": round(float(health["fallback_share"]), 4),
               "collapsed": bool(health["collapsed"]), "reason": health["reason"],
               "train_images": len(data.train_labels), "held_out_images": len(data.val_labels),
               "image_size": int(data.train_images.shape[-1]), "epochs": epochs, "seed": seed,
               "seconds": round(time.perf_counter() - start, 1)}
        print(f"  {data.target:6s} {name:34s} held-out acc {row['held_out_accuracy']:.3f}  median θ_y "
              f"{row['median_angle_deg']:5.1f}°  beyond 90° {row['share_beyond_90deg']:.0%}  "
              f"{'COLLAPSED: ' + row['reason'] if row['collapsed'] else 'healthy'}  ({row['seconds']:.0f} s)",
              flush=True)
        rows.append(row)
    return rows


def chosen_setting(trials: pd.DataFrame) -> str | None:
    """The rule: the ArcFace setting with the largest margin healthy on every target tried (a tie: the higher
    mean held-out accuracy); ``None`` when there is none."""
    arcface = trials[trials["head"] == "arcface"]
    by_setting = arcface.groupby("setting").agg(healthy=("collapsed", lambda c: not c.astype(bool).any()),
                                                margin=("margin", "first"),
                                                accuracy=("held_out_accuracy", "mean"))
    healthy = by_setting[by_setting["healthy"]]
    if healthy.empty:
        return None
    return str(healthy.sort_values(["margin", "accuracy"], ascending=False).index[0])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="synthetic", help="synthetic | shared | a FairFace folder")
    parser.add_argument("--targets", nargs="+", default=["race", "gender"], choices=experiment.TARGETS)
    parser.add_argument("--limit", type=int, default=None, help="first N images of each split")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", nargs="+", default=None, choices=list(SETTINGS), metavar="SETTING",
                        help="only these settings (default: all); their rows replace the same rows in --out")
    parser.add_argument("--out", default=None, help="CSV of the trial rows")
    args = parser.parse_args(argv)

    if args.source == "synthetic":
        synthetic.ensure_synthetic(preset="default")
    root = paths.dataset_root(args.source, "fairface", "default")
    rows = []
    for target in args.targets:
        full = experiment.load_classification(root, target=target, size=args.image_size, limit=args.limit,
                                              progress=False)
        data = experiment.hold_out_of_train(full, fraction=0.2, seed=args.seed)
        print(f"{target} on {root}: {len(data.train_labels)} train / {len(data.val_labels)} held-out training "
              f"images (the {len(full.val_labels)} validation images are not used), {args.image_size}px, "
              f"{args.epochs} epochs, Adam {args.lr:g} cosine, batch {args.batch_size}, seed {args.seed}", flush=True)
        rows += trial_rows(data, epochs=args.epochs, seed=args.seed, lr=args.lr, batch_size=args.batch_size,
                           settings=args.settings)
    trials = pd.DataFrame(rows)
    if args.out and args.settings and Path(args.out).is_file():  # keep the other settings' earlier rows
        earlier = pd.read_csv(args.out)
        kept = earlier[~earlier.set_index(["target", "setting"]).index.isin(trials.set_index(["target", "setting"]).index)]
        trials = pd.concat([kept, trials], ignore_index=True)
    if "centered_weights" in trials:
        trials["centered_weights"] = trials["centered_weights"].fillna(False).astype(bool)
    setting = chosen_setting(trials)
    print("\nchosen by the rule:", setting or "no healthy ArcFace setting")
    if args.out:
        write_csv(trials, args.out)
        print("wrote", args.out)


if __name__ == "__main__":
    main()
