"""lib.paths: the persistent-storage setting (read when the module is imported, so each case runs in a
fresh interpreter), the scikit-learn LFW source, the gender-list fallback, and the profile key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lib import notebooks, paths

PROBE = """
import json, os
from lib import paths
print(json.dumps({
    "storage": str(paths.STORAGE), "cache": str(paths.CACHE), "checkpoints": str(paths.CHECKPOINTS),
    "results": str(paths.RESULTS), "sklearn": str(paths.SKLEARN_DATA), "figures": str(paths.FIGURES),
    "reports": str(paths.REPORTS), "lfw_home": str(paths.dataset_root("sklearn", "lfw")),
    "env": {key: os.environ.get(key) for key in ("HF_HUB_CACHE", "HF_DATASETS_CACHE", "HF_HOME", "TORCH_HOME")},
}))
"""


def probe(**environment: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items()
           if key not in ("FACE_STORAGE", "FACE_CACHE", "SCIKIT_LEARN_DATA", "HF_HUB_CACHE", "HF_DATASETS_CACHE",
                          "HF_HOME", "TORCH_HOME")}
    env.update(environment)
    return subprocess.run([sys.executable, "-c", PROBE], cwd=paths.ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def probed(**environment: str) -> dict:
    result = probe(**environment)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_without_storage_everything_stays_in_the_checkout():
    found = probed(HOME="/home/someone")
    data = paths.ROOT / "data"
    assert found["storage"] == "None"
    assert (found["cache"], found["checkpoints"], found["results"]) == (str(data / "cache"), str(data / "checkpoints"),
                                                                         str(data / "results"))
    assert found["sklearn"] == "/home/someone/scikit_learn_data"  # scikit-learn's own default
    assert found["lfw_home"] == "/home/someone/scikit_learn_data/lfw_home"
    assert set(found["env"].values()) == {None}


def test_storage_moves_checkpoints_caches_results_and_downloads(tmp_path):
    drive = tmp_path / "MyDrive" / "faces"
    (tmp_path / "MyDrive").mkdir()
    found = probed(FACE_STORAGE=str(drive))
    assert found["storage"] == str(drive)
    for key, folder in (("cache", "cache"), ("checkpoints", "checkpoints"), ("results", "results")):
        assert found[key] == str(drive / folder)
    assert found["lfw_home"] == str(drive / "downloads" / "scikit_learn_data" / "lfw_home")
    assert found["env"] == {"HF_HUB_CACHE": str(drive / "downloads" / "huggingface" / "hub"),
                            "HF_DATASETS_CACHE": str(drive / "downloads" / "huggingface" / "datasets"),
                            "HF_HOME": None, "TORCH_HOME": str(drive / "downloads" / "torch")}
    assert (found["figures"], found["reports"]) == (str(paths.ROOT / "figures"), str(paths.ROOT / "reports"))


def test_cache_and_library_settings_override_storage(tmp_path):
    found = probed(FACE_STORAGE=str(tmp_path / "drive"), FACE_CACHE=str(tmp_path / "local"),
                   SCIKIT_LEARN_DATA=str(tmp_path / "sk"), TORCH_HOME=str(tmp_path / "torch"))
    assert found["cache"] == str(tmp_path / "local")
    assert found["checkpoints"] == str(tmp_path / "drive" / "checkpoints")
    assert found["sklearn"] == str(tmp_path / "sk")
    assert found["env"]["TORCH_HOME"] == str(tmp_path / "torch")


def test_storage_on_an_unmounted_drive_is_an_error(tmp_path):
    result = probe(FACE_STORAGE=str(tmp_path / "drive" / "MyDrive" / "faces"))
    assert result.returncode != 0
    assert f"its parent folder {tmp_path / 'drive' / 'MyDrive'} does not exist" in result.stderr
    assert "drive.mount" in result.stderr
    assert not (tmp_path / "drive").exists()  # nothing created where the mount point belongs


def test_sklearn_source_is_lfw_only():
    assert paths.dataset_root("sklearn", "lfw") == paths.SKLEARN_DATA / "lfw_home"
    with pytest.raises(ValueError, match="only provides LFW"):
        paths.dataset_root("sklearn", "fairface")


def test_gender_lists_fall_back_to_the_shipped_ones(tmp_path):
    assert paths.lfw_gender_folder(tmp_path) == paths.ROOT / "data" / "lfw_gender"
    (tmp_path / "gender").mkdir()
    assert paths.lfw_gender_folder(tmp_path) == tmp_path / "gender"
    assert paths.lfw_gender_folder(tmp_path, "~/lists") == Path("~/lists").expanduser()
    assert paths.lfw_gender_folder(tmp_path, "elsewhere") == paths.ROOT / "elsewhere"
    for name in ("male_names.txt", "female_names.txt"):
        assert (paths.ROOT / "data" / "lfw_gender" / name).is_file()


def test_shown_paths_are_relative_inside_the_checkout_only(tmp_path):
    assert paths.shown(paths.ROOT / "data" / "results" / "x.csv") == os.path.join("data", "results", "x.csv")
    assert paths.shown(tmp_path / "x.csv") == str(tmp_path / "x.csv")


def test_profile_storage_dir_reaches_the_notebook_kernels(monkeypatch, tmp_path):
    """``common: storage_dir`` becomes FACE_STORAGE for the kernels; an environment variable wins."""
    seen = []

    def fake_execute_notebook(source, target, **kwargs):
        seen.append(os.environ.get(paths.STORAGE_ENV))
        Path(target).write_text(nbformat.writes(nbformat.v4.new_notebook()))

    import nbformat
    import papermill
    monkeypatch.setattr(papermill, "execute_notebook", fake_execute_notebook)
    monkeypatch.setattr(notebooks, "load_profile", lambda profile: {"common": {"storage_dir": str(tmp_path / "d")}})
    monkeypatch.setattr(notebooks, "notebook_parameters", lambda profile, stem: {})
    monkeypatch.setattr(paths, "REPORTS", tmp_path / "reports")
    monkeypatch.delenv(paths.STORAGE_ENV, raising=False)
    notebooks.execute("storage-test", ["01"])
    assert paths.STORAGE_ENV not in os.environ  # set for the kernels only, never left behind for later runs
    monkeypatch.setenv(paths.STORAGE_ENV, str(tmp_path / "from-env"))
    notebooks.execute("storage-test", ["01"])
    assert seen == [str(tmp_path / "d"), str(tmp_path / "from-env")]


def test_describe_source_names_the_real_data_folder_not_a_machines_path(monkeypatch, tmp_path):
    """Issue 26: the real pages printed an unexplained absolute path (/work/shared/data/fairface)."""
    shared = tmp_path / "somewhere" / "data"
    (shared / "fairface").mkdir(parents=True)
    monkeypatch.setattr(paths, "SHARED_DATA", shared)
    text = paths.describe_source(shared / "fairface")
    assert str(tmp_path) not in text and "FACE_SHARED_DATA" in text and "make real-data" in text
    assert text.endswith("/fairface")
    assert paths.describe_source(paths.ROOT / "data" / "synthetic" / "default" / "lfw") == "data/synthetic/default/lfw"
    assert paths.describe_source("hub") == "hub"
