"""Face-verification metrics on pair scores: k-fold accuracy, ROC/EER/TAR@FAR, Angular Fisher score.

Conventions used by every function here:

* a *score* is a similarity (higher = more likely the same person), normally a cosine in [-1, 1];
* ``same`` is the ground truth per pair (bool, or 0/1);
* a pair is **predicted "same" when** ``score > threshold`` (strict). Thresholds chosen by
  :func:`best_threshold` lie between observed scores, so the strictness only matters for a
  hand-picked threshold that equals a score exactly.

The project's one uncertainty model for results of several training seeds scored on one test set,
:func:`interval_over_seeds_and_samples` (seeds and test samples, paired), lives here too; notebooks 02–04
build every interval and verdict on it.

The LFW protocol (Huang et al., LFW tech. report 07-49, 2007): for each of the 10 folds pick the accuracy-maximizing threshold on the
other 9 folds, apply it to the held-out fold, report mean ± standard error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold

__all__ = [
    "cosine_scores",
    "fuse_flip",
    "best_threshold",
    "FoldedAccuracy",
    "ten_fold_accuracy",
    "cross_validated_accuracy",
    "fixed_threshold_accuracy",
    "RocMetrics",
    "roc_metrics",
    "angular_fisher_score",
    "IntervalSummary",
    "summarize_interval",
    "SeedsAndSamplesInterval",
    "interval_over_seeds_and_samples",
    "interval_over_seeds_and_pairs",
]


# --------------------------------------------------------------------------------------------------
# Input checks (shared with lib.fairness)
# --------------------------------------------------------------------------------------------------
def as_scores(scores, name: str = "scores") -> np.ndarray:
    """1-D float array of finite scores, or a ValueError saying what is wrong."""
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one score per pair), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values; check the embeddings that produced them")
    return array


def as_binary(values, name: str = "same") -> np.ndarray:
    """1-D bool array from bools or 0/1 numbers; anything else is a ValueError."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.dtype == bool:
        return array
    unique = np.unique(array)
    if not np.isin(unique, [0, 1]).all():
        raise ValueError(f"{name} must be bool or 0/1, got values {unique[:5].tolist()}")
    return array.astype(bool)


def check_same_length(**arrays) -> None:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs must have one entry per pair/sample; got lengths {lengths}")


