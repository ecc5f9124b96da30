"""Tests of lib.verification against brute-force loops, closed forms and hand-worked examples."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from scipy import stats
from sklearn.model_selection import StratifiedKFold

from lib.verification import (
    angular_fisher_score,
    best_threshold,
    cosine_scores,
    cross_validated_accuracy,
    fixed_threshold_accuracy,
    fuse_flip,
    interval_over_seeds_and_samples,
    roc_metrics,
    summarize_interval,
    ten_fold_accuracy,
)


def simulated_pairs(n, genuine_mean=0.35, impostor_mean=0.1, spread=0.15, seed=0, decimals=None):
    """Cosine-like scores of a mediocre model; rounding creates tied scores on purpose."""
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.5
    scores = np.where(same, rng.normal(genuine_mean, spread, n), rng.normal(impostor_mean, spread, n))
    if decimals is not None:
        scores = np.round(scores, decimals)
    return scores, same


# ---------------------------------------------------------------- brute-force references (loops)
def loop_accuracy(scores, same, threshold):
    return sum((s > threshold) == bool(y) for s, y in zip(scores, same)) / len(scores)


def loop_best_threshold(scores, same):
    """Every candidate, scanned in order; tie rule: middle of the first run of maximal candidates."""
    values = sorted(set(float(s) for s in scores))
    candidates = [values[0] - 1.0]
    candidates += [(a + b) / 2 for a, b in zip(values[:-1], values[1:])]
    candidates += [values[-1] + 1.0]
    accuracies = [loop_accuracy(scores, same, t) for t in candidates]
    best = max(accuracies)
    start = accuracies.index(best)
    end = start
    while end + 1 < len(candidates) and accuracies[end + 1] == best:
        end += 1
    return (candidates[start] + candidates[end]) / 2, best


def loop_ten_fold(scores, same, folds):
    accuracies = []
    for fold in sorted(set(folds.tolist())):
        train = [i for i in range(len(scores)) if folds[i] != fold]
        test = [i for i in range(len(scores)) if folds[i] == fold]
        threshold, _ = loop_best_threshold(scores[train], same[train])
        accuracies.append(loop_accuracy(scores[test], same[test], threshold))
    return accuracies


def loop_roc_points(scores, same):
    """(FPR, TPR) of "accept score ≥ t" for t = +inf and every distinct score, descending."""
    genuine = [s for s, y in zip(scores, same) if y]
    impostor = [s for s, y in zip(scores, same) if not y]
    points = [(0.0, 0.0)]
    for t in sorted(set(scores.tolist()), reverse=True):
        points.append((sum(s >= t for s in impostor) / len(impostor), sum(s >= t for s in genuine) / len(genuine)))
    return points


def loop_eer(scores, same):
    """Intersect the line TPR = 1 − FPR with each segment of the ROC polyline."""
    points = loop_roc_points(scores, same)
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        f0, f1 = (1 - y0) - x0, (1 - y1) - x1  # signed distance to the line, up to a constant
        if f0 > 0 and f1 <= 0:
            t = f0 / (f0 - f1)
            return x0 + t * (x1 - x0)
    raise AssertionError("ROC never crossed FPR = FNR")


def loop_afs(features, labels, normalize, spurious_n=False):
    """AFS by explicit loops over classes and samples (spurious_n: the course write-up's S_w)."""
    features = np.asarray(features, dtype=float)
    if normalize:
        features = np.array([x / math.sqrt(sum(v * v for v in x)) for x in features])

    def cos(a, b):
        return float(np.dot(a, b) / (math.sqrt(np.dot(a, a)) * math.sqrt(np.dot(b, b))))

    overall = features.mean(axis=0)
    s_w = s_b = 0.0
    for label in sorted(set(labels.tolist())):
        members = [x for x, y in zip(features, labels) if y == label]
        mean = sum(members) / len(members)
        factor = len(members) if spurious_n else 1
        s_w += sum(factor * (1 - cos(x, mean)) for x in members)
        s_b += len(members) * (1 - cos(mean, overall))
    return s_w / s_b


# ---------------------------------------------------------------- scores
def test_cosine_scores_match_a_loop():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(20, 8)), rng.normal(size=(20, 8)) * 3
    expected = [float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y))) for x, y in zip(a, b)]
    np.testing.assert_allclose(cosine_scores(a, b), expected, rtol=1e-12)


def test_cosine_scores_rejects_zero_rows_and_bad_shapes():
    with pytest.raises(ValueError, match="all-zero"):
        cosine_scores(np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="same shape"):
        cosine_scores(np.ones((2, 3)), np.ones((3, 3)))


