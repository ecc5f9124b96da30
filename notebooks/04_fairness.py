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
# # 04 · Fairness: do angular margins change the gaps between groups?
#
# This notebook trains nothing. It reads the per-image predictions notebook 03 saved (FairFace race
# classification, every head and seed) and the per-pair scores notebook 02 saved (LFW View 1 DevTest
# verification, every head), and asks how unequal the errors are across groups, whether a margin head
# changes that, and how sure we can be. Definitions follow RFW (Wang et al., ICCV 2019), NIST FRVT Part 3
# (NISTIR 8280, 2019) and fairlearn (see References at the end):
#
# * per group: accuracy with a 95 % interval — over training seeds (Student-t) when there are several,
#   a Wilson interval over images when there is one;
# * across groups: the gap (max − min accuracy), the ratio (min / max), the standard deviation of the
#   group accuracies (RFW's STD) and the skewed error ratio SER = max error / min error (undefined when a
#   group makes no errors);
# * head against head: exact McNemar tests on the same images, overall and per group with Holm's
#   correction, and a paired bootstrap of the difference of two heads' gaps;
# * verification: one global threshold for everyone, then false-match and false-non-match rates per group.
#
# A caution that applies throughout: a bootstrap interval of a max − min gap is biased upward (noise
# alone spreads the groups apart), so "the gap's interval excludes 0" is not proof of a disparity. The
# permutation test below answers "is there a gap at all?" properly.

# %% tags=["parameters"]
profile = "default"  # whose saved results to read: data/results/<profile>/
synthetic_preset = "default"  # size of the embedded synthetic dataset (smoke | default)
lfw_source = "synthetic"  # synthetic | shared | sklearn | a folder path (for the gender lists and identities)
lfw_gender_folder = None  # folder with male_names.txt and female_names.txt (None: the gender/ folder beside LFW, else data/lfw_gender/)
reference_head = "cosine_softmax"  # the report's "softmax": every other head is compared with it
verification_threshold = "10fold"  # "10fold" (notebook 02's threshold) or a false-match rate, e.g. 0.01
n_boot = 2000  # bootstrap resamples for the gap differences
n_permutations = 2000  # permutations for the "is there a gap at all" test
seed = 0  # seeds the bootstrap and the permutations

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from lib import download, fairness_analysis as analysis, fairness_plots, parameters, paths, plots, synthetic
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

predictions = analysis.read_predictions(profile)
heads = analysis.heads_of(predictions)
seeds = sorted(int(s) for s in predictions["seed"].unique())
races = analysis.group_order(predictions["race"])
interval = analysis.interval_label(predictions)
if reference_head not in heads:
    raise ValueError(f"reference_head {reference_head!r} is not among the heads notebook 03 saved: {heads}")
display(Markdown(f"**Profile** `{profile}` · {len(predictions) // (len(heads) * len(seeds)):,} validation images · "
                 f"heads {', '.join(heads)} · seeds {list(seeds)} · reference `{reference_head}` · "
                 f"intervals: {interval}"))

# %% [markdown]
# ## FairFace: accuracy per race group
# Each head's accuracy (of predicting the `race` label) on the images of each group, with the dashed line
# at the head's overall accuracy.

# %%
by_race = analysis.per_group_accuracy(predictions, "race", order=races)
fig, ax = plt.subplots(figsize=(8.5, 6.5))
fairness_plots.forest_plot(by_race, order=races, by_order=heads, ax=ax, interval_label=interval,
                           title="Validation accuracy per race group, by head", xlabel="accuracy")
plots.save_figure(fig, "04_race_forest", profile)
plt.show()
by_race.pivot(index="group", columns="head", values="accuracy").loc[races, heads]

# %% [markdown]
# In the synthetic profiles the groups have a planted difficulty (`Group A` easiest … `Group G` hardest). If
# the analysis works, accuracy falls with difficulty: Spearman's ρ between planted difficulty and measured
# accuracy near −1.

# %%
if set(races) <= set(synthetic.GROUP_DIFFICULTY):
    display(analysis.planted_order_check(by_race, synthetic.GROUP_DIFFICULTY))
else:
    display(Markdown("Real FairFace: no planted ordering to check."))

# %% [markdown]
# ### How unequal? The disparity summary per head
# Mean over seeds with a 95 % t-interval (no interval with one seed). Lower gap, STD and SER and a ratio
# closer to 1 mean more equal accuracies.