def check_threshold(threshold, name: str = "threshold") -> float:
    """A decision threshold as a float; NaN (every comparison with it is False, so every pair would be
    called "different") is a ValueError naming ``name``."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {threshold!r}") from None
    if np.isnan(value):
        raise ValueError(f"{name} is NaN: no pair can be decided at it (check the computation that produced it)")
    return value


def check_far(far, name: str = "far") -> float:
    """A false accept rate in (0, 1] as a float, or a ValueError naming ``name`` and the value."""
    try:
        value = float(far)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1], got {far!r}") from None
    if not 0 < value <= 1:  # also refuses NaN
        raise ValueError(f"{name} must be a rate in (0, 1] (e.g. 1e-3), got {far!r}")
    return value


def _scores_and_labels(scores, same) -> tuple[np.ndarray, np.ndarray]:
    scores, same = as_scores(scores), as_binary(same)
    check_same_length(scores=scores, same=same)
    if len(scores) == 0:
        raise ValueError("no pairs given")
    return scores, same


# --------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------
def _l2_normalize(embeddings: np.ndarray, name: str) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if np.any(norms == 0):
        rows = np.flatnonzero(norms[:, 0] == 0)[:5].tolist()
        raise ValueError(f"{name} has all-zero rows {rows}: their cosine is undefined")
    return embeddings / norms


def _as_embeddings(embeddings, name: str) -> np.ndarray:
    array = np.asarray(embeddings, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, dim), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def cosine_scores(emb1, emb2) -> np.ndarray:
    """Row-wise cosine similarity ``cos⟨emb1[i], emb2[i]⟩`` of two (n, d) arrays (rows L2-normalized first)."""
    emb1, emb2 = _as_embeddings(emb1, "emb1"), _as_embeddings(emb2, "emb2")
    if emb1.shape != emb2.shape:
        raise ValueError(f"emb1 and emb2 must have the same shape, got {emb1.shape} and {emb2.shape}")
    return np.einsum("nd,nd->n", _l2_normalize(emb1, "emb1"), _l2_normalize(emb2, "emb2"))


def fuse_flip(emb, emb_flipped, mode: str = "sum") -> np.ndarray:
    """Fuse the embedding of each image with that of its horizontal flip.

    ``mode="sum"``: ``(e + e_flip) / ‖e + e_flip‖`` (the mean gives the same direction).
    ``mode="concat"``: ``[e, e_flip] / ‖[e, e_flip]‖``, twice the dimension.
    Neither normalizes the two halves first (as in InsightFace's evaluation code), so a view with a
    larger norm weighs more.
    """
    emb, emb_flipped = _as_embeddings(emb, "emb"), _as_embeddings(emb_flipped, "emb_flipped")
    if emb.shape != emb_flipped.shape:
        raise ValueError(f"emb and emb_flipped must have the same shape, got {emb.shape} and {emb_flipped.shape}")
    if mode == "sum":
        return _l2_normalize(emb + emb_flipped, "emb + emb_flipped")
    if mode == "concat":
        return _l2_normalize(np.concatenate([emb, emb_flipped], axis=1), "[emb, emb_flipped]")
    raise ValueError(f"mode must be 'sum' or 'concat', got {mode!r}")


# --------------------------------------------------------------------------------------------------
# Threshold choice and k-fold accuracy
# --------------------------------------------------------------------------------------------------
def _candidate_accuracies(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct decision a threshold can make, with its accuracy.

    With sorted unique scores u_1 < … < u_K the candidates are
    ``[u_1 − 1, (u_1+u_2)/2, …, (u_{K−1}+u_K)/2, u_K + 1]``: "all same", each gap's midpoint, "all
    different". Candidate k (0-based) declares "same" exactly the pairs whose score exceeds u_k, so
    ``accuracy_k = (#genuine above u_k + #impostor at or below u_k) / n``, computed by cumulative sums.
    """
    unique, inverse = np.unique(scores, return_inverse=True)
    genuine_per_value = np.bincount(inverse, weights=same, minlength=len(unique))
    impostor_per_value = np.bincount(inverse, weights=~same, minlength=len(unique))
    impostors_at_or_below = np.concatenate([[0.0], np.cumsum(impostor_per_value)])
    genuine_at_or_below = np.concatenate([[0.0], np.cumsum(genuine_per_value)])
    accuracies = (impostors_at_or_below + (same.sum() - genuine_at_or_below)) / len(scores)
    candidates = np.concatenate([[unique[0] - 1.0], (unique[:-1] + unique[1:]) / 2, [unique[-1] + 1.0]])
    return candidates, accuracies


def best_threshold(scores, same) -> float:
    """Threshold maximizing accuracy on the given pairs (rule: "same" ⇔ score > threshold).

    Candidate grid: midpoints between consecutive sorted unique scores, plus ``min − 1`` (all "same")
    and ``max + 1`` (all "different") — every distinct decision exactly once.
    Tie-breaking (deterministic): of the runs of consecutive candidates that reach the maximal
    accuracy, take the lowest-threshold run and return the middle of it, ``(first + last) / 2``;
    every threshold in that interval has the same, maximal accuracy. Reference repos use other grids
    (e.g. ``np.arange(-1, 1, 0.001)``) and tie rules, which moves the third decimal.
    """
    scores, same = _scores_and_labels(scores, same)
    candidates, accuracies = _candidate_accuracies(scores, same)
    is_best = accuracies == accuracies.max()
    first = int(np.argmax(is_best))
    # The run ends just before the first non-best candidate after `first` (or at the end).
    after = np.flatnonzero(~is_best[first:])
    last = first + (after[0] - 1 if len(after) else len(is_best) - 1 - first)
    return float((candidates[first] + candidates[last]) / 2)


def _accuracy_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(np.mean((scores > threshold) == same))


@dataclass(frozen=True)
class FoldedAccuracy:
    """Result of k-fold verification accuracy.

    ``std`` uses ddof=1 (the sample standard deviation, as the LFW README defines σ); ``stderr`` is
    σ/√k, what LFW asks papers to report. (InsightFace and others print ``np.std``, i.e. ddof=0.)
    """

    folds: np.ndarray  # the fold labels, in sorted order
    accuracies: np.ndarray  # held-out accuracy of each fold
    thresholds: np.ndarray  # threshold chosen on the other folds, applied to this one
    mean: float
    std: float
    stderr: float
    correct: np.ndarray | None = None  # per pair: was it classified right by its own fold's threshold

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.stderr:.4f} (standard error over {len(self.folds)} folds)"


