"""Build the real data folder (``FACE_SHARED_DATA``) from the official public archives a user downloads.

The ``real`` profile reads a folder laid out as::

    lfw/lfw-deepfunneled/<Name>/<Name>_<NNNN>.jpg     all 13,233 deep-funneled LFW images
    lfw/pairs.txt, pairsDevTrain.txt, pairsDevTest.txt, peopleDevTrain.txt, peopleDevTest.txt
    lfw/gender/male_names.txt, female_names.txt       the per-image gender lists (Afifi & Abdelhamed)
    fairface/train/1.jpg … 16000.jpg, val/1.jpg … 2500.jpg   FairFace, padding 0.25, official numbering
    fairface/fairface_label_train.csv, fairface_label_val.csv  the official label rows of exactly those images
    fairface/labels_full/fairface_label_{train,val}.csv       the complete official label files

The report used FairFace's first 16,000 training and first 2,500 validation images by their official file
numbers (``train/1.jpg`` … ``train/16000.jpg``, ``val/1.jpg`` … ``val/2500.jpg``): a fixed, documented subset
that fits a CPU, not a sample. This module takes exactly that subset from the official zip.

Each downloaded file is checked before anything is unpacked: against the published checksum where one is
known (:data:`DOWNLOADS`), and every unpacked file against the committed manifest of per-file SHA-256 digests
(``data/real_data_manifest.tsv.gz``, computed from the folder the report ran on, whose files are
byte-identical to the official releases). A wrong, truncated or incomplete archive is refused with a message
naming it and what was expected. The folder is built under a temporary name and renamed when complete, so
a failure never leaves a half-built folder behind.

    python -m lib.real_data --downloads ~/Downloads/face-data            # -> $FACE_SHARED_DATA
    python -m lib.real_data --downloads DIR --out DIR
    python -m lib.real_data manifest --from /path/to/real/data            # (maintainers) rewrite the manifest
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import re
import shutil
import sys
import tarfile
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from lib import paths


@dataclass(frozen=True)
class Download:
    """One file the user downloads: where from, and how it is checked."""

    name: str
    source: str
    md5: str | None = None  # a checksum published with (or for) the official file
    sha256: str | None = None  # of the copy the report used (byte-identical to the official file)
    checksum_note: str = ""


LFW_SITE = "http://vis-www.cs.umass.edu/lfw/"
FAIRFACE_SITE = "https://github.com/joojs/fairface (README: the padding-0.25 images and the label files)"

# MD5s of the LFW files as torchvision's LFW dataset class checks them (torchvision/datasets/lfw.py); the
# protocol files' MD5s agree with the copies the report used, and so do their SHA-256s below. FairFace's
# authors publish no checksums: the zip is checked by its contents (the manifest), the CSVs by the SHA-256
# of the copies the report used.
DOWNLOADS = {
    download.name: download for download in [
        Download("lfw-deepfunneled.tgz", LFW_SITE + "lfw-deepfunneled.tgz", md5="68331da3eb755a505a502b5aacb3c201",
                 checksum_note="MD5 as checked by torchvision's LFW dataset class"),
        Download("pairs.txt", LFW_SITE + "pairs.txt", md5="9f1ba174e4e1c508ff7cdf10ac338a7d"),
        Download("pairsDevTrain.txt", LFW_SITE + "pairsDevTrain.txt", md5="4f27cbf15b2da4a85c1907eb4181ad21"),
        Download("pairsDevTest.txt", LFW_SITE + "pairsDevTest.txt", md5="5132f7440eb68cf58910c8a45a2ac10b"),
        Download("peopleDevTrain.txt", LFW_SITE + "peopleDevTrain.txt", md5="54eaac34beb6d042ed3a7d883e247a21"),
        Download("peopleDevTest.txt", LFW_SITE + "peopleDevTest.txt", md5="e4bf5be0a43b5dcd9dc5ccfcb8fb19c5"),
        Download("fairface-img-margin025-trainval.zip", FAIRFACE_SITE,
                 checksum_note="no published checksum: every image taken from it is checked against the manifest"),
        Download("fairface_label_train.csv", FAIRFACE_SITE,
                 sha256="90624451f2214ae1aa84021ae51c19ce45a375bd0bff901b935feadc59514795",
                 checksum_note="SHA-256 of the copy the report used; no published checksum"),
        Download("fairface_label_val.csv", FAIRFACE_SITE,
                 sha256="19906f6917373dc19385e23ff0bacb75767fd0f99569ae6201d268af33d4c96b",
                 checksum_note="SHA-256 of the copy the report used; no published checksum"),
    ]
}
LFW_PROTOCOL_FILES = ("pairs.txt", "pairsDevTrain.txt", "pairsDevTest.txt", "peopleDevTrain.txt", "peopleDevTest.txt")
GENDER_LISTS = ("male_names.txt", "female_names.txt")  # shipped in data/lfw_gender/ (see its README)
FAIRFACE_SUBSET = {"train": 16000, "val": 2500}  # official numbering: train/1.jpg … train/16000.jpg, …
MANIFEST = paths.DATA / "real_data_manifest.tsv.gz"
DIGEST_CHARS = 16  # per-file manifest digests: the first 16 hex digits of SHA-256 (what `sha256sum` prints)


class RealDataError(Exception):
    """A download is missing, wrong or incomplete; the message names it and says what was expected."""


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_download(folder: Path, download: Download) -> Path:
    """The path of ``download`` in ``folder``, after checking its checksum (when one is known)."""
    path = folder / download.name
    if not path.is_file():
        raise RealDataError(f"{path}: missing. Download {download.name} from {download.source} into {folder}.")
    for algorithm in ("md5", "sha256"):
        expected = getattr(download, algorithm)
        if expected:
            actual = file_digest(path, algorithm)
            if actual != expected:
                raise RealDataError(
                    f"{path}: {algorithm.upper()} is {actual}, expected {expected} "
                    f"({download.checksum_note or 'the official file'}; {path.stat().st_size:,} bytes here). "
                    f"The download is truncated or not the official {download.name}: download it again from "
                    f"{download.source}.")
    return path


def read_manifest(path: Path = MANIFEST) -> dict[str, str]:
    """{relative path: digest prefix} from a manifest written by :func:`write_manifest`."""
    entries = {}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip() and not line.startswith("#"):
                digest, name = line.rstrip("\n").split("  ", 1)
                entries[name] = digest
    return entries


def folder_digests(root: Path) -> dict[str, str]:
    """{relative path: digest prefix} of every file under ``root`` (README.md at the top left out)."""
    return {path.relative_to(root).as_posix(): file_digest(path, "sha256")[:DIGEST_CHARS]
            for path in sorted(root.rglob("*")) if path.is_file() and path.relative_to(root).as_posix() != "README.md"}


def write_manifest(root: Path, path: Path = MANIFEST) -> int:
    digests = folder_digests(root)
    text = "".join(f"{digest}  {name}\n" for name, digest in digests.items())
    header = (f"# SHA-256 (first {DIGEST_CHARS} hex digits) of every file of the real data folder the report used;"
              f" written by `python -m lib.real_data manifest`\n")
    with gzip.GzipFile(path, "wb", mtime=0) as handle:  # mtime 0: the same folder gives the same bytes
        handle.write((header + text).encode("utf-8"))
    return len(digests)


def verify_against_manifest(root: Path, manifest: dict[str, str]) -> None:
    """Refuse a built folder whose files differ from the manifest: missing, extra or changed files."""
    built = folder_digests(root)
    missing = sorted(set(manifest) - set(built))
    extra = sorted(set(built) - set(manifest))
    changed = sorted(name for name in set(built) & set(manifest) if built[name] != manifest[name])
    if missing or extra or changed:
        def some(names):
            return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        problems = [f"{len(missing)} missing ({some(missing)})" if missing else "",
                    f"{len(changed)} with other contents ({some(changed)})" if changed else "",
                    f"{len(extra)} unexpected ({some(extra)})" if extra else ""]
        raise RealDataError(
            "the unpacked files are not those the report used: " + "; ".join(p for p in problems if p)
            + f". Expected {len(manifest):,} files as listed in {_shown(MANIFEST)}; check that the downloads are the "
              "official releases (FairFace: the padding-0.25 zip fairface-img-margin025-trainval.zip) and complete.")


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(paths.ROOT))
    except ValueError:
        return str(path)


def _extract_lfw(archive: Path, target: Path) -> int:
    """Unpack ``lfw-deepfunneled/`` from the tgz into ``target`` (nothing outside that folder)."""
    count = 0
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./").rstrip("/")
                if member.isdir() and name in ("lfw-deepfunneled", "."):
                    continue
                if not name.startswith("lfw-deepfunneled/") or ".." in Path(name).parts:
                    raise RealDataError(f"{archive}: unexpected entry {member.name!r}; the official archive "
                                        "holds only lfw-deepfunneled/<Name>/<Name>_<NNNN>.jpg")
                if member.isdir():
                    continue
                if not member.isfile():
                    raise RealDataError(f"{archive}: {member.name!r} is not a regular file")
                destination = target / name
                destination.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, open(destination, "wb") as out:
                    shutil.copyfileobj(source, out)
                count += 1
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise RealDataError(f"{archive}: cannot be read to the end ({error}); the download is truncated or not "
                            f"the official lfw-deepfunneled.tgz: download it again from {LFW_SITE}") from error
    return count


_FAIRFACE_IMAGE = re.compile(r"(?:.*/)?(train|val)/(\d+)\.jpg")


def _extract_fairface(archive: Path, target: Path, subset: dict[str, int]) -> dict[str, int]:
    """Unpack ``train/N.jpg`` and ``val/N.jpg`` with N within ``subset`` (official numbering) into ``target``."""
    counts = {split: 0 for split in subset}
    try:
        with zipfile.ZipFile(archive) as bundle:
            for info in bundle.infolist():
                match = _FAIRFACE_IMAGE.fullmatch(info.filename)
                if not match or match.group(1) not in subset or int(match.group(2)) > subset[match.group(1)]:
                    continue
                split, number = match.group(1), int(match.group(2))
                destination = target / split / f"{number}.jpg"
                destination.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(info) as source, open(destination, "wb") as out:
                    shutil.copyfileobj(source, out)
                counts[split] += 1
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as error:
        raise RealDataError(f"{archive}: not a complete zip archive ({error}); the download is truncated or not the "
                            f"official fairface-img-margin025-trainval.zip: download it again from "
                            f"{FAIRFACE_SITE}") from error
    short = {split: (counts[split], subset[split]) for split in subset if counts[split] != subset[split]}
    if short:
        raise RealDataError(f"{archive}: " + "; ".join(f"{have:,} of the {want:,} images {split}/1.jpg … {split}/"
                                                        f"{want}.jpg" for split, (have, want) in short.items())
                            + ". Expected the official padding-0.25 zip fairface-img-margin025-trainval.zip.")
    return counts


def _subset_labels(full_csv: Path, target: Path, split: str, last: int) -> int:
    """Write the header and the rows of ``split/1.jpg`` … ``split/<last>.jpg`` of ``full_csv``, in its order and
    with its bytes (the official file's line endings kept)."""
    raw = full_csv.read_bytes()
    lines = raw.splitlines(keepends=True)
    if not lines or not lines[0].startswith(b"file,"):
        raise RealDataError(f"{full_csv}: no 'file,age,gender,race,service_test' header; expected the official "
                            f"FairFace label file")
    kept = [lines[0]]
    for line in lines[1:]:
        match = _FAIRFACE_IMAGE.fullmatch(line.split(b",", 1)[0].decode("utf-8", "replace"))
        if match and match.group(1) == split and int(match.group(2)) <= last:
            kept.append(line)
    target.write_bytes(b"".join(kept))
    return len(kept) - 1


def build(downloads: Path, out: Path, *, expected: dict[str, Download] | None = None,
          manifest: dict[str, str] | None = None, subset: dict[str, int] | None = None,
          gender_lists: Path | None = None) -> Path:
    """Build the real data folder ``out`` from the files in ``downloads``; see the module docstring.

    ``expected``, ``manifest`` and ``subset`` default to the official files (:data:`DOWNLOADS`), the committed
    manifest and :data:`FAIRFACE_SUBSET`; tests pass their own for small archives in the same layout.
    """
    expected = DOWNLOADS if expected is None else expected
    manifest = read_manifest() if manifest is None else manifest
    subset = FAIRFACE_SUBSET if subset is None else subset
    gender_lists = gender_lists or paths.LFW_GENDER_LISTS
    downloads, out = Path(downloads).expanduser(), Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise RealDataError(f"{out} exists and is not empty; remove it or choose another --out (nothing was changed)")
    missing = [d for d in expected.values() if not (downloads / d.name).is_file()]
    if missing:
        raise RealDataError(f"missing in {downloads}: " + "; ".join(f"{d.name} (from {d.source})" for d in missing))
    checked = {name: check_download(downloads, download) for name, download in expected.items()}

    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.with_name(f".{out.name}.building-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    try:
        lfw, fairface = work / "lfw", work / "fairface"
        print(f"unpacking {checked['lfw-deepfunneled.tgz'].name} ...", flush=True)
        images = _extract_lfw(checked["lfw-deepfunneled.tgz"], lfw)
        for name in LFW_PROTOCOL_FILES:
            shutil.copyfile(checked[name], lfw / name)
        (lfw / "gender").mkdir()
        for name in GENDER_LISTS:
            source = downloads / name if (downloads / name).is_file() else gender_lists / name
            shutil.copyfile(source, lfw / "gender" / name)
        print(f"LFW: {images:,} images, protocol files, gender lists", flush=True)
        print(f"unpacking FairFace {', '.join(f'{s} 1–{n:,}' for s, n in subset.items())} from "
              f"{checked['fairface-img-margin025-trainval.zip'].name} ...", flush=True)
        counts = _extract_fairface(checked["fairface-img-margin025-trainval.zip"], fairface, subset)
        (fairface / "labels_full").mkdir()
        for split in subset:
            full = checked[f"fairface_label_{split}.csv"]
            shutil.copyfile(full, fairface / "labels_full" / full.name)
            rows = _subset_labels(full, fairface / full.name, split, subset[split])
            if rows != counts[split]:
                raise RealDataError(f"{full}: {rows:,} label rows for {split}/1.jpg … {split}/{subset[split]}.jpg, "
                                    f"expected {counts[split]:,} (one per image)")
        print(f"FairFace: {counts}", flush=True)
        print(f"checking {len(manifest):,} files against {_shown(MANIFEST)} ...", flush=True)
        verify_against_manifest(work, manifest)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(work, out)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out}: set FACE_SHARED_DATA={out} (or keep it at ../shared/data beside the checkout)")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["manifest"]:
        parser = argparse.ArgumentParser(prog="python -m lib.real_data manifest")
        parser.add_argument("--from", dest="source", type=Path, default=paths.SHARED_DATA)
        args = parser.parse_args(argv[1:])
        count = write_manifest(args.source)
        print(f"wrote {_shown(MANIFEST)} ({count:,} files of {args.source})")
        return 0
    parser = argparse.ArgumentParser(prog="python -m lib.real_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--downloads", type=Path, required=True,
                        help="folder holding the downloaded archives and files (README: 'Real data')")
    parser.add_argument("--out", type=Path, default=paths.SHARED_DATA,
                        help=f"the real data folder to create (default: FACE_SHARED_DATA, now {paths.SHARED_DATA})")
    args = parser.parse_args(argv)
    try:
        build(args.downloads, args.out)
    except RealDataError as error:
        print(f"make real-data: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
