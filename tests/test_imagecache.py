"""Image cache: pixels against an independent PIL decode, reuse, keys, atomic files, bad images,
content changes that keep a file's size and time stamp, the pixel digest."""

from __future__ import annotations

import hashlib
import io
import os
import shutil

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lib.imagecache as imagecache
from lib.errors import DataError
from lib.imagecache import build_cache


def random_image(seed: int, size=(40, 30)) -> Image.Image:
    """A smooth-ish random RGB image (width, height = size)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.fixture
def png_files(tmp_path):
    """Six lossless PNG files of 40x30 (width x height), so decoded pixels are exactly known."""
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for i in range(6):
        path = folder / f"img_{i}.png"
        random_image(i).save(path)
        paths.append(str(path))
    return paths


def reference(path_or_bytes, size_hw, crop_hw=None) -> np.ndarray:
    """Independent decode: PIL open → RGB → centre crop → bilinear resize → (3, H, W)."""
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    image = Image.open(source).convert("RGB")
    if crop_hw is not None:
        ch, cw = crop_hw
        left, top = (image.width - cw) // 2, (image.height - ch) // 2
        image = image.crop((left, top, left + cw, top + ch))
    image = image.resize((size_hw[1], size_hw[0]), Image.Resampling.BILINEAR)
    return np.transpose(np.array(image), (2, 0, 1))


def test_round_trip_matches_independent_decode(png_files, tmp_path):
    cached = build_cache(png_files, (12, 16), crop=(20, 24), cache_dir=tmp_path / "cache", progress=False)
    assert cached.dtype == torch.uint8 and cached.shape == (6, 3, 12, 16)
    expected = np.stack([reference(p, (12, 16), (20, 24)) for p in png_files])
    np.testing.assert_array_equal(cached.numpy(), expected)


def test_no_resize_keeps_pixels_exactly(png_files, tmp_path):
    cached = build_cache(png_files[:2], (30, 40), in_memory=True, progress=False)
    raw = np.stack([np.transpose(np.array(Image.open(p)), (2, 0, 1)) for p in png_files[:2]])
    np.testing.assert_array_equal(cached.numpy(), raw)


def test_bytes_and_paths_and_memory_agree(png_files, tmp_path):
    blobs = [open(p, "rb").read() for p in png_files]
    from_paths = build_cache(png_files, 8, cache_dir=tmp_path, progress=False)
    from_bytes = build_cache(blobs, 8, cache_dir=tmp_path, progress=False)
    hub_rows = build_cache([{"bytes": b, "path": None} for b in blobs], 8, in_memory=True, progress=False)
    assert torch.equal(from_paths, from_bytes) and torch.equal(from_paths, hub_rows)


def test_reuse_does_not_decode_again(png_files, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    first = build_cache(png_files, 10, cache_dir=cache_dir, key="faces", progress=False)
    files = sorted(os.listdir(cache_dir))
    assert len(files) == 2

    def fail(*args, **kwargs):
        raise AssertionError("decoded again although the cache was complete")

    monkeypatch.setattr(imagecache, "_decode", fail)
    again = build_cache(png_files, 10, cache_dir=cache_dir, key="faces", progress=False)
    assert torch.equal(first, again)
    assert sorted(os.listdir(cache_dir)) == files  # nothing new, no temporary files


def test_cache_files_are_complete_and_named(png_files, tmp_path):
    cache_dir = tmp_path / "cache"
    build_cache(png_files, 10, cache_dir=cache_dir, key="faces", progress=False)
    names = sorted(os.listdir(cache_dir))
    assert [n.rsplit(".", 1)[1] for n in names] == ["json", "u8"]
    assert all(n.startswith("faces-10x10-") for n in names)
    data = cache_dir / names[1]
    assert data.stat().st_size == 6 * 3 * 10 * 10


def test_key_changes_with_size_crop_order_and_content(png_files, tmp_path):
    key = imagecache.cache_key
    base = key(png_files, 10)
    assert key(png_files, 10) == base
    assert key(png_files, 12) != base
    assert key(png_files, (10, 12)) != base
    assert key(png_files, 10, crop=20) != base
    assert key(png_files[::-1], 10) != base
    assert key(png_files[:-1], 10) != base
    random_image(99).save(png_files[0])  # same name, new content (size or mtime changes)
    os.utime(png_files[0], ns=(1, 1))
    assert key(png_files, 10) != base


def test_edited_file_is_decoded_again(png_files, tmp_path):
    before = build_cache(png_files, 10, cache_dir=tmp_path, progress=False)
    random_image(123).save(png_files[2])
    os.utime(png_files[2], ns=(10**9, 10**9))
    after = build_cache(png_files, 10, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(after[2].numpy(), reference(png_files[2], (10, 10)))
    assert torch.equal(before[0], after[0]) and not torch.equal(before[2], after[2])


def test_incomplete_cache_is_rebuilt(png_files, tmp_path):
    build_cache(png_files, 10, cache_dir=tmp_path, progress=False)
    data = next(tmp_path.glob("*.u8"))
    data.write_bytes(b"\0" * 17)  # a truncated pixel file (its sidecar still exists)
    rebuilt = build_cache(png_files, 10, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(rebuilt[0].numpy(), reference(png_files[0], (10, 10)))


def test_corrupt_image_names_the_file_and_leaves_nothing(png_files, tmp_path):
    bad = tmp_path / "images" / "broken.jpg"
    good_bytes = open(png_files[0], "rb").read()
    bad.write_bytes(good_bytes[: len(good_bytes) // 3])  # truncated
    cache_dir = tmp_path / "cache"
    with pytest.raises(DataError, match="broken.jpg"):
        build_cache([*png_files, str(bad)], 10, cache_dir=cache_dir, progress=False)
    assert list(cache_dir.iterdir()) == []


def test_missing_file_and_bad_reference(png_files, tmp_path):
    with pytest.raises(DataError, match="nope.png"):
        build_cache([png_files[0], str(tmp_path / "nope.png")], 10, cache_dir=tmp_path, progress=False)
    with pytest.raises(DataError, match="file path or encoded bytes"):
        build_cache([png_files[0], 3.5], 10, in_memory=True, progress=False)
    with pytest.raises(DataError, match="empty"):
        build_cache([], 10, in_memory=True)


def test_crop_larger_than_image(png_files):
    with pytest.raises(DataError, match="larger than"):
        build_cache(png_files[:1], 10, crop=64, in_memory=True, progress=False)


def test_memmap_tensor_is_writable_without_touching_the_file(png_files, tmp_path):
    cached = build_cache(png_files, 10, cache_dir=tmp_path, progress=False)
    original = cached[0].clone()
    cached[0] = 0  # copy-on-write mapping
    again = build_cache(png_files, 10, cache_dir=tmp_path, progress=False)
    assert torch.equal(again[0], original)


# ------------------------------------------------------------------ content, not size and mtime
@pytest.fixture
def bmp_files(tmp_path):
    """Four uncompressed BMPs of 24x20: any pixel edit keeps the file size exactly."""
    folder = tmp_path / "bmp"
    folder.mkdir()
    paths = []
    for i in range(4):
        path = folder / f"img_{i}.bmp"
        random_image(50 + i, size=(24, 20)).save(path)
        paths.append(str(path))
    return paths


def keep_stat(path, change):
    """Run ``change()`` on ``path`` and restore its size check and time stamps exactly."""
    before = os.stat(path)
    change()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_same_size_in_place_corruption_is_detected(bmp_files, tmp_path):
    before = build_cache(bmp_files, 10, cache_dir=tmp_path / "cache", progress=False)

    def flip_bytes():
        with open(bmp_files[1], "r+b") as handle:
            handle.seek(200)
            data = handle.read(30)
            handle.seek(200)
            handle.write(bytes(255 - b for b in data))

    keep_stat(bmp_files[1], flip_bytes)
    after = build_cache(bmp_files, 10, cache_dir=tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(after[1].numpy(), reference(bmp_files[1], (10, 10)))
    assert not torch.equal(before[1], after[1]) and torch.equal(before[0], after[0])


def test_source_replaced_with_same_size_and_mtime_is_detected(bmp_files, tmp_path):
    build_cache(bmp_files, 10, cache_dir=tmp_path / "cache", progress=False)
    keep_stat(bmp_files[2], lambda: random_image(999, size=(24, 20)).save(bmp_files[2]))
    after = build_cache(bmp_files, 10, cache_dir=tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(after[2].numpy(), reference(bmp_files[2], (10, 10)))


def test_moved_sources_reuse_the_cache(bmp_files, tmp_path, monkeypatch):
    first = build_cache(bmp_files, 10, cache_dir=tmp_path / "cache", progress=False)
    moved = shutil.copytree(Path(bmp_files[0]).parent, tmp_path / "moved")
    monkeypatch.setattr(imagecache, "_decode", lambda *a, **k: pytest.fail("decoded although only the folder moved"))
    again = build_cache(sorted(str(p) for p in moved.iterdir()), 10, cache_dir=tmp_path / "cache", progress=False)
    assert torch.equal(first, again)


def test_pixel_file_changed_in_place_is_rebuilt_with_warning(png_files, tmp_path):
    first = build_cache(png_files, 10, cache_dir=tmp_path, progress=False).clone()
    data = next(tmp_path.glob("*.u8"))
    keep_stat(data, lambda: data.write_bytes(bytes(data.stat().st_size)))  # same size, all zero
    with pytest.warns(UserWarning, match=f"{data.name} no longer matches the pixel digest"):
        rebuilt = build_cache(png_files, 10, cache_dir=tmp_path, progress=False)
    assert torch.equal(rebuilt, first)


def reference_digest(array: np.ndarray) -> str:
    """The documented format, spelled out: BLAKE2b-128 of dtype string, shape tuple, then C-order bytes."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{array.dtype.str}{tuple(array.shape)}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def test_cache_digest_is_the_pixels_identity(png_files, tmp_path):
    cached = build_cache(png_files, 10, cache_dir=tmp_path, progress=False)
    expected = reference_digest(np.stack([reference(p, (10, 10)) for p in png_files]))
    assert imagecache.cache_digest(cached) == expected  # from the sidecar
    assert imagecache.cache_digest(cached.clone()) == expected  # hashed
    assert imagecache.cache_digest(build_cache(png_files, 10, in_memory=True, progress=False)) == expected
    sidecar = next(tmp_path.glob("*.json")).read_text()
    assert expected in sidecar
    assert imagecache.cache_digest(cached[:3]) == reference_digest(cached[:3].numpy())
    cached[0, 0, 0, 0] += 1  # in place: the remembered digest no longer applies
    assert imagecache.cache_digest(cached) == reference_digest(cached.numpy()) != expected


