"""Notebook 04's analysis: the statistics of :mod:`lib.fairness` applied to the predictions and scores that
notebooks 02 and 03 saved under ``data/results/<profile>/`` — nothing is retrained or recomputed by hand.

Conventions:

* predictions (notebook 03): one row per ``(target, head, seed, id)`` with ``y_true, y_pred, correct``
  and the metadata ``race, gender, age, service_test``; pair scores (notebook 02): one row per
  ``(head, seed, pair)`` with ``file1, file2, same, score, threshold_10fold``;
* with three or more seeds, per-group accuracies are averaged over seeds with an interval over the seeds
  and the validation images, resampled within each group (so a small group gets a wide interval); with
  fewer, the seeds' predictions are pooled with a Wilson interval over images (labelled so); disparities
  are averaged over seeds with an interval over the seeds and the images as well;
* which heads are collapsed or identical, and every head-vs-head verdict, come from the tables notebook
  03 saved (:mod:`lib.head_comparison`), read here, never recomputed differently.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from lib import fairness, head_comparison, lfw, paths
from lib.errors import DataError
from lib.fairness_plots import disparity_table

PREDICTIONS_FILE = "03_predictions.csv"
PAIR_SCORES_FILE = "02_lfw_pair_scores.csv"
UNKNOWN = "unknown"


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------
def read_results(profile: str, file_name: str, notebook: str, required=()) -> pd.DataFrame:
    """A CSV another notebook saved under ``data/results/<profile>/``, or a DataError saying how to make it."""
    path = paths.RESULTS / profile / file_name  # reading must not create the folder
    if not path.is_file():
        raise DataError(
            f"{path} does not exist: notebook 04 reads what notebook {notebook} saved. Run "
            f"`python -m lib.notebooks run --profile {profile} --only {notebook}` (or `make run PROFILE={profile}`) first."
        )
    frame = pd.read_csv(path)
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}; re-run notebook {notebook} to rewrite it")
    return frame


def read_predictions(profile: str) -> pd.DataFrame:
    frame = read_results(profile, PREDICTIONS_FILE, "03",
                         ("id", "y_true", "y_pred", "race", "gender", "age", "service_test", "target", "head", "seed"))
    frame["correct"] = frame["y_true"] == frame["y_pred"]
    return frame


def read_head_status(profile: str) -> pd.DataFrame:
    """Notebook 03's :func:`lib.head_comparison.head_status` table (collapsed and identical heads)."""
    frame = read_results(profile, head_comparison.HEADS_FILE, "03",
                         ("target", "head", "label", "same_as", "seeds", "collapsed_seeds", "collapsed", "reason"))
    frame["reason"] = frame["reason"].fillna("")
    return frame


def read_comparisons(profile: str) -> pd.DataFrame:
    """Notebook 03's :func:`lib.head_comparison.compare_heads` table (effect sizes and verdicts)."""
    frame = read_results(profile, head_comparison.COMPARISONS_FILE, "03",
                         ("target", "quantity", "group", "head", "reference", "seeds", "difference", "lower",
                          "upper", "p_value", "p_adjusted", "interval", "correction", "verdict"))
    frame["group"] = frame["group"].fillna("")
    return frame


def read_pair_scores(profile: str) -> pd.DataFrame:
    return read_results(profile, PAIR_SCORES_FILE, "02",
                        ("pair", "file1", "file2", "same", "head", "seed", "score", "threshold_10fold"))


def heads_of(frame: pd.DataFrame) -> list[str]:
    """Heads in the order the notebook that saved them trained them."""
    return list(dict.fromkeys(frame["head"]))


# --------------------------------------------------------------------------------------------------
# Classification: per-group accuracy and disparity
# --------------------------------------------------------------------------------------------------
MIN_SEEDS_FOR_T = 3  # with 2 seeds a t-interval (t = 12.7) says almost nothing


def _how(predictions: pd.DataFrame) -> str:
    return "average" if predictions["seed"].nunique() >= MIN_SEEDS_FOR_T else "pool"


def interval_label(predictions: pd.DataFrame) -> str:
    """How :func:`per_group_accuracy` builds its intervals for these predictions."""
    n_seeds = predictions["seed"].nunique()
    if n_seeds >= MIN_SEEDS_FOR_T:
        return "95% over seeds (Student-t) and validation images (bootstrap within each group)"
    if n_seeds == 1:
        return "95% Wilson interval (one seed)"
    return f"95% Wilson interval, {n_seeds} seeds pooled (ignores seed-to-seed variability)"


def per_group_accuracy(predictions: pd.DataFrame, group: str, order=None) -> pd.DataFrame:
    """Per head and group: accuracy with its interval (see the module docstring), stacked with ``head``."""
    return pd.concat([
        fairness.group_accuracy_over_seeds(rows, how=_how(predictions), group=group, sample="id", order=order
                                           ).assign(head=head)
        for head, rows in predictions.groupby("head", sort=False)
    ], ignore_index=True)


DISPARITY_INTERVAL = "mean over seeds; 95 % interval over seeds and validation images, resampled within each race"