def test_fuse_flip_sum_and_concat():
    rng = np.random.default_rng(2)
    e, f = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    mean = (e + f) / 2
    np.testing.assert_allclose(fuse_flip(e, f, "sum"), mean / np.linalg.norm(mean, axis=1, keepdims=True))
    # With unit halves, the cosine of concatenations is the mean of the two halves' cosines.
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    e, f, g, h = (unit(rng.normal(size=(5, 4))) for _ in range(4))
    fused_1, fused_2 = fuse_flip(e, f, "concat"), fuse_flip(g, h, "concat")
    assert fused_1.shape == (5, 8)
    expected = (np.sum(e * g, axis=1) + np.sum(f * h, axis=1)) / 2
    np.testing.assert_allclose(cosine_scores(fused_1, fused_2), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="mode"):
        fuse_flip(e, f, "max")


# ---------------------------------------------------------------- thresholds and folds
def test_hand_built_four_pairs():
    # Thresholds 0.25 and 0.75 both reach 3/4; the tie rule takes the first (lowest) plateau.
    scores, same = np.array([0.9, 0.6, 0.4, 0.1]), np.array([1, 0, 1, 0])
    assert best_threshold(scores, same) == pytest.approx(0.25)
    assert fixed_threshold_accuracy(scores, same, 0.5) == 0.5
    roc = roc_metrics(scores, same)
    assert roc.auc == pytest.approx(0.75)  # genuine beats impostor in 3 of the 4 (g, i) pairs
    assert roc.eer == pytest.approx(0.5)
    assert roc.eer_threshold == pytest.approx(0.6)


def test_best_threshold_matches_brute_force_with_ties():
    for seed in range(4):
        scores, same = simulated_pairs(150, seed=seed, decimals=2)  # many tied scores
        threshold, best_accuracy = loop_best_threshold(scores, same)
        assert best_threshold(scores, same) == pytest.approx(threshold, abs=1e-12)
        assert loop_accuracy(scores, same, best_threshold(scores, same)) == best_accuracy


def test_best_threshold_plateau_middle():
    # Accuracy is 1 for every threshold in (0.2, 0.8); candidates 0.3, 0.5, 0.7 → middle 0.5.
    scores, same = np.array([0.1, 0.2, 0.4, 0.6, 0.8, 0.9]), np.array([0, 0, 0, 1, 1, 1])
    assert best_threshold(scores, same) == pytest.approx(0.5)
    scores, same = np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])
    assert best_threshold(scores, same) == pytest.approx(0.5)


def test_perfectly_separable_scores():
    scores, same = np.array([-0.2, 0.0, 0.1, 0.5, 0.6, 0.9] * 5), np.array([0, 0, 0, 1, 1, 1] * 5)
    folds = np.arange(30) % 5
    result = ten_fold_accuracy(scores, same, folds)
    assert result.mean == 1.0 and result.std == 0.0
    assert np.all((result.thresholds > 0.1) & (result.thresholds < 0.5))
    roc = roc_metrics(scores, same)
    assert roc.auc == 1.0 and roc.eer == 0.0


def test_ten_fold_matches_brute_force():
    scores, same = simulated_pairs(300, seed=3, decimals=2)
    folds = np.repeat(np.arange(10), 30)
    result = ten_fold_accuracy(scores, same, folds)
    expected = loop_ten_fold(scores, same, folds)
    np.testing.assert_allclose(result.accuracies, expected)
    assert result.mean == pytest.approx(statistics.mean(expected))
    assert result.std == pytest.approx(statistics.stdev(expected))  # ddof=1
    assert result.stderr == pytest.approx(statistics.stdev(expected) / math.sqrt(10))


def test_held_out_fold_never_sets_its_own_threshold():
    # Fold "a" alone is separated at 0.4, fold "b" alone at 0.175; all pairs together at 0.25.
    scores = np.array([0.6, 0.7, 0.1, 0.2, 0.3, 0.35, 0.0, 0.05])
    same = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    folds = np.array(["a"] * 4 + ["b"] * 4)
    result = ten_fold_accuracy(scores, same, folds)
    np.testing.assert_allclose(result.thresholds, [0.175, 0.4])
    # 0.175 lets a's impostor at 0.2 through; 0.4 rejects b's genuine pairs. Leaking gives 1.0 for both.
    np.testing.assert_allclose(result.accuracies, [0.75, 0.5])
    assert best_threshold(scores, same) == pytest.approx(0.25)


def test_ten_fold_needs_two_folds():
    with pytest.raises(ValueError, match="at least 2 folds"):
        ten_fold_accuracy([0.1, 0.2], [0, 1], [0, 0])


