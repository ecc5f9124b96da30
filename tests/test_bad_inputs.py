"""Every bad input we know of gets a clear answer: an exception of the right type whose message names
the file, the line and the field or value (and says what to do), or a warning that counts what was
skipped. One table, :data:`CASES`; each case builds its input in a temporary folder, runs the loader,
the cache or the parameter check on it, and asserts the type and the words of the answer.

Covered: FairFace label CSVs (short/long rows, empty and unknown labels, paths that leave the data folder,
symbolic links, ids that differ only in spelling, encodings, empty files), FairFace images (corrupt,
tiny, upscaled) and the Hub parquet layout; LFW pairs, people, gender and identity files (extra fields,
headers that do not describe the file, names that are paths, latin-1 bytes, byte-order marks, empty
files) and image folders (links outside, a linked image folder, stray files); the image cache (tiny sources,
upscaling, a pixel file changed on disk, a full disk, a read-only folder); saved files (truncated ``.npz``),
profiles (Python tags, syntax errors) and checkpoints (a full disk, a read-only folder); every notebook's
parameters (types, ranges, misspelt and unknown names, devices, sources, output folders); and the memory a
large junk label file takes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fixtures
from lib import fairface_experiment, paths
from lib.errors import DataError
from lib.fairface import load_fairface
from lib.imagecache import build_cache
from lib.training import CheckpointError
from lib.lfw import load_lfw, load_lfw_gender, read_pairs
from lib.parameters import ParameterError, declared_in, validate

# The tiny LFW fixture has 2 View 2 folds; its warning is a case of its own below.
pytestmark = pytest.mark.filterwarnings("ignore:.*the LFW View 2 protocol has 10:UserWarning")


@dataclass(frozen=True)
class Context:
    tmp: Path
    monkeypatch: pytest.MonkeyPatch


@dataclass(frozen=True)
class Case:
    """``run(context)`` must raise ``expected`` (an exception) or emit it (a warning); the message must
    contain every string in ``mentions``."""

    id: str
    run: Callable[[Context], object]
    expected: type[BaseException]
    mentions: tuple[str, ...]


# --------------------------------------------------------------------------------- input builders
def fairface_root(ctx: Context, **options) -> Path:
    root = ctx.tmp / "fairface"
    fixtures.build_fairface_folder(root, **options)
    return root


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


def set_line(path: Path, number: int, text: str) -> None:
    """Replace line ``number`` (1-based, as the messages count) of a text file."""
    lines = lines_of(path)
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def set_field(path: Path, number: int, column: int, value: str) -> str:
    """Replace one comma-separated field of line ``number``; returns the new line."""
    fields = lines_of(path)[number - 1].split(",")
    fields[column] = value
    set_line(path, number, ",".join(fields))
    return ",".join(fields)


def train_csv(root: Path) -> Path:
    return root / "fairface_label_train.csv"


def fairface_csv_case(case_id: str, edit: Callable[[Path], object], *mentions: str, expected=DataError) -> Case:
    """A FairFace folder whose train CSV ``edit(csv)`` spoils; loading must say so."""

    def run(ctx):
        root = fairface_root(ctx)
        edit(train_csv(root))
        return load_fairface(root)

    return Case(f"fairface-{case_id}", run, expected, mentions)


def fairface_folder_case(case_id: str, edit: Callable[[Path, Path], object], *mentions: str, expected=DataError) -> Case:
    """Like :func:`fairface_csv_case` with ``edit(root, tmp)`` free to change the folder."""

    def run(ctx):
        root = fairface_root(ctx)
        edit(root, ctx.tmp)
        return load_fairface(root)

    return Case(f"fairface-{case_id}", run, expected, mentions)


def lfw_case(case_id: str, edit: Callable[[fixtures.LFWFixture], object], *mentions: str, expected=DataError,
             attributes: bool = False) -> Case:
    def run(ctx):
        copy = fixtures.build_lfw(ctx.tmp / "lfw", attributes=attributes)
        edit(copy)
        return load_lfw(copy.root)

    return Case(f"lfw-{case_id}", run, expected, mentions)


def gender_case(case_id: str, edit: Callable[[Path], object], *mentions: str, expected=DataError) -> Case:
    def run(ctx):
        copy = fixtures.build_lfw(ctx.tmp / "lfw")
        edit(copy.protocol_dir / "gender")
        return load_lfw_gender(copy.protocol_dir / "gender", load_lfw(copy.root))

    return Case(f"lfw-gender-{case_id}", run, expected, mentions)


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def append_bytes(path: Path, data: bytes) -> None:
    path.write_bytes(path.read_bytes() + data)


def png(path: Path, size: tuple[int, int], seed: int = 0) -> str:
    """A random RGB PNG of ``size`` = (width, height)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return str(path)


def cache_case(case_id: str, make_refs: Callable[[Path], list], *mentions: str, expected=DataError, **options) -> Case:
    def run(ctx):
        refs = make_refs(ctx.tmp / "images")
        return build_cache(refs, cache_dir=ctx.tmp / "cache", progress=False, **{"size": 32, **options})

    return Case(f"cache-{case_id}", run, expected, mentions)


def five_pngs(folder: Path) -> list[str]:
    return [png(folder / f"{i}.png", (40, 40), seed=i) for i in range(5)]


def corrupt_pixels(ctx: Context):
    refs = five_pngs(ctx.tmp / "images")
    build_cache(refs, 32, cache_dir=ctx.tmp / "cache", progress=False)
    pixels = next((ctx.tmp / "cache").glob("*.u8"))
    pixels.write_bytes(bytes(pixels.stat().st_size))
    return build_cache(refs, 32, cache_dir=ctx.tmp / "cache", progress=False)


def cache_on_a_full_disk(ctx: Context, free: int | None):
    """Five 32-px images (15,360 bytes of pixels) cached on a disk with ``free`` bytes left (shutil.disk_usage),
    or (``free=None``) a disk that fills while the file is reserved (posix_fallocate fails with ENOSPC)."""
    import errno
    import shutil

    refs = five_pngs(ctx.tmp / "images")
    if free is not None:
        usage = shutil.disk_usage(ctx.tmp)
        ctx.monkeypatch.setattr(shutil, "disk_usage", lambda path: type(usage)(usage.total, usage.total - free, free))
    else:
        def full(*args):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        ctx.monkeypatch.setattr(os, "posix_fallocate", full)
    try:
        return build_cache(refs, 32, cache_dir=ctx.tmp / "cache", progress=False)
    finally:
        left = sorted(path.name for path in (ctx.tmp / "cache").iterdir()) if (ctx.tmp / "cache").is_dir() else []
        assert left == [], f"left in the cache folder: {left}"


def classification_with(ctx: Context, spoil: Callable[[Path], object]):
    """Notebook 03's loader on a FairFace folder with one spoiled training image."""
    root = fairface_root(ctx, size=(40, 40))
    spoil(root / "train" / "4.jpg")
    return fairface_experiment.load_classification(root, size=32, cache_dir=ctx.tmp / "cache", progress=False)


def under_a_file(ctx: Context) -> Path:
    """A path whose parent is a file: no folder can be made there (as a read-only mount, even for root)."""
    (ctx.tmp / "a-file").write_text("not a folder")
    return ctx.tmp / "a-file"


