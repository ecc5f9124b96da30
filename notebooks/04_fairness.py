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
# one model, and the head-vs-head comparisons with their verdicts, for both of its regimes (networks trained
# from scratch, and heads trained on frozen face embeddings) — and the per-pair scores notebook 02
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
#   with a 95 % interval over the seeds **and** the validation images, paired by seed and image (the model
#   of every interval in notebooks 02–04, `lib.verification.interval_over_seeds_and_samples`: the seeds'
#   spread with Student-t degrees of freedom, plus a bootstrap of the images resampled within each race,
#   since all seeds are scored on the same images). A verdict comes only from the matching test,
#   Holm-corrected across the comparisons of one kind, and only with three or more seeds; each table says
#   what its intervals cover and the size of its Holm family. These numbers are notebook 03's saved table, so
#   the two notebooks state the same conclusion.
# * Per group: accuracy with a 95 % interval — over the seeds and the group's validation images with three
#   or more seeds, so a smaller group gets a wider interval; else a Wilson interval over images with the
#   seeds pooled (labelled so, since it ignores seed variation). Across groups: the gap, the ratio
#   (min / max), the standard deviation of the group accuracies (RFW's STD) and the skewed error ratio
#   SER = max error / min error, each the mean over seeds with the same kind of interval.
# * Verification: one global threshold for everyone, then false-match and false-non-match rates per group.
#
# A caution: a max − min gap is biased upward (noise alone spreads the groups apart), so its size alone is
# no proof of a disparity. The permutation test answers "is there a gap at all?" for one trained model.

# %% tags=["parameters"]
# papermill sets these from params/<profile>.yaml; opened interactively they are the `default` profile. A run writes
# data/results/<profile>/ and figures/<profile>/ (never reports/): the committed real results only if profile = "real".
profile = "default"  # whose saved results to read: data/results/<profile>/
synthetic_preset = "default"  # size of the embedded synthetic dataset (smoke | default)
lfw_source = "synthetic"  # synthetic | shared | sklearn | a folder path (for the gender lists and identities)
lfw_gender_folder = None  # folder with male_names.txt and female_names.txt (None: the gender/ folder beside LFW, else data/lfw_gender/)
frvt_targets_trained = [1e-2, 1e-3]  # overall FMRs fixing the thresholds of the trained heads' DevTest audit
frvt_targets_pretrained = [1e-3, 1e-4, 1e-5]  # the same for the pretrained encoder on all of LFW
frvt_n_boot = 1000  # identity-bootstrap replicates of the verification audits
pretrained_encoder = "dlib"  # pretrained encoder audited on all of LFW (None: skip; needs `pip install -e ".[pretrained]"`)
n_permutations = 2000  # permutations for the "is there a gap at all" test
seed = 0  # seeds the bootstrap and the permutations

# %%
try:  # a kernel from another environment says which kernel to choose, instead of an ImportError below
    import lib  # noqa: F401
except ImportError:
    import sys
    raise RuntimeError(f"This kernel ({sys.executable}) cannot import the project's library `lib`. Choose the kernel "
                       "'angular-margin-fairness' (Kernel → Change Kernel…; `make lab` registers it and starts JupyterLab "
                       "with it), or on Colab run the setup cell first (README: Edit on Colab).") from None
import time

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from lib import download, fairness_analysis as analysis, fairness_plots, findings, frvt, head_comparison, lfw
from lib import parameters, paths, plots, pretrained, synthetic, tables
from lib.errors import DataError
from lib.labels import GENDERS
from lib.tables import write_csv

plots.setup_style()
tables.setup_display()  # every table in one number format, no cell cut short
parameters.validate("04_fairness", globals())  # every parameter checked before any work
pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 20)
if lfw_source == "synthetic":
    synthetic.ensure_synthetic(preset=synthetic_preset)
if lfw_source == "sklearn":
    download.ensure_sklearn_lfw()  # scikit-learn's downloader, once (FACE_STORAGE keeps it across sessions)
lfw_root = paths.dataset_root(lfw_source, "lfw", synthetic_preset)

# %%
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
# Overall accuracy and race gap, head − reference, as fractions like the table below (0.01 = one percentage
# point); dots are means over seeds,
# whiskers the 95 % interval over seeds and validation images (unadjusted; the axis label and the line above
# the table say which Holm family each verdict belongs to). Filled dots: a difference resolved after the
# correction; hollow: not resolved; grey: a collapsed head (not compared) or too few seeds for a verdict. For
# race classification the gap is one of per-class recall (label confusion). Every seed is scored on the same
# validation images: a t-interval over the seeds alone would leave out which images were drawn, which matters
# most where the seeds agree closely (notebook 03's frozen-embedding regime).

# %%
QUANTITY_NAMES = {"accuracy": "overall accuracy", "gap": "race gap"}
main = comparisons[comparisons["quantity"].isin(QUANTITY_NAMES)].assign(
    quantity=lambda frame: frame["quantity"].map(QUANTITY_NAMES))
