"""Does bf16 training change the default profile's conclusions? Notebook 03's race experiment, trained
twice with the same seeds and batches: in float32 (``amp="off"``) and in bf16 autocast (what ``amp: auto``
picks on a CPU with native bf16), then judged by the same functions as notebooks 03 and 04:

* notebook 04's check on the synthetic data: per head, Spearman's rho between the planted group
  difficulty (``lib.synthetic.GROUP_DIFFICULTY``) and the measured recall per group, and whether the
  hardest planted group is the worst measured one (``lib.fairness_analysis.planted_order_check``);
* notebook 03's run health (collapsed runs) and its head comparisons
  (``lib.head_comparison.compare_heads``: differences with intervals over seeds, Holm-corrected verdicts;
  verdicts need three or more seeds, so with the default profile's two they read ``no verdict`` both ways);
* each head's validation accuracy (mean over seeds), which is expected to move a little, not to reorder
  the conclusions.

Prints both side by side and exits 1 when a conclusion differs. The defaults are the default profile's
(``params/default.yaml``: 2 seeds, 2 epochs, 32 px, the first 2,000 training images)::

    python scripts/precision_agreement.py [--seeds 0 1] [--epochs 2] [--limit 2000] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import pandas as pd
import torch

os.environ.setdefault("FACE_PROGRESS", "off")

from lib import fairface_experiment as experiment  # noqa: E402
from lib import fairness_analysis, head_comparison, paths, synthetic  # noqa: E402
from lib.notebooks import load_profile  # noqa: E402


def conclusions(data, heads, seeds, head_pairs, *, amp: str, epochs: int, batch_size: int, lr: float,
                image_size: int) -> dict:
    started = time.perf_counter()
    settings = [experiment.classifier_settings(head, seed, image_size=image_size, epochs=epochs,
                                               batch_size=batch_size, lr=lr, amp=amp)
                for head in heads for seed in seeds]
    runs = experiment.train_grid(settings, data, device="cpu", checkpoint_dir=None)
    predictions = experiment.predictions_table(runs)
    health = head_comparison.run_health(predictions)
    status = head_comparison.head_status(predictions, health)
    relabelled = head_comparison.relabel(predictions, status)
    per_group = fairness_analysis.per_group_accuracy(relabelled, "race", order=data.groups)
    planted = fairness_analysis.planted_order_check(per_group, synthetic.GROUP_DIFFICULTY)
    comparisons = head_comparison.compare_heads(predictions, status, head_pairs, group="race", order=data.groups)
    accuracy = experiment.summary_over_seeds(runs)
    return {"planted": planted, "comparisons": comparisons, "health": health, "accuracy": accuracy,
            "seconds": time.perf_counter() - started}


def main(argv=None) -> int:
    profile = load_profile("default")
    notebook = profile.get("03_cosrelu_vs_softmax", {})
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=notebook.get("seeds", [0, 1]))
    parser.add_argument("--epochs", type=int, default=notebook.get("epochs", 2))
    parser.add_argument("--limit", type=int, default=notebook.get("limit"))
    parser.add_argument("--image-size", type=int, default=notebook.get("image_size", 32))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    heads = ["cosine_softmax", "normsoftmax", "cosrelu", "cosface", "arcface"]
    head_pairs = [["cosrelu", "cosine_softmax"], ["normsoftmax", "cosine_softmax"], ["cosface", "normsoftmax"],
                  ["arcface", "normsoftmax"]]
    synthetic.ensure_synthetic(preset="default")
    root = paths.dataset_root("synthetic", "fairface", "default")
    data = experiment.load_classification(root, padding="0.25", target="race", size=args.image_size, limit=args.limit)
    print(f"race on synthetic FairFace ({len(data.train_images)} training, {len(data.val_images)} validation images, "
          f"{args.image_size} px), {len(heads)} heads x seeds {args.seeds}, {args.epochs} epochs, batch 64, Adam 1e-3")
    found = {amp: conclusions(data, heads, args.seeds, head_pairs, amp=amp, epochs=args.epochs, batch_size=64, lr=1e-3,
                                 image_size=args.image_size)
             for amp in ("off", "bf16")}
    label = {"off": "float32", "bf16": "bf16"}
    for amp, result in found.items():
        print(f"{label[amp]}: {result['seconds']:.0f} s wall for the grid")

    planted = pd.concat({label[amp]: r["planted"][["spearman_rho", "worst group", "hardest planted group is worst"]]
                         for amp, r in found.items()}, axis=1)
    accuracy = pd.concat({label[amp]: r["accuracy"]["accuracy"] for amp, r in found.items()}, axis=1)
    keys = ["quantity", "group", "head", "reference"]
    verdicts = pd.concat({label[amp]: r["comparisons"].set_index(keys)[["difference", "verdict"]]
                          for amp, r in found.items()}, axis=1)
    collapsed = {label[amp]: sorted(map(str, r["health"].loc[r["health"]["collapsed"], "head"].unique()))
                 for amp, r in found.items()}
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 3):
        print("\nPlanted order check (notebook 04):\n", planted)
        print("\nValidation accuracy, mean over seeds:\n", accuracy)
        print("\nHead comparisons (notebook 03):\n", verdicts[verdicts.index.get_level_values("quantity") != "group accuracy"])
    print("\nCollapsed runs:", collapsed)

    off, bf16 = found["off"], found["bf16"]
    same = {
        "hardest planted group is worst": (off["planted"]["hardest planted group is worst"]
                                           .equals(bf16["planted"]["hardest planted group is worst"])),
        "rho negative for every head": (bool((off["planted"]["spearman_rho"] < 0).all())
                                        == bool((bf16["planted"]["spearman_rho"] < 0).all())),
        "verdicts": off["comparisons"]["verdict"].tolist() == bf16["comparisons"]["verdict"].tolist(),
        "collapsed runs": collapsed["float32"] == collapsed["bf16"],
    }
    for name, agrees in same.items():
        print(f"{name}: {'same' if agrees else 'DIFFERENT'} under float32 and bf16")
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
