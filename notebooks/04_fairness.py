# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Fairness: do angular margins change how well each group is served?
#
# This notebook trains nothing. It reads what notebook 03 saved — the per-image validation predictions of
# every target (gender and race classification on FairFace), head and seed, which heads collapsed or are
# one model, and the head-vs-head comparisons with their verdicts — and the per-pair scores notebook 02
# saved (LFW View 1 DevTest verification). It asks how unequal the errors are across groups, whether a
# margin head changes that, and how sure we can be. Definitions follow RFW (Wang et al., ICCV 2019), NIST FRVT Part 3
# (NISTIR 8280, 2019) and fairlearn (see References at the end):
#
# * **The question about people** is gender classification, accuracy per race: does the classifier work
#   equally well for the people of every group (the FairFace paper's protocol, Kärkkäinen & Joo, WACV
#   2021)? Race classification's per-race accuracy is the recall of each race label; it shows which labels
#   get confused, not how well a group is served, and is analysed second.
# * **Effect sizes come first**: differences between a head and its reference — overall accuracy, the race
#   gap (max − min accuracy across races) and each race's accuracy — as the mean over training seeds
#   with a Student-t 95 % interval over seeds (paired by seed; the seeds share the validation images, so
#   the interval is conditional on them). A verdict comes only from the matching t-test, Holm-corrected
#   across the comparisons of one kind, and only with three or more seeds. These numbers are notebook 03's
#   saved table, so the two notebooks state the same conclusion.
# * Per group: accuracy with a 95 % interval — over training seeds (Student-t) with three or more seeds,
#   else a Wilson interval over images with the seeds pooled (labelled so, since it ignores seed variation).
#   Across groups: the gap, the ratio (min / max), the standard deviation of the group accuracies (RFW's
#   STD) and the skewed error ratio SER = max error / min error, each the mean over seeds with a t-interval.
# * Verification: one global threshold for everyone, then false-match and false-non-match rates per group.
#
# A caution: a max − min gap is biased upward (noise alone spreads the groups apart), so its size alone is
# no proof of a disparity. The permutation test answers "is there a gap at all?" for one trained model.

# %% tags=["parameters"]
profile = "default"  # whose saved results to read: data/results/<profile>/
synthetic_preset = "default"  # size of the embedded synthetic dataset (smoke | default)
lfw_source = "synthetic"  # synthetic | shared | sklearn | a folder path (for the gender lists and identities)
lfw_gender_folder = None  # folder with male_names.txt and female_names.txt (None: the gender/ folder beside LFW, else data/lfw_gender/)
verification_threshold = "10fold"  # "10fold" (notebook 02's threshold) or a false-match rate, e.g. 0.01
n_boot = 2000  # bootstrap resamples (verification section)
n_permutations = 2000  # permutations for the "is there a gap at all" test
seed = 0  # seeds the bootstrap and the permutations

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from lib import download, fairness_analysis as analysis, fairness_plots, head_comparison, parameters, paths, plots
from lib import synthetic
from lib.errors import DataError
from lib.labels import GENDERS

plots.setup_style()
parameters.validate("04_fairness", globals())  # every parameter checked before any work
pd.set_option("display.precision", 3)
pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 20)
if lfw_source == "synthetic":
    synthetic.ensure_synthetic(preset=synthetic_preset)
if lfw_source == "sklearn":
    download.ensure_sklearn_lfw()  # scikit-learn's downloader, once (FACE_STORAGE keeps it across sessions)
lfw_root = paths.dataset_root(lfw_source, "lfw", synthetic_preset)

raw_predictions = analysis.read_predictions(profile)
status = analysis.read_head_status(profile)
comparisons = analysis.read_comparisons(profile)
predictions = head_comparison.relabel(raw_predictions, status)  # one row set per model, heads by label
targets = list(dict.fromkeys(predictions["target"]))
seeds = sorted(int(s) for s in predictions["seed"].unique())
races = analysis.group_order(predictions["race"])
by_target = {target: predictions[predictions["target"] == target] for target in targets}
shown = {target: list(head_comparison.representatives(status, target).values()) for target in targets}
interval = analysis.interval_label(predictions)
images = predictions.groupby(["target", "head", "seed"]).size().iloc[0]
display(Markdown(f"**Profile** `{profile}` · targets {', '.join(f'`{t}`' for t in targets)} · {images:,} validation "
                 f"images · seeds {seeds} · per-group intervals: {interval}"))