# %%
race_disparity = analysis.disparities(predictions, "race", order=races)
fairness_plots.style_disparity_table(race_disparity, caption="Race-group disparity of each head")

# %% [markdown]
# **Is there a gap at all?** For each head and seed: the observed gap and the p-value of a permutation
# test that shuffles the group labels (sizes kept). A small p means the groups really differ in accuracy.

# %%
race_gap_tests = analysis.gap_permutation_tests(predictions, "race", n_permutations=n_permutations, seed=seed)
race_gap_tests.pivot(index="head", columns="seed", values=["gap", "p_value"]).loc[heads]

# %% [markdown]
# ### Does a head differ from the reference?
# Exact McNemar tests on the same validation images: per seed, and the discordant counts pooled over seeds
# (labelled; pooling treats the seeds as independent looks at the same images, so it is optimistic).

# %%
overall_tests = analysis.mcnemar_overall(predictions, reference_head)
overall_tests.assign(p_value=overall_tests["p_value"].map(fairness_plots.format_p_value),
                     significance=overall_tests["p_value"].map(fairness_plots.significance_marker))

# %% [markdown]
# Per race group, for the course report's comparison (CosReLU against its softmax), Holm-corrected across
# the seven groups within each seed:

# %%
focus_head = "cosrelu" if "cosrelu" in heads else next(h for h in heads if h != reference_head)
per_group_tests = analysis.mcnemar_per_group(predictions, focus_head, reference_head, "race", order=races)
for run_seed, table in per_group_tests.groupby("seed"):
    display(Markdown(f"**seed {run_seed}**: `{focus_head}` vs `{reference_head}`"))
    display(fairness_plots.mcnemar_table(table.drop(columns="seed"), head_a=focus_head, head_b=reference_head))

# %% [markdown]
# ### Does a margin narrow the race gap?
# Each head's gap minus the reference head's gap, on the same images and seed: a paired bootstrap interval
# per seed (groups resampled within themselves, both heads jointly), and the mean over seeds with its
# t-interval. A negative difference means the head's accuracies are *more* equal than the reference's.

# %%
gap_diff = analysis.gap_differences(predictions, reference_head, "race", n_boot=n_boot, seed=seed)
gap_diff

# %%
fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(gap_diff)))
labels = [f"{row.head} · seed {row.seed}" for row in gap_diff.itertuples()]
y = range(len(gap_diff))[::-1]
ax.errorbar(gap_diff["difference"], list(y), xerr=[gap_diff["difference"] - gap_diff["lower"],
                                                   gap_diff["upper"] - gap_diff["difference"]],
            fmt="o", color="black", ecolor="grey", capsize=3)
ax.axvline(0, color="grey", ls=":", lw=1)
ax.set_yticks(list(y), labels)
ax.set(xlabel=f"race gap of head − race gap of {reference_head} (accuracy points)",
       title="Difference of race gaps against the reference head (95% intervals)")
plots.save_figure(fig, "04_gap_differences", profile)
plt.show()

# %% [markdown]
# ## FairFace: the same analysis split by gender
# Accuracy of the race prediction on the images of each perceived gender.

# %%
by_gender = analysis.per_group_accuracy(predictions, "gender", order=GENDERS)
fig, ax = plt.subplots(figsize=(8, 3.5))
fairness_plots.forest_plot(by_gender, order=GENDERS, by_order=heads, ax=ax, interval_label=interval,
                           title="Validation accuracy per perceived gender, by head", xlabel="accuracy")
plots.save_figure(fig, "04_gender_forest", profile)
plt.show()
fairness_plots.style_disparity_table(analysis.disparities(predictions, "gender", order=GENDERS),
                                     caption="Gender disparity of each head")

# %% [markdown]
# ## FairFace: the balanced `service_test` subset vs all validation images
# FairFace marks a race- and gender-balanced subset (`service_test`). Overall accuracy weights groups by their
# share; on the balanced subset every group counts about equally.

# %%
subsets = analysis.subset_accuracy(predictions)
subsets.pivot(index="head", columns="group", values="accuracy").loc[heads]

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
# Computed from the tables above.

# %%
display(Markdown(analysis.conclusion(race_disparity, gap_diff, overall_tests, race_gap_tests, gender_notes,
                                     reference_head, n_seeds=len(seeds), per_group=by_race)))

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