if len(main):
    panels = [t for t in targets if (main["target"] == t).any()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, sum(1.8 + 0.4 * (main["target"] == t).sum() for t in panels)),
                             squeeze=False, layout="constrained")
    for ax, target in zip(axes[:, 0], panels):
        fairness_plots.difference_forest(main[main["target"] == target], prefix="quantity", ax=ax, unit="fraction",
                                         title=f"{target.capitalize()} classification: head − reference")
    plots.save_figure(fig, "04_gap_differences", profile)
    plt.show()
else:
    display(Markdown("No pair of heads to compare: notebook 03's parameters name none."))
main_rows = comparisons[comparisons["quantity"] != "group accuracy"]
if len(main_rows):
    display(Markdown("Intervals and verdicts: " + "; ".join(
        f"{quantity}: {interval}" for quantity, interval
        in main_rows.groupby("quantity", sort=False)["interval"].first().items()) + "."))
head_comparison.comparison_style(main_rows.set_index(["target", "quantity", "head", "reference"])[
    ["seeds", "head_value", "reference_value", "difference", "lower", "upper", "p_value", "p_adjusted", "verdict"]])

# %% [markdown]
# ## Gender classification: how well is each group served?
# ### Per race: gender accuracy of each head against its reference
# The same differences for each race's images (head − reference, as fractions, 95 % interval over seeds
# and that race's validation images; verdicts Holm-corrected across all races and pairs of the target, the
# family named above the table). A race has a fraction of the validation images, so one image moves its
# accuracy more: the per-race intervals are wider than the overall ones for that reason, not only because of
# the seeds.

# %%
if "gender" in targets:
    per_race = comparisons[(comparisons["target"] == "gender") & (comparisons["quantity"] == "group accuracy")]
    if len(per_race):
        fig, ax = plt.subplots(figsize=(12, 1.8 + 0.36 * len(per_race)), layout="constrained")
        fairness_plots.difference_forest(per_race, prefix="group", ax=ax, unit="fraction",
                                         title="Gender accuracy per race: head − reference")
        plots.save_figure(fig, "04_gender_differences_by_race", profile)
        plt.show()
        display(Markdown(f"Intervals and verdicts: {per_race['interval'].iloc[0]}."))
        display(head_comparison.comparison_style(per_race.set_index(["group", "head", "reference"])[
            ["head_value", "reference_value", "difference", "lower", "upper", "p_adjusted", "verdict"]]))
else:
    display(Markdown("Notebook 03 trained no gender classifier in this profile."))

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
                                                         f"({analysis.DISPARITY_INTERVAL})"))

# %%
# Generated groups have a planted difficulty, a known answer to check the analysis against; real groups have
# none, so on real data this cell shows nothing.
planted = set(races) <= set(synthetic.GROUP_DIFFICULTY)
per_group = {target: analysis.per_group_accuracy(by_target[target], "race", order=races) for target in targets}
if planted:
    display(Markdown(
        "**The planted ordering.** These groups are generated with a planted difficulty (`Group A` easiest … "
        "`Group G` hardest: more photo-to-photo variation of a person and a less distinctive group look). For "
        "race classification it is a check: if the analysis works, recall falls with difficulty (Spearman's ρ "
        "between planted difficulty and measured recall near −1). For gender classification it is an "
        "observation: the difficulty was planted for telling groups and people apart, and nothing says it must "
        "make gender harder to read."))
    for target in targets:
        display(Markdown(f"**{target}**"), analysis.planted_order_check(per_group[target], synthetic.GROUP_DIFFICULTY))

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
# ## The pretrained regime: gender per race on frozen face embeddings
# Notebook 03 also trained the same heads (and a plain linear probe, `softmax`) on frozen dlib face descriptors,
# where every head sees the same pretrained representation (`03_frozen_predictions.csv`). The same question
# for that regime: each head's gender accuracy per race, its disparity across races, and the per-race
# differences between heads with notebook 03's verdicts (`03_frozen_comparisons.csv`). With frozen features a seed
# changes only the head's initialisation and batch order: the intervals are narrow because they cover that, not
# the sampling of the validation images.

# %%
frozen_file = paths.RESULTS / profile / "03_frozen_predictions.csv"
frozen_by_target, frozen_comparisons = {}, None
if frozen_file.is_file():
    frozen_raw = analysis.read_results(profile, frozen_file.name, "03", ("id", "y_true", "y_pred", "race", "target",
                                                                         "head", "seed"))
    frozen_raw["correct"] = frozen_raw["y_true"] == frozen_raw["y_pred"]
    for target, rows in frozen_raw.groupby("target", sort=False):
        frozen_by_target[target] = head_comparison.relabel(rows, head_comparison.head_status(rows))
    frozen_comparisons = analysis.read_results(profile, "03_frozen_comparisons.csv", "03").fillna({"group": ""})
