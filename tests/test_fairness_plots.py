"""Tests of lib.fairness_plots: figures carry the expected artists, at positions recomputed here by
brute force (loops, statistics, scipy, statsmodels), and tables hold independently computed values."""

from __future__ import annotations

import math
import statistics

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection, QuadMesh  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from scipy import stats  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402
from statsmodels.stats.proportion import proportion_confint  # noqa: E402

from lib.fairness import DisparitySummary, McNemarResult  # noqa: E402
from lib.fairness_plots import (  # noqa: E402
    confusion_matrices,
    curves_with_band,
    shared_legend,
    difference_forest,
    disparity_table,
    error_rate_plot,
    forest_plot,
    format_p_value,
    mcnemar_table,
    per_group_accuracy_by_epoch,
    per_group_roc_plot,
    significance_marker,
    style_disparity_table,
)

GROUPS = [f"Group {letter}" for letter in "ABCDEFG"]
HEADS = ["softmax", "cosface", "arcface"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def errorbar_containers(ax):
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def whisker_ends(container) -> np.ndarray:
    """(lower x, upper x, y) of each horizontal whisker of an errorbar container."""
    segments = container.lines[2][0].get_segments()
    return np.array([[min(s[0][0], s[1][0]), max(s[0][0], s[1][0]), s[0][1]] for s in segments])


def vertical_lines(ax) -> list[float]:
    """x of every axvline (a Line2D whose two x values coincide and whose y spans the axes)."""
    found = []
    for line in ax.get_lines():
        x = np.asarray(line.get_xdata(), dtype=float)
        if len(x) == 2 and x[0] == x[1] and list(line.get_ydata()) == [0, 1]:
            found.append(float(x[0]))
    return found


def styled_cells(styler) -> list[dict]:
    """Rows of a Styler as rendered text, keyed by header."""
    lines = styler.to_string(delimiter="|").strip().splitlines()
    header = lines[0].split("|")
    return [dict(zip(header, line.split("|"))) for line in lines[1:]]


# ---------------------------------------------------------------- forest plot
def accuracy_table(seed=0, groups=GROUPS[:4], heads=HEADS):
    rng = np.random.default_rng(seed)
    rows = []
    for head in heads:
        for group in groups:
            n = int(rng.integers(50, 200))
            accuracy = float(rng.uniform(0.5, 0.9))
            rows.append({"head": head, "group": group, "n": n, "accuracy": accuracy,
                         "lower": accuracy - rng.uniform(0.01, 0.1), "upper": accuracy + rng.uniform(0.01, 0.1)})
    return pd.DataFrame(rows)


def test_forest_plot_draws_one_container_per_head_with_given_whiskers_and_order():
    table = accuracy_table()
    order = ["Group C", "Group A", "Group D", "Group B"]
    ax = forest_plot(table, order=order)
    containers = errorbar_containers(ax)
    assert len(containers) == len(HEADS)
    assert [t.get_text() for t in ax.get_yticklabels()] == order
    bottom, top = ax.get_ylim()
    assert top < bottom  # first group drawn at the top
    for head, container in zip(HEADS, containers):
        rows = [table[(table["head"] == head) & (table["group"] == group)].iloc[0] for group in order]
        x, y = container.lines[0].get_xdata(), container.lines[0].get_ydata()
        np.testing.assert_allclose(x, [row["accuracy"] for row in rows])
        np.testing.assert_allclose(np.diff(y), 1.0)  # one group per unit step, same dodge offset
        ends = whisker_ends(container)
        np.testing.assert_allclose(ends[:, 0], [row["lower"] for row in rows])
        np.testing.assert_allclose(ends[:, 1], [row["upper"] for row in rows])
    offsets = [container.lines[0].get_ydata()[0] for container in containers]
    assert len(set(np.round(offsets, 9))) == len(HEADS)  # heads dodged
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert all(any(text.startswith(head) for text in legend) for head in HEADS)


def test_forest_plot_chance_line_is_labelled():
    ax = forest_plot(accuracy_table(), overall=False, chance=1 / 7)
    assert vertical_lines(ax) == [pytest.approx(1 / 7)]
    assert "chance (1/7 = 0.143)" in [t.get_text() for t in ax.get_legend().get_texts()]
    ax = forest_plot(accuracy_table(), overall=False, chance=0.4)
    assert "chance (0.400)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_per_group_accuracy_by_epoch_and_curves_draw_the_chance_level():
    fig = per_group_accuracy_by_epoch(history(), GROUPS, HEADS, chance=0.5)
    for ax in fig.axes:
        assert [line.get_ydata()[0] for line in ax.get_lines() if line.get_label().startswith("chance")] == [0.5]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [*HEADS, "chance (1/2 = 0.500)"]
    ax = curves_with_band(history(groups=GROUPS[:1]).drop(columns="group"), y="accuracy", chance=0.25)
    assert "chance (1/4 = 0.250)" in [t.get_text() for t in ax.get_legend().get_texts()]


def comparison_rows():
    return pd.DataFrame({
        "head": ["cosrelu = cosface", "normsoftmax", "arcface (collapsed)"],
        "reference": ["cosine_softmax"] * 3, "group": ["", "", "Black"],
        "difference": [-0.013, 0.023, 0.05], "lower": [-0.035, 0.011, -0.02], "upper": [0.008, 0.035, 0.12],
        "interval": "95% t-interval over seeds", "correction": "holm",
        "verdict": ["not resolved", "higher", "not compared: arcface (collapsed)"],
    })


def test_difference_forest_in_percentage_points_with_verdict_markers():
    rows = comparison_rows()
    ax = difference_forest(rows, prefix="group")
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["(cosrelu = cosface) − cosine_softmax", "normsoftmax − cosine_softmax",
                      "Black: arcface (collapsed) − cosine_softmax"]
    containers = errorbar_containers(ax)
    by_label = {c.get_label(): c for c in containers}
    assert set(by_label) == {"resolved (corrected)", "not resolved", "not compared (collapsed head)"}
    resolved = by_label["resolved (corrected)"]
    assert resolved.lines[0].get_xdata() == pytest.approx([2.3]) and resolved.lines[0].get_ydata() == pytest.approx([1])
    np.testing.assert_allclose(whisker_ends(resolved)[0, :2], [1.1, 3.5])
    assert resolved.lines[0].get_markerfacecolor() == "black"
    assert by_label["not resolved"].lines[0].get_markerfacecolor() == "white"
    assert vertical_lines(ax) == [0.0]
    assert "percentage points" in ax.get_xlabel() and "95% t-interval over seeds" in ax.get_xlabel()
    assert "Holm-corrected" in ax.get_xlabel()
    with pytest.raises(ValueError, match="no rows"):
        difference_forest(rows.iloc[:0])


def test_forest_plot_overall_lines_are_sample_weighted_means():
    table = accuracy_table(seed=1)
    ax = forest_plot(table)
    expected = []
    for head in HEADS:
        correct = total = 0.0
        for _, row in table[table["head"] == head].iterrows():
            correct += row["accuracy"] * row["n"]
            total += row["n"]
        expected.append(correct / total)
    np.testing.assert_allclose(sorted(vertical_lines(ax)), sorted(expected))
    assert vertical_lines(forest_plot(table, overall=False)) == []
    given = {"softmax": 0.61, "cosface": 0.62, "arcface": 0.63}
    np.testing.assert_allclose(sorted(vertical_lines(forest_plot(table, overall=given))), [0.61, 0.62, 0.63])


def test_forest_plot_single_head_and_missing_interval():
    table = accuracy_table(heads=["only"]).drop(columns="head")
    table.loc[1, ["lower", "upper"]] = np.nan  # e.g. a one-seed std: no whisker, no error
    ax = forest_plot(table, by=None)
    assert len(errorbar_containers(ax)) == 1


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.assign(lower=t["accuracy"] + 0.01), "lower"),
        (lambda t: pd.concat([t, t.iloc[[0]]]), "several rows"),
        (lambda t: t.drop(columns="upper"), "upper"),
    ],
)
def test_forest_plot_rejects_bad_tables(change, message):
    with pytest.raises(ValueError, match=message):
        forest_plot(change(accuracy_table()))