def fit_features(ctx: Context, checkpoint_dir: Path, *, no_training: bool = False, save_error=None):
    """One epoch of a cosine head on 40 random features, checkpointed to ``checkpoint_dir`` as ``run``;
    ``no_training``: an epoch that starts is a failure; ``save_error``: what torch.save raises. No
    temporary file may be left."""
    from torch import nn

    from lib import training
    from lib.losses import make_head
    from lib.settings import RunSettings

    if no_training:
        ctx.monkeypatch.setattr(training, "train_epoch", lambda *a, **k: pytest.fail("an epoch was trained"))
    if save_error is not None:
        def failing_save(payload, file):
            Path(file).write_bytes(b"half")
            raise save_error

        ctx.monkeypatch.setattr(torch, "save", failing_save)
    settings = RunSettings(head="cosface", model="identity", embedding_dim=4, image_size=None, flip=False, epochs=1,
                           batch_size=8, lr=0.05, seed=0)
    torch.manual_seed(0)
    features, labels = torch.randn(40, 4), torch.arange(40) % 2
    try:
        return training.fit(settings, nn.Identity(), make_head("cosface", 4, 2), features, labels, device="cpu",
                            progress=False, checkpoint_dir=checkpoint_dir, run_name="run")
    finally:
        left = [p.name for p in checkpoint_dir.glob(".*.tmp")] if checkpoint_dir.is_dir() else []
        assert left == [], f"temporary files left: {left}"


def validate_with_folder(ctx: Context, name: str, stem: str):
    """The notebook's defaults (profile smoke) with ``paths.<name>`` (RESULTS, CHECKPOINTS, CACHE) under a file."""
    ctx.monkeypatch.setattr(paths, name, under_a_file(ctx))
    return validate(stem, {**NOTEBOOK_DEFAULTS[stem], "profile": "smoke"}, quiet=True)