if "gender" in frozen_by_target:
    frozen_gender = frozen_by_target["gender"]
    frozen_heads = list(dict.fromkeys(frozen_gender["head"]))
    frozen_interval = analysis.interval_label(frozen_gender)
    frozen_by_race = analysis.per_group_accuracy(frozen_gender, "race", order=races)
    fig, ax = plt.subplots(figsize=(8.5, 6.5), layout="constrained")
    fairness_plots.forest_plot(frozen_by_race, order=races, by_order=frozen_heads, ax=ax, interval_label=frozen_interval,
                               chance=1 / frozen_gender["y_true"].nunique(),
                               title="Frozen dlib embeddings: gender accuracy per race group, by head",
                               xlabel=f"gender accuracy (dot: estimate; whiskers: {frozen_interval})")
    plots.save_figure(fig, "04_frozen_gender_by_race", profile)
    plt.show()
    display(fairness_plots.style_disparity_table(analysis.disparities(frozen_gender, "race", order=races),
                                                 caption="Frozen embeddings, gender accuracy across races: disparity "
                                                         "of each head (mean over seeds, 95 % t-interval over seeds)"))
    frozen_per_race = frozen_comparisons[(frozen_comparisons["target"] == "gender")
                                         & (frozen_comparisons["quantity"] == "group accuracy")]
    display(head_comparison.comparison_style(frozen_per_race.set_index(["group", "head", "reference"])[
        ["head_value", "reference_value", "difference", "lower", "upper", "p_adjusted", "verdict"]]))
else:
    display(Markdown(f"No frozen-embedding gender predictions for profile `{profile}` (`{paths.shown(frozen_file)}`: "
                     "notebook 03 writes them when the pretrained encoder is installed)."))

# %% [markdown]
# ### Worst- and best-served group per head, both regimes
# Gender accuracy (mean over seeds) of each head's worst- and best-served race group, from scratch and on frozen
# embeddings; saved as `04_group_accuracy.csv` for the findings.

# %%
group_rows = []
for regime, frame in [("from scratch", by_target.get("gender")), ("frozen dlib features", frozen_by_target.get("gender"))]:
    if frame is None:
        continue
    for head, rows in analysis.per_group_accuracy(frame, "race", order=races).groupby("head", sort=False):
        worst, best = rows.loc[rows["accuracy"].idxmin()], rows.loc[rows["accuracy"].idxmax()]
        group_rows.append({"regime": regime, "target": "gender", "head": head, "worst group": worst["group"],
                           "min accuracy": worst["accuracy"], "best group": best["group"],
                           "max accuracy": best["accuracy"], "gap": best["accuracy"] - worst["accuracy"]})
group_extremes = pd.DataFrame(group_rows, columns=["regime", "target", "head", "worst group", "min accuracy",
                                                   "best group", "max accuracy", "gap"])
if len(group_extremes):
    write_csv(group_extremes, paths.results_dir(profile) / "04_group_accuracy.csv")
else:
    (paths.results_dir(profile) / "04_group_accuracy.csv").unlink(missing_ok=True)
group_extremes.set_index(["regime", "head"])

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
                                                         f"({analysis.DISPARITY_INTERVAL})"))
    recall_differences = comparisons[(comparisons["target"] == "race") & (comparisons["quantity"] == "group accuracy")]
    if len(recall_differences):
        display(Markdown(f"Per-class recall, head − reference. Intervals and verdicts: "
                         f"{recall_differences['interval'].iloc[0]}."))
    display(head_comparison.comparison_style(recall_differences.set_index(["group", "head", "reference"])[
        ["difference", "lower", "upper", "p_adjusted", "verdict"]]))

# %% [markdown]
# ## FairFace: the balanced `service_test` subset vs all validation images
# FairFace marks a race- and gender-balanced subset (`service_test`). Overall accuracy weights groups by their
# share; on the balanced subset every group counts about equally.

# %%
for target in targets:
    subsets = analysis.subset_accuracy(by_target[target])
    display(Markdown(f"**{target}**"), subsets.pivot(index="head", columns="group", values="accuracy").loc[shown[target]])