def test_forest_plot_rejects_order_missing_a_group():
    with pytest.raises(ValueError, match="not in the given order"):
        forest_plot(accuracy_table(), order=["Group A", "Group B"])


# ---------------------------------------------------------------- disparity tables
def summary_of(accuracies):
    """A DisparitySummary computed by hand for groups g0, g1, ... with the given accuracies."""
    accuracies = list(accuracies)
    errors = [1 - a for a in accuracies]
    best, worst = accuracies.index(max(accuracies)), accuracies.index(min(accuracies))
    ser = max(errors) / min(errors) if min(errors) > 0 else math.nan
    return DisparitySummary(
        n_groups=len(accuracies), best_group=f"g{best}", worst_group=f"g{worst}",
        max_accuracy=max(accuracies), min_accuracy=min(accuracies), gap=max(accuracies) - min(accuracies),
        ratio=min(accuracies) / max(accuracies), std=statistics.pstdev(accuracies), max_error=max(errors),
        min_error=min(errors), ser=ser, ser_note="" if min(errors) > 0 else "undefined: a group has no errors",
    )


def seeds_frame(per_seed_accuracies):
    from dataclasses import asdict

    return pd.DataFrame([{"seed": s, **asdict(summary_of(a))} for s, a in enumerate(per_seed_accuracies)])