def disparities(predictions: pd.DataFrame, group: str, order=None) -> pd.DataFrame:
    """Gap, ratio, STD and SER per head (one row per head): the mean over seeds with an interval over the seeds
    and the validation images (:func:`lib.fairness.disparity_over_seeds_and_images`; see
    :data:`DISPARITY_INTERVAL`)."""
    return disparity_table({
        head: fairness.disparity_over_seeds_and_images(rows, group=group, sample="id", order=order)
        for head, rows in predictions.groupby("head", sort=False)
    })


def gap_permutation_tests(predictions: pd.DataFrame, group: str, n_permutations: int = 2000,
                          seed: int = 0) -> pd.DataFrame:
    """"Is there a gap at all?" per head and training seed: observed max−min gap and permutation p-value."""
    rows = []
    for (head, run_seed), frame in predictions.groupby(["head", "seed"], sort=False):
        test = fairness.permutation_test_gap(frame["y_true"], frame["y_pred"], frame[group], n_permutations, seed)
        rows.append({"head": head, "seed": run_seed, "gap": test.observed_gap, "p_value": test.p_value})
    return pd.DataFrame(rows)


def subset_accuracy(predictions: pd.DataFrame, subset: str = "service_test") -> pd.DataFrame:
    """Per head: accuracy on all validation images and on the rows where ``subset`` is true
    (FairFace's race- and gender-balanced ``service_test`` subset), each with its interval."""
    mask = predictions[subset].astype(str).str.lower().isin(["true", "1"])
    if not mask.any():
        raise ValueError(f"no validation image has {subset} = True")
    labelled = pd.concat([
        predictions.assign(subset="all validation images"),
        predictions[mask].assign(subset=f"{subset} subset"),
    ])
    rows = []
    for head, frame in labelled.groupby("head", sort=False):
        table = fairness.group_accuracy_over_seeds(frame, how=_how(predictions), group="subset")
        rows.append(table.assign(head=head))
    return pd.concat(rows, ignore_index=True)[["head", "group", "n", "accuracy", "lower", "upper"]]


# --------------------------------------------------------------------------------------------------
# Verification (LFW): per-group FMR/FNMR at one global threshold
# --------------------------------------------------------------------------------------------------
def lfw_face_groups(lfw_root, gender_folder=None) -> tuple[pd.DataFrame, dict]:
    """Per image file: ``gender`` (from the male/female lists; ``unknown`` when an image is in both lists
    or in neither) and, for the synthetic LFW, the generated ``group`` of its identity (from
    ``identities.csv``). Returns the table and the gender lists' report (conflict counts)."""
    lfw_root = Path(lfw_root)
    faces = lfw.load_lfw(lfw_root)
    labels, report = lfw.load_lfw_gender(paths.lfw_gender_folder(lfw_root, gender_folder), faces)
    table = labels[["file", "name"]].copy()
    table["gender"] = labels["gender"].astype(object).where(labels["gender"].notna(), UNKNOWN)
    identities = lfw_root / "identities.csv"
    if identities.is_file():
        group_of = pd.read_csv(identities).set_index("name")["group"]
        table["group"] = table["name"].map(group_of).fillna(UNKNOWN)
    return table, report


def attach_face_groups(scores: pd.DataFrame, faces: pd.DataFrame, column: str) -> pd.DataFrame:
    """Scores with ``group1``/``group2``: the ``column`` of each pair's two images (``unknown`` if unlisted)."""
    mapping = faces.set_index("file")[column]
    return scores.assign(group1=scores["file1"].map(mapping).fillna(UNKNOWN),
                         group2=scores["file2"].map(mapping).fillna(UNKNOWN))