def truncated_npz(path: Path) -> Path:
    """An ``.npz`` in notebook 02's embeddings layout, cut to half its bytes (as by a full disk or a kill)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.savez(path, files=np.array([f"A_{i:04d}.jpg" for i in range(500)]), identity=np.array(["A"] * 500),
             digests=np.array(["d"] * 500), vectors=rng.random((500, 8), dtype=np.float32),
             aligned_by=np.zeros(500, np.int8), **{"model:softmax-seed0": rng.random((500, 8), dtype=np.float32)})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def small_audit_inputs():
    """Features, identities and groups of 8 people with 3 images each, in two groups."""
    rng = np.random.default_rng(0)
    identities = np.repeat([f"P{i}" for i in range(8)], 3)
    features = rng.normal(size=(24, 8)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    return features, identities, np.where(np.arange(24) < 12, "Female", "Male")


def profile_with(ctx: Context, text: str):
    from lib import notebooks

    ctx.monkeypatch.setattr(paths, "PARAMS", ctx.tmp)
    (ctx.tmp / "evil.yaml").write_text(text)
    return notebooks.load_profile("evil")


# ------------------------------------------------------------------------------- parameter builders
NOTEBOOK_DEFAULTS = {stem: declared_in(paths.NOTEBOOKS / f"{stem}.py") for stem in
                     ("01_data_audit", "02_sphereface", "03_cosrelu_vs_softmax", "04_fairness")}


def parameter_case(stem: str, name: str, value, *mentions: str, setup: Callable[[Context], None] | None = None,
                   **others) -> Case:
    """The notebook's own defaults with ``name = value`` (and ``others``) must fail the notebook's check,
    naming the parameter and the value."""

    def run(ctx):
        if setup is not None:
            setup(ctx)
        params = {**NOTEBOOK_DEFAULTS[stem], **others, name: value}
        return validate(stem, params, quiet=True)

    extra = "".join(f",{key}={others[key]!r}" for key in sorted(others))
    return Case(f"param-{stem[:2]}-{name}={value!r}{extra}", run, ParameterError, (f"{name} = {value!r}", *mentions))


def no_cuda(ctx: Context) -> None:
    ctx.monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def one_cuda_device(ctx: Context) -> None:
    ctx.monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ctx.monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def no_mps(ctx: Context) -> None:
    ctx.monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


# ------------------------------------------------------------------------------------------ table
LATIN1 = "Jos\xe9".encode("latin-1")  # "José" in latin-1: byte 0xe9 is not valid UTF-8 here

CASES = [
    # FairFace label CSV: rows. The fixture's train CSV: header on line 1, train/k.jpg on line k + 1.
    fairface_csv_case("row-too-few-fields", lambda csv: set_line(csv, 4, "train/3.jpg,20-29,Male"),
                      "fairface_label_train.csv:4", "expected 5 fields", "got 3", "train/3.jpg,20-29,Male"),
    fairface_csv_case("row-too-many-fields", lambda csv: set_field(csv, 3, 4, "True,extra"),
                      "fairface_label_train.csv:3", "got 6", "extra"),
    fairface_csv_case("row-unclosed-quote", lambda csv: set_field(csv, 5, 1, '"20-29'),
                      "fairface_label_train.csv:5", "expected 5 fields"),
    fairface_csv_case("empty-file-field", lambda csv: set_field(csv, 6, 0, ""),
                      "fairface_label_train.csv:6", "empty file"),
    fairface_csv_case("empty-age", lambda csv: set_field(csv, 2, 1, ""),
                      "fairface_label_train.csv:2", "empty age", "'train/1.jpg'"),
    fairface_csv_case("empty-gender", lambda csv: set_field(csv, 7, 2, ""),
                      "fairface_label_train.csv:7", "empty gender", "'train/6.jpg'"),
    fairface_csv_case("empty-race", lambda csv: set_field(csv, 8, 3, "  "),
                      "fairface_label_train.csv:8", "empty race", "'train/7.jpg'"),
    fairface_csv_case("empty-service-test", lambda csv: set_field(csv, 9, 4, ""),
                      "fairface_label_train.csv:9", "empty service_test"),
    fairface_csv_case("unknown-age", lambda csv: set_field(csv, 3, 1, "25-30"),
                      "fairface_label_train.csv:3", "unknown age label(s) 25-30"),
    fairface_csv_case("unknown-gender", lambda csv: set_field(csv, 4, 2, "male"),
                      "fairface_label_train.csv:4", "unknown gender label(s) male"),
    fairface_csv_case("unknown-race", lambda csv: set_field(csv, 10, 3, "Martian"),
                      "fairface_label_train.csv:10", "unknown race label(s) Martian"),
    fairface_csv_case("service-test-not-bool", lambda csv: set_field(csv, 5, 4, "yes"),
                      "fairface_label_train.csv:5", "service_test must be True or False, found yes"),
    # FairFace: paths that leave the data folder, and ids that differ only in spelling.
    fairface_csv_case("absolute-path", lambda csv: set_field(csv, 3, 0, "/etc/passwd"),
                      "fairface_label_train.csv:3", "absolute path", "'/etc/passwd'"),
    fairface_csv_case("parent-path", lambda csv: set_field(csv, 4, 0, "../outside/x.jpg"),
                      "fairface_label_train.csv:4", "outside the FairFace folder", "'../outside/x.jpg'"),
    fairface_csv_case("climbing-path", lambda csv: set_field(csv, 5, 0, "train/../../x.jpg"),
                      "fairface_label_train.csv:5", "outside the FairFace folder", "'train/../../x.jpg'"),
    fairface_csv_case("folder-itself", lambda csv: set_field(csv, 5, 0, "train/.."),
                      "fairface_label_train.csv:5", "outside the FairFace folder"),
    fairface_csv_case("windows-drive", lambda csv: set_field(csv, 6, 0, "C:/x.jpg"),
                      "fairface_label_train.csv:6", "absolute path", "'C:/x.jpg'"),
    fairface_csv_case("backslash", lambda csv: set_field(csv, 7, 0, "train\\6.jpg"),
                      "fairface_label_train.csv:7", "backslash", "'train\\\\6.jpg'"),
    fairface_csv_case("dot-segment-duplicate", lambda csv: set_field(csv, 4, 0, "train/./1.jpg"),
                      "fairface_label_train.csv:4", "'train/1.jpg' is listed again", "also at line 2",
                      "'train/./1.jpg'"),
    fairface_csv_case("double-slash-duplicate", lambda csv: set_field(csv, 10, 0, "train//2.jpg"),
                      "fairface_label_train.csv:10", "'train/2.jpg' is listed again", "also at line 3"),
    fairface_csv_case("exact-duplicate", lambda csv: set_line(csv, 9, lines_of(csv)[1]),
                      "fairface_label_train.csv:9", "'train/1.jpg' is listed again", "also at line 2"),
    fairface_folder_case("file-symlink-outside", lambda root, tmp: (
        (root / "train" / "2.jpg").unlink(),
        fixtures.write_jpeg(tmp / "outside" / "secret.jpg", seed=1),
        os.symlink(tmp / "outside" / "secret.jpg", root / "train" / "2.jpg")),
        "fairface_label_train.csv:3", "'train/2.jpg' is a symbolic link to", "outside"),
    fairface_folder_case("folder-symlink-outside", lambda root, tmp: (
        (root / "train").rename(tmp / "elsewhere"), os.symlink(tmp / "elsewhere", root / "train")),
        "fairface_label_train.csv:2", "a link to", "outside"),
    fairface_folder_case("missing-image", lambda root, tmp: (root / "train" / "5.jpg").unlink(),
                         "1 of 9 files listed in fairface_label_train.csv do not exist", "train/5.jpg",
                         "fairface_label_train.csv:6"),
    # FairFace: whole files.
    fairface_csv_case("latin1-byte", lambda csv: append_bytes(csv, b"train/99.jpg,20-29," + LATIN1 + b",White,True\n"),
                      "fairface_label_train.csv:11", "0xe9", "not UTF-8", "iconv"),
    fairface_csv_case("empty-file", lambda csv: csv.write_bytes(b""),
                      "fairface_label_train.csv is empty", "file,age,gender,race,service_test"),
    fairface_csv_case("header-only", lambda csv: csv.write_text("file,age,gender,race,service_test\n"),
                      "fairface_label_train.csv has a header but no rows"),
    fairface_csv_case("wrong-header", lambda csv: set_line(csv, 1, "path,age,sex,race,service_test"),
                      "fairface_label_train.csv lacks column(s) ['file', 'gender']"),
    fairface_folder_case("listed-in-both-csvs", lambda root, tmp: append_bytes(
        root / "fairface_label_val.csv", lines_of(train_csv(root))[3].encode() + b"\n"),
        "fairface_label_val.csv:6", "'train/3.jpg' is also listed in fairface_label_train.csv:4",
        "an image belongs to one split"),
    fairface_folder_case("missing-val-csv", lambda root, tmp: (root / "fairface_label_val.csv").unlink(),
                         "missing label file", "fairface_label_val.csv"),
    fairface_folder_case("folder-missing", lambda root, tmp: __import__("shutil").rmtree(root),
                         "does not exist", "Google-Drive"),
    # FairFace images through notebook 03's loader: skipped, counted, named.
    Case("fairface-truncated-jpeg-skipped", lambda ctx: classification_with(
        ctx, lambda image: image.write_bytes(image.read_bytes()[:120])),
        UserWarning, ("1 of 9 images cannot be decoded and were skipped", "train/4.jpg")),
    Case("fairface-1x1-image-skipped", lambda ctx: classification_with(
        ctx, lambda image: Image.new("RGB", (1, 1)).save(image, format="JPEG")),
        UserWarning, ("1 of 9 images cannot be decoded and were skipped", "train/4.jpg", "1x1 px",
                      "below the 16 px minimum side")),
    Case("fairface-garbage-image-skipped", lambda ctx: classification_with(
        ctx, lambda image: image.write_bytes(b"not an image")),
        UserWarning, ("1 of 9 images cannot be decoded", "train/4.jpg")),
    Case("fairface-bad-limit", lambda ctx: load_fairface(fairface_root(ctx), limit=0),
         ValueError, ("limit must be a positive integer",)),
    Case("fairface-bad-split", lambda ctx: load_fairface(fairface_root(ctx), splits=("test",)),
         ValueError, ("splits", "'test'", "no public test split")),
    Case("fairface-bad-padding", lambda ctx: load_fairface(fairface_root(ctx), padding="0.5"),
         ValueError, ("padding must be one of", "'0.5'")),
    Case("fairface-parquet-wrong-padding",
         lambda ctx: load_fairface(fixtures.build_fairface_parquet(ctx.tmp / "hub").root, padding="1.25"),
         DataError, ("no parquet shards for padding '1.25'", "0.25/train-00000-of-00002.parquet")),

    # LFW pairs files. pairs.txt: header "2\t2" on line 1; fold 0 on lines 2-5 (2 matched, 2 mismatched),
    # fold 1 on lines 6-9. pairsDevTrain.txt: header "2", lines 2-3 matched, 4-5 mismatched.
    lfw_case("matched-line-extra-field", lambda c: set_line(c.protocol_dir / "pairs.txt", 3, "Ben_Bishop\t1\t2\t2"),
             "pairs.txt:3", "'2', is a number, not a name", "Remove the extra field"),
    lfw_case("line-five-fields", lambda c: set_line(c.protocol_dir / "pairs.txt", 4, "Ann_Archer\t3\tCal_Cruz\t1\t1"),
             "pairs.txt:4", "got 5"),
    lfw_case("line-two-fields", lambda c: set_line(c.protocol_dir / "pairsDevTrain.txt", 2, "Ann_Archer\t1"),
             "pairsDevTrain.txt:2", "got 2"),
    lfw_case("mismatched-line-missing-field", lambda c: set_line(c.protocol_dir / "pairs.txt", 8, "Eva_Ekberg\t2\tGus_Grant"),
             "pairs.txt:8", "expected whole numbers", "'Eva_Ekberg\\t2\\tGus_Grant'"),
    lfw_case("image-number-zero", lambda c: set_line(c.protocol_dir / "pairs.txt", 2, "Ann_Archer\t0\t2"),
             "pairs.txt:2", "start at 1"),
    lfw_case("header-one-fold-right-total", lambda c: set_line(c.protocol_dir / "pairs.txt", 1, "1\t4"),
             "pairs.txt:4", "expected a matched (name i j) line here", "header '1\\t4'"),
    lfw_case("header-four-folds-right-total", lambda c: set_line(c.protocol_dir / "pairs.txt", 1, "4\t1"),
             "pairs.txt:3", "expected a mismatched (name1 i name2 j) line here", "'10\\t300'"),
    lfw_case("lines-moved", lambda c: (lambda lines: (c.protocol_dir / "pairs.txt").write_text(
        "\n".join(lines[:2] + [lines[3], lines[2]] + lines[4:]) + "\n"))(lines_of(c.protocol_dir / "pairs.txt")),
             "pairs.txt:3", "expected a matched", "either lines were moved"),
    lfw_case("header-three-numbers", lambda c: set_line(c.protocol_dir / "pairs.txt", 1, "2\t2\t2"),
             "pairs.txt:1", "header '2\\t2\\t2' is not 'folds<TAB>pairs per half-fold'"),
    lfw_case("header-not-a-number", lambda c: set_line(c.protocol_dir / "pairs.txt", 1, "ten\t300"),
             "pairs.txt:1", "expected whole numbers"),
    lfw_case("header-announces-more", lambda c: set_line(c.protocol_dir / "pairsDevTrain.txt", 1, "3"),
             "pairsDevTrain.txt", "announces 6 pairs but the file has 4"),
    lfw_case("view1-file-with-view2-header", lambda c: set_line(c.protocol_dir / "pairsDevTest.txt", 1, "1\t1"),
             "pairsDevTest.txt:1", "is not one count"),
    lfw_case("name-climbs-out", lambda c: set_line(c.protocol_dir / "pairs.txt", 2, "../../etc\t1\t2"),
             "pairs.txt:2", "'../../etc' is not an LFW name"),
    lfw_case("name-with-slash", lambda c: set_line(c.protocol_dir / "pairs.txt", 5, "Ben_Bishop\t2\tx/Dee_Dunn\t1"),
             "pairs.txt:5", "'x/Dee_Dunn' is not an LFW name"),
    lfw_case("name-is-dot-dot", lambda c: set_line(c.protocol_dir / "pairsDevTest.txt", 3, "Jon_Jones\t3\t..\t1"),
             "pairsDevTest.txt:3", "'..' is not an LFW name"),
    lfw_case("pairs-latin1", lambda c: append_bytes(c.protocol_dir / "pairs.txt", LATIN1 + b"\t1\t2\n"),
             "pairs.txt:10", "0xe9", "not UTF-8"),
    lfw_case("pairs-empty", lambda c: (c.protocol_dir / "pairsDevTest.txt").write_bytes(b""),
             "pairsDevTest.txt is empty"),
    lfw_case("pairs-image-not-on-disk", lambda c: (c.image_dir / "Hal_Hunt" / "Hal_Hunt_0001.jpg").unlink(),
             "pairs.txt references 1 image(s)", "Hal_Hunt_0001.jpg"),
    lfw_case("pairs-missing", lambda c: (c.protocol_dir / "pairsDevTest.txt").unlink(),
             "missing LFW protocol file(s) ['pairsDevTest.txt']"),
    lfw_case("view2-two-folds", lambda c: None,
             "pairs.txt:1", "announces 2 folds", "the LFW View 2 protocol has 10", expected=UserWarning),
    # LFW people files. peopleDevTrain.txt: header "5", people on lines 2-6.
    lfw_case("people-header-mismatch", lambda c: set_line(c.protocol_dir / "peopleDevTrain.txt", 1, "6"),
             "peopleDevTrain.txt", "announces 6 people but the file lists 5"),
    lfw_case("people-three-fields", lambda c: set_line(c.protocol_dir / "peopleDevTrain.txt", 3, "Ben_Bishop\t2\t2"),
             "peopleDevTrain.txt:3", "expected 2 fields"),
    lfw_case("people-count-not-number", lambda c: set_line(c.protocol_dir / "peopleDevTrain.txt", 4, "Cal_Cruz\tone"),
             "peopleDevTrain.txt:4", "expected whole numbers"),
    lfw_case("people-name-climbs-out", lambda c: set_line(c.protocol_dir / "peopleDevTest.txt", 2, "../Dee_Dunn\t1"),
             "peopleDevTest.txt:2", "'../Dee_Dunn' is not an LFW name"),
    lfw_case("people-wrong-count", lambda c: set_line(c.protocol_dir / "peopleDevTrain.txt", 6, "Ivy_Ito\t3"),
             "peopleDevTrain.txt", "Ivy_Ito (3 listed, 2 on disk)"),
    lfw_case("people-latin1", lambda c: append_bytes(c.protocol_dir / "peopleDevTest.txt", LATIN1 + b"\t1\n"),
             "peopleDevTest.txt:5", "0xe9"),
    lfw_case("only-one-people-file", lambda c: (c.protocol_dir / "peopleDevTest.txt").unlink(),
             "only one of the two View 1 people files", "peopleDevTest.txt"),
    # LFW identities.csv (synthetic set): header on line 1, people on lines 2-12.
    lfw_case("identities-empty", lambda c: (c.protocol_dir / "identities.csv").write_bytes(b""),
             "identities.csv is empty", "name,group,gender,age", attributes=True),
    lfw_case("identities-header-only", lambda c: (c.protocol_dir / "identities.csv").write_text("name,group,gender,age\n"),
             "identities.csv has a header but no rows", attributes=True),
    lfw_case("identities-latin1", lambda c: append_bytes(c.protocol_dir / "identities.csv", LATIN1 + b",Group A,Male,0-2\n"),
             "identities.csv:13", "0xe9", attributes=True),
    lfw_case("identities-unknown-gender", lambda c: set_field(c.protocol_dir / "identities.csv", 3, 2, "M"),
             "identities.csv:3", "unknown gender label(s) M", attributes=True),
    lfw_case("identities-short-row", lambda c: set_line(c.protocol_dir / "identities.csv", 4, "Cal_Cruz,Group C"),
             "identities.csv:4", "expected 4 fields", attributes=True),
    lfw_case("identities-empty-group", lambda c: set_field(c.protocol_dir / "identities.csv", 5, 1, ""),
             "identities.csv:5", "empty group", attributes=True),
    lfw_case("identities-missing-column", lambda c: (c.protocol_dir / "identities.csv").write_text("name,group\nA_B,Group A\n"),
             "identities.csv lacks column(s) ['gender', 'age']", attributes=True),
    # LFW image folder.
    lfw_case("image-symlink-outside", lambda c: (
        (c.image_dir / "Kim_Kerr" / "Kim_Kerr_0001.jpg").unlink(),
        fixtures.write_jpeg(c.root.parent / "elsewhere" / "x.jpg", seed=3),
        os.symlink(c.root.parent / "elsewhere" / "x.jpg", c.image_dir / "Kim_Kerr" / "Kim_Kerr_0001.jpg")),
        "1 symbolic link(s)", "lead outside it", "Kim_Kerr_0001.jpg"),
    lfw_case("person-folder-symlink-outside", lambda c: (
        (c.image_dir / "Kim_Kerr").rename(c.root.parent / "Kim_Kerr"),
        os.symlink(c.root.parent / "Kim_Kerr", c.image_dir / "Kim_Kerr")),
        "symbolic link(s)", "Kim_Kerr ->"),
    lfw_case("image-folder-link-without-protocol-files", lambda c: (
        c.image_dir.rename(c.root.parent / "imgs"), os.symlink(c.root.parent / "imgs", c.image_dir),
        (c.protocol_dir / "pairsDevTest.txt").unlink()),
        "missing LFW protocol file(s) ['pairsDevTest.txt'] in", "/lfw (they belong beside lfw/, which is a symbolic "
        "link to", "/imgs; they are not beside that folder either"),
    lfw_case("missing-image-names-pairs-line", lambda c: (c.image_dir / "Cal_Cruz" / "Cal_Cruz_0001.jpg").unlink(),
             "pairs.txt:4: Cal_Cruz_0001.jpg is not in", "pairs.txt references 1 image(s) that are not there",
             "re-extract the archive"),
    lfw_case("stray-files", lambda c: (
        (c.image_dir / "Ann_Archer" / "Thumbs.db").write_bytes(b"x"),
        (c.image_dir / "Ann_Archer" / "Ben_Bishop_0009.jpg").write_bytes(b"x")),
        "ignored 2 file(s)", "Ann_Archer/Thumbs.db", expected=UserWarning),
    Case("lfw-root-missing", lambda ctx: load_lfw(ctx.tmp / "nowhere"), DataError, ("does not exist", "fetch_lfw_pairs")),
    Case("lfw-no-image-folder", lambda ctx: load_lfw(ctx.tmp), DataError, ("no LFW image folder",)),
    Case("lfw-bom-then-bad-line", lambda ctx: read_pairs(written(ctx.tmp / "p.txt", b"\xef\xbb\xbf1\t1\nA_B\t1\t2\nA_B\t1\tC_D\n")),
         DataError, ("p.txt:3", "expected whole numbers")),
    # LFW gender lists (male_names.txt, female_names.txt: one <Name>_NNNN.jpg per line, CRLF).
    gender_case("latin1", lambda folder: append_bytes(folder / "male_names.txt", b"\r\n" + LATIN1 + b"_0001.jpg"),
                "male_names.txt:", "0xe9", "not UTF-8"),
    gender_case("bom-inside", lambda folder: append_bytes(folder / "female_names.txt", "\ufeffKim_Kerr_0001.jpg\r\n".encode()),
                "female_names.txt:", "invisible characters such as a byte-order mark", "'\\ufeffKim_Kerr_0001.jpg'"),
    gender_case("not-a-file-name", lambda folder: append_bytes(folder / "female_names.txt", b"not an image\r\n"),
                "female_names.txt:", "expected an image file name <Name>_NNNN.jpg", "'not an image'"),
    gender_case("path-entry", lambda folder: append_bytes(folder / "female_names.txt", b"../Kim_Kerr_0001.jpg\r\n"),
                "female_names.txt:", "'../Kim_Kerr_0001.jpg'"),
    gender_case("missing-list", lambda folder: (folder / "female_names.txt").unlink(),
                "missing gender list", "female_names.txt"),

    # Image cache: tiny sources, upscaling, crops, a pixel file changed on disk, bad references.
    cache_case("1x1-source", lambda folder: [*five_pngs(folder), png(folder / "dot.png", (1, 1))],
               "image 5 of 6", "dot.png is 1x1 px", "16 px minimum side"),
    cache_case("15px-source", lambda folder: [png(folder / "thin.png", (40, 15))],
               "thin.png is 15x40 px", "16 px minimum side"),
    cache_case("crop-leaves-too-little", lambda folder: five_pngs(folder)[:1],
               "after the crop", "16 px minimum side", crop=(8, 30)),
    cache_case("crop-larger-than-image", lambda folder: five_pngs(folder)[:1],
               "crop 64x64 is larger than", "0.png (40x40)", crop=64),
    cache_case("upscaled-sources-counted", lambda folder: [*five_pngs(folder), png(folder / "small.png", (20, 24))],
               "1 of 6 images of images are smaller than the 32x32 output", "small.png (24x20)", expected=UserWarning),
    cache_case("corrupt-source", lambda folder: [*five_pngs(folder), (folder / "bad.png").write_bytes(b"\x89PNG\r\n")
                                                 and str(folder / "bad.png")],
               "image 5 of 6", "cannot decode image file", "bad.png"),
    cache_case("missing-source", lambda folder: [*five_pngs(folder), str(folder / "gone.png")],
               "cannot read image 5", "gone.png"),
    cache_case("reference-not-a-path", lambda folder: [*five_pngs(folder), 3.5],
               "must be a file path or encoded bytes", "float"),
    cache_case("no-references", lambda folder: [], "no images to cache"),
    cache_case("bad-size", lambda folder: five_pngs(folder), "size must be a positive int", expected=ValueError, size=0),
    Case("cache-disk-too-full-to-start", lambda ctx: cache_on_a_full_disk(ctx, free=10_000), OSError,
         ("not enough free space: 10,000 bytes (10.0 kB) free", "needs 15,360 bytes (15.4 kB)", "/cache.", "FACE_CACHE",
          "in_memory=True")),
    Case("cache-disk-fills-while-reserving", lambda ctx: cache_on_a_full_disk(ctx, free=None), OSError,
         ("the disk filled while reserving the file", "needs 15,360 bytes", "/cache.", "FACE_CACHE")),
    Case("cache-pixel-file-changed", corrupt_pixels, UserWarning, ("no longer matches the pixel digest", ".u8",
                                                                   "rebuilding")),

    # Saved results, caches and profiles: named with the file and what to do.
    Case("frvt-truncated-embeddings-npz", lambda ctx: __import__("lib.frvt").frvt.read_model_embeddings(
        truncated_npz(ctx.tmp / "02_devtest_embeddings.npz")), DataError,
        ("02_devtest_embeddings.npz is not a readable .npz file", "truncated or damaged", "BadZipFile",
         "re-run notebook 02")),
    Case("frvt-truncated-run-names-npz", lambda ctx: __import__("lib.frvt").frvt.read_model_run_names(
        truncated_npz(ctx.tmp / "02_devtest_embeddings.npz")), DataError,
        ("02_devtest_embeddings.npz is not a readable .npz file", "re-run notebook 02")),
    Case("pretrained-truncated-cache-shard", lambda ctx: __import__("lib.pretrained").pretrained._read_cache(
        truncated_npz(ctx.tmp / "cache" / "0123.npz").parent), UserWarning,
        ("0123.npz is not a readable .npz file", "computed again")),
    Case("frvt-audit-n_boot-0", lambda ctx: __import__("lib.frvt").frvt.audit(
        *small_audit_inputs(), target_fmrs=(0.1,), n_boot=0), ValueError,
        ("n_boot is the number of identity-bootstrap replicates", ">= 1", "got 0")),
    Case("frvt-audit-models-n_boot-0", lambda ctx: __import__("lib.frvt").frvt.audit_models(
        {("softmax", 0): small_audit_inputs()[0]}, *small_audit_inputs()[1:], target_fmrs=(0.1,), n_boot=0),
        ValueError, ("n_boot", "got 0")),
    Case("profile-python-tag", lambda ctx: profile_with(ctx, "02_sphereface:\n  epochs: 3\n  lr: !!python/object/apply:"
                                                            "os.system ['echo pwned']\n"),
         SystemExit, ("evil.yaml:3: not a plain YAML parameter file", "!!python/object are refused")),
    Case("profile-syntax-error", lambda ctx: profile_with(ctx, "02_sphereface:\n  epochs: [3\n  lr: 0.1\n"),
         SystemExit, ("evil.yaml:", "not a plain YAML parameter file")),
    Case("profile-not-a-mapping", lambda ctx: profile_with(ctx, "- epochs\n- 3\n"),
         SystemExit, ("evil.yaml: a profile is a mapping", "not a list")),

    # Output folders that cannot be written, and checkpoint saves that fail: named before any work.
    Case("checkpoint-folder-not-writable", lambda ctx: fit_features(ctx, under_a_file(ctx) / "checkpoints",
                                                                    no_training=True),
         CheckpointError, ("cannot write checkpoint", "a-file/checkpoints/", "is not writable", "nothing was trained")),
    Case("checkpoint-save-disk-full", lambda ctx: fit_features(ctx, ctx.tmp / "checkpoints", save_error=RuntimeError(
        "[enforce fail at inline_container.cc:672] . unexpected pos 4160 vs 4054")), CheckpointError,
         ("cannot write checkpoint", "/checkpoints/run.pt", "unexpected pos", "B free there now",
          "resumes from the last checkpoint")),
    Case("checkpoint-save-permission-denied", lambda ctx: fit_features(
        ctx, ctx.tmp / "checkpoints", save_error=PermissionError(13, "Permission denied")), CheckpointError,
         ("cannot write checkpoint", "run.pt", "PermissionError", "read-only")),
    Case("cache-folder-not-writable", lambda ctx: build_cache(five_pngs(ctx.tmp / "images"), 32, progress=False,
                                                             cache_dir=under_a_file(ctx) / "cache"),
         OSError, ("the image cache folder", "a-file/cache is not writable", "FACE_CACHE")),
    Case("param-results-folder-not-writable", lambda ctx: validate_with_folder(ctx, "RESULTS", "02_sphereface"),
         ParameterError, ("profile = 'smoke'", "the results folder", "a-file/smoke is not writable", "FACE_STORAGE",
                          "nothing was run")),
    Case("param-checkpoint-folder-not-writable", lambda ctx: validate_with_folder(ctx, "CHECKPOINTS",
                                                                                  "03_cosrelu_vs_softmax"),
         ParameterError, ("the checkpoint folder", "a-file/smoke is not writable")),
    Case("param-cache-folder-not-writable", lambda ctx: validate_with_folder(ctx, "CACHE", "01_data_audit"),
         ParameterError, ("the image cache folder", "a-file is not writable")),

    # Notebook parameters: each notebook's defaults with one bad value.
    parameter_case("02_sphereface", "epochs", 0, "must be >= 1"),
    parameter_case("02_sphereface", "tuning_grid", {"epoch": [20, 40]}, "'epoch' is not a run setting"),
    parameter_case("02_sphereface", "tuning_grid", {"epochs": 40}, "epochs: give a list of at least two"),
    parameter_case("02_sphereface", "tuning_heads", ["spherefac"], "spherefac"),
    parameter_case("02_sphereface", "tuning_stages", ["epochs", "lr"], "list of non-empty lists"),
    parameter_case("02_sphereface", "epochs", -3, "must be >= 1"),
    parameter_case("02_sphereface", "epochs", 2.5, "not a whole number (float)"),
    parameter_case("02_sphereface", "epochs", True, "not a whole number (bool)"),
    parameter_case("02_sphereface", "epochs", "10", "not a whole number (str)"),
    parameter_case("02_sphereface", "batch_size", 0, "must be >= 1"),
    parameter_case("02_sphereface", "lr", 0, "must be > 0"),
    parameter_case("02_sphereface", "lr", "fast", "not a finite number (str)"),
    parameter_case("02_sphereface", "lr", float("nan"), "not a finite number"),
    parameter_case("02_sphereface", "weight_decay", -0.1, "must be >= 0"),
    parameter_case("02_sphereface", "heads", "cosface", "a single string, not a list: write [cosface]"),
    parameter_case("02_sphereface", "heads", "[cosface]", "not a list or mapping", "-y"),
    parameter_case("02_sphereface", "heads", [], "empty"),
    parameter_case("02_sphereface", "heads", ["cosfase"], "unknown head(s) ['cosfase']", "'cosface'"),
    parameter_case("02_sphereface", "heads", ["cosface", "cosface"], "lists a head twice"),
    parameter_case("02_sphereface", "head_hparams", {"cosfase": {"margin": 0.3}}, "unknown head 'cosfase'"),
    parameter_case("02_sphereface", "head_hparams", {"cosface": {"margn": 0.3}}, "does not take ['margn']",
                   "['scale', 'margin']"),
    parameter_case("02_sphereface", "head_hparams", {"cosface": {"margin": "big"}}, "not finite numbers"),
    parameter_case("02_sphereface", "head_hparams", {"sphereface": {"margin": 2.5}}, "sphereface:"),
    parameter_case("02_sphereface", "head_hparams", "{cosface: {margin: 0.1}}", "not a list or mapping"),
    parameter_case("02_sphereface", "image_size", 0, "from 16 to 512"),
    parameter_case("02_sphereface", "crop", 0, "from 1 to 250"),
    parameter_case("02_sphereface", "crop", 300, "from 1 to 250"),
    parameter_case("02_sphereface", "erase", 1.5, "must be >= 0 and <= 1"),
    parameter_case("02_sphereface", "erase", -0.1, "must be >= 0 and <= 1"),
    parameter_case("02_sphereface", "dropout", 1.0, "< 1"),
    parameter_case("02_sphereface", "max_shift", -1, "must be >= 0"),
    parameter_case("02_sphereface", "max_shift", 48, "moves the whole 48 px image out of view"),
    parameter_case("02_sphereface", "schedule", "linear", "'cosine' | 'step'"),
    parameter_case("02_sphereface", "amp", "fp32", "'bf16'"),
    parameter_case("02_sphereface", "amp", 1, "not one of the accepted values"),
    parameter_case("02_sphereface", "amp", "fp16", "fp16 needs CUDA", "amp: bf16", device="cpu"),
    parameter_case("02_sphereface", "device", "cuda", "torch.cuda.is_available() is False", "torch.version.cuda",
                   "device: auto", setup=no_cuda),
    parameter_case("02_sphereface", "device", "cuda:3", "only 1 CUDA device(s)", setup=one_cuda_device),
    parameter_case("02_sphereface", "device", "mps", "torch.backends.mps.is_available() is False", setup=no_mps),
    parameter_case("02_sphereface", "device", "gpu", "unknown device", "auto | cpu | cuda"),
    parameter_case("02_sphereface", "model", "vgg16", "unknown model", "spherecnn"),
    parameter_case("02_sphereface", "optimizer", "rmsprop", "'adam' | 'adamw' | 'sgd'"),
    parameter_case("02_sphereface", "validation_fraction", 0.0, "must be > 0 and < 1"),
    parameter_case("02_sphereface", "embedding_dim", 0, "must be >= 1"),
    parameter_case("02_sphereface", "fuse_flip", None, "not True or False (NoneType)"),
    parameter_case("02_sphereface", "seeds", "[0, 1]", "it is the string '[0, 1]'"),
    parameter_case("02_sphereface", "toy_identities", 1, "must be >= 2"),
    parameter_case("02_sphereface", "eval_every", 0, "must be >= 1"),
    parameter_case("02_sphereface", "flip", "yes", "not True or False (str)"),
    parameter_case("04_fairness", "seed", -1, "must be >= 0"),
    parameter_case("04_fairness", "seed", "[0]", "not a whole number (str)"),
    parameter_case("02_sphereface", "lfw_source", "sharde", "unknown source", "synthetic | shared | sklearn"),
    parameter_case("02_sphereface", "lfw_source", "/no/such/lfw", "/no/such/lfw is not a folder that exists"),
    parameter_case("02_sphereface", "synthetic_preset", "huge", "unknown preset", "['default', 'smoke']"),
    parameter_case("02_sphereface", "profile", "../elsewhere", "not a plain name"),
    parameter_case("02_sphereface", "epochs", 0, "passed on the command line; params/smoke.yaml:", "has 1",
                   profile="smoke"),
    parameter_case("03_cosrelu_vs_softmax", "seeds", "[0]", "it is the string '[0]'", "-y \"seeds: [0, 1]\""),
    parameter_case("03_cosrelu_vs_softmax", "seeds", [], "empty"),
    parameter_case("03_cosrelu_vs_softmax", "seeds", [0, 0], "lists a value twice"),
    parameter_case("03_cosrelu_vs_softmax", "seeds", [-1], "element -1"),
    parameter_case("03_cosrelu_vs_softmax", "seeds", [0.5], "element 0.5", "not a whole number"),
    parameter_case("03_cosrelu_vs_softmax", "seeds", 0, "not a list (int)"),
    parameter_case("03_cosrelu_vs_softmax", "targets", ["ethnicity"], "unknown value(s) ['ethnicity']"),
    parameter_case("03_cosrelu_vs_softmax", "targets", "race", "a single string, not a list"),
    parameter_case("03_cosrelu_vs_softmax", "head_pairs", [["cosrelu"]], "is not a [head, reference] pair"),
    parameter_case("03_cosrelu_vs_softmax", "head_pairs", [["cosrelu", "cosrelu"]], "compares a head with itself"),
    parameter_case("03_cosrelu_vs_softmax", "correction", "bonferroni", "'holm' | 'bh'"),
    parameter_case("03_cosrelu_vs_softmax", "weights", "imagenet21k", "None | 'imagenet'"),
    parameter_case("03_cosrelu_vs_softmax", "limit", 0, "must be >= 1"),
    parameter_case("03_cosrelu_vs_softmax", "fairface_padding", "0.5", "'0.25' | '1.25'"),
    parameter_case("03_cosrelu_vs_softmax", "fairface_source", "hubb", "unknown source", "synthetic | shared | hub"),
    parameter_case("03_cosrelu_vs_softmax", "fairface_source", "data/no-such-fairface",
                   "no-such-fairface is not a folder that exists"),
    parameter_case("03_cosrelu_vs_softmax", "image_size", -32, "from 16 to 512"),
    parameter_case("03_cosrelu_vs_softmax", "heads", ["cosrelu", "relu"], "unknown head(s) ['relu']"),
    parameter_case("03_cosrelu_vs_softmax", "epochs", 0, "must be >= 1"),
    parameter_case("04_fairness", "frvt_targets_trained", [0.01, 0], "element 0", "must be > 0 and < 1"),
    parameter_case("04_fairness", "frvt_targets_pretrained", [1.5], "element 1.5", "must be > 0 and < 1"),
    parameter_case("04_fairness", "frvt_targets_pretrained", "[1e-3]", "not a list or mapping"),
    parameter_case("04_fairness", "frvt_n_boot", 0, "must be >= 1"),
    parameter_case("04_fairness", "pretrained_encoder", "facenet", "unknown encoder", "dlib"),
    parameter_case("03_cosrelu_vs_softmax", "frozen_targets", ["race", "height"], "unknown value(s) ['height']"),
    parameter_case("03_cosrelu_vs_softmax", "frozen_heads", ["softmax", "linear"], "unknown head(s) ['linear']"),
    parameter_case("03_cosrelu_vs_softmax", "frozen_lr", 0, "must be > 0"),
    parameter_case("04_fairness", "n_permutations", -5, "must be >= 1"),
    parameter_case("04_fairness", "lfw_gender_folder", "/no/such/gender", "lacks ['male_names.txt', 'female_names.txt']"),
    parameter_case("01_data_audit", "hash_lfw", "true", "not True or False (str)"),
    parameter_case("01_data_audit", "audit_full_labels", 1, "not True or False (int)"),
    parameter_case("01_data_audit", "fairface_padding", 0.5, "'0.25' | '1.25'"),
    # Misspelt names (papermill injects any name) are refused with the closest parameter; wrong-type values
    # are not taken for the profile's (True is not 1); fp16 needs CUDA also behind device: auto; ranges.
    parameter_case("02_sphereface", "epoch", 7, "not a parameter of notebook 02_sphereface", "did you mean epochs?"),
    parameter_case("03_cosrelu_vs_softmax", "seed", [0, 1], "not a parameter of notebook 03", "did you mean seeds?"),
    parameter_case("04_fairness", "n_permutation", 500, "did you mean n_permutations?"),
    parameter_case("01_data_audit", "hash_lwf", False, "did you mean hash_lfw?"),
    parameter_case("02_sphereface", "learning_rate_schedule", "cosine", "not a parameter", "its parameters are",
                   "'schedule'"),
    parameter_case("02_sphereface", "epochs", True, "not a whole number (bool)", "passed on the command line; "
                   "params/smoke.yaml:", "has 1", profile="smoke"),
    parameter_case("02_sphereface", "amp", "fp16", "fp16 needs CUDA", "device: auto is not CUDA here",
                   "amp: bf16", setup=no_cuda),
    parameter_case("03_cosrelu_vs_softmax", "amp", "fp16", "fp16 needs CUDA", "device: auto", setup=no_cuda),
    parameter_case("02_sphereface", "image_size", 8, "from 16 to 512"),
    parameter_case("03_cosrelu_vs_softmax", "image_size", 4096, "from 16 to 512"),
    parameter_case("02_sphereface", "head_hparams", {"cosface": {"margin": -0.2}}, "cosface:", "must be in [0, 1]"),
    parameter_case("03_cosrelu_vs_softmax", "head_hparams", {"cosrelu": {"margin": 1.5}}, "cosrelu:",
                   "must be in [0, 1]"),
    parameter_case("02_sphereface", "head_hparams", {"course_sphereface": {"margin": -4.0}}, "course_sphereface:",
                   "must be >= 1"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gets_a_clear_answer(case: Case, tmp_path, monkeypatch):
    context = Context(tmp_path, monkeypatch)
    if issubclass(case.expected, Warning):
        with pytest.warns(case.expected) as record:
            case.run(context)
        messages = [str(warning.message) for warning in record if issubclass(warning.category, case.expected)]
        assert any(all(words in message for words in case.mentions) for message in messages), messages
    else:
        with pytest.raises(case.expected) as info:
            case.run(context)
        message = str(info.value)
        missing = [words for words in case.mentions if words not in message]
        assert not missing, f"{missing} not in: {message}"


def test_the_table_is_large_and_unique():
    assert len(CASES) >= 90
    assert len({case.id for case in CASES}) == len(CASES)


# ----------------------------------------------------- accepted after normalization, never silently
def test_bom_at_the_start_of_a_gender_list_keeps_that_images_gender(tmp_path):
    copy = fixtures.build_lfw(tmp_path / "lfw")
    male = copy.protocol_dir / "gender" / "male_names.txt"
    first = male.read_bytes().split(b"\r\n")[0].decode()
    male.write_bytes(b"\xef\xbb\xbf" + male.read_bytes())
    labels, report = load_lfw_gender(copy.protocol_dir / "gender", load_lfw(copy.root))
    assert labels.set_index("file").loc[first, "gender"] == "Male"
    assert report["listed_not_on_disk"] == 0 and report["in_neither"] == 1


def test_bom_at_the_start_of_label_files_is_dropped(tmp_path):
    root = tmp_path / "fairface"
    written = fixtures.build_fairface_folder(root)
    csv = root / "fairface_label_train.csv"
    csv.write_bytes(b"\xef\xbb\xbf" + csv.read_bytes())
    assert load_fairface(root)["id"].tolist()[:9] == written["train"]["file"].tolist()
    pairs = tmp_path / "pairs.txt"
    pairs.write_bytes(b"\xef\xbb\xbf1\t1\r\nA_B\t1\t2\r\nA_B\t1\tC_D\t3\r\n")
    assert read_pairs(pairs)["name1"].tolist() == ["A_B", "A_B"]


def test_an_lfw_image_folder_that_is_a_link_loads_with_the_protocol_files_beside_the_link(tmp_path):
    copy = fixtures.build_lfw(tmp_path / "lfw")
    copy.image_dir.rename(tmp_path / "images")
    os.symlink(tmp_path / "images", copy.image_dir)
    lfw = load_lfw(copy.root)
    assert lfw.root == copy.protocol_dir.resolve() and lfw.image_dir == (tmp_path / "images").resolve()
    assert len(lfw.pairs) == 8 and lfw.images["path"].str.startswith(str(tmp_path / "images")).all()


def test_an_image_cache_build_removes_the_temporaries_of_killed_builds_only(tmp_path):
    """A killed build leaves a hidden temporary as large as the cache; the next build removes those whose
    process is gone (or, without a process id, older than an hour) and keeps a running build's."""
    cache = tmp_path / "cache"
    cache.mkdir()
    dead, orphan, recent, running = (cache / name for name in (
        ".images-32x32-aa.u8.999999999-x1.tmp", ".images-32x32-bb.u8.x2.tmp", ".images-32x32-cc.u8.x3.tmp",
        f".images-32x32-dd.u8.{os.getpid()}-x4.tmp"))
    for path in (dead, orphan, recent, running):
        path.write_bytes(bytes(1000))
    os.utime(orphan, (os.path.getmtime(orphan) - 7200,) * 2)
    build_cache(five_pngs(tmp_path / "images"), 32, cache_dir=cache, progress=False)
    assert not dead.exists() and not orphan.exists()
    assert recent.exists() and running.exists()


