"""Fetch the data a profile needs from the internet, once, into the folders :mod:`lib.paths` names.

Only LFW needs this: FairFace comes from the Hugging Face Hub through ``datasets`` (its own cache).
scikit-learn's downloader (``sklearn.datasets.fetch_lfw_pairs``) writes, under its data home::

    lfw_home/lfw_funneled/<Name>/<Name>_NNNN.jpg    the funneled images (not deep-funneled), ~200 MB archive
    lfw_home/pairsDevTrain.txt, pairsDevTest.txt, pairs.txt

and no people files and no gender lists: ``lib.lfw`` then takes the View 1 people from the pair files, and
the gender lists come from the repository (``lib.paths.LFW_GENDER_LISTS``). Its files are hosted on
figshare, which at times refuses downloads; the error then names the alternatives.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

from lib import paths
from lib.errors import DataError

SKLEARN_IMAGE_FOLDER = "lfw_funneled"
SKLEARN_PAIR_FILES = ("pairs.txt", "pairsDevTrain.txt", "pairsDevTest.txt")
STAGING = ".lfw_download"  # sklearn downloads into <data home>/.lfw_download/lfw_home, then it is moved


def sklearn_lfw_complete(lfw_home: str | os.PathLike) -> bool:
    """True when ``lfw_home`` holds scikit-learn's image folder and its three pair files."""
    lfw_home = Path(lfw_home)
    return (lfw_home / SKLEARN_IMAGE_FOLDER).is_dir() and all((lfw_home / name).is_file() for name in SKLEARN_PAIR_FILES)


def ensure_sklearn_lfw(data_home: str | os.PathLike | None = None) -> Path:
    """scikit-learn's ``lfw_home`` under ``data_home`` (default :data:`lib.paths.SKLEARN_DATA`, which
    ``FACE_STORAGE`` moves to persistent storage), downloaded with ``sklearn.datasets.fetch_lfw_pairs``
    when it is not complete there. Returns the ``lfw_home`` folder.

    The download goes to a staging folder beside it and its parts are moved into ``lfw_home`` only once
    complete, the image folder last, so an interrupted download never looks like a complete one. Parts
    already in ``lfw_home`` are kept. Raises :class:`DataError` naming the alternatives when the
    download fails (HTTP error, timeout, no network, broken archive).
    """
    data_home = Path(data_home).expanduser() if data_home is not None else paths.SKLEARN_DATA
    lfw_home = data_home / "lfw_home"
    if sklearn_lfw_complete(lfw_home):
        return lfw_home
    staging = data_home / STAGING
    shutil.rmtree(staging, ignore_errors=True)  # what an interrupted earlier attempt left
    staging.mkdir(parents=True)
    print(f"Downloading LFW with scikit-learn's downloader into {lfw_home} (about 200 MB, once) ...", flush=True)
    try:
        from sklearn.datasets import fetch_lfw_pairs

        # subset="test" makes scikit-learn decode only the 2,000 DevTest images it returns; the download
        # (archive + all three pair files) is the same for every subset.
        fetch_lfw_pairs(subset="test", data_home=str(staging), download_if_missing=True)
    except (OSError, tarfile.TarError, EOFError) as error:  # HTTPError, URLError and timeouts are OSErrors
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(_download_failed(lfw_home, error)) from error
    fetched = staging / "lfw_home"
    if not sklearn_lfw_complete(fetched):
        found = sorted(p.name for p in fetched.iterdir()) if fetched.is_dir() else []
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(
            f"scikit-learn's downloader finished but {fetched} lacks {SKLEARN_IMAGE_FOLDER}/ or one of "
            f"{list(SKLEARN_PAIR_FILES)} (found {found}); this scikit-learn version may lay LFW out differently. "
            + _ALTERNATIVES.format(lfw_home=lfw_home)
        )
    lfw_home.mkdir(parents=True, exist_ok=True)
    for name in (*SKLEARN_PAIR_FILES, SKLEARN_IMAGE_FOLDER):  # the image folder last: it marks completion
        if not (lfw_home / name).exists():
            os.replace(fetched / name, lfw_home / name)
    shutil.rmtree(staging, ignore_errors=True)
    print(f"LFW ready in {lfw_home}", flush=True)
    return lfw_home


_ALTERNATIVES = (
    "Alternatives: (1) try again later; "
    "(2) put LFW in its official archive layout in a folder (e.g. on Google Drive): lfw-deepfunneled/ "
    "(lfw-deepfunneled.tgz unpacked) with pairs.txt, pairsDevTrain.txt, pairsDevTest.txt, peopleDevTrain.txt "
    "and peopleDevTest.txt beside it, and set the lfw_source parameter to that folder (in the common section "
    "of params/<profile>.yaml, or papermill -y \"{{lfw_source: /content/drive/MyDrive/lfw}}\"); "
    "(3) put that folder at <FACE_SHARED_DATA>/lfw and use lfw_source: shared; "
    "(4) copy an existing scikit-learn lfw_home (lfw_funneled/ and the three pair files) to {lfw_home}."
)


def _download_failed(lfw_home: Path, error: BaseException) -> str:
    return (
        f"could not download LFW with scikit-learn's downloader (sklearn.datasets.fetch_lfw_pairs, files "
        f"hosted on figshare, which at times refuses downloads): {type(error).__name__}: {error}. "
        + _ALTERNATIVES.format(lfw_home=lfw_home)
    )