# %% [markdown]
# ## LFW verification fairness, NIST FRVT Part 3 style
# Neither course report looked at verification errors by group: the SphereFace report scored only the 500 + 500
# listed DevTest pairs, at a fixed cosine threshold, for everyone at once. Here, as in NIST's demographic study
# (Grother, Ngan, Hanaoka, *FRVT Part 3: Demographic Effects*, NISTIR 8280, 2019):
#
# * **all-vs-all**: every image is compared with every other image of the set — every genuine pair (two
#   images of one person) and every impostor pair (two people), not only the listed pairs;
# * **one threshold for everyone**, fixed by a target false-match rate over *all* impostor pairs (the same
#   targets for every model); then per group **FMR** over the impostor pairs whose two images are both of
#   that group (FRVT's same-demographic impostors) and **FNMR** over the group's genuine pairs. Impostor
#   pairs across groups count towards the overall FMR that sets the threshold and get their own row
#   (`cross-group`); pairs touching an image without a group (`unknown`) count only in the overall row;
# * **intervals from a bootstrap over identities** (people drawn with replacement, their genuine and
#   impostor pairs following them; the threshold is recomputed in every replicate), since pairs of one
#   person are not independent;
# * **DET curves** (FNMR against FMR) per group, with the operating points marked: the trained heads on
#   probit axes (as in notebook 02), which keep FNMRs near 1 apart; dlib on log axes.
#
# The scores are counted into 2^18 fixed bins per pair category in blocks of rows (`lib.frvt`), so all of
# LFW (87 million impostor pairs) takes seconds and never needs an N × N matrix or a sort of all scores.
#
# **Groups.** On real LFW the group is gender, from the image-level lists `male_names.txt` /
# `female_names.txt` published with M. Afifi and A. Abdelhamed, *AFIF4: Deep gender classification based
# on AdaBoost-based fusion of isolated facial features and foggy faces*, J. Vis. Commun. Image Represent.,
# 2019 (arXiv:1706.04277). Their authors built them from the attribute values of N. Kumar, A. C. Berg,
# P. N. Belhumeur, S. K. Nayar, *Describable Visual Attributes for Face Verification and Image Search*, IEEE TPAMI
# 33(10), 2011, and a first-name gender lookup (the genderize.io web service), then reviewed each list by hand. Their limits: the labels are
# binary; they were assigned by annotators from names and appearance, not reported by the people shown;
# they label images, so a few images are in both lists or in neither (counted below, left `unknown`, never
# guessed). In the synthetic profiles the group is the generated group of each identity (`Group A`
# easiest … `Group G` hardest, a planted difficulty), so the analysis can be checked against a known answer.

# %%
try:
    faces, gender_report = analysis.lfw_face_groups(lfw_root, lfw_gender_folder)
except DataError as error:  # e.g. a gender folder without the two lists
    faces = gender_report = None
    display(Markdown(f"**No gender labels for these LFW images; the LFW sections are skipped.** {error}"))
if gender_report is not None:
    display(pd.Series({key: gender_report[key] for key in ("male_entries", "female_entries", "duplicate_entries",
                                                           "in_both", "in_neither", "listed_not_on_disk")},
                      name="gender lists").to_frame())
    display(Markdown(f"{gender_report['in_both']} image(s) in both lists "
                     f"({', '.join(gender_report['in_both_examples']) or 'none'}), {gender_report['in_neither']} "
                     f"in neither ({', '.join(gender_report['in_neither_examples']) or 'none'}): left `unknown`."))
audit_column = None
if faces is not None:
    audit_column = "group" if "group" in faces.columns else "gender"
    if audit_column == "gender":
        audit_order, audit_ratio = list(GENDERS), ("Female", "Male")
    else:
        audit_order = analysis.group_order(faces.loc[faces["group"] != analysis.UNKNOWN, "group"])
        audit_ratio = (audit_order[-1], audit_order[0])  # hardest planted group / easiest
    group_of_file = faces.set_index("file")[audit_column]
    display(Markdown(f"Groups audited: **{audit_column}** ({', '.join(audit_order)}); ratios "
                     f"{audit_ratio[0]}/{audit_ratio[1]}."))

# %% [markdown]
# ### The trained heads on DevTest, all-vs-all
# Notebook 02 saves the L2-normalized, flip-fused features of every image of the View 1 DevTest people for
# each trained head and seed (a file of that notebook's results, not in git). Each model is audited at the
# overall FMRs named in the table (10⁻² and 10⁻³ by default); per head the table gives the mean over seeds, its interval (the same resampled
# people for every seed, so the interval covers the sampling of people behind that mean) and the range
# over seeds. The audit is saved with the names of the runs it audited (`04_frvt_trained_*.csv`, in git, unlike
# the embeddings file): without the embeddings, this notebook shows that saved audit if notebook 02's
# `02_summary.csv` still names the same runs and the targets and bootstrap are unchanged, and says so.

# %%
devtest_file = paths.results_dir(profile) / frvt.DEVTEST_EMBEDDINGS_FILE
summary_02 = paths.results_dir(profile) / "02_summary.csv"
runs_02 = sorted(pd.read_csv(summary_02)["run"]) if summary_02.is_file() else []
audit_settings = {"target_fmrs": list(frvt_targets_trained), "bootstrap_replicates": frvt_n_boot,
                  "bootstrap_seed": seed, "groups": list(audit_order) if faces is not None else []}
trained_audit = trained_notes = None
if faces is None:
    display(Markdown("Skipped: no group labels."))
