"""LFW through scikit-learn's downloader (lib.download), offline: the fetcher is replaced by fakes that
write scikit-learn's layout or fail the ways its host fails."""

from __future__ import annotations

import tarfile
import urllib.error
from pathlib import Path

import pytest
import sklearn.datasets

import fixtures
from lib import download
from lib.errors import DataError
from lib.lfw import load_lfw


def fake_fetcher(calls: list, *, complete: bool = True):
    """Stands in for ``sklearn.datasets.fetch_lfw_pairs``: writes the tiny LFW in scikit-learn's layout
    (``<data_home>/lfw_home/lfw_funneled/`` + three pair files) and records its arguments."""
    def fetch_lfw_pairs(**kwargs):
        calls.append(kwargs)
        built = fixtures.build_lfw(Path(kwargs["data_home"]), sklearn=True, gender_lists=False)
        (built.protocol_dir / "joblib").mkdir()  # scikit-learn's decode cache, left behind in the staging folder
        if not complete:
            (built.protocol_dir / "pairs.txt").unlink()
    return fetch_lfw_pairs


def test_download_lands_in_lfw_home_complete_and_loadable(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(sklearn.datasets, "fetch_lfw_pairs", fake_fetcher(calls))
    lfw_home = download.ensure_sklearn_lfw(tmp_path / "sk")
    assert lfw_home == tmp_path / "sk" / "lfw_home"
    assert calls == [{"subset": "test", "data_home": str(tmp_path / "sk" / download.STAGING), "download_if_missing": True}]
    assert sorted(p.name for p in lfw_home.iterdir()) == ["lfw_funneled", "pairs.txt", "pairsDevTest.txt", "pairsDevTrain.txt"]
    assert not (tmp_path / "sk" / download.STAGING).exists()
    with pytest.warns(UserWarning, match="No people files"):
        faces = load_lfw(lfw_home)
    assert faces.image_dir.name == "lfw_funneled" and len(faces.pairs) == len(fixtures.LFW_VIEW2)


def test_a_complete_lfw_home_is_not_downloaded_again(tmp_path, monkeypatch):
    fixtures.build_lfw(tmp_path, sklearn=True, gender_lists=False)

    def refuse(**kwargs):
        raise AssertionError("fetched although lfw_home is complete")
    monkeypatch.setattr(sklearn.datasets, "fetch_lfw_pairs", refuse)
    assert download.ensure_sklearn_lfw(tmp_path) == tmp_path / "lfw_home"


@pytest.mark.parametrize("failure", [
    urllib.error.HTTPError("https://ndownloader.figshare.com/files/5976015", 403, "Forbidden", {}, None),
    urllib.error.URLError("[Errno -3] Temporary failure in name resolution"),
    TimeoutError("The read operation timed out"),
    tarfile.ReadError("unexpected end of data"),
], ids=["http-403", "no-network", "timeout", "truncated-archive"])
def test_refused_download_names_the_alternatives_and_leaves_nothing(tmp_path, monkeypatch, failure):
    def fetch_lfw_pairs(**kwargs):
        (tmp_path / "sk" / download.STAGING / "lfw_home").mkdir(parents=True)  # a partial download
        raise failure
    monkeypatch.setattr(sklearn.datasets, "fetch_lfw_pairs", fetch_lfw_pairs)
    with pytest.raises(DataError) as caught:
        download.ensure_sklearn_lfw(tmp_path / "sk")
    message = str(caught.value)
    assert type(failure).__name__ in message
    for alternative in ("lfw-deepfunneled/", "peopleDevTest.txt", "lfw_source", "FACE_SHARED_DATA",
                        str(tmp_path / "sk" / "lfw_home")):
        assert alternative in message
    assert not (tmp_path / "sk" / "lfw_home").exists()
    assert not (tmp_path / "sk" / download.STAGING).exists()
    assert caught.value.__cause__ is failure


def test_an_incomplete_download_is_not_moved_into_place(tmp_path, monkeypatch):
    monkeypatch.setattr(sklearn.datasets, "fetch_lfw_pairs", fake_fetcher([], complete=False))
    with pytest.raises(DataError, match="lacks lfw_funneled/ or one of"):
        download.ensure_sklearn_lfw(tmp_path)
    assert not (tmp_path / "lfw_home").exists()
    assert not (tmp_path / download.STAGING).exists()


def test_parts_already_in_lfw_home_are_kept(tmp_path, monkeypatch):
    (tmp_path / "lfw_home").mkdir()
    (tmp_path / "lfw_home" / "pairs.txt").write_text("kept\n")  # e.g. from an interrupted scikit-learn run
    monkeypatch.setattr(sklearn.datasets, "fetch_lfw_pairs", fake_fetcher([]))
    lfw_home = download.ensure_sklearn_lfw(tmp_path)
    assert (lfw_home / "pairs.txt").read_text() == "kept\n"
    assert download.sklearn_lfw_complete(lfw_home)
