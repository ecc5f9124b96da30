"""Builders of tiny datasets in the exact on-disk formats, for the loader tests.

Each builder writes files the way the official releases (or the Hugging Face Hub) lay them out and
returns what it wrote, spelled out independently of the code under test (hand-written headers and
label orders, literal file names), so tests compare the loaders' output with these records.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

# Literal copies (not imports from lib.labels) so a wrong constant in the library makes tests fail.
FAIRFACE_RACES = ["White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern"]
FAIRFACE_GENDERS = ["Male", "Female"]
FAIRFACE_AGES = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70"]
SYNTHETIC_GROUPS = [f"Group {letter}" for letter in "ABCDEFG"]
# ClassLabel orders of HuggingFaceM4/FairFace. Only the race order is taken from the Hub dataset; the age
# and gender orders are plausible guesses. Tests also use shuffled orders so mapping by string is
# exercised for every column.
HUB_RACE_ORDER = ["East Asian", "Indian", "Black", "White", "Middle Eastern", "Latino_Hispanic", "Southeast Asian"]
HUB_GENDER_ORDER = ["Male", "Female"]
HUB_AGE_ORDER = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70"]


# ------------------------------------------------------------------------------------------ images
def jpeg_bytes(seed: int, size: tuple[int, int] = (24, 24)) -> bytes:
    """A small random RGB JPEG (``size`` = width, height), different for each seed."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_jpeg(path: Path, seed: int, size: tuple[int, int] = (24, 24)) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = jpeg_bytes(seed, size)
    path.write_bytes(data)
    return data


# ---------------------------------------------------------------------------------------- FairFace
def fairface_labels(split: str, count: int, races=FAIRFACE_RACES) -> pd.DataFrame:
    """Label rows of one split (strings, as in the CSVs), cycling through every vocabulary."""
    numbers = np.arange(1, count + 1)
    return pd.DataFrame({
        "file": [f"{split}/{number}.jpg" for number in numbers],
        "age": [FAIRFACE_AGES[(3 * number) % len(FAIRFACE_AGES)] for number in numbers],
        "gender": [FAIRFACE_GENDERS[number % 2] for number in numbers],
        "race": [races[number % len(races)] for number in numbers],
        "service_test": [number % 3 == 0 for number in numbers],
    })


def build_fairface_folder(root: Path, n_train: int = 9, n_val: int = 4, races=FAIRFACE_RACES,
                          size: tuple[int, int] = (24, 24)) -> dict[str, pd.DataFrame]:
    """Official layout under ``root``: ``train/1.jpg``.., ``val/1.jpg``.., and the two label CSVs.

    Returns the label rows written per split (``service_test`` as bool).
    """
    written = {}
    for split, count in (("train", n_train), ("val", n_val)):
        labels = fairface_labels(split, count, races)
        for seed, file in enumerate(labels["file"]):
            write_jpeg(root / file, seed=seed + (10_000 if split == "val" else 0), size=size)
        lines = ["file,age,gender,race,service_test"] + [
            f"{row.file},{row.age},{row.gender},{row.race},{'True' if row.service_test else 'False'}"
            for row in labels.itertuples()
        ]
        (root / f"fairface_label_{split}.csv").write_text("\n".join(lines) + "\n")
        written[split] = labels
    return written


def build_hub_dataset(labels: pd.DataFrame, images: list[bytes], race_names=HUB_RACE_ORDER,
                      gender_names=HUB_GENDER_ORDER, age_names=HUB_AGE_ORDER):
    """A ``datasets.Dataset`` with the Hub's features: JPEG bytes + ClassLabel ints in the given orders."""
    import datasets

    features = datasets.Features({
        "image": datasets.Image(),
        "age": datasets.ClassLabel(names=list(age_names)),
        "gender": datasets.ClassLabel(names=list(gender_names)),
        "race": datasets.ClassLabel(names=list(race_names)),
        "service_test": datasets.Value("bool"),
    })
    return datasets.Dataset.from_dict({
        "image": [{"bytes": data, "path": None} for data in images],
        "age": [list(age_names).index(value) for value in labels["age"]],
        "gender": [list(gender_names).index(value) for value in labels["gender"]],
        "race": [list(race_names).index(value) for value in labels["race"]],
        "service_test": list(labels["service_test"]),
    }, features=features)