elif devtest_file.is_file():
    files, identities, models = frvt.read_model_embeddings(devtest_file)
    stored_runs = frvt.read_model_run_names(devtest_file)
    if stored_runs and stored_runs != runs_02:
        raise DataError(f"{paths.shown(devtest_file)} holds other runs than {paths.shown(summary_02)} (an interrupted "
                        f"notebook 02?): re-run it (python -m lib.notebooks run --profile {profile} --only 02)")
    trained_audit = frvt.audit_models(models, identities, pd.Series(files).map(group_of_file).to_numpy(),
                                      target_fmrs=frvt_targets_trained, ratio=audit_ratio, order=audit_order,
                                      n_boot=frvt_n_boot, seed=seed, images=files)
    # Notebook 02's head pairs, CosFace against softmax first: do their FMR ratios differ (paired, Holm)?
    tested_pairs = sorted(parameters.comparisons("02_sphereface", {head for head, _ in models}),
                          key=lambda pair: pair != ("cosface", "softmax"))
    if tested_pairs and len(audit_ratio) == 2:
        ratio_target = 1e-3 if 1e-3 in frvt_targets_trained else min(frvt_targets_trained)
        trained_audit.extra["ratio_tests"] = frvt.compare_head_ratios(trained_audit, tested_pairs,
                                                                      target_fmrs=[ratio_target], ratio=audit_ratio)
    first = next(iter(trained_audit.audits.values())).counts
    trained_notes = {**audit_settings, "images": len(files), "people": len(set(identities)), "models": len(models),
                     "genuine_pairs": first.n_genuine, "impostor_pairs": first.n_impostor,
                     "computed": time.strftime("%Y-%m-%d")}
    # Kept with the runs it audited, so a later run of this notebook without the 105 MB embeddings file
    # (not in git) shows this same audit rather than none.
    frvt.save_audits(trained_audit, paths.results_dir(profile), "04_frvt_trained", runs=stored_runs or runs_02,
                     notes=trained_notes)
else:
    trained_audit, trained_notes = frvt.load_audits(paths.results_dir(profile), "04_frvt_trained", runs=runs_02,
                                                    settings=audit_settings)
    if trained_audit is None:
        display(Markdown(f"**Skipped:** `{paths.shown(devtest_file)}` does not exist (notebook 02 writes it: "
                         f"`python -m lib.notebooks run --profile {profile} --only 02`), and {trained_notes}."))
        trained_notes = None
    else:
        display(Markdown(f"`{paths.shown(devtest_file)}` (not in git) is not here: shown is the saved audit of the "
                         f"same {len(runs_02)} runs of notebook 02 (`04_frvt_trained_*.csv`, computed "
                         f"{trained_notes['computed']} with these targets and bootstrap)."))
if trained_audit is not None:
    display(Markdown(f"{trained_notes['images']:,} DevTest images of {trained_notes['people']:,} people, "
                     f"{trained_notes['models']} models: {trained_notes['genuine_pairs']:,} genuine and "
                     f"{trained_notes['impostor_pairs']:,} impostor pairs per model; "
                     f"{trained_notes['bootstrap_replicates']} identity-bootstrap replicates."))
    trained_rows = trained_audit.per_head[trained_audit.per_head["group"].isin([*audit_order, frvt.CROSS_GROUP, "overall"])]
    display(frvt.rates_table(trained_rows))
    display(trained_audit.ratios.set_index(["head", "target_fmr", "rate"]))

# %% [markdown]
# **Do two heads' ratios differ?** A ratio per head with its own interval does not say whether two heads differ:
# their intervals come from the same people. The paired test resamples the people once per bootstrap replicate
# and computes both heads' Female/Male FMR ratios (in the synthetic profiles: hardest/easiest group) on that
# same replicate; shown is the head's ratio over the reference's (1 = the same ratio), its 95 % interval over
# the replicates, a two-sided bootstrap p-value and the Holm-corrected one over the pairs tested (notebook 02's
# pairs, CosFace against softmax first), at overall FMR 10⁻³.

# %%
ratio_tests = trained_audit.extra.get("ratio_tests") if trained_audit is not None else None
if trained_audit is not None and ratio_tests is None:
    display(Markdown("The saved audit of these runs was computed before this test existed (its manifest names no "
                     "`04_frvt_trained_ratio_tests.csv`): re-run notebook 02 to write the embeddings it needs."))
elif ratio_tests is not None:
    display(head_comparison.comparison_style(ratio_tests.set_index(["head", "reference", "target_fmr", "rate"])[
        ["head_ratio", "reference_ratio", "ratio_of_ratios", "lower", "upper", "p_value", "p_adjusted", "verdict"]]))

# %%
if trained_audit is not None:
    per_model, det_02 = trained_audit.per_model, trained_audit.det
    heads_02 = list(dict.fromkeys(per_model["head"]))
    columns = min(3, len(heads_02))  # panels large enough to read, in rows of three
    rows = -(-len(heads_02) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.6 * rows), squeeze=False, sharey=True)
    colors = {group: plt.rcParams["axes.prop_cycle"].by_key()["color"][i] for i, group in enumerate(audit_order)}
    for ax, head in zip(axes.flat, heads_02):
        for n, model_seed in enumerate(dict.fromkeys(per_model.loc[per_model["head"] == head, "seed"])):
            model = (per_model["head"] == head) & (per_model["seed"] == model_seed)
            curve = (det_02["head"] == head) & (det_02["seed"] == model_seed) & (det_02["group"] != "overall")
            frvt.det_plot(det_02[curve], per_model[model & per_model["group"].isin(audit_order)], ax=ax,
                          colors=colors, alpha=1.0 if n == 0 else 0.45, legend=(n == 0 and head == heads_02[0]),
                          title=head, scale="probit")
    for ax in axes.flat[len(heads_02):]:
        ax.set_axis_off()
    # Probit axes, as notebook 02's DET: small-data heads miss most genuine pairs at low FMR (FNMR 0.9-0.999),
    # which log axes squeeze against the top; one range for every panel, from every drawn curve.
    drawn = det_02[(det_02["group"] != "overall") & (det_02["fmr"] > 0) & (det_02["fnmr"] > 0) & (det_02["fnmr"] < 1)]
    xlim, ylim = frvt.probit_limits(drawn["fmr"]), frvt.probit_limits(drawn["fnmr"])
    for ax in axes.flat[:len(heads_02)]:
        ax.set(xlim=xlim, ylim=ylim)
        frvt.set_probit_ticks(ax.xaxis, xlim)
        frvt.set_probit_ticks(ax.yaxis, ylim)
    fig.suptitle(f"LFW DevTest all-vs-all DET per {audit_column} (one line per seed; probit axes)")
    plots.save_figure(fig, f"04_lfw_{audit_column}_det_trained", profile)
    plt.show()