def test_disparity_table_single_summaries_and_seed_intervals():
    seeds = [[0.9, 0.8, 0.6], [0.85, 0.8, 0.7], [0.9, 0.75, 0.65], [0.8, 0.8, 0.6]]
    table = disparity_table({"cosface": summary_of([0.9, 0.8, 0.6]), "arcface": seeds_frame(seeds)})
    assert list(table["head"]) == ["cosface", "arcface"]
    single, over_seeds = table.iloc[0], table.iloc[1]
    assert single["n_seeds"] == 1 and over_seeds["n_seeds"] == 4
    np.testing.assert_allclose([single["gap"], single["ratio"], single["ser"]], [0.3, 0.6 / 0.9, 0.4 / 0.1])
    np.testing.assert_allclose(single["std"], np.std([0.9, 0.8, 0.6]))
    assert np.isnan(single["gap_lower"]) and np.isnan(single["ser_upper"])
    gaps = [max(a) - min(a) for a in seeds]
    lower, upper = stats.t.interval(0.95, df=3, loc=np.mean(gaps), scale=stats.sem(gaps))
    np.testing.assert_allclose([over_seeds["gap"], over_seeds["gap_lower"], over_seeds["gap_upper"]],
                               [np.mean(gaps), lower, upper])
    sers = [(1 - min(a)) / (1 - max(a)) for a in seeds]
    np.testing.assert_allclose(over_seeds["ser"], np.mean(sers))
    assert over_seeds["worst_group"] == "g2 (4 of 4 seeds)"


def test_disparity_table_undefined_ser_over_seeds_and_styled_as_undefined():
    seeds = [[0.9, 0.8, 0.6], [1.0, 0.8, 0.7], [0.9, 0.75, 0.65]]  # seed 1: a group without errors
    table = disparity_table({"a": seeds_frame(seeds), "b": summary_of([1.0, 0.9, 0.8]),
                             "c": summary_of([0.9, 0.8, 0.6])})
    assert np.isnan(table.loc[0, "ser"]) and table.loc[0, "ser_note"].startswith("undefined in 1 of 3 seeds")
    assert np.isnan(table.loc[1, "ser"]) and table.loc[1, "ser_note"].startswith("undefined")
    assert np.isfinite(table.loc[0, "gap"])  # only SER is lost
    cells = styled_cells(style_disparity_table(table))
    assert len(cells) == 3
    ser_header = next(h for h in cells[0] if h.startswith("SER"))
    assert cells[0][ser_header] == "undefined (1 of 3 seeds)"
    assert cells[1][ser_header] == "undefined"
    assert cells[2][ser_header] == "4.00"
    gap_header = next(h for h in cells[0] if h.startswith("gap"))
    gaps = [max(a) - min(a) for a in seeds]
    lower, upper = stats.t.interval(0.95, df=2, loc=np.mean(gaps), scale=stats.sem(gaps))
    assert cells[0][gap_header] == f"{np.mean(gaps):.3f} [{lower:.3f}, {upper:.3f}]"
    assert cells[2][gap_header] == "0.300"