def ten_fold_accuracy(scores, same, folds) -> FoldedAccuracy:
    """LFW-style k-fold accuracy: each fold is scored with the threshold chosen on all other folds.

    ``folds`` gives each pair's fold label (any hashable values; any number ≥ 2 of folds). For LFW
    View 2, pair i of ``pairs.txt`` belongs to fold ``i // 600``. The held-out fold never influences
    its own threshold.
    """
    scores, same = _scores_and_labels(scores, same)
    folds = np.asarray(folds)
    check_same_length(scores=scores, folds=folds)
    fold_labels = np.unique(folds)
    if len(fold_labels) < 2:
        raise ValueError(f"need at least 2 folds, got {len(fold_labels)}")
    thresholds = np.empty(len(fold_labels))
    accuracies = np.empty(len(fold_labels))
    correct = np.empty(len(scores), dtype=bool)
    for k, label in enumerate(fold_labels):  # loop over folds, not samples
        held_out = folds == label
        thresholds[k] = best_threshold(scores[~held_out], same[~held_out])
        correct[held_out] = (scores[held_out] > thresholds[k]) == same[held_out]
        accuracies[k] = float(np.mean(correct[held_out]))
    std = float(np.std(accuracies, ddof=1))
    return FoldedAccuracy(
        folds=fold_labels,
        accuracies=accuracies,
        thresholds=thresholds,
        mean=float(accuracies.mean()),
        std=std,
        stderr=std / np.sqrt(len(fold_labels)),
        correct=correct,
    )


def cross_validated_accuracy(scores, same, n_folds: int = 10, seed: int = 0) -> FoldedAccuracy:
    """k-fold accuracy for pair sets without official folds (LFW View 1 ``pairsDevTest.txt``).

    Folds are stratified by ``same`` and shuffled with ``seed`` (``sklearn.model_selection.StratifiedKFold``),
    then scored exactly as :func:`ten_fold_accuracy`. Unlike View 2's folds these are not identity-disjoint;
    only a threshold is fitted, so that matters little.
    """
    scores, same = _scores_and_labels(scores, same)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = np.empty(len(scores), dtype=int)
    for k, (_, test_index) in enumerate(splitter.split(scores.reshape(-1, 1), same)):
        folds[test_index] = k
    return ten_fold_accuracy(scores, same, folds)


def fixed_threshold_accuracy(scores, same, threshold: float = 0.5) -> float:
    """Accuracy at a hand-fixed cosine threshold — the SphereFace course report's method.

    Kept only to reproduce that report: a fixed 0.5 **under-reports** badly (notebook 02 shows both
    columns side by side), because margin-trained models put genuine pairs at cosines of ~0.2–0.6. Use :func:`ten_fold_accuracy` or :func:`cross_validated_accuracy`.
    """
    scores, same = _scores_and_labels(scores, same)
    return _accuracy_at(scores, same, check_threshold(threshold))


