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
# changes that, and how sure we can be. Definitions follow `FACTS.md` §6 (RFW, NIST FRVT Part 3, fairlearn):
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
frvt_targets_trained = [1e-2, 1e-3]  # overall FMRs fixing the thresholds of the trained heads' DevTest audit
frvt_targets_pretrained = [1e-3, 1e-4, 1e-5]  # the same for the pretrained encoder on all of LFW
frvt_n_boot = 1000  # identity-bootstrap replicates of the verification audits
pretrained_encoder = "dlib"  # pretrained encoder audited on all of LFW (None: skip; needs `pip install -e ".[pretrained]"`)
n_boot = 2000  # bootstrap resamples for the gap differences
n_permutations = 2000  # permutations for the "is there a gap at all" test
seed = 0  # seeds the bootstrap and the permutations

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from lib import download, fairness_analysis as analysis, fairness_plots, frvt, lfw, parameters, paths, plots, pretrained
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
# ## LFW verification fairness, NIST FRVT Part 3 style
# The course report compared error rates of the two genders at each head's own threshold on the 500 + 500
# listed DevTest pairs (40 female impostor pairs, no intervals). Here, as in NIST's demographic study
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
# * **DET curves** (FNMR against FMR on log axes) per group, with the operating points marked.
#
# The scores are counted into 2^18 fixed bins per pair category in blocks of rows (`lib.frvt`), so all of
# LFW (87 million impostor pairs) takes seconds and never needs an N × N matrix or a sort of all scores.
#
# **Groups.** On real LFW the group is gender, from the image-level lists `male_names.txt` /
# `female_names.txt` published with M. Afifi and A. Abdelhamed, *AFIF4: Deep gender classification based
# on AdaBoost-based fusion of isolated facial features and foggy faces*, J. Vis. Commun. Image Represent.,
# 2019 (arXiv:1706.04277). Their authors built them from the attribute values of Kumar et al. (2011) and a
# first-name gender lookup (genderize.io), then reviewed each list by hand. Their limits: the labels are
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
# each trained head and seed (`02_devtest_embeddings.npz`). Each model is audited at overall FMR
# `frvt_targets_trained`; per head the table gives the mean over seeds, its interval (the same resampled
# people for every seed, so the interval covers the sampling of people behind that mean) and the range
# over seeds.

# %%
devtest_file = paths.RESULTS / profile / frvt.DEVTEST_EMBEDDINGS_FILE
trained_audit = None
if faces is None:
    display(Markdown("Skipped: no group labels."))
elif not devtest_file.is_file():
    display(Markdown(f"**Skipped:** `{paths.shown(devtest_file)}` does not exist; notebook 02 writes it "
                     f"(`python -m lib.notebooks run --profile {profile} --only 02`)."))
else:
    files, identities, models = frvt.read_model_embeddings(devtest_file)
    trained_audit = frvt.audit_models(models, identities, pd.Series(files).map(group_of_file).to_numpy(),
                                      target_fmrs=frvt_targets_trained, ratio=audit_ratio, order=audit_order,
                                      n_boot=frvt_n_boot, seed=seed)
    first = next(iter(trained_audit.audits.values())).counts
    display(Markdown(f"{len(files):,} DevTest images of {len(set(identities)):,} people, {len(models)} models: "
                     f"{first.n_genuine:,} genuine and {first.n_impostor:,} impostor pairs per model; "
                     f"{frvt_n_boot} identity-bootstrap replicates."))
    trained_rows = trained_audit.per_head[trained_audit.per_head["group"].isin([*audit_order, frvt.CROSS_GROUP, "overall"])]
    display(trained_rows.set_index(["head", "target_fmr", "group"]))
    display(trained_audit.ratios.set_index(["head", "target_fmr", "rate"]))

# %%
if trained_audit is not None:
    heads_02 = list(dict.fromkeys(head for head, _ in trained_audit.audits))
    fig, axes = plt.subplots(1, len(heads_02), figsize=(4.2 * len(heads_02), 4.2), squeeze=False, sharey=True)
    colors = {group: plt.rcParams["axes.prop_cycle"].by_key()["color"][i] for i, group in enumerate(audit_order)}
    for ax, head in zip(axes[0], heads_02):
        for n, ((model_head, model_seed), result) in enumerate(
                (key, value) for key, value in trained_audit.audits.items() if key[0] == head):
            points = result.rates[result.rates["group"].isin(audit_order)]
            frvt.det_plot(result.det[result.det["group"] != "overall"], points, ax=ax, colors=colors,
                          alpha=1.0 if n == 0 else 0.45, legend=(n == 0 and head == heads_02[0]), title=head)
    fig.suptitle(f"LFW DevTest all-vs-all DET per {audit_column} (one line per seed)")
    plots.save_figure(fig, f"04_lfw_{audit_column}_det_trained", profile)
    plt.show()