# %% [markdown]
# ## Which heads are compared
# From notebook 03: a **collapsed** head (most validation samples in its fallback or clamp branch, most
# embeddings more than 90° from their own class weight, or accuracy not above the largest class's share) is
# shown, flagged, and not compared; heads with identical predictions on every image and seed are one model,
# reported once under a joint label.

# %%
status.set_index(["target", "head"])[["label", "same_as", "seeds", "collapsed_seeds", "reason"]]

# %% [markdown]
# ## Effect sizes: each head against its reference
# Overall accuracy and race gap, head − reference, in percentage points; dots are means over seeds,
# whiskers the 95 % t-interval over seeds. Filled dots: a difference resolved after the correction; hollow:
# not resolved; grey: a collapsed head (not compared) or too few seeds for a verdict. For race
# classification the gap is one of per-class recall (label confusion).

# %%
QUANTITY_NAMES = {"accuracy": "overall accuracy", "gap": "race gap"}
main = comparisons[comparisons["quantity"].isin(QUANTITY_NAMES)].assign(
    quantity=lambda frame: frame["quantity"].map(QUANTITY_NAMES))
if len(main):
    panels = [t for t in targets if (main["target"] == t).any()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, sum(1.8 + 0.4 * (main["target"] == t).sum() for t in panels)),
                             squeeze=False, layout="constrained")
    for ax, target in zip(axes[:, 0], panels):
        fairness_plots.difference_forest(main[main["target"] == target], prefix="quantity", ax=ax,
                                         title=f"{target.capitalize()} classification: head − reference")
    plots.save_figure(fig, "04_gap_differences", profile)
    plt.show()
else:
    display(Markdown("No pair of heads to compare (see `head_pairs` in notebook 03)."))
comparisons[comparisons["quantity"] != "group accuracy"].set_index(["target", "quantity", "head", "reference"])[
    ["seeds", "head_value", "reference_value", "difference", "lower", "upper", "p_value", "p_adjusted", "verdict"]]

# %% [markdown]
# ## Gender classification: how well is each group served?
# ### Per race: gender accuracy of each head against its reference
# The same differences for each race's images (head − reference, percentage points, 95 % t-interval over
# seeds; verdicts Holm-corrected across all races and pairs of the target).

# %%
if "gender" in targets:
    per_race = comparisons[(comparisons["target"] == "gender") & (comparisons["quantity"] == "group accuracy")]
    if len(per_race):
        fig, ax = plt.subplots(figsize=(12, 1.8 + 0.36 * len(per_race)), layout="constrained")
        fairness_plots.difference_forest(per_race, prefix="group", ax=ax,
                                         title="Gender accuracy per race: head − reference")
        plots.save_figure(fig, "04_gender_differences_by_race", profile)
        plt.show()
        display(per_race.set_index(["group", "head", "reference"])[
            ["head_value", "reference_value", "difference", "lower", "upper", "p_adjusted", "verdict"]])
else:
    display(Markdown("Notebook 03 trained no gender classifier (`targets` without `gender`)."))

# %% [markdown]
# ### The accuracies behind them
# Each head's gender accuracy on the images of each race, with the dashed line at the head's overall
# accuracy and the dotted line at chance (1/2).

# %%
if "gender" in targets:
    gender_by_race = analysis.per_group_accuracy(by_target["gender"], "race", order=races)
    fig, ax = plt.subplots(figsize=(8.5, 6.5), layout="constrained")
    fairness_plots.forest_plot(gender_by_race, order=races, by_order=shown["gender"], ax=ax, interval_label=interval,
                               chance=1 / by_target["gender"]["y_true"].nunique(),
                               title="Gender classification: accuracy per race group, by head",
                               xlabel=f"gender accuracy (dot: estimate; whiskers: {interval})")
    plots.save_figure(fig, "04_gender_by_race", profile)
    plt.show()
    display(gender_by_race.pivot(index="group", columns="head", values="accuracy").loc[races, shown["gender"]])
    display(fairness_plots.style_disparity_table(analysis.disparities(by_target["gender"], "race", order=races),
                                                 caption="Gender accuracy across races: disparity of each head "
                                                         "(mean over seeds, 95 % t-interval over seeds)"))

