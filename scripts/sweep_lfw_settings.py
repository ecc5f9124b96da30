"""Try one notebook-02 training setting for one head on LFW View 1 and record its DevTest result.

Notebook 02 trains every head with one setting; this script is how alternative settings (longer training,
random shifts, weight decay, a tighter crop) were tried on one head before spending a full notebook run on
them. Each run writes one row to ``data/results/<profile>/02_sweep/<run>.csv`` (one file per run, so two
runs can go in parallel); notebook 02 shows the collected rows.

    python scripts/sweep_lfw_settings.py --head sphereface --epochs 30 --threads 1
    python scripts/sweep_lfw_settings.py --head sphereface --epochs 20 --max-shift 8 --threads 1

The same function as notebook 02 (``lib.lfw_experiment.train_head``) does the training, with the
notebook's defaults for everything not given here (SphereCNN at 96 px, Adam, batch 128, flip-fused
embeddings, 10-fold DevTest protocol with the seed's folds). Checkpoints go to
``data/checkpoints/<profile>/02_sweep/<run>/`` so an interrupted run resumes.
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from lib import lfw, lfw_experiment as experiment, paths
from lib.tables import write_csv


def run_name(args) -> str:
    # Adam float32 runs keep their earlier names
    optimizer = "" if args.optimizer == "adam" else f"-{args.optimizer}"
    amp = "" if args.amp == "off" else f"-{args.amp}"
    regularization = (f"-erase{args.erase:g}" if args.erase else "") + (f"-dropout{args.dropout:g}" if args.dropout else "")
    return (f"{args.head}-e{args.epochs}-{args.schedule or 'constant'}-crop{args.crop}-shift{args.max_shift}"
            f"{regularization}-wd{args.weight_decay:g}-lr{args.lr:g}{optimizer}{amp}-seed{args.seed}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--head", default="sphereface")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--schedule", default="cosine", help="cosine | step | none")
    parser.add_argument("--crop", type=int, default=150)
    parser.add_argument("--max-shift", type=int, default=0)
    parser.add_argument("--erase", type=float, default=0.0, help="random-erasing probability")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout before SphereCNN's embedding layer")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--optimizer", default="adam", help="adam | adamw | sgd (momentum 0.9)")
    parser.add_argument("--amp", default="off", help="off | bf16 (bfloat16 autocast, also on a CPU) | auto")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lfw-source", default="shared", help="shared | synthetic | a folder")
    parser.add_argument("--profile", default="real", help="which results/checkpoints folder to use")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    args.schedule = None if args.schedule == "none" else args.schedule
    if args.threads:
        torch.set_num_threads(args.threads)

    name = run_name(args)
    faces = lfw.load_lfw(paths.dataset_root(args.lfw_source, "lfw"))
    data = experiment.load_view1(faces, size=96, crop=args.crop)
    run = experiment.train_head(
        args.head, data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        schedule=args.schedule, weight_decay=args.weight_decay, max_shift=args.max_shift, seed=args.seed,
        erase=args.erase, dropout=args.dropout,
        eval_every=5, flip=True, amp=False if args.amp == "off" else args.amp,
        checkpoint_dir=paths.checkpoints_dir(args.profile) / "02_sweep" / name,
    )
    row = experiment.summary_table([run]).reset_index()
    evaluated = run.history.dropna(subset=["acc_10fold"])
    row = row.assign(
        run=name, crop=args.crop, max_shift=args.max_shift, erase=args.erase, dropout=args.dropout, weight_decay=args.weight_decay, lr=args.lr,
        optimizer=args.optimizer, amp=args.amp, schedule=args.schedule or "constant", batch_size=args.batch_size,
        final_train_accuracy=float(run.history["train_accuracy"].iloc[-1]),
        acc_10fold_by_epoch=" ".join(f"{e}:{a:.3f}" for e, a in zip(evaluated["epoch"], evaluated["acc_10fold"])),
        threads=torch.get_num_threads(),
    )
    out = write_csv(row, paths.results_dir(args.profile) / "02_sweep" / f"{name}.csv")
    print(pd.Series(row.iloc[0]).to_string())
    print(f"wrote {paths.shown(out)}")


if __name__ == "__main__":
    main()
