"""Figures shared by the notebooks: one style, titled axes a reader understands without the code,
and every figure exported as PNG to ``figures/<profile>/``."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from lib import paths

DPI = 110
# A report page shows a figure at its own size up to about this width (a 1280-px window's output column at
# DPI): a wider figure is scaled down, and with it its text. Figures meant to be read cell by cell (text of
# at least MIN_FONT_PT points) are laid out within it.
PAGE_WIDTH_INCHES = 10.0
MIN_FONT_PT = 9


def setup_style() -> None:
    """The house style: seaborn whitegrid, readable font sizes, a colour-blind-safe palette."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams.update({"figure.dpi": DPI, "savefig.dpi": DPI, "axes.titleweight": "bold",
                         "figure.constrained_layout.use": True})


def save_figure(fig: plt.Figure, name: str, profile: str, *, show: bool = True) -> Path:
    """Write ``fig`` to ``figures/<profile>/<name>.png`` (atomically) and return the path.

    Inside a Jupyter kernel (and with ``show``) the written PNG is also displayed, tagged with its file
    name (output metadata ``{"figure": "<name>.png"}``), and the figure is closed: the executed
    notebook and its HTML page then show exactly the exported image once, whatever matplotlib backend
    the kernel runs, and a following ``plt.show()`` draws nothing twice.
    """
    target = paths.figures_dir(profile) / f"{name}.png"
    # A unique temporary name: two runs saving the same figure never write into each other's file.
    tmp = target.with_name(f".{target.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp.png")
    try:
        fig.savefig(tmp, bbox_inches="tight")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    if show and _in_kernel():
        from IPython.display import Image, display

        display(Image(data=target.read_bytes(), format="png"), metadata={"figure": target.name})
        plt.close(fig)
    return target


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (papermill, nbval, JupyterLab), False in scripts and tests."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def label_distribution(table: pd.DataFrame, column: str, ax: plt.Axes | None = None,
                       title: str | None = None, legend: bool = True) -> plt.Axes:
    """Share of each category of ``column`` per split (bars side by side; categories in canonical order).

    The split legend sits outside the axes, to the right, so it never covers a bar; ``legend=False``
    drops it (for all but one panel of a row of these).
    """
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    shares = (table.groupby("split", observed=True)[column].value_counts(normalize=True)
              .rename("share").reset_index())
    order = list(table[column].cat.categories) if hasattr(table[column], "cat") else None
    sns.barplot(data=shares, x=column, y="share", hue="split", order=order, ax=ax)
    ax.set_title(title or f"{column} distribution by split")
    ax.set_ylabel("share of split")
    ax.set_xlabel("")
    ax.tick_params(axis="x", rotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    if legend:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), title="split", frameon=False)
    elif ax.get_legend() is not None:
        ax.get_legend().remove()
    return ax


def face_grid(rows: dict[str, list], title: str, cell: float = 1.3, row_labels: bool = True) -> plt.Figure:
    """A grid of face images, one row per key (e.g. group) labelled on the left.

    Each entry of a row is an image, or an ``(image, caption)`` pair whose caption is drawn under it.
    Keys must differ (a dict cannot hold two rows under one key): use an id in the key when two rows
    would read the same, and ``row_labels=False`` to draw no labels at all. The title gets its own
    band above the images, so it never covers them.
    """
    ncols = max((len(images) for images in rows.values()), default=1)
    captioned = any(isinstance(image, tuple) for images in rows.values() for image in images)
    caption_lines = max((str(image[1]).count("\n") + 1 for images in rows.values() for image in images
                         if isinstance(image, tuple) and image[1]), default=0)
    row_height = cell + 0.16 * caption_lines
    title_band = 0.45  # inches
    label_width = 1.2 if row_labels else 0.1
    width, height = cell * ncols + label_width, row_height * len(rows) + title_band
    fig, axes = plt.subplots(len(rows), ncols, figsize=(width, height), squeeze=False, constrained_layout=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(images):
                image, caption = images[c] if isinstance(images[c], tuple) else (images[c], None)
                ax.imshow(np.asarray(image))
                if caption:
                    ax.set_xlabel(caption, fontsize=7)
        if row_labels:
            axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title, y=1 - 0.08 / height, va="top")
    fig.subplots_adjust(wspace=0.3 if captioned else 0.04, hspace=(0.16 * caption_lines + 0.1) / cell if captioned else 0.06,
                        left=label_width / width, right=1 - 0.05 / width, top=1 - title_band / height,
                        bottom=(0.16 * caption_lines + 0.05) / height if captioned else 0.02)
    return fig


def images_per_identity(counts: pd.Series, ax: plt.Axes | None = None, title: str | None = None) -> plt.Axes:
    """Histogram of images per identity on log axes (LFW is long-tailed: most people have one image)."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    values = counts.to_numpy()
    bins = np.unique(np.round(np.logspace(0, np.log10(max(values.max(), 2)) + 0.01, 30)))
    ax.hist(values, bins=bins, color=sns.color_palette()[0], edgecolor="white")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("images of the identity (log scale)")
    ax.set_ylabel("identities (log scale)")
    ax.set_title(title or "Images per identity")
    return ax


def overlap_heatmap(matrix: pd.DataFrame, title: str, ax: plt.Axes | None = None) -> plt.Axes:
    """Annotated heatmap of a count matrix (e.g. identities shared between folds)."""
    ax = ax or plt.subplots(figsize=(5.5, 4.5))[1]
    sns.heatmap(matrix, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax)
    ax.set_title(title)
    return ax