@dataclass
class HubFixture:
    """What :func:`build_fairface_parquet` wrote: per split, the label strings and image bytes in row order."""

    root: Path
    labels: dict[str, pd.DataFrame] = field(default_factory=dict)
    images: dict[str, list[bytes]] = field(default_factory=dict)


def build_fairface_parquet(root: Path, padding: str = "0.25", n_train: int = 7, n_val: int = 3,
                           train_shards: int = 2, **orders) -> HubFixture:
    """Hub layout: ``<root>/<padding>/train-0000i-of-0000n.parquet`` and ``validation-00000-of-00001.parquet``.

    Written with ``datasets.Dataset.to_parquet``, which embeds the ClassLabel names in the schema
    metadata key ``huggingface``, as the Hub's files do. ``orders`` override the ClassLabel orders.
    """
    fixture = HubFixture(root=root)
    folder = root / padding
    folder.mkdir(parents=True, exist_ok=True)
    for split, hub_split, count, shards in (("train", "train", n_train, train_shards), ("val", "validation", n_val, 1)):
        labels = fairface_labels(split, count).drop(columns="file")
        images = [jpeg_bytes(1000 * (split == "val") + seed, (32, 32)) for seed in range(count)]
        dataset = build_hub_dataset(labels, images, **orders)
        bounds = np.linspace(0, count, shards + 1).astype(int)
        for shard in range(shards):
            part = dataset.select(range(bounds[shard], bounds[shard + 1]))
            part.to_parquet(str(folder / f"{hub_split}-{shard:05d}-of-{shards:05d}.parquet"))
        fixture.labels[split] = labels
        fixture.images[split] = images
    return fixture


# --------------------------------------------------------------------------------------------- LFW
# A tiny LFW: 11 identities. View 2 has 2 folds of 2 matched + 2 mismatched pairs (header "2\t2"),
# identity-disjoint; View 1 has 2 + 2 DevTrain and 1 + 1 DevTest pairs; the people files list one
# more identity each than their pair files use, so "people from pairs" differs from the real lists.
LFW_PEOPLE = {
    "Ann_Archer": 3, "Ben_Bishop": 2, "Cal_Cruz": 1, "Dee_Dunn": 1,  # View 2 fold 0
    "Eva_Ekberg": 2, "Fay_Fox": 2, "Gus_Grant": 1, "Hal_Hunt": 1,    # View 2 fold 1
    "Ivy_Ito": 2, "Jon_Jones": 3, "Kim_Kerr": 1,                     # View 1 only / on disk only
}
# (fold, name1, index1, name2, index2, same)
LFW_VIEW2 = [
    (0, "Ann_Archer", 1, "Ann_Archer", 2, True), (0, "Ben_Bishop", 1, "Ben_Bishop", 2, True),
    (0, "Ann_Archer", 3, "Cal_Cruz", 1, False), (0, "Ben_Bishop", 2, "Dee_Dunn", 1, False),
    (1, "Eva_Ekberg", 1, "Eva_Ekberg", 2, True), (1, "Fay_Fox", 1, "Fay_Fox", 2, True),
    (1, "Eva_Ekberg", 2, "Gus_Grant", 1, False), (1, "Fay_Fox", 1, "Hal_Hunt", 1, False),
]
LFW_DEV_TRAIN = [
    (-1, "Ann_Archer", 1, "Ann_Archer", 3, True), (-1, "Ivy_Ito", 1, "Ivy_Ito", 2, True),
    (-1, "Ann_Archer", 2, "Ivy_Ito", 1, False), (-1, "Ben_Bishop", 1, "Cal_Cruz", 1, False),
]
LFW_DEV_TEST = [(-1, "Jon_Jones", 1, "Jon_Jones", 2, True), (-1, "Jon_Jones", 3, "Eva_Ekberg", 1, False)]
LFW_PEOPLE_DEV_TRAIN = [("Ann_Archer", 3), ("Ben_Bishop", 2), ("Cal_Cruz", 1), ("Gus_Grant", 1), ("Ivy_Ito", 2)]
LFW_PEOPLE_DEV_TEST = [("Dee_Dunn", 1), ("Eva_Ekberg", 2), ("Jon_Jones", 3)]
# Gender lists: Cal_Cruz_0001 is in both, Ann_Archer_0003 in neither.
LFW_FEMALE = {"Ann_Archer", "Cal_Cruz", "Dee_Dunn", "Eva_Ekberg", "Fay_Fox", "Ivy_Ito", "Kim_Kerr"}
LFW_BOTH = "Cal_Cruz_0001.jpg"
LFW_NEITHER = "Ann_Archer_0003.jpg"