# %% [markdown]
# ### A demographic audit of a real model: dlib's face recognizer on all of LFW
# What a user would pick instead of training: dlib's ResNet face descriptor (`lib.pretrained`; 128-d, trained
# by dlib's author from scratch on about 3 million faces of 7,485 people from FaceScrub, VGG-Face and the web;
# he writes that he excluded LFW's identities (davisking/dlib-models, README.md), which cannot be checked here,
# as the training list is not published). All 13,233 images are audited: 242,257 genuine and about 87.3 million
# impostor pairs. Faces are found by dlib's HOG detector (the detection nearest the image centre) and aligned
# on 5 landmarks into 150 × 150 chips; when the detector finds no face, the landmarks are searched in a fixed
# fallback box (the median detection box on LFW), and the number of such images is reported. Targets: overall
# FMR 10⁻³, 10⁻⁴ and 10⁻⁵ by default.
#
# **Two ways to compare two faces.** dlib's users compare the *raw* 128-d descriptors by their **Euclidean
# distance** and call two faces the same person when it is below **0.6**, the threshold dlib documents ("when
# using a distance threshold of 0.6, the dlib model obtains an accuracy of 99.38 % on the standard LFW face
# recognition benchmark", `python_examples/face_recognition.py` in davisking/dlib). The trained heads above are
# compared by the **cosine** of L2-normalized features. The two are not the same test:
# distance² = |a|² + |b|² − 2 |a| |b| cos θ, so the distance also depends on how long the two descriptors are.
# If one group's descriptors are systematically shorter, its pairs are closer at the same angle: a distance
# threshold lets more of its impostor pairs through (a higher FMR) and rejects fewer of its genuine pairs (a
# lower FNMR) than the cosine does at the same overall FMR. So dlib is audited both ways, with thresholds fixed
# by the same overall FMRs and the same resampled people in every bootstrap replicate, and once more at the
# documented distance 0.6. **What this page concludes about dlib rests on the Euclidean distance**, the
# comparator its users run; the cosine rows connect it with the trained heads.

# %%
pretrained_audits = pretrained_tables = embeddings_lfw = encoder = None
reason = pretrained.unavailable_reason(pretrained_encoder) if pretrained_encoder else "no pretrained encoder chosen"
if faces is None:
    display(Markdown("Skipped: no group labels."))
elif reason is not None:
    display(Markdown(f"**Skipped:** the pretrained encoder is not available. {reason}"))
else:
    encoder = pretrained.make_encoder(pretrained_encoder)
    lfw_images, embeddings_lfw = pretrained.embed_lfw(encoder, lfw.load_lfw(lfw_root))
    groups_lfw = lfw_images["file"].map(group_of_file).to_numpy()
    # the users' comparator first (with its documented threshold), then the cosine of the trained heads
    users_comparator = encoder.comparator
    compared = {users_comparator: [encoder.documented_threshold] if encoder.documented_threshold else [],
                "cosine": []}
    pretrained_audits = frvt.audit_comparators(
        embeddings_lfw.vectors, lfw_images["name"].to_numpy(), groups_lfw, comparators=compared,
        target_fmrs=frvt_targets_pretrained, ratio=audit_ratio, order=audit_order, n_boot=frvt_n_boot, seed=seed,
        images=lfw_images["file"].to_numpy())
    users_audit = pretrained_audits[users_comparator]
    counts_shown = {**embeddings_lfw.summary(), **users_audit.counts.summary(),
                    "bootstrap seconds": round(users_audit.bootstrap_seconds, 1)}
    display(pd.Series({key: (f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}")
                       if isinstance(value, (int, float)) else value for key, value in counts_shown.items()},
                      name=f"{encoder.name} on LFW ({users_comparator})").to_frame())
    display(Markdown(f"**{encoder.name}, per {audit_column}: each comparator at the same overall FMRs** (FMR and "
                     "FNMR with identity-bootstrap 95 % intervals; a Euclidean threshold is a distance, matches "
                     "below it; a cosine threshold matches above it)"))
    display(frvt.comparator_side_by_side(pretrained_audits, audit_order).fillna(""))