def test_cross_validated_accuracy_uses_seeded_stratified_folds():
    scores, same = simulated_pairs(500, seed=4)
    folds = np.empty(500, dtype=int)
    splitter = StratifiedKFold(n_splits=10, shuffle=True, random_state=7)
    for k, (_, test) in enumerate(splitter.split(np.zeros(500), same)):
        folds[test] = k
    expected = ten_fold_accuracy(scores, same, folds)
    result = cross_validated_accuracy(scores, same, n_folds=10, seed=7)
    np.testing.assert_array_equal(result.accuracies, expected.accuracies)
    assert cross_validated_accuracy(scores, same, 5, seed=1).accuracies.shape == (5,)
    assert not np.array_equal(cross_validated_accuracy(scores, same, seed=1).accuracies, result.accuracies)


def test_fixed_threshold_under_reports():
    scores, same = simulated_pairs(6000, seed=5)  # genuine ~0.35, impostor ~0.10: best threshold ≈ 0.22
    fitted = ten_fold_accuracy(scores, same, np.arange(6000) // 600).mean
    fixed = fixed_threshold_accuracy(scores, same, 0.5)
    assert fitted > fixed + 0.15


def test_input_validation():
    with pytest.raises(ValueError, match="bool or 0/1"):
        best_threshold([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="NaN"):
        best_threshold([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="lengths"):
        best_threshold([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="genuine and impostor"):
        roc_metrics([0.1, 0.2], [1, 1])


# ---------------------------------------------------------------- ROC
@pytest.mark.parametrize("fars", [(1.5,), (-0.1,), (0.0,), (float("nan"),), (1e-3, 2.0)])
def test_roc_metrics_refuses_a_far_outside_0_1(fars):
    scores, same = simulated_pairs(200)
    with pytest.raises(ValueError, match=r"fars must be a rate in \(0, 1\]"):
        roc_metrics(scores, same, fars=fars)
    assert roc_metrics(scores, same, fars=(1.0,)).tar_at_far[1.0] == 1.0  # FAR 1 accepts every pair


def test_a_nan_threshold_is_refused_not_scored_as_half():
    scores, same = simulated_pairs(200)
    with pytest.raises(ValueError, match="threshold is NaN"):
        fixed_threshold_accuracy(scores, same, float("nan"))
    from lib.fairness import verification_error_rates

    groups = np.array(["a", "b"] * 100)
    with pytest.raises(ValueError, match="threshold is NaN"):
        verification_error_rates(scores, same, groups, groups, threshold=np.nan)


def test_auc_and_eer_match_brute_force_with_ties():
    scores, same = simulated_pairs(120, seed=6, decimals=1)
    genuine, impostor = scores[same], scores[~same]
    pairwise = [(g > i) + 0.5 * (g == i) for g in genuine for i in impostor]  # Mann–Whitney with ties
    roc = roc_metrics(scores, same)
    assert roc.auc == pytest.approx(sum(pairwise) / len(pairwise), abs=1e-12)
    assert roc.eer == pytest.approx(loop_eer(scores, same), abs=1e-12)


def test_gaussian_closed_forms():
    # Genuine ~ N(μ, 1), impostor ~ N(0, 1): AUC = Φ(μ/√2), EER = Φ(−μ/2), TAR@FAR f = Φ(μ − z_{1−f}).
    rng, mu, n = np.random.default_rng(8), 1.5, 100_000
    scores = np.concatenate([rng.normal(mu, 1, n), rng.normal(0, 1, n)])
    same = np.repeat([True, False], n)
    roc = roc_metrics(scores, same)
    assert roc.auc == pytest.approx(stats.norm.cdf(mu / math.sqrt(2)), abs=0.003)
    assert roc.eer == pytest.approx(stats.norm.cdf(-mu / 2), abs=0.004)
    assert roc.eer_threshold == pytest.approx(mu / 2, abs=0.02)
    for far in (1e-3, 1e-2):
        assert roc.tar_at_far[far] == pytest.approx(stats.norm.cdf(mu - stats.norm.isf(far)), abs=0.01)


def test_identical_distributions_give_chance():
    rng = np.random.default_rng(9)
    scores, same = rng.normal(size=20_000), rng.random(20_000) < 0.5
    roc = roc_metrics(scores, same)
    assert abs(roc.auc - 0.5) < 0.015 and abs(roc.eer - 0.5) < 0.015


def test_tar_at_far_brute_force_and_resolution():
    scores, same = simulated_pairs(500, seed=10, decimals=3)
    genuine, impostor = scores[same], scores[~same]
    assert len(impostor) < 1000  # so FAR 1e-3 is below resolution
    best = 0.0
    for t in sorted(set(scores.tolist())):
        if np.mean(impostor >= t) <= 1e-2:
            best = max(best, float(np.mean(genuine >= t)))
    roc = roc_metrics(scores, same)
    assert roc.tar_at_far[1e-2] == pytest.approx(best)
    assert roc.far_resolved == {1e-3: False, 1e-2: True}
    assert math.isnan(roc.tar_at_far[1e-3])


# ---------------------------------------------------------------- Angular Fisher score
@pytest.mark.parametrize("normalize", [False, True])
def test_afs_matches_loops(normalize):
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 5, 60)
    features = rng.normal(size=(60, 6)) * rng.uniform(0.5, 3, (60, 1)) + 2 * np.eye(6)[labels]
    assert angular_fisher_score(features, labels, normalize) == pytest.approx(loop_afs(features, labels, normalize))


def test_afs_known_answers_and_invariances():
    # Every sample equals its class mean → no within-class scatter.
    centers = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.5]])
    labels = np.array([0, 0, 1, 1, 1, 2])
    assert angular_fisher_score(centers[labels], labels) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(12)
    features = rng.normal(size=(40, 3)) + np.array([3.0, 0, 0]) * rng.integers(0, 2, (40, 1))
    labels = rng.integers(0, 3, 40)
    base = angular_fisher_score(features, labels)
    assert angular_fisher_score(5 * features, labels) == pytest.approx(base)  # global scale
    rescaled = features * rng.uniform(0.1, 10, (40, 1))  # per-sample scale: only normalize=True ignores it
    assert angular_fisher_score(rescaled, labels, True) == pytest.approx(angular_fisher_score(features, labels, True))
    assert angular_fisher_score(rescaled, labels) != pytest.approx(base)
    with pytest.raises(ValueError, match="2 classes"):
        angular_fisher_score(features, np.zeros(40))