def test_spelling_variants_of_a_file_are_one_id(tmp_path):
    root = tmp_path / "fairface"
    fixtures.build_fairface_folder(root)
    csv = root / "fairface_label_train.csv"
    set_field(csv, 2, 0, "./train/1.jpg")
    set_field(csv, 3, 0, "train//2.jpg")
    set_field(csv, 4, 0, "train/x/../3.jpg")
    table = load_fairface(root)
    assert table["id"].tolist()[:3] == ["train/1.jpg", "train/2.jpg", "train/3.jpg"]
    assert table["image"].tolist()[0] == str((root / "train" / "1.jpg").resolve())


# ---------------------------------------------------------------------- parameters that are fine
def test_every_profile_passes_every_notebook(monkeypatch):
    """The committed profiles are valid (paths not checked: the colab one names a Colab folder; the GPU it
    requires is faked)."""
    import torch
    import yaml

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    for profile in sorted(p.stem for p in paths.PARAMS.glob("*.yaml")):
        config = yaml.safe_load((paths.PARAMS / f"{profile}.yaml").read_text())
        for stem, defaults in NOTEBOOK_DEFAULTS.items():
            params = {**defaults, **{k: v for k, v in (config.get("common") or {}).items() if k in defaults},
                      **(config.get(stem) or {}), "profile": profile}
            validate(stem, params, check_paths=False, quiet=True)


