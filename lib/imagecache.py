"""Decode and resize every image once, into one uint8 array (N, 3, H, W).

Decoding JPEGs is the slowest part of training a small face model on a CPU: the course code
decoded and resized every image in every epoch. Here each image is decoded once, optionally
centre-cropped, resized, and stored in a uint8 array; training then only gathers rows of it
(augmentation and float conversion happen on the batch, on the device; see ``lib.training``).

The array lives either in memory (``in_memory=True``) or in a file under ``lib.paths.CACHE``
(``data/cache/``, git-ignored) that is memory-mapped, so a cache larger than RAM still works and
a notebook re-run reuses the file instead of decoding again. The file name holds a hash of

* the references: for a path, the resolved path, file size and modification time (so an edited
  image invalidates the cache); for JPEG bytes (Hub rows), a BLAKE2 digest of the bytes;
* the output size and the crop, and a format version.

Files are written atomically: pixels go to a temporary file that is renamed into place, then a small
JSON sidecar is written (also by rename); a cache counts as complete only when its sidecar exists and
matches, so an interrupted build is simply rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lib import paths
from lib.errors import DataError
from lib.progress import progress as progress_bar

__all__ = ["ImageCache", "build_cache", "cache_key", "decode_resized"]

FORMAT_VERSION = 1
RESAMPLE = Image.Resampling.BILINEAR  # what torchvision's Resize uses on PIL images (antialiased)


def _as_pair(value, name: str) -> tuple[int, int] | None:
    """``None``, an int (square) or ``(height, width)`` → ``(height, width)`` of positive ints."""
    if value is None:
        return None
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in pair):
        raise ValueError(f"{name} must be a positive int or (height, width), got {value!r}")
    return int(pair[0]), int(pair[1])


def _ref_bytes(ref) -> bytes | None:
    """The encoded bytes of an in-memory reference (bytes, or a Hub ``{"bytes": ...}`` struct); None for paths."""
    if isinstance(ref, dict):
        ref = ref.get("bytes")
        if ref is None:
            raise DataError("an image reference is a dict without 'bytes'; pass file paths or JPEG bytes")
    if isinstance(ref, (bytes, bytearray, memoryview)):
        return bytes(ref)
    if not isinstance(ref, (str, os.PathLike)):
        raise DataError(
            f"an image reference must be a file path or encoded bytes, got {type(ref).__name__} {ref!r:.60}"
        )
    return None


def _describe(ref) -> str:
    """A reference as an error message names it: the file path, or the size and digest of the bytes."""
    data = _ref_bytes(ref)
    if data is None:
        return f"image file {os.fspath(ref)}"
    return f"in-memory image ({len(data)} bytes, blake2b {hashlib.blake2b(data, digest_size=8).hexdigest()})"


def _fingerprint(ref, index: int) -> bytes:
    """What identifies one reference's content cheaply (no decoding)."""
    data = _ref_bytes(ref)
    if data is not None:
        return b"b" + hashlib.blake2b(data, digest_size=16).digest()
    path = Path(os.fspath(ref))
    try:
        stat = path.stat()
    except OSError as error:
        raise DataError(
            f"cannot read image {index}, {_describe(ref)} ({error}); drop missing files with the loader's "
            "validation step"
        ) from error
    return f"p{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()


def cache_key(refs: Sequence, size, crop=None) -> str:
    """A 20-hex-digit hash of the references (content fingerprints), output size, crop and format version."""
    size, crop = _as_pair(size, "size"), _as_pair(crop, "crop")
    digest = hashlib.blake2b(digest_size=10)
    digest.update(json.dumps({"version": FORMAT_VERSION, "size": size, "crop": crop, "n": len(refs)}).encode())
    for index, ref in enumerate(refs):
        digest.update(_fingerprint(ref, index))
        digest.update(b"\n")
    return digest.hexdigest()


def decode_resized(ref, size, crop=None) -> np.ndarray:
    """One image as uint8 (3, H, W): decoded, RGB, centre-cropped to ``crop`` (if given), resized to ``size``.

    ``crop`` and ``size`` are ints (square) or ``(height, width)``; the crop is in source pixels and
    must fit in the image (e.g. LFW: 250x250, crop 150 keeps the face). The resize is exact (aspect
    ratio not preserved), with PIL's antialiased bilinear filter, like torchvision's ``Resize``.
    """
    height, width = _as_pair(size, "size")
    crop = _as_pair(crop, "crop")
    data = _ref_bytes(ref)
    source = io.BytesIO(data) if data is not None else os.fspath(ref)
    try:
        with Image.open(source) as image:
            image = image.convert("RGB")  # forces the full decode, so truncated files fail here
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DataError(
            f"cannot decode {_describe(ref)}: {error}. Drop it with the loader's validation step"
        ) from error
    if crop is not None:
        crop_h, crop_w = crop
        if crop_h > image.height or crop_w > image.width:
            raise DataError(
                f"crop {crop_h}x{crop_w} is larger than {_describe(ref)} ({image.height}x{image.width}); "
                f"use a smaller crop"
            )
        top, left = (image.height - crop_h) // 2, (image.width - crop_w) // 2
        image = image.crop((left, top, left + crop_w, top + crop_h))
    if image.size != (width, height):
        image = image.resize((width, height), RESAMPLE)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def _default_workers() -> int:
    # PIL releases the GIL while decoding and resizing, so threads scale with cores (the main thread only waits).
    return max(1, min(8, os.cpu_count() or 1))


