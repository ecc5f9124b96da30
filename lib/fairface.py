"""FairFace as one canonical table, whatever the source.

Three sources hold the same dataset (Kärkkäinen & Joo, WACV 2021):

* a **folder** in the official layout: ``train/``, ``val/``, ``fairface_label_train.csv`` and
  ``fairface_label_val.csv`` with header ``file,age,gender,race,service_test`` (the embedded
  synthetic set uses this layout too, with ``Group A`` .. ``Group G`` in the ``race`` column);
* the Hugging Face **Hub** dataset ``HuggingFaceM4/FairFace`` (configs ``"0.25"`` / ``"1.25"``,
  splits ``train`` / ``validation``), read with ``datasets.load_dataset``;
* a folder of **parquet** files in the Hub layout (``<dir>/0.25/train-00000-of-00001.parquet``, ...).

All three become one ``pandas.DataFrame`` with one row per image::

    id            str, unique: "train/1.jpg" for files, "hub:0.25:train:123" for Hub/parquet rows
    split         "train" or "val"
    image         absolute path (str) for files, JPEG bytes for Hub/parquet rows -> decode_image()
    age, gender, race   pandas Categoricals over the canonical vocabularies of lib.labels
    service_test  bool (FairFace's race- and gender-balanced subset)

The Hub stores labels as ClassLabel integers in its own order (its race order is not ours, see
``lib.labels.HUB_RACE_ORDER``), so integers are always mapped to strings with the ClassLabel names
shipped with the data, never by position.

Unreadable images: loading checks that every listed file *exists* (a missing file is a
:class:`~lib.errors.DataError`), but does not decode anything. :func:`decode_image` raises a
``DataError`` naming the file it cannot decode; :func:`validate_images` decodes every image once and
returns the table without the unreadable ones plus an :class:`ImageCheck` report (count and
examples), so a pipeline can skip them visibly instead of crashing mid-epoch.
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from lib.errors import DataError, examples, read_utf8
from lib.labels import AGES, GENDERS, RACES, SYNTHETIC_GROUPS, race_vocabulary

CSV_COLUMNS = ("file", "age", "gender", "race", "service_test")
TABLE_COLUMNS = ("id", "split", "image", "age", "gender", "race", "service_test")
LABEL_COLUMNS = ("age", "gender", "race")
SPLITS = ("train", "val")
PADDINGS = ("0.25", "1.25")
HUB_DATASET = "HuggingFaceM4/FairFace"
HUB_SPLITS = {"train": "train", "val": "validation"}
HUB_COLUMNS = ("image", "age", "gender", "race", "service_test")

GET_DATA = (
    "Get FairFace from the links at https://github.com/joojs/fairface (the Google-Drive zip "
    "fairface-img-margin025-trainval.zip plus fairface_label_train.csv and fairface_label_val.csv, "
    "unpacked into one folder that holds train/ and val/), or, with internet (e.g. on Colab), pass "
    "source='hub' to read HuggingFaceM4/FairFace from the Hugging Face Hub."
)


def label_csv(root: Path, split: str) -> Path:
    """``<root>/fairface_label_<split>.csv``, the official label file of one split."""
    return Path(root) / f"fairface_label_{split}.csv"


# ------------------------------------------------------------------------------------- entry point
def load_fairface(
    source: str | os.PathLike,
    padding: str | float = "0.25",
    splits: Sequence[str] = SPLITS,
    limit: int | None = None,
) -> pd.DataFrame:
    """Load FairFace from a folder, the Hub (``source="hub"``) or a folder of Hub parquet files.

    The kind of folder is detected from its contents: label CSVs mean the official layout, parquet
    files the Hub layout. ``padding`` picks the Hub config (``"0.25"`` or ``"1.25"``: dlib's crop side
    is (1 + 2p)x the aligned face box, 1.5x or 3.5x); a CSV folder holds one padding already and ignores it.
    ``limit`` keeps the first ``limit`` rows of each split, in file order (deterministic).
    """
    splits = _check_splits(splits)
    padding = _check_padding(padding)
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if str(source) == "hub":
        return load_hub(padding, splits, limit)
    root = Path(source).expanduser()
    if not root.is_dir():
        raise DataError(f"FairFace folder {root} does not exist. {GET_DATA}")
    if any(label_csv(root, split).is_file() for split in SPLITS):
        return read_folder(root, splits, limit)
    if next(root.rglob("*.parquet"), None) is not None:
        return read_parquet(root, padding, splits, limit)
    raise DataError(
        f"{root} holds neither FairFace label CSVs (fairface_label_train.csv, fairface_label_val.csv "
        f"beside train/ and val/) nor Hub-layout parquet files (<dir>/{padding}/train-*.parquet). "
        f"{GET_DATA}"
    )


# ------------------------------------------------------------------------------ source: CSV folder
def read_folder(root: str | os.PathLike, splits: Sequence[str] = SPLITS, limit: int | None = None) -> pd.DataFrame:
    """Read the official layout: one label CSV per split, image paths relative to ``root``.

    Every listed image must exist (else :class:`DataError` with the count and first examples).
    """
    return _read_csv_folder(root, splits, limit, require_images=True)


def read_labels(root: str | os.PathLike, splits: Sequence[str] = SPLITS, limit: int | None = None) -> pd.DataFrame:
    """Like :func:`read_folder` but for label files alone (e.g. the full release's CSVs without its
    images): same canonical table, ``image`` holds the path the file *would* have; nothing is checked on disk."""
    return _read_csv_folder(root, splits, limit, require_images=False)


def _read_csv_folder(root, splits, limit, require_images: bool) -> pd.DataFrame:
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"FairFace folder {root} does not exist. {GET_DATA}")
    frames, listed = [], []
    for split in _check_splits(splits):
        csv_path = label_csv(root, split)
        labels = _read_label_csv(csv_path, limit)
        listed.append((csv_path, labels[["file", "line"]]))
        _refuse_listed_in_two_files(listed)
        if require_images:
            _check_files_exist(root, labels, csv_path)
        frames.append(pd.DataFrame({
            "id": labels["file"],
            "split": split,
            "image": root.as_posix() + "/" + labels["file"],
            "age": labels["age"],
            "gender": labels["gender"],
            "race": labels["race"],
            "service_test": _parse_bool(labels, csv_path),
        }))
    return _canonical(pd.concat(frames, ignore_index=True), source=str(root))


def _refuse_listed_in_two_files(listed: list[tuple[Path, pd.DataFrame]]) -> None:
    """An image belongs to one split: refuse a ``file`` that the last label CSV of ``listed`` shares with
    an earlier one, naming both files and lines (``listed``: each CSV with its ``file`` and ``line``)."""
    path, labels = listed[-1]
    for other_path, other in listed[:-1]:
        shared = labels["file"].isin(other["file"])
        if shared.any():
            first = labels[shared].iloc[0]
            other_line = other.loc[other["file"].eq(first["file"]), "line"].iloc[0]
            raise DataError(
                f"{path}:{first['line']}: {first['file']!r} is also listed in {other_path.name}:{other_line} "
                f"({int(shared.sum())} file(s) are in both); an image belongs to one split: remove it from one "
                f"of the two label files, or restore them from the official release."
            )


# Rows checked at a time: a whole FairFace release is one chunk (86,744 training rows), and a large junk file
# stops at its first bad chunk instead of first becoming a table of millions of Python strings.
CSV_CHUNK_ROWS = 100_000


def _read_label_csv(path: Path, limit: int | None) -> pd.DataFrame:
    """One label CSV as strings (exactly as written), plus ``line``: each row's line in the file.

    Every problem names the file and the line: a row with too few or too many fields, an empty field,
    an unknown age or gender, a ``file`` that is absolute or leaves the folder, a file listed twice.
    Rows are checked :data:`CSV_CHUNK_ROWS` at a time and kept with categorical labels, so that peak
    memory stays within a few times the file's size.
    """
    if not path.is_file():
        raise DataError(
            f"missing label file {path}: a FairFace folder holds fairface_label_train.csv and "
            f"fairface_label_val.csv beside train/ and val/. {GET_DATA}"
        )
    reader = csv.reader(_text_lines(read_utf8(path, "a FairFace label file")))
    chunks = []
    try:
        header = [name.strip() for name in next(reader, [])]
        if not header:
            raise DataError(f"{path} is empty; expected the header {','.join(CSV_COLUMNS)} then one row per image")
        missing = [column for column in CSV_COLUMNS if column not in header]
        if missing:
            raise DataError(
                f"{path} lacks column(s) {missing}: expected the header {','.join(CSV_COLUMNS)}, "
                f"found {','.join(header)}. Use the official FairFace label files."
            )
        rows, lines, end, total = [], [], reader.line_num, 0
        for fields in reader:
            start, end = end + 1, reader.line_num  # a quoted field may span lines: name the row's first
            if len(fields) <= 1 and not "".join(fields).strip():
                continue  # blank line
            if len(fields) != len(header):
                spans = f" (the row runs to line {end}: a quote that is never closed?)" if end > start else ""
                raise DataError(
                    f"{path}:{start}: expected {len(header)} fields ({','.join(header)}), got "
                    f"{len(fields)}: {','.join(fields)[:200]!r}{spans}. Restore the row from the official label file."
                )
            rows.append(fields)
            lines.append(start)
            total += 1
            if len(rows) == CSV_CHUNK_ROWS:
                chunks.append(_checked_rows(rows, lines, header, path, whole_file=False))
                rows, lines = [], []
            if limit is not None and total >= limit:
                break
    except csv.Error as error:
        raise DataError(f"{path}:{reader.line_num}: not valid CSV ({error}); re-download the label file") from None
    if rows:
        chunks.append(_checked_rows(rows, lines, header, path, whole_file=not chunks))
    if not chunks:
        raise DataError(f"{path} has a header but no rows; re-download the official label file")
    labels = pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]
    labels["file"] = _confined_ids(labels, path)
    return labels


def _text_lines(text: str):
    """The lines of ``text`` with their endings, one at a time (``\\n``, ``\\r\\n`` or ``\\r``, as
    ``newline=""`` reads them), without the copy an ``io.StringIO`` would make."""
    for match in re.finditer(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", text):
        yield match.group()


def _checked_rows(rows: list, lines: list, header: list, path: Path, *, whole_file: bool) -> pd.DataFrame:
    """A chunk of label rows as a table, after the checks that need one row at a time (empty fields,
    unknown labels); the labels become categoricals, which take a byte per row."""
    labels = pd.DataFrame(rows, columns=header, dtype=str).loc[:, list(CSV_COLUMNS)]
    labels["line"] = lines
    scope = "in all" if whole_file else f"in lines {lines[0]}-{lines[-1]}"
    for column in CSV_COLUMNS:
        _refuse(labels, labels[column].str.strip().eq(""), path, f"empty {column}",
                "every row needs a value in each of " + ",".join(CSV_COLUMNS), scope=scope)
    for column, vocabulary in (("age", AGES), ("gender", GENDERS), ("race", RACES + SYNTHETIC_GROUPS)):
        unknown = ~labels[column].isin(vocabulary)
        if unknown.any():
            values = labels.loc[unknown, column].unique()
            where = labels.loc[unknown, "line"].iloc[0]
            raise DataError(
                f"{path}:{where}: unknown {column} label(s) {examples(values)} ({int(unknown.sum())} rows "
                f"{scope}); expected one of {list(vocabulary)} (exact strings, as in the official FairFace CSVs)."
            )
        labels[column] = pd.Categorical(labels[column], categories=list(vocabulary))
    labels["service_test"] = labels["service_test"].astype("category")
    return labels


def _refuse(labels: pd.DataFrame, bad: pd.Series, path: Path, problem: str, advice: str,
            scope: str = "in all") -> None:
    """Raise a DataError naming the first offending row (its line and ``file``) and the count."""
    if bad.any():
        first = labels[bad].iloc[0]
        raise DataError(
            f"{path}:{first['line']}: {problem} in the row for {first['file']!r} ({int(bad.sum())} rows {scope}); "
            f"{advice}."
        )


def _confined_ids(labels: pd.DataFrame, path: Path) -> pd.Series:
    """The ``file`` column as normalized relative ids that stay inside the data folder.

    ``train/./1.jpg`` and ``train//1.jpg`` become ``train/1.jpg`` (before the duplicate check);
    absolute paths (``/etc/passwd``, ``C:\\x.jpg``), backslashes, and anything that climbs out of
    the folder (``../outside/x.jpg``, ``train/../../x.jpg``) are refused with the line that holds them.
    Symbolic links that lead outside are refused when the files are checked on disk.
    """
    files = labels["file"]
    absolute = files.str.startswith("/") | files.str.match(r"^[A-Za-z]:") | files.str.contains("\\", regex=False)
    _refuse(labels, absolute, path, "absolute path or backslash in file",
            "file must be a path relative to the FairFace folder with forward slashes, like train/1.jpg")
    normalized = files.copy()
    unusual = files.str.contains("//", regex=False) | files.str.endswith("/") | files.str.contains(r"(?:^|/)\.\.?(?:/|$)")
    normalized[unusual] = files[unusual].map(posixpath.normpath)  # only where needed: 100k rows take 0.2 s
    outside = normalized.eq("..") | normalized.str.startswith("../") | normalized.eq(".")
    _refuse(labels, outside, path, "file leads outside the FairFace folder",
            "file must name an image inside the folder, like train/1.jpg")
    duplicated = normalized.duplicated(keep=False)
    if duplicated.any():
        first = normalized[duplicated].iloc[0]
        rows = labels.loc[normalized.eq(first), "line"].tolist()
        raise DataError(
            f"{path}:{rows[1]}: {first!r} is listed again (also at line {rows[0]}; written as "
            f"{examples(files[normalized.eq(first)].map(repr))}); {int(duplicated.sum())} rows name a file "
            f"that another row names. Each image must be listed once: remove the repeated rows."
        )
    return normalized


def _check_files_exist(root: Path, labels: pd.DataFrame, csv_path: Path) -> None:
    """Every listed file must exist inside ``root``: list each parent folder once instead of stat-ing every
    file; folders and files that are symbolic links must resolve inside ``root``."""
    files = labels["file"]
    parents = files.str.rpartition("/")[0]
    on_disk, links = set(), []
    for parent in parents.unique():
        folder = root / parent
        if not folder.is_dir():
            continue
        if not _inside(folder.resolve(), root):
            first = labels[parents.eq(parent)].iloc[0]
            raise DataError(
                f"{csv_path}:{first['line']}: {first['file']!r} lies in {folder}, a link to "
                f"{folder.resolve()} outside {root}; keep the images inside the FairFace folder."
            )
        prefix = f"{parent}/" if parent else ""
        for entry in os.scandir(folder):
            on_disk.add(prefix + entry.name)
            if entry.is_symlink():
                links.append(prefix + entry.name)
    listed = set(files)
    for link in links:
        target = (root / link).resolve()
        if link in listed and not _inside(target, root):
            first = labels[files.eq(link)].iloc[0]
            raise DataError(
                f"{csv_path}:{first['line']}: {link!r} is a symbolic link to {target}, outside {root}; "
                f"replace the link with the image file itself."
            )
    missing = files[~files.isin(on_disk)]
    if len(missing):
        first_line = labels.loc[missing.index[0], "line"]
        raise DataError(
            f"{len(missing)} of {len(files)} files listed in {csv_path.name} do not exist under {root}: "
            f"{examples(missing)} (first at {csv_path}:{first_line}). Unpack the matching image zip into "
            f"{root} (it must contain train/ and val/), or pass limit= to load only the first rows."
        )


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _parse_bool(labels: pd.DataFrame, where: Path) -> np.ndarray:
    lowered = labels["service_test"].str.strip().str.lower()
    bad = ~lowered.isin(["true", "false"])
    if bad.any():
        raise DataError(
            f"{where}:{labels.loc[bad, 'line'].iloc[0]}: service_test must be True or False, found "
            f"{examples(labels.loc[bad, 'service_test'].unique())} ({int(bad.sum())} rows)"
        )
    return (lowered == "true").to_numpy()


# ---------------------------------------------------------------------- sources: Hub and parquet
def load_hub(padding: str = "0.25", splits: Sequence[str] = SPLITS, limit: int | None = None) -> pd.DataFrame:
    """Download (or reuse the local Hub cache of) ``HuggingFaceM4/FairFace`` and convert it."""
    try:
        import datasets
    except ImportError as error:
        raise DataError(
            "Loading FairFace from the Hugging Face Hub needs the `datasets` package: "
            "pip install datasets (or install this project with its [hub] extra)."
        ) from error
    padding = _check_padding(padding)
    frames = []
    for split in _check_splits(splits):
        hub_split = HUB_SPLITS[split] + (f"[:{limit}]" if limit else "")
        try:
            dataset = datasets.load_dataset(HUB_DATASET, padding, split=hub_split)
        except Exception as error:  # network, authentication, missing config: all mean "cannot fetch"
            raise DataError(
                f"could not load {HUB_DATASET} (config {padding!r}, split {hub_split!r}) from the "
                f"Hugging Face Hub: {type(error).__name__}: {error}. Check the network connection "
                f"(and `huggingface-cli login` if the Hub asks for it), or use a local folder: {GET_DATA}"
            ) from error
        frames.append(table_from_hf(dataset, split, padding))
    return _canonical(pd.concat(frames, ignore_index=True), source=HUB_DATASET)


def table_from_hf(dataset, split: str, padding: str = "0.25") -> pd.DataFrame:
    """Convert one split of a ``datasets.Dataset`` with the Hub's features to canonical rows.

    The image column is cast to ``datasets.Image(decode=False)`` so nothing is decoded, and labels
    are mapped with each ClassLabel's ``int2str``, i.e. by the names shipped with the data.
    """
    import datasets

    missing = [column for column in HUB_COLUMNS if column not in dataset.column_names]
    if missing:
        raise DataError(f"Hub dataset lacks column(s) {missing}; expected {list(HUB_COLUMNS)}")
    names = {}
    for column in LABEL_COLUMNS:
        feature = dataset.features[column]
        if not isinstance(feature, datasets.ClassLabel):
            raise DataError(
                f"Hub column {column!r} is {feature}, expected a ClassLabel; is this {HUB_DATASET}?"
            )
        names[column] = feature.int2str(list(range(feature.num_classes)))
    dataset = dataset.cast_column("image", datasets.Image(decode=False))
    # Arrow format respects any select()/slice on the dataset and avoids a Python object per cell.
    arrow = dataset.with_format("arrow")[:]
    return _table_from_arrow(arrow, names, split, padding, start=0, where=f"{HUB_DATASET} {split}")


def read_parquet(
    root: str | os.PathLike,
    padding: str = "0.25",
    splits: Sequence[str] = SPLITS,
    limit: int | None = None,
) -> pd.DataFrame:
    """Read Hub-layout parquet shards; ClassLabel names come from the ``huggingface`` schema metadata."""
    root = Path(root).expanduser()
    padding = _check_padding(padding)
    frames = []
    for split in _check_splits(splits):
        start, wanted = 0, limit
        for shard in parquet_shards(root, padding, split):
            if wanted is not None and wanted <= 0:
                break
            names = _parquet_class_names(shard)
            for batch in pq.ParquetFile(shard).iter_batches(batch_size=4096, columns=list(HUB_COLUMNS)):
                if wanted is not None:
                    batch = batch.slice(0, wanted)
                    wanted -= batch.num_rows
                table = pa.Table.from_batches([batch])
                frames.append(_table_from_arrow(table, names, split, padding, start, where=str(shard)))
                start += batch.num_rows
                if wanted is not None and wanted <= 0:
                    break
        if start == 0:
            raise DataError(f"the {split} parquet shards under {root} hold no rows; re-download them")
    return _canonical(pd.concat(frames, ignore_index=True), source=str(root))


def parquet_shards(root: Path, padding: str, split: str) -> list[Path]:
    """The parquet shards of one split, in order: ``<root>/<padding>/<hub split>-*.parquet``.

    Also accepted: ``<root>/<padding>/<hub split>/*.parquet`` (the Hub's converted-parquet branch)
    and ``<root>/<hub split>-*.parquet`` (``root`` is already the padding folder).
    """
    hub_split = HUB_SPLITS[split]
    patterns = (f"{padding}/{hub_split}-*.parquet", f"{padding}/{hub_split}/*.parquet", f"{hub_split}-*.parquet")
    for pattern in patterns:
        shards = sorted(Path(root).glob(pattern))
        if shards:
            return shards
    found = sorted(str(path.relative_to(root)) for path in Path(root).rglob("*.parquet"))
    raise DataError(
        f"no parquet shards for padding {padding!r}, split {hub_split!r} under {root} (looked for "
        f"{', '.join(patterns)}); found {examples(found) or 'none'}. Download the Hub's parquet files "
        f"keeping their folder layout, pick the padding that is there, or use source='hub'."
    )


def _parquet_class_names(shard: Path) -> dict[str, list[str]]:
    metadata = pq.read_schema(shard).metadata or {}
    try:
        features = json.loads(metadata[b"huggingface"])["info"]["features"]
        return {column: list(features[column]["names"]) for column in LABEL_COLUMNS}
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(
            f"{shard} has no ClassLabel names in its 'huggingface' schema metadata, so its integer "
            f"labels cannot be mapped safely (the Hub's label order is not the canonical one). Use the "
            f"parquet files exactly as published on the Hub, or source='hub'."
        ) from error


def _table_from_arrow(table: pa.Table, names: dict, split: str, padding: str, start: int, where: str) -> pd.DataFrame:
    """Hub-schema arrow rows -> canonical rows (labels still strings; ``_canonical`` types them)."""
    missing = [column for column in HUB_COLUMNS if column not in table.column_names]
    if missing:
        raise DataError(f"{where} lacks column(s) {missing}; expected the Hub columns {list(HUB_COLUMNS)}")
    image = table.column("image").combine_chunks()
    if pa.types.is_struct(image.type):  # datasets.Image storage: struct<bytes, path>
        image = pc.struct_field(image, "bytes")
    if image.null_count:
        raise DataError(f"{where}: {image.null_count} rows have no embedded image bytes; re-download the parquet files")
    frame = pd.DataFrame({
        "id": f"hub:{padding}:{split}:" + pd.Series(np.arange(start, start + table.num_rows)).astype(str),
        "split": split,
        "image": image.to_pandas(),
    })
    for column in LABEL_COLUMNS:
        frame[column] = _decode_class_labels(table.column(column), names[column], column, where)
    service_test = table.column("service_test")
    if service_test.null_count:
        raise DataError(f"{where}: service_test has {service_test.null_count} missing values")
    frame["service_test"] = service_test.to_numpy().astype(bool)
    return frame


def _decode_class_labels(codes: pa.ChunkedArray, names: Sequence[str], column: str, where: str) -> np.ndarray:
    """ClassLabel integers -> strings through the shipped names (``int2str``), vectorized."""
    values = codes.to_numpy(zero_copy_only=False)
    bad = (codes.is_null().to_numpy(zero_copy_only=False)) | (values < 0) | (values >= len(names))
    if bad.any():
        raise DataError(
            f"{where}: {int(bad.sum())} {column} labels are missing or outside the {len(names)} ClassLabel "
            f"names {list(names)}: {examples(values[bad])}"
        )
    return np.asarray(names, dtype=object)[values.astype(np.int64)]


# -------------------------------------------------------------------------------- canonical types
def _canonical(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Type the label columns over the canonical vocabularies; check ids are unique."""
    try:
        races = race_vocabulary(frame["race"].unique())
    except ValueError as error:
        raise DataError(f"{source}: {error}. Labels must be the exact strings of the official CSVs.") from error
    for column, vocabulary in (("age", AGES), ("gender", GENDERS), ("race", races)):
        frame[column] = _categorical(frame[column], vocabulary, column, source)
    duplicated = frame["id"][frame["id"].duplicated()]
    if len(duplicated):
        raise DataError(
            f"{source}: {len(duplicated)} duplicated image ids ({examples(duplicated)}); "
            f"each file must be listed once"
        )
    return frame.loc[:, list(TABLE_COLUMNS)].reset_index(drop=True)


def _categorical(values: pd.Series, vocabulary: Sequence[str], column: str, source: str) -> pd.Categorical:
    unknown = values[~values.isin(vocabulary)].unique()
    if len(unknown):
        raise DataError(
            f"{source}: unknown {column} label(s) {examples(unknown)}; expected one of {list(vocabulary)} "
            f"(exact strings, as in the official FairFace CSVs)."
        )
    if isinstance(values.dtype, pd.CategoricalDtype):  # read as categories: re-code without an object copy
        return values.cat.set_categories(list(vocabulary)).array
    return pd.Categorical(values, categories=list(vocabulary))


def _check_splits(splits: Sequence[str]) -> tuple[str, ...]:
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    unknown = [split for split in splits if split not in SPLITS]
    if unknown or not splits:
        raise ValueError(
            f"splits must be a non-empty subset of {SPLITS} (FairFace has no public test split), got {splits}"
        )
    return splits


def _check_padding(padding: str | float) -> str:
    padding = f"{padding:.2f}" if isinstance(padding, float) else str(padding)
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS} (the Hub configs), got {padding!r}")
    return padding


# --------------------------------------------------------------------------------------- images
def decode_image(ref, size: int | tuple[int, int] | None = None) -> Image.Image:
    """Decode one image reference (a path, or JPEG bytes) to RGB, resized to ``size`` when given.

    ``size`` is an int (square) or ``(width, height)``. The source size is never assumed: FairFace
    releases hold both 224x224 and 448x448 crops. Raises :class:`DataError` naming the file when
    it cannot be read or decoded.
    """
    if isinstance(ref, dict):  # a datasets.Image cell: {"bytes": ..., "path": ...}
        ref = ref["bytes"] if ref.get("bytes") is not None else ref["path"]
    if isinstance(ref, (bytes, bytearray, memoryview)):
        source, name = io.BytesIO(ref), f"<{len(ref)} bytes of embedded image data>"
    else:
        source, name = Path(ref), str(ref)
    try:
        with Image.open(source) as opened:
            image = opened.convert("RGB")  # convert() decodes everything: truncation shows up here
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(
            f"cannot decode image {name}: {error}. Re-extract or re-download it, or drop unreadable "
            f"images up front with lib.fairface.validate_images(table)."
        ) from error
    if size is not None:
        width, height = (size, size) if isinstance(size, (int, np.integer)) else size
        image = image.resize((int(width), int(height)), Image.Resampling.BILINEAR)
    return image


@dataclass(frozen=True)
class ImageCheck:
    """What :func:`validate_images` found: how many images it decoded and which ones failed."""

    checked: int
    unreadable: pd.DataFrame  # columns: id, split, error

    @property
    def ok(self) -> bool:
        return self.unreadable.empty

    def __str__(self) -> str:
        if self.ok:
            return f"all {self.checked} images decode"
        shown = [f"{row.id} ({row.error})" for row in self.unreadable.head(5).itertuples()]
        return (
            f"{len(self.unreadable)} of {self.checked} images cannot be decoded and were skipped: "
            + "; ".join(shown)
            + (" ..." if len(self.unreadable) > 5 else "")
        )


def validate_images(table: pd.DataFrame) -> tuple[pd.DataFrame, ImageCheck]:
    """Decode every image once; return the table without unreadable ones and a report.

    Unreadable means: cannot be decoded, or smaller than ``lib.imagecache.MIN_SOURCE_SIDE`` pixels on
    a side (a placeholder, not a face; the image cache refuses to upscale it).
    A non-empty report also raises a ``UserWarning`` with its summary, so skipping is never silent.
    Decoding is I/O-bound and per file, hence the loop (about 0.5 ms per 224x224 JPEG).
    """
    from lib.imagecache import MIN_SOURCE_SIDE  # imports torch: only when images are checked

    errors = {}
    for row_id, ref in zip(table["id"], table["image"]):
        try:
            width, height = decode_image(ref).size
        except DataError as error:
            errors[row_id] = str(error.__cause__ or error)
            continue
        if min(width, height) < MIN_SOURCE_SIDE:
            errors[row_id] = f"{height}x{width} px, below the {MIN_SOURCE_SIDE} px minimum side"
    bad = table["id"].isin(list(errors))
    unreadable = table.loc[bad, ["id", "split"]].assign(error=table.loc[bad, "id"].map(errors)).reset_index(drop=True)
    report = ImageCheck(checked=len(table), unreadable=unreadable)
    if not report.ok:
        warnings.warn(str(report), stacklevel=2)
    return table.loc[~bad].reset_index(drop=True), report
