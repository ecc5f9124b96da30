"""lib.head_comparison: collapsed runs, identical models, paired differences over seeds and corrected
verdicts — against statsmodels, scipy and planted answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.weightstats import DescrStatsW

from lib import fairness_analysis as analysis, head_comparison as hc, paths
from lib.tables import write_csv

GROUPS = ("A", "B", "C")
PAIRS = [("cosrelu", "cosine_softmax"), ("cosface", "cosine_softmax"), ("arcface", "cosine_softmax")]


def make_predictions(accuracy: dict, seeds=(0, 1, 2), n=900, target="gender", seed=0, branch=None) -> pd.DataFrame:
    """Predictions of a two-class target; ``accuracy[head]`` is one number or a dict group → accuracy.
    ``cosface`` copies ``cosrelu``'s predictions exactly (the clamp never acting)."""
    rng = np.random.default_rng(seed)
    group = np.array(GROUPS)[np.arange(n) % 3]
    y_true = np.where(rng.random(n) < 0.5, "Male", "Female")
    frames = {}
    for head, level in accuracy.items():
        for run_seed in seeds:
            if head == "cosface":
                frame = frames["cosrelu", run_seed].copy()
            else:
                p = np.array([level[g] for g in group]) if isinstance(level, dict) else np.full(n, level)
                right = rng.random(n) < p
                y_pred = np.where(right, y_true, np.where(y_true == "Male", "Female", "Male"))
                frame = pd.DataFrame({"id": [f"val/{i}.jpg" for i in range(n)], "y_true": y_true, "y_pred": y_pred,
                                      "race": group})
            in_branch = np.full(n, np.nan)
            if branch and head in branch:
                in_branch = (rng.random(n) < branch[head]).astype(float)
            # Embeddings 60° from their own class weight, or 120° for those in the fallback branch.
            cosine = np.where(in_branch == 1, -0.5, 0.5)
            frames[head, run_seed] = frame.assign(target=target, head=head, seed=run_seed, in_fallback_branch=in_branch,
                                                  target_cosine=cosine)
    predictions = pd.concat(frames.values(), ignore_index=True)
    predictions["correct"] = predictions["y_true"] == predictions["y_pred"]
    return predictions


def test_run_health_flags_branch_and_chance_collapse():
    predictions = make_predictions({"cosine_softmax": 0.8, "cosrelu": 0.8, "arcface": 0.5},
                                   branch={"cosrelu": 0.6}, seeds=(0,))
    health = hc.run_health(predictions).set_index("head")
    assert not health.loc["cosine_softmax", "collapsed"] and health.loc["cosine_softmax", "reason"] == ""
    assert health.loc["cosrelu", "collapsed"] and "fallback branch" in health.loc["cosrelu", "reason"]
    assert health.loc["arcface", "collapsed"] and "majority class" in health.loc["arcface", "reason"]
    rows = predictions[predictions["head"] == "arcface"]
    expected_lower = proportion_confint(rows["correct"].sum(), len(rows), method="wilson")[0]
    assert health.loc["arcface", "accuracy_lower"] == pytest.approx(expected_lower)
    assert health.loc["arcface", "majority_share"] == pytest.approx(rows["y_true"].value_counts(normalize=True).max())
    assert math.isnan(health.loc["cosine_softmax", "fallback_share"])
    assert health.loc["cosine_softmax", "away_share"] == 0


def test_embeddings_pointing_away_from_their_class_are_a_collapse():
    predictions = make_predictions({"cosine_softmax": 0.8, "normsoftmax": 0.8}, seeds=(0,))
    away = predictions["head"] == "normsoftmax"
    predictions.loc[away, "target_cosine"] = np.where(np.arange(away.sum()) % 5 == 0, 0.2, -0.1)  # 80 % beyond 90°
    health = hc.run_health(predictions).set_index("head")
    assert health.loc["normsoftmax", "away_share"] == pytest.approx(0.8)
    assert health.loc["normsoftmax", "collapsed"]
    assert health.loc["normsoftmax", "reason"] == "80% of validation embeddings more than 90° from their own class weight"
    assert not health.loc["cosine_softmax", "collapsed"]


