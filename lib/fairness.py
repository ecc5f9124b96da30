"""Fairness statistics: per-group accuracy with intervals, disparity summaries, paired head-vs-head
tests, and per-group verification error rates. Definitions follow RFW (Wang et al., ICCV 2019:
per-group accuracy and its standard deviation), NIST FRVT Part 3 (Grother et al., NISTIR 8280, 2019:
FMR and FNMR per group at one global threshold) and fairlearn's ``MetricFrame``; the skewed error ratio
is max / min group error.

Groups are any hashable labels (FairFace race strings, synthetic "Group A".., gender). Tables list
groups in ``order`` when given (e.g. ``lib.labels.RACES``; groups absent from the data are left out),
else in sorted order. Every interval is two-sided at level ``1 − alpha``.

Which test answers which question:

* "how accurate is each group?" — :func:`group_accuracy` (Wilson intervals);
* "is there a gap between groups at all?" — :func:`permutation_test_gap` (preferred, see below);
* "do heads A and B differ, overall or within a group?" — :func:`mcnemar_exact`,
  :func:`mcnemar_by_group` (Holm-corrected across groups);
* "is A's gap smaller than B's?" — :func:`paired_bootstrap_gap_difference` (one trained model each);
  across training seeds and test images, :mod:`lib.head_comparison`;
* "how accurate is each group, across seeds and images?" — :func:`group_accuracy_over_seeds` with ``sample``;
* several tests at once — :func:`adjust_p_values` (Holm 1979; Benjamini & Hochberg 1995).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_curve

from lib.verification import (
    as_binary,
    as_scores,
    check_same_length,
    check_threshold,
    interval_over_seeds_and_samples,
    summarize_interval,
)

__all__ = [
    "wilson_interval",
    "group_accuracy",
    "DisparitySummary",
    "disparity_summary",
    "McNemarResult",
    "mcnemar_exact",
    "mcnemar_from_counts",
    "holm_adjust",
    "benjamini_hochberg_adjust",
    "adjust_p_values",
    "mcnemar_by_group",
    "GapBootstrap",
    "paired_bootstrap_gap_difference",
    "PermutationGapTest",
    "permutation_test_gap",
    "group_accuracy_over_seeds",
    "disparity_over_seeds",
    "disparity_over_seeds_and_images",
    "MIXED",
    "pair_groups",
    "VerificationErrorRates",
    "verification_error_rates",
    "threshold_at_far",
    "per_group_roc",
]

MIXED = "mixed"  # pair-group label of a pair whose two faces belong to different groups
UNDEFINED_SER = "undefined: a group has no errors"


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------
def _group_codes(groups, order=None) -> tuple[np.ndarray, np.ndarray]:
    """(group names in table order, per-sample index into them); unknown groups are a ValueError."""
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise ValueError(f"groups must be 1-D, got shape {groups.shape}")
    present = pd.unique(groups)
    if order is None:
        names = np.array(sorted(present, key=str), dtype=object)
    else:
        unknown = sorted(set(present) - set(order), key=str)
        if unknown:
            raise ValueError(f"groups {unknown[:5]} are not in `order` {list(order)}")
        names = np.array([name for name in order if name in set(present)], dtype=object)
    codes = pd.Index(names).get_indexer(groups)
    return names, codes


def _safe_ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator != 0 else float("nan")


def wilson_interval(successes, n, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion (vectorized; NaN where n = 0).

    With p̂ = k/n and z = Φ⁻¹(1 − α/2):
    ``(p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)``. Unlike the Wald interval it stays inside
    [0, 1] and is not degenerate at p̂ = 0 or 1 (a group with no errors still gets a lower bound < 1).
    """
    successes = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z = stats.norm.isf(alpha / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = successes / n
        denominator = 1 + z**2 / n
        center = (p + z**2 / (2 * n)) / denominator
        half_width = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denominator
    lower, upper = center - half_width, center + half_width
    # The bounds are exactly 0 at k = 0 and 1 at k = n; the formula can miss by rounding (2.8e-17 at 0/9),
    # which would put the bound on the wrong side of the estimate.
    lower = np.where((successes == 0) & (n > 0), 0.0, lower)
    upper = np.where((successes == n) & (n > 0), 1.0, upper)
    return lower, upper


def _rate_table(successes: np.ndarray, groups, alpha: float, order) -> pd.DataFrame:
    """Per group: n, number of successes, rate and its Wilson interval."""
    names, codes = _group_codes(groups, order)
    n = np.bincount(codes, minlength=len(names))
    k = np.bincount(codes, weights=successes, minlength=len(names)).astype(np.int64)
    lower, upper = wilson_interval(k, n, alpha)
    return pd.DataFrame({"group": names, "n": n, "successes": k, "rate": k / n, "lower": lower, "upper": upper})


def _labels_and_predictions(y_true, y_pred, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y_true, y_pred, groups = np.asarray(y_true), np.asarray(y_pred), np.asarray(groups)
    check_same_length(y_true=y_true, y_pred=y_pred, groups=groups)
    if len(y_true) == 0:
        raise ValueError("no samples given")
    return y_true, y_pred, groups


# --------------------------------------------------------------------------------------------------
# Per-group accuracy and disparity
# --------------------------------------------------------------------------------------------------
def group_accuracy(y_true, y_pred, groups, alpha: float = 0.05, order=None) -> pd.DataFrame:
    """Accuracy per group with a Wilson interval.

    Columns: ``group, n, correct, accuracy, lower, upper, error`` (error = 1 − accuracy).
    """
    y_true, y_pred, groups = _labels_and_predictions(y_true, y_pred, groups)
    table = _rate_table(y_true == y_pred, groups, alpha, order)
    table = table.rename(columns={"successes": "correct", "rate": "accuracy"})
    table["error"] = 1.0 - table["accuracy"]
    return table


@dataclass(frozen=True)
class DisparitySummary:
    """How unequal the per-group accuracies are.

    * ``gap`` = max − min accuracy; ``ratio`` = min / max accuracy;
    * ``std`` = population standard deviation (ddof=0) of the group accuracies, as RFW reports it;
    * ``ser`` = skewed error ratio, max error / min error; NaN with ``ser_note`` = "undefined: a group
      has no errors" when the smallest error is 0 (never a silent division by zero).
    """

    n_groups: int
    best_group: object
    worst_group: object
    max_accuracy: float
    min_accuracy: float
    gap: float
    ratio: float
    std: float
    max_error: float
    min_error: float
    ser: float
    ser_note: str


def disparity_summary(per_group_table: pd.DataFrame) -> DisparitySummary:
    """Summarize a :func:`group_accuracy` table (needs columns ``group`` and ``accuracy``).

    ``dataclasses.asdict(summary)`` gives one row for a table comparing models.
    """
    missing = {"group", "accuracy"} - set(per_group_table.columns)
    if missing:
        raise ValueError(f"per_group_table lacks column(s) {sorted(missing)}; pass the output of group_accuracy")
    accuracy = per_group_table["accuracy"].to_numpy(dtype=np.float64)
    if len(accuracy) == 0 or np.isnan(accuracy).any():
        raise ValueError("per_group_table must have at least one group and no NaN accuracies")
    error = 1.0 - accuracy
    best, worst = int(np.argmax(accuracy)), int(np.argmin(accuracy))
    min_error, max_error = float(error.min()), float(error.max())
    return DisparitySummary(
        n_groups=len(accuracy),
        best_group=per_group_table["group"].iloc[best],
        worst_group=per_group_table["group"].iloc[worst],
        max_accuracy=float(accuracy.max()),
        min_accuracy=float(accuracy.min()),
        gap=float(accuracy.max() - accuracy.min()),
        ratio=_safe_ratio(accuracy.min(), accuracy.max()),
        std=float(np.std(accuracy, ddof=0)),
        max_error=max_error,
        min_error=min_error,
        ser=_safe_ratio(max_error, min_error),
        ser_note=UNDEFINED_SER if min_error == 0 else "",
    )


# --------------------------------------------------------------------------------------------------
# Head A vs head B on the same samples
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test: ``only_a`` = samples A gets right and B wrong, ``only_b`` the reverse."""

    n: int
    only_a: int
    only_b: int
    p_value: float


def _mcnemar_p(only_a, only_b) -> np.ndarray:
    """Two-sided exact p: under H0 each discordant sample is A's with probability 1/2, so
    ``p = min(1, 2·P[Binomial(b + c, 1/2) ≤ min(b, c)])`` (1 when there are no discordant samples)."""
    only_a, only_b = np.asarray(only_a), np.asarray(only_b)
    return np.minimum(1.0, 2 * stats.binom.cdf(np.minimum(only_a, only_b), only_a + only_b, 0.5))


def _paired_correct(correct_a, correct_b) -> tuple[np.ndarray, np.ndarray]:
    correct_a, correct_b = as_binary(correct_a, "correct_a"), as_binary(correct_b, "correct_b")
    check_same_length(correct_a=correct_a, correct_b=correct_b)
    return correct_a, correct_b


def mcnemar_exact(correct_a, correct_b) -> McNemarResult:
    """Exact McNemar test of "heads A and B are equally accurate" on the SAME samples.

    ``correct_a[i]``/``correct_b[i]``: whether each head classified sample i correctly. Only the
    discordant samples carry information; the test is a binomial test on them.
    """
    correct_a, correct_b = _paired_correct(correct_a, correct_b)
    only_a, only_b = int(np.sum(correct_a & ~correct_b)), int(np.sum(~correct_a & correct_b))
    return mcnemar_from_counts(len(correct_a), only_a, only_b)


def mcnemar_from_counts(n: int, only_a: int, only_b: int) -> McNemarResult:
    """Exact McNemar test from the discordant counts alone (e.g. counts summed over seeds)."""
    return McNemarResult(int(n), int(only_a), int(only_b), float(_mcnemar_p(only_a, only_b)))


def holm_adjust(p_values) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error control), in the input order.

    Sorted ascending, ``p̃_(j) = max_{i≤j} min(1, (m − i + 1)·p_(i))``.
    """
    p_values = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p_values, kind="stable")
    m = len(p_values)
    stepped = np.minimum(1.0, (m - np.arange(m)) * p_values[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted


def benjamini_hochberg_adjust(p_values) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (false-discovery-rate control), in the input order.

    Sorted ascending, ``p̃_(j) = min_{i≥j} min(1, m·p_(i)/i)``.
    """
    p_values = np.asarray(p_values, dtype=np.float64)
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    scaled = np.minimum(1.0, p_values[order] * m / np.arange(1, m + 1))
    adjusted = np.empty(m)
    adjusted[order] = np.minimum.accumulate(scaled[::-1])[::-1]
    return adjusted


P_VALUE_CORRECTIONS = {"holm": holm_adjust, "bh": benjamini_hochberg_adjust}


def adjust_p_values(p_values, method: str = "holm") -> np.ndarray:
    """Adjust a family of p-values (``"holm"`` or ``"bh"``); NaN entries (tests that could not be run)
    stay NaN and do not count towards the family size."""
    if method not in P_VALUE_CORRECTIONS:
        raise ValueError(f"method must be one of {sorted(P_VALUE_CORRECTIONS)}, got {method!r}")
    p_values = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p_values.shape, np.nan)
    finite = np.isfinite(p_values)
    if finite.any():
        adjusted[finite] = P_VALUE_CORRECTIONS[method](p_values[finite])
    return adjusted


def mcnemar_by_group(correct_a, correct_b, groups, alpha: float = 0.05, order=None) -> pd.DataFrame:
    """Exact McNemar per group, Holm-corrected across the groups.

    Columns: ``group, n, accuracy_a, accuracy_b, only_a, only_b, p_value, p_holm, reject`` (reject =
    p_holm < alpha). Use :func:`mcnemar_exact` for the overall test.
    """
    correct_a, correct_b = _paired_correct(correct_a, correct_b)
    names, codes = _group_codes(groups, order)
    check_same_length(correct_a=correct_a, groups=codes)

    def per_group(values):
        return np.bincount(codes, weights=values, minlength=len(names)).astype(np.int64)

    n = np.bincount(codes, minlength=len(names))
    only_a, only_b = per_group(correct_a & ~correct_b), per_group(~correct_a & correct_b)
    p_values = _mcnemar_p(only_a, only_b)
    p_holm = holm_adjust(p_values)
    return pd.DataFrame(
        {
            "group": names,
            "n": n,
            "accuracy_a": per_group(correct_a) / n,
            "accuracy_b": per_group(correct_b) / n,
            "only_a": only_a,
            "only_b": only_b,
            "p_value": p_values,
            "p_holm": p_holm,
            "reject": p_holm < alpha,
        }
    )


# --------------------------------------------------------------------------------------------------
# Gaps: bootstrap of a difference, permutation test of existence
# --------------------------------------------------------------------------------------------------
def _gap(accuracies: np.ndarray) -> np.ndarray:
    """max − min over the last axis."""
    return accuracies.max(axis=-1) - accuracies.min(axis=-1)


@dataclass(frozen=True)
class GapBootstrap:
    """Paired bootstrap of ``gap_a − gap_b`` (gap = max − min group accuracy); percentile interval."""

    gap_a: float
    gap_b: float
    difference: float
    lower: float
    upper: float
    boot_differences: np.ndarray = field(repr=False)
    boot_gaps_a: np.ndarray = field(repr=False)
    boot_gaps_b: np.ndarray = field(repr=False)


def paired_bootstrap_gap_difference(
    y_true, pred_a, pred_b, groups, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> GapBootstrap:
    """Bootstrap distribution and percentile CI of ``gap_a − gap_b`` for two heads on the same samples.

    Samples are resampled with replacement *within each group* (group sizes fixed) and *jointly* for
    both heads, so the pairing is kept. Implementation: a resample of a group of size n_g is fully
    described by how many of the 4 joint outcomes (A right/wrong × B right/wrong) it draws, which is
    Multinomial(n_g, observed frequencies) — the same distribution as resampling indices, far cheaper.

    Caveat: the bootstrap distribution of a max−min gap is biased **upward** (resampling
    noise adds spread, and max − min of noisy values exceeds that of the true ones), so a gap interval
    excluding 0 is no proof of a disparity; use :func:`permutation_test_gap` for "is there a gap at
    all". The bias partly cancels in a difference of two gaps but not exactly.
    """
    y_true, pred_a, groups = _labels_and_predictions(y_true, pred_a, groups)
    pred_b = np.asarray(pred_b)
    check_same_length(y_true=y_true, pred_b=pred_b)
    if n_boot < 1:
        raise ValueError(f"n_boot must be ≥ 1, got {n_boot}")
    correct_a, correct_b = y_true == pred_a, y_true == pred_b
    names, codes = _group_codes(groups)
    # Joint outcome per sample: 0 = both right, 1 = only A, 2 = only B, 3 = both wrong.
    outcome = 2 * (~correct_a).astype(int) + (~correct_b).astype(int)
    counts = np.zeros((len(names), 4))
    np.add.at(counts, (codes, outcome), 1)
    sizes = counts.sum(axis=1)

    rng = np.random.default_rng(seed)
    boot_a = np.empty((n_boot, len(names)))
    boot_b = np.empty((n_boot, len(names)))
    for g in range(len(names)):  # loop over groups; samples are drawn in one vectorized call
        draws = rng.multinomial(int(sizes[g]), counts[g] / sizes[g], size=n_boot)
        boot_a[:, g] = (draws[:, 0] + draws[:, 1]) / sizes[g]
        boot_b[:, g] = (draws[:, 0] + draws[:, 2]) / sizes[g]

    accuracy_a = (counts[:, 0] + counts[:, 1]) / sizes
    accuracy_b = (counts[:, 0] + counts[:, 2]) / sizes
    gaps_a, gaps_b = _gap(boot_a), _gap(boot_b)
    differences = gaps_a - gaps_b
    lower, upper = np.quantile(differences, [alpha / 2, 1 - alpha / 2])
    gap_a, gap_b = float(_gap(accuracy_a)), float(_gap(accuracy_b))
    return GapBootstrap(gap_a, gap_b, gap_a - gap_b, float(lower), float(upper), differences, gaps_a, gaps_b)


@dataclass(frozen=True)
class PermutationGapTest:
    """Permutation test of "accuracy does not depend on the group" with statistic max − min accuracy."""

    observed_gap: float
    p_value: float
    null_gaps: np.ndarray = field(repr=False)


def permutation_test_gap(y_true, y_pred, groups, n_permutations: int = 2000, seed: int = 0) -> PermutationGapTest:
    """Is there a gap at all? Permute the group labels (sizes kept) and recompute the max−min gap.

    Under a random relabeling the number of correct samples landing in each group is multivariate
    hypergeometric (colors = group sizes, draws = total correct), so the null gaps are sampled exactly
    without materializing permutations. ``p = (1 + #{null ≥ observed}) / (1 + n_permutations)``
    (never 0; Phipson & Smyth 2010). Preferred over a bootstrap CI of the gap, which is biased upward.
    """
    y_true, y_pred, groups = _labels_and_predictions(y_true, y_pred, groups)
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be ≥ 1, got {n_permutations}")
    correct = y_true == y_pred
    names, codes = _group_codes(groups)
    if len(names) < 2:
        raise ValueError("a gap needs at least 2 groups")
    sizes = np.bincount(codes, minlength=len(names))
    observed = float(_gap(np.bincount(codes, weights=correct, minlength=len(names)) / sizes))
    rng = np.random.default_rng(seed)
    null_correct = rng.multivariate_hypergeometric(sizes, int(correct.sum()), size=n_permutations)
    null_gaps = _gap(null_correct / sizes)
    # A small tolerance so that a null gap equal to the observed one (same counts) counts as ≥.
    p_value = (1 + np.sum(null_gaps >= observed - 1e-12)) / (1 + n_permutations)
    return PermutationGapTest(observed, float(p_value), null_gaps)


# --------------------------------------------------------------------------------------------------
# Several seeds
# --------------------------------------------------------------------------------------------------
def _check_columns(frame: pd.DataFrame, columns) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"predictions lack column(s) {missing}; present: {list(frame.columns)}")


def group_accuracy_over_seeds(
    predictions: pd.DataFrame,
    how: str = "average",
    *,
    y_true: str = "y_true",
    y_pred: str = "y_pred",
    group: str = "group",
    seed: str = "seed",
    sample: str | None = None,
    alpha: float = 0.05,
    order=None,
    n_boot: int = 2000,
    bootstrap_seed: int = 0,
) -> pd.DataFrame:
    """Per-group accuracy from a long table of predictions of several training seeds.

    ``how="average"`` (recommended): accuracy per group and seed, then the mean and ddof=1 std over seeds.
    With ``sample`` (the column naming the test image, e.g. ``"id"``; every seed must score the same images)
    the interval covers the seeds **and** the sampling of the images, resampled within each group
    (:func:`lib.verification.interval_over_seeds_and_samples`), so a small group gets the wider interval
    its size implies. Without it, the interval is a Student-t interval over seeds alone
    (:func:`lib.verification.summarize_interval`), conditional on the images; with two seeds (t = 12.7)
    it is nearly uninformative. Bounds are clipped to [0, 1]. Columns:
    ``group, n_seeds, n, accuracy, std, lower, upper, error`` (n = samples per seed, averaged).

    ``how="pool"``: all seeds' rows pooled as if they were one sample, with a Wilson interval. The point
    estimate equals the average when every seed scores the same samples, but the interval is too
    narrow: the rows are the same test images seen by correlated models, not independent draws.
    Columns as :func:`group_accuracy` plus ``n_seeds``.
    """
    _check_columns(predictions, [y_true, y_pred, group, seed] + ([sample] if sample is not None else []))
    if how == "pool":
        table = group_accuracy(predictions[y_true], predictions[y_pred], predictions[group], alpha, order)
        table.insert(1, "n_seeds", predictions[seed].nunique())
        return table
    if how != "average":
        raise ValueError(f"how must be 'average' or 'pool', got {how!r}")
    per_seed = pd.concat(
        [
            group_accuracy(rows[y_true], rows[y_pred], rows[group], alpha, order).assign(seed=seed_value)
            for seed_value, rows in predictions.groupby(seed, sort=True)
        ]
    )
    names, _ = _group_codes(predictions[group], order)
    bounds = {}
    if sample is not None:
        correct = predictions.assign(_correct=(predictions[y_true] == predictions[y_pred]).astype(float))
        if correct.duplicated([seed, sample]).any():
            raise ValueError(f"a (seed, {sample}) pair occurs twice: `{sample}` must name each test image once per seed")
        wide = correct.pivot(index=seed, columns=sample, values="_correct")
        if wide.isna().to_numpy().any():
            raise ValueError(f"the seeds score different images: every seed must have a row for every `{sample}`")
        sample_groups = predictions.drop_duplicates(sample).set_index(sample).loc[wide.columns, group].to_numpy()
        result = interval_over_seeds_and_samples(wide.to_numpy(), groups=sample_groups, order=list(names),
                                                 statistic=lambda means: means[..., 0], n_boot=n_boot,
                                                 confidence=1 - alpha, seed=bootstrap_seed)
        bounds = {name: (result.lower[g], result.upper[g]) for g, name in enumerate(result.groups)}
    records = []
    for name in names:  # loop over groups
        rows = per_seed[per_seed["group"] == name]
        summary = summarize_interval(rows["accuracy"], confidence=1 - alpha)
        lower, upper = bounds.get(name, (summary.lower, summary.upper))
        records.append(
            {
                "group": name,
                "n_seeds": summary.n,
                "n": float(rows["n"].mean()),
                "accuracy": summary.mean,
                "std": summary.std,
                # An accuracy lies in [0, 1]; a t-interval over few seeds can reach past it.
                "lower": max(0.0, lower) if np.isfinite(lower) else lower,
                "upper": min(1.0, upper) if np.isfinite(upper) else upper,
                "error": 1.0 - summary.mean,
            }
        )
    return pd.DataFrame.from_records(records)


def disparity_over_seeds(
    predictions: pd.DataFrame,
    *,
    y_true: str = "y_true",
    y_pred: str = "y_pred",
    group: str = "group",
    seed: str = "seed",
    order=None,
) -> pd.DataFrame:
    """One :class:`DisparitySummary` row per seed; average its columns (e.g. ``summarize_interval(df.gap)``)
    to get a disparity as mean ± std over seeds."""
    _check_columns(predictions, [y_true, y_pred, group, seed])
    rows = []
    for seed_value, frame in predictions.groupby(seed, sort=True):
        summary = disparity_summary(group_accuracy(frame[y_true], frame[y_pred], frame[group], order=order))
        rows.append({seed: seed_value, **asdict(summary)})
    return pd.DataFrame(rows)


def disparity_over_seeds_and_images(
    predictions: pd.DataFrame,
    *,
    y_true: str = "y_true",
    y_pred: str = "y_pred",
    group: str = "group",
    seed: str = "seed",
    sample: str = "id",
    order=None,
    confidence: float = 0.95,
    n_boot: int = 2000,
    bootstrap_seed: int = 0,
) -> dict:
    """Gap, ratio, STD and SER (:class:`DisparitySummary`) as the mean over seeds, each with an interval over
    the seeds and the test images (``sample`` names the image; images resampled within each group:
    :func:`lib.verification.interval_over_seeds_and_samples`), as a dict of the summary's fields with
    ``<metric>_lower``/``<metric>_upper`` bounds and ``n_seeds`` — one row for
    :func:`lib.fairness_plots.disparity_table`. SER is NaN (no interval) when a group made no errors in some
    seed, and its bounds NaN when a resample can make a group error-free. A max − min gap is biased upward,
    more for small groups: its interval says how precisely that biased quantity is measured, not that a gap
    exists (:func:`permutation_test_gap` answers that)."""
    _check_columns(predictions, [y_true, y_pred, group, seed, sample])
    per_seed = disparity_over_seeds(predictions, y_true=y_true, y_pred=y_pred, group=group, seed=seed, order=order)
    correct = predictions.assign(_correct=(predictions[y_true] == predictions[y_pred]).astype(float))
    wide = correct.pivot(index=seed, columns=sample, values="_correct")
    if wide.isna().to_numpy().any():
        raise ValueError(f"the seeds score different images: every seed must have a row for every `{sample}`")
    sample_groups = predictions.drop_duplicates(sample).set_index(sample).loc[wide.columns, group].to_numpy()
    names, _ = _group_codes(sample_groups, order)

    def statistic(means):
        accuracy = means[..., 0]
        error = 1.0 - accuracy
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = accuracy.min(-1) / accuracy.max(-1)
            ser = np.where(error.min(-1) > 0, error.max(-1) / error.min(-1), np.nan)
        return np.stack([_gap(accuracy), ratio, accuracy.std(-1), ser], axis=-1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN SER replicates: reported as NaN bounds below
        result = interval_over_seeds_and_samples(wide.to_numpy(), groups=sample_groups, order=list(names),
                                                 statistic=statistic, n_boot=n_boot, confidence=confidence,
                                                 seed=bootstrap_seed)
    row = {"n_seeds": len(wide), **per_seed.iloc[0][["n_groups"]].to_dict()}
    for index, metric in enumerate(("gap", "ratio", "std", "ser")):
        values = per_seed[metric].to_numpy(dtype=np.float64)
        defined = not np.isnan(values).any() and np.isfinite(result.se[index])
        row[metric] = float(values.mean())
        row[f"{metric}_lower"] = float(result.lower[index]) if defined else float("nan")
        row[f"{metric}_upper"] = float(result.upper[index]) if defined else float("nan")
    undefined = int(per_seed["ser"].isna().sum())
    row["ser_note"] = f"undefined in {undefined} of {len(per_seed)} seeds (a group had no errors)" if undefined else ""
    for column in ("worst_group", "best_group"):
        counts = per_seed[column].astype(str).value_counts()
        row[column] = counts.index[0] if len(per_seed) == 1 else f"{counts.index[0]} ({counts.iloc[0]} of {len(per_seed)} seeds)"
    return row


# --------------------------------------------------------------------------------------------------
# Verification fairness (NIST FRVT Part 3 style)
# --------------------------------------------------------------------------------------------------
def pair_groups(group1, group2, mixed: str = MIXED) -> np.ndarray:
    """Group of each pair: the faces' common group, or ``mixed`` when they differ."""
    group1, group2 = np.asarray(group1, dtype=object), np.asarray(group2, dtype=object)
    check_same_length(group1=group1, group2=group2)
    if np.any(group1 == mixed) or np.any(group2 == mixed):
        raise ValueError(f"a face group is named {mixed!r}, the label reserved for mixed pairs; pass another `mixed`")
    return np.where(group1 == group2, group1, mixed)


@dataclass(frozen=True)
class VerificationErrorRates:
    """Per-group FMR/FNMR at one global threshold, and how unequal they are.

    ``table`` columns: ``group, n_genuine, n_impostor, false_non_matches, fnmr, fnmr_lower, fnmr_upper,
    false_matches, fmr, fmr_lower, fmr_upper`` (Wilson intervals); the ``mixed`` row (pairs across
    groups) comes last and is left out of the ratios. ``fmr_ratio``/``fnmr_ratio`` = max / min over
    groups with at least one pair of that kind; NaN with a note when the min is 0.
    """

    threshold: float
    table: pd.DataFrame
    fmr_ratio: float
    fnmr_ratio: float
    fmr_ratio_note: str
    fnmr_ratio_note: str


def _max_min_ratio(rates: pd.Series, what: str) -> tuple[float, str]:
    rates = rates.dropna()
    if len(rates) == 0:
        return float("nan"), f"undefined: no group has {what} pairs"
    if rates.min() == 0:
        return float("nan"), "undefined: a group has no errors"
    return float(rates.max() / rates.min()), ""


def verification_error_rates(
    scores, same, group1, group2, threshold: float, alpha: float = 0.05, order=None
) -> VerificationErrorRates:
    """FMR (impostor pairs accepted) and FNMR (genuine pairs rejected) per group at one threshold.

    A pair belongs to a group when both faces do; other pairs are reported as ``"mixed"``. Use one
    global threshold for all groups — e.g. :func:`threshold_at_far` on all pairs, or a k-fold threshold —
    never a per-group one (NISTIR 8280 fixes the threshold for all groups). Decision rule: match ⇔ score > threshold.
    """
    scores, same = as_scores(scores), as_binary(same)
    threshold = check_threshold(threshold)
    pair_group = pair_groups(group1, group2)
    check_same_length(scores=scores, same=same, groups=pair_group)
    if order is not None:
        order = [name for name in order if name != MIXED] + [MIXED]
    else:
        order = sorted(set(pair_group) - {MIXED}, key=str) + [MIXED]
    match = scores > threshold
    genuine = _rate_table(~match[same], pair_group[same], alpha, order)
    impostor = _rate_table(match[~same], pair_group[~same], alpha, order)
    genuine.columns = ["group", "n_genuine", "false_non_matches", "fnmr", "fnmr_lower", "fnmr_upper"]
    impostor.columns = ["group", "n_impostor", "false_matches", "fmr", "fmr_lower", "fmr_upper"]
    table = pd.DataFrame({"group": [name for name in order if name in set(pair_group)]})
    table = table.merge(genuine, on="group", how="left").merge(impostor, on="group", how="left")
    for column in ("n_genuine", "false_non_matches", "n_impostor", "false_matches"):
        table[column] = table[column].fillna(0).astype(np.int64)
    table = table[
        ["group", "n_genuine", "n_impostor", "false_non_matches", "fnmr", "fnmr_lower", "fnmr_upper",
         "false_matches", "fmr", "fmr_lower", "fmr_upper"]
    ]
    groups_only = table[table["group"] != MIXED]
    fmr_ratio, fmr_note = _max_min_ratio(groups_only["fmr"], "impostor")
    fnmr_ratio, fnmr_note = _max_min_ratio(groups_only["fnmr"], "genuine")
    return VerificationErrorRates(float(threshold), table, fmr_ratio, fnmr_ratio, fmr_note, fnmr_note)


def threshold_at_far(scores, same, far: float) -> float:
    """Smallest threshold whose false accept rate on the impostor pairs is at most ``far``.

    With N impostor scores and k = ⌊far·N⌋ allowed false accepts, this is the (k+1)-th largest impostor
    score: under "match ⇔ score > threshold" at most k impostors pass. It equals the operating point
    of ``roc_metrics(...).tar_at_far[far]``. ``far = 0`` gives the largest impostor score (no impostor
    passes). Warns when 0 < far and N < 1/far (the FAR is below resolution and the threshold is just
    the largest impostor score).
    """
    scores, same = as_scores(scores), as_binary(same)
    check_same_length(scores=scores, same=same)
    if not 0 <= far < 1:
        raise ValueError(f"far must be in [0, 1), got {far}")
    impostor = np.sort(scores[~same])[::-1]
    if len(impostor) == 0:
        raise ValueError("no impostor pairs: a FAR threshold needs some")
    if 0 < far and len(impostor) * far < 1 - 1e-9:
        warnings.warn(
            f"only {len(impostor)} impostor pairs: FAR {far:g} is below resolution (needs ≥ {int(np.ceil(1 / far))} "
            "pairs); returning the largest impostor score",
            stacklevel=2,
        )
    allowed = int(np.floor(far * len(impostor) + 1e-9))
    return float(impostor[allowed])


def per_group_roc(scores, same, group1, group2, include_mixed: bool = False, order=None) -> pd.DataFrame:
    """ROC curve of each pair group, as a long table ``group, fpr, tpr, threshold`` for plotting.

    Groups without both genuine and impostor pairs have no ROC: they are skipped with a warning.
    """
    scores, same = as_scores(scores), as_binary(same)
    pair_group = pair_groups(group1, group2)
    check_same_length(scores=scores, same=same, groups=pair_group)
    keep = np.ones(len(scores), dtype=bool) if include_mixed else pair_group != MIXED
    if order is not None and include_mixed:
        order = list(order) + [MIXED]
    names, codes = _group_codes(pair_group[keep], order)
    scores, same = scores[keep], same[keep]
    curves = []
    for g, name in enumerate(names):  # loop over groups
        in_group = codes == g
        if same[in_group].all() or not same[in_group].any():
            warnings.warn(f"group {name!r} lacks genuine or impostor pairs: no ROC curve", stacklevel=2)
            continue
        fpr, tpr, thresholds = roc_curve(same[in_group], scores[in_group])
        curves.append(pd.DataFrame({"group": name, "fpr": fpr, "tpr": tpr, "threshold": thresholds}))
    if not curves:
        return pd.DataFrame(columns=["group", "fpr", "tpr", "threshold"])
    return pd.concat(curves, ignore_index=True)