def test_every_spec_name_is_a_notebook_parameter():
    from lib.parameters import SPECS

    for stem, spec in SPECS.items():
        assert set(spec) <= set(NOTEBOOK_DEFAULTS[stem]), (stem, set(spec) - set(NOTEBOOK_DEFAULTS[stem]))


def test_single_head_is_valid_and_says_comparisons_are_skipped(capsys):
    params = {**NOTEBOOK_DEFAULTS["02_sphereface"], "heads": ["cosface"]}
    notes = validate("02_sphereface", params)
    assert notes == ["only one head (cosface): every head-vs-head comparison is skipped"]
    assert "Note: only one head (cosface)" in capsys.readouterr().out
    params = {**NOTEBOOK_DEFAULTS["03_cosrelu_vs_softmax"], "heads": ["cosrelu", "cosface"], "seeds": [0]}
    notes = validate("03", params, quiet=True)
    assert notes[0] == ("comparisons skipped because a head is not trained: cosrelu − cosine_softmax, "
                        "normsoftmax − cosine_softmax, cosface − normsoftmax, arcface − normsoftmax")
    assert "one seed" in notes[1]


def test_every_problem_is_listed_at_once():
    params = {**NOTEBOOK_DEFAULTS["02_sphereface"], "epochs": 0, "lr": -1.0, "heads": ["x"]}
    with pytest.raises(ParameterError) as info:
        validate("02_sphereface", params)
    message = str(info.value)
    assert message.startswith("notebook 02_sphereface: 3 invalid parameter(s), nothing was run")
    assert [line.split(" = ")[0] for line in message.splitlines()[1:4]] == ["- heads", "- epochs", "- lr"]