def test_disparity_table_keeps_intervals_given_with_a_single_summary():
    from dataclasses import asdict

    given = {**asdict(summary_of([0.9, 0.8, 0.6])), "gap_lower": 0.21, "gap_upper": 0.39}
    table = disparity_table({"cosface": given})
    assert (table.loc[0, "gap_lower"], table.loc[0, "gap_upper"]) == (0.21, 0.39)
    assert np.isnan(table.loc[0, "ratio_lower"])
    cells = styled_cells(style_disparity_table(table))
    assert cells[0]["gap (max − min)"] == "0.300 [0.210, 0.390]"


def test_disparity_table_rejects_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        disparity_table({})
    with pytest.raises(ValueError, match="lacks"):
        disparity_table({"a": pd.DataFrame({"gap": [0.1]})})
    with pytest.raises(ValueError, match="DisparitySummary"):
        disparity_table({"a": 0.3})


# ---------------------------------------------------------------- curves over epochs
def history(seed=0, n_seeds=4, epochs=5, groups=GROUPS, heads=HEADS):
    rng = np.random.default_rng(seed)
    rows = [
        {"head": head, "seed": s, "epoch": epoch, "group": group, "accuracy": float(rng.uniform(0.4, 0.9))}
        for head in heads for s in range(n_seeds) for epoch in range(1, epochs + 1) for group in groups
    ]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # row order must not matter


def band_edges(poly: PolyCollection, x: float) -> tuple[float, float]:
    vertices = poly.get_paths()[0].vertices
    at_x = vertices[np.isclose(vertices[:, 0], x), 1]
    return float(at_x.min()), float(at_x.max())


def brute_mean_std(frame, **where):
    values = [row["accuracy"] for _, row in frame.iterrows() if all(row[k] == v for k, v in where.items())]
    return statistics.mean(values), statistics.stdev(values)


def test_per_group_accuracy_by_epoch_has_one_panel_per_group_with_bands():
    frame = history()
    fig = per_group_accuracy_by_epoch(frame, GROUPS, HEADS)
    assert len(fig.axes) == len(GROUPS)
    assert [ax.get_title() for ax in fig.axes] == GROUPS
    for ax in fig.axes:
        assert len(ax.get_lines()) == len(HEADS)
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == len(HEADS)
    ax = fig.axes[2]  # Group C
    line = ax.get_lines()[1]  # cosface
    assert line.get_label() == "cosface"
    poly = [c for c in ax.collections if isinstance(c, PolyCollection)][1]
    for epoch, y in zip(line.get_xdata(), line.get_ydata()):
        mean, std = brute_mean_std(frame, group="Group C", head="cosface", epoch=epoch)
        assert y == pytest.approx(mean)
        assert band_edges(poly, epoch) == pytest.approx((mean - std, mean + std))
    assert "4 seeds" in fig._suptitle.get_text()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == HEADS


def test_per_group_accuracy_by_epoch_legend_lists_a_head_missing_from_the_first_group():
    frame = history(groups=GROUPS[:2])
    frame = frame[~((frame["head"] == "softmax") & (frame["group"] == "Group A"))]
    fig = per_group_accuracy_by_epoch(frame, GROUPS[:2], HEADS)
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 3]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == HEADS


def test_per_group_accuracy_by_epoch_single_seed_and_duplicates():
    frame = history(n_seeds=1, groups=GROUPS[:3]).drop(columns="seed")
    fig = per_group_accuracy_by_epoch(frame, seed=None)
    assert len(fig.axes) == 3
    assert all(not any(isinstance(c, PolyCollection) for c in ax.collections) for ax in fig.axes)
    with pytest.raises(ValueError, match="several rows"):
        per_group_accuracy_by_epoch(history(n_seeds=2, groups=GROUPS[:3]), seed=None)
    with pytest.raises(ValueError, match="not in the given order"):
        per_group_accuracy_by_epoch(frame, heads=HEADS[:2], seed=None)
    reordered = per_group_accuracy_by_epoch(frame, groups=GROUPS[::-1], seed=None)  # absent groups left out
    assert [ax.get_title() for ax in reordered.axes] == GROUPS[:3][::-1]


