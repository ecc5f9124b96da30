"""Decode and resize every image once, into one uint8 array (N, 3, H, W).

Decoding JPEGs is the slowest part of training a small face model on a CPU: the course code
decoded and resized every image in every epoch. Here each image is decoded once, optionally
centre-cropped, resized, and stored in a uint8 array; training then only gathers rows of it
(augmentation and float conversion happen on the batch, on the device; see ``lib.training``).

The array lives either in memory (``in_memory=True``) or in a file under ``lib.paths.CACHE``
(``data/cache/``, git-ignored) that is memory-mapped, so a cache larger than RAM still works and
a notebook re-run reuses the file instead of decoding again. The file name holds a hash of

* the *content* of every source: a BLAKE2b digest of each file's bytes (or of the JPEG bytes of a Hub
  row), in order. Size and modification time are not trusted: an image corrupted in place, or replaced
  by another of the same size and time stamp, changes the key and the cache is rebuilt. Hashing reads
  every source on every load; measured with ``scripts/bench_cache_hash.py`` on a shared 2-core CPU, files
  in the page cache: 0.31-0.35 s for LFW's 13,233 files (117 MB), 0.36-0.45 s for the 18,500 FairFace
  0.25 files (109 MB), against minutes for decoding them;
* the output size and the crop, and a format version.

Files are written atomically: pixels go to a temporary file that is renamed into place, then a small
JSON sidecar is written (also by rename); a cache counts as complete only when its sidecar exists and
matches, so an interrupted build is simply rebuilt. Before decoding, a build removes the temporaries of
killed builds, checks the folder's free space for the file's known size and reserves the file's blocks
(``posix_fallocate``): a disk too full stops with :class:`CacheSpaceError` naming the folder and the bytes
needed, instead of a SIGBUS in the middle of the memory-mapped writes. The sidecar records the digest of the decoded
pixels (:func:`cache_digest`); on reuse the pixel file is hashed again and rebuilt, with a warning,
if it no longer matches (0.28-0.31 s for LFW DevTrain's 263 MB at 96 px). ``cache_digest(images)`` is the
data identity of a run.

Source images must be at least ``MIN_SOURCE_SIDE`` (16) pixels on each side after the crop: a smaller
one (a 1x1 placeholder, a thumbnail) holds no face to speak of, and is refused with its name instead of
being blown up silently. Sources smaller than the output size but not below that floor are upscaled,
and every load warns with their count and examples (the count is kept in the sidecar).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
import warnings
import weakref
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lib import paths
from lib.errors import DataError, human_bytes
from lib.progress import progress as progress_bar
from lib.tables import process_alive, write_text

__all__ = ["CacheSpaceError", "ImageCache", "MIN_SOURCE_SIDE", "build_cache", "cache_digest", "cache_key", "decode_resized", "source_digests"]

FORMAT_VERSION = 2  # 2: content-hash keys, pixel digest and upscale count in the sidecar
MIN_SOURCE_SIDE = 16  # px: a smaller source (after the crop) is refused rather than upscaled
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


def _content_digest(ref, index: int) -> bytes:
    """BLAKE2b digest of one source's encoded bytes: a file's content, or the in-memory bytes (no decoding)."""
    data = _ref_bytes(ref)
    if data is None:
        try:
            with open(os.fspath(ref), "rb") as handle:
                data = handle.read()
        except OSError as error:
            raise DataError(
                f"cannot read image {index}, {_describe(ref)} ({error}); drop missing files with the loader's "
                "validation step"
            ) from error
    return hashlib.blake2b(data, digest_size=16).digest()


def source_digests(refs: Sequence) -> list[bytes]:
    """The content digest of every reference, in order.

    One thread: per file, the work (open, read about 9 kB, hash) is too short for a thread pool to pay
    off; on the 2-core machine of ``scripts/bench_cache_hash.py`` a pool of two was 2-3x slower.
    """
    return [_content_digest(ref, index) for index, ref in enumerate(refs)]


def cache_key(refs: Sequence, size, crop=None) -> str:
    """A 20-hex-digit hash of the sources' contents (in order), the output size, the crop and the format version.

    Paths and time stamps do not enter it: the same images moved to another folder give the same key,
    and an image changed in place (even with its size and time stamp restored) gives another.
    """
    return _key(source_digests(refs), _as_pair(size, "size"), _as_pair(crop, "crop"))


def _key(digests: list[bytes], size: tuple[int, int], crop: tuple[int, int] | None, align: str | None = None) -> str:
    digest = hashlib.blake2b(digest_size=10)
    fields = {"version": FORMAT_VERSION, "size": size, "crop": crop, "n": len(digests)}
    if align is not None:  # absent for centre crops, so their keys are those of before alignment existed
        fields["align"] = align
    digest.update(json.dumps(fields).encode())
    for content in digests:
        digest.update(content)
    return digest.hexdigest()


def cache_digest(images) -> str:
    """A 32-hex-digit BLAKE2b digest of an image array's dtype, shape and bytes: the identity of decoded data.

    ``images`` is a tensor or NumPy array, e.g. what :func:`build_cache` returned. For a tensor loaded
    from a cache file the digest recorded (and verified) in its sidecar is returned without reading the
    pixels, as long as the tensor has not been modified in place since; anything else (a slice, a copy,
    an in-memory build, an edited tensor) is hashed, about 0.3 s per 263 MB. Equal arrays give equal
    digests whichever way they were obtained.
    """
    if isinstance(images, torch.Tensor):
        known = _LOADED.get(id(images))
        if known is not None and known[0] == (images.data_ptr(), tuple(images.shape), images._version):
            return known[1]
        array = images.detach().cpu().numpy()
    else:
        array = np.asarray(images)
    return _array_digest(array)


def _array_digest(array: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{array.dtype.str}{tuple(array.shape)}".encode())
    digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return digest.hexdigest()


# Tensors returned from cache files -> (data pointer, shape, in-place version counter), verified digest.
# Keyed by id() (a tensor's == is element-wise, so it cannot key a WeakKeyDictionary) and dropped when
# the tensor is collected. torch bumps ``_version`` on every in-place operation, so an edited tensor is re-hashed.
_LOADED: dict[int, tuple[tuple, str]] = {}


def _remember_digest(images: torch.Tensor, digest: str) -> None:
    _LOADED[id(images)] = ((images.data_ptr(), tuple(images.shape), images._version), digest)
    weakref.finalize(images, _LOADED.pop, id(images), None)


def decode_resized(ref, size, crop=None) -> np.ndarray:
    """One image as uint8 (3, H, W): decoded, RGB, centre-cropped to ``crop`` (if given), resized to ``size``.

    ``crop`` and ``size`` are ints (square) or ``(height, width)``; the crop is in source pixels and
    must fit in the image (e.g. LFW: 250x250, crop 150 keeps the face). The resize is exact (aspect
    ratio not preserved), with PIL's antialiased bilinear filter, like torchvision's ``Resize``.
    A source (after the crop) below ``MIN_SOURCE_SIDE`` pixels on a side raises :class:`DataError`.
    """
    return _decode(ref, size, crop)[0]


def _decode(ref, size, crop=None, align=None) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`decode_resized` plus the (height, width) of the source after the crop, before the resize.

    With ``align`` (a :class:`lib.alignment.FaceAligner`), the whole photo is aligned instead of cropped
    and resized (``crop`` must be None) and a third element says how: ``(found_by, outside fraction)``."""
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
    if align is not None:
        return _align(ref, image, (height, width), align)
    if crop is not None:
        crop_h, crop_w = crop
        if crop_h > image.height or crop_w > image.width:
            raise DataError(
                f"crop {crop_h}x{crop_w} is larger than {_describe(ref)} ({image.height}x{image.width}); "
                f"use a smaller crop"
            )
        top, left = (image.height - crop_h) // 2, (image.width - crop_w) // 2
        image = image.crop((left, top, left + crop_w, top + crop_h))
    if min(image.size) < MIN_SOURCE_SIDE:
        raise DataError(
            f"{_describe(ref)} is {image.height}x{image.width} px{' after the crop' if crop else ''}, below the "
            f"{MIN_SOURCE_SIDE} px minimum side: it holds no usable face and would be upscaled to "
            f"{height}x{width}. Remove it from the image list or replace it with the full-size image."
        )
    source = (image.height, image.width)
    if image.size != (width, height):
        image = image.resize((width, height), RESAMPLE)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1), source


