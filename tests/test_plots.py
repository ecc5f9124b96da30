"""Figures of notebook 01 (lib.plots) and the choice of duplicate sets to draw (lib.audit)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lib import audit, plots  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _image(value=128):
    return np.full((12, 12, 3), value, dtype=np.uint8)


def _extent(artist, fig):
    return artist.get_window_extent(fig.canvas.get_renderer())


@pytest.mark.parametrize("n_rows,captioned", [(1, False), (2, True), (5, True)])
def test_face_grid_title_never_covers_an_image(n_rows, captioned):
    rows = {f"row {r}": [(_image(), f"name {c}\nsecond line") if captioned else _image() for c in range(8)]
            for r in range(n_rows)}
    fig = plots.face_grid(rows, title="A title that used to print over one-row grids", cell=1.1)
    fig.canvas.draw()
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 8 * n_rows
    title_bottom = _extent(fig._suptitle, fig).y0
    assert all(_extent(ax, fig).y1 <= title_bottom for ax in images)


def test_face_grid_draws_one_row_per_key_and_no_labels_when_asked():
    fig = plots.face_grid({"set 1: within train": [_image()], "set 2: within train": [_image(), _image()]},
                          title="t")
    assert len(fig.axes) == 4 and sum(bool(ax.images) for ax in fig.axes) == 3
    assert [fig.axes[0].get_ylabel(), fig.axes[2].get_ylabel()] == ["set 1: within train", "set 2: within train"]
    bare = plots.face_grid({"a": [_image()], "b": [_image()]}, title="t", row_labels=False)
    assert all(ax.get_ylabel() == "" for ax in bare.axes)


def _labels():
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"split": rng.choice(["train", "val"], 300),
                          "race": pd.Categorical(rng.choice(["A", "B", "C"], 300), categories=["A", "B", "C"])})
    return table


def test_label_distribution_legend_sits_outside_the_bars():
    fig, ax = plt.subplots(figsize=(5, 3))
    plots.label_distribution(_labels(), "race", ax=ax)
    fig.canvas.draw()
    legend = ax.get_legend()
    assert legend is not None and [t.get_text() for t in legend.get_texts()] == ["train", "val"]
    assert _extent(legend, fig).x0 >= _extent(ax, fig).x1  # right of the axes: covers no bar
    assert len(ax.patches) >= 6  # 3 categories x 2 splits


def test_label_distribution_without_legend():
    ax = plots.label_distribution(_labels(), "race", legend=False)
    assert ax.get_legend() is None


def _duplicates():
    # Four sets with conflicting labels, three of them "within train / race" (the rows that used to
    # collide), one set spanning the splits whose labels agree, and one plain set.
    rows = []
    for group, scope, conflict in [(0, "within train", ""), (1, "within train", "race"), (2, "across splits", ""),
                                   (3, "within train", "race"), (4, "within train", "race"), (5, "within val", "age")]:
        rows += [{"group": group, "scope": scope, "conflicting_labels": conflict}] * 2
    return pd.DataFrame(rows)


def test_duplicate_sets_to_show_puts_every_conflicting_set_first():
    assert audit.duplicate_sets_to_show(_duplicates(), limit=6) == [1, 3, 4, 5, 2, 0]
    assert audit.duplicate_sets_to_show(_duplicates(), limit=3) == [1, 3, 4]
    assert audit.duplicate_sets_to_show(_duplicates().iloc[0:0]) == []
