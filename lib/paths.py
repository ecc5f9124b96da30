"""Every path the project uses, in one place.

Notebooks, scripts and tests never build paths by hand: they ask this module.

Environment variables that move things:

* ``FACE_SHARED_DATA``: the real data folder (default ``../shared/data`` beside the checkout).
* ``FACE_STORAGE``: a persistent folder (e.g. Google Drive on Colab) that then holds everything a run
  writes and would be expensive to lose: training checkpoints, decoded-image caches, results
  (``<storage>/checkpoints``, ``cache``, ``results``) and downloaded data (``<storage>/downloads``:
  scikit-learn's LFW, the Hugging Face cache, torch hub's ImageNet weights). Unset, they stay in
  ``data/`` inside the checkout and downloads go to each library's default folder. Its parent folder
  must exist (an unmounted Drive is an error here, not a silently local folder). The profile key
  ``common: storage_dir:`` sets the same thing for ``python -m lib.notebooks run``.
  Figures and reports always stay in the checkout.
* ``FACE_STORAGE_EVERY`` (minutes, default 15): with ``FACE_STORAGE`` set, training checkpoints are written
  every epoch to the local disk (``build/local-checkpoints/``) and copied to the persistent folder at most
  this often and when a run ends (one file per run there), so a network drive sees a few writes per run and
  a disconnect loses at most this much training. See :func:`local_checkpoint_dir`.
* ``FACE_CACHE`` (optional): the decoded-image cache only, e.g. a fast local disk while ``FACE_STORAGE``
  is on Drive (the cache is rebuilt from the downloaded images when it is missing).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
PARAMS = ROOT / "params"
DATA = ROOT / "data"
SYNTHETIC = DATA / "synthetic"
FIGURES = ROOT / "figures"
REPORTS = ROOT / "reports"
BUILD = ROOT / "build"

# The project's repository on its host, e.g. "https://github.com/<owner>/angular-margin-fairness": the one
# setting from which the rendered pages link the code they name (`lib.losses`, `scripts/x.py`) to its file
# there, at the commit each page was executed from. Empty: the links are relative to the report folder
# (reports/<profile>/ -> ../../lib/losses.py), which works in a clone but not for a page read on its own.
REPOSITORY_URL = ""

# LFW per-image gender lists shipped with the repository (labels only; see data/lfw_gender/README.md).
LFW_GENDER_LISTS = DATA / "lfw_gender"

STORAGE_ENV = "FACE_STORAGE"
CACHE_ENV = "FACE_CACHE"
STORAGE_EVERY_ENV = "FACE_STORAGE_EVERY"
STORAGE_EVERY_MINUTES = 15.0  # the default of FACE_STORAGE_EVERY
LOCAL_CHECKPOINTS = BUILD / "local-checkpoints"


def _folder_from_environment(name: str) -> Path | None:
    """The folder named by environment variable ``name`` (``~`` expanded, relative to the checkout), or None."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else ROOT / path


def _persistent_storage() -> Path | None:
    storage = _folder_from_environment(STORAGE_ENV)
    if storage is not None and not storage.parent.is_dir():
        raise FileNotFoundError(
            f"{STORAGE_ENV}={os.environ[STORAGE_ENV]}: its parent folder {storage.parent} does not exist. "
            f"On Colab mount Google Drive first (from google.colab import drive; drive.mount('/content/drive')); "
            f"elsewhere create the parent folder, or unset {STORAGE_ENV} to keep everything inside the checkout."
        )
    return storage