def _align(ref, image: Image.Image, size: tuple[int, int], align) -> tuple[np.ndarray, tuple[int, int], tuple]:
    """The aligned crop of a decoded photo (see :func:`_decode`); the aligner refuses degenerate landmarks
    and blank crops with the file named."""
    if min(image.size) < MIN_SOURCE_SIDE:
        raise DataError(f"{_describe(ref)} is {image.height}x{image.width} px, below the {MIN_SOURCE_SIDE} px minimum "
                        f"side: it holds no usable face. Remove it from the image list")
    if size != (align.size, align.size):
        raise ValueError(f"the aligner makes {align.size}x{align.size} crops, the cache asks for {size[0]}x{size[1]}")
    aligned = align(np.asarray(image, dtype=np.uint8), _describe(ref))
    return aligned.crop.transpose(2, 0, 1), (image.height, image.width), (aligned.found_by, aligned.outside)


def _default_workers() -> int:
    # PIL releases the GIL while decoding and resizing, so threads scale with cores (the main thread only waits).
    return max(1, min(8, os.cpu_count() or 1))


def _decode_into(out: np.ndarray, refs: Sequence, size, crop, workers: int, show_progress: bool, desc: str,
                 align=None) -> dict:
    """Fill ``out[i]`` with image i, in a thread pool, in order-independent chunks.

    Returns the upscale record: ``{"upscaled": count, "upscaled_examples": [...]}`` (sources smaller
    than the output size, first five by position); with ``align``, also the alignment record
    (:func:`_alignment_record`).
    """
    height, width = _as_pair(size, "size")

    def decode_chunk(start: int) -> tuple[int, list[str]]:
        stop = min(start + chunk, len(refs))
        small = []
        for index in range(start, stop):
            try:
                decoded = _decode(refs[index], size, crop, align)
            except DataError as error:
                # Name the reference with its position; _decode cannot know it.
                raise DataError(f"image {index} of {len(refs)}: {error}") from error
            out[index], (source_h, source_w) = decoded[0], decoded[1]
            if align is not None:
                how[index] = decoded[2]
            elif source_h < height or source_w < width:
                small.append(f"image {index}, {_describe(refs[index])} ({source_h}x{source_w})")
        return stop - start, small

    chunk = 64
    how = [None] * len(refs)
    pool = ThreadPoolExecutor(max_workers=workers)
    bar = progress_bar(total=len(refs), desc=desc, unit="img", disable=not show_progress)
    upscaled = []
    try:
        for done, small in pool.map(decode_chunk, range(0, len(refs), chunk)):
            bar.update(done)
            upscaled.extend(small)
    finally:
        bar.close()
        pool.shutdown(wait=True, cancel_futures=True)  # after an error, do not decode the rest
    record = {"upscaled": len(upscaled), "upscaled_examples": upscaled[:5]}
    if align is not None:
        record.update(_alignment_record(how, refs))
    return record


