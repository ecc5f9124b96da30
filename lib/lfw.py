"""Labeled Faces in the Wild: images, the View 1 / View 2 protocol files, and gender lists.

On disk (Huang et al., 2007)::

    <root>/<image folder>/<Name>/<Name>_0001.jpg    image folder: lfw/, lfw_funneled/ or lfw-deepfunneled/
    <root>/pairs.txt            View 2: header "10<TAB>300" (folds, pairs per half-fold); each fold is
                                300 matched lines "name i j" then 300 mismatched "name1 i name2 j"
    <root>/pairsDevTrain.txt    View 1 pairs: header = number of matched (= mismatched) pairs (1100)
    <root>/pairsDevTest.txt     (500)
    <root>/peopleDevTrain.txt   View 1 people: header = number of people, then "name count" lines
    <root>/peopleDevTest.txt
    <root>/identities.csv       only in the embedded synthetic set: name, group, gender, age

Image numbers are 1-based. Lines are parsed by field count, not by position in the file.
scikit-learn's downloader gives ``~/scikit_learn_data/lfw_home/`` with ``lfw_funneled/`` and the
three pair files but *no people files*; then the View 1 people are the names used in the View 1 pair
files (:attr:`LFW.people_from_pairs` is True and a warning says so).

Leakage to keep in mind: View 1 DevTrain shares identities with View 2 (``pairs.txt``), so a model
trained on DevTrain must not be scored on View 2 without saying so.
"""

from __future__ import annotations

import csv
import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lib.errors import DataError, examples, read_utf8
from lib.labels import AGES, GENDERS, race_vocabulary

IMAGE_FOLDERS = ("lfw-deepfunneled", "lfw_funneled", "lfw")  # searched in this order
VIEW2_PAIRS = "pairs.txt"
DEV_TRAIN_PAIRS = "pairsDevTrain.txt"
DEV_TEST_PAIRS = "pairsDevTest.txt"
DEV_TRAIN_PEOPLE = "peopleDevTrain.txt"
DEV_TEST_PEOPLE = "peopleDevTest.txt"
IDENTITIES_CSV = "identities.csv"
ATTRIBUTE_COLUMNS = ("name", "group", "gender", "age")
PAIR_COLUMNS = ("fold", "name1", "index1", "name2", "index2", "same", "path1", "path2")
GENDER_LISTS = {"Male": "male_names.txt", "Female": "female_names.txt"}
IMAGE_FILE = r"^(?P<name>[^/\\]+)_(?P<index>\d{4})\.jpg$"  # <Name>_0001.jpg, the name without path separators
VIEW2_FOLDS = 10  # the View 2 protocol: pairs.txt header "10<TAB>300", ten folds of 300 + 300 pairs

GET_DATA = (
    "On Colab run sklearn.datasets.fetch_lfw_pairs(download_if_missing=True) and pass "
    "~/scikit_learn_data/lfw_home; or download lfw-deepfunneled.tgz, unpack it and put pairs.txt, "
    "pairsDevTrain.txt, pairsDevTest.txt, peopleDevTrain.txt and peopleDevTest.txt beside the "
    "lfw-deepfunneled/ folder."
)


@dataclass(frozen=True)
class LFW:
    """One LFW copy: every image on disk plus the parsed protocol files.

    Pair tables have columns ``fold, name1, index1, name2, index2, same, path1, path2``; ``fold`` is
    0..9 for View 2 and -1 for the View 1 pair files. People tables have ``name, count``.
    ``identities`` lists the View 2 identities of each fold (``fold, name``).
    """

    root: Path  # the folder holding the protocol files
    image_dir: Path
    images: pd.DataFrame  # name, index, path
    pairs: pd.DataFrame
    dev_train_pairs: pd.DataFrame
    dev_test_pairs: pd.DataFrame
    people_dev_train: pd.DataFrame
    people_dev_test: pd.DataFrame
    identities: pd.DataFrame
    people_from_pairs: bool
    note: str = ""
    attributes: pd.DataFrame | None = None  # synthetic data only: name, group, gender, age