def test_curves_with_band_mean_and_std_over_seeds():
    frame = history(groups=["all"]).drop(columns="group").rename(columns={"accuracy": "overall"})
    ax = curves_with_band(frame, hue_order=HEADS)
    assert [line.get_label() for line in ax.get_lines()] == HEADS
    polys = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(polys) == len(HEADS)
    frame_acc = frame.rename(columns={"overall": "accuracy"})
    for line, poly, head in zip(ax.get_lines(), polys, HEADS):
        assert list(line.get_xdata()) == [1, 2, 3, 4, 5]  # sorted by epoch despite shuffled rows
        for epoch, y in zip(line.get_xdata(), line.get_ydata()):
            mean, std = brute_mean_std(frame_acc, head=head, epoch=epoch)
            assert y == pytest.approx(mean)
            assert band_edges(poly, epoch) == pytest.approx((mean - std, mean + std))
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "overall"
    sparse = frame.assign(overall=frame["overall"].where(frame["epoch"] % 2 == 1))  # evaluated every 2nd epoch
    assert list(curves_with_band(sparse, hue_order=HEADS).get_lines()[0].get_xdata()) == [1, 3, 5]
    with pytest.raises(ValueError, match="lacks"):
        curves_with_band(frame, y="val_accuracy")


# ---------------------------------------------------------------- confusion matrices
def test_confusion_matrices_are_row_normalized_heatmaps_one_per_head():
    rng = np.random.default_rng(3)
    first = rng.integers(0, 30, (4, 4))
    first[2] = 0  # a class without samples: blank row
    second = rng.integers(1, 30, (3, 3))
    conf = {"cosface": (first, list("abcd")), "arcface": (second, list("xyz"))}
    fig = confusion_matrices(conf)
    heatmaps = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"
                and any(isinstance(c, QuadMesh) for c in ax.collections)]
    assert len(heatmaps) == 2
    assert len(fig.axes) == 3  # plus one shared colour bar
    for ax, (head, (matrix, labels)) in zip(heatmaps, conf.items()):
        expected = np.full(matrix.shape, np.nan)
        for i in range(matrix.shape[0]):
            total = sum(matrix[i])
            for j in range(matrix.shape[1]):
                if total:
                    expected[i, j] = matrix[i, j] / total
        shown = np.ma.filled(np.ma.masked_invalid(ax.collections[0].get_array()), np.nan).reshape(matrix.shape)
        np.testing.assert_allclose(shown, expected)
        assert [t.get_text() for t in ax.get_yticklabels()] == labels
        assert head in ax.get_title()
        assert f"{np.trace(matrix) / matrix.sum():.3f}" in ax.get_title()


@pytest.mark.parametrize(
    "value, message",
    [
        ((np.ones((2, 3)), ["a", "b"]), "square"),
        ((np.ones((2, 2)), ["a", "b", "c"]), "labels"),
        ((-np.ones((2, 2)), ["a", "b"]), "non-negative"),
        (np.ones((2, 2)), "pair"),
    ],
)
def test_confusion_matrices_reject_bad_input(value, message):
    with pytest.raises(ValueError, match=message):
        confusion_matrices({"head": value})


# ---------------------------------------------------------------- verification error rates
def rate_table(counts):
    """An error-rate table from (group, n_genuine, false_non_matches, n_impostor, false_matches) with
    statsmodels' Wilson intervals; NaN rates where a group has no pairs of that kind."""
    rows = []
    for group, n_gen, fnm, n_imp, fm in counts:
        row = {"group": group, "n_genuine": n_gen, "n_impostor": n_imp, "false_non_matches": fnm, "false_matches": fm}
        for rate, k, n in (("fnmr", fnm, n_gen), ("fmr", fm, n_imp)):
            if n:
                lower, upper = proportion_confint(k, n, alpha=0.05, method="wilson")
                row.update({rate: k / n, f"{rate}_lower": lower, f"{rate}_upper": upper})
            else:
                row.update({rate: np.nan, f"{rate}_lower": np.nan, f"{rate}_upper": np.nan})
        rows.append(row)
    return pd.DataFrame(rows)


