"""What the image cache's content checks cost: hashing every source file, and hashing the decoded pixels.

The cache is keyed by a BLAKE2b digest of every source file's bytes (lib.imagecache.source_digests),
computed on every load, and verifies the pixel file against its recorded digest on reuse
(lib.imagecache.cache_digest). This prints how long both take on the real data (LFW, FairFace) when it
is present, else on the embedded synthetic set. The first pass may read from disk; the best of the
repeats reads from the page cache, as a notebook re-run does.

    python scripts/bench_cache_hash.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from lib import paths
from lib.imagecache import cache_digest, source_digests


def image_files(root) -> list[str]:
    files = []
    for folder, _, names in os.walk(root):
        files += [os.path.join(folder, name) for name in names if name.endswith(".jpg")]
    return sorted(files)


def best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if paths.shared_data_available():
        sets = {"LFW (real)": paths.SHARED_LFW, "FairFace 0.25 subset (real)": paths.SHARED_FAIRFACE}
    else:
        sets = {f"synthetic {name}": paths.synthetic_root("default") / name for name in ("lfw", "fairface")}
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; best of {args.repeats}")
    for title, root in sets.items():
        files = image_files(root)
        if not files:
            print(f"{title}: no images under {root}")
            continue
        megabytes = sum(os.path.getsize(path) for path in files) / 1e6
        seconds = best_of(args.repeats, lambda: source_digests(files))
        print(f"{title}: {len(files):,} files, {megabytes:.0f} MB: source hashing {seconds:.2f} s")
    pixels = np.random.default_rng(0).integers(0, 256, (9525, 3, 96, 96), dtype=np.uint8)
    seconds = best_of(args.repeats, lambda: cache_digest(pixels))
    print(f"pixel digest of (9525, 3, 96, 96) uint8 ({pixels.nbytes / 1e6:.0f} MB, LFW DevTrain at 96 px): "
          f"{seconds:.2f} s")


if __name__ == "__main__":
    main()