# %% [markdown]
# **Does the comparator change the ratios?** The same people are resampled for both comparators, so each
# replicate gives both ratios; below, the Euclidean ratio over the cosine ratio (1 = no change) with its
# paired 95 % interval and a bootstrap p-value, Holm-corrected over the rows.

# %%
if pretrained_audits is not None and len(pretrained_audits) == 2 and len(audit_ratio) == 2:
    comparator_test = frvt.compare_comparator_ratios(pretrained_audits, users_comparator, "cosine",
                                                     numerator=audit_ratio[0], denominator=audit_ratio[1])
    display(comparator_test.set_index(["comparison", "target_fmr", "rate"]).drop(columns="ratio"))
else:
    comparator_test = None

# %% [markdown]
# **Why they differ: the length of the descriptors.** The Euclidean distance sees the length (L2 norm) of each
# raw descriptor, the cosine does not. The norms of each group's descriptors:

# %%
if pretrained_audits is not None:
    descriptor_norms = frvt.descriptor_norms(embeddings_lfw.vectors, groups_lfw, audit_order)
    display(descriptor_norms.set_index("group"))
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    frvt.norms_plot(embeddings_lfw.vectors, groups_lfw, audit_order, ax=ax,
                    title=f"{pretrained_encoder}: length of the raw descriptors per {audit_column}")
    plots.save_figure(fig, f"04_lfw_{audit_column}_norms_{pretrained_encoder}", profile)
    plt.show()

# %%
if pretrained_audits is not None:
    fig, axes = plt.subplots(1, len(pretrained_audits), figsize=(6.2 * len(pretrained_audits), 5), squeeze=False,
                             sharey=True, layout="constrained")
    for ax, (comparator, result) in zip(axes[0], pretrained_audits.items()):
        frvt.det_plot(result.det, result.rates[result.rates["group"].isin(audit_order)], ax=ax,
                      legend=ax is axes[0, 0], title=f"{frvt.COMPARATORS[comparator].split(' (')[0]}")
    fig.suptitle(f"{pretrained_encoder} on all LFW images: DET per {audit_column}, by comparator")
    plots.save_figure(fig, f"04_lfw_{audit_column}_det_{pretrained_encoder}", profile)
    plt.show()

# %% [markdown]
# **The most prolific identities.** All-vs-all pairs grow with the square of a person's image count, so a few
# people with hundreds of photos supply much of their group's genuine pairs (and hence its FNMR). Below: how
# many pairs the most prolific people supply, and the five with the most genuine pairs in each group with their
# share of their group's. The last table shows each
# group's rates at the same thresholds (those fixed above over all pairs) three ways: all pairs; each person's
# genuine pairs capped at 45, the number a person with ten images supplies (heavier people are down-weighted to
# 45 pairs, so the FNMR counts people more evenly; impostor pairs unchanged); and without the ten people with
# the most genuine pairs (their genuine and impostor pairs removed).

# %%
if pretrained_audits is not None:
    ranked = frvt.identity_pairs(users_audit.counts)
    at_most_cap = (ranked["genuine_pairs"] <= frvt.GENUINE_PAIR_CAP) & (ranked["genuine_pairs"] > 0)
    display(Markdown(f"{int(at_most_cap.sum()):,} of the {int((ranked['genuine_pairs'] > 0).sum()):,} people with "
                     f"two or more images supply at most {frvt.GENUINE_PAIR_CAP} genuine pairs (ten images)."))
    group_pairs = dict(zip(users_audit.counts.categories, users_audit.counts.genuine.sum(axis=1)))
    top = ranked.head(frvt.TOP_IDENTITIES)
    lines = []
    for group in audit_order:
        members = ranked[ranked["group"] == group]
        if len(members) and group_pairs.get(group, 0) > 0:
            first = members.iloc[0]
            in_top = int(top.loc[top["group"] == group, "genuine_pairs"].sum())
            top_share = (f"the {frvt.TOP_IDENTITIES} people with the most genuine pairs overall supply {in_top:,} "
                         f"({in_top / group_pairs[group]:.1%})" if in_top else
                         f"none of the {frvt.TOP_IDENTITIES} people with the most genuine pairs overall is in this "
                         f"group, so removing them leaves its genuine pairs as they are")
            lines.append(f"- {group}: {group_pairs[group]:,} genuine pairs; `{first['identity']}` ({first['images']} "
                         f"images) supplies {first['genuine_pairs']:,} of them ({first['share_of_group']:.1%}); "
                         f"{top_share}.")
    display(Markdown("\n".join(lines)))
    display(ranked.groupby("group", sort=False).head(5).set_index(["group", "identity"]).loc[
        [g for g in audit_order if g in set(ranked["group"])]])
    prolific = pd.concat({comparator: frvt.prolific_identity_effect(result, ratio=audit_ratio)
                          for comparator, result in pretrained_audits.items()}, names=["comparator"]).reset_index(0)
    display(prolific.pivot_table(index=["comparator", "operating_point", "variant"], columns="group",
                                 values=["fmr", "fnmr"], sort=False))