def test_afs_without_the_course_reports_spurious_n():
    # Duplicating every sample must not change a scatter *ratio*; with n_i inside S_w (the course
    # write-up) it doubles, and for unequal classes it is not even a fixed multiple of the real AFS.
    rng = np.random.default_rng(13)
    labels = np.repeat([0, 1, 2], [5, 10, 25])
    features = rng.normal(size=(40, 4)) + 1.5 * np.eye(4)[labels]
    doubled_features, doubled_labels = np.concatenate([features] * 2), np.concatenate([labels] * 2)
    afs = angular_fisher_score(features, labels)
    assert angular_fisher_score(doubled_features, doubled_labels) == pytest.approx(afs)
    course = loop_afs(features, labels, False, spurious_n=True)
    assert loop_afs(doubled_features, doubled_labels, False, spurious_n=True) == pytest.approx(2 * course)
    assert course / afs != pytest.approx(labels.size / 3)  # not just the mean class size


# ---------------------------------------------------------------- intervals
def test_summarize_interval_matches_scipy():
    values = np.array([0.71, 0.69, 0.74, 0.70, 0.72])
    summary = summarize_interval(values)
    lower, upper = stats.t.interval(0.95, df=4, loc=values.mean(), scale=stats.sem(values))
    assert (summary.lower, summary.upper) == (pytest.approx(lower), pytest.approx(upper))
    assert summary.std == pytest.approx(statistics.stdev(values.tolist()))
    single = summarize_interval([0.7])
    assert single.mean == 0.7 and math.isnan(single.std) and math.isnan(single.lower)


# --------------------------------------------------------------------------------------------------
# The one uncertainty model: seeds and test samples
# --------------------------------------------------------------------------------------------------
def _coverage(simulate, n_datasets=300, n_seeds=3):
    """Share of simulated datasets whose 95 % interval contains the true value 0: the new interval over seeds
    and samples, and the old Student-t interval over the per-seed means (what notebooks 03 and 04 used)."""
    rng = np.random.default_rng(7)
    new = old = 0
    for index in range(n_datasets):
        values = simulate(rng)
        result = interval_over_seeds_and_samples(values, n_boot=200, seed=index)
        new += result.lower[0] <= 0 <= result.upper[0]
        means = values.mean(axis=1)
        half = stats.t.ppf(0.975, n_seeds - 1) * means.std(ddof=1) / np.sqrt(n_seeds)
        old += means.mean() - half <= 0 <= means.mean() + half
    return new / n_datasets, old / n_datasets