# %% [markdown]
# In the synthetic profiles the groups have a planted difficulty (`Group A` easiest … `Group G` hardest:
# more photo-to-photo variation of a person and a less distinctive group look). For race classification it
# is a check: if the analysis works, recall falls with difficulty (Spearman's ρ between planted difficulty
# and measured recall near −1). For gender classification it is an observation: the difficulty was planted
# for telling groups and people apart, and nothing says it must make gender harder to read.

# %%
planted = set(races) <= set(synthetic.GROUP_DIFFICULTY)
per_group = {target: analysis.per_group_accuracy(by_target[target], "race", order=races) for target in targets}
for target in targets:
    if planted:
        display(Markdown(f"**{target}**"), analysis.planted_order_check(per_group[target], synthetic.GROUP_DIFFICULTY))
if not planted:
    display(Markdown("Real FairFace: no planted ordering to check."))

# %% [markdown]
# ### Is there a race gap at all?
# For each trained model (head and seed) on its own: the observed gap and the p-value of a permutation test
# that shuffles the race labels (group sizes kept). It is a statement about one trained network on these
# images, not about a head across seeds; the verdicts between heads are the ones above.

# %%
gap_tests = {target: analysis.gap_permutation_tests(by_target[target], "race", n_permutations=n_permutations, seed=seed)
             for target in targets}
for target, tests in gap_tests.items():
    display(Markdown(f"**{target}**"), tests.pivot(index="head", columns="seed", values=["gap", "p_value"]).loc[shown[target]])

# %% [markdown]
# ## Race classification: per-class recall
# The recall of each race label per head (notebook 03 draws it, `03_per_race_final`, beside the confusion
# matrices that explain it) and its disparity across races. A lower recall for a race means its label is
# confused with others more often; it is not a measure of how well people of that group are served.

# %%
if "race" in targets:
    display(per_group["race"].pivot(index="group", columns="head", values="accuracy").loc[races, shown["race"]])
    display(fairness_plots.style_disparity_table(analysis.disparities(by_target["race"], "race", order=races),
                                                 caption="Race classification: disparity of per-class recall "
                                                         "(mean over seeds, 95 % t-interval over seeds)"))
    recall_differences = comparisons[(comparisons["target"] == "race") & (comparisons["quantity"] == "group accuracy")]
    display(recall_differences.set_index(["group", "head", "reference"])[
        ["difference", "lower", "upper", "p_adjusted", "verdict"]])

# %% [markdown]
# ## FairFace: the balanced `service_test` subset vs all validation images
# FairFace marks a race- and gender-balanced subset (`service_test`). Overall accuracy weights groups by their
# share; on the balanced subset every group counts about equally.

# %%
for target in targets:
    subsets = analysis.subset_accuracy(by_target[target])
    display(Markdown(f"**{target}**"), subsets.pivot(index="head", columns="group", values="accuracy").loc[shown[target]])

# %% [markdown]
# ## LFW verification: error rates per group at one global threshold
# For each head of notebook 02, one threshold is chosen on all DevTest pairs (`verification_threshold`:
# notebook 02's 10-fold threshold, or the threshold at a stated false-match rate), and then for each group:
# FMR = impostor pairs accepted, FNMR = genuine pairs rejected. A pair belongs to a group when both faces
# do; pairs across groups are reported as `mixed`. Gender comes from the image-level lists
# `male_names.txt` / `female_names.txt`; images in both lists or in neither are `unknown`, and pairs
# touching them are left out (counted below) — never resolved by guessing.

# %%
scores = analysis.read_pair_scores(profile)
try:
    faces, gender_report = analysis.lfw_face_groups(lfw_root, lfw_gender_folder)
except DataError as error:  # e.g. a gender folder without the two lists
    faces = gender_report = None
    display(Markdown(f"**No gender labels for these LFW images; the LFW sections are skipped.** {error}"))