def test_names_that_are_not_plain_values_are_not_parameters():
    params = {**NOTEBOOK_DEFAULTS["02_sphereface"], "a_new_setting": object(), "np": np, "RACES": ["x"],
              "In": ["", "x = 1"], "Out": {}, "_i1": "x = 1", "_": None}
    assert validate("02_sphereface", params, quiet=True) == []


FIRST_CELL_END = "parameters.validate("


def notebook_globals(stem: str, injected: str) -> dict:
    """A notebook's globals when its first code cell calls the check: the parameters cell, a papermill
    injected cell with ``injected``, then the first code cell's lines before the check (its imports)."""
    text = (paths.NOTEBOOKS / f"{stem}.py").read_text()
    cells = re.split(r"^# %%.*\n", text, flags=re.M)
    start = next(i for i, cell in enumerate(re.findall(r"^# %%.*$", text, flags=re.M)) if "parameters" in cell) + 1
    first_code = next(cell for cell in cells[start + 1:] if FIRST_CELL_END in cell)
    namespace = {"In": ["", cells[start], injected], "Out": {}, "get_ipython": lambda: None, "exit": None}
    exec(cells[start], namespace)
    exec(injected, namespace)
    exec(first_code.split(FIRST_CELL_END)[0], namespace)
    return namespace


