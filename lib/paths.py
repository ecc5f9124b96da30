"""Every path the project uses, in one place.

Notebooks and tests never build paths by hand: they ask this module. The real data folder can be
moved with the environment variable ``FACE_SHARED_DATA`` (default: ``../shared/data`` beside the checkout).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
PARAMS = ROOT / "params"
DATA = ROOT / "data"
SYNTHETIC = DATA / "synthetic"
CACHE = DATA / "cache"
CHECKPOINTS = DATA / "checkpoints"
RESULTS = DATA / "results"
FIGURES = ROOT / "figures"
REPORTS = ROOT / "reports"
BUILD = ROOT / "build"

SHARED_DATA = Path(os.environ.get("FACE_SHARED_DATA", ROOT.parent / "shared" / "data")).expanduser()
SHARED_FAIRFACE = SHARED_DATA / "fairface"
SHARED_LFW = SHARED_DATA / "lfw"
SHARED_LFW_GENDER = SHARED_LFW / "gender"


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
    path = CHECKPOINTS / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def synthetic_root(preset: str = "default") -> Path:
    """Folder of one preset of the embedded synthetic dataset (holds ``fairface/`` and ``lfw/``)."""
    return SYNTHETIC / preset


def dataset_root(source: str, dataset: str, synthetic_preset: str = "default") -> Path | str:
    """Resolve a data-source parameter to a folder.

    ``source`` is ``"synthetic"`` (the embedded generated set, preset ``synthetic_preset``), ``"shared"`` (the real data folder),
    ``"hub"`` (returned unchanged: the loader fetches from the Hugging Face Hub), or a path
    (``~`` expanded; relative paths are taken from the repository root).
    ``dataset`` is ``"fairface"`` or ``"lfw"``.
    """
    if dataset not in ("fairface", "lfw"):
        raise ValueError(f"dataset must be 'fairface' or 'lfw', got {dataset!r}")
    if source == "synthetic":
        return synthetic_root(synthetic_preset) / dataset
    if source == "shared":
        return SHARED_FAIRFACE if dataset == "fairface" else SHARED_LFW
    if source == "hub":
        return "hub"
    path = Path(source).expanduser()
    return path if path.is_absolute() else ROOT / path


def shared_data_available() -> bool:
    """True when the real data folder (``FACE_SHARED_DATA``) is present with both datasets."""
    return SHARED_FAIRFACE.is_dir() and SHARED_LFW.is_dir()