def _decode_into(out: np.ndarray, refs: Sequence, size, crop, workers: int, show_progress: bool, desc: str) -> None:
    """Fill ``out[i]`` with image i, in a thread pool, in order-independent chunks."""

    def decode_chunk(start: int) -> int:
        stop = min(start + chunk, len(refs))
        for index in range(start, stop):
            try:
                out[index] = decode_resized(refs[index], size, crop)
            except DataError as error:
                # Name the reference with its position; decode_resized cannot know it.
                raise DataError(f"image {index} of {len(refs)}: {error}") from error
        return stop - start

    chunk = 64
    pool = ThreadPoolExecutor(max_workers=workers)
    bar = progress_bar(total=len(refs), desc=desc, unit="img", disable=not show_progress)
    try:
        for done in pool.map(decode_chunk, range(0, len(refs), chunk)):
            bar.update(done)
    finally:
        bar.close()
        pool.shutdown(wait=True, cancel_futures=True)  # after an error, do not decode the rest


def _write_json_atomically(path: Path, payload: dict) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(payload, indent=1))
    os.replace(temp, path)


class ImageCache:
    """Where and how a set of images is cached: output ``size``, optional centre ``crop``, folder.

    ``ImageCache(96).load(refs)`` returns a uint8 tensor (N, 3, 96, 96), decoding only when no
    matching cache file exists. Use :func:`build_cache` for the one-call form.
    """

    def __init__(
        self,
        size,
        crop=None,
        cache_dir: str | os.PathLike = paths.CACHE,
        in_memory: bool = False,
        workers: int | None = None,
        progress: bool = True,
    ):
        self.size = _as_pair(size, "size")
        self.crop = _as_pair(crop, "crop")
        self.cache_dir = Path(cache_dir)
        self.in_memory = in_memory
        self.workers = workers or _default_workers()
        self.progress = progress

    def paths_for(self, refs: Sequence, key: str | None = None) -> tuple[Path, Path]:
        """``(pixel file, JSON sidecar)`` for these references; ``key`` is a readable name prefix."""
        stem = f"{key or 'images'}-{self.size[0]}x{self.size[1]}-{cache_key(refs, self.size, self.crop)}"
        return self.cache_dir / f"{stem}.u8", self.cache_dir / f"{stem}.json"

    def load(self, refs: Iterable, key: str | None = None) -> torch.Tensor:
        """uint8 tensor (N, 3, H, W) of ``refs`` (paths or encoded bytes), built once and then reused."""
        refs = list(refs)
        if not refs:
            raise DataError("no images to cache: the reference list is empty")
        if key is not None and (not key or os.sep in key or key.startswith(".")):
            raise ValueError(f"key must be a plain file-name prefix, got {key!r}")
        shape = (len(refs), 3, *self.size)
        desc = f"decoding {key or 'images'} → {self.size[0]}x{self.size[1]}"
        if self.in_memory:
            out = np.empty(shape, dtype=np.uint8)
            _decode_into(out, refs, self.size, self.crop, self.workers, self.progress, desc)
            return torch.from_numpy(out)

        data_path, meta_path = self.paths_for(refs, key)
        meta = {
            "version": FORMAT_VERSION,
            "shape": list(shape),
            "dtype": "uint8",
            "size": list(self.size),
            "crop": list(self.crop) if self.crop else None,
            "first_reference": _describe(refs[0]),
        }
        if not self._is_complete(data_path, meta_path, meta):
            self._build(data_path, meta_path, meta, refs, shape, desc)
        # Copy-on-write mapping: pages load lazily and shared; the tensor is writable without touching the file.
        return torch.from_numpy(np.memmap(data_path, dtype=np.uint8, mode="c", shape=shape))

    @staticmethod
    def _is_complete(data_path: Path, meta_path: Path, meta: dict) -> bool:
        try:
            stored = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return False
        expected_bytes = int(np.prod(meta["shape"]))
        same = all(stored.get(name) == meta[name] for name in ("version", "shape", "dtype", "size", "crop"))
        return same and data_path.is_file() and data_path.stat().st_size == expected_bytes

    def _build(self, data_path: Path, meta_path: Path, meta: dict, refs: list, shape: tuple, desc: str) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        meta_path.unlink(missing_ok=True)  # no stale "complete" marker while the pixels are rewritten
        handle, temp_name = tempfile.mkstemp(prefix=f".{data_path.name}.", suffix=".tmp", dir=self.cache_dir)
        os.close(handle)
        try:
            out = np.memmap(temp_name, dtype=np.uint8, mode="w+", shape=shape)
            _decode_into(out, refs, self.size, self.crop, self.workers, self.progress, desc)
            out.flush()
            del out
            os.replace(temp_name, data_path)
        finally:
            if os.path.exists(temp_name):
                os.remove(temp_name)
        _write_json_atomically(meta_path, meta)


def build_cache(
    refs: Iterable,
    size,
    crop=None,
    cache_dir: str | os.PathLike = paths.CACHE,
    key: str | None = None,
    in_memory: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Decode, centre-crop (optional) and resize every image once → uint8 tensor (N, 3, H, W).

    ``refs``: absolute paths or encoded image bytes (e.g. a loader's ``image`` column), in the order
    the rows of the result should have. ``size``/``crop``: int (square) or ``(height, width)``;
    the crop is taken from the centre of the source image before resizing (LFW: ``crop=150,
    size=96``). ``in_memory=True`` decodes into RAM and writes nothing; otherwise the result is a
    memory-mapped file in ``cache_dir`` (named ``{key}-{H}x{W}-{hash}.u8``; ``key`` is only a readable
    prefix — the hash of the references, size and crop decides reuse). A corrupt or missing image
    raises :class:`lib.errors.DataError` naming it.
    """
    cache = ImageCache(size, crop=crop, cache_dir=cache_dir, in_memory=in_memory, workers=workers, progress=progress)
    return cache.load(refs, key=key)
