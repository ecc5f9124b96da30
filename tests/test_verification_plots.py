"""Notebook 02's verification figures (lib.verification_plots): what each draws, counted."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from scipy import stats  # noqa: E402

from lib import verification_plots as vp  # noqa: E402
from lib.course_reports import SPHEREFACE_FIXED_THRESHOLD_ACCURACY  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _pairs(n=400, separation=1.5, seed=0):
    rng = np.random.default_rng(seed)
    same = np.arange(n) % 2 == 0
    scores = np.where(same, rng.normal(0.3 * separation, 0.15, n), rng.normal(0.0, 0.15, n))
    return scores, same


def test_error_rates_at_counts_pairs_like_a_loop():
    scores = np.array([0.9, 0.4, 0.6, 0.1, 0.5, 0.7])
    same = np.array([True, True, False, False, True, False])
    # impostors 0.6, 0.1, 0.7 above 0.5: two of three; genuine 0.9, 0.4, 0.5 at or below 0.5: two of three
    assert vp.error_rates_at(scores, same, 0.5) == pytest.approx((2 / 3, 2 / 3))
    assert vp.error_rates_at(scores, same, 0.95) == pytest.approx((0.0, 1.0))
    with pytest.raises(ValueError, match="genuine"):
        vp.error_rates_at(scores, np.ones(6, bool), 0.5)


def test_error_rates_at_a_nan_threshold_are_refused_not_zero():
    """Every comparison with NaN is False, so FMR and FNMR both came out 0: a perfect-looking system."""
    scores = np.array([0.9, 0.4, 0.6, 0.1])
    same = np.array([True, True, False, False])
    with pytest.raises(ValueError, match="threshold is NaN"):
        vp.error_rates_at(scores, same, float("nan"))


def test_det_plot_draws_one_curve_per_model_and_marks_each_operating_point():
    scores, same = _pairs()
    weak, _ = _pairs(separation=0.6, seed=1)
    ax = vp.det_plot({"sphereface": scores, "softmax": weak, "pretrained": scores * 0.9}, same,
                     operating_points={"sphereface": {"fixed 0.5": 0.5, "10-fold": 0.22},
                                       "softmax": {"fixed 0.5": 0.5, "10-fold": 0.1}},
                     dashed=["pretrained"])
    curves = [line for line in ax.lines if line.get_linestyle() != "None"]
    points = [line for line in ax.lines if line.get_linestyle() == "None"]
    assert [line.get_label() for line in curves] == ["sphereface", "softmax", "pretrained"]
    assert curves[2].get_linestyle() == "--"
    assert len(points) == 4
    # The first marker is sphereface at 0.5, at (probit FMR, probit FNMR) counted by hand.
    fmr, fnmr = np.mean(scores[~same] > 0.5), np.mean(scores[same] <= 0.5)
    assert points[0].get_xydata()[0] == pytest.approx(stats.norm.ppf([fmr, fnmr]))
    assert points[0].get_marker() != points[1].get_marker()  # fixed 0.5 and 10-fold look different
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[-2:] == ["threshold: fixed 0.5", "threshold: 10-fold"]
    assert "probit" in ax.get_xlabel() and "%" in ax.get_xticklabels()[0].get_text()


def test_score_histograms_show_both_score_distributions_and_both_thresholds():
    scores, same = _pairs()
    fig = vp.score_histograms({"a": scores, "b": scores + 0.1, "c": scores, "d": scores}, same,
                              thresholds={"a": 0.2, "b": 0.3, "c": 0.2, "d": 0.2}, ncols=3)
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == 4 and len(fig.axes) == 6  # 2 x 3 grid, two panels switched off
    first = panels[0]
    assert len(first.containers) == 2  # genuine and impostor histograms
    assert sorted(line.get_xdata()[0] for line in first.lines) == [0.2, 0.5]
    labels = [t.get_text() for t in first.get_legend().get_texts()]
    fmr, fnmr = np.mean(scores[~same] > 0.5), np.mean(scores[same] <= 0.5)
    assert f"fixed 0.5: FMR {fmr:.0%}, FNMR {fnmr:.0%}" in labels
    assert labels[-1].startswith("10-fold 0.20: FMR")
    with pytest.raises(ValueError, match="no fitted threshold for \\['b'\\]"):
        vp.score_histograms({"a": scores, "b": scores}, same, thresholds={"a": 0.2})


def _history(seeds=(0,), heads=("softmax", "sphereface"), with_std=False):
    rows = []
    for head in heads:
        for seed in seeds:
            for epoch in range(1, 7):
                evaluated = epoch % 2 == 0
                rows.append({"head": head, "seed": seed, "epoch": epoch, "train_accuracy": 0.1 * epoch + 0.01 * seed,
                             "acc_10fold": 0.6 + 0.02 * epoch + 0.01 * seed if evaluated else np.nan,
                             "acc_fixed_0.5": 0.55 + 0.01 * epoch if evaluated else np.nan,
                             **({"acc_10fold_std": 0.03 if evaluated else np.nan} if with_std else {})})
    return pd.DataFrame(rows)


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_train_vs_heldout_two_lines_per_head_and_seed_bands_only_with_seeds():
    ax = vp.train_vs_heldout(_history())
    assert len(ax.lines) == 4 and not _bands(ax)
    solid = ax.lines[0]
    assert list(solid.get_xdata()) == [1, 2, 3, 4, 5, 6]  # training accuracy every epoch
    assert list(ax.lines[1].get_xdata()) == [2, 4, 6]  # held-out accuracy at evaluated epochs only
    ax = vp.train_vs_heldout(_history(seeds=(0, 1, 2)))
    assert len(ax.lines) == 4 and len(_bands(ax)) == 4
    assert "band: 95% t-interval over 3 seeds" in [t.get_text() for t in ax.get_legend().get_texts()]
    # mean over seeds 0, 1, 2 of 0.1 * epoch + 0.01 * seed at epoch 3
    assert ax.lines[0].get_ydata()[2] == pytest.approx(0.31)


def test_accuracy_by_epoch_lines_course_points_and_the_band_it_names():
    course = pd.Series({2: 0.61, 4: 0.62, 60: 0.652, 100: 0.649})
    ax = vp.accuracy_by_epoch(_history(with_std=True), course_points=course)
    solid = [line for line in ax.lines if line.get_linestyle() == "-" and line.get_marker() == "o"]
    dotted = [line for line in ax.lines if line.get_linestyle() == ":"]
    crosses = [line for line in ax.lines if line.get_marker() == "X"]
    assert len(solid) == 2 and len(dotted) == 2 and len(crosses) == 1
    assert list(crosses[0].get_xdata()) == [2, 4]  # the course points within this run's 6 epochs
    assert list(crosses[0].get_ydata()) == [0.61, 0.62]
    assert ax.get_xlim()[1] <= 7  # the axis covers this run's epochs, not the course's 100
    assert len(_bands(ax)) == 2
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "band: 95% t-interval over the 10 folds" in labels and "course report, fixed 0.5" in labels
    assert "course report, fixed 0.5, beyond this run's 6 epochs:\n0.652 at 60, 0.649 at 100" in labels
    # The band's half-width is t(0.975, 9) * std / sqrt(10) around the 10-fold accuracy.
    band = _bands(ax)[0].get_paths()[0].vertices
    half = stats.t.ppf(0.975, 9) * 0.03 / np.sqrt(10)
    assert band[:, 1].max() == pytest.approx(0.6 + 0.02 * 6 + half)
    plain = vp.accuracy_by_epoch(_history(), show_fixed=False)
    assert [line.get_label() for line in plain.lines] == ["softmax", "sphereface", "chance (half the pairs match)"]
    assert not _bands(plain)
    with pytest.raises(ValueError, match="acc_10fold"):
        vp.accuracy_by_epoch(_history().drop(columns=["acc_10fold"]))


def test_accuracy_by_epoch_lists_every_course_point_when_all_lie_beyond_the_run():
    ax = vp.accuracy_by_epoch(_history(), course_points=SPHEREFACE_FIXED_THRESHOLD_ACCURACY)
    assert not [line for line in ax.lines if line.get_marker() == "X"]
    assert ax.get_xlim()[1] <= 7
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(label.endswith("0.584 at 20, 0.623 at 40, 0.652 at 60, 0.651 at 80, 0.649 at 100") for label in labels)


def test_pair_scores_by_head_unstacks_the_long_table_in_pair_order():
    table = pd.DataFrame({"pair": [1, 0, 0, 1], "same": [False, True, True, False], "head": ["a", "a", "b", "b"],
                          "score": [0.1, 0.9, 0.8, 0.2], "threshold_10fold": [0.5, 0.5, 0.4, 0.4]})
    scores, same, thresholds = vp.pair_scores_by_head(table)
    assert list(scores) == ["a", "b"] and list(scores["a"]) == [0.9, 0.1] and list(scores["b"]) == [0.8, 0.2]
    assert list(same) == [True, False] and thresholds == {"a": 0.5, "b": 0.4}
    table.loc[3, "pair"] = 7
    with pytest.raises(ValueError, match="head 'b' scores other pairs"):
        vp.pair_scores_by_head(table)
