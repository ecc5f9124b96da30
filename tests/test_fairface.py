"""lib.fairface: every source gives the same canonical table; every data problem a DataError that says what to do."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

import fixtures
from lib import fairface, paths
from lib.errors import DataError
from lib.fairface import decode_image, load_fairface, table_from_hf, validate_images

COLUMNS = ["id", "split", "image", "age", "gender", "race", "service_test"]


def assert_labels_equal(table: pd.DataFrame, expected: pd.DataFrame) -> None:
    """The table's label columns, as strings, equal the rows the fixture wrote."""
    for column in ("age", "gender", "race"):
        assert table[column].astype(str).tolist() == expected[column].tolist(), column
    assert table["service_test"].tolist() == expected["service_test"].tolist()


def assert_canonical_types(table: pd.DataFrame, races=fixtures.FAIRFACE_RACES) -> None:
    assert list(table.columns) == COLUMNS
    assert list(table["age"].cat.categories) == fixtures.FAIRFACE_AGES
    assert list(table["gender"].cat.categories) == fixtures.FAIRFACE_GENDERS
    assert list(table["race"].cat.categories) == races
    assert table["service_test"].dtype == bool
    assert table["id"].is_unique


# ------------------------------------------------------------------------------------- CSV folder
def test_folder_loads_official_layout(fairface_folder):
    root, written = fairface_folder
    table = load_fairface(root)
    assert_canonical_types(table)
    assert table["split"].tolist() == ["train"] * 9 + ["val"] * 4
    expected = pd.concat([written["train"], written["val"]], ignore_index=True)
    assert table["id"].tolist() == expected["file"].tolist()
    assert_labels_equal(table, expected)
    # image = absolute path of the listed file, byte-identical to what was written
    assert table["image"].tolist() == [str((root / file).resolve()) for file in expected["file"]]
    assert all(Path(path).is_absolute() and Path(path).is_file() for path in table["image"])


def test_folder_limit_and_split_selection(fairface_folder):
    root, written = fairface_folder
    table = load_fairface(root, splits=("val",), limit=2)
    assert table["id"].tolist() == ["val/1.jpg", "val/2.jpg"]
    assert_labels_equal(table, written["val"].head(2))
    assert load_fairface(root, limit=3)["split"].value_counts().to_dict() == {"train": 3, "val": 3}


def test_synthetic_group_vocabulary(tmp_path):
    root = tmp_path / "synthetic"
    written = fixtures.build_fairface_folder(root, races=fixtures.SYNTHETIC_GROUPS)
    table = load_fairface(root)
    assert_canonical_types(table, races=fixtures.SYNTHETIC_GROUPS)
    assert_labels_equal(table, pd.concat(written.values(), ignore_index=True))


def test_read_labels_needs_no_images(fairface_folder):
    root, written = fairface_folder
    for file in written["train"]["file"]:
        (root / file).unlink()
    table = fairface.read_labels(root, splits=("train",))
    assert table["id"].tolist() == written["train"]["file"].tolist()
    with pytest.raises(DataError):
        load_fairface(root)


# ------------------------------------------------------------------------------ folder error paths
def test_missing_folder_says_where_to_get_data(tmp_path):
    with pytest.raises(DataError, match="does not exist") as info:
        load_fairface(tmp_path / "nowhere")
    assert "Google-Drive" in str(info.value) and "source='hub'" in str(info.value)


def test_folder_without_labels_or_parquet(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="neither FairFace label CSVs"):
        load_fairface(tmp_path)


def test_missing_val_csv(fairface_folder):
    root, _ = fairface_folder
    (root / "fairface_label_val.csv").unlink()
    with pytest.raises(DataError, match="fairface_label_val.csv"):
        load_fairface(root)
    assert len(load_fairface(root, splits=("train",))) == 9