def test_tiny_source_is_refused_not_upscaled(png_files, tmp_path):
    tiny = tmp_path / "images" / "tiny.png"
    random_image(7, size=(1, 1)).save(tiny)
    with pytest.raises(DataError, match=r"tiny.png is 1x1 px, below the 16 px minimum side"):
        build_cache([*png_files, str(tiny)], 32, cache_dir=tmp_path / "cache", progress=False)
    with pytest.raises(DataError, match=r"after the crop, below the 16 px minimum"):
        build_cache(png_files[:1], 32, crop=(10, 30), in_memory=True, progress=False)


def test_upscaling_is_counted_on_every_load(png_files, tmp_path):
    small = tmp_path / "images" / "small.png"
    random_image(8, size=(20, 18)).save(small)  # 18 high, 20 wide: below 28x28, above the 16 px floor
    refs = [*png_files, str(small)]  # the PNGs are 30 high and 40 wide: not upscaled
    for _ in range(2):  # the build, then the reuse: the sidecar keeps the count
        with pytest.warns(UserWarning, match=r"1 of 7 images of faces are smaller than the 28x28 output") as record:
            build_cache(refs, 28, cache_dir=tmp_path / "cache", key="faces", progress=False)
        assert "image 6, image file " in str(record[0].message) and "small.png (18x20)" in str(record[0].message)