def _pair_line(fold, name1, index1, name2, index2, same) -> str:
    return f"{name1}\t{index1}\t{index2}" if same else f"{name1}\t{index1}\t{name2}\t{index2}"


@dataclass
class LFWFixture:
    root: Path  # what to pass to load_lfw
    protocol_dir: Path
    image_dir: Path


def build_lfw(root: Path, image_folder: str = "lfw", sklearn: bool = False, attributes: bool = False,
              gender_lists: bool = True) -> LFWFixture:
    """Write the tiny LFW above.

    ``sklearn=True`` mimics scikit-learn's data home: ``<root>/lfw_home/lfw_funneled/`` plus the three
    pair files in ``lfw_home`` and no people files. ``attributes=True`` adds the synthetic set's
    ``identities.csv``; ``gender_lists`` writes ``gender/male_names.txt`` and ``female_names.txt``
    with CRLF line endings (the last line without one, as in the real male list).
    """
    protocol_dir = root / "lfw_home" if sklearn else root
    image_dir = protocol_dir / ("lfw_funneled" if sklearn else image_folder)
    seed = 0
    for name, count in LFW_PEOPLE.items():
        for index in range(1, count + 1):
            write_jpeg(image_dir / name / f"{name}_{index:04d}.jpg", seed=seed)
            seed += 1
    (protocol_dir / "pairs.txt").write_text("2\t2\n" + "".join(_pair_line(*pair) + "\n" for pair in LFW_VIEW2))
    (protocol_dir / "pairsDevTrain.txt").write_text("2\n" + "".join(_pair_line(*pair) + "\n" for pair in LFW_DEV_TRAIN))
    (protocol_dir / "pairsDevTest.txt").write_text("1\n" + "".join(_pair_line(*pair) + "\n" for pair in LFW_DEV_TEST))
    if not sklearn:
        for file_name, people in (("peopleDevTrain.txt", LFW_PEOPLE_DEV_TRAIN), ("peopleDevTest.txt", LFW_PEOPLE_DEV_TEST)):
            (protocol_dir / file_name).write_text(f"{len(people)}\n" + "".join(f"{n}\t{c}\n" for n, c in people))
    if attributes:
        lines = ["name,group,gender,age"] + [
            f"{name},Group {'ABCDEFG'[i % 7]},{'Female' if name in LFW_FEMALE else 'Male'},{FAIRFACE_AGES[i % 9]}"
            for i, name in enumerate(LFW_PEOPLE)
        ]
        (protocol_dir / "identities.csv").write_text("\n".join(lines) + "\n")
    if gender_lists:
        files = {name: [f"{name}_{i:04d}.jpg" for i in range(1, count + 1)] for name, count in LFW_PEOPLE.items()}
        male = [f for name, fs in files.items() if name not in LFW_FEMALE for f in fs] + [LFW_BOTH]
        female = [f for name, fs in files.items() if name in LFW_FEMALE for f in fs if f != LFW_NEITHER]
        (protocol_dir / "gender").mkdir(exist_ok=True)
        (protocol_dir / "gender" / "male_names.txt").write_bytes("\r\n".join(male).encode() + b"\n")
        (protocol_dir / "gender" / "female_names.txt").write_bytes("".join(f + "\r\n" for f in female).encode())
    return LFWFixture(root=root, protocol_dir=protocol_dir, image_dir=image_dir)


def lfw_expected_gender() -> dict[str, str | None]:
    """Image file -> expected gender (None for the image in both lists and the one in neither)."""
    expected = {}
    for name, count in LFW_PEOPLE.items():
        for index in range(1, count + 1):
            expected[f"{name}_{index:04d}.jpg"] = "Female" if name in LFW_FEMALE else "Male"
    expected[LFW_BOTH] = None
    expected[LFW_NEITHER] = None
    return expected