# %%
if pretrained_audits is not None:
    pretrained_tables = {**frvt.comparator_tables(pretrained_audits), "norms": descriptor_norms,
                         "prolific": prolific, "top_identities": ranked.head(frvt.TOP_IDENTITIES)}
    if comparator_test is not None:
        pretrained_tables["comparator_test"] = comparator_test
    # one transaction: the manifest names the digest of every table written with it
    frvt.save_tables(pretrained_tables, paths.results_dir(profile), f"04_frvt_{pretrained_encoder}",
                     notes={"encoder": encoder.name, "model_digest": encoder.model_digest,
                            "users_comparator": users_comparator, "documented_threshold": encoder.documented_threshold,
                            "target_fmrs": list(frvt_targets_pretrained), "bootstrap_replicates": frvt_n_boot,
                            "bootstrap_seed": seed, "groups": list(audit_order), "computed": time.strftime("%Y-%m-%d")})

# %%
verification_summary = []
if trained_audit is not None:
    verification_summary.append(f"**Trained heads, LFW DevTest all-vs-all, per {audit_column}** (mean over seeds, "
                                "identity-bootstrap 95 % interval):\n\n"
                                + frvt.describe(trained_audit.per_head, trained_audit.ratios, audit_order))
if ratio_tests is not None:
    verification_summary.append(f"**Do two heads' {'/'.join(audit_ratio)} FMR ratios differ?** (paired identity "
                                "bootstrap, Holm-corrected):\n\n" + frvt.describe_ratio_tests(ratio_tests))
if pretrained_audits is not None:
    counts_lfw = users_audit.counts
    for comparator, result in pretrained_audits.items():
        who = "the comparator its users run" if comparator == users_comparator else "as the trained heads are compared"
        text = (f"**{pretrained_encoder} on all {counts_lfw.n_images:,} LFW images, per {audit_column}, "
                f"{frvt.COMPARATORS[comparator].split(' (')[0]}** ({who}; {counts_lfw.n_genuine:,} genuine, "
                f"{counts_lfw.n_impostor:,} impostor pairs; detector missed {embeddings_lfw.n_fallback} faces, cut "
                f"from the fallback box; scored at {result.counts.pairs_per_second / 1e6:.1f} M pairs/s):\n\n"
                + frvt.describe(result.rates, result.ratios, audit_order))
        if len(result.fixed):
            text += "\n" + frvt.describe_fixed(result.fixed, result.fixed_ratios, audit_order, comparator)
        verification_summary.append(text)
verification_summary = "\n\n".join(verification_summary)
display(Markdown(verification_summary or "No verification audit ran in this profile."))

# %% [markdown]
# ## Findings
# The question, the answer in each regime, how sure and what it does not show, in plain words. Every number is
# read from the saved tables (notebook 03's comparisons, `04_group_accuracy.csv`, the `04_frvt_*` audits) and
# checked again when the report is rendered; the generated lists of verdicts are in the appendix at the end.

# %%
findings.fairness_findings(paths.results_dir(profile), profile, synthetic=lfw_source == "synthetic")

# %% [markdown]
# ## References
# * M. Wang, W. Deng, J. Hu, X. Tao, Y. Huang. *Racial Faces in-the-Wild: Reducing Racial Bias by Information
#   Maximization Adaptation Network.* ICCV 2019 (RFW: the standard deviation across groups and the skewed
#   error ratio).
# * P. Grother, M. Ngan, K. Hanaoka. *Face Recognition Vendor Test (FRVT) Part 3: Demographic Effects.*
#   NISTIR 8280, NIST, 2019 (false match and false non-match rates per group at one global threshold).
# * E. B. Wilson. *Probable Inference, the Law of Succession, and Statistical Inference.* JASA 22, 1927.
# * Q. McNemar. *Note on the Sampling Error of the Difference between Correlated Proportions or Percentages.*
#   Psychometrika 12, 1947 (not used for verdicts here: it sees only the sampling of images, and a seed-to-seed
#   difference on the same images would pass for an effect).
# * S. Holm. *A Simple Sequentially Rejective Multiple Test Procedure.* Scand. J. Statistics 6, 1979.
# * B. Efron. *Bootstrap Methods: Another Look at the Jackknife.* Annals of Statistics 7, 1979.
# * S. Bird et al. *Fairlearn: A toolkit for assessing and improving fairness in AI.* Microsoft, MSR-TR-2020-32,
#   2020 (group metrics as differences and ratios; the tests compare with `fairlearn.metrics.MetricFrame`).
#
# Full list, complete, with what each source contributes: the report's [references page](references.html)
# (generated from `lib/references.py`, like the *References* section of `README.md`).

# %% [markdown]
# ## Appendix: every verdict, generated from the saved tables
# Notebook 03's from-scratch verdicts, word for word (written from the same saved table), then the permutation
# tests (the verification audits' lists are in their sections above).

# %%
display(Markdown(analysis.conclusion(comparisons, status, gap_tests=gap_tests)))