def test_identical_models_are_one_label_and_relabel_keeps_one():
    predictions = make_predictions({"cosine_softmax": 0.7, "cosrelu": 0.8, "cosface": None, "arcface": 0.75})
    assert hc.identical_groups(predictions) == [["cosine_softmax"], ["cosrelu", "cosface"], ["arcface"]]
    assert hc.prediction_agreement(predictions, "cosrelu", "cosface") == 1.0
    status = hc.head_status(predictions).set_index("head")
    assert status.loc["cosface", "label"] == status.loc["cosrelu", "label"] == "cosrelu = cosface"
    assert status.loc["cosface", "same_as"] == "cosrelu" and not status["collapsed"].any()
    shown = hc.relabel(predictions, status.reset_index())
    assert list(dict.fromkeys(shown["head"])) == ["cosine_softmax", "cosrelu = cosface", "arcface"]
    assert len(shown) == 3 * len(predictions) // 4 and set(shown["head_key"]) == {"cosine_softmax", "cosrelu", "arcface"}
    # One differing prediction in one seed: no longer the same model.
    changed = predictions.copy()
    row = changed.index[(changed["head"] == "cosface") & (changed["seed"] == 2)][0]
    changed.loc[row, "y_pred"] = "Male" if changed.loc[row, "y_pred"] == "Female" else "Female"
    assert ["cosrelu"] in hc.identical_groups(changed) and ["cosface"] in hc.identical_groups(changed)


def test_agreement_by_seed_names_a_seed_that_differs_without_the_clamp():
    predictions = make_predictions({"cosrelu": 0.8, "cosface": None})
    seed2 = predictions.index[(predictions["head"] == "cosface") & (predictions["seed"] == 2)]
    n_images = len(seed2)
    flipped = seed2[:5]
    predictions.loc[flipped, "y_pred"] = np.where(predictions.loc[flipped, "y_pred"] == "Female", "Male", "Female")
    agreement = hc.agreement_by_seed(predictions, "cosrelu", "cosface")
    assert agreement.to_dict() == {0: 1.0, 1: 1.0, 2: pytest.approx(1 - 5 / n_images)}
    assert hc.prediction_agreement(predictions, "cosrelu", "cosface") == pytest.approx(1 - 5 / (3 * n_images))

    never = pd.Series({0: 0.0, 1: 0.0, 2: 0.0})
    text = hc.describe_clamp_agreement(agreement, never)
    assert "**Seed 2: the clamp never acted in training, yet the predictions differ on" in text
    assert f"{5 / n_images:.2%}" in text and "reproducibility failure" in text
    assert "Seeds 0, 1: never clamped and identical predictions" in text
    # All identical: one sentence, no failure named.
    same = hc.agreement_by_seed(make_predictions({"cosrelu": 0.8, "cosface": None}), "cosrelu", "cosface")
    text = hc.describe_clamp_agreement(same, never)
    assert text.startswith("In 3 of 3 seeds the clamp never acted") and "failure" not in text
    # A seed where the clamp acted may differ: reported, not called a failure.
    text = hc.describe_clamp_agreement(agreement, pd.Series({0: 0.0, 1: 0.0, 2: 0.01}))
    assert "failure" not in text and "Seed 2: the clamp acted on up to 1.00% of the training samples" in text
    with pytest.raises(ValueError, match="no seed"):
        hc.describe_clamp_agreement(agreement, pd.Series({7: 0.0}))


def test_collapsed_in_some_seeds_is_labelled_with_the_count():
    predictions = make_predictions({"cosine_softmax": 0.8, "arcface": 0.8}, branch={"arcface": 0.0})
    arcface_seed1 = (predictions["head"] == "arcface") & (predictions["seed"] == 1)
    predictions.loc[arcface_seed1, "in_fallback_branch"] = 1.0
    status = hc.head_status(predictions).set_index("head")
    assert status.loc["arcface", "label"] == "arcface (collapsed in 1 of 3 seeds)"
    assert status.loc["arcface", "collapsed"] and status.loc["arcface", "collapsed_seeds"] == 1