def test_error_rate_plot_log_fmr_with_wilson_whiskers_and_threshold_in_title():
    table = rate_table([("Group A", 300, 30, 4000, 8), ("Group B", 250, 40, 3000, 0),
                        ("Group C", 200, 10, 5000, 2), ("mixed", 0, 0, 6000, 5)])
    fig = error_rate_plot(table, threshold=0.3141)
    fmr_ax, fnmr_ax = fig.axes
    assert "0.3141" in fig._suptitle.get_text()
    assert fmr_ax.get_xscale() == "log" and fnmr_ax.get_xscale() == "linear"
    assert [t.get_text().split("\n")[0] for t in fmr_ax.get_yticklabels()] == ["Group A", "Group B", "Group C", "mixed"]
    (fmr_bars,), (fnmr_bars,) = errorbar_containers(fmr_ax), errorbar_containers(fnmr_ax)
    fmr_ends = whisker_ends(fmr_bars)
    np.testing.assert_allclose(fmr_ends[:, 1], table["fmr_upper"])
    positive = table["fmr"].to_numpy() > 0
    np.testing.assert_allclose(fmr_ends[positive, 0], table.loc[positive, "fmr_lower"])
    left = fmr_ax.get_xlim()[0]
    assert 0 < left < table.loc[positive, "fmr_lower"].min()
    assert fmr_ends[1, 0] == pytest.approx(left)  # zero false matches: from the axis edge up to the bound
    assert any("0 errors" == text.get_text() for text in fmr_ax.texts)
    fnmr_ends = whisker_ends(fnmr_bars)
    assert len(fnmr_ends) == 3  # the mixed row has no genuine pairs
    np.testing.assert_allclose(fnmr_ends[:, :2], table[["fnmr_lower", "fnmr_upper"]].iloc[:3])
    pooled = (30 + 40 + 10) / (300 + 250 + 200)
    assert vertical_lines(fnmr_ax) == [pytest.approx(pooled)]


def test_error_rate_plot_linear_when_rates_are_large_or_asked():
    table = rate_table([("Group A", 100, 30, 100, 40), ("Group B", 100, 20, 100, 25)])
    assert error_rate_plot(table, threshold=0.1).axes[0].get_xscale() == "linear"
    small = rate_table([("Group A", 100, 30, 5000, 4), ("Group B", 100, 20, 5000, 9)])
    assert error_rate_plot(small, threshold=0.1, log_fmr=False).axes[0].get_xscale() == "linear"
    without_mixed = rate_table([("Group A", 10, 1, 500, 1), ("mixed", 0, 0, 500, 2)])
    fig = error_rate_plot(without_mixed, threshold=0.1, include_mixed=False)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["Group A"]
    assert vertical_lines(fig.axes[0]) == [pytest.approx(3 / 1000)]  # all pairs, mixed ones included
    with pytest.raises(ValueError, match="threshold"):
        error_rate_plot(table)


def test_error_rate_plot_takes_verification_error_rates_and_states_ratios():
    from lib.fairness import verification_error_rates

    rng = np.random.default_rng(5)
    n = 2000
    group = rng.choice(["Group A", "Group B"], n)
    same = rng.random(n) < 0.4
    scores = np.where(same, rng.normal(0.6, 0.2, n), rng.normal(0.0, 0.2, n))
    rates = verification_error_rates(scores, same, group, group, threshold=0.35)
    fig = error_rate_plot(rates)
    title = fig._suptitle.get_text()
    assert "t = 0.35" in title and "FMR max/min" in title and "FNMR max/min" in title
    genuine = [(same & (group == g)).sum() for g in ("Group A", "Group B")]
    rejected = [(same & (group == g) & (scores <= 0.35)).sum() for g in ("Group A", "Group B")]
    wilson = [proportion_confint(k, m, method="wilson") for k, m in zip(rejected, genuine)]
    np.testing.assert_allclose(whisker_ends(errorbar_containers(fig.axes[1])[0])[:, :2], wilson)


# ---------------------------------------------------------------- ROC per group
def roc_long(seed=0, groups=GROUPS[:3]):
    rng = np.random.default_rng(seed)
    frames = []
    for g, group in enumerate(groups):
        same = rng.random(400) < 0.5
        scores = np.where(same, rng.normal(1.0 + 0.3 * g, 1, 400), rng.normal(0, 1, 400))
        fpr, tpr, thresholds = roc_curve(same, scores)
        frames.append(pd.DataFrame({"group": group, "fpr": fpr, "tpr": tpr, "threshold": thresholds}))
    return pd.concat(frames, ignore_index=True)


