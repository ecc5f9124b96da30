"""Checks added to the nbval run of the prepared notebooks (``make nbval``, part of ``make test``).

nbval executes each notebook prepared in ``build/nbval/<profile>/`` cell by cell. This plugin

* starts those kernels the way the report runner does (see ``lib.notebooks.KERNEL_ENV``): the inline
  matplotlib backend, plain progress lines, and this checkout first on ``PYTHONPATH``, so that a
  second checkout (a git worktree) tests its own ``lib`` and not an installed copy;
* appends one more test item per notebook, ``figures shown``, which fails when the notebook displayed
  fewer figures (``image/png`` outputs) than it wrote to ``figures/<profile>/`` while it ran: every
  exported figure must be visible in the executed notebook and hence in its HTML page.

It does nothing for runs without nbval items (``pytest tests``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
_STARTED = pytest.StashKey[float]()


def _nbval_classes():
    try:
        from nbval.plugin import IPyNbCell, IPyNbFile
    except ImportError:
        return None
    return IPyNbCell, IPyNbFile


def pytest_collection_modifyitems(session, config, items):
    classes = _nbval_classes()
    if classes is None:
        return
    cell_class, _ = classes
    if not any(isinstance(item, cell_class) for item in items):
        return
    # Kernels start in each notebook's setup, after collection, and inherit this environment. Without
    # MPLBACKEND ipykernel picks the inline backend (the runner sets it explicitly, see KERNEL_ENV; here
    # it is removed instead, so this process's own matplotlib keeps choosing a headless backend itself).
    os.environ.pop("MPLBACKEND", None)
    os.environ["FACE_PROGRESS"] = "plain"
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    with_checks = []
    for position, item in enumerate(items):
        with_checks.append(item)
        following = items[position + 1] if position + 1 < len(items) else None
        if isinstance(item, cell_class) and (following is None or following.parent is not item.parent):
            with_checks.append(FiguresShown.from_parent(item.parent, name="figures shown"))
    items[:] = with_checks


def pytest_runtest_setup(item):
    classes = _nbval_classes()
    if classes is not None and isinstance(item, classes[0]) and _STARTED not in item.parent.stash:
        item.parent.stash[_STARTED] = time.time()


def shown_figures(cells) -> int:
    """Number of ``image/png`` outputs nbval received from the kernel for ``cells``."""
    return sum(1 for cell in cells for output in (cell.test_outputs or []) if "image/png" in output.get("data", {}))


def written_figures(folder: Path, since: float) -> list[str]:
    """Names of the PNG files in ``folder`` modified at or after ``since`` (a ``time.time()``)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.glob("*.png") if p.stat().st_mtime >= since)


class FiguresShown(pytest.Item):
    """A notebook shows at least as many figures as it exported while nbval ran it."""

    def runtest(self):
        cell_class, _ = _nbval_classes()
        notebook = self.parent
        cells = [item for item in self.session.items if isinstance(item, cell_class) and item.parent is notebook]
        profile = notebook.nb.metadata.get("papermill", {}).get("parameters", {}).get("profile")
        if profile is None or _STARTED not in notebook.stash:
            pytest.skip("not a notebook prepared by `python -m lib.notebooks prepare` (no profile parameter)")
        written = written_figures(ROOT / "figures" / profile, notebook.stash[_STARTED])
        shown = shown_figures(cells)
        if shown < len(written):
            raise AssertionError(
                f"{Path(str(notebook.fspath)).name} wrote {len(written)} figures to figures/{profile}/ but showed "
                f"only {shown} (image/png outputs): {written}. Export figures with lib.plots.save_figure, which "
                f"displays them, and do not force a non-inline matplotlib backend (MPLBACKEND) on the kernel.")

    def reportinfo(self):
        return self.path, None, f"{self.parent.name}::figures shown"
