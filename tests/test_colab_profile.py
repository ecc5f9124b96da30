"""The colab profile's route through every notebook, offline and on a CPU.

Every notebook runs with ``params/colab.yaml``'s parameters and only the overrides below (data size,
epochs, CPU, no ImageNet download), with the colab profile's own data route: LFW from scikit-learn's
``lfw_home`` (``lfw_source: sklearn``) found in the persistent folder ``FACE_STORAGE`` points at, gender
labels from the lists shipped in ``data/lfw_gender/``, FairFace from parquet files in the Hub's layout
(the Hub itself needs the internet, so ``fairface_source`` points at a local copy of its files), and
checkpoints, caches and results in ``FACE_STORAGE``. The test reads parameters, not cell contents.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

import fixtures
from lib import fairness_analysis, notebooks, paths, synthetic

PROFILE = "colab"
RUN_LABEL = "colab-offline-test"  # the `profile` parameter names output folders; a real colab run keeps its own

OVERRIDES = {
    "profile": RUN_LABEL,
    "device": "cpu",
    "allow_cpu": True,  # the profile stops without a GPU unless this is set
    "amp": False,
    "weights": None,  # ImageNet weights would be downloaded
    "seeds": [0],
    "epochs": 1,
    "batch_size": 8,
    "eval_every": 1,
    "crop": None,  # the tiny LFW images are 24 px, smaller than the 150 px crop
    "toy_identities": 3,
    "toy_steps": 5,
    "n_boot": 50,
    "n_permutations": 50,
}
NOTEBOOK_OVERRIDES = {"03_cosrelu_vs_softmax": {"image_size": 32}}  # 02's SphereCNN needs its 96 px


# ------------------------------------------------------------------------------ data in the colab layout
def listed_names(gender_list: Path) -> dict[str, set[int]]:
    """Person -> the image numbers a shipped gender list names."""
    numbers: dict[str, set[int]] = {}
    for line in gender_list.read_text().splitlines():
        name, _, number = line.strip().removesuffix(".jpg").rpartition("_")
        numbers.setdefault(name, set()).add(int(number))
    return numbers


def build_sklearn_lfw_with_listed_people(data_home: Path) -> dict[str, str]:
    """The smoke preset's synthetic LFW (enough pairs for notebook 02's 10-fold protocol) laid out as
    scikit-learn's download, ``<data_home>/lfw_home/lfw_funneled/`` + the three pair files and nothing
    else, each person renamed to a real LFW person of the same gender in the shipped lists, so that those
    lists label every image. Returns person -> gender under the new names."""
    source = synthetic.ensure_synthetic(preset="smoke") / "lfw"
    genders = pd.read_csv(source / "identities.csv").set_index("name")["gender"]
    image_dir = source / "lfw"
    listed = {gender: listed_names(paths.LFW_GENDER_LISTS / file) for gender, file in
              (("Male", "male_names.txt"), ("Female", "female_names.txt"))}
    renaming, used = {}, set()
    for person in sorted(p.name for p in image_dir.iterdir()):
        numbers = {int(image.stem.rpartition("_")[2]) for image in (image_dir / person).glob("*.jpg")}
        gender = genders[person]
        other = listed["Female" if gender == "Male" else "Male"]
        renaming[person] = next(name for name, listed_numbers in sorted(listed[gender].items())
                                if name not in used and name not in other and numbers <= listed_numbers)
        used.add(renaming[person])
    lfw_home = data_home / "lfw_home"
    for person, new in renaming.items():
        (lfw_home / "lfw_funneled" / new).mkdir(parents=True)
        for image in (image_dir / person).glob("*.jpg"):
            shutil.copyfile(image, lfw_home / "lfw_funneled" / new / image.name.replace(person, new))
    for pair_file in ("pairs.txt", "pairsDevTrain.txt", "pairsDevTest.txt"):
        lines = (source / pair_file).read_text().splitlines()
        (lfw_home / pair_file).write_text("".join("\t".join(renaming.get(field, field) for field in line.split("\t"))
                                                  + "\n" for line in lines))
    return {renaming[person]: genders[person] for person in renaming}


@pytest.fixture
def storage(tmp_path):
    """A persistent folder as on Drive, already holding scikit-learn's LFW download; (folder, person genders)."""
    folder = tmp_path / "drive"
    return folder, build_sklearn_lfw_with_listed_people(folder / "downloads" / "scikit_learn_data")