def test_per_group_roc_plot_log_far_one_line_per_group():
    table = roc_long()
    ax = per_group_roc_plot(table, fars=(1e-2, 1e-9))
    assert ax.get_xscale() == "log"
    curves = [line for line in ax.get_lines() if line.get_label() in GROUPS]
    assert [line.get_label() for line in curves] == GROUPS[:3]
    for line, group in zip(curves, GROUPS[:3]):
        rows = table[(table["group"] == group) & (table["fpr"] > 0)]
        np.testing.assert_allclose(line.get_xdata(), rows["fpr"])
        np.testing.assert_allclose(line.get_ydata(), rows["tpr"])
    assert any(line.get_label() == "chance" for line in ax.get_lines())
    assert vertical_lines(ax) == [pytest.approx(1e-2)]  # 1e-9 is below the resolution: not drawn
    assert ax.get_xlim()[0] == pytest.approx(table.loc[table["fpr"] > 0, "fpr"].min())


def test_per_group_roc_plot_style_column_and_empty_input():
    table = pd.concat([roc_long(0).assign(head="cosface"), roc_long(1).assign(head="arcface")])
    ax = per_group_roc_plot(table, style="head")
    curves = [line for line in ax.get_lines() if "·" in line.get_label()]
    assert len(curves) == 6
    assert {line.get_linestyle() for line in curves if line.get_label().endswith("arcface")} != {
        line.get_linestyle() for line in curves if line.get_label().endswith("cosface")}
    with pytest.raises(ValueError, match="FAR > 0"):
        per_group_roc_plot(pd.DataFrame({"group": ["a"], "fpr": [0.0], "tpr": [1.0]}))


# ---------------------------------------------------------------- McNemar table
def test_significance_markers_and_p_formatting():
    assert [significance_marker(p) for p in (0.0004, 0.001, 0.004, 0.01, 0.04, 0.05, 0.5, np.nan)] == [
        "***", "**", "**", "*", "*", "n.s.", "n.s.", "—"]
    formatted = [format_p_value(p) for p in (0.04, 0.001, 0.00032, 1.0, np.nan)]
    assert formatted == ["0.040", "0.001", "3.2e-04", "1.000", "—"]


def test_mcnemar_table_formats_holm_p_values_with_markers_and_overall_row():
    by_group = pd.DataFrame({
        "group": ["Group A", "Group B", "Group C"],
        "n": [100, 200, 300],
        "accuracy_a": [0.8, 0.7, 0.9],
        "accuracy_b": [0.75, 0.72, 0.8],
        "only_a": [10, 4, 40],
        "only_b": [5, 8, 10],
        "p_value": [0.30, 0.38, 0.00002],
        "p_holm": [0.60, 0.60, 0.00006],
        "reject": [False, False, True],
    })
    overall = McNemarResult(n=600, only_a=54, only_b=23, p_value=0.0005)
    table = mcnemar_table(by_group, head_a="CosFace", head_b="ArcFace", overall=overall)
    assert list(table.columns) == ["group", "n", "accuracy CosFace", "accuracy ArcFace", "only CosFace right",
                                   "only ArcFace right", "p (exact)", "p (Holm)", "significance"]
    assert list(table["group"]) == ["all samples", "Group A", "Group B", "Group C"]
    assert list(table["significance"]) == ["***", "n.s.", "n.s.", "***"]
    assert list(table["p (Holm)"]) == ["—", "0.600", "0.600", "6.0e-05"]
    assert list(table["p (exact)"]) == ["5.0e-04", "0.300", "0.380", "2.0e-05"]
    # overall accuracy = sample-weighted group accuracies: (80 + 140 + 270) / 600 and (75 + 144 + 240) / 600
    assert table.loc[0, "accuracy CosFace"] == pytest.approx(round(490 / 600, 3))
    assert table.loc[0, "accuracy ArcFace"] == pytest.approx(round(459 / 600, 3))
    single = mcnemar_table(McNemarResult(n=50, only_a=9, only_b=1, p_value=0.0215))
    assert len(single) == 1 and single.loc[0, "significance"] == "*" and single.loc[0, "p (exact)"] == "0.021"