def test_missing_csv_columns_are_named(fairface_folder):
    root, _ = fairface_folder
    csv = root / "fairface_label_train.csv"
    frame = pd.read_csv(csv, dtype=str).drop(columns=["race", "service_test"])
    frame.to_csv(csv, index=False)
    with pytest.raises(DataError) as info:
        load_fairface(root)
    message = str(info.value)
    assert "['race', 'service_test']" in message and "file,age,gender,race,service_test" in message


def test_unknown_label_strings_are_listed(fairface_folder):
    root, _ = fairface_folder
    csv = root / "fairface_label_val.csv"
    csv.write_text(csv.read_text().replace(",Male,", ",male,"))
    with pytest.raises(DataError, match=r"unknown gender label\(s\) male"):
        load_fairface(root)


def test_unknown_race_is_reported(fairface_folder):
    root, _ = fairface_folder
    csv = root / "fairface_label_train.csv"
    csv.write_text(csv.read_text().replace(",Indian,", ",Martian,"))
    with pytest.raises(DataError, match="Martian"):
        load_fairface(root)


def test_mixed_race_vocabularies_are_rejected(tmp_path):
    root = tmp_path / "mixed"
    fixtures.build_fairface_folder(root / "a")
    written = fixtures.build_fairface_folder(root / "b", races=fixtures.SYNTHETIC_GROUPS)
    (root / "a" / "fairface_label_val.csv").write_text((root / "b" / "fairface_label_val.csv").read_text())
    assert len(written["val"])
    with pytest.raises(DataError, match="mixes"):
        load_fairface(root / "a")


def test_bad_service_test_value(fairface_folder):
    root, _ = fairface_folder
    csv = root / "fairface_label_train.csv"
    csv.write_text(csv.read_text().replace(",True\n", ",yes\n", 1))
    with pytest.raises(DataError, match="service_test must be True or False, found yes"):
        load_fairface(root)


def test_missing_image_files_counted_with_examples(fairface_folder):
    root, _ = fairface_folder
    for number in (2, 5, 7):
        (root / "train" / f"{number}.jpg").unlink()
    with pytest.raises(DataError) as info:
        load_fairface(root)
    message = str(info.value)
    assert message.startswith("3 of 9 files listed in fairface_label_train.csv do not exist")
    assert "train/2.jpg, train/5.jpg, train/7.jpg" in message
    # limit=1 only needs train/1.jpg
    assert load_fairface(root, limit=1)["id"].tolist() == ["train/1.jpg", "val/1.jpg"]


def test_bad_arguments_raise_value_error(fairface_folder):
    root, _ = fairface_folder
    with pytest.raises(ValueError, match="splits"):
        load_fairface(root, splits=("test",))
    with pytest.raises(ValueError, match="padding"):
        load_fairface(root, padding="0.5")
    with pytest.raises(ValueError, match="limit"):
        load_fairface(root, limit=0)


# ---------------------------------------------------------------------------------------- images
def test_decode_image_from_path_and_bytes_and_resizes(tmp_path):
    data = fixtures.write_jpeg(tmp_path / "a.jpg", seed=3, size=(40, 30))
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    from_path = decode_image(tmp_path / "a.jpg")
    from_bytes = decode_image(data)
    assert from_path.mode == from_bytes.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(from_path), reference)
    np.testing.assert_array_equal(np.asarray(from_bytes), reference)
    np.testing.assert_array_equal(np.asarray(decode_image({"bytes": data, "path": None})), reference)
    assert decode_image(data, size=16).size == (16, 16)
    assert decode_image(str(tmp_path / "a.jpg"), size=(20, 10)).size == (20, 10)
    # 224 and 448 both occur in releases: always resized, never asserted
    big = fixtures.jpeg_bytes(1, size=(448, 448))
    assert decode_image(big, size=224).size == (224, 224)


def test_decode_grayscale_becomes_rgb(tmp_path):
    Image.new("L", (10, 10), 128).save(tmp_path / "gray.jpg")
    image = decode_image(tmp_path / "gray.jpg")
    assert image.mode == "RGB" and np.asarray(image).shape == (10, 10, 3)


