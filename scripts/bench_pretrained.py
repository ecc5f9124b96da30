"""Throughput of the pretrained face encoder (lib.pretrained) and of the all-vs-all audit (lib.frvt).

1. Embedding: ``--images`` LFW images (from ``lib.paths.SHARED_LFW`` when present, else 250 x 250 noise
   JPEGs in a temporary folder, where the detector finds no face and the fallback box is used) through
   dlib's detector, 5-point alignment and ResNet descriptor, with ``--workers`` processes and no cache.
   Printed: wall-clock images/s of the whole run, and per CPU-second of one core each step's rate
   (decode + detection + alignment; descriptor), which a busy shared machine does not distort.
2. Scoring: all-vs-all comparison of ``--pairs-of`` random unit 128-d vectors (13,233 = all of LFW:
   87.5 M pairs) with 5,749 random identities and two groups, counted into bins as the audit does;
   printed in pairs/s; then ``--replicates`` identity-bootstrap replicates at FMR 1e-3, 1e-4, 1e-5.

Without dlib or its model files, part 1 is skipped with a message saying how to install them; part 2 still runs.

    python scripts/bench_pretrained.py [--images 64] [--workers N] [--pairs-of 13233] [--replicates 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("FACE_PROGRESS", "off")

from lib import frvt, paths, pretrained  # noqa: E402


def lfw_images(count: int, folder: Path) -> tuple[list[Path], str]:
    lfw_folder = paths.SHARED_LFW / "lfw-deepfunneled"
    if lfw_folder.is_dir():
        files = sorted(lfw_folder.glob("*/*.jpg"))
        picks = np.random.default_rng(0).choice(len(files), min(count, len(files)), replace=False)
        return [files[i] for i in sorted(picks)], f"{len(picks)} LFW deep-funneled images"
    rng = np.random.default_rng(0)
    files = []
    for i in range(count):
        path = folder / f"noise_{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (250, 250, 3), dtype=np.uint8)).save(path, quality=90)
        files.append(path)
    return files, f"{count} generated 250x250 noise JPEGs (no real LFW found at {lfw_folder})"


def bench_embedding(count: int, workers: int | None) -> None:
    encoder = pretrained.make_encoder("dlib")
    with tempfile.TemporaryDirectory() as folder:
        files, what = lfw_images(count, Path(folder))
        result = pretrained.embed_images(encoder, files, workers=workers, cache=False, progress=False)
    rates = result.throughput
    print(f"dlib encoder on {what} ({rates['workers']} worker process(es), no cache):")
    print(f"  whole run               {rates['images/s (wall, all workers)']:8.1f} images/s (wall clock, "
          f"{rates['wall seconds']} s, includes loading the models and starting the workers)")
    print(f"  decode+detect+align     {rates['decode+detect+align images per CPU-second']:8.1f} images per CPU-second")
    print(f"  descriptor (ResNet)     {rates['descriptor images per CPU-second']:8.1f} images per CPU-second")
    print(f"  fallback box used for   {result.n_fallback} of {len(files)} images")


def bench_scoring(n_images: int, n_replicates: int) -> None:
    rng = np.random.default_rng(0)
    features = rng.standard_normal((n_images, 128)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    identities = rng.integers(0, max(1, round(n_images * 5749 / 13233)), n_images)
    groups = rng.choice(["Female", "Male"], n_images, p=[0.23, 0.77])
    targets = (1e-3, 1e-4, 1e-5)
    started = time.perf_counter()
    counts = frvt.count_all_pairs(features, identities, groups, tail_fmr=4 * max(targets))
    pairs = counts.n_genuine + counts.n_impostor
    print(f"all-vs-all scoring of {n_images:,} random unit 128-d vectors ({pairs:,} pairs, "
          f"block of {counts.block_rows} rows, one process):")
    print(f"  {counts.pairs_per_second / 1e6:8.1f} M pairs/s ({counts.seconds:.1f} s; "
          f"{time.perf_counter() - started:.1f} s with setup)")
    started = time.perf_counter()
    frvt.bootstrap(counts, targets, n_boot=n_replicates, seed=0)
    seconds = time.perf_counter() - started
    print(f"  identity bootstrap: {n_replicates} replicates in {seconds:.1f} s ({n_replicates / seconds:.0f} replicates/s; "
          f"{len(counts.tail_bin):,} impostor pairs kept)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64, help="images to embed (default 64)")
    parser.add_argument("--workers", type=int, default=None, help="embedding processes (default: every core)")
    parser.add_argument("--pairs-of", type=int, default=13233, help="vectors compared all-vs-all (default 13233)")
    parser.add_argument("--replicates", type=int, default=200, help="bootstrap replicates (default 200)")
    args = parser.parse_args(argv)
    reason = pretrained.unavailable_reason("dlib")
    if reason is None:
        bench_embedding(args.images, args.workers)
    else:
        print(f"dlib encoder: skipped, not installed. {reason}")
    bench_scoring(args.pairs_of, args.replicates)  # needs numpy only
    return 0


if __name__ == "__main__":
    sys.exit(main())