def global_threshold(rows: pd.DataFrame, rule) -> float:
    """``"10fold"``: notebook 02's 10-fold threshold (mean over folds); a float: the threshold at that
    false-match rate over all pairs of this head."""
    if rule == "10fold":
        return float(rows["threshold_10fold"].iloc[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a FAR below resolution is reported by the caller
        return fairness.threshold_at_far(rows["score"], rows["same"], float(rule))


def verification_by_group(scores: pd.DataFrame, faces: pd.DataFrame, column: str, rule="10fold",
                          order=None) -> tuple[dict, pd.DataFrame]:
    """Per head, :class:`lib.fairness.VerificationErrorRates` of ``column`` (gender or group) at one
    global threshold chosen on **all** pairs; pairs with an unknown face are left out of the rates and
    counted. Returns ``(rates per head, table of thresholds and excluded pairs)``."""
    with_groups = attach_face_groups(scores, faces, column)
    rates, notes = {}, []
    for head, rows in with_groups.groupby("head", sort=False):
        threshold = global_threshold(rows, rule)
        known = (rows["group1"] != UNKNOWN) & (rows["group2"] != UNKNOWN)
        kept = rows[known]
        rates[head] = fairness.verification_error_rates(kept["score"], kept["same"], kept["group1"], kept["group2"],
                                                         threshold, order=order)
        notes.append({"head": head, "threshold": threshold, "pairs": len(rows), "pairs with an unknown face": int((~known).sum()),
                      "overall FMR": float(np.mean(rows.loc[~rows["same"], "score"] > threshold)),
                      "overall FNMR": float(np.mean(rows.loc[rows["same"], "score"] <= threshold)),
                      "FMR max/min": rates[head].fmr_ratio, "FNMR max/min": rates[head].fnmr_ratio})
    return rates, pd.DataFrame(notes).set_index("head")


def error_rate_table(rates: dict) -> pd.DataFrame:
    """The per-group FMR/FNMR tables of several heads stacked with a ``head`` column."""
    return pd.concat([rate.table.assign(head=head) for head, rate in rates.items()], ignore_index=True)


def per_group_roc_curves(scores: pd.DataFrame, faces: pd.DataFrame, column: str, order=None) -> pd.DataFrame:
    """Per head and group, the ROC curve over pairs whose faces are both of the group."""
    with_groups = attach_face_groups(scores, faces, column)
    curves = []
    for head, rows in with_groups.groupby("head", sort=False):
        known = rows[(rows["group1"] != UNKNOWN) & (rows["group2"] != UNKNOWN)]
        curve = fairness.per_group_roc(known["score"], known["same"], known["group1"], known["group2"], order=order)
        curves.append(curve.assign(head=head))
    return pd.concat(curves, ignore_index=True)


def group_order(values) -> list:
    """Groups in the canonical order of their vocabulary (FairFace races, genders, synthetic groups),
    else sorted."""
    from lib.labels import AGES, GENDERS, RACES, SYNTHETIC_GROUPS

    present = set(map(str, pd.Series(values).dropna()))
    for vocabulary in (RACES, SYNTHETIC_GROUPS, GENDERS, AGES):
        if present <= set(vocabulary):
            return [name for name in vocabulary if name in present]
    return sorted(present)


# --------------------------------------------------------------------------------------------------
# The conclusion, in words computed from the tables
# --------------------------------------------------------------------------------------------------
def gap_test_summary(gap_tests: pd.DataFrame, what: str, alpha: float = 0.05) -> str:
    """One sentence on the per-model permutation tests of :func:`gap_permutation_tests`."""
    significant = gap_tests["p_value"] < alpha
    return (f"**Is there a race gap in {what} at all?** For {int(significant.sum())} of {len(gap_tests)} trained "
            f"models (head, seed) the permutation test finds one at the {alpha:.0%} level, each model tested on "
            f"its own (observed gaps {gap_tests['gap'].min():.3f} to {gap_tests['gap'].max():.3f}).")


def conclusion(comparisons: pd.DataFrame, status: pd.DataFrame, *, gap_tests: dict | None = None,
               verification_notes: pd.DataFrame | None = None, alpha: float = 0.05) -> str:
    """Markdown paragraphs: notebook 03's verdicts (:func:`lib.head_comparison.summary_text` of the saved
    tables, word for word what notebook 03 printed), then what only notebook 04 computes: per target the
    permutation tests of ``gap_tests`` (target → :func:`gap_permutation_tests` table) and the LFW
    verification ratios."""
    lines = [head_comparison.summary_text(comparisons, status, alpha)]
    for target, tests in (gap_tests or {}).items():
        what = "per-class recall" if target == "race" else f"{target} accuracy"
        lines.append(gap_test_summary(tests, what, alpha))
    if verification_notes is not None and len(verification_notes):
        def ratio(value):
            return "undefined (a group made no such error)" if pd.isna(value) else f"{value:.2f}×"

        ratios = "; ".join(
            f"`{head}` FMR {ratio(row['FMR max/min'])}, FNMR {ratio(row['FNMR max/min'])}"
            for head, row in verification_notes.iterrows()
        )
        lines.append(f"**LFW verification by gender** (max/min ratio across genders at one global threshold; NaN "
                     f"when a group has no errors): {ratios}.")
    return "\n\n".join(lines)


def planted_order_check(per_group: pd.DataFrame, difficulty: dict, value: str = "accuracy") -> pd.DataFrame:
    """Synthetic data only: per head, Spearman's rank correlation between the planted group difficulty
    and the measured per-group ``value`` (accuracy: a recovered ordering gives ρ near −1), and whether
    the hardest planted group is the worst measured one."""
    from scipy.stats import spearmanr

    rows = []
    for head, table in per_group.groupby("head", sort=False):
        table = table[table["group"].isin(list(difficulty))]
        planted = table["group"].map(difficulty).to_numpy(dtype=float)
        rho = spearmanr(planted, table[value]).statistic if len(table) > 2 else np.nan
        hardest = max(difficulty, key=difficulty.get)
        rows.append({"head": head, "groups": len(table), "spearman_rho": float(rho),
                     "worst group": table.loc[table[value].idxmin(), "group"],
                     "hardest planted group is worst": table.loc[table[value].idxmin(), "group"] == hardest})
    return pd.DataFrame(rows).set_index("head")