# ------------------------------------------------------------------------------------- entry point
def load_lfw(root: str | os.PathLike) -> LFW:
    """Load LFW from ``root``: a folder holding an image folder and the protocol files, or
    scikit-learn's data home (``~/scikit_learn_data`` or its ``lfw_home``)."""
    image_dir, named = _locate_image_folder(root)
    required = (VIEW2_PAIRS, DEV_TRAIN_PAIRS, DEV_TEST_PAIRS)
    protocol_dir = _protocol_folder(image_dir, named, required)
    images = scan_images(image_dir)

    def pair_table(file_name: str, view: int) -> pd.DataFrame:
        table = read_pairs(protocol_dir / file_name, view=view)
        table["path1"] = image_paths(image_dir, table["name1"], table["index1"])
        table["path2"] = image_paths(image_dir, table["name2"], table["index2"])
        absent = pd.concat([table["path1"], table["path2"]])
        absent = absent[~absent.isin(images["path"])].unique()
        if len(absent):
            first = Path(absent[0]).name
            raise DataError(
                f"{_line_naming(protocol_dir / file_name, first)}: {first} is not in {image_dir}; {file_name} "
                f"references {len(absent)} image(s) that are not there: "
                f"{examples(Path(path).name for path in absent)}. The image folder is incomplete or "
                f"from another LFW release; re-extract the archive."
            )
        return table

    pairs = pair_table(VIEW2_PAIRS, view=2)
    dev_train_pairs = pair_table(DEV_TRAIN_PAIRS, view=1)
    dev_test_pairs = pair_table(DEV_TEST_PAIRS, view=1)

    people_files = [protocol_dir / name for name in (DEV_TRAIN_PEOPLE, DEV_TEST_PEOPLE)]
    present = [path.is_file() for path in people_files]
    note = ""
    if all(present):
        people_dev_train, people_dev_test = (_checked_people(read_people(path), images, path) for path in people_files)
    elif not any(present):
        people_dev_train = people_from_pair_table(dev_train_pairs, images)
        people_dev_test = people_from_pair_table(dev_test_pairs, images)
        note = (
            f"No people files ({DEV_TRAIN_PEOPLE}, {DEV_TEST_PEOPLE}) in {protocol_dir}: View 1 people are "
            f"the names used in {DEV_TRAIN_PAIRS} ({len(people_dev_train)} identities) and {DEV_TEST_PAIRS} "
            f"({len(people_dev_test)}), fewer than the official people lists (4,038 and 1,711)."
        )
        warnings.warn(note, stacklevel=2)
    else:
        absent = [path.name for path, here in zip(people_files, present) if not here]
        raise DataError(f"{protocol_dir} has only one of the two View 1 people files; {absent} is missing. {GET_DATA}")

    attributes_csv = protocol_dir / IDENTITIES_CSV
    return LFW(
        root=protocol_dir,
        image_dir=image_dir,
        images=images,
        pairs=pairs,
        dev_train_pairs=dev_train_pairs,
        dev_test_pairs=dev_test_pairs,
        people_dev_train=people_dev_train,
        people_dev_test=people_dev_test,
        identities=fold_identities(pairs),
        people_from_pairs=not any(present),
        note=note,
        attributes=read_attributes(attributes_csv) if attributes_csv.is_file() else None,
    )


def find_image_folder(root: str | os.PathLike) -> Path:
    """The image folder under ``root``: ``lfw-deepfunneled/``, ``lfw_funneled/`` or ``lfw/`` (first
    found), also inside ``root/lfw_home/`` (scikit-learn), or ``root`` itself if it is one of them."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"LFW folder {root} does not exist. {GET_DATA}")
    return _locate_image_folder(root)[0]


def _line_naming(pairs_file: Path, image: str) -> str:
    """``<pairs_file>:<line>`` of the first pair line that names ``image`` (``Name_NNNN.jpg``), for messages."""
    match = re.match(IMAGE_FILE, image)
    if match is not None:
        name, index = match.group("name"), int(match.group("index"))
        for number, line in enumerate(read_utf8(pairs_file, "an LFW pairs file").splitlines()[1:], start=2):
            fields = line.split()
            named = [(fields[0], fields[1]), (fields[0], fields[2])] if len(fields) == 3 else \
                [(fields[0], fields[1]), (fields[2], fields[3])] if len(fields) == 4 else []
            if any(who == name and number_text.isdigit() and int(number_text) == index for who, number_text in named):
                return f"{pairs_file}:{number}"
    return str(pairs_file)


def _locate_image_folder(root: str | os.PathLike) -> tuple[Path, Path]:
    """:func:`find_image_folder`'s answer (links resolved), and the image folder as the user named it
    (``<root>/lfw-deepfunneled`` may be a symbolic link to a folder elsewhere)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"LFW folder {root} does not exist. {GET_DATA}")
    for base in (root, root / "lfw_home"):
        for name in IMAGE_FOLDERS:
            if (base / name).is_dir():
                return (base / name).resolve(), (base / name).absolute()
    if root.name in IMAGE_FOLDERS:
        return root.resolve(), root.absolute()
    raise DataError(f"no LFW image folder ({', '.join(IMAGE_FOLDERS)}) in {root} or {root / 'lfw_home'}. {GET_DATA}")