OUTSIDE_WARNING = 0.25  # an aligned crop with more of its pixels outside the photo is counted as mostly outside


def _alignment_record(how: list, refs: Sequence) -> dict:
    """How the aligned crops were made: ``aligned_by`` (one entry per image: "detector" or "fallback box"),
    the count of each, and the crops with more than :data:`OUTSIDE_WARNING` of their pixels outside the photo
    (``outside_photo`` count and the first five, named)."""
    found = [entry[0] for entry in how]
    outside = [index for index, entry in enumerate(how) if entry[1] > OUTSIDE_WARNING]
    return {"aligned_by": found, "fallback": sum(entry == "fallback box" for entry in found),
            "outside_photo": len(outside),
            "outside_photo_examples": [f"image {i}, {_describe(refs[i])} ({how[i][1]:.0%})" for i in outside[:5]]}


def _warn_upscaled(record: dict, total: int, size: tuple[int, int], name: str) -> None:
    if record.get("upscaled"):
        warnings.warn(
            f"{record['upscaled']} of {total} images of {name} are smaller than the {size[0]}x{size[1]} output "
            f"and were upscaled (blurred): {'; '.join(record['upscaled_examples'])}"
            f"{' ...' if record['upscaled'] > len(record['upscaled_examples']) else ''}. Use a smaller size, or "
            f"full-size sources.",
            stacklevel=4,
        )


