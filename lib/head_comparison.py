"""Which trained heads can be compared, and what the comparison says: the verdicts of notebooks 03 and 04.

Everything here works on the per-image validation predictions notebook 03 saves (one row per target,
head, seed and image: ``target, head, seed, id, y_true, y_pred, correct``, the group column, and
``in_fallback_branch``), in three steps:

1. :func:`run_health` — is a run (target, head, seed) **collapsed**? Any of: most validation samples
   (more than :data:`COLLAPSE_BRANCH_SHARE`) sit in the head's fallback or clamp branch, where its margin
   formula no longer applies; most validation embeddings point away from their own class weight
   (θ_y > 90°, a negative cosine), so predictions rest on differences between negative cosines, not on
   the geometry the loss is meant to build; or the accuracy is not above the majority class's share (the
   Wilson 95 % lower bound of the accuracy at or below it).
2. :func:`head_status` — per (target, head): collapsed in how many seeds, and which heads are the same
   model (identical predictions on every seed, e.g. CosReLU and CosFace when the clamp never acts),
   reported once under one label such as ``cosrelu = cosface``. :func:`relabel` applies those labels
   to any table, so every table and figure shows the same names and flags.
3. :func:`compare_heads` — per pair (head, reference) and target: the difference of overall accuracy,
   of the race gap (max − min group accuracy) and of each group's accuracy, paired by seed and image (the
   two heads of one seed share initialisation, batches and validation images). Each is the mean over
   seeds with an interval over seeds **and** validation images (:func:`head_differences`, built on
   :func:`lib.verification.interval_over_seeds_and_samples`: all seeds are scored on the same images, so
   a t-interval over seeds alone would miss which images were drawn). The verdict comes from the matching
   test, Holm- (or Benjamini–Hochberg-) adjusted across the comparisons of one kind, from three seeds on;
   collapsed heads are left out. The ``interval`` column says all this, family size included.

:func:`summary_text` writes the conclusion from the comparison table. Notebook 03 calls it on the table
it saves and notebook 04 on the table it reads back, so the two notebooks cannot disagree.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lib import tables
from lib.fairness import adjust_p_values, wilson_interval
from lib.verification import interval_over_seeds_and_samples

__all__ = [
    "COLLAPSE_BRANCH_SHARE",
    "HEADS_FILE",
    "COMPARISONS_FILE",
    "run_health",
    "prediction_agreement",
    "agreement_by_seed",
    "describe_clamp_agreement",
    "describe_skewed_predictions",
    "identical_groups",
    "head_status",
    "relabel",
    "representatives",
    "label_of",
    "MIN_SEEDS_FOR_VERDICT",
    "head_differences",
    "interval_description",
    "compare_heads",
    "comparison_style",
    "summary_text",
]

COLLAPSE_BRANCH_SHARE = 0.5
# A verdict needs this many seeds: with two, the t-test has one degree of freedom and its std comes from two
# values, so one lucky pair of seeds decides it. Intervals are shown from two seeds on.
MIN_SEEDS_FOR_VERDICT = 3
HEADS_FILE = "03_heads.csv"
COMPARISONS_FILE = "03_comparisons.csv"
QUANTITIES = ("accuracy", "gap", "group accuracy")
TARGET_TITLES = {"race": "Race classification (per-class recall)", "gender": "Gender classification"}
NOT_RESOLVED = "not resolved"
# Beyond this many resolved per-group differences, the conclusion counts them per pair instead of listing each.
MAX_LISTED_GROUP_EFFECTS = 6
ONE_SEED = "no interval (one seed)"
TOO_FEW_SEEDS = f"no verdict (fewer than {MIN_SEEDS_FOR_VERDICT} seeds)"


def _require(frame: pd.DataFrame, columns, what: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; present: {list(frame.columns)}")


def _in_order(values) -> list:
    return list(dict.fromkeys(values))


# --------------------------------------------------------------------------------------------------
# 1. Collapsed runs
# --------------------------------------------------------------------------------------------------
def run_health(predictions: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """One row per (target, head, seed): ``n, accuracy, accuracy_lower`` (Wilson, level 1 − alpha),
    ``majority_share`` (the most frequent true class), ``fallback_share`` (NaN for a head without such a
    branch or predictions saved without the column), ``away_share`` (embeddings with a negative cosine to
    their own class weight; NaN without ``target_cosine``), ``collapsed`` and ``reason``."""
    _require(predictions, ["target", "head", "seed", "y_true", "correct"], "predictions")
    rows = []
    for (target, head, seed), frame in predictions.groupby(["target", "head", "seed"], sort=False):
        n, correct = len(frame), int(frame["correct"].sum())
        lower = float(wilson_interval(correct, n, alpha)[0])
        majority = float(frame["y_true"].value_counts(normalize=True).iloc[0])
        branch = (frame["in_fallback_branch"].astype(float).mean() if "in_fallback_branch" in frame.columns
                  else math.nan)
        away = float((frame["target_cosine"] < 0).mean()) if "target_cosine" in frame.columns else math.nan
        reasons = []
        if branch > COLLAPSE_BRANCH_SHARE:  # NaN compares False
            reasons.append(f"{branch:.0%} of validation samples in the fallback branch")
        elif away > COLLAPSE_BRANCH_SHARE:
            reasons.append(f"{away:.0%} of validation embeddings more than 90° from their own class weight")
        if lower <= majority:
            reasons.append(f"accuracy {correct / n:.3f} not above the majority class's share {majority:.3f}")
        rows.append({"target": target, "head": head, "seed": seed, "n": n, "accuracy": correct / n,
                     "accuracy_lower": lower, "majority_share": majority, "fallback_share": branch,
                     "away_share": away, "collapsed": bool(reasons), "reason": "; ".join(reasons)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# 2. Identical models and the status of each head
# --------------------------------------------------------------------------------------------------
def _predictions_by_run(rows: pd.DataFrame) -> pd.Series:
    return rows.set_index(["seed", "id"])["y_pred"]


def _same_prediction(predictions: pd.DataFrame, head_a: str, head_b: str) -> pd.Series:
    """(seed, id) → whether the two heads predict the same class, over the runs both have."""
    a = _predictions_by_run(predictions[predictions["head"] == head_a])
    b = _predictions_by_run(predictions[predictions["head"] == head_b])
    common = a.index.intersection(b.index)
    if len(common) == 0:
        raise ValueError(f"{head_a!r} and {head_b!r} share no (seed, image); were both trained with a common seed?")
    return pd.Series(a.loc[common].to_numpy() == b.loc[common].to_numpy(), index=common)


def prediction_agreement(predictions: pd.DataFrame, head_a: str, head_b: str) -> float:
    """Share of (seed, image) on which ``head_a`` and ``head_b`` predict the same class, over the seeds
    both were trained with (one target's predictions)."""
    return float(_same_prediction(predictions, head_a, head_b).mean())


def agreement_by_seed(predictions: pd.DataFrame, head_a: str, head_b: str) -> pd.Series:
    """Seed → share of that seed's images on which ``head_a`` and ``head_b`` predict the same class (one
    target's predictions; only the seeds both were trained with)."""
    return _same_prediction(predictions, head_a, head_b).groupby(level="seed").mean().rename("agreement")


def describe_clamp_agreement(agreement: pd.Series, clamp_fraction: pd.Series) -> str:
    """CosReLU vs CosFace in words, seed by seed: ``agreement`` (seed → share of identical predictions, from
    :func:`agreement_by_seed`) and ``clamp_fraction`` (seed → the largest share of CosReLU's training samples
    in the clamp branch over its epochs).

    Where the clamp never acts the two losses and their gradients coincide, so the two runs of one seed must
    be bit-identical; a seed whose predictions differ all the same is named as a reproducibility failure, not
    passed off as an effect of the clamp."""
    seeds = [seed for seed in agreement.index if seed in clamp_fraction.index]
    if not seeds:
        raise ValueError("no seed has both the agreement and CosReLU's clamp fraction")
    never_clamped = [seed for seed in seeds if clamp_fraction[seed] == 0]
    differ = [seed for seed in never_clamped if agreement[seed] < 1]
    clamped = [seed for seed in seeds if clamp_fraction[seed] > 0]
    parts = []
    if never_clamped and not differ:
        parts.append(f"In {len(never_clamped)} of {len(seeds)} seeds the clamp never acted in training and CosReLU "
                     f"and CosFace predict the same class for every validation image: the two losses, their "
                     f"gradients and hence the trained networks are identical.")
    for seed in differ:
        parts.append(f"**Seed {seed}: the clamp never acted in training, yet the predictions differ on "
                     f"{1 - agreement[seed]:.2%} of the validation images.** With identical losses the two runs "
                     f"should be bit-identical, so this is a reproducibility failure of that run (for example a "
                     f"checkpoint resumed under other code), not an effect of the clamp.")
    if differ and len(differ) < len(never_clamped):
        same = [seed for seed in never_clamped if seed not in differ]
        parts.append(f"Seed{'s' if len(same) > 1 else ''} {', '.join(map(str, same))}: never clamped and identical "
                     f"predictions, as expected.")
    for seed in clamped:
        parts.append(f"Seed {seed}: the clamp acted on up to {clamp_fraction[seed]:.2%} of the training samples of "
                     f"an epoch; the two heads predict the same class for {agreement[seed]:.2%} of the images.")
    return " ".join(parts)


def describe_skewed_predictions(predictions: pd.DataFrame, min_share: float = 0.01) -> str:
    """Markdown lines naming each (target, head) that predicts some of its classes for fewer than
    ``min_share`` of the images (seeds pooled), with its most predicted class's share beside that class's
    true share; empty when no head does. Such a head can be well above chance and not collapsed, and still
    serve some labels not at all."""
    _require(predictions, ["target", "head", "y_true", "y_pred"], "predictions")
    lines = []
    for (target, head), rows in predictions.groupby(["target", "head"], sort=False):
        predicted = rows["y_pred"].astype(str).value_counts(normalize=True)
        true = rows["y_true"].astype(str).value_counts(normalize=True)
        rare = [label for label in true.index if predicted.get(label, 0.0) < min_share]
        if rare:
            top = predicted.index[0]
            lines.append(f"* `{head}` ({target}): predicts {', '.join(rare)} for fewer than {min_share:.0%} of the "
                         f"images, and {top} for {predicted.iloc[0]:.0%} of them (true share {true.get(top, 0.0):.0%}).")
    return "\n".join(lines)


def identical_groups(predictions: pd.DataFrame) -> list[list[str]]:
    """Heads of one target grouped by identical predictions on every shared seed and image (and at least
    one shared seed), in training order; a head alone forms a group of one."""
    groups: list[list[str]] = []
    for head in _in_order(predictions["head"]):
        for group in groups:
            try:
                same = prediction_agreement(predictions, group[0], head) == 1.0
            except ValueError:  # no common seed: cannot be shown to be the same model
                same = False
            if same:
                group.append(head)
                break
        else:
            groups.append([head])
    return groups


def head_status(predictions: pd.DataFrame, health: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (target, head), in training order: ``label`` (``cosrelu = cosface`` for identical
    models, with ``(collapsed)`` or ``(collapsed in k of n seeds)`` appended), ``same_as`` (the first
    head of its identical group, which represents it), ``seeds``, ``collapsed_seeds``, ``collapsed``
    (in any seed: such a head is shown but not compared), ``reason``, mean ``accuracy``,
    ``fallback_share`` and ``away_share``. A group counts as collapsed in a seed where any of its heads did."""
    health = run_health(predictions) if health is None else health
    rows = []
    for target in _in_order(predictions["target"]):
        mine = predictions[predictions["target"] == target]
        runs = health[health["target"] == target]
        for group in identical_groups(mine):
            members = runs[runs["head"].isin(group)]
            seeds = _in_order(members["seed"])
            collapsed_seeds = _in_order(members.loc[members["collapsed"], "seed"])
            label = " = ".join(group)
            if collapsed_seeds:
                label += (" (collapsed)" if len(collapsed_seeds) == len(seeds)
                          else f" (collapsed in {len(collapsed_seeds)} of {len(seeds)} seeds)")
            reasons = _in_order(r for r in members.loc[members["collapsed"], "reason"])
            for head in group:
                own = runs[runs["head"] == head]
                rows.append({"target": target, "head": head, "label": label, "same_as": group[0],
                             "seeds": len(seeds), "collapsed_seeds": len(collapsed_seeds),
                             "collapsed": bool(collapsed_seeds), "reason": " | ".join(reasons),
                             "accuracy": float(own["accuracy"].mean()),
                             "fallback_share": float(own["fallback_share"].mean()),
                             "away_share": float(own["away_share"].mean())})
    return pd.DataFrame(rows)


def representatives(status: pd.DataFrame, target: str) -> dict[str, str]:
    """Head → label of the heads reported for ``target`` (one per identical group), in training order."""
    rows = status[(status["target"] == target) & (status["head"] == status["same_as"])]
    return dict(zip(rows["head"], rows["label"]))


def label_of(status: pd.DataFrame, target: str, head: str) -> str:
    """The label under which ``head`` is reported for ``target``."""
    row = status[(status["target"] == target) & (status["head"] == head)]
    if row.empty:
        raise ValueError(f"no head {head!r} for target {target!r}; heads: {sorted(set(status['head']))}")
    return str(row["label"].iloc[0])


def relabel(frame: pd.DataFrame, status: pd.DataFrame, target: str | None = None) -> pd.DataFrame:
    """Rows of ``frame`` (any table with a ``head`` column, and a ``target`` column unless ``target`` is
    given) restricted to the heads that represent their identical group, with ``head`` replaced by the
    head's label; the raw name moves to ``head_key``."""
    _require(frame, ["head"], "table")
    frame = frame.assign(target=target) if target is not None else frame
    _require(frame, ["target"], "table (or pass target=)")
    keys = status[status["head"] == status["same_as"]][["target", "head", "label"]]
    merged = frame.merge(keys, on=["target", "head"], how="inner", validate="many_to_one")
    merged = merged.rename(columns={"head": "head_key"}).rename(columns={"label": "head"})
    return merged.drop(columns="target") if target is not None else merged


# --------------------------------------------------------------------------------------------------
# 3. Paired differences over seeds and validation images, corrected verdicts
# --------------------------------------------------------------------------------------------------
def _gap(means: np.ndarray) -> np.ndarray:
    return means.max(axis=-1) - means.min(axis=-1)


def head_differences(correct_a, correct_b, *, groups, order=None, n_boot: int = 2000, confidence: float = 0.95,
                     seed: int = 0) -> pd.DataFrame:
    """Differences between two heads scored on the same images with the same seeds (head a − head b): overall
    accuracy, gap (max − min group accuracy) and each group's accuracy, with the interval of
    :func:`lib.verification.interval_over_seeds_and_samples` (seeds, and images resampled within their
    group, the same resample for both heads and every seed).

    ``correct_a``, ``correct_b``: arrays (seeds, images) of 0/1 correctness, rows paired by seed and columns by
    image; ``groups`` (keyword-only): the group of each image. One row per ``quantity`` and ``group``
    (empty for accuracy and gap) with ``head_value, reference_value`` (means over seeds), ``difference, std``
    (over seeds), ``seed_se, image_se, lower, upper, p_value`` and the seeds-only Student-t
    ``seeds_only_lower, seeds_only_upper, seeds_only_p_value``."""
    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"correct_a and correct_b must be (seeds, images) arrays of one shape, got {a.shape} and {b.shape}")

    def statistic(means):  # (..., G, 2) → overall, gap, each group: head a − head b
        difference = means[..., 0] - means[..., 1]
        overall = np.tensordot(means, shares, axes=([-2], [0]))
        return np.concatenate([(overall[..., 0] - overall[..., 1])[..., None],
                               (_gap(means[..., 0]) - _gap(means[..., 1]))[..., None], difference], axis=-1)

    names = [name for name in (order if order is not None else sorted(set(groups), key=str)) if name in set(groups)]
    sizes = pd.Series(np.asarray(groups)).value_counts().reindex(names).to_numpy(dtype=float)
    shares = sizes / sizes.sum()
    result = interval_over_seeds_and_samples(np.stack([a, b], axis=-1), groups=groups, order=names,
                                             statistic=statistic, n_boot=n_boot, confidence=confidence, seed=seed)
    per_seed_a = np.stack([np.mean(a, axis=1), _gap(_group_means(a, groups, names))] +
                          [a[:, np.asarray(groups) == name].mean(axis=1) for name in names], axis=1)
    per_seed_b = np.stack([np.mean(b, axis=1), _gap(_group_means(b, groups, names))] +
                          [b[:, np.asarray(groups) == name].mean(axis=1) for name in names], axis=1)
    n_seeds = a.shape[0]
    std = result.seed_estimates.std(axis=0, ddof=1) if n_seeds > 1 else np.full(len(result.estimate), math.nan)
    keys = [("accuracy", ""), ("gap", "")] + [("group accuracy", name) for name in names]
    return pd.DataFrame({
        "quantity": [k[0] for k in keys], "group": [k[1] for k in keys], "seeds": n_seeds,
        "head_value": per_seed_a.mean(axis=0), "reference_value": per_seed_b.mean(axis=0),
        "difference": result.estimate, "std": std, "seed_se": result.seed_se, "image_se": result.sample_se,
        # A difference of two accuracies (or gaps) lies in [−1, 1]; few seeds can reach past it.
        "lower": np.maximum(result.lower, -1.0), "upper": np.minimum(result.upper, 1.0), "p_value": result.p_value,
        "seeds_only_lower": np.maximum(result.seeds_lower, -1.0), "seeds_only_upper": np.minimum(result.seeds_upper, 1.0),
        "seeds_only_p_value": result.seeds_p_value,
    })


def _group_means(correct: np.ndarray, groups, names) -> np.ndarray:
    groups = np.asarray(groups)
    return np.stack([correct[:, groups == name].mean(axis=1) for name in names], axis=-1)


def interval_description(n_comparisons: int, *, confidence: float = 0.95, correction: str = "holm",
                         samples: str = "validation images, resampled within each race") -> str:
    """What the intervals and verdicts of a comparison table cover, in words (its ``interval`` column)."""
    name = {"holm": "Holm", "bh": "Benjamini–Hochberg"}.get(correction, correction)
    covered = f"{confidence:.0%} over seeds (Student-t) and {samples} (bootstrap), paired"
    if n_comparisons == 0:
        return f"{covered}; no verdict"
    return f"{covered}; verdict {name} over {n_comparisons} comparison{'s' if n_comparisons != 1 else ''}"


def _direction(quantity: str, difference: float) -> str:
    if quantity == "gap":
        return "wider" if difference > 0 else "narrower"
    return "higher" if difference > 0 else "lower"


def compare_heads(predictions: pd.DataFrame, status: pd.DataFrame, pairs, *, group: str = "race", order=None,
                  confidence: float = 0.95, correction: str = "holm", alpha: float = 0.05, n_boot: int = 2000,
                  seed: int = 0) -> pd.DataFrame:
    """Effect sizes and verdicts for each ``(head, reference)`` in ``pairs`` and each target.

    Heads are replaced by the head representing their identical group; a pair inside one group, or with
    a head not trained for a target, is skipped; duplicates are dropped. Per pair, three kinds of
    difference (head − reference), paired by seed and image (:func:`head_differences`): ``accuracy``
    (overall), ``gap`` (max − min of the ``group`` accuracies: for race classification a gap of per-class
    recall) and ``group accuracy`` (one row per group). Columns: ``target, quantity, group, head,
    reference`` (labels), ``head_key, reference_key, seeds, head_value, reference_value`` (means over
    seeds), ``difference, std`` (over seeds), ``seed_se, image_se, lower, upper, p_value`` (the interval over
    seeds and validation images and its test), ``seeds_only_lower, seeds_only_upper, seeds_only_p_value``
    (the Student-t interval over seeds alone, conditional on these images; shown for comparison, no
    verdict uses it), ``p_adjusted`` (``correction`` across the rows of one target and quantity that could
    be tested), ``interval`` (what the interval and the verdict cover, family size included),
    ``correction`` and ``verdict``: higher / lower (wider / narrower for a gap) when ``p_adjusted <
    alpha``, else ``not resolved``. Rows ``not compared: … collapsed``, ``no interval (one seed)`` and ``no
    verdict`` (fewer than :data:`MIN_SEEDS_FOR_VERDICT` seeds) are left out of the correction.
    """
    _require(predictions, ["target", "head", "seed", "id", "correct", group], "predictions")
    rows = []
    for target in _in_order(predictions["target"]):
        mine = predictions[predictions["target"] == target]
        st = status[status["target"] == target].set_index("head")
        compared = []
        for head, reference in pairs:
            if head not in st.index or reference not in st.index:
                continue
            a, b = st.loc[head, "same_as"], st.loc[reference, "same_as"]
            if a != b and (a, b) not in compared:
                compared.append((a, b))
        for a, b in compared:
            flagged = [key for key in (a, b) if st.loc[key, "collapsed"]]
            correct = {key: mine[mine["head"] == key].pivot(index="seed", columns="id", values="correct")
                       for key in (a, b)}
            seeds = correct[a].index.intersection(correct[b].index)
            if len(seeds) == 0:
                raise ValueError(f"{a!r} and {b!r} share no seed for target {target!r}")
            images = correct[a].columns.intersection(correct[b].columns)
            image_groups = mine.drop_duplicates("id").set_index("id").loc[images, group].to_numpy()
            groups_here = [g for g in order if g in set(image_groups)] if order is not None else None
            table = head_differences(correct[a].loc[seeds, images].to_numpy(float),
                                     correct[b].loc[seeds, images].to_numpy(float), groups=image_groups,
                                     order=groups_here, n_boot=n_boot, confidence=confidence, seed=seed)
            if flagged:
                verdict = "not compared: " + " and ".join(st.loc[key, "label"] for key in flagged)
                table["p_value"] = math.nan
            elif len(seeds) < 2:
                verdict = ONE_SEED
            elif len(seeds) < MIN_SEEDS_FOR_VERDICT:
                verdict = TOO_FEW_SEEDS
            else:
                verdict = ""  # decided after the correction
            if len(seeds) < 2:  # one seed: no interval, as the verdict says
                table[["lower", "upper", "p_value"]] = math.nan
            rows.append(table.assign(target=target, head=st.loc[a, "label"], reference=st.loc[b, "label"],
                                     head_key=a, reference_key=b, verdict=verdict))
    columns = ["target", "quantity", "group", "head", "reference", "head_key", "reference_key", "seeds",
               "head_value", "reference_value", "difference", "std", "seed_se", "image_se", "lower", "upper",
               "p_value", "seeds_only_lower", "seeds_only_upper", "seeds_only_p_value", "verdict"]
    table = pd.concat(rows, ignore_index=True)[columns] if rows else pd.DataFrame(columns=columns)
    table.insert(table.columns.get_loc("verdict"), "p_adjusted", math.nan)
    table.insert(table.columns.get_loc("verdict"), "interval", "")
    table.insert(table.columns.get_loc("verdict"), "correction", correction)
    testable = table["verdict"] == ""
    for (target, quantity), family in table.groupby(["target", "quantity"], sort=False):
        index = family.index[testable.loc[family.index]]
        if len(index):
            table.loc[index, "p_adjusted"] = adjust_p_values(table.loc[index, "p_value"].to_numpy(float), correction)
        table.loc[family.index, "interval"] = interval_description(len(index), confidence=confidence,
                                                                   correction=correction,
                                                                   samples=f"validation images, resampled within each {group}")
    resolved = testable & (table["p_adjusted"] < alpha)
    table.loc[resolved, "verdict"] = [_direction(q, d) for q, d in table.loc[resolved, ["quantity", "difference"]].to_numpy()]
    table.loc[testable & ~resolved, "verdict"] = NOT_RESOLVED
    return table


# --------------------------------------------------------------------------------------------------
# The conclusion, in words, from the table
# --------------------------------------------------------------------------------------------------
CORRECTION_NAMES = {"holm": "Holm's correction", "bh": "Benjamini–Hochberg's correction"}  # for the prose


def comparison_style(table: pd.DataFrame):
    """A comparison table for reading, in the pages' one number format (:func:`lib.tables.style`):
    accuracies and differences at three decimals, p-values at two significant digits (they span 1e-12 to 1),
    a missing value (a head not compared) as "—"."""
    return tables.style(table)


def _effect(row) -> str:
    text = f"`{row['head']}` − `{row['reference']}` {row['difference']:+.3f}"
    if np.isfinite(row["lower"]):
        text += f" ({row['lower']:+.3f} to {row['upper']:+.3f})"
    if row["verdict"] in (ONE_SEED, TOO_FEW_SEEDS):  # said once for the whole target
        return text
    return f"{text}: {row['verdict']}"


def _resolved_counts(tested: pd.DataFrame) -> str:
    """Per (head, reference) pair: how many of its groups' differences are resolved, by direction."""
    parts = []
    for (head, reference), rows in tested.groupby(["head", "reference"], sort=False):
        verdicts = rows.loc[rows["verdict"] != NOT_RESOLVED, "verdict"].value_counts()
        if len(verdicts):
            directions = ", ".join(f"{verdict} in {count}" for verdict, count in verdicts.items())
            parts.append(f"`{head}` − `{reference}` {int(verdicts.sum())} of {len(rows)} races ({directions})")
    return "; ".join(parts)


def summary_text(comparisons: pd.DataFrame, status: pd.DataFrame, alpha: float = 0.05) -> str:
    """Markdown paragraphs stating, per target, every head-vs-reference difference with its interval and
    corrected verdict, which heads collapsed and which are one model. Every number comes from the tables."""
    paragraphs = []
    for target in _in_order(status["target"]):
        rows = comparisons[comparisons["target"] == target]
        st = status[status["target"] == target]
        title = TARGET_TITLES.get(target, f"{target.capitalize()} classification")
        lines = []
        if len(rows):
            seeds = int(rows["seeds"].max())
            correction = {"holm": "Holm's", "bh": "Benjamini–Hochberg's"}.get(rows["correction"].iloc[0],
                                                                               rows["correction"].iloc[0])
            lines.append(
                f"**{title}.** Differences between heads (head − reference), mean over {seeds} "
                f"seed{'s' if seeds != 1 else ''} on the same validation images, with its unadjusted interval "
                f"({rows['interval'].iloc[0].split(';')[0]}), which covers both the training seeds and "
                f"the sampling of the validation images; the verdict is the matching test at the {alpha:.0%} "
                f"level after {correction} correction across the comparisons of each kind, so an interval that "
                f"barely excludes 0 can still be *not resolved*."
                + (f" With {seeds} seed{'s' if seeds != 1 else ''} no verdict is drawn (it needs "
                   f"{MIN_SEEDS_FOR_VERDICT} or more)." if seeds < MIN_SEEDS_FOR_VERDICT else ""))
            overall = rows[rows["quantity"] == "accuracy"]
            lines.append("*Overall accuracy:* " + "; ".join(_effect(r) for r in overall.to_dict("records")) + ".")
            what = "per-class recall" if target == "race" else f"{target} accuracy"
            gaps = rows[rows["quantity"] == "gap"]
            lines.append(f"*Race gap* (max − min {what} across races): "
                         + "; ".join(_effect(r) for r in gaps.to_dict("records")) + ".")
            per_group = rows[rows["quantity"] == "group accuracy"]
            tested = per_group[per_group["p_adjusted"].notna()]
            resolved = tested[tested["verdict"] != NOT_RESOLVED]
            if len(tested) == 0:
                lines.append(f"*Per race:* no difference could be tested (a verdict needs "
                             f"{MIN_SEEDS_FOR_VERDICT} or more seeds and a head that did not collapse).")
            elif len(resolved) == 0:
                lines.append(f"*Per race:* none of the {len(tested)} differences is resolved.")
            elif len(resolved) <= MAX_LISTED_GROUP_EFFECTS:
                lines.append(f"*Per race:* {len(resolved)} of {len(tested)} differences resolved: "
                             + "; ".join(f"{r['group']}: {_effect(r)}" for r in resolved.to_dict("records")) + ".")
            else:  # too many to read as a sentence: counted per pair, the values are in the table
                lines.append(f"*Per race:* {len(resolved)} of {len(tested)} differences resolved (each with its "
                             f"interval in the table): " + _resolved_counts(tested) + ".")
        else:
            lines.append(f"**{title}.** No pair of heads to compare.")
        notes = []
        for row in st[st["head"] == st["same_as"]].to_dict("records"):
            if row["collapsed"]:
                notes.append(f"`{row['label']}` — {row['reason']}; shown, not compared")
            if " = " in row["label"].split(" (")[0]:
                notes.append(f"`{row['label'].split(' (')[0]}` made identical predictions on every seed and image: "
                             "one model, counted once")
        if notes:
            lines.append("*Runs:* " + "; ".join(notes) + ".")
        paragraphs.append(" ".join(lines))
    return "\n\n".join(paragraphs)