def test_interval_covers_when_image_sampling_dominates_seed_noise():
    # Two heads' paired correctness difference on 300 images: which head gets an image right is mostly a property
    # of the image (shared by all three seeds), plus a little seed-to-seed noise. The true difference is 0.
    def simulate(rng):
        per_image = rng.choice([-1.0, 0.0, 1.0], p=[0.15, 0.7, 0.15], size=300)
        return np.where(rng.random((3, 300)) < 0.03, 0.0, per_image)

    new, old = _coverage(simulate)
    assert 0.92 <= new <= 0.98  # nominal 95 %
    assert old < 0.6  # the t-interval over seeds sees only the seeds and misses which images were drawn


def test_interval_covers_when_seed_noise_dominates():
    # Seed offsets much larger than image noise: the interval must behave like the t-interval with 2 df.
    def simulate(rng):
        return rng.normal(0, 0.05, (3, 1)) + rng.normal(0, 0.02, 300) + rng.normal(0, 0.02, (3, 300))

    new, old = _coverage(simulate)
    assert 0.92 <= new <= 0.99 and 0.92 <= old <= 0.99


def test_interval_with_one_seed_is_the_bootstrap_over_samples():
    rng = np.random.default_rng(0)
    values = (rng.random((1, 500)) < 0.7).astype(float)
    result = interval_over_seeds_and_samples(values, n_boot=4000, seed=1)
    reference = stats.bootstrap((values[0],), np.mean, n_resamples=4000, method="percentile", random_state=2)
    assert result.estimate[0] == pytest.approx(values.mean())
    assert result.sample_se[0] == pytest.approx(reference.standard_error, rel=0.05)
    assert np.isnan(result.seeds_lower[0]) and np.isinf(result.df[0])
    z = stats.norm.ppf(0.975)
    assert result.upper[0] - result.lower[0] == pytest.approx(2 * z * result.sample_se[0])


def test_interval_resamples_within_groups_and_keeps_their_sizes():
    # Per-group accuracy of one seed: the bootstrap SE within a group of n images is the binomial √(p(1−p)/n),
    # so the small group gets the wide interval; a statistic of the group means (the gap) is carried through.
    rng = np.random.default_rng(2)
    groups = np.array(["big"] * 2000 + ["small"] * 100)
    correct = (rng.random((1, 2100)) < np.where(groups == "big", 0.8, 0.6)).astype(float)
    result = interval_over_seeds_and_samples(correct, groups=groups, order=["small", "big"],
                                             statistic=lambda m: m[..., 0], n_boot=3000, seed=0)
    assert result.groups == ("small", "big")
    p = np.array([correct[0, groups == "small"].mean(), correct[0, groups == "big"].mean()])
    np.testing.assert_allclose(result.estimate, p)
    np.testing.assert_allclose(result.sample_se, np.sqrt(p * (1 - p) / np.array([100, 2000])), rtol=0.08)
    gap = interval_over_seeds_and_samples(correct, groups=groups, statistic=lambda m: m[..., 0].max(-1) - m[..., 0].min(-1),
                                          n_boot=500)
    assert gap.estimate[0] == pytest.approx(abs(p[0] - p[1]))


def test_interval_p_value_matches_the_interval_and_seeds_only_matches_scipy():
    rng = np.random.default_rng(4)
    values = rng.normal(0.02, 0.05, (4, 200)) + rng.normal(0, 0.01, (4, 1))
    result = interval_over_seeds_and_samples(values, n_boot=500)
    means = values.mean(axis=1)
    assert result.seeds_p_value[0] == pytest.approx(stats.ttest_1samp(means, 0).pvalue)
    low, high = stats.t.interval(0.95, 3, loc=means.mean(), scale=stats.sem(means))
    assert (result.seeds_lower[0], result.seeds_upper[0]) == (pytest.approx(low), pytest.approx(high))
    t = stats.t.ppf(0.975, result.df[0])
    assert result.upper[0] == pytest.approx(result.estimate[0] + t * result.se[0])
    assert result.p_value[0] == pytest.approx(2 * stats.t.sf(abs(result.estimate[0]) / result.se[0], result.df[0]))
    assert result.se[0] == pytest.approx(np.hypot(result.seed_se[0], result.sample_se[0]))


def test_interval_rejects_bad_input():
    with pytest.raises(ValueError, match="seeds, samples"):
        interval_over_seeds_and_samples(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        interval_over_seeds_and_samples(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="not in `order`"):
        interval_over_seeds_and_samples(np.zeros((2, 3)), groups=["a", "b", "c"], order=["a", "b"])
    with pytest.raises(ValueError, match="same length|length"):
        interval_over_seeds_and_samples(np.zeros((2, 3)), groups=["a", "b"])