@pytest.mark.parametrize("stem", sorted(NOTEBOOK_DEFAULTS))
def test_a_notebooks_own_globals_hold_no_unknown_parameter_and_a_typo_is_named(stem):
    """The imports before the check (modules, functions, ``RACES``) are not taken for parameters, and
    a name papermill injected that the notebook does not declare is refused with the closest one."""
    parameters_ = notebook_globals(stem, "# Parameters\nprofile = \"smoke\"\n")
    validate(stem, parameters_, check_paths=False, quiet=True)
    misspelt = {"01_data_audit": "sed", "02_sphereface": "epoch", "03_cosrelu_vs_softmax": "epoch",
                "04_fairness": "seeds"}[stem]
    parameters_ = notebook_globals(stem, f"# Parameters\nprofile = \"smoke\"\n{misspelt} = 7\n")
    with pytest.raises(ParameterError, match=rf"- {misspelt} = 7 .*not a parameter of notebook {stem}.*did you mean"):
        validate(stem, parameters_, check_paths=False, quiet=True)


def test_origin_line_is_the_profile_line_that_sets_the_value():
    text = (paths.PARAMS / "smoke.yaml").read_text().splitlines()
    section = text.index("02_sphereface:")
    line = next(i for i in range(section, len(text)) if re.match(r"\s+epochs:", text[i])) + 1
    params = {**NOTEBOOK_DEFAULTS["02_sphereface"], "profile": "smoke", "epochs": 0}
    with pytest.raises(ParameterError, match=rf"epochs = 0 \(passed on the command line; params/smoke.yaml:{line} has 1\)"):
        validate("02_sphereface", params)


# ------------------------------------------------------------------------------ memory on large junk
def test_a_large_junk_label_csv_is_refused_within_a_few_times_its_size_in_memory(tmp_path, monkeypatch):
    """A label CSV of 60,000 well-formed rows whose last row has an unknown label: the error names the
    line, and the peak of Python allocations (tracemalloc) stays under 6x the file's size (it was 20x: the
    whole file as Python strings, then as a table). Chunks of 10,000 rows here, so that several are read."""
    import tracemalloc

    from lib import fairface

    monkeypatch.setattr(fairface, "CSV_CHUNK_ROWS", 10_000, raising=False)
    root = fairface_root(Context(tmp_path, monkeypatch))
    rows = 60_000
    with open(train_csv(root), "w") as handle:
        handle.write("file,age,gender,race,service_test\n")
        handle.writelines(f"train/{i}.jpg,20-29,Male,White,True\n" for i in range(rows - 1))
        handle.write("train/last.jpg,20-29,Male,Martian,True\n")
    size = train_csv(root).stat().st_size
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=rf"fairface_label_train.csv:{rows + 1}: unknown race label\(s\) Martian"):
            load_fairface(root)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * size, f"peak {peak / size:.1f}x the file's {size / 1e6:.1f} MB"