def test_decode_errors_name_the_file(tmp_path):
    data = fixtures.jpeg_bytes(0, size=(64, 64))
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated.jpg"):
        decode_image(tmp_path / "truncated.jpg")
    with pytest.raises(DataError, match="missing.jpg"):
        decode_image(tmp_path / "missing.jpg")
    with pytest.raises(DataError, match="embedded image data"):
        decode_image(b"not a jpeg")


def test_validate_images_skips_unreadable_with_report(fairface_folder):
    root, _ = fairface_folder
    (root / "train" / "4.jpg").write_bytes(b"garbage")
    data = (root / "val" / "2.jpg").read_bytes()
    (root / "val" / "2.jpg").write_bytes(data[:100])
    table = load_fairface(root)
    with pytest.warns(UserWarning, match="2 of 13 images cannot be decoded"):
        good, report = validate_images(table)
    assert report.checked == 13 and not report.ok
    assert report.unreadable["id"].tolist() == ["train/4.jpg", "val/2.jpg"]
    assert good["id"].tolist() == [i for i in table["id"] if i not in ("train/4.jpg", "val/2.jpg")]
    assert good["race"].dtype == table["race"].dtype


def test_validate_images_all_good(fairface_parquet):
    table = load_fairface(fairface_parquet.root)
    good, report = validate_images(table)
    assert report.ok and len(good) == len(table) and str(report) == f"all {len(table)} images decode"


# ------------------------------------------------------------------------------- Hub and parquet
def expected_hub_ids(padding, split, count):
    return [f"hub:{padding}:{split}:{row}" for row in range(count)]


def test_parquet_layout_maps_labels_by_string(fairface_parquet):
    table = load_fairface(fairface_parquet.root, padding="0.25")
    assert_canonical_types(table)
    assert table["id"].tolist() == expected_hub_ids("0.25", "train", 7) + expected_hub_ids("0.25", "val", 3)
    assert table["split"].tolist() == ["train"] * 7 + ["val"] * 3
    assert_labels_equal(table, pd.concat([fairface_parquet.labels["train"], fairface_parquet.labels["val"]], ignore_index=True))
    assert table["image"].tolist() == fairface_parquet.images["train"] + fairface_parquet.images["val"]


def test_parquet_fixture_embeds_hub_order():
    # guards the fixture itself: the integers on disk follow the Hub order, not ours
    labels = fixtures.fairface_labels("train", 7).drop(columns="file")
    dataset = fixtures.build_hub_dataset(labels, [fixtures.jpeg_bytes(i) for i in range(7)])
    codes = dataset["race"]
    assert [fixtures.HUB_RACE_ORDER[c] for c in codes] == labels["race"].tolist()
    assert codes != [fixtures.FAIRFACE_RACES.index(r) for r in labels["race"]]


def test_parquet_limit_spans_shards(fairface_parquet):
    shards = sorted((fairface_parquet.root / "0.25").glob("train-*.parquet"))
    first_shard_rows = pq.read_metadata(shards[0]).num_rows
    assert len(shards) == 2 and first_shard_rows < 5
    table = load_fairface(fairface_parquet.root, splits=("train",), limit=5)
    assert table["id"].tolist() == expected_hub_ids("0.25", "train", 5)
    assert_labels_equal(table, fairface_parquet.labels["train"].head(5))
    assert table["image"].tolist() == fairface_parquet.images["train"][:5]


def test_parquet_with_shuffled_gender_and_age_orders(tmp_path):
    orders = dict(gender_names=["Female", "Male"], age_names=list(reversed(fixtures.HUB_AGE_ORDER)))
    hub = fixtures.build_fairface_parquet(tmp_path / "hub", padding="1.25", **orders)
    table = load_fairface(hub.root, padding=1.25, splits=("val",))
    assert table["id"].tolist() == expected_hub_ids("1.25", "val", 3)
    assert_labels_equal(table, hub.labels["val"])