def test_intervals_include_the_sampling_of_the_validation_images():
    # Every seed makes the same predictions (no head-initialisation noise): cosrelu gets 14 images right that
    # cosine_softmax gets wrong, and 10 wrong that it gets right, of 900. A t-interval over seeds has zero
    # width and "resolves" +4/900; which images were drawn decides those 24, and over seeds and images the
    # difference is not resolved, with the half-width of a paired bootstrap of the images, 1.96·√(24/900 −
    # (4/900)²)/√900.
    base = make_predictions({"cosine_softmax": 0.8}, seeds=(0,), n=900)
    wrong = np.flatnonzero(~base["correct"].to_numpy())[:14]
    right = np.flatnonzero(base["correct"].to_numpy())[:10]
    other = {"Male": "Female", "Female": "Male"}
    better = base.copy()
    better.loc[wrong, "y_pred"] = better.loc[wrong, "y_true"]
    better.loc[right, "y_pred"] = better.loc[right, "y_true"].map(other)
    better["correct"] = better["y_true"] == better["y_pred"]
    runs = [frame.assign(head=head, seed=run_seed) for run_seed in (0, 1, 2)
            for head, frame in (("cosine_softmax", base), ("cosrelu", better))]
    predictions = pd.concat(runs, ignore_index=True)
    table = hc.compare_heads(predictions, hc.head_status(predictions), PAIRS, order=GROUPS)
    row = table[table["quantity"] == "accuracy"].iloc[0]
    assert row["difference"] == pytest.approx(4 / 900)
    assert row["seeds_only_lower"] == row["seeds_only_upper"] == pytest.approx(4 / 900)  # what the old verdict used
    assert row["verdict"] == "not resolved" and row["lower"] < 0 < row["upper"]
    half_width = 1.96 * math.sqrt(24 / 900 - (4 / 900) ** 2) / math.sqrt(900)
    assert (row["upper"] - row["lower"]) / 2 == pytest.approx(half_width, rel=0.1)


def test_interval_column_names_what_the_intervals_cover():
    predictions = make_predictions({"cosine_softmax": 0.7, "cosrelu": 0.8, "arcface": 0.7})
    table = hc.compare_heads(predictions, hc.head_status(predictions), PAIRS, order=GROUPS)
    covered = "95% over seeds (Student-t) and validation images, resampled within each race (bootstrap), paired"
    by_quantity = table.groupby("quantity")["interval"].unique()
    assert list(by_quantity["accuracy"]) == [f"{covered}; verdict Holm over 2 comparisons"]
    assert list(by_quantity["group accuracy"]) == [f"{covered}; verdict Holm over 6 comparisons"]