def _protocol_folder(image_dir: Path, named: Path, required: tuple[str, ...]) -> Path:
    """The folder with the protocol files: beside the image folder, or, when the image folder was named
    through a symbolic link, beside the link first (where the user put it), then beside its target. The
    error names the folder beside the link."""
    if not named.is_symlink():
        candidates = [image_dir.parent]
    else:
        candidates = [named.parent.resolve(), image_dir.parent]
    for folder in candidates:
        if all((folder / name).is_file() for name in required):
            return folder
    missing = [name for name in required if not (candidates[0] / name).is_file()]
    where = (f"beside {image_dir.name}/" if len(candidates) == 1 else
             f"beside {named.name}/, which is a symbolic link to {image_dir}; they are not beside that folder either")
    raise DataError(f"missing LFW protocol file(s) {missing} in {candidates[0]} (they belong {where}). {GET_DATA}")


def scan_images(image_dir: Path) -> pd.DataFrame:
    """Every ``<Name>/<Name>_NNNN.jpg`` on disk as ``name, index, path``, sorted by name then index.

    Files that do not follow that pattern are ignored with a warning.
    """
    entries, links = [], []
    for person in os.scandir(image_dir):
        if not person.is_dir():
            continue
        if person.is_symlink():
            links.append(person.path)
        for entry in os.scandir(person.path):
            if entry.is_file():
                entries.append((person.name, entry.name))
                if entry.is_symlink():
                    links.append(entry.path)
    _check_links_inside(links, Path(image_dir))
    files = pd.DataFrame(entries, columns=["folder", "file"], dtype=str)
    parsed = files["file"].str.extract(IMAGE_FILE)
    valid = parsed["name"].eq(files["folder"]).to_numpy()
    if not valid.all():
        stray = (files["folder"] + "/" + files["file"])[~valid]
        warnings.warn(
            f"ignored {len(stray)} file(s) in {image_dir} not named <Name>/<Name>_NNNN.jpg: {examples(stray)}",
            stacklevel=2,
        )
    if not valid.any():
        raise DataError(f"no <Name>/<Name>_NNNN.jpg images in {image_dir}; is the archive unpacked? {GET_DATA}")
    images = pd.DataFrame({"name": parsed.loc[valid, "name"], "index": parsed.loc[valid, "index"].astype(np.int64)})
    images = images.sort_values(["name", "index"], ignore_index=True)
    images["path"] = image_paths(image_dir, images["name"], images["index"])
    return images


def _check_links_inside(links: list[str], image_dir: Path) -> None:
    """Symbolic links in the image folder must lead to files inside it (LFW itself has none)."""
    root = image_dir.resolve()
    outside = [link for link in links if not Path(link).resolve().is_relative_to(root)]
    if outside:
        described = [f"{Path(link).relative_to(image_dir)} -> {Path(link).resolve()}" for link in outside]
        raise DataError(
            f"{len(outside)} symbolic link(s) in {image_dir} lead outside it: {examples(described)}. "
            f"Replace them with the image files themselves (re-extract the archive)."
        )


def image_paths(image_dir: Path, names: pd.Series, indices: pd.Series) -> pd.Series:
    """``<image_dir>/<Name>/<Name>_%04d.jpg`` for 1-based image numbers, vectorized."""
    names = names.astype(str)
    numbers = indices.astype(np.int64).astype(str).str.zfill(4)
    return (Path(image_dir).as_posix() + "/" + names + "/" + names + "_" + numbers + ".jpg").astype(str)


