"""``make real-data`` (lib.real_data): the real data folder built from the official archives' layout.

Small archives in the official layouts are made here (an ``lfw-deepfunneled.tgz``, a FairFace
``fairface-img-margin025-trainval.zip`` with images beyond the subset, the protocol files and the label CSVs),
with checksums and a per-file manifest computed here with hashlib, independently of the module.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from lib import paths, real_data
from lib.real_data import Download, RealDataError

SUBSET = {"train": 3, "val": 2}
HEADER = b"file,age,gender,race,service_test\n"


def _jpeg_bytes(tag: str) -> bytes:
    return b"\xff\xd8\xff\xe0 fake jpeg " + tag.encode() + b"\xff\xd9"  # content only has to be distinct


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def downloads(tmp_path):
    """(downloads folder, expected checksums, manifest, expected output files {relative path: bytes})."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    wanted: dict[str, bytes] = {}
    # LFW: a tgz holding lfw-deepfunneled/<Name>/<Name>_<NNNN>.jpg, as the official one.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        top = tarfile.TarInfo("lfw-deepfunneled")  # the archive's own top folder entry, as tar writes it
        top.type = tarfile.DIRTYPE
        tar.addfile(top)
        for name, count in (("Ada_Lovelace", 2), ("Alan_Turing", 1)):
            folder_info = tarfile.TarInfo(f"lfw-deepfunneled/{name}")
            folder_info.type = tarfile.DIRTYPE
            tar.addfile(folder_info)
            for k in range(1, count + 1):
                data = _jpeg_bytes(f"{name}{k}")
                info = tarfile.TarInfo(f"lfw-deepfunneled/{name}/{name}_{k:04d}.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                wanted[f"lfw/lfw-deepfunneled/{name}/{name}_{k:04d}.jpg"] = data
    (folder / "lfw-deepfunneled.tgz").write_bytes(buffer.getvalue())
    for name in real_data.LFW_PROTOCOL_FILES:
        data = f"1\n{name}\tline\n".encode()
        (folder / name).write_bytes(data)
        wanted[f"lfw/{name}"] = data
    for name in real_data.GENDER_LISTS:
        data = (paths.LFW_GENDER_LISTS / name).read_bytes()
        wanted[f"lfw/gender/{name}"] = data
    # FairFace: the zip holds train/1..5.jpg and val/1..4.jpg; the subset is train 1-3, val 1-2.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for split, total in (("train", 5), ("val", 4)):
            for k in [10, *range(1, total + 1)]:  # 10 before 1: order in the zip does not matter
                data = _jpeg_bytes(f"{split}{k}")
                bundle.writestr(f"{split}/{k}.jpg", data)
                if k <= SUBSET[split]:
                    wanted[f"fairface/{split}/{k}.jpg"] = data
    (folder / "fairface-img-margin025-trainval.zip").write_bytes(buffer.getvalue())
    for split, total in (("train", 5), ("val", 4)):
        rows = [f"{split}/{k}.jpg,20-29,{'Male' if k % 2 else 'Female'},White,True\n".encode()
                for k in [*range(1, total + 1), 10]]
        full = HEADER + b"".join(rows)
        (folder / f"fairface_label_{split}.csv").write_bytes(full)
        wanted[f"fairface/labels_full/fairface_label_{split}.csv"] = full
        wanted[f"fairface/fairface_label_{split}.csv"] = HEADER + b"".join(rows[:SUBSET[split]])
    expected = {name: Download(name, "the test's own archive", md5=_md5((folder / name).read_bytes()))
                for name in real_data.DOWNLOADS}
    expected["fairface-img-margin025-trainval.zip"] = Download("fairface-img-margin025-trainval.zip",
                                                               "the test's zip")  # no checksum, as the official one
    manifest = {name: hashlib.sha256(data).hexdigest()[:16] for name, data in wanted.items()}
    return folder, expected, manifest, wanted


def _build(folder, expected, manifest, out):
    return real_data.build(folder, out, expected=expected, manifest=manifest, subset=SUBSET)


def test_builds_the_folder_with_exactly_the_subset(downloads, tmp_path):
    folder, expected, manifest, wanted = downloads
    out = _build(folder, expected, manifest, tmp_path / "data")
    built = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert built == wanted
    assert not (out / "fairface" / "train" / "4.jpg").exists() and not (out / "fairface" / "train" / "10.jpg").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no work folder left


def test_label_files_keep_the_official_rows_of_exactly_the_subset(downloads, tmp_path):
    folder, expected, manifest, _ = downloads
    out = _build(folder, expected, manifest, tmp_path / "data")
    labels = (out / "fairface" / "fairface_label_train.csv").read_text().splitlines()
    assert labels[0] == HEADER.decode().strip()
    assert [line.split(",")[0] for line in labels[1:]] == ["train/1.jpg", "train/2.jpg", "train/3.jpg"]
    assert (out / "fairface" / "labels_full" / "fairface_label_train.csv").read_bytes() == \
        (folder / "fairface_label_train.csv").read_bytes()


def test_wrong_archive_is_refused_naming_it_and_the_expected_checksum(downloads, tmp_path):
    folder, expected, manifest, _ = downloads
    archive = folder / "lfw-deepfunneled.tgz"
    archive.write_bytes(archive.read_bytes()[:-20])  # truncated
    with pytest.raises(RealDataError) as error:
        _build(folder, expected, manifest, tmp_path / "data")
    message = str(error.value)
    assert "lfw-deepfunneled.tgz" in message and expected["lfw-deepfunneled.tgz"].md5 in message
    assert "truncated" in message
    assert not (tmp_path / "data").exists()


def test_truncated_zip_without_a_published_checksum_is_refused(downloads, tmp_path):
    folder, expected, manifest, _ = downloads
    archive = folder / "fairface-img-margin025-trainval.zip"
    archive.write_bytes(archive.read_bytes()[: len(archive.read_bytes()) // 2])
    with pytest.raises(RealDataError, match="fairface-img-margin025-trainval.zip.*(truncated|not a complete)"):
        _build(folder, expected, manifest, tmp_path / "data")
    assert not (tmp_path / "data").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_zip_with_other_images_is_refused_by_the_manifest(downloads, tmp_path):
    folder, expected, manifest, _ = downloads
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:  # a complete zip, but the 1.25-padding images, say
        for split in ("train", "val"):
            for k in range(1, 6):
                bundle.writestr(f"{split}/{k}.jpg", _jpeg_bytes(f"other {split}{k}"))
    (folder / "fairface-img-margin025-trainval.zip").write_bytes(buffer.getvalue())
    with pytest.raises(RealDataError) as error:
        _build(folder, expected, manifest, tmp_path / "data")
    assert "fairface/train/1.jpg" in str(error.value) and "other contents" in str(error.value)
    assert not (tmp_path / "data").exists()


def test_zip_missing_part_of_the_subset_is_refused(downloads, tmp_path):
    folder, expected, manifest, _ = downloads
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("train/1.jpg", _jpeg_bytes("train1"))
    (folder / "fairface-img-margin025-trainval.zip").write_bytes(buffer.getvalue())
    with pytest.raises(RealDataError, match=r"1 of the 3 images train/1.jpg … train/3.jpg"):
        _build(folder, expected, manifest, tmp_path / "data")


def test_an_archive_entry_outside_its_folder_is_refused(downloads, tmp_path):
    folder, expected, manifest, _ = downloads
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("lfw-deepfunneled/../../outside.jpg")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    (folder / "lfw-deepfunneled.tgz").write_bytes(buffer.getvalue())
    expected["lfw-deepfunneled.tgz"] = Download("lfw-deepfunneled.tgz", "test", md5=_md5(buffer.getvalue()))
    with pytest.raises(RealDataError, match="unexpected entry"):
        _build(folder, expected, manifest, tmp_path / "data")
    assert not (tmp_path / "outside.jpg").exists() and not (tmp_path / "data").exists()


def test_missing_downloads_are_named_with_where_to_get_them(downloads, tmp_path):
    folder, expected, manifest, _ = downloads
    (folder / "pairs.txt").unlink()
    (folder / "fairface_label_val.csv").unlink()
    with pytest.raises(RealDataError) as error:
        real_data.build(folder, tmp_path / "data", manifest=manifest, subset=SUBSET)  # the official list
    assert "pairs.txt (from http://vis-www.cs.umass.edu/lfw/pairs.txt)" in str(error.value)
    assert "fairface_label_val.csv" in str(error.value)


def test_an_existing_folder_is_never_overwritten(downloads, tmp_path):
    folder, expected, manifest, _ = downloads
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(RealDataError, match="not empty"):
        _build(folder, expected, manifest, out)
    assert (out / "keep.txt").read_text() == "mine"


def test_command_line_reports_the_error_and_exits_1(downloads, tmp_path, capsys):
    folder, _, _, _ = downloads
    (folder / "lfw-deepfunneled.tgz").write_bytes(b"not an archive")
    assert real_data.main(["--downloads", str(folder), "--out", str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err
    assert "make real-data:" in err and "lfw-deepfunneled.tgz" in err and "68331da3eb755a505a502b5aacb3c201" in err


def test_committed_manifest_lists_the_reports_subset():
    lines = gzip.open(real_data.MANIFEST, "rt", encoding="utf-8").read().splitlines()
    entries = dict(reversed(line.split("  ", 1)) for line in lines if not line.startswith("#"))
    names = list(entries)
    assert sum(n.startswith("lfw/lfw-deepfunneled/") for n in names) == 13233
    assert {n for n in names if n.startswith("fairface/train/")} == {f"fairface/train/{k}.jpg" for k in range(1, 16001)}
    assert {n for n in names if n.startswith("fairface/val/")} == {f"fairface/val/{k}.jpg" for k in range(1, 2501)}
    for name in real_data.GENDER_LISTS:  # the lists shipped in data/lfw_gender are the ones the report used
        assert entries[f"lfw/gender/{name}"] == hashlib.sha256((paths.LFW_GENDER_LISTS / name).read_bytes()).hexdigest()[:16]
    for name in ("fairface_label_train.csv", "fairface_label_val.csv"):
        assert entries[f"fairface/labels_full/{name}"] == real_data.DOWNLOADS[name].sha256[:16]


@pytest.mark.real_data
@pytest.mark.slow
def test_manifest_and_checksums_match_the_real_data_folder():
    root = paths.SHARED_DATA
    if not (root / "lfw" / "pairs.txt").is_file() or not (root / "fairface" / "train").is_dir():
        pytest.skip(f"no real data folder at {root} (FACE_SHARED_DATA)")
    for name in real_data.LFW_PROTOCOL_FILES:
        assert hashlib.md5((root / "lfw" / name).read_bytes()).hexdigest() == real_data.DOWNLOADS[name].md5, name
    real_data.verify_against_manifest(root, real_data.read_manifest())