def test_compare_heads_effect_sizes_and_holm_family():
    # cosrelu is better on group C only; arcface equal to the reference; cosface = cosrelu.
    predictions = make_predictions({"cosine_softmax": {"A": 0.8, "B": 0.8, "C": 0.6},
                                    "cosrelu": {"A": 0.8, "B": 0.8, "C": 0.8}, "cosface": None,
                                    "arcface": {"A": 0.8, "B": 0.8, "C": 0.6}}, n=3000, seeds=(0, 1, 2, 3))
    status = hc.head_status(predictions)
    table = hc.compare_heads(predictions, status, PAIRS, order=GROUPS)
    pairs = table[["head", "reference"]].drop_duplicates().to_numpy().tolist()
    assert pairs == [["cosrelu = cosface", "cosine_softmax"], ["arcface", "cosine_softmax"]]  # cosface merged

    # Every number is recomputed here from the predictions, seed by seed.
    def per_seed(head, group=None):
        rows = predictions[predictions["head"] == head]
        rows = rows if group is None else rows[rows["race"] == group]
        return rows.groupby("seed")["correct"].mean()

    gap = {h: predictions[predictions["head"] == h].groupby(["seed", "race"])["correct"].mean().unstack()
           for h in ("cosrelu", "cosine_softmax")}
    d_gap = (gap["cosrelu"].max(axis=1) - gap["cosrelu"].min(axis=1)) - (gap["cosine_softmax"].max(axis=1)
                                                                        - gap["cosine_softmax"].min(axis=1))
    row = table[(table["head_key"] == "cosrelu") & (table["quantity"] == "gap")].iloc[0]
    assert row["difference"] == pytest.approx(d_gap.mean())
    assert row["seeds_only_p_value"] == pytest.approx(stats.ttest_1samp(d_gap, 0).pvalue)  # kept for comparison
    lower, upper = DescrStatsW(d_gap.to_numpy()).tconfint_mean(alpha=0.05)
    assert (row["seeds_only_lower"], row["seeds_only_upper"]) == (pytest.approx(lower), pytest.approx(upper))
    assert row["std"] == pytest.approx(np.std(d_gap, ddof=1)) and row["seeds"] == 4
    assert row["verdict"] == "narrower" and row["upper"] < 0
    d_c = per_seed("cosrelu", "C") - per_seed("cosine_softmax", "C")
    row_c = table[(table["head_key"] == "cosrelu") & (table["group"] == "C")].iloc[0]
    assert row_c["difference"] == pytest.approx(d_c.mean()) and row_c["verdict"] == "higher"
    assert row_c["head_value"] == pytest.approx(per_seed("cosrelu", "C").mean())

    for quantity, family in table.groupby("quantity"):
        expected = multipletests(family["p_value"], method="holm")[1]
        np.testing.assert_allclose(family["p_adjusted"], expected)
    assert len(table[table["quantity"] == "group accuracy"]) == 2 * len(GROUPS)
    arcface = table[(table["head_key"] == "arcface") & (table["quantity"] == "accuracy")].iloc[0]
    assert arcface["verdict"] == "not resolved" and arcface["lower"] < 0 < arcface["upper"]

    bh = hc.compare_heads(predictions, status, PAIRS, order=GROUPS, correction="bh")
    for quantity, family in bh.groupby("quantity"):
        np.testing.assert_allclose(family["p_adjusted"], multipletests(family["p_value"], method="fdr_bh")[1])
    assert set(bh["correction"]) == {"bh"} and bh["interval"].str.endswith("Benjamini–Hochberg over 2 comparisons").any()


def test_collapsed_heads_and_one_seed_get_no_verdict():
    predictions = make_predictions({"cosine_softmax": 0.8, "cosrelu": 0.85, "arcface": 0.8},
                                   branch={"arcface": 0.9})
    status = hc.head_status(predictions)
    table = hc.compare_heads(predictions, status, PAIRS, order=GROUPS)
    collapsed = table[table["head_key"] == "arcface"]
    assert (collapsed["verdict"] == "not compared: arcface (collapsed)").all()
    assert collapsed["p_adjusted"].isna().all() and collapsed["difference"].notna().all()
    # The collapsed head is not part of the correction: the family is cosrelu's alone.
    alive = table[(table["head_key"] == "cosrelu") & (table["quantity"] == "accuracy")].iloc[0]
    assert alive["p_adjusted"] == pytest.approx(alive["p_value"])

    one_seed = make_predictions({"cosine_softmax": 0.8, "cosrelu": 0.85}, seeds=(0,))
    table = hc.compare_heads(one_seed, hc.head_status(one_seed), PAIRS, order=GROUPS)
    assert (table["verdict"] == hc.ONE_SEED).all() and table["p_adjusted"].isna().all()
    # Two seeds: an interval, but no verdict (one degree of freedom), even for a planted large difference.
    two_seeds = make_predictions({"cosine_softmax": 0.6, "cosrelu": 0.9}, seeds=(0, 1))
    table = hc.compare_heads(two_seeds, hc.head_status(two_seeds), PAIRS, order=GROUPS)
    assert (table["verdict"] == hc.TOO_FEW_SEEDS).all() and table["p_adjusted"].isna().all()
    assert table["lower"].notna().all() and table["p_value"].notna().all()
    assert "no difference could be tested" in hc.summary_text(table, hc.head_status(two_seeds))


