"""lib.lfw: images and protocol files of LFW (official, scikit-learn and synthetic layouts), gender lists."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fixtures
from lib import paths
from lib.errors import DataError
from lib.lfw import load_lfw, load_lfw_gender, read_pairs, view1_training_set

PAIR_KEYS = ["fold", "name1", "index1", "name2", "index2", "same"]
# The tiny fixture's View 2 has 2 folds; the loader warns that the protocol has 10 (tested in test_bad_inputs).
pytestmark = pytest.mark.filterwarnings("ignore:.*the LFW View 2 protocol has 10:UserWarning")


def expected_path(image_dir: Path, name: str, index: int) -> str:
    return str(image_dir.resolve() / name / f"{name}_{index:04d}.jpg")


def pair_records(table: pd.DataFrame) -> list[tuple]:
    return [tuple(row) for row in table[PAIR_KEYS].itertuples(index=False)]


# ------------------------------------------------------------------------------------ happy paths
@pytest.mark.parametrize("image_folder", ["lfw", "lfw_funneled", "lfw-deepfunneled"])
def test_official_layout(tmp_path, image_folder):
    copy = fixtures.build_lfw(tmp_path / "root", image_folder=image_folder)
    lfw = load_lfw(copy.root)
    assert lfw.image_dir == copy.image_dir.resolve()
    assert not lfw.people_from_pairs and lfw.note == "" and lfw.attributes is None

    expected_images = sorted((name, i) for name, n in fixtures.LFW_PEOPLE.items() for i in range(1, n + 1))
    assert list(zip(lfw.images["name"], lfw.images["index"])) == expected_images
    assert lfw.images["path"].tolist() == [expected_path(copy.image_dir, n, i) for n, i in expected_images]

    assert pair_records(lfw.pairs) == fixtures.LFW_VIEW2
    assert pair_records(lfw.dev_train_pairs) == fixtures.LFW_DEV_TRAIN
    assert pair_records(lfw.dev_test_pairs) == fixtures.LFW_DEV_TEST
    for table in (lfw.pairs, lfw.dev_train_pairs, lfw.dev_test_pairs):
        assert table["path1"].tolist() == [expected_path(copy.image_dir, r.name1, r.index1) for r in table.itertuples()]
        assert table["path2"].tolist() == [expected_path(copy.image_dir, r.name2, r.index2) for r in table.itertuples()]
        assert all(os.path.isfile(p) for p in table["path1"].tolist() + table["path2"].tolist())

    assert list(lfw.people_dev_train.itertuples(index=False, name=None)) == fixtures.LFW_PEOPLE_DEV_TRAIN
    assert list(lfw.people_dev_test.itertuples(index=False, name=None)) == fixtures.LFW_PEOPLE_DEV_TEST


def test_fold_identities(lfw_copy):
    lfw = load_lfw(lfw_copy.root)
    expected = sorted({(f, n) for f, n1, _, n2, _, _ in fixtures.LFW_VIEW2 for n in (n1, n2)})
    assert list(lfw.identities.itertuples(index=False, name=None)) == expected


def test_sklearn_home_derives_people_from_pairs(tmp_path):
    copy = fixtures.build_lfw(tmp_path / "scikit_learn_data", sklearn=True)
    for root in (copy.root, copy.protocol_dir):  # ~/scikit_learn_data or its lfw_home
        with pytest.warns(UserWarning, match="No people files"):
            lfw = load_lfw(root)
        assert lfw.image_dir.name == "lfw_funneled"
        assert lfw.people_from_pairs and "pairsDevTrain.txt" in lfw.note
        # people = names used in the View 1 pair files, count = images on disk (brute force)
        for pairs, people in ((fixtures.LFW_DEV_TRAIN, lfw.people_dev_train), (fixtures.LFW_DEV_TEST, lfw.people_dev_test)):
            names = sorted({n for _, n1, _, n2, _, _ in pairs for n in (n1, n2)})
            assert people["name"].tolist() == names
            assert people["count"].tolist() == [fixtures.LFW_PEOPLE[n] for n in names]
        assert pair_records(lfw.pairs) == fixtures.LFW_VIEW2


def test_image_folder_itself_as_root(lfw_copy):
    lfw = load_lfw(lfw_copy.image_dir)
    assert lfw.root == lfw_copy.protocol_dir.resolve() and len(lfw.pairs) == 8


def test_attributes_loaded_when_identities_csv_exists(tmp_path):
    lfw = load_lfw(fixtures.build_lfw(tmp_path / "synthetic", attributes=True).root)
    assert lfw.attributes["name"].tolist() == list(fixtures.LFW_PEOPLE)
    assert list(lfw.attributes["group"].cat.categories) == fixtures.SYNTHETIC_GROUPS
    assert lfw.attributes["group"].astype(str).tolist()[:3] == ["Group A", "Group B", "Group C"]
    female = lfw.attributes.loc[lfw.attributes["gender"] == "Female", "name"]
    assert set(female) == fixtures.LFW_FEMALE
    assert lfw.attributes["age"].astype(str).tolist()[:2] == ["0-2", "3-9"]
    assert list(lfw.attributes["age"].cat.categories) == fixtures.FAIRFACE_AGES


def test_attributes_with_unknown_labels(tmp_path):
    copy = fixtures.build_lfw(tmp_path / "synthetic", attributes=True)
    path = copy.protocol_dir / "identities.csv"
    path.write_text(path.read_text().replace(",Male,", ",M,", 1))
    with pytest.raises(DataError, match=r"unknown gender label\(s\) M"):
        load_lfw(copy.root)
    path.write_text("name,group\nAnn_Archer,Group A\n")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['gender', 'age'\]"):
        load_lfw(copy.root)


def test_view1_training_set(lfw_copy):
    lfw = load_lfw(lfw_copy.root)
    train = view1_training_set(lfw)
    names = sorted(name for name, _ in fixtures.LFW_PEOPLE_DEV_TRAIN)
    expected = [(name, i, names.index(name)) for name in names for i in range(1, fixtures.LFW_PEOPLE[name] + 1)]
    assert list(zip(train["name"], train["index"], train["label"])) == expected
    assert train["label"].dtype == np.int64
    assert set(train["name"]).isdisjoint(lfw.people_dev_test["name"])


def test_stray_files_are_ignored_with_warning(lfw_copy):
    (lfw_copy.image_dir / "Ann_Archer" / "Thumbs.db").write_bytes(b"x")
    (lfw_copy.image_dir / "Ann_Archer" / "Ben_Bishop_0009.jpg").write_bytes(b"x")  # wrong folder
    with pytest.warns(UserWarning, match="ignored 2 file"):
        lfw = load_lfw(lfw_copy.root)
    assert len(lfw.images) == sum(fixtures.LFW_PEOPLE.values())


# ------------------------------------------------------------------------------------ error paths
def test_missing_root_says_how_to_get_lfw(tmp_path):
    with pytest.raises(DataError, match="does not exist") as info:
        load_lfw(tmp_path / "nowhere")
    assert "fetch_lfw_pairs(download_if_missing=True)" in str(info.value)
    assert "lfw-deepfunneled.tgz" in str(info.value)


def test_root_without_image_folder(tmp_path):
    (tmp_path / "pairs.txt").write_text("1\t1\n")
    with pytest.raises(DataError, match="no LFW image folder"):
        load_lfw(tmp_path)


def test_missing_protocol_file(lfw_copy):
    (lfw_copy.protocol_dir / "pairsDevTest.txt").unlink()
    with pytest.raises(DataError, match=r"missing LFW protocol file\(s\) \['pairsDevTest.txt'\]"):
        load_lfw(lfw_copy.root)


def test_pairs_referencing_missing_images(lfw_copy):
    (lfw_copy.image_dir / "Fay_Fox" / "Fay_Fox_0002.jpg").unlink()
    (lfw_copy.image_dir / "Hal_Hunt" / "Hal_Hunt_0001.jpg").unlink()
    with pytest.raises(DataError, match=r"pairs.txt references 2 image\(s\)") as info:
        load_lfw(lfw_copy.root)
    assert "Fay_Fox_0002.jpg, Hal_Hunt_0001.jpg" in str(info.value)


@pytest.mark.parametrize("bad_line, reason", [
    ("Ann_Archer\t1\t2\t3\t4", "got 5"),
    ("Ann_Archer\t1", "got 2"),
    ("Ann_Archer\tone\t2", "whole numbers"),
    ("Ann_Archer\t0\t2", "start at 1"),
])
def test_malformed_pair_line_gives_line_number(lfw_copy, bad_line, reason):
    path = lfw_copy.protocol_dir / "pairs.txt"
    lines = path.read_text().splitlines()
    lines[3] = bad_line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=reason) as info:
        load_lfw(lfw_copy.root)
    assert "pairs.txt:4:" in str(info.value) and repr(bad_line) in str(info.value)


def test_pair_count_must_match_header(lfw_copy):
    path = lfw_copy.protocol_dir / "pairsDevTrain.txt"
    path.write_text(path.read_text().replace("2\n", "3\n", 1))
    with pytest.raises(DataError, match="announces 6 pairs but the file has 4"):
        load_lfw(lfw_copy.root)


def test_folds_must_be_half_matched(lfw_copy):
    path = lfw_copy.protocol_dir / "pairs.txt"
    lines = path.read_text().splitlines()
    lines[3], lines[5] = lines[5], lines[3]  # a matched pair of fold 1 swaps with a mismatched one of fold 0
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"pairs.txt:4: expected a mismatched \(name1 i name2 j\) line here"):
        load_lfw(lfw_copy.root)


def test_view1_file_with_view2_header(lfw_copy):
    path = lfw_copy.protocol_dir / "pairsDevTest.txt"
    path.write_text("1\t1\n" + path.read_text().split("\n", 1)[1])
    with pytest.raises(DataError, match="is not one count"):
        load_lfw(lfw_copy.root)


def test_only_one_people_file(lfw_copy):
    (lfw_copy.protocol_dir / "peopleDevTest.txt").unlink()
    with pytest.raises(DataError, match="peopleDevTest.txt"):
        load_lfw(lfw_copy.root)


def test_people_count_must_match_disk(lfw_copy):
    fixtures.write_jpeg(lfw_copy.image_dir / "Ivy_Ito" / "Ivy_Ito_0003.jpg", seed=99)  # 2 listed
    with pytest.raises(DataError, match=r"peopleDevTrain.txt: 1 people .* Ivy_Ito \(2 listed, 3 on disk\)"):
        load_lfw(lfw_copy.root)


def test_people_header_must_match_lines(lfw_copy):
    path = lfw_copy.protocol_dir / "peopleDevTrain.txt"
    path.write_text(path.read_text().replace("5\n", "6\n", 1))
    with pytest.raises(DataError, match="announces 6 people but the file lists 5"):
        load_lfw(lfw_copy.root)


def test_read_pairs_accepts_crlf(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_bytes(b"1\t1\r\nA_B\t1\t2\r\nA_B\t1\tC_D\t3\r\n")
    table = read_pairs(path)
    assert pair_records(table) == [(0, "A_B", 1, "A_B", 2, True), (0, "A_B", 1, "C_D", 3, False)]


@pytest.mark.parametrize("body, number, message", [
    ("A_B\t1\t1\nA_B\t2\t3\nA_B\t1\tC_D\t3\nA_B\t2\tC_D\t3\n", 2, "pairs image 1 of A_B with itself"),
    ("A_B\t1\t2\nA_B\t2\t2\nA_B\t1\tC_D\t3\nA_B\t2\tC_D\t3\n", 3, "pairs image 2 of A_B with itself"),
    ("A_B\t1\t2\nA_B\t2\t3\nA_B\t4\tA_B\t4\nA_B\t2\tC_D\t3\n", 4, "pairs image 4 of A_B with itself"),
    ("A_B\t1\t2\nA_B\t1\t2\nA_B\t1\tC_D\t3\nA_B\t2\tC_D\t3\n", 3, "repeats the pair of line 2"),
    ("A_B\t1\t2\nA_B\t2\t1\nA_B\t1\tC_D\t3\nA_B\t2\tC_D\t3\n", 3, "repeats the pair of line 2"),
    ("A_B\t1\t2\nA_B\t2\t3\nA_B\t1\tC_D\t3\nC_D\t3\tA_B\t1\n", 5, "repeats the pair of line 4"),
])
def test_self_pairs_and_duplicated_pairs_are_refused_with_their_line(tmp_path, body, number, message):
    """A self-pair (score 1 for any model) and a repeated pair were counted as genuine evidence."""
    path = tmp_path / "pairsDevTest.txt"
    path.write_text("2\n" + body)
    with pytest.raises(DataError, match=message) as info:
        read_pairs(path, view=1)
    assert f"pairsDevTest.txt:{number}:" in str(info.value)


def test_a_pair_repeated_in_another_fold_is_refused(tmp_path):
    path = tmp_path / "pairs.txt"
    fold = "A_B\t1\t2\nA_B\t1\tC_D\t3\n"
    path.write_text("2\t1\n" + fold + fold.replace("A_B\t1\t2", "C_D\t1\t2"))
    with pytest.raises(DataError, match=r"pairs.txt:5: .* repeats the pair of line 3"):
        read_pairs(path, view=2)


# ---------------------------------------------------------------------------------- gender lists
def test_gender_lists_mark_conflicts_and_unlisted(lfw_copy):
    lfw = load_lfw(lfw_copy.root)
    labels, report = load_lfw_gender(lfw_copy.protocol_dir / "gender", lfw)
    expected = fixtures.lfw_expected_gender()
    assert labels["file"].tolist() == sorted(expected)
    got = dict(zip(labels["file"], labels["gender"].astype(object).where(labels["gender"].notna(), None)))
    assert got == expected
    status = dict(zip(labels["file"], labels["status"]))
    assert status[fixtures.LFW_BOTH] == "in both lists" and status[fixtures.LFW_NEITHER] == "in neither list"
    assert (labels["name"] + "_" == labels["file"].str[: -len("0001.jpg")]).all()
    male = sum(n for name, n in fixtures.LFW_PEOPLE.items() if name not in fixtures.LFW_FEMALE) + 1
    assert report["male_entries"] == male
    assert report["female_entries"] == sum(fixtures.LFW_PEOPLE.values()) - male
    assert (report["in_both"], report["in_neither"], report["listed_not_on_disk"]) == (1, 1, 0)
    assert report["in_both_examples"] == [fixtures.LFW_BOTH]
    assert report["in_neither_examples"] == [fixtures.LFW_NEITHER]


def test_gender_lists_without_images(lfw_copy):
    labels, report = load_lfw_gender(lfw_copy.protocol_dir / "gender")
    assert fixtures.LFW_NEITHER not in set(labels["file"])
    assert report["in_neither"] is None and report["in_both"] == 1


def test_gender_list_errors(lfw_copy):
    folder = lfw_copy.protocol_dir / "gender"
    female = (folder / "female_names.txt").read_bytes()
    (folder / "female_names.txt").write_bytes(female + b"not an image\r\n")
    with pytest.raises(DataError, match=r"female_names.txt:\d+: expected an image file name"):
        load_lfw_gender(folder)
    (folder / "female_names.txt").unlink()
    with pytest.raises(DataError, match="missing gender list"):
        load_lfw_gender(folder)


# ------------------------------------------------------------------------------------- real data
def _names(pairs: pd.DataFrame) -> set:
    return set(pairs["name1"]) | set(pairs["name2"])


def _images(pairs: pd.DataFrame) -> set:
    return set(pairs["path1"]) | set(pairs["path2"])


@pytest.mark.real_data
def test_real_lfw():
    lfw = load_lfw(paths.SHARED_LFW)
    assert len(lfw.images) == 13233 and lfw.images["name"].nunique() == 5749
    assert lfw.image_dir.name == "lfw-deepfunneled"

    assert len(lfw.pairs) == 6000
    per_fold = lfw.pairs.groupby("fold")["same"].agg(["sum", "size"])
    assert per_fold.index.tolist() == list(range(10))
    assert (per_fold["sum"] == 300).all() and (per_fold["size"] == 600).all()
    folds_per_name = lfw.identities.groupby("name")["fold"].nunique()
    assert folds_per_name.max() == 1  # identity-disjoint folds

    assert (len(lfw.dev_train_pairs), len(lfw.dev_test_pairs)) == (2200, 1000)
    assert len(_names(lfw.dev_train_pairs) & _names(lfw.pairs)) == 1689
    assert len(_images(lfw.dev_train_pairs) & _images(lfw.pairs)) == 2507

    assert (len(lfw.people_dev_train), lfw.people_dev_train["count"].sum()) == (4038, 9525)
    assert (len(lfw.people_dev_test), lfw.people_dev_test["count"].sum()) == (1711, 3708)
    assert set(lfw.people_dev_train["name"]).isdisjoint(lfw.people_dev_test["name"])
    train = view1_training_set(lfw)
    assert len(train) == 9525 and train["label"].max() == 4037

    # spot-check the parser against the raw file: fold 3's first matched and first mismatched lines
    raw = paths.SHARED_LFW.joinpath("pairs.txt").read_text().splitlines()
    matched, mismatched = raw[1 + 3 * 600].split("\t"), raw[1 + 3 * 600 + 300].split("\t")
    first = lfw.pairs[lfw.pairs["fold"] == 3].iloc[[0, 300]]
    assert pair_records(first) == [
        (3, matched[0], int(matched[1]), matched[0], int(matched[2]), True),
        (3, mismatched[0], int(mismatched[1]), mismatched[2], int(mismatched[3]), False),
    ]


@pytest.mark.real_data
def test_real_lfw_gender_lists():
    lfw = load_lfw(paths.SHARED_LFW)
    labels, report = load_lfw_gender(paths.SHARED_LFW_GENDER, lfw)
    assert (report["male_entries"], report["female_entries"]) == (10268, 2966)
    assert (report["in_both"], report["in_neither"], report["listed_not_on_disk"]) == (5, 4, 0)
    assert len(labels) == 13233 and labels["gender"].isna().sum() == 9