# ------------------------------------------------------------------------------------------------ tests
@pytest.mark.filterwarnings("ignore:No people files")
def test_shipped_gender_lists_label_scikit_learns_lfw(storage):
    folder, genders = storage
    lfw_home = folder / "downloads" / "scikit_learn_data" / "lfw_home"
    assert paths.lfw_gender_folder(lfw_home) == paths.LFW_GENDER_LISTS  # lfw_home has no gender/ folder
    faces, report = fairness_analysis.lfw_face_groups(lfw_home)
    expected = {image.name: genders[image.parent.name] for image in (lfw_home / "lfw_funneled").glob("*/*.jpg")}
    assert len(expected) > 100
    labelled = dict(zip(faces["file"], faces["gender"]))  # also lists images this copy does not have
    assert {file: labelled.get(file) for file in expected} == expected
    assert report["male_entries"] == 10_268 and report["female_entries"] == 2_966
    assert report["in_both"] == 5


def test_launcher_notebook_runs_the_colab_profile():
    import nbformat

    launcher = paths.NOTEBOOKS / "run_on_colab.ipynb"
    notebook = nbformat.read(launcher, as_version=4)
    nbformat.validate(notebook)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert "!make all PROFILE=colab" in code.splitlines()
    for variable in (paths.STORAGE_ENV, paths.CACHE_ENV):
        assert f'os.environ["{variable}"]' in code
    assert launcher.with_suffix(".py") not in notebooks.notebook_sources()  # not one of the series


@pytest.mark.slow
def test_every_notebook_runs_with_the_colab_profile_offline(storage, tmp_path, monkeypatch):
    import papermill

    storage, _ = storage
    monkeypatch.setenv(paths.STORAGE_ENV, str(storage))  # read by lib.paths in each notebook's kernel
    monkeypatch.delenv(paths.CACHE_ENV, raising=False)
    monkeypatch.delenv("SCIKIT_LEARN_DATA", raising=False)
    # The kernels import this checkout's lib, whichever checkout the environment has installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(paths.ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    for name, value in notebooks.KERNEL_ENV.items():
        monkeypatch.setenv(name, value)
    hub_copy = fixtures.build_fairface_parquet(tmp_path / "hub", n_train=42, n_val=14)
    overrides = {**OVERRIDES, "fairface_source": str(hub_copy.root)}
    out = tmp_path / "executed"
    out.mkdir()
    try:
        for source in notebooks.notebook_sources():
            parameters = notebooks.notebook_parameters(PROFILE, source.stem)
            declared = notebooks.declared_parameters(source.stem)
            parameters.update({key: value for key, value in overrides.items() if key in declared})
            parameters.update(NOTEBOOK_OVERRIDES.get(source.stem, {}))
            papermill.execute_notebook(str(source.with_suffix(".ipynb")), str(out / f"{source.stem}.ipynb"),
                                       parameters=parameters, cwd=str(paths.NOTEBOOKS), kernel_name="python3",
                                       progress_bar=False)
    finally:
        shutil.rmtree(paths.FIGURES / RUN_LABEL, ignore_errors=True)  # figures stay in the checkout by design

    results = storage / "results" / RUN_LABEL
    scores = pd.read_csv(results / "02_lfw_pair_scores.csv")
    predictions = pd.read_csv(results / "03_predictions.csv")
    assert len(predictions) == 14 * 5  # every validation image, once per head (one seed)
    assert scores["head"].nunique() == 5
    assert sorted(p.suffix for p in (storage / "checkpoints" / RUN_LABEL).rglob("*.pt"))  # resumable
    assert any((storage / "cache").iterdir())
    assert not (storage / "downloads" / "scikit_learn_data" / ".lfw_download").exists()  # nothing downloaded
    for inside_checkout in (paths.DATA / "results" / RUN_LABEL, paths.DATA / "checkpoints" / RUN_LABEL):
        assert not inside_checkout.exists()