class ImageCache:
    """Where and how a set of images is cached: output ``size``, optional centre ``crop``, folder.

    ``align``: a :class:`lib.alignment.FaceAligner` of the same size, to cache five-point-aligned faces
    instead of centre crops (its ``key`` enters the cache key; :attr:`record` then says how each crop was
    made: ``aligned_by``, the ``fallback`` count, the crops mostly outside the photo).

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
        align=None,
    ):
        self.size = _as_pair(size, "size")
        self.crop = _as_pair(crop, "crop")
        self.cache_dir = Path(cache_dir)
        self.in_memory = in_memory
        self.workers = workers or _default_workers()
        self.progress = progress
        self.align = align
        self.record: dict = {}  # the last load's build record (upscale count; with align, how each crop was made)
        if align is not None and self.crop is not None:
            raise ValueError("an aligned cache takes no centre crop: the alignment decides the crop (crop=None)")

    def paths_for(self, refs: Sequence, key: str | None = None) -> tuple[Path, Path]:
        """``(pixel file, JSON sidecar)`` for these references; ``key`` is a readable name prefix."""
        return self._paths(source_digests(refs), key)

    def load(self, refs: Iterable, key: str | None = None) -> torch.Tensor:
        """uint8 tensor (N, 3, H, W) of ``refs`` (paths or encoded bytes), built once and then reused."""
        refs = list(refs)
        if not refs:
            raise DataError("no images to cache: the reference list is empty")
        if key is not None and (not key or os.sep in key or key.startswith(".")):
            raise ValueError(f"key must be a plain file-name prefix, got {key!r}")
        shape = (len(refs), 3, *self.size)
        name = key or "images"
        desc = f"decoding {name} → {self.size[0]}x{self.size[1]}"
        if self.in_memory:
            out = np.empty(shape, dtype=np.uint8)
            record = _decode_into(out, refs, self.size, self.crop, self.workers, self.progress, desc, self.align)
            _warn_upscaled(record, len(refs), self.size, name)
            self.record = record
            return torch.from_numpy(out)

        digests = source_digests(refs)
        data_path, meta_path = self._paths(digests, key)
        meta = {
            "version": FORMAT_VERSION,
            "shape": list(shape),
            "dtype": "uint8",
            "size": list(self.size),
            "crop": list(self.crop) if self.crop else None,
            **({"align": self.align.key} if self.align is not None else {}),
            "sources": hashlib.blake2b(b"".join(digests), digest_size=16).hexdigest(),
            "first_reference": _describe(refs[0]),
        }
        stored = self._complete_sidecar(data_path, meta_path, meta)
        if stored is None:
            stored = self._build(data_path, meta_path, meta, refs, shape, desc)
        _warn_upscaled(stored, len(refs), self.size, name)
        self.record = stored
        # Copy-on-write mapping: pages load lazily and shared; the tensor is writable without touching the file.
        images = torch.from_numpy(np.memmap(data_path, dtype=np.uint8, mode="c", shape=shape))
        _remember_digest(images, stored["pixels"])
        return images

    def _paths(self, digests: list[bytes], key: str | None) -> tuple[Path, Path]:
        stem = f"{key or 'images'}-{self.size[0]}x{self.size[1]}-{_key(digests, self.size, self.crop, self.align.key if self.align is not None else None)}"
        return self.cache_dir / f"{stem}.u8", self.cache_dir / f"{stem}.json"

    @staticmethod
    def _complete_sidecar(data_path: Path, meta_path: Path, meta: dict) -> dict | None:
        """The stored sidecar when the cache is complete and its pixels hash to the recorded digest, else None."""
        try:
            stored = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None
        expected_bytes = int(np.prod(meta["shape"]))
        same = all(stored.get(name) == meta[name] for name in ("version", "shape", "dtype", "size", "crop", "sources", "align")
                   if name in meta or name in stored)
        if not (same and data_path.is_file() and data_path.stat().st_size == expected_bytes):
            return None
        pixels = np.memmap(data_path, dtype=np.uint8, mode="r", shape=tuple(meta["shape"]))
        if _array_digest(pixels) != stored.get("pixels"):
            warnings.warn(
                f"the image cache {data_path} no longer matches the pixel digest recorded when it was built "
                f"(changed on disk since); rebuilding it",
                stacklevel=4,
            )
            return None
        return stored

    def _build(self, data_path: Path, meta_path: Path, meta: dict, refs: list, shape: tuple, desc: str) -> dict:
        paths.check_writable(self.cache_dir, "image cache")  # before decoding, not after
        meta_path.unlink(missing_ok=True)  # no stale "complete" marker while the pixels are rewritten
        remove_stale_temporaries(self.cache_dir)
        needed = int(np.prod(shape))
        _check_free_space(self.cache_dir, needed)
        handle, temp_name = tempfile.mkstemp(prefix=f".{data_path.name}.{os.getpid()}-", suffix=".tmp",
                                             dir=self.cache_dir)
        try:
            try:
                _allocate(handle, needed, self.cache_dir)
            finally:
                os.close(handle)
            out = np.memmap(temp_name, dtype=np.uint8, mode="w+", shape=shape)
            record = _decode_into(out, refs, self.size, self.crop, self.workers, self.progress, desc, self.align)
            out.flush()
            pixels = _array_digest(out)
            del out
            os.replace(temp_name, data_path)
        finally:
            if os.path.exists(temp_name):
                os.remove(temp_name)
        meta = {**meta, "pixels": pixels, **record}
        write_text(meta_path, json.dumps(meta, indent=1))
        return meta


class CacheSpaceError(OSError):
    """The cache folder has too little free space for a cache file; the message names the folder, the bytes
    needed and the ways out."""


# Hidden temporaries of a build: ``.<name>.u8.<pid>-<random>.tmp`` (older versions: without ``<pid>-``).
_TEMPORARY = re.compile(r"^\..+\.u8\.(?:(?P<pid>\d+)-)?[^.]*\.tmp$")
_ORPHAN_AGE_S = 3600  # a temporary without a process id is taken as abandoned after an hour


def remove_stale_temporaries(cache_dir: Path) -> list[Path]:
    """Remove the temporaries that killed builds left in ``cache_dir`` (a 224-px FairFace build leaves
    14.7 GB, enough to make the next build fail): those whose process no longer runs, and those without a
    process id older than an hour. A temporary of a build still running is left alone. Returns what was removed."""
    removed = []
    for entry in os.scandir(cache_dir):
        match = _TEMPORARY.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        pid = match.group("pid")
        stale = not process_alive(int(pid)) if pid else time.time() - entry.stat().st_mtime > _ORPHAN_AGE_S
        if stale:
            try:
                os.remove(entry.path)
                removed.append(Path(entry.path))
            except FileNotFoundError:
                pass  # its builder finished or removed it meanwhile
    return removed




_HEADROOM = 1 << 20  # bytes left free beyond the file (plus 1 % of it): the sidecar, and other writers meanwhile


def _space_advice(cache_dir: Path, needed: int) -> str:
    return (f"the image cache needs {needed:,} bytes ({human_bytes(needed)}) in {cache_dir}. Free space there, "
            f"or point the cache at a larger disk (environment variable {paths.CACHE_ENV}, or cache_dir=), "
            f"or decode into memory (in_memory=True) if RAM allows")


def _check_free_space(cache_dir: Path, needed: int) -> None:
    """Refuse, before decoding, a build that cannot fit (writing a memory map on a full disk is SIGBUS: the
    process, or the notebook's kernel, dies without a message)."""
    free = shutil.disk_usage(cache_dir).free
    if free < needed + _HEADROOM + needed // 100:
        raise CacheSpaceError(errno.ENOSPC, f"not enough free space: {free:,} bytes ({human_bytes(free)}) free, but "
                                            + _space_advice(cache_dir, needed))


def _allocate(handle: int, needed: int, cache_dir: Path) -> None:
    """Reserve the file's blocks up front, so that a disk that fills meanwhile fails here, with a message,
    instead of in the middle of the memory-mapped writes; skipped where the file system cannot do it."""
    allocate = getattr(os, "posix_fallocate", None)
    if allocate is None:
        return
    try:
        allocate(handle, 0, needed)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CacheSpaceError(error.errno, f"the disk filled while reserving the file ({error.strerror}): "
                                               + _space_advice(cache_dir, needed)) from None
        # EOPNOTSUPP / EINVAL: a file system without preallocation (some network and FUSE mounts)


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
