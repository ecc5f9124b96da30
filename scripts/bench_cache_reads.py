"""Image-cache reads from disk: the gather's images/s when the memory-mapped cache is not in the page cache.

The colab profile's decoded FairFace cache at 224 px (97,698 images × 150,528 bytes = 14.7 GB, memory-mapped
from /content) is larger than the runtime's 12.7 GB of RAM, so part of every epoch's rows come from disk, read by
the one gather thread of ``lib.training.ImageBatches``. This benchmark simulates it on any machine: a cache file
of ``--images`` rows is written, and before each measured epoch its pages are dropped from the page cache
(``os.posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)`` after an ``fsync``) and the file is mapped afresh, so every
row comes from disk. Orders compared side by side, each over the same batches count:

1. random: ``lib.training.epoch_batches`` (a permutation of all rows, what ``fit`` trains on) through
   ``ImageBatches.gather_ahead`` (the gather thread on CUDA, inline on a CPU);
2. chunked, the alternative considered (defined here, not used by ``fit``): rows shuffled within windows of
   contiguous chunks, the windows in random order, each chunk copied from the file with one sequential read the
   first time a batch needs it (what "shuffle within chunks so reads are sequential" costs and gains);
3. sequential: rows in file order through ``ImageBatches`` (the disk's streaming rate, an upper bound);
4. warm: random order with the pages left in the page cache (what a cache that fits in RAM gets).

    python scripts/bench_cache_reads.py [--images 4000] [--size 224] [--batch-size 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("FACE_PROGRESS", "off")

from lib import notebooks, training  # noqa: E402
from lib.training import Augment, ImageBatches, epoch_batches, epoch_generator  # noqa: E402

CHUNK_ROWS = 512  # 77 MB of 224-px rows: one sequential read
CHUNK_WINDOW = 4  # chunks shuffled together


def chunked_epoch_batches(n: int, batch_size: int, seed: int, epoch: int, chunk_rows: int, window: int):
    """Every row once, seeded by ``(seed, epoch)``: contiguous chunks of ``chunk_rows`` in a random order, taken
    ``window`` at a time, the rows of each window permuted."""
    generator = epoch_generator(seed, epoch)
    chunks = torch.randperm(-(-n // chunk_rows), generator=generator)
    pieces = []
    for start in range(0, len(chunks), window):
        rows = torch.cat([torch.arange(int(c) * chunk_rows, min(n, (int(c) + 1) * chunk_rows))
                          for c in chunks[start : start + window]])
        pieces.append(rows[torch.randperm(len(rows), generator=generator)])
    return list(torch.cat(pieces).split(batch_size))


class ChunkedBatches(ImageBatches):
    """Gathers a chunked order's rows from chunks copied with one sequential read each, keeping the last
    ``2 × window`` chunks (a batch at a window's edge needs two windows)."""

    def __init__(self, images, device, chunk_rows: int, window: int):
        super().__init__(images, Augment(), (0.5,) * 3, (0.5,) * 3, device)
        self.chunk_rows, self.keep, self.loaded = chunk_rows, 2 * window, {}

    def gather_ahead(self, order):
        for index in order:
            yield index, self.rows(index).to(self.device)

    def rows(self, index):
        chunk_of = torch.div(index, self.chunk_rows, rounding_mode="floor")
        out = torch.empty((len(index), *self.source.shape[1:]), dtype=self.source.dtype)
        for chunk in chunk_of.unique().tolist():
            if chunk not in self.loaded:
                start = chunk * self.chunk_rows
                self.loaded[chunk] = self.source[start : start + self.chunk_rows].clone()  # one sequential read
                while len(self.loaded) > self.keep:
                    self.loaded.pop(next(iter(self.loaded)))
            here = chunk_of == chunk
            out[here] = self.loaded[chunk][index[here] - chunk * self.chunk_rows]
        return out


T4_IMAGES_PER_SECOND = max(notebooks.T4_RESNET18_224_TRAIN)  # the estimate's fast end


def write_cache(path: Path, n: int, size: int) -> tuple[int, ...]:
    """A cache-format file (uint8 rows of 3 x size x size) of random pixels, written in blocks and synced."""
    shape = (n, 3, size, size)
    rng = np.random.default_rng(0)
    row = 3 * size * size
    block = max(1, (64 << 20) // row)
    with open(path, "wb") as handle:
        for start in range(0, n, block):
            handle.write(rng.integers(0, 256, (min(block, n - start)) * row, dtype=np.uint8).tobytes())
        handle.flush()
        os.fsync(handle.fileno())
    return shape


def drop_pages(path: Path) -> None:
    """Evict the file's pages from the page cache (clean pages only: the file was synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def mapped(path: Path, shape) -> torch.Tensor:
    """The file mapped as ``lib.imagecache`` maps a cache (copy-on-write)."""
    return torch.from_numpy(np.memmap(path, dtype=np.uint8, mode="c", shape=shape))


def gather_rate(path: Path, shape, device: torch.device, batches, chunked: bool, cold: bool, chunk_rows: int = 0,
                window: int = 0) -> float:
    """Images/s of one epoch's gather (rows to the device), the file's pages dropped first when ``cold``."""
    if cold:
        drop_pages(path)
    images = mapped(path, shape)
    if chunked:
        source = ChunkedBatches(images, device, chunk_rows, window)
    else:
        source = ImageBatches(images, Augment(), (0.5,) * 3, (0.5,) * 3, device)
    count = 0
    started = time.perf_counter()
    for _, rows in source.gather_ahead(batches):
        count += len(rows)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    del source, images
    return count / seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4000, help="rows of the cache file (224 px: 150 KB each)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="measured epochs per order (alternating)")
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS)
    parser.add_argument("--window", type=int, default=CHUNK_WINDOW)
    parser.add_argument("--device", default="cpu", help="cpu | cuda (the pinned-memory gather thread)")
    parser.add_argument("--folder", default=None, help="where to write the cache file (default: a temporary folder)")
    args = parser.parse_args(argv)
    if not hasattr(os, "posix_fadvise"):
        print("cache-read benchmark skipped: this system has no posix_fadvise to drop a file's pages")
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"cache-read benchmark on CUDA skipped: {training.cuda_unavailable_reason()}")
        return 0
    torch.set_num_threads(1)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        path = Path(folder) / "cache.u8"
        started = time.perf_counter()
        shape = write_cache(path, args.images, args.size)
        written = time.perf_counter() - started
        n = args.images
        orders = {
            "random": (lambda epoch: epoch_batches(n, args.batch_size, 0, epoch), False, True),
            "chunked": (lambda epoch: chunked_epoch_batches(n, args.batch_size, 0, epoch, args.chunk_rows, args.window),
                        True, True),
            "sequential": (lambda epoch: epoch_batches(n, args.batch_size, 0, epoch, shuffle=False), False, True),
            "warm": (lambda epoch: epoch_batches(n, args.batch_size, 0, epoch), False, False),
        }
        rates = {name: [] for name in orders}
        gather_rate(path, shape, device, orders["warm"][0](0), False, False)  # warm-up: fills the page cache
        for epoch in range(1, args.rounds + 1):
            for name, (order, chunked, cold) in orders.items():
                rates[name].append(gather_rate(path, shape, device, order(epoch), chunked, cold, args.chunk_rows,
                                               args.window))
    megabytes = n * 3 * args.size * args.size / 1e6
    print(f"cache file: {n} rows of 3x{args.size}x{args.size} uint8 = {megabytes:.0f} MB, written in {written:.1f} s "
          f"({megabytes / written:.0f} MB/s); batch {args.batch_size}; device {device}; {args.rounds} epochs per "
          f"order, alternating; pages dropped before each cold epoch")
    print(f"{'gather images/s (rows to the device)':<62}{'best':>9}{'median':>9}")
    labels = {
        "random": "(1) random permutation, pages dropped (fit's order)",
        "chunked": f"(2) chunked: windows of {args.window} x {args.chunk_rows} rows, pages dropped",
        "sequential": "(3) file order, pages dropped (streaming bound)",
        "warm": "(4) random permutation, pages in the page cache",
    }
    for name, label in labels.items():
        print(f"{label:<62}{max(rates[name]):>9.0f}{statistics.median(rates[name]):>9.0f}")
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"chunked / random from disk: {median['chunked'] / median['random']:.2f}x; random from disk / in the page "
          f"cache: {median['random'] / median['warm']:.2f}x (medians)")
    need = T4_IMAGES_PER_SECOND
    print(f"random from disk vs a T4's ResNet-18 training at 224 px (about {need:.0f} images/s at most, README "
          f"estimate): {median['random'] / need:.1f}x: "
          + ("the gather keeps up; fit keeps its full permutation" if median["random"] >= need
             else "the gather would starve the GPU"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