if gender_report is not None:
    display(pd.Series({key: gender_report[key] for key in ("male_entries", "female_entries", "duplicate_entries",
                                                           "in_both", "in_neither", "listed_not_on_disk")},
                      name="gender lists").to_frame())
    display(Markdown(f"Images in both lists: {', '.join(gender_report['in_both_examples']) or 'none'}; "
                     f"in neither (first five): {', '.join(gender_report['in_neither_examples']) or 'none'}."))

# %%
gender_rates = gender_notes = None
if faces is not None:
    gender_rates, gender_notes = analysis.verification_by_group(scores, faces, "gender", verification_threshold,
                                                                order=GENDERS)
    display(gender_notes)

# %%
if gender_rates is not None:
    for head, rates in gender_rates.items():
        fig = fairness_plots.error_rate_plot(rates, title=f"{head}: FMR and FNMR per gender (LFW DevTest)")
        plots.save_figure(fig, f"04_lfw_gender_{head}", profile)
        plt.show()
    display(analysis.error_rate_table(gender_rates).set_index(["head", "group"]))

# %%
if faces is not None:
    curves = analysis.per_group_roc_curves(scores, faces, "gender", order=GENDERS)
    fig, ax = plt.subplots(figsize=(7, 5))
    fairness_plots.per_group_roc_plot(curves, style="head", ax=ax, title="LFW DevTest ROC per gender (both faces)")
    plots.save_figure(fig, "04_lfw_gender_roc", profile)
    plt.show()

# %% [markdown]
# ### Synthetic profiles: per generated group
# The synthetic LFW's identities belong to the seven generated groups with a planted difficulty
# (`Group A` easiest … `Group G` hardest); the analysis should find the harder groups' error rates higher.

# %%
if faces is not None and "group" in faces.columns:
    group_order = analysis.group_order(faces.loc[faces["group"] != analysis.UNKNOWN, "group"])
    group_rates, group_notes = analysis.verification_by_group(scores, faces, "group", verification_threshold,
                                                              order=group_order)
    display(group_notes)
    best_verifier = group_notes["overall FMR"].add(group_notes["overall FNMR"]).idxmin()
    fig = fairness_plots.error_rate_plot(group_rates[best_verifier],
                                         title=f"{best_verifier}: FMR and FNMR per synthetic group")
    plots.save_figure(fig, "04_lfw_synthetic_groups", profile)
    plt.show()
else:
    display(Markdown("Real LFW has no group labels besides the gender lists; this section applies to the "
                     "synthetic profiles only."))

# %% [markdown]
# ## Conclusion
# Notebook 03's verdicts, word for word (written from the same saved table), then what this notebook adds.

# %%
display(Markdown(analysis.conclusion(comparisons, status, gap_tests=gap_tests, verification_notes=gender_notes)))

# %% [markdown]
# ## References
# * M. Wang, W. Deng, J. Hu, X. Tao, Y. Huang. *Racial Faces in-the-Wild: Reducing Racial Bias by Information
#   Maximization Adaptation Network.* ICCV 2019 (RFW: the standard deviation across groups and the skewed
#   error ratio).
# * P. Grother, M. Ngan, K. Hanaoka. *Face Recognition Vendor Test (FRVT) Part 3: Demographic Effects.*
#   NISTIR 8280, NIST, 2019 (false match and false non-match rates per group at one global threshold).
# * E. B. Wilson. *Probable Inference, the Law of Succession, and Statistical Inference.* JASA 22, 1927.
# * Q. McNemar. *Note on the Sampling Error of the Difference between Correlated Proportions or Percentages.*
#   Psychometrika 12, 1947.
# * S. Holm. *A Simple Sequentially Rejective Multiple Test Procedure.* Scand. J. Statistics 6, 1979.
# * B. Efron. *Bootstrap Methods: Another Look at the Jackknife.* Annals of Statistics 7, 1979.
# * S. Bird et al. *Fairlearn: A toolkit for assessing and improving fairness in AI.* Microsoft, MSR-TR-2020-32,
#   2020 (group metrics as differences and ratios; the tests compare with `fairlearn.metrics.MetricFrame`).
#
# Full list, with what each source contributes: `README.md`, *References*.