# -------------------------------------------------------------------------------- protocol files
def _lines(path: Path, what: str) -> list[str]:
    # UTF-8 only, a byte-order mark dropped (read_utf8 names the line of a non-UTF-8 byte);
    # splitlines() handles LF, CRLF and a mix of both (the third-party lists mix them).
    return read_utf8(path, what).splitlines()


def _check_name(name: str, path: Path, number: int, line: str) -> str:
    """An identity name from a protocol file: one folder name, so that paths built from it stay in the image folder."""
    if name in (".", "..") or "/" in name or "\\" in name or not name.isprintable():
        raise DataError(
            f"{path}:{number}: {name!r} is not an LFW name (a single folder name like George_W_Bush, without "
            f"path separators or invisible characters) in {line!r}. Re-download the file; do not edit it by hand."
        )
    return name


def read_pairs(path: str | os.PathLike, view: int | None = None) -> pd.DataFrame:
    """Parse a pairs file into ``fold, name1, index1, name2, index2, same``.

    The header decides the format: two numbers ``folds per_half`` (View 2: each fold is ``per_half``
    matched lines, then ``per_half`` mismatched lines) or one number ``n`` (View 1: n matched lines,
    then n mismatched, fold = -1). Body lines are read by field count: 3 fields = ``name i j``
    (matched), 4 = ``name1 i name2 j`` (mismatched). ``view`` (1 or 2), when given, is checked against
    the header. The header must describe the file line by line: a View 2 header of ``5 6`` or ``1 30``
    on a file laid out as ``10 3`` has the right total but puts a mismatched line where a matched one
    belongs, and is refused with that line's number (it would split the pairs into wrong folds).
    A consistent View 2 file with other than 10 folds loads with a warning: the protocol has 10. A pair
    of an image with itself, and a pair that an earlier line holds (in either order, in any fold), are
    refused with the line's number: neither is evidence.
    """
    path = Path(path)
    lines = _lines(path, "an LFW pairs file")
    if not lines:
        raise DataError(f"{path} is empty; expected a header line then one pair per line. {GET_DATA}")
    header = _integers(lines[0].split(), path, 1, lines[0])
    if len(header) not in (1, 2) or (view is not None and len(header) != view):
        expected = {
            1: "one count (View 1, e.g. '1100')",
            2: "'folds<TAB>pairs per half-fold' (View 2, e.g. '10\\t300')",
        }
        wanted = expected[view] if view is not None else " or ".join(expected.values())
        raise DataError(f"{path}:1: header {lines[0]!r} is not {wanted}")
    rows, line_numbers, seen = [], [], {}
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 3:
            name, i, j = fields
            rows.append((_check_name(name, path, number, line), *_integers([i, j], path, number, line), name, True))
        elif len(fields) == 4:
            name1, i, name2, j = fields
            if name2.isdigit():
                raise DataError(
                    f"{path}:{number}: 4 fields {line!r}, but the third, {name2!r}, is a number, not a name: a "
                    f"matched line has 3 fields (name i j), a mismatched one 4 (name1 i name2 j). Remove the extra "
                    f"field or re-download the file."
                )
            rows.append((_check_name(name1, path, number, line), *_integers([i, j], path, number, line),
                         _check_name(name2, path, number, line), False))
        else:
            raise DataError(
                f"{path}:{number}: expected 3 fields (name i j) or 4 (name1 i name2 j), got "
                f"{len(fields)}: {line!r}. Re-download the file; do not edit it by hand."
            )
        line_numbers.append(number)
        _check_new_pair(rows[-1], number, line, path, seen)
    table = pd.DataFrame(rows, columns=["name1", "index1", "index2", "name2", "same"])
    table = table.astype({"name1": str, "name2": str, "index1": np.int64, "index2": np.int64, "same": bool})
    expected_pairs = 2 * int(np.prod(header))
    if len(table) != expected_pairs:
        raise DataError(
            f"{path}: header {lines[0]!r} announces {expected_pairs} pairs but the file has {len(table)}; "
            f"the file is truncated or not an LFW pairs file. {GET_DATA}"
        )
    per_half = header[-1]
    table.insert(0, "fold", np.arange(len(table)) // (2 * per_half) if len(header) == 2 else -1)
    # Each fold (the whole file for View 1) is per_half matched lines, then per_half mismatched ones;
    # checking every position names the first line that breaks it (a moved line, or a header such as
    # "5 6" on a "10 3" file, whose total is right but whose folds are not).
    should_match = np.arange(len(table)) % (2 * per_half) < per_half
    misplaced = np.flatnonzero(table["same"].to_numpy() != should_match)
    if len(misplaced):
        row = int(misplaced[0])
        number = line_numbers[row]
        kind = "matched (name i j)" if should_match[row] else "mismatched (name1 i name2 j)"
        raise DataError(
            f"{path}:{number}: expected a {kind} line here, got {lines[number - 1]!r}: with the header "
            f"{lines[0]!r} each fold is {per_half} matched lines then {per_half} mismatched ones, so either lines "
            f"were moved or the header does not describe this file (the LFW View 2 header is '10\\t300', View 1 "
            f"files have one count). Re-download the file; a wrong header would split the pairs into wrong folds."
        )
    if view == 2 and header[0] != VIEW2_FOLDS:
        warnings.warn(
            f"{path}:1: header {lines[0]!r} announces {header[0]} folds; the LFW View 2 protocol has "
            f"{VIEW2_FOLDS} (header '10\\t300'), so every '10-fold' result on this file is over {header[0]} "
            f"folds. Use the official pairs.txt for results comparable with published ones.",
            stacklevel=2,
        )
    return table[["fold", "name1", "index1", "name2", "index2", "same"]]


def _check_new_pair(row: tuple, number: int, line: str, path: Path, seen: dict) -> None:
    """Refuse a pair of an image with itself and a pair that an earlier line already holds (in either
    order): both would be counted as evidence they are not. ``seen`` maps each pair to its line."""
    name1, index1, index2, name2, _ = row
    first, second = (name1, index1), (name2, index2)
    if first == second:
        raise DataError(
            f"{path}:{number}: {line!r} pairs image {index1} of {name1} with itself; a self-pair says nothing about "
            f"verification (its score is 1 for any model). LFW's files have none: re-download the file."
        )
    key = (min(first, second), max(first, second))
    if key in seen:
        raise DataError(
            f"{path}:{number}: {line!r} repeats the pair of line {seen[key]}; a duplicated pair would be counted "
            f"twice. LFW's files have no duplicates: re-download the file, or remove one of the two lines."
        )
    seen[key] = number


def read_people(path: str | os.PathLike) -> pd.DataFrame:
    """Parse a View 1 people file (a count line, then ``name count`` lines) into ``name, count``."""
    path = Path(path)
    lines = _lines(path, "an LFW people file")
    if not lines:
        raise DataError(f"{path} is empty; expected a count line then 'name count' lines")
    (expected,) = _integers(lines[0].split()[:1] or [""], path, 1, lines[0])
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DataError(f"{path}:{number}: expected 2 fields (name count), got {len(fields)}: {line!r}")
        rows.append((_check_name(fields[0], path, number, line), *_integers(fields[1:], path, number, line)))
    if len(rows) != expected:
        raise DataError(f"{path}: header announces {expected} people but the file lists {len(rows)}; re-download it")
    return pd.DataFrame(rows, columns=["name", "count"]).astype({"name": str, "count": np.int64})


def _integers(fields: list[str], path: Path, number: int, line: str) -> list[int]:
    try:
        values = [int(field) for field in fields]
    except ValueError:
        raise DataError(f"{path}:{number}: expected whole numbers in {line!r}") from None
    if any(value < 1 for value in values):
        raise DataError(f"{path}:{number}: counts and image numbers start at 1, got {line!r}")
    return values


def _checked_people(people: pd.DataFrame, images: pd.DataFrame, path: Path) -> pd.DataFrame:
    """People must exist on disk with exactly the announced number of images."""
    on_disk = images.groupby("name").size()
    found = people["name"].map(on_disk).fillna(0).astype(np.int64)
    wrong = people[found != people["count"]]
    if len(wrong):
        described = [
            f"{name} ({listed} listed, {disk} on disk)"
            for name, listed, disk in zip(wrong["name"], wrong["count"], found[wrong.index])
        ]
        raise DataError(
            f"{path.name}: {len(wrong)} people do not have the listed number of images in the image "
            f"folder: {examples(described)}. The image folder is incomplete; re-extract the archive."
        )
    return people


def people_from_pair_table(pairs: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """``name, count`` of every identity a pair table uses (sorted), count = images on disk."""
    names = pd.Index(pd.concat([pairs["name1"], pairs["name2"]]).unique()).sort_values()
    counts = images.groupby("name").size().reindex(names).fillna(0).astype(np.int64)
    return pd.DataFrame({"name": names.astype(str), "count": counts.to_numpy()})


def fold_identities(pairs: pd.DataFrame) -> pd.DataFrame:
    """``fold, name``: the identities each fold of a pair table uses, sorted, one row each."""
    both = pd.concat([
        pairs[["fold", "name1"]].rename(columns={"name1": "name"}),
        pairs[["fold", "name2"]].rename(columns={"name2": "name"}),
    ])
    return both.drop_duplicates().sort_values(["fold", "name"], ignore_index=True)


def read_attributes(path: str | os.PathLike) -> pd.DataFrame:
    """The synthetic set's ``identities.csv`` (``name, group, gender, age``), with group, gender and
    age typed over the canonical vocabularies of ``lib.labels`` (FairFace's strings).

    Problems name the file and the line: an empty file, a header without rows, a short row, an empty
    or unknown label, a byte that is not UTF-8.
    """
    path = Path(path)
    regenerate = "regenerate the synthetic set (python -m lib.synthetic) or remove the file"
    reader = csv.reader(io.StringIO(read_utf8(path, "identities.csv"), newline=""))
    header = [name.strip() for name in next(reader, [])]
    if not header:
        raise DataError(f"{path} is empty; expected the header {','.join(ATTRIBUTE_COLUMNS)} then one row per person; {regenerate}")
    missing = [column for column in ATTRIBUTE_COLUMNS if column not in header]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}; expected the header {','.join(ATTRIBUTE_COLUMNS)}")
    rows, lines, end = [], [], reader.line_num
    for fields in reader:
        start, end = end + 1, reader.line_num  # a quoted field may span lines: name the row's first
        if len(fields) <= 1 and not "".join(fields).strip():
            continue
        if len(fields) != len(header):
            raise DataError(f"{path}:{start}: expected {len(header)} fields ({','.join(header)}), "
                            f"got {len(fields)}: {','.join(fields)[:200]!r}; {regenerate}")
        rows.append(fields)
        lines.append(start)
    if not rows:
        raise DataError(f"{path} has a header but no rows; {regenerate}")
    table = pd.DataFrame(rows, columns=header, dtype=str).loc[:, list(ATTRIBUTE_COLUMNS)]
    line_of = pd.Series(lines, index=table.index)
    for column in ATTRIBUTE_COLUMNS:
        empty = table[column].str.strip().eq("")
        if empty.any():
            raise DataError(f"{path}:{line_of[empty].iloc[0]}: empty {column} ({int(empty.sum())} rows); {regenerate}")
    try:
        groups = race_vocabulary(table["group"].unique())
    except ValueError as error:
        raise DataError(f"{path}: {error}") from error
    table["name"] = table["name"].astype(str)
    table["group"] = pd.Categorical(table["group"], categories=list(groups))
    for column, vocabulary in (("gender", GENDERS), ("age", AGES)):
        values = table[column]
        unknown = ~values.isin(vocabulary)
        if unknown.any():
            raise DataError(
                f"{path}:{line_of[unknown].iloc[0]}: unknown {column} label(s) {examples(values[unknown].unique())}; "
                f"expected {list(vocabulary)}"
            )
        table[column] = pd.Categorical(values, categories=list(vocabulary))
    return table


# ------------------------------------------------------------------------------------ View 1 training
def view1_training_set(lfw: LFW) -> pd.DataFrame:
    """Every image of the View 1 DevTrain people, with integer ``label`` = rank of the sorted name.

    Columns ``name, index, path, label``; there are ``label.max() + 1`` classes. Notebook 02 trains an
    identity classifier on these and scores the (identity-disjoint) DevTest pairs.
    """
    names = np.sort(lfw.people_dev_train["name"].unique())
    train = lfw.images[lfw.images["name"].isin(names)].reset_index(drop=True)
    train["label"] = np.searchsorted(names, train["name"].to_numpy()).astype(np.int64)
    return train


# ------------------------------------------------------------------------------------- gender lists
def load_lfw_gender(folder: str | os.PathLike, images: LFW | pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict]:
    """Per-image gender from the third-party ``male_names.txt`` / ``female_names.txt`` lists.

    Returns ``(labels, report)``. ``labels`` has one row per image: ``file`` (``<Name>_NNNN.jpg``),
    ``name``, ``gender`` (Categorical over ``lib.labels.GENDERS``; missing when the image is in both
    lists or in neither) and ``status`` (``"listed"``, ``"in both lists"``, ``"in neither list"``).
    Conflicts are never resolved by picking one list. With ``images`` (an :class:`LFW` or its
    ``images`` table), images on disk that no list names are added as ``"in neither list"``.

    ``report`` holds counts (``male_entries``, ``female_entries``, ``duplicate_entries``,
    ``in_both``, ``in_neither``, ``listed_not_on_disk``) and example lists (``*_examples``);
    counts that need ``images`` are None without it.
    """
    folder = Path(folder).expanduser()
    listed = {}
    duplicates = 0
    for gender, file_name in GENDER_LISTS.items():
        path = folder / file_name
        if not path.is_file():
            raise DataError(
                f"missing gender list {path}; LFW gender labels come as male_names.txt and "
                f"female_names.txt (one <Name>_NNNN.jpg per line) in one folder"
            )
        # A byte-order mark at the start is dropped by _lines; anywhere else it (like any invisible
        # character) would silently stop the entry from matching its image, so it is refused.
        entries = pd.Series([line.strip() for line in _lines(path, "an LFW gender list")], dtype=str)
        line_numbers = np.flatnonzero(entries.ne("").to_numpy()) + 1
        entries = entries[entries.ne("")]
        malformed = ~entries.str.match(IMAGE_FILE) | ~entries.map(str.isprintable).astype(bool)
        if malformed.any():
            first = int(np.argmax(malformed.to_numpy()))
            raise DataError(
                f"{path}:{line_numbers[first]}: expected an image file name <Name>_NNNN.jpg (no path "
                f"separators, no invisible characters such as a byte-order mark), got {entries.iloc[first]!r} "
                f"({int(malformed.sum())} such lines). Fix the line or re-download the list."
            )
        duplicates += int(entries.duplicated().sum())
        listed[gender] = entries.drop_duplicates()

    male, female = listed["Male"], listed["Female"]
    in_both = male[male.isin(female)].sort_values()
    labels = pd.concat([
        pd.DataFrame({"file": male, "gender": "Male"}),
        pd.DataFrame({"file": female, "gender": "Female"}),
    ], ignore_index=True)
    labels["status"] = np.where(labels["file"].isin(in_both), "in both lists", "listed")
    labels = labels.drop_duplicates("file")
    labels.loc[labels["status"] != "listed", "gender"] = None

    report = {
        "male_entries": len(male),
        "female_entries": len(female),
        "duplicate_entries": duplicates,
        "in_both": len(in_both),
        "in_neither": None,
        "listed_not_on_disk": None,
        "in_both_examples": in_both.head(5).tolist(),
        "in_neither_examples": [],
        "listed_not_on_disk_examples": [],
    }
    if images is not None:
        table = images.images if isinstance(images, LFW) else images
        on_disk = pd.Series(table["path"].astype(str).str.rpartition("/")[2].unique(), dtype=str)
        neither = on_disk[~on_disk.isin(labels["file"])].sort_values()
        absent = labels.loc[~labels["file"].isin(on_disk), "file"].sort_values()
        unlisted = pd.DataFrame({"file": neither, "gender": None, "status": "in neither list"})
        labels = pd.concat([labels, unlisted], ignore_index=True)
        report.update(
            in_neither=len(neither),
            listed_not_on_disk=len(absent),
            in_neither_examples=neither.head(5).tolist(),
            listed_not_on_disk_examples=absent.head(5).tolist(),
        )
    labels["name"] = labels["file"].str.extract(IMAGE_FILE)["name"].astype(str)
    labels["gender"] = pd.Categorical(labels["gender"], categories=list(GENDERS))
    labels = labels.sort_values("file", ignore_index=True)[["file", "name", "gender", "status"]]
    return labels, report