def test_parquet_wrong_padding_lists_what_exists(fairface_parquet):
    with pytest.raises(DataError, match="0.25/train-00000-of-00002.parquet"):
        load_fairface(fairface_parquet.root, padding="1.25")


def test_parquet_without_classlabel_metadata(fairface_parquet):
    for shard in (fairface_parquet.root / "0.25").glob("*.parquet"):
        table = pq.read_table(shard)
        pq.write_table(table.replace_schema_metadata(None), shard)
    with pytest.raises(DataError, match="no ClassLabel names"):
        load_fairface(fairface_parquet.root)


def test_table_from_hf_matches_parquet_reading(fairface_parquet):
    dataset = fixtures.build_hub_dataset(fairface_parquet.labels["val"], fairface_parquet.images["val"])
    converted = table_from_hf(dataset, "val", "0.25")
    from_parquet = load_fairface(fairface_parquet.root, splits=("val",))
    assert converted["image"].tolist() == from_parquet["image"].tolist()
    assert converted["id"].tolist() == from_parquet["id"].tolist()
    for column in ("age", "gender", "race"):
        assert converted[column].tolist() == from_parquet[column].astype(str).tolist()


def test_table_from_hf_respects_selection():
    labels = fixtures.fairface_labels("train", 6).drop(columns="file")
    images = [fixtures.jpeg_bytes(i) for i in range(6)]
    dataset = fixtures.build_hub_dataset(labels, images).select([4, 1])
    converted = table_from_hf(dataset, "train")
    assert converted["image"].tolist() == [images[4], images[1]]
    assert converted["race"].tolist() == labels["race"].iloc[[4, 1]].tolist()


def test_load_hub_uses_validation_split_and_int2str(monkeypatch):
    import datasets

    labels = fixtures.fairface_labels("val", 5).drop(columns="file")
    images = [fixtures.jpeg_bytes(i) for i in range(5)]
    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        count = int(split.split("[:")[1][:-1]) if "[:" in split else 5
        return fixtures.build_hub_dataset(labels, images).select(range(count))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    table = load_fairface("hub", padding="1.25", limit=2)
    assert calls == [("HuggingFaceM4/FairFace", "1.25", "train[:2]"), ("HuggingFaceM4/FairFace", "1.25", "validation[:2]")]
    assert table["id"].tolist() == expected_hub_ids("1.25", "train", 2) + expected_hub_ids("1.25", "val", 2)
    assert_labels_equal(table, pd.concat([labels.head(2), labels.head(2)], ignore_index=True))
    assert_canonical_types(table)


def test_load_hub_download_failure(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="network") as info:
        load_fairface("hub")
    assert "Couldn't reach the Hub" in str(info.value) and "local folder" in str(info.value)


def test_load_hub_without_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(DataError, match="pip install datasets"):
        load_fairface("hub")


# ------------------------------------------------------------------------------------- real data
@pytest.mark.real_data
def test_real_fairface_subset():
    table = load_fairface(paths.SHARED_FAIRFACE)
    assert table["split"].value_counts().to_dict() == {"train": 16000, "val": 2500}
    assert_canonical_types(table)
    assert not table[["age", "gender", "race"]].isna().any().any()  # every label string in vocabulary
    # cross-check against an independent parse of the CSVs
    raw = pd.read_csv(paths.SHARED_FAIRFACE / "fairface_label_val.csv", dtype=str)
    val = table[table["split"] == "val"]
    assert val["id"].tolist() == raw["file"].tolist()
    assert val["race"].astype(str).tolist() == raw["race"].tolist()
    sample = table.sample(n=300, random_state=0)
    good, report = validate_images(sample)
    assert report.ok and len(good) == 300
    assert decode_image(sample["image"].iloc[0], size=112).size == (112, 112)