# --------------------------------------------------------------------------------------------------
# ROC, EER, TAR@FAR
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RocMetrics:
    """ROC summary of a set of verification pairs.

    * ``auc``: ``sklearn.metrics.roc_auc_score``.
    * ``eer``: equal error rate, where the ROC polyline (linear interpolation between its points)
      crosses FPR = FNR (= 1 − TPR); ``eer_threshold`` is interpolated on the same segment.
    * ``tar_at_far[f]``: the highest TPR among ROC points with FPR ≤ f, i.e. at the *smallest* threshold
      whose FAR does not exceed f. NaN when fewer than 1/f impostor pairs exist (f below the
      resolution: a single false accept already exceeds it); ``far_resolved[f]`` says which.
    * ``fpr``, ``tpr``, ``thresholds``: the full curve (``drop_intermediate=False``), for plotting.
    """

    auc: float
    eer: float
    eer_threshold: float
    tar_at_far: dict[float, float]
    far_resolved: dict[float, bool]
    n_genuine: int
    n_impostor: int
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)
    thresholds: np.ndarray = field(repr=False)


def _equal_error_rate(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    """Crossing of the ROC polyline with FPR = FNR; the curve starts at FNR − FPR = 1, ends at −1."""
    excess = (1.0 - tpr) - fpr  # FNR − FPR, non-increasing along the curve
    i = int(np.argmax(excess <= 0))  # first point at or past the crossing; i ≥ 1 since excess[0] = 1
    fraction = excess[i - 1] / (excess[i - 1] - excess[i])
    eer = fpr[i - 1] + fraction * (fpr[i] - fpr[i - 1])
    # thresholds[0] is +inf (sklearn's "nothing accepted" point): interpolate only between finite ends.
    low, high = thresholds[i], thresholds[i - 1]
    threshold = low if not np.isfinite(high) else high + fraction * (low - high)
    return float(eer), float(threshold)


def roc_metrics(scores, same, fars=(1e-3, 1e-2)) -> RocMetrics:
    """AUC, EER and TAR at each FAR in ``fars`` (rates in (0, 1]; see :class:`RocMetrics` for exact
    definitions)."""
    for far in fars:
        check_far(far, "each of fars")
    scores, same = _scores_and_labels(scores, same)
    n_genuine, n_impostor = int(same.sum()), int((~same).sum())
    if n_genuine == 0 or n_impostor == 0:
        raise ValueError(f"ROC needs genuine and impostor pairs; got {n_genuine} genuine, {n_impostor} impostor")
    fpr, tpr, thresholds = roc_curve(same, scores, drop_intermediate=False)
    eer, eer_threshold = _equal_error_rate(fpr, tpr, thresholds)
    tar_at_far, far_resolved = {}, {}
    for far in fars:
        resolved = n_impostor * far >= 1 - 1e-9  # at least one impostor pair per 1/far
        far_resolved[far] = bool(resolved)
        tar_at_far[far] = float(tpr[fpr <= far].max()) if resolved else float("nan")
    return RocMetrics(
        auc=float(roc_auc_score(same, scores)),
        eer=eer,
        eer_threshold=eer_threshold,
        tar_at_far=tar_at_far,
        far_resolved=far_resolved,
        n_genuine=n_genuine,
        n_impostor=n_impostor,
        fpr=fpr,
        tpr=tpr,
        thresholds=thresholds,
    )


# --------------------------------------------------------------------------------------------------
# Angular Fisher score
# --------------------------------------------------------------------------------------------------
def _row_cosines(a: np.ndarray, b: np.ndarray, what: str) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    if np.any(norms == 0):
        raise ValueError(f"{what} has a zero vector, so an angle is undefined")
    return np.einsum("nd,nd->n", a, b) / norms


def angular_fisher_score(features, labels, normalize: bool = False) -> float:
    """Angular Fisher score (SphereFace, Appendix E) — lower means more discriminative features.

    ``AFS = S_w / S_b`` with
    ``S_w = Σ_i Σ_{x∈X_i} (1 − cos⟨x, m_i⟩)`` and ``S_b = Σ_i n_i (1 − cos⟨m_i, m⟩)``,
    m_i the mean feature of class i, m the mean of all features, n_i = |X_i|. (The course write-up puts
    a spurious n_i inside S_w as well; that is not the paper's definition.)

    ``normalize=True`` L2-normalizes every feature before the means are taken (the means themselves
    only enter through cosines, so their norm is irrelevant). With ``normalize=False`` long features
    pull the means harder.
    """
    features = _as_embeddings(features, "features")
    labels = np.asarray(labels)
    check_same_length(features=features, labels=labels)
    if normalize:
        features = _l2_normalize(features, "features")
    classes, class_index, class_sizes = np.unique(labels, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        raise ValueError("the Angular Fisher score needs at least 2 classes")
    class_means = np.zeros((len(classes), features.shape[1]))
    np.add.at(class_means, class_index, features)
    class_means /= class_sizes[:, None]
    overall_mean = features.mean(axis=0, keepdims=True)

    within = np.sum(1.0 - _row_cosines(features, class_means[class_index], "a feature or its class mean"))
    between = np.sum(
        class_sizes * (1.0 - _row_cosines(class_means, np.broadcast_to(overall_mean, class_means.shape), "a mean"))
    )
    if between <= 0:
        raise ValueError("all class means point the same way as the overall mean (S_b = 0): AFS is undefined")
    return float(within / between)


# --------------------------------------------------------------------------------------------------
# Intervals over folds, seeds and test samples
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IntervalSummary:
    """Mean, sample std (ddof=1) and Student-t confidence interval of a few values (folds or seeds)."""

    mean: float
    std: float
    n: int
    lower: float
    upper: float
    confidence: float

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.std:.4f} (n={self.n}; {self.confidence:.0%} CI [{self.lower:.4f}, {self.upper:.4f}])"


def summarize_interval(values, confidence: float = 0.95) -> IntervalSummary:
    """``mean ± t_{(1+c)/2, n−1} · s/√n`` with s the ddof=1 std; std and interval are NaN for n = 1."""
    values = as_scores(values, name="values")
    if len(values) == 0:
        raise ValueError("no values to summarize")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n, mean = len(values), float(values.mean())
    if n == 1:
        return IntervalSummary(mean, float("nan"), 1, float("nan"), float("nan"), confidence)
    std = float(values.std(ddof=1))
    half_width = stats.t.ppf((1 + confidence) / 2, df=n - 1) * std / np.sqrt(n)
    return IntervalSummary(mean, std, n, mean - half_width, mean + half_width, confidence)


@dataclass(frozen=True)
class SeedsAndSamplesInterval:
    """Intervals of ``Q`` statistics estimated from several training seeds scored on one test set.

    Every array has one entry per statistic (``seed_estimates``: one row per seed). ``estimate`` is the mean
    over seeds of the per-seed statistic; ``lower, upper, p_value`` are the interval and the two-sided
    test of "the statistic is 0" that include **both** sources of variation (``seed_se`` and ``sample_se``,
    combined into ``se`` with ``df`` degrees of freedom); ``seeds_lower, seeds_upper, seeds_p_value`` are
    the Student-t interval and t-test over seeds alone, conditional on the one test set (NaN with one seed),
    kept for comparison only. ``groups`` names the strata in the order the statistic received them."""

    estimate: np.ndarray
    seed_estimates: np.ndarray = field(repr=False)
    seed_se: np.ndarray
    sample_se: np.ndarray
    se: np.ndarray
    df: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    p_value: np.ndarray
    seeds_lower: np.ndarray
    seeds_upper: np.ndarray
    seeds_p_value: np.ndarray
    n_seeds: int
    n_samples: int
    groups: tuple
    confidence: float


def _two_sided_t(estimate: np.ndarray, se: np.ndarray, df, confidence: float):
    """Interval ``estimate ± t_df · se`` and the matching two-sided p-value; with ``se`` = 0 the interval is
    the point and p is 0 for a non-zero estimate, 1 for a zero one."""
    quantile = stats.t.ppf((1 + confidence) / 2, df)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 2 * stats.t.sf(np.abs(estimate) / se, df)
    p = np.where(se == 0, np.where(estimate != 0, 0.0, 1.0), p)
    p = np.where(np.isnan(se), np.nan, p)
    return estimate - quantile * se, estimate + quantile * se, p


def interval_over_seeds_and_samples(values, *, groups=None, order=None, statistic=None, n_boot: int = 2000,
                                    confidence: float = 0.95, seed: int = 0) -> SeedsAndSamplesInterval:
    """The project's one uncertainty model: an interval for statistics of S training seeds scored on the
    **same** N test samples (images or pairs) that covers both where the seeds fall and which test samples
    were drawn, paired wherever the values are (pass the two heads' values side by side, or their difference).

    ``values``: array (S, N) or (S, N, K) — e.g. 0/1 correctness per seed and sample, with K = 2 for two
    heads trained with the same seeds. ``groups`` (keyword-only, length N): strata such as race; samples are
    resampled **within** each group, so every replicate keeps the group sizes and a small group gets the
    wide interval its size implies. ``statistic``: maps per-group means, an array (..., G, K) with G groups
    in ``order`` (default sorted; G = 1 without groups), to (..., Q) — e.g. a gap difference
    ``gap(m[..., 0]) − gap(m[..., 1])``; the default is each column's mean over all samples.

    The statistic is computed per seed and averaged over seeds (``estimate``). Two components of its
    variance:

    * **seeds** — ``seed_se`` = std over seeds (ddof=1) / √S, the Student-t standard error of a mean of S
      seeds; with the one test set fixed it contains the seed-to-seed variation and each seed's own
      sample noise;
    * **test samples** — ``sample_se`` = the standard deviation of the seed-averaged statistic over
      ``n_boot`` bootstrap resamples of the samples (Efron & Tibshirani 1993), the **same** resample for
      every seed and column, since all of them were scored on those samples: this is the part the seeds
      share and a t-interval over seeds cannot see.

    ``se = √(seed_se² + sample_se²)`` with Welch–Satterthwaite degrees of freedom
    ``df = se⁴ / (seed_se⁴ / (S − 1))`` (the bootstrap component counts as known): with three seeds and
    seed noise dominating, the interval is the t-interval with 2 degrees of freedom; when sample noise
    dominates, it tends to the normal bootstrap interval. The interval is ``estimate ± t_df · se`` and
    ``p_value`` the matching test, so a 95 % interval excludes 0 exactly when p < 0.05. The seeds are
    not resampled: a bootstrap of three seeds has ten distinct outcomes and understates their spread by a
    factor (S − 1)/S. The sum counts the seed × sample interaction twice (once in each part), which errs
    on the wide side. With one seed the interval covers the samples only.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 2:
        v = v[:, :, None]
    if v.ndim != 3 or v.shape[0] < 1 or v.shape[1] < 2:
        raise ValueError(f"values must be (seeds, samples) or (seeds, samples, k) with at least 2 samples, "
                         f"got shape {np.shape(values)}")
    if not np.isfinite(v).all():
        raise ValueError("values contain NaN or infinite entries; drop or fill them first")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 2:
        raise ValueError(f"n_boot must be at least 2, got {n_boot}")
    n_seeds, n_samples, _ = v.shape
    if groups is None:
        names, codes = ("all",), np.zeros(n_samples, dtype=np.int64)
    else:
        groups = np.asarray(groups, dtype=object)
        check_same_length(values=v[0, :, 0], groups=groups)
        present = set(groups.tolist())
        if order is None:
            names = tuple(sorted(present, key=str))
        else:
            unknown = sorted(present - set(order), key=str)
            if unknown:
                raise ValueError(f"groups {unknown[:5]} are not in `order` {list(order)}")
            names = tuple(name for name in order if name in present)
        lookup = {name: index for index, name in enumerate(names)}
        codes = np.array([lookup[name] for name in groups.tolist()], dtype=np.int64)
    sizes = np.bincount(codes, minlength=len(names)).astype(np.float64)
    if statistic is None:
        shares = sizes / sizes.sum()

        def statistic(means):
            return np.tensordot(means, shares, axes=([-2], [0]))  # (..., K): the mean over all samples

    def per_seed(means: np.ndarray) -> np.ndarray:
        out = np.asarray(statistic(means), dtype=np.float64)
        return out[..., None] if out.ndim == means.ndim - 2 else out

    observed = np.stack([v[:, codes == g, :].mean(axis=1) for g in range(len(names))], axis=1)  # (S, G, K)
    seed_estimates = per_seed(observed)  # (S, Q)
    estimate = seed_estimates.mean(axis=0)

    rng = np.random.default_rng(seed)
    boot_means = np.empty((n_boot, n_seeds, len(names), v.shape[2]))
    for g in range(len(names)):  # loop over groups; each group's resamples are drawn in one call
        members = v[:, codes == g, :]  # (S, n_g, K)
        n_g = members.shape[1]
        draws = rng.integers(0, n_g, size=(n_boot, n_g))
        counts = np.bincount((draws + n_g * np.arange(n_boot)[:, None]).ravel(), minlength=n_boot * n_g)
        boot_means[:, :, g, :] = np.einsum("bn,snk->bsk", counts.reshape(n_boot, n_g), members) / n_g
    replicates = per_seed(boot_means).mean(axis=1)  # (B, Q): the seed-averaged statistic per resample
    sample_se = replicates.std(axis=0, ddof=1)

    if n_seeds > 1:
        seed_se = seed_estimates.std(axis=0, ddof=1) / np.sqrt(n_seeds)
        with np.errstate(divide="ignore", invalid="ignore"):
            se = np.sqrt(seed_se**2 + sample_se**2)
            df = np.where(seed_se > 0, se**4 / (seed_se**4 / (n_seeds - 1)), np.inf)
        seeds_lower, seeds_upper, seeds_p = _two_sided_t(estimate, seed_se, n_seeds - 1, confidence)
    else:
        seed_se = np.full_like(estimate, np.nan)
        se, df = sample_se, np.full_like(estimate, np.inf)
        seeds_lower = seeds_upper = seeds_p = np.full_like(estimate, np.nan)
    lower, upper, p_value = _two_sided_t(estimate, se, df, confidence)
    return SeedsAndSamplesInterval(estimate, seed_estimates, seed_se, sample_se, se, df, lower, upper, p_value,
                                   seeds_lower, seeds_upper, seeds_p, n_seeds, n_samples, names, confidence)


def interval_over_seeds_and_pairs(correct, *, n_boot: int = 2000, confidence: float = 0.95,
                                  seed: int = 0) -> IntervalSummary:
    """Mean of a per-(seed, pair) quantity — e.g. 0/1 correctness of one model, or the difference of two
    models' correctness paired by seed and pair — with :func:`interval_over_seeds_and_samples`' interval
    over seeds and pairs. ``correct``: array (S seeds, P pairs). Returns an :class:`IntervalSummary`
    (``std`` = the std over seeds of the per-seed means, ``n`` = S)."""
    values = np.asarray(correct, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"correct must be (seeds, pairs) with at least 2 pairs, got shape {values.shape}")
    result = interval_over_seeds_and_samples(values, n_boot=n_boot, confidence=confidence, seed=seed)
    std = float(values.mean(axis=1).std(ddof=1)) if values.shape[0] > 1 else float("nan")
    return IntervalSummary(float(result.estimate[0]), std, values.shape[0], float(result.lower[0]),
                           float(result.upper[0]), confidence)