STORAGE = _persistent_storage()  # None: runs write inside the checkout
_WRITABLE = STORAGE if STORAGE is not None else DATA
CACHE = _folder_from_environment(CACHE_ENV) or _WRITABLE / "cache"
CHECKPOINTS = _WRITABLE / "checkpoints"
RESULTS = _WRITABLE / "results"
DOWNLOADS = STORAGE / "downloads" if STORAGE is not None else None
# scikit-learn's data home (its LFW download lands in <SKLEARN_DATA>/lfw_home); SCIKIT_LEARN_DATA wins, as in sklearn.
SKLEARN_DATA = (
    _folder_from_environment("SCIKIT_LEARN_DATA")
    or (DOWNLOADS / "scikit_learn_data" if DOWNLOADS is not None else Path("~/scikit_learn_data").expanduser())
)
if DOWNLOADS is not None:
    # Read by the libraries themselves when they download: the Hub's FairFace (``datasets`` reads these when it
    # is imported, which the loaders do lazily, after this module) and torchvision's ImageNet weights. HF_HOME
    # is left alone so a Hugging Face login token stays where the user put it.
    os.environ.setdefault("HF_HUB_CACHE", str(DOWNLOADS / "huggingface" / "hub"))
    os.environ.setdefault("HF_DATASETS_CACHE", str(DOWNLOADS / "huggingface" / "datasets"))
    os.environ.setdefault("TORCH_HOME", str(DOWNLOADS / "torch"))

# The pretrained encoder's embeddings stay with the persistent storage even when FACE_CACHE moves the
# decoded images to a local disk: they are small and slow to compute (dlib, CPU only).
EMBEDDING_CACHE = _WRITABLE / "cache" / "embeddings"


def storage_every_seconds() -> float:
    """How often (seconds) a training checkpoint may be copied to ``FACE_STORAGE``: ``FACE_STORAGE_EVERY``
    minutes, default :data:`STORAGE_EVERY_MINUTES`."""
    value = os.environ.get(STORAGE_EVERY_ENV, "").strip()
    try:
        minutes = float(value) if value else STORAGE_EVERY_MINUTES
    except ValueError:
        minutes = -1.0
    if not minutes >= 0:
        raise ValueError(f"{STORAGE_EVERY_ENV}={value!r}: give the minutes between checkpoint copies to "
                         f"{STORAGE_ENV}, a number >= 0 (0 copies after every epoch)")
    return minutes * 60.0


def local_checkpoint_dir(checkpoint_dir: str | os.PathLike) -> Path | None:
    """The local-disk folder where ``lib.training.fit`` writes each epoch's checkpoint when
    ``checkpoint_dir`` lies in the persistent storage (``FACE_STORAGE``, e.g. a mounted Google Drive), or
    None when it does not (the checkpoint is then written there directly, after every epoch).

    Rewriting a 100 MB checkpoint on Drive after every epoch would send the colab profile's ~1,500
    epochs as ~160 GB of writes through a network file system (overwritten files can go to Drive's trash
    and count against its quota); the local copy keeps resume-per-epoch within a runtime, and the copy on
    Drive survives a disconnect.
    """
    if STORAGE is None:
        return None
    folder = Path(checkpoint_dir).resolve()
    try:
        relative = folder.relative_to(STORAGE.resolve())
    except ValueError:
        return None
    return LOCAL_CHECKPOINTS / relative


SHARED_DATA = Path(os.environ.get("FACE_SHARED_DATA", ROOT.parent / "shared" / "data")).expanduser()
SHARED_FAIRFACE = SHARED_DATA / "fairface"
SHARED_LFW = SHARED_DATA / "lfw"
SHARED_LFW_GENDER = SHARED_LFW / "gender"


def shown(path: str | os.PathLike) -> str:
    """``path`` for messages: relative to the checkout when inside it, else absolute (e.g. under ``FACE_STORAGE``)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


class FolderNotWritable(OSError):
    """An output folder (results, checkpoints, image cache, figures) cannot be written; the message names
    it, the cause and what to do."""


def check_writable(folder: str | os.PathLike, role: str) -> Path:
    """Create ``folder`` if needed and write and remove a file in it, or raise :class:`FolderNotWritable`
    naming the ``role`` (e.g. "checkpoint"), the folder and the cause: checked before work whose output
    would otherwise be lost at its end (a read-only checkpoint folder failed after a whole epoch)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise FolderNotWritable(
            error.errno, f"the {role} folder {folder} is not writable ({error.strerror or error}). Make it writable "
                         f"(chmod u+w, or a read-write mount), or set {STORAGE_ENV} (or {CACHE_ENV} for the image "
                         f"cache) to a writable folder") from None
    return folder