def test_summary_text_is_the_same_from_the_saved_tables(tmp_path, monkeypatch):
    predictions = pd.concat([
        make_predictions({"cosine_softmax": 0.7, "cosrelu": 0.8, "cosface": None, "arcface": 0.7},
                         branch={"arcface": 0.9}),
        make_predictions({"cosine_softmax": 0.5, "cosrelu": 0.55, "cosface": None, "arcface": 0.5},
                         target="race", seed=1),
    ], ignore_index=True)
    status = hc.head_status(predictions)
    table = hc.compare_heads(predictions, status, PAIRS, order=GROUPS)
    text = hc.summary_text(table, status)
    assert "**Gender classification.**" in text and "**Race classification (per-class recall).**" in text
    row = table[(table["target"] == "gender") & (table["quantity"] == "accuracy")
                & (table["head_key"] == "cosrelu")].iloc[0]
    assert f"{row['difference']:+.3f} ({row['lower']:+.3f} to {row['upper']:+.3f}): {row['verdict']}" in text
    assert "`arcface (collapsed)` — " in text and "`cosrelu = cosface` made identical predictions" in text

    monkeypatch.setattr(paths, "RESULTS", tmp_path)
    write_csv(status, tmp_path / "p" / hc.HEADS_FILE)
    write_csv(table, tmp_path / "p" / hc.COMPARISONS_FILE)
    saved = hc.summary_text(analysis.read_comparisons("p"), analysis.read_head_status("p"))
    assert saved == text


def test_summary_text_counts_many_resolved_group_differences_per_pair():
    # Three heads far apart in every group: all 3 groups x 2 pairs = 6 resolved differences are listed one by
    # one; a seventh group-level result (a third pair) switches the sentence to counts per pair.
    levels = {"cosine_softmax": 0.55, "cosrelu": 0.9, "cosface": None, "arcface": 0.75}
    predictions = make_predictions(levels, seeds=(0, 1, 2, 3, 4), n=3000)
    status = hc.head_status(predictions)
    listed = hc.compare_heads(predictions, status, [("cosrelu", "cosine_softmax"), ("arcface", "cosine_softmax")],
                              order=GROUPS)
    groups_listed = listed[listed["quantity"] == "group accuracy"]
    assert (groups_listed["verdict"] == "higher").all() and len(groups_listed) == 6
    text = hc.summary_text(listed, status)
    assert "6 of 6 differences resolved: A: `cosrelu = cosface` − `cosine_softmax`" in text

    pairs = [("cosrelu", "cosine_softmax"), ("arcface", "cosine_softmax"), ("cosrelu", "arcface")]
    counted = hc.compare_heads(predictions, status, pairs, order=GROUPS)
    group_rows = counted[counted["quantity"] == "group accuracy"]
    assert (group_rows["verdict"] == "higher").all() and len(group_rows) == 9
    text = hc.summary_text(counted, status)
    assert ("9 of 9 differences resolved (each with its interval in the table): `cosrelu = cosface` − "
            "`cosine_softmax` 3 of 3 races (higher in 3); `arcface` − `cosine_softmax` 3 of 3 races (higher in 3); "
            "`cosrelu = cosface` − `arcface` 3 of 3 races (higher in 3).") in text
    assert "A: `cosrelu = cosface`" not in text


def test_describe_skewed_predictions_names_heads_that_never_predict_a_class():
    y_true = np.array(["A"] * 50 + ["B"] * 30 + ["C"] * 20)
    skewed = np.where(np.arange(100) < 90, "A", "B")  # never C; A for 90 % of the images
    balanced = y_true.copy()
    frame = pd.concat([pd.DataFrame({"target": "race", "head": head, "y_true": y_true, "y_pred": y_pred})
                       for head, y_pred in (("cosine_softmax", skewed), ("normsoftmax", balanced))])
    text = hc.describe_skewed_predictions(frame)
    assert text == ("* `cosine_softmax` (race): predicts C for fewer than 1% of the images, and A for 90% of them "
                    "(true share 50%).")
    assert hc.describe_skewed_predictions(frame[frame["head"] == "normsoftmax"]) == ""


def test_comparison_style_rounds_values_and_keeps_small_p_values_readable():
    table = pd.DataFrame({"difference": [0.20834, -0.0271], "p_value": [1.99e-09, np.nan],
                          "p_adjusted": [0.04567, np.nan], "verdict": ["higher", "not compared: arcface (collapsed)"]})
    html = hc.comparison_style(table).to_html()
    for shown in (">0.208<", ">-0.027<", ">2.0e-09<", ">0.046<", ">higher<", ">—<"):
        assert shown in html
    assert "nan" not in html.lower() and "1.990e-09" not in html
