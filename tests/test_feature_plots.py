"""The toy feature pictures of notebook 02 (lib.margin_geometry.plot_features_2d/3d) explain themselves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lib import margin_geometry as geometry  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _toy(dim, holdout=False, n_classes=3, per_class=20, seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(n_classes, dim))
    labels = np.repeat(np.arange(n_classes), per_class)
    features = weights[labels] * 5 + rng.normal(scale=0.5, size=(len(labels), dim))
    is_train = np.ones(len(labels), bool) if not holdout else np.arange(len(labels)) % 4 != 0
    return geometry.ToyEmbedding(features.astype(np.float32), labels, weights, np.arange(n_classes),
                                 np.ones(10), is_train, labels)


def _legend_labels(fig):
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_2d_picture_draws_each_class_and_weight_and_says_what_they_are():
    fig = geometry.plot_features_2d({"softmax": _toy(2), "A-Softmax m=4": _toy(2, seed=1)})
    raw = fig.axes[0]
    assert len(raw.collections) == 3  # one scatter per identity
    assert len(raw.lines) == 3  # one weight direction per identity
    assert len(fig.axes[1].lines) == 3  # dashed weight angles under the histogram
    assert "training images" in fig._suptitle.get_text() and "one colour per identity" in fig._suptitle.get_text()
    labels = _legend_labels(fig)
    assert labels[0] == "a feature of one training image (colour = identity)"
    assert labels[1:] == ["the head's weight direction of the identity (top)", "its angle (bottom)"]


def test_3d_picture_marks_weights_as_stars_and_names_the_split():
    fig = geometry.plot_features_3d({"softmax": _toy(3, holdout=True)}, split="heldout")
    ax = fig.axes[0]
    stars = [c for c in ax.collections if c.get_offsets().size and len(c.get_offsets()) == 3 and c.get_sizes()[0] == 70]
    assert len(stars) == 1
    assert "held-out images" in fig._suptitle.get_text()
    assert _legend_labels(fig)[-1] == "the head's weight direction of the identity"


def test_all_split_with_held_out_samples_is_not_called_training():
    fig = geometry.plot_features_2d({"softmax": _toy(2, holdout=True)}, split="all")
    assert "all images (training and held-out)" in fig._suptitle.get_text()