# %% [markdown]
# ### A demographic audit of a real model: dlib's face recognizer on all of LFW
# What a user would pick instead of training: dlib's ResNet face descriptor (`lib.pretrained`; 128-d, trained
# by dlib's author from scratch on about 3 million faces of 7,485 people from FaceScrub, VGG-Face and the web,
# with LFW's identities excluded: davisking/dlib-models, README.md). LFW is therefore a clean test set for
# it, and all 13,233 images can be audited: 242,257 genuine and about 87.3 million impostor pairs. Faces are
# found by dlib's HOG detector (the detection nearest the image centre) and aligned on 5 landmarks into
# 150 × 150 chips; when the detector finds no face, the landmarks are searched in a fixed fallback box (the
# median detection box on LFW), and the number of such images is reported. Descriptors are L2-normalized and
# compared by cosine. Targets: overall FMR `frvt_targets_pretrained`.

# %%
pretrained_audit = embeddings_lfw = None
reason = pretrained.unavailable_reason(pretrained_encoder) if pretrained_encoder else "pretrained_encoder is None"
if faces is None:
    display(Markdown("Skipped: no group labels."))
elif reason is not None:
    display(Markdown(f"**Skipped:** the pretrained encoder is not available. {reason}"))
else:
    encoder = pretrained.make_encoder(pretrained_encoder)
    lfw_images, embeddings_lfw = pretrained.embed_lfw(encoder, lfw.load_lfw(lfw_root))
    pretrained_audit = frvt.audit(embeddings_lfw.normalized(), lfw_images["name"].to_numpy(),
                                  lfw_images["file"].map(group_of_file).to_numpy(), target_fmrs=frvt_targets_pretrained,
                                  ratio=audit_ratio, order=audit_order, n_boot=frvt_n_boot, seed=seed)
    display(pd.Series({**embeddings_lfw.summary(), **pretrained_audit.counts.summary(),
                       "bootstrap seconds": round(pretrained_audit.bootstrap_seconds, 1)},
                      name=f"{encoder.name} on LFW").to_frame())
    display(pretrained_audit.rates.set_index(["target_fmr", "group"]))
    display(pretrained_audit.ratios.set_index(["target_fmr", "rate"]))

# %%
if pretrained_audit is not None:
    fig, ax = plt.subplots(figsize=(7, 5))
    frvt.det_plot(pretrained_audit.det, pretrained_audit.rates[pretrained_audit.rates["group"].isin(audit_order)],
                  ax=ax, title=f"{pretrained_encoder} on all LFW images: DET per {audit_column}")
    plots.save_figure(fig, f"04_lfw_{audit_column}_det_{pretrained_encoder}", profile)
    plt.show()

# %%
verification_summary = []
if trained_audit is not None:
    verification_summary.append(f"**Trained heads, LFW DevTest all-vs-all, per {audit_column}** (mean over seeds, "
                                "identity-bootstrap 95 % interval): "
                                + frvt.describe(trained_audit.per_head, trained_audit.ratios, audit_order))
if pretrained_audit is not None:
    counts_lfw = pretrained_audit.counts
    verification_summary.append(
        f"**{pretrained_encoder} on all {counts_lfw.n_images:,} LFW images, per {audit_column}** "
        f"({counts_lfw.n_genuine:,} genuine, {counts_lfw.n_impostor:,} impostor pairs; detector missed "
        f"{embeddings_lfw.n_fallback} faces, cut from the fallback box): "
        + frvt.describe(pretrained_audit.rates, pretrained_audit.ratios, audit_order)
        + f" Scoring ran at {counts_lfw.pairs_per_second / 1e6:.1f} M pairs/s.")
verification_summary = "\n\n".join(verification_summary)
display(Markdown(verification_summary or "No verification audit ran in this profile."))

# %% [markdown]
# ## Conclusion
# Computed from the tables above.

# %%
display(Markdown(analysis.conclusion(race_disparity, gap_diff, overall_tests, race_gap_tests, None,
                                     reference_head, n_seeds=len(seeds), per_group=by_race)))
display(Markdown(verification_summary))