def figures_dir(profile: str) -> Path:
    """Folder for the PNG figures of one profile (created on demand)."""
    path = FIGURES / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def reports_dir(profile: str) -> Path:
    """Folder for the executed notebooks and HTML pages of one profile (created on demand)."""
    path = REPORTS / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir(profile: str) -> Path:
    """Folder for CSV results (per-epoch metrics, per-sample predictions) of one profile."""
    path = RESULTS / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoints_dir(profile: str) -> Path:
    """Folder for the training checkpoints of one profile (``fit`` resumes from them after a restart)."""
    path = CHECKPOINTS / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def synthetic_root(preset: str = "default") -> Path:
    """Folder of one preset of the embedded synthetic dataset (holds ``fairface/`` and ``lfw/``)."""
    return SYNTHETIC / preset


def dataset_root(source: str, dataset: str, synthetic_preset: str = "default") -> Path | str:
    """Resolve a data-source parameter to a folder.

    ``source`` is ``"synthetic"`` (the embedded generated set, preset ``synthetic_preset``), ``"shared"`` (the real data folder, :data:`SHARED_DATA`),
    ``"hub"`` (returned unchanged: the loader fetches from the Hugging Face Hub), ``"sklearn"`` (LFW only:
    scikit-learn's ``lfw_home`` under :data:`SKLEARN_DATA`, which ``lib.download.ensure_sklearn_lfw``
    fills), or a path (``~`` expanded; relative paths are taken from the repository root).
    ``dataset`` is ``"fairface"`` or ``"lfw"``.
    """
    if dataset not in ("fairface", "lfw"):
        raise ValueError(f"dataset must be 'fairface' or 'lfw', got {dataset!r}")
    if source == "sklearn":
        if dataset != "lfw":
            raise ValueError("source 'sklearn' (scikit-learn's downloader) only provides LFW, not FairFace")
        return sklearn_lfw_home()
    if source == "synthetic":
        return synthetic_root(synthetic_preset) / dataset
    if source == "shared":
        return SHARED_FAIRFACE if dataset == "fairface" else SHARED_LFW
    if source == "hub":
        return "hub"
    path = Path(source).expanduser()
    return path if path.is_absolute() else ROOT / path


def describe_source(root) -> str:
    """How a page names a data folder: inside the real data folder, as ``FACE_SHARED_DATA/<part>`` with what
    builds it; inside the checkout, relative to it; otherwise the folder itself (a machine's absolute path
    means nothing to a reader)."""
    if not isinstance(root, Path):
        return str(root)
    try:
        return (f"the real data folder (FACE_SHARED_DATA, built by `make real-data`)/"
                f"{root.resolve().relative_to(SHARED_DATA.resolve()).as_posix()}")
    except ValueError:
        pass
    try:
        return root.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(root)


def sklearn_lfw_home() -> Path:
    """scikit-learn's LFW folder: ``<SKLEARN_DATA>/lfw_home`` (``lfw_funneled/`` + the three pair files)."""
    return SKLEARN_DATA / "lfw_home"


def lfw_gender_folder(lfw_root: str | os.PathLike, folder: str | os.PathLike | None = None) -> Path:
    """Where the LFW gender lists (``male_names.txt``, ``female_names.txt``) of an LFW copy are.

    ``folder`` when given; else ``<lfw_root>/gender`` when that exists (the synthetic set writes its own,
    a full LFW copy may carry them); else the lists shipped in :data:`LFW_GENDER_LISTS`, which cover the
    13,233 images of every real LFW release (their file names are the same in ``lfw``,
    ``lfw_funneled`` and ``lfw-deepfunneled``).
    """
    if folder is not None:
        path = Path(folder).expanduser()
        return path if path.is_absolute() else ROOT / path
    beside = Path(lfw_root) / "gender"
    return beside if beside.is_dir() else LFW_GENDER_LISTS


def shared_data_available() -> bool:
    """True when the real data folder (``FACE_SHARED_DATA``) is present with both datasets."""
    return SHARED_FAIRFACE.is_dir() and SHARED_LFW.is_dir()
