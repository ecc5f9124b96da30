"""Shared pytest fixtures and the ``real_data`` skip rule.

Tests marked ``@pytest.mark.real_data`` read the real data folder (``FACE_SHARED_DATA``, see
``lib.paths``); without it they are skipped with the reason shown by ``pytest -ra``.
"""

from __future__ import annotations

import pytest

from lib import paths
import fixtures  # tests/ is on sys.path (pytest rootdir-less "prepend" import mode)


def pytest_collection_modifyitems(config, items):
    if paths.shared_data_available():
        return
    skip = pytest.mark.skip(
        reason=f"real data not found at {paths.SHARED_DATA} (needs fairface/ and lfw/; "
        "set FACE_SHARED_DATA to move it)"
    )
    for item in items:
        if "real_data" in item.keywords:
            item.add_marker(skip)


# ------------------------------------------------------------------------- tiny datasets on disk
@pytest.fixture
def fairface_folder(tmp_path):
    """(root, written labels per split) of a tiny FairFace in the official folder layout."""
    root = tmp_path / "fairface"
    return root, fixtures.build_fairface_folder(root)


@pytest.fixture
def fairface_parquet(tmp_path):
    """A tiny FairFace in the Hub's parquet layout (padding 0.25, train in two shards)."""
    return fixtures.build_fairface_parquet(tmp_path / "fairface_hub")


@pytest.fixture
def lfw_copy(tmp_path):
    """A tiny LFW in the official layout (``lfw/`` + pairs, people and gender files)."""
    return fixtures.build_lfw(tmp_path / "lfw")
