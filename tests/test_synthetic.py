"""lib.synthetic: determinism, the real on-disk formats, reuse/regeneration, and face-like content.

Expected formats are spelled out here (literal vocabularies and headers, parsing by hand) rather
than taken from the code under test, so a wrong constant or writer in the library makes a test fail.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import mannwhitneyu

from lib import synthetic

GROUPS = [f"Group {letter}" for letter in "ABCDEFG"]
GENDERS = ["Male", "Female"]
AGES = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70"]
SMOKE = {"fairface_train": 140, "fairface_val": 70, "lfw_identities": 40, "pairs_per_fold": 3}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    """The smoke preset, seed 0, rendered in this process (one worker)."""
    return synthetic.generate(tmp_path_factory.mktemp("synthetic") / "smoke", preset="smoke", seed=0, workers=1)


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read_csv_rows(path: Path) -> tuple[str, list[list[str]]]:
    text = path.read_text()
    assert text.endswith("\n") and "\r" not in text
    header, *rows = text.splitlines()
    return header, [row.split(",") for row in rows]


def parse_pairs(path: Path):
    """(header fields, matched [(name, i, j)], mismatched [(name1, i, name2, j)]) in file order."""
    text = path.read_text()
    assert text.endswith("\n") and "\r" not in text and " " not in text
    header, *lines = text.splitlines()
    matched, mismatched = [], []
    for line in lines:
        fields = line.split("\t")
        if len(fields) == 3:
            matched.append((fields[0], int(fields[1]), int(fields[2])))
        else:
            assert len(fields) == 4, line
            mismatched.append((fields[0], int(fields[1]), fields[2], int(fields[3])))
    return header.split("\t"), matched, mismatched, lines


def people_on_disk(lfw: Path) -> dict[str, int]:
    return {person.name: len(list(person.iterdir())) for person in (lfw / "lfw").iterdir()}


# ------------------------------------------------------------------------------------ determinism
def test_byte_identical_for_a_seed_whatever_the_worker_count(smoke, tmp_path):
    again = synthetic.generate(tmp_path / "again", preset="smoke", seed=0, workers=2)
    first, second = all_files(smoke), all_files(again)
    assert first.keys() == second.keys()
    differing = [name for name in first if first[name] != second[name]]
    assert differing == []
    assert not list(tmp_path.glob(".again*")), "the temporary build folder must be gone"


def test_ensure_synthetic_reuses_matching_data_and_regenerates_otherwise(smoke, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(smoke, copy)
    calls = []
    real_generate = synthetic.generate
    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: calls.append((a, k)) or Path(a[0]))
    assert synthetic.ensure_synthetic("smoke", 0, copy) == copy and calls == []  # same settings: reused

    metadata = json.loads((copy / "metadata.json").read_text())
    for change in ({"generator_version": "0"}, {"preset": "default"}, {"seed": 5}):
        (copy / "metadata.json").write_text(json.dumps({**metadata, **change}))
        synthetic.ensure_synthetic("smoke", 0, copy)
    (copy / "metadata.json").unlink()
    synthetic.ensure_synthetic("smoke", 0, copy)
    assert len(calls) == 4 and all(k["seed"] == 0 and k["preset"] == "smoke" for _, k in calls)

    # a different seed really regenerates, in place, with different bytes
    (copy / "metadata.json").write_text(json.dumps(metadata))
    monkeypatch.setattr(synthetic, "generate", real_generate)
    assert synthetic.ensure_synthetic("smoke", 1, copy) == copy
    assert json.loads((copy / "metadata.json").read_text())["seed"] == 1
    before, after = all_files(smoke), all_files(copy)
    images = [name for name in before if name.endswith(".jpg") and name in after]
    assert images and sum(before[name] == after[name] for name in images) == 0


def test_failed_generation_leaves_nothing_half_written(smoke, tmp_path, monkeypatch):
    root = tmp_path / "data"
    shutil.copytree(smoke, root)
    original = all_files(root)

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash while rendering")

    monkeypatch.setattr(synthetic, "_render_all", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        synthetic.generate(root, preset="smoke", seed=3)
    assert all_files(root) == original  # the old dataset is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temporary folder left behind
    with pytest.raises(RuntimeError):
        synthetic.generate(tmp_path / "fresh", preset="smoke", seed=3)
    assert not (tmp_path / "fresh").exists()


def test_refuses_to_replace_a_folder_that_is_not_synthetic(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "pairs.txt").write_text("10\t300\n")
    with pytest.raises(ValueError, match="not a synthetic dataset"):
        synthetic.generate(tmp_path / "real", preset="smoke")
    with pytest.raises(ValueError, match="unknown synthetic preset"):
        synthetic.generate(tmp_path / "x", preset="huge")


# ---------------------------------------------------------------------------------------- FairFace
def test_fairface_csvs_images_and_balanced_service_test(smoke):
    folder = smoke / "fairface"
    for split in ("train", "val"):
        header, rows = read_csv_rows(folder / f"fairface_label_{split}.csv")
        assert header == "file,age,gender,race,service_test"
        count = SMOKE[f"fairface_{split}"]
        assert [row[0] for row in rows] == [f"{split}/{n}.jpg" for n in range(1, count + 1)]
        assert sorted(p.name for p in (folder / split).iterdir()) == sorted(f"{n}.jpg" for n in range(1, count + 1))
        assert all(len(row) == 5 for row in rows)
        assert {row[1] for row in rows} <= set(AGES) and {row[2] for row in rows} == set(GENDERS)
        assert {row[3] for row in rows} == set(GROUPS)  # every group present, nothing else
        assert {row[4] for row in rows} == {"True", "False"}
        cells = Counter((row[3], row[2]) for row in rows if row[4] == "True")
        assert len(cells) == 14 and len(set(cells.values())) == 1  # same count in every group x gender cell
        for row in rows[:10]:
            with Image.open(folder / row[0]) as image:
                assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (224, 224))


def test_planted_duplicates_are_exactly_the_byte_identical_files(smoke):
    folder = smoke / "fairface"
    by_hash: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*/*.jpg")):
        by_hash.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), []).append(str(path.relative_to(folder)))
    found = sorted(sorted(files) for files in by_hash.values() if len(files) > 1)
    planted = json.loads((smoke / "metadata.json").read_text())["planted_duplicates"]
    assert found == sorted(sorted([d["original"], d["copy"]]) for d in planted)
    splits = [(d["original"].split("/")[0], d["copy"].split("/")[0]) for d in planted]
    assert splits.count(("train", "val")) == 2 and ("train", "train") in splits

    labels = {}
    for split in ("train", "val"):
        _, rows = read_csv_rows(folder / f"fairface_label_{split}.csv")
        labels.update({row[0]: tuple(row[1:4]) for row in rows})
    conflicting = [d for d in planted if labels[d["original"]] != labels[d["copy"]]]
    assert len(conflicting) == 1 and conflicting[0]["conflicting_label"] == "race"
    original, copy = labels[conflicting[0]["original"]], labels[conflicting[0]["copy"]]
    assert original[:2] == copy[:2] and original[2] != copy[2]  # same age and gender, other group


# --------------------------------------------------------------------------------------------- LFW
def test_lfw_images_names_and_people_files(smoke):
    lfw = smoke / "lfw"
    on_disk = people_on_disk(lfw)
    assert len(on_disk) == SMOKE["lfw_identities"]
    for name, count in on_disk.items():
        assert re.fullmatch(r"[A-Z][a-z]+(_[A-Z][a-z]+)+", name)
        files = sorted(p.name for p in (lfw / "lfw" / name).iterdir())
        assert files == [f"{name}_{k:04d}.jpg" for k in range(1, count + 1)]
    counts = sorted(on_disk.values())
    assert counts.count(1) >= 5 and counts[-1] >= 10  # long-tailed: singletons and someone with many
    with Image.open(next((lfw / "lfw").rglob("*.jpg"))) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (250, 250))

    people = {}
    for title in ("DevTrain", "DevTest"):
        text = (lfw / f"people{title}.txt").read_text()
        header, *lines = text.splitlines()
        assert text.endswith("\n") and int(header) == len(lines)
        people[title] = dict((name, int(count)) for name, count in (line.split("\t") for line in lines))
        assert all(on_disk[name] == count for name, count in people[title].items())  # counts match the files
    assert people["DevTrain"].keys().isdisjoint(people["DevTest"])
    assert people["DevTrain"].keys() | people["DevTest"].keys() == on_disk.keys()

    header, rows = read_csv_rows(lfw / "identities.csv")
    assert header == "name,group,gender,age"
    assert sorted(row[0] for row in rows) == sorted(on_disk)
    assert {row[1] for row in rows} <= set(GROUPS) and {row[2] for row in rows} <= set(GENDERS)
    assert {row[3] for row in rows} <= set(AGES)


def test_view2_pairs_have_identity_disjoint_folds(smoke):
    lfw = smoke / "lfw"
    header, matched, mismatched, lines = parse_pairs(lfw / "pairs.txt")
    folds, per_fold = int(header[0]), int(header[1])
    assert (folds, per_fold) == (10, SMOKE["pairs_per_fold"]) and len(lines) == 2 * folds * per_fold
    on_disk = people_on_disk(lfw)
    fold_people = []
    for k in range(folds):
        block = lines[2 * per_fold * k: 2 * per_fold * (k + 1)]
        assert all(len(line.split("\t")) == 3 for line in block[:per_fold])  # P matched, then
        assert all(len(line.split("\t")) == 4 for line in block[per_fold:])  # P mismatched
        names = set()
        for line in block:
            fields = line.split("\t")
            pairs = [(fields[0], fields[1]), (fields[0], fields[2])] if len(fields) == 3 else [fields[0:2], fields[2:4]]
            for name, index in pairs:
                assert 1 <= int(index) <= on_disk[name]
                names.add(name)
        fold_people.append(names)
    for a in range(folds):
        for b in range(a + 1, folds):
            assert fold_people[a].isdisjoint(fold_people[b]), f"folds {a + 1} and {b + 1} share people"
    assert all(i != j for _, i, j in matched) and all(n1 != n2 for n1, _, n2, _ in mismatched)
    assert len(set(matched)) == len(matched) and len(set(mismatched)) == len(mismatched)


def test_view1_pairs_use_only_their_own_people(smoke):
    lfw = smoke / "lfw"
    on_disk = people_on_disk(lfw)
    people = {t: {line.split("\t")[0] for line in (lfw / f"people{t}.txt").read_text().splitlines()[1:]}
              for t in ("DevTrain", "DevTest")}
    for title, expected in (("DevTrain", 20), ("DevTest", 8)):
        header, matched, mismatched, lines = parse_pairs(lfw / f"pairs{title}.txt")
        assert header == [str(expected)] and len(matched) == len(mismatched) == expected
        assert lines == [f"{n}\t{i}\t{j}" for n, i, j in matched] + [f"{a}\t{i}\t{b}\t{j}" for a, i, b, j in mismatched]
        used = {n for n, _, _ in matched} | {n for a, _, b, _ in mismatched for n in (a, b)}
        assert used <= people[title]
        assert all(1 <= i < j <= on_disk[n] for n, i, j in matched)
        assert all(a != b and i <= on_disk[a] and j <= on_disk[b] for a, i, b, j in mismatched)


def test_gender_lists_are_crlf_and_match_the_identities(smoke):
    lfw = smoke / "lfw"
    _, rows = read_csv_rows(lfw / "identities.csv")
    gender_of = {row[0]: row[2] for row in rows}
    every_image = {p.name for p in (lfw / "lfw").rglob("*.jpg")}
    listed = {}
    for gender, file in (("Male", "male_names.txt"), ("Female", "female_names.txt")):
        data = (lfw / "gender" / file).read_bytes()
        assert data.endswith(b"\r\n") and data.count(b"\n") == data.count(b"\r\n")
        listed[gender] = data.decode().split("\r\n")[:-1]
        assert all(gender_of[re.sub(r"_\d{4}\.jpg$", "", f)] == gender for f in listed[gender])
    assert set(listed["Male"]).isdisjoint(listed["Female"])
    assert set(listed["Male"]) | set(listed["Female"]) == every_image


def test_metadata_describes_what_was_written(smoke):
    metadata = json.loads((smoke / "metadata.json").read_text())
    assert (metadata["preset"], metadata["seed"]) == ("smoke", 0)
    assert metadata["generator_version"] == synthetic.GENERATOR_VERSION
    counts = metadata["counts"]
    assert counts["lfw_images"] == len(list((smoke / "lfw" / "lfw").rglob("*.jpg")))
    assert counts["fairface_train"] == len(list((smoke / "fairface" / "train").iterdir()))
    assert list(metadata["group_difficulty"]) == GROUPS and metadata["planted_disparity"]
    difficulty = metadata["group_difficulty"]
    order = metadata["expected_order_easiest_to_hardest"]
    assert sorted(order) == GROUPS and all(difficulty[a] < difficulty[b] for a, b in zip(order, order[1:]))


def test_the_project_loaders_read_it(smoke):
    """The layout is the one lib.fairface and lib.lfw expect (protocol files beside an ``lfw/`` image folder)."""
    from lib.fairface import load_fairface
    from lib.lfw import load_lfw

    table = load_fairface(smoke / "fairface")
    assert len(table) == SMOKE["fairface_train"] + SMOKE["fairface_val"]
    assert sorted(table["race"].astype(str).unique()) == GROUPS
    lfw = load_lfw(smoke / "lfw")
    assert len(lfw.pairs) == 10 * 2 * SMOKE["pairs_per_fold"]
    assert len(lfw.images) == len(list((smoke / "lfw" / "lfw").rglob("*.jpg")))
    assert lfw.attributes is not None and len(lfw.attributes) == SMOKE["lfw_identities"]


# ----------------------------------------------------------------------------------- planted facts
def test_group_prototypes_are_equidistant():
    prototypes = synthetic.GROUP_PROTOTYPES
    distances = [np.linalg.norm(prototypes[a] - prototypes[b]) for a in range(7) for b in range(a + 1, 7)]
    np.testing.assert_allclose(distances, synthetic.GROUP_SEPARATION, rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(prototypes, axis=1), np.linalg.norm(prototypes[0]), rtol=1e-12)


def photos_of_people(group: str, people: int = 60, photos: int = 8) -> np.ndarray:
    """(people, photos, 4) drawing quantities of adult men of ``group``, one photo stream each."""
    rows = []
    for person in range(people):
        looks = [synthetic.sample_appearance(np.random.default_rng([5, person]), group, "Male", "30-39",
                                             np.random.default_rng([6, person, photo])) for photo in range(photos)]
        rows.append([[a.face_width, a.eye_spacing, a.nose_length, a.mouth_width] for a in looks])
    return np.array(rows)


def test_hard_groups_vary_more_between_photos_but_not_per_image():
    easy, hard = photos_of_people("Group A"), photos_of_people("Group G")
    within = lambda x: x.std(axis=1).mean(axis=0)  # noqa: E731 - spread across one person's photos
    overall = lambda x: x.reshape(-1, x.shape[2]).std(axis=0)  # noqa: E731 - spread across all images
    assert np.all(within(hard) > 1.8 * within(easy))
    np.testing.assert_allclose(overall(hard), overall(easy), rtol=0.3)  # one image does not tell d
    # the same person without a photo stream always looks the same
    people = [synthetic.sample_appearance(np.random.default_rng([5, 0]), "Group G", "Male", "30-39") for _ in range(2)]
    assert people[0] == people[1]


# ------------------------------------------------------------------------------------ face content
def test_faces_have_a_skin_coloured_centre_and_smooth_regions(smoke):
    """Skin (red above blue) fills the face centre in nearly every image, the corners far less; not noise."""
    files = sorted((smoke / "fairface" / "train").glob("*.jpg"))
    skin_centre, skin_corner, neighbour_corr = [], [], []
    for path in files:
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        centre = pixels[112:132, 92:132].reshape(-1, 3).mean(0)  # cheeks and nose (below the eyes)
        corners = [pixels[:20, :20], pixels[:20, -20:]]
        skin_centre.append(centre[0] > centre[2])
        skin_corner += [corner.reshape(-1, 3).mean(0)[0] > corner.reshape(-1, 3).mean(0)[2] for corner in corners]
        gray = pixels.mean(axis=2)
        neighbour_corr.append(np.corrcoef(gray[:, :-1].ravel(), gray[:, 1:].ravel())[0, 1])
    assert np.mean(skin_centre) > 0.95
    assert np.mean(skin_corner) < 0.7  # random backgrounds: about half
    assert np.median(neighbour_corr) > 0.9  # i.i.d. noise would give ~0


def test_same_person_images_are_closer_than_different_people(smoke):
    """Identity structure: a noise or random-blob generator has no persistent per-person look."""
    lfw = smoke / "lfw" / "lfw"
    people = {p.name: sorted(p.iterdir())[:6] for p in lfw.iterdir() if len(list(p.iterdir())) >= 3}
    assert len(people) >= 8

    def face(path):  # the face's middle, 16x16 gray
        with Image.open(path) as image:
            middle = image.convert("L").crop((80, 70, 170, 170)).resize((16, 16), Image.BILINEAR)
            return np.asarray(middle, dtype=np.float64).ravel()

    features = {name: np.stack([face(f) for f in files]) for name, files in people.items()}
    names = sorted(features)
    within = [np.linalg.norm(x[i] - x[j]) for x in features.values()
              for i in range(len(x)) for j in range(i + 1, len(x))]
    between = [np.linalg.norm(features[a][i] - features[b][j]) for k, a in enumerate(names) for b in names[k + 1:]
               for i in range(len(features[a])) for j in range(len(features[b]))]
    assert mannwhitneyu(within, between, alternative="less").pvalue < 1e-4  # noise: p ~ 0.5
    assert min(within) > 0  # no two images of a person are identical


def test_nuisance_strength_scales_pose_and_degradation_of_the_same_draws():
    full = synthetic.sample_nuisance(np.random.default_rng(7), 1.0)
    weak = synthetic.sample_nuisance(np.random.default_rng(7), 0.2)
    none = synthetic.sample_nuisance(np.random.default_rng(7), 0.0)
    # the same random numbers: pose spread scaled (roll's N(0, 8) draw, clipped at 20 degrees only at full strength)
    assert abs(full.roll) < 20 and weak.roll == pytest.approx(0.2 * full.roll)
    assert weak.shift == pytest.approx(tuple(0.2 * v for v in full.shift))
    assert none.roll == 0 and none.yaw == 0 and none.pitch == 0 and none.scale == 1 and none.shift == (0, 0)
    assert weak.noise_seed == full.noise_seed and weak.background == full.background
    assert none.contrast <= 1 and none.blur <= 0.8 and none.noise <= 4.0  # severity 0: only the mild base ranges
    with pytest.raises(ValueError, match="strength"):
        synthetic.sample_nuisance(np.random.default_rng(7), 1.5)


def test_default_preset_weakens_only_the_lfw_style_nuisance():
    config = synthetic.get_config("default")
    assert config.lfw_nuisance == 0.2 and synthetic.get_config("smoke").lfw_nuisance == 1.0
    lfw_jobs = synthetic._plan_lfw(config, 0)[2]
    fairface_jobs = synthetic._plan_fairface(config, 0)[1]
    assert {job.nuisance for job in lfw_jobs} == {0.2} and {job.framing for job in lfw_jobs} == {"lfw"}
    assert {job.nuisance for job in fairface_jobs} == {1.0} and {job.framing for job in fairface_jobs} == {"fairface"}
