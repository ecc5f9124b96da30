"""Seconds per training steps of notebook 03's from-scratch run, side by side: float32 vs bf16 autocast
(which ``lib.training.fit`` runs on channels-last tensors on a CPU), at several batch sizes.

ResNet-18 from random weights at ``--size`` px with the normsoftmax head, trained by ``lib.training.fit``
exactly as notebook 03 does (uint8 cache, flip augmentation, Adam), on the first images of FairFace's
training split (the real data folder when present, else the synthetic set). Each configuration trains
``--steps`` optimizer steps per round; the configurations alternate round by round, so a background load
that comes and goes hits them alike. Printed per configuration: wall seconds and CPU-seconds of this
process per ``--steps`` steps, and CPU-seconds per epoch of the real FairFace 0.25 subset (250 steps at batch
64), with the 1-minute load average (``os.getloadavg``) beside each round. On a shared, oversubscribed
machine wall time measures the other jobs; with ``--threads 1`` the CPU-seconds still measure what one core
does (two threads spin-wait on each other when descheduled, so use one there). No timing is asserted anywhere; this only informs the ``real`` profile's settings.

    python scripts/bench_fairface_steps.py [--steps 200] [--rounds 2] [--batch-sizes 64 128] [--amp off bf16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("FACE_PROGRESS", "off")

import torch  # noqa: E402

from lib import fairface_experiment as experiment, paths  # noqa: E402
from lib.losses import make_head  # noqa: E402
from lib.models import make_model  # noqa: E402
from lib.settings import RunSettings  # noqa: E402
from lib.training import fit, seed_everything  # noqa: E402

TRAIN_IMAGES = 15_926  # FairFace 0.25 subset's training split in the real data folder (an epoch at batch 64: 248 steps)


def one_round(data, *, batch_size: int, amp: str, steps: int, size: int) -> tuple[float, float]:
    """Wall seconds (fit's own epoch timer) and CPU seconds of this process (``time.process_time`` around
    the whole fit: model set-up included, a fraction of a second) for ``steps`` optimizer steps."""
    n = steps * batch_size
    images, labels = data.train_images[:n], data.train_labels[:n]
    settings = RunSettings(head="normsoftmax", model="resnet18", image_size=size, epochs=1, batch_size=batch_size,
                           drop_last=True, amp=amp, lr=1e-3, schedule="cosine", seed=0)
    seed_everything(0)
    model = make_model("resnet18", embedding_dim=settings.embedding_dim)
    head = make_head("normsoftmax", settings.embedding_dim, data.num_classes, **settings.head_hparams)
    started = time.process_time()
    result = fit(settings, model, head, images, labels, device="cpu", progress=False)
    return float(result.history["seconds"].sum()), time.process_time() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup-steps", type=int, default=20, help="steps of the warm-up round (not reported)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--amp", nargs="+", default=["off", "bf16"], choices=["off", "bf16"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    source = paths.dataset_root("shared", "fairface") if paths.SHARED_DATA.exists() else None
    if source is None:
        from lib import synthetic

        synthetic.ensure_synthetic(preset="default")
        source = paths.dataset_root("synthetic", "fairface", "default")
    data = experiment.load_classification(source, target="race", size=args.size, progress=False)
    needed = args.steps * max(args.batch_sizes)
    if len(data.train_images) < needed:
        print(f"only {len(data.train_images)} training images, {needed} needed; lower --steps", file=sys.stderr)
        return 2
    print(f"{source}: {len(data.train_images)} training images at {args.size}px; torch threads {args.threads}; "
          f"{args.steps} steps per round, {args.rounds} rounds after one warm-up")
    configs = [(batch, amp) for batch in args.batch_sizes for amp in args.amp]
    times = {config: [] for config in configs}
    for round_ in range(args.rounds + 1):
        for batch, amp in configs:
            load = os.getloadavg()[0]
            steps = args.warmup_steps if round_ == 0 else args.steps
            seconds, cpu = one_round(data, batch_size=batch, amp=amp, steps=steps, size=args.size)
            label = "warm-up" if round_ == 0 else f"round {round_}"
            print(f"  {label}: batch {batch:>3} amp {amp:>4}: {seconds:6.1f} s wall, {cpu:6.1f} CPU-s per {steps} steps "
                  f"(load average {load:.2f} before, {os.getloadavg()[0]:.2f} after)", flush=True)
            if round_:
                times[(batch, amp)].append((seconds, cpu))
    print(f"\nper {args.steps} steps: best wall seconds, median CPU-seconds; per epoch of {TRAIN_IMAGES:,} images "
          f"(from the median CPU-seconds: what {args.threads} otherwise idle core(s) would take):")
    for (batch, amp), values in times.items():
        best = min(wall for wall, _ in values)
        cpu = statistics.median(cpu for _, cpu in values)
        per_epoch = cpu / (args.steps * batch) * TRAIN_IMAGES
        print(f"  batch {batch:>3} amp {amp:>4}: {best:6.1f} s wall, {cpu:6.1f} CPU-s; {per_epoch:6.1f} CPU-s per epoch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
