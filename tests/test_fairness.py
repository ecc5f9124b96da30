"""Tests of lib.fairness against fairlearn, statsmodels, brute-force loops and planted disparities."""

from __future__ import annotations

import math
import statistics
import warnings

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame
from scipy import stats
from sklearn.metrics import accuracy_score, roc_curve
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from lib.fairness import (
    MIXED,
    adjust_p_values,
    benjamini_hochberg_adjust,
    disparity_summary,
    disparity_over_seeds,
    disparity_over_seeds_and_images,
    group_accuracy,
    group_accuracy_over_seeds,
    holm_adjust,
    mcnemar_by_group,
    mcnemar_exact,
    paired_bootstrap_gap_difference,
    per_group_roc,
    permutation_test_gap,
    threshold_at_far,
    verification_error_rates,
    wilson_interval,
)
from lib.verification import roc_metrics

GROUPS = ("Group A", "Group B", "Group C", "Group D")


def planted_predictions(accuracies, n_per_group, seed, n_classes=7):
    """Labels/predictions where group g is right with probability accuracies[g] (wrong → another class)."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"Group {chr(65 + g)}" for g in range(len(accuracies))], n_per_group)
    y_true = rng.integers(0, n_classes, len(groups))
    correct = rng.random(len(groups)) < np.repeat(accuracies, n_per_group)
    y_pred = np.where(correct, y_true, (y_true + rng.integers(1, n_classes, len(groups))) % n_classes)
    return y_true, y_pred, groups


def random_predictions(n=600, seed=0):
    rng = np.random.default_rng(seed)
    groups = rng.choice(GROUPS, n, p=[0.4, 0.3, 0.2, 0.1])
    y_true = rng.integers(0, 3, n)
    y_pred = np.where(rng.random(n) < 0.7, y_true, rng.integers(0, 3, n))
    return y_true, y_pred, groups


# ---------------------------------------------------------------- per-group accuracy
def test_wilson_matches_statsmodels_including_edges():
    k = np.array([0, 1, 5, 37, 99, 100, 3])
    n = np.array([10, 10, 10, 100, 100, 100, 7])
    for alpha in (0.05, 0.1):
        lower, upper = wilson_interval(k, n, alpha)
        ref_lower, ref_upper = proportion_confint(k, n, alpha=alpha, method="wilson")
        np.testing.assert_allclose(lower, ref_lower, atol=1e-12)
        np.testing.assert_allclose(upper, ref_upper, atol=1e-12)


def test_wilson_bounds_never_cross_the_estimate():
    # Rounding once gave a lower bound of 2.8e-17 for 0 successes in 9, above the estimate 0.
    n = np.arange(1, 200)
    for k in (np.zeros_like(n), n):
        lower, upper = wilson_interval(k, n)
        assert np.all(lower <= k / n) and np.all(k / n <= upper)
    lower, upper = wilson_interval(np.array([0]), np.array([0]))
    assert np.isnan(lower[0]) and np.isnan(upper[0])


def test_group_accuracy_matches_fairlearn():
    y_true, y_pred, groups = random_predictions()
    table = group_accuracy(y_true, y_pred, groups)
    frame = MetricFrame(metrics=accuracy_score, y_true=y_true, y_pred=y_pred, sensitive_features=groups)
    by_group = frame.by_group
    np.testing.assert_allclose(table.set_index("group")["accuracy"], by_group.loc[table["group"]])
    summary = disparity_summary(table)
    assert summary.gap == pytest.approx(frame.difference())
    assert summary.ratio == pytest.approx(frame.ratio())
    assert summary.min_accuracy == pytest.approx(frame.group_min())
    assert summary.max_accuracy == pytest.approx(frame.group_max())
    assert summary.std == pytest.approx(statistics.pstdev(by_group.tolist()))  # population std (RFW)
    assert table["n"].tolist() == [int(np.sum(groups == g)) for g in table["group"]]
    ref_lower, ref_upper = proportion_confint(table["correct"], table["n"], method="wilson")
    np.testing.assert_allclose(table["lower"], ref_lower)
    np.testing.assert_allclose(table["upper"], ref_upper)


def test_group_order_and_unknown_groups():
    y_true, y_pred, groups = random_predictions()
    order = ("Group D", "Group C", "Group X", "Group B", "Group A")
    table = group_accuracy(y_true, y_pred, groups, order=order)
    assert table["group"].tolist() == ["Group D", "Group C", "Group B", "Group A"]  # absent X left out
    with pytest.raises(ValueError, match="not in `order`"):
        group_accuracy(y_true, y_pred, groups, order=("Group A", "Group B"))


def test_disparity_known_answer():
    y_true = np.zeros(30, dtype=int)
    groups = np.repeat(["A", "B", "C"], 10)
    y_pred = np.concatenate([[0] * 9 + [1], [0] * 8 + [1] * 2, [0] * 6 + [1] * 4])  # 0.9, 0.8, 0.6
    summary = disparity_summary(group_accuracy(y_true, y_pred, groups))
    assert (summary.best_group, summary.worst_group) == ("A", "C")
    assert summary.gap == pytest.approx(0.3)
    assert summary.ratio == pytest.approx(0.6 / 0.9)
    assert summary.ser == pytest.approx(0.4 / 0.1)
    assert summary.ser_note == ""


def test_group_with_all_correct_makes_ser_undefined():
    y_true = np.zeros(20, dtype=int)
    groups = np.repeat(["A", "B"], 10)
    y_pred = np.concatenate([np.zeros(10, dtype=int), [0] * 7 + [1] * 3])
    table = group_accuracy(y_true, y_pred, groups)
    perfect = table.set_index("group").loc["A"]
    assert perfect["accuracy"] == 1.0 and perfect["upper"] == pytest.approx(1.0) and perfect["lower"] < 0.8
    summary = disparity_summary(table)
    assert math.isnan(summary.ser) and summary.ser_note == "undefined: a group has no errors"
    assert summary.gap == pytest.approx(0.3)


# ---------------------------------------------------------------- McNemar and Holm
def test_mcnemar_matches_statsmodels():
    rng = np.random.default_rng(1)
    for trial in range(20):
        n = int(rng.integers(5, 200))
        correct_a = rng.random(n) < rng.uniform(0.3, 0.95)
        correct_b = np.where(rng.random(n) < 0.8, correct_a, rng.random(n) < 0.5)
        result = mcnemar_exact(correct_a, correct_b)
        table = [
            [np.sum(correct_a & correct_b), np.sum(correct_a & ~correct_b)],
            [np.sum(~correct_a & correct_b), np.sum(~correct_a & ~correct_b)],
        ]
        assert result.only_a == table[0][1] and result.only_b == table[1][0]
        assert result.p_value == pytest.approx(mcnemar(table, exact=True).pvalue, abs=1e-12)
    identical = mcnemar_exact([1, 0, 1], [1, 0, 1])
    assert identical.p_value == 1.0 and identical.only_a == identical.only_b == 0


def test_holm_matches_statsmodels():
    rng = np.random.default_rng(2)
    for p in (rng.uniform(0, 0.1, 7), np.array([0.01, 0.04, 0.04, 0.03, 0.2]), np.array([0.5])):
        np.testing.assert_allclose(holm_adjust(p), multipletests(p, method="holm")[1], atol=1e-12)


def test_benjamini_hochberg_and_nan_handling_match_statsmodels():
    rng = np.random.default_rng(4)
    for p in (rng.uniform(0, 0.2, 9), np.array([0.01, 0.04, 0.04, 0.03, 0.2]), np.array([0.5])):
        expected = multipletests(p, method="fdr_bh")[1]
        np.testing.assert_allclose(benjamini_hochberg_adjust(p), expected, atol=1e-12)
        np.testing.assert_allclose(adjust_p_values(p, "bh"), expected, atol=1e-12)
    with_nan = np.array([0.01, np.nan, 0.04, 0.03])
    for method, theirs in (("holm", "holm"), ("bh", "fdr_bh")):
        adjusted = adjust_p_values(with_nan, method)
        assert np.isnan(adjusted[1])  # a test that could not be run is not part of the family
        np.testing.assert_allclose(adjusted[[0, 2, 3]], multipletests(with_nan[[0, 2, 3]], method=theirs)[1])
    with pytest.raises(ValueError, match="method must be one of"):
        adjust_p_values([0.1], "bonferroni")


def test_mcnemar_by_group():
    rng = np.random.default_rng(3)
    groups = np.repeat(GROUPS, 150)
    correct_a = rng.random(600) < 0.8
    # B redraws 30 % of A's outcomes at A's rate (symmetric discordance), and is much worse on Group A.
    correct_b = np.where(rng.random(600) < 0.3, rng.random(600) < 0.8, correct_a)
    correct_b &= ~((groups == "Group A") & (rng.random(600) < 0.4))
    table = mcnemar_by_group(correct_a, correct_b, groups)
    raw = []
    for name in GROUPS:
        a, b = correct_a[groups == name], correct_b[groups == name]
        raw.append(mcnemar([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]], exact=True).pvalue)
    np.testing.assert_allclose(table["p_value"], raw, atol=1e-12)
    reject, p_holm, *_ = multipletests(raw, alpha=0.05, method="holm")
    np.testing.assert_allclose(table["p_holm"], p_holm, atol=1e-12)
    assert table["reject"].tolist() == reject.tolist() == [True, False, False, False]


# ---------------------------------------------------------------- bootstrap and permutation
def test_bootstrap_is_deterministic_for_a_seed():
    y_true, y_pred_a, groups = random_predictions(seed=4)
    _, y_pred_b, _ = random_predictions(seed=5)
    first = paired_bootstrap_gap_difference(y_true, y_pred_a, y_pred_b, groups, n_boot=300, seed=7)
    second = paired_bootstrap_gap_difference(y_true, y_pred_a, y_pred_b, groups, n_boot=300, seed=7)
    other = paired_bootstrap_gap_difference(y_true, y_pred_a, y_pred_b, groups, n_boot=300, seed=8)
    np.testing.assert_array_equal(first.boot_differences, second.boot_differences)
    assert not np.array_equal(first.boot_differences, other.boot_differences)
    gap = lambda pred: disparity_summary(group_accuracy(y_true, pred, groups)).gap  # noqa: E731
    assert first.gap_a == pytest.approx(gap(y_pred_a)) and first.gap_b == pytest.approx(gap(y_pred_b))
    assert first.difference == pytest.approx(first.gap_a - first.gap_b)
    assert first.lower == pytest.approx(np.quantile(first.boot_differences, 0.025))


def test_bootstrap_shortcut_matches_index_resampling():
    # Multinomial draws of the 4 joint outcomes must have the distribution of resampling rows per group.
    y_true, y_pred_a, groups = random_predictions(n=400, seed=6)
    y_pred_b = np.where(np.random.default_rng(7).random(400) < 0.85, y_pred_a, y_true)
    result = paired_bootstrap_gap_difference(y_true, y_pred_a, y_pred_b, groups, n_boot=3000, seed=0)
    rng = np.random.default_rng(99)
    differences = []
    for _ in range(1000):
        index = np.concatenate([rng.choice(np.flatnonzero(groups == g), np.sum(groups == g)) for g in GROUPS])
        acc_a = [np.mean(y_true[index][groups[index] == g] == y_pred_a[index][groups[index] == g]) for g in GROUPS]
        acc_b = [np.mean(y_true[index][groups[index] == g] == y_pred_b[index][groups[index] == g]) for g in GROUPS]
        differences.append((max(acc_a) - min(acc_a)) - (max(acc_b) - min(acc_b)))
    assert np.mean(result.boot_differences) == pytest.approx(np.mean(differences), abs=0.006)
    assert np.std(result.boot_differences) == pytest.approx(np.std(differences), rel=0.1)


def test_bootstrap_gap_is_biased_upward():
    # Every group exactly 80 % right: the observed gap is 0 but every resampled gap is ≥ 0, mostly > 0.
    groups = np.repeat(GROUPS, 100)
    y_true = np.zeros(400, dtype=int)
    y_pred = np.tile(np.r_[np.zeros(80, dtype=int), np.ones(20, dtype=int)], 4)
    result = paired_bootstrap_gap_difference(y_true, y_pred, y_true, groups, n_boot=500, seed=0)
    assert result.gap_a == 0.0 and np.all(result.boot_gaps_a >= 0) and np.mean(result.boot_gaps_a) > 0.05
    assert permutation_test_gap(y_true, y_pred, groups, n_permutations=200).p_value == 1.0


def test_permutation_null_matches_explicit_label_shuffles():
    y_true, y_pred, groups = random_predictions(n=300, seed=8)
    result = permutation_test_gap(y_true, y_pred, groups, n_permutations=4000, seed=1)
    rng, correct, explicit = np.random.default_rng(2), y_true == y_pred, []
    for _ in range(2000):
        shuffled = rng.permutation(groups)
        accuracies = [correct[shuffled == g].mean() for g in GROUPS]
        explicit.append(max(accuracies) - min(accuracies))
    assert stats.ks_2samp(result.null_gaps, explicit).pvalue > 0.01
    assert result.p_value == pytest.approx(
        (1 + np.sum(np.asarray(explicit) >= result.observed_gap - 1e-12)) / 2001, abs=0.03
    )


def test_planted_disparity_is_recovered():
    planted = [0.90, 0.80, 0.70, 0.60]
    y_true, y_pred, groups = planted_predictions(planted, 500, seed=11)
    table = group_accuracy(y_true, y_pred, groups)
    assert table["accuracy"].is_monotonic_decreasing  # the planted order is recovered
    assert np.all((table["lower"] < planted) & (np.array(planted) < table["upper"]))
    assert permutation_test_gap(y_true, y_pred, groups, seed=0).p_value < 0.001
    y_true, y_pred, groups = planted_predictions([0.75] * 4, 500, seed=11)
    assert permutation_test_gap(y_true, y_pred, groups, seed=0).p_value > 0.05


def test_permutation_p_value_known_answers():
    # Two groups of two; the two correct samples share a group in 2 of the C(4, 2) = 6 relabelings,
    # and only then is the gap (1) as large as observed, so p → 1/3 (ties count as "as extreme").
    result = permutation_test_gap([1, 1, 1, 1], [1, 1, 0, 0], ["A", "A", "B", "B"], n_permutations=6000)
    assert result.observed_gap == 1.0 and result.p_value == pytest.approx(1 / 3, abs=0.02)
    # A p-value is never 0: with 99 permutations and an extreme gap it is exactly 1/100.
    y_true, y_pred, groups = planted_predictions([0.95, 0.5], 300, seed=0)
    assert permutation_test_gap(y_true, y_pred, groups, n_permutations=99).p_value == 0.01


def test_permutation_test_holds_its_level():
    # Over 200 null datasets the 5 % test must reject about 5 % of the time (binomial 99.9 % bound: 0.11).
    rejections = 0
    for seed in range(200):
        y_true, y_pred, groups = planted_predictions([0.7] * 4, 100, seed=1000 + seed)
        rejections += permutation_test_gap(y_true, y_pred, groups, n_permutations=199, seed=seed).p_value <= 0.05
    assert rejections / 200 < 0.11


# ---------------------------------------------------------------- several seeds
def seeds_frame():
    frames = []
    for seed, accuracies in enumerate([[0.9, 0.7, 0.8], [0.85, 0.72, 0.8], [0.88, 0.65, 0.78]]):
        y_true, y_pred, groups = planted_predictions(accuracies, 200, seed=seed)
        frames.append(pd.DataFrame({"y_true": y_true, "y_pred": y_pred, "group": groups, "seed": seed}))
    return pd.concat(frames, ignore_index=True)


def test_seed_averaging_and_pooling():
    frame = seeds_frame()
    frame["correct"] = frame["y_true"] == frame["y_pred"]
    per_seed = frame.groupby(["group", "seed"])["correct"].mean().unstack("seed")
    averaged = group_accuracy_over_seeds(frame, "average").set_index("group")
    np.testing.assert_allclose(averaged["accuracy"], per_seed.mean(axis=1))
    np.testing.assert_allclose(averaged["std"], per_seed.std(axis=1, ddof=1))
    lower, upper = stats.t.interval(0.95, 2, loc=per_seed.mean(axis=1), scale=per_seed.std(axis=1) / math.sqrt(3))
    np.testing.assert_allclose(averaged["lower"], lower)
    np.testing.assert_allclose(averaged["upper"], upper)
    assert (averaged["n_seeds"] == 3).all()

    pooled = group_accuracy_over_seeds(frame, "pool").set_index("group")
    np.testing.assert_allclose(pooled["accuracy"], frame.groupby("group")["correct"].mean())
    assert (pooled["n"] == 600).all()
    # Pooled Wilson intervals ignore seed-to-seed spread and are narrower here.
    assert ((pooled["upper"] - pooled["lower"]) < (averaged["upper"] - averaged["lower"])).all()
    with pytest.raises(ValueError, match="'average' or 'pool'"):
        group_accuracy_over_seeds(frame, "median")
    with pytest.raises(ValueError, match="lack column"):
        group_accuracy_over_seeds(frame.drop(columns="seed"))


def test_group_intervals_over_seeds_and_images_account_for_group_sizes():
    # Three seeds with identical predictions on the same images: a t-interval over seeds has zero width; with
    # `sample` the interval is the image-sampling one, ±1.96·√(p(1−p)/n) per group (statsmodels' normal
    # interval), so the group of 50 images gets a wider interval than the group of 800.
    rng = np.random.default_rng(5)
    groups = np.array(["Group A"] * 800 + ["Group B"] * 50)
    y_true = rng.integers(0, 3, 850)
    y_pred = np.where(rng.random(850) < np.where(groups == "Group A", 0.8, 0.7), y_true, (y_true + 1) % 3)
    frame = pd.concat([pd.DataFrame({"id": np.arange(850), "y_true": y_true, "y_pred": y_pred, "group": groups,
                                     "seed": seed}) for seed in range(3)], ignore_index=True)
    conditional = group_accuracy_over_seeds(frame).set_index("group")
    np.testing.assert_allclose(conditional["upper"], conditional["lower"], atol=1e-12)  # seeds alone: no width
    table = group_accuracy_over_seeds(frame, sample="id", n_boot=4000).set_index("group")
    for name, n in (("Group A", 800), ("Group B", 50)):
        k = int((y_true == y_pred)[groups == name].sum())
        lower, upper = proportion_confint(k, n, method="normal")
        assert table.loc[name, "accuracy"] == pytest.approx(k / n)
        assert table.loc[name, "lower"] == pytest.approx(lower, abs=0.1 * (upper - lower))
        assert table.loc[name, "upper"] == pytest.approx(upper, abs=0.1 * (upper - lower))
    with pytest.raises(ValueError, match="different images"):
        group_accuracy_over_seeds(frame.iloc[:-1], sample="id")


def test_disparity_intervals_cover_the_images_too():
    # Identical seeds: the mean over seeds is each seed's disparity, and the interval still has the width of the
    # image sampling (a t-interval over seeds would have none).
    rng = np.random.default_rng(6)
    groups = np.repeat(["Group A", "Group B", "Group C"], [600, 300, 100])
    y_true = rng.integers(0, 2, 1000)
    y_pred = np.where(rng.random(1000) < np.select([groups == "Group A", groups == "Group B"], [0.9, 0.8], 0.7),
                      y_true, 1 - y_true)
    frame = pd.concat([pd.DataFrame({"id": np.arange(1000), "y_true": y_true, "y_pred": y_pred, "group": groups,
                                     "seed": seed}) for seed in range(3)], ignore_index=True)
    row = disparity_over_seeds_and_images(frame, n_boot=1000)
    expected = disparity_summary(group_accuracy(y_true, y_pred, groups))
    assert row["gap"] == pytest.approx(expected.gap) and row["n_seeds"] == 3
    assert row["ser"] == pytest.approx(expected.ser) and row["ratio"] == pytest.approx(expected.ratio)
    assert row["gap_lower"] < expected.gap < row["gap_upper"] and row["gap_upper"] - row["gap_lower"] > 0.05


def test_disparity_over_seeds():
    frame = seeds_frame()
    table = disparity_over_seeds(frame)
    assert table["seed"].tolist() == [0, 1, 2]
    for seed, row in table.set_index("seed").iterrows():
        rows = frame[frame["seed"] == seed]
        accuracies = (rows["y_true"] == rows["y_pred"]).groupby(rows["group"]).mean()
        assert row["gap"] == pytest.approx(accuracies.max() - accuracies.min())


# ---------------------------------------------------------------- verification fairness
def verification_pairs(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    group1 = rng.choice(["A", "B", "C"], n)
    group2 = np.where(rng.random(n) < 0.8, group1, rng.choice(["A", "B", "C"], n))
    same = rng.random(n) < 0.5
    shift = pd.Series({"A": 0.0, "B": 0.1, "C": 0.2})[group1].to_numpy()  # B, C impostors score higher
    scores = np.where(same, rng.normal(0.5, 0.15, n), rng.normal(0.1 + shift, 0.15, n))
    return np.round(scores, 3), same, group1, group2


def test_verification_error_rates_match_loops():
    scores, same, group1, group2 = verification_pairs()
    threshold = 0.35
    result = verification_error_rates(scores, same, group1, group2, threshold)
    table = result.table.set_index("group")
    assert table.index.tolist() == ["A", "B", "C", MIXED]
    for name in table.index:
        counts = {"gen": 0, "imp": 0, "fnm": 0, "fm": 0}
        for s, y, g1, g2 in zip(scores, same, group1, group2):
            pair_group = g1 if g1 == g2 else MIXED
            if pair_group != name:
                continue
            if y:
                counts["gen"] += 1
                counts["fnm"] += not s > threshold
            else:
                counts["imp"] += 1
                counts["fm"] += s > threshold
        row = table.loc[name]
        assert (row["n_genuine"], row["n_impostor"]) == (counts["gen"], counts["imp"])
        assert (row["false_non_matches"], row["false_matches"]) == (counts["fnm"], counts["fm"])
        assert row["fmr"] == pytest.approx(counts["fm"] / counts["imp"])
        assert row["fnmr"] == pytest.approx(counts["fnm"] / counts["gen"])
        lower, upper = proportion_confint(counts["fm"], counts["imp"], method="wilson")
        assert (row["fmr_lower"], row["fmr_upper"]) == (pytest.approx(lower), pytest.approx(upper))
    groups_only = table.drop(index=MIXED)
    assert result.fmr_ratio == pytest.approx(groups_only["fmr"].max() / groups_only["fmr"].min())
    assert result.fnmr_ratio == pytest.approx(groups_only["fnmr"].max() / groups_only["fnmr"].min())
    assert groups_only["fmr"].is_monotonic_increasing  # the planted impostor shift


def test_verification_ratio_undefined_when_a_group_has_no_errors():
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.9, 0.3, 0.6, 0.1])
    same = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    groups = np.array(["A"] * 4 + ["B"] * 4)
    result = verification_error_rates(scores, same, groups, groups, threshold=0.5)
    assert result.table["fmr"].tolist() == [0.0, 0.5] and result.table["fnmr"].tolist() == [0.0, 0.5]
    assert math.isnan(result.fmr_ratio) and result.fmr_ratio_note.startswith("undefined")
    assert MIXED not in result.table["group"].tolist()
    with pytest.raises(ValueError, match="reserved"):
        verification_error_rates(scores, same, np.array([MIXED] * 8), groups, 0.5)


def test_threshold_at_far_brute_force_and_roc_consistency():
    scores, same, _, _ = verification_pairs(4000, seed=1)
    impostor, genuine = scores[~same], scores[same]
    for far in (1e-3, 1e-2, 0.1):
        candidates = sorted(set(scores.tolist()) | {-np.inf})
        expected = min(t for t in candidates if np.mean(impostor > t) <= far)
        threshold = threshold_at_far(scores, same, far)
        assert threshold == expected
        assert np.mean(genuine > threshold) == pytest.approx(roc_metrics(scores, same, fars=(far,)).tar_at_far[far])
    with pytest.warns(UserWarning, match="below resolution"):
        threshold_at_far(scores[:100], same[:100], 1e-3)


def test_threshold_at_far_zero_is_the_highest_impostor_score_without_warning():
    scores = np.array([0.95, 0.40, 0.72, 0.10, 0.72, 0.55])
    same = np.array([True, False, False, False, True, False])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # far = 0 is exact, not "below resolution"
        threshold = threshold_at_far(scores, same, 0.0)
    assert threshold == 0.72  # the highest impostor score (written out, not computed)
    assert not np.any(scores[~same] > threshold)


def test_per_group_roc():
    scores, same, group1, group2 = verification_pairs(seed=2)
    curves = per_group_roc(scores, same, group1, group2)
    assert sorted(curves["group"].unique()) == ["A", "B", "C"]
    in_b = (group1 == "B") & (group2 == "B")
    fpr, tpr, _ = roc_curve(same[in_b], scores[in_b])
    np.testing.assert_allclose(curves[curves["group"] == "B"]["tpr"], tpr)
    np.testing.assert_allclose(curves[curves["group"] == "B"]["fpr"], fpr)
    assert MIXED in per_group_roc(scores, same, group1, group2, include_mixed=True)["group"].tolist()
    only_genuine = np.array([True, True, True, False])
    with pytest.warns(UserWarning, match="lacks genuine or impostor"):
        curves = per_group_roc([0.9, 0.8, 0.7, 0.1], only_genuine, ["A", "A", "B", "B"], ["A", "A", "B", "B"])
    assert curves["group"].unique().tolist() == ["B"]