def _overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts (titles, tick labels, axis labels, suptitle) whose drawn boxes overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = []  # (text, group): tick labels of one axis are one group (rotated labels' boxes always overlap)
    for number, ax in enumerate(fig.axes):
        if ax.get_label() == "<colorbar>":
            continue
        texts += [(t, None) for t in (ax.title, ax.xaxis.label, ax.yaxis.label)]
        texts += [(t, (number, "x")) for t in ax.get_xticklabels()] + [(t, (number, "y")) for t in ax.get_yticklabels()]
    if fig._suptitle is not None:
        texts.append((fig._suptitle, None))
    boxes = [(t.get_text(), group, t.get_window_extent(renderer).expanded(1, 1).padded(-1))  # touching is fine
             for t, group in texts if t.get_visible() and t.get_text()]
    return [(a, b) for i, (a, group_a, box_a) in enumerate(boxes) for b, group_b, box_b in boxes[i + 1:]
            if (group_a is None or group_a != group_b) and box_a.overlaps(box_b)]


def test_confusion_matrices_are_readable_at_the_pages_width():
    """Issue 26: 03's seven-race matrices had ~6 pt cell numbers at the page's width and a class name ran into
    the title of the panel below. Five heads, FairFace's seven race names."""
    from lib import labels, plots

    rng = np.random.default_rng(0)
    races = list(labels.RACES)
    conf = {head: (rng.integers(0, 60, (7, 7)) + 200 * np.eye(7, dtype=int), races)
            for head in ("cosine_softmax", "normsoftmax", "cosrelu = cosface", "arcface", "softmax")}
    fig = confusion_matrices(conf, title="Confusion matrices (race), summed over seeds")
    assert fig.get_size_inches()[0] <= plots.PAGE_WIDTH_INCHES  # shown unscaled: points are points
    heatmaps = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    cell_numbers = [t for ax in heatmaps for t in ax.texts]
    assert len(cell_numbers) == 5 * 49 and min(t.get_fontsize() for t in cell_numbers) >= plots.MIN_FONT_PT
    names = [t for ax in heatmaps for t in (*ax.get_xticklabels(), *ax.get_yticklabels()) if t.get_visible()]
    assert names and min(t.get_fontsize() for t in names) >= plots.MIN_FONT_PT
    assert _overlapping_texts(fig) == []
    # Every panel still says which head it is; the class names are on the left column and the bottom panels.
    assert [ax.get_title().split("\n")[0] for ax in heatmaps] == list(conf)
    shown_left = [ax for ax in heatmaps if any(t.get_visible() and t.get_text() for t in ax.get_yticklabels())]
    assert len(shown_left) == 3


def test_shared_legend_tells_the_chance_level_from_the_loss_floor():
    """Issue 26: 03's loss panels showed the legend entry 'chance (1/7 = 0.143)' beside a dotted line that was
    the loss floor. Each reference line now has its own entry and line style."""
    frame = history(groups=GROUPS[:1]).drop(columns="group")
    frame["loss"] = 2.5 - 0.1 * frame["epoch"]
    fig, (left, right) = plt.subplots(1, 2)
    curves_with_band(frame, y="accuracy", ax=left, chance=1 / 7, chance_label="chance accuracy")
    curves_with_band(frame, y="loss", ax=right, floor=1.946, floor_label="cosine_softmax loss floor")
    legend = shared_legend([left, right], title="head")
    entries = dict(zip([t.get_text() for t in legend.get_texts()], legend.legend_handles))
    assert list(entries)[-2:] == ["chance accuracy (1/7 = 0.143)", "cosine_softmax loss floor (1.946)"]
    assert entries["chance accuracy (1/7 = 0.143)"].get_linestyle() != entries["cosine_softmax loss floor (1.946)"].get_linestyle()
    assert [line.get_ydata()[0] for line in right.lines if line.get_linestyle() == "-."] == [1.946]
    assert left.get_legend() is None and legend.axes is right
    assert len(entries) == len(HEADS) + 2  # every head once, though both panels draw it


def test_difference_forest_in_fractions_matches_a_table_of_fractions():
    """Issue 26: 04's effect-size plots were in percentage points while the table under them used fractions."""
    ax = difference_forest(comparison_rows(), prefix="group", unit="fraction")
    resolved = {c.get_label(): c for c in errorbar_containers(ax)}["resolved (corrected)"]
    assert resolved.lines[0].get_xdata() == pytest.approx([0.023])  # the table's value, not 2.3
    np.testing.assert_allclose(whisker_ends(resolved)[0, :2], [0.011, 0.035])
    assert "fraction" in ax.get_xlabel() and "percentage points)" not in ax.get_xlabel()
    with pytest.raises(ValueError, match="unit"):
        difference_forest(comparison_rows(), unit="percent")
