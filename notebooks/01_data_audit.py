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
# # 01 · Data audit: FairFace and LFW
#
# Before training anything we look at the data the later notebooks use: how large each split is, how the
# labels are distributed, what the images look like, whether the same image occurs twice (and with which
# labels), and whether the LFW protocols really keep training and test identities apart.
# Every number below is computed from the files on disk for this run's profile.

# %% tags=["parameters"]
# papermill sets these from params/<profile>.yaml; opened interactively they are the `default` profile. A run writes
# data/results/<profile>/ and figures/<profile>/ (never reports/): the committed real results only if profile = "real".
profile = "default"  # which params/<profile>.yaml produced this run
seed = 0  # sampling seed for the face grids and image statistics
synthetic_preset = "default"  # size of the embedded synthetic dataset (smoke | default)
fairface_source = "synthetic"  # synthetic | shared | hub | a folder path
lfw_source = "synthetic"  # synthetic | shared | sklearn (download) | a folder path (lfw/, lfw-deepfunneled/, or sklearn's lfw_home)
fairface_padding = "0.25"  # FairFace crop margin: "0.25" or "1.25" (only used by the Hub source)
audit_full_labels = False  # also audit the full release label files (real data folder, fairface/labels_full)
hash_lfw = True  # hash every LFW image to find exact duplicates
allow_cpu = True  # False (the colab profile): stop at once when no CUDA GPU is visible

# %%
try:  # a kernel from another environment says which kernel to choose, instead of an ImportError below
    import lib  # noqa: F401
except ImportError:
    import sys
    raise RuntimeError(f"This kernel ({sys.executable}) cannot import the project's library `lib`. Choose the kernel "
                       "'angular-margin-fairness' (Kernel → Change Kernel…; `make lab` registers it and starts JupyterLab "
                       "with it), or on Colab run the setup cell first (README: Edit on Colab).") from None
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from lib import audit, download, fairface, lfw, parameters, paths, plots, synthetic, tables
from lib.labels import RACES

plots.setup_style()
tables.setup_display()  # every table in one number format, no cell cut short
parameters.validate("01_data_audit", globals())  # every parameter checked before any work
pd.set_option("display.max_columns", 30)
pd.set_option("display.width", 140)

if "synthetic" in (fairface_source, lfw_source):
    synthetic.ensure_synthetic(preset=synthetic_preset)
if lfw_source == "sklearn":
    download.ensure_sklearn_lfw()  # scikit-learn's downloader, once (FACE_STORAGE keeps it across sessions)
fairface_root = paths.dataset_root(fairface_source, "fairface", synthetic_preset)
lfw_root = paths.dataset_root(lfw_source, "lfw", synthetic_preset)
is_synthetic = fairface_source == "synthetic"
display(Markdown(f"**Profile** `{profile}` · FairFace from `{fairface_source}` · LFW from `{lfw_source}`"))

# %% [markdown]
# ## FairFace
#
# FairFace (Kärkkäinen & Joo, WACV 2021) is a face-attribute dataset built to be balanced across seven
# **perceived race** categories, annotated by crowd workers from the image alone, together with perceived
# gender and an age bracket. These are social categories read off a photograph, not facts about a person.
# The course report we reproduce trained a race *classifier*; we do the same only to reproduce it and to
# measure how accuracy differs between groups — not to promote race classification.

# %%
faces = fairface.load_fairface(fairface_root, padding=fairface_padding)
label_column_note = "synthetic groups" if is_synthetic else "FairFace perceived race"
display(Markdown(f"Loaded **{len(faces):,}** images ({label_column_note}) from {paths.describe_source(fairface_root)}."))
if is_synthetic:
    display(Markdown("These are generated faces: the `race` column holds seven neutral groups (`Group A` … "
                     "`Group G`) of a generated population with overlapping appearance."))
audit.split_sizes(faces)

# %% [markdown]
# ### Label distributions
# Shares within each split. A classifier's overall accuracy is an average over these groups, so a skewed
# split would weight some groups more than others; FairFace was collected to keep race roughly balanced.

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4), width_ratios=[7, 2.5, 9])
for ax, column in zip(axes, ("race", "gender", "age")):
    plots.label_distribution(faces, column, ax=ax, title=f"{column.capitalize()} by split", legend=column == "age")
fig.suptitle(f"FairFace label distributions ({profile})")
plots.save_figure(fig, "01_fairface_label_distributions", profile)
plt.show()

# %%
race_counts = audit.label_counts(faces, "race")
race_counts

# %%
display(audit.label_counts(faces, "gender"))
audit.label_counts(faces, "age")

# %%
shares = race_counts["share"]
spread = (shares.max() - shares.min())
display(Markdown(
    "Largest and smallest group share per split: "
    + "; ".join(f"{split}: {shares[split].idxmax()} {shares[split].max():.1%} vs "
                f"{shares[split].idxmin()} {shares[split].min():.1%}" for split in shares.columns)
    + ". Per-group accuracies later are therefore measured on groups of different sizes: the per-group "
    "intervals in notebooks 03 and 04 account for that, since they resample each group's own validation images "
    "(besides the training seeds), so a smaller group gets a wider interval."
))

# %% [markdown]
# ### The `service_test` subset
# FairFace marks a race- and gender-balanced subset (`service_test == True`) meant for evaluating services.
# Notebook 04 compares accuracy on it with accuracy on the full validation set.

# %%
audit.service_test_balance(faces)

# %% [markdown]
# ### What the faces look like
# A random sample per group (seeded). The images are the dataset's own crops; FairFace's 0.25 release crops
# tightly around the face.

# %%
rng = np.random.default_rng(seed)
train_faces = faces[faces["split"] == "train"]
groups = [g for g in faces["race"].cat.categories if (train_faces["race"] == g).any()]
rows = {}
for group in groups:
    members = train_faces[train_faces["race"] == group]
    picks = rng.choice(len(members), size=min(8, len(members)), replace=False)
    rows[group] = [fairface.decode_image(members["image"].iloc[i], size=96) for i in picks]
fig = plots.face_grid(rows, title=f"Random training faces per group ({profile})")
plots.save_figure(fig, "01_fairface_faces_per_group", profile)
plt.show()

# %% [markdown]
# ### Image sizes and formats
# Releases differ (224x224 and 448x448 both occur), so every loader resizes and never asserts a size.

# %%
image_stats = audit.image_statistics(faces["image"], sample=400, seed=seed)
audit.summarize_image_statistics(image_stats)

# %% [markdown]
# ### Exact duplicates
# We hash every image's bytes (SHA-256). Byte-identical files inside one split count the same face twice;
# across train and validation they leak test images into training; and copies with different labels show
# label noise that caps the accuracy any model can reach on them.

# %%
fairface_hashes = audit.content_hashes(faces["image"], desc="hashing FairFace")
duplicates = audit.find_duplicates(faces, fairface_hashes)
audit.duplicate_summary(duplicates)

# %%
duplicates.assign(hash=duplicates["hash"].str[:12]).head(20)

# %%
conflicting = duplicates[duplicates["conflicting_labels"] != ""]
n_groups = duplicates["group"].nunique() if len(duplicates) else 0
n_across = duplicates.loc[duplicates["scope"] == "across splits", "group"].nunique() if len(duplicates) else 0
display(Markdown(
    f"**{n_groups}** sets of byte-identical images ({len(duplicates)} files); **{n_across}** of them span "
    f"train and validation; **{conflicting['group'].nunique() if len(conflicting) else 0}** carry conflicting "
    f"labels ({', '.join(sorted(set(', '.join(conflicting['conflicting_labels']).split(', ')) - {''})) or 'none'}). "
    "Validation copies of training images make validation accuracy slightly optimistic; we report the count "
    "rather than silently dropping them, so the numbers stay comparable with the course report."
))

# %%
if len(duplicates):
    # Conflicting-label sets first, then sets spanning train and val, then the rest; one row per set
    # (keyed by its id: two sets with the same scope and conflict must not share a row).
    dup_rows = {}
    for group in audit.duplicate_sets_to_show(duplicates, limit=6):
        members = duplicates[duplicates["group"] == group]
        refs = faces.set_index("id").loc[members["id"], "image"]
        captions = [f"{r.id}\n{r.race}, {r.gender}, {r.age}" for r in members.itertuples()]
        conflict = members["conflicting_labels"].iloc[0]
        label = f"set {group}: {members['scope'].iloc[0]}\n" + (f"conflict: {conflict}" if conflict else "labels agree")
        dup_rows[label] = [(fairface.decode_image(ref, size=96), c) for ref, c in zip(refs, captions)]
    fig = plots.face_grid(dup_rows, title="Byte-identical images (file, labels under each copy)", cell=1.6)
    plots.save_figure(fig, "01_fairface_duplicates", profile)
    plt.show()

# %% [markdown]
# ### Padding 0.25 vs 1.25: same images, different crop
# FairFace is released twice: `padding=0.25` and `padding=1.25`. Both contain **the same photographs of the
# same people with the same labels**; only the crop margin around the detected face differs. The padding is
# that of dlib's face-chip extraction (`get_face_chip`), whose documentation says "a padding of 0.5 would
# double the width of the cropped area, a value of 1 would triple it": the crop side is (1 + 2p) times the
# aligned face box, **1.5x for 0.25 and 3.5x for 1.25**, so the 1.25 crops show hair, ears, neck and
# background. The FairFace course report called 0.25 the "small" and 1.25 the "larger" dataset and
# attributed its 2–3 point gain to data size. That is wrong: the number of images is identical, so any
# difference is an effect of **context around the face** (and of resolution per face), not of more data.

# %% [markdown]
# ### The full release's label files
# Only run in the `real` profile: the complete official label files (`labels_full/`) describe all 86,744
# training and 10,954 validation images, not only the subset whose images we have.

# %%
if audit_full_labels:
    full = fairface.read_labels(paths.SHARED_FAIRFACE / "labels_full")
    display(audit.split_sizes(full))
    display(audit.label_counts(full, "race"))
    display(Markdown(
        f"`service_test` rows in the full release: train {int(full.loc[full.split == 'train', 'service_test'].sum()):,}, "
        f"val {int(full.loc[full.split == 'val', 'service_test'].sum()):,}."
    ))
    subset_share = audit.label_counts(faces, "race")["share"]
    full_share = audit.label_counts(full, "race")["share"]
    comparison = pd.DataFrame({"subset train": subset_share["train"], "full train": full_share["train"],
                               "subset val": subset_share["val"], "full val": full_share["val"]})
    display(comparison)
else:
    print("Skipped: this profile does not audit the full FairFace label files.")

# %% [markdown]
# ## LFW
#
# Labeled Faces in the Wild: photographs of public figures, named by identity. It comes with two
# protocols. **View 1** is for development: `peopleDevTrain`/`pairsDevTrain` to train and tune,
# `peopleDevTest`/`pairsDevTest` to test, with no identity in both. **View 2** (`pairs.txt`) is for the final
# score: 10 folds of matched and mismatched pairs, identity-disjoint, scored by 10-fold cross-validation.

# %%
faces_lfw = lfw.load_lfw(lfw_root)
counts = audit.images_per_identity(faces_lfw.images)
display(Markdown(
    f"**{len(faces_lfw.images):,}** images of **{counts.size:,}** identities; "
    f"{(counts == 1).sum():,} identities ({(counts == 1).mean():.0%}) have a single image, "
    f"{(counts >= 10).sum():,} have ten or more (the most: {counts.index[0]} with {counts.iloc[0]})."
))
ax = plots.images_per_identity(counts, title=f"LFW images per identity ({profile})")
plots.save_figure(ax.figure, "01_lfw_images_per_identity", profile)
plt.show()

# %%
lfw_sample = faces_lfw.images.sample(n=min(16, len(faces_lfw.images)), random_state=seed)
samples = [(fairface.decode_image(p, size=112), name.replace("_", " ")) for p, name in
           zip(lfw_sample["path"], lfw_sample["name"])]
fig = plots.face_grid({f"row {i}": samples[i:i + 8] for i in range(0, len(samples), 8)},
                      title=f"Random LFW images with their identity ({profile})", cell=1.3, row_labels=False)
plots.save_figure(fig, "01_lfw_samples", profile)
plt.show()

# %% [markdown]
# ### View 2: are the ten folds identity-disjoint?
# The 10-fold protocol is only honest if no person appears in two folds: otherwise the threshold chosen on
# nine folds has seen the test fold's people. The matrix counts identities shared by each pair of folds.

# %%
pairs = faces_lfw.pairs
display(pairs.groupby("fold")["same"].agg(matched="sum", pairs="size").T)
overlap = audit.fold_overlap_matrix(pairs)
off_diagonal = int(overlap.to_numpy().sum() - np.trace(overlap.to_numpy()))
ax = plots.overlap_heatmap(overlap, "Identities shared between View 2 folds")
plots.save_figure(ax.figure, "01_lfw_fold_overlap", profile)
plt.show()
display(Markdown(f"Shared identities off the diagonal: **{off_diagonal}** "
                 f"({'the folds are identity-disjoint' if off_diagonal == 0 else 'the folds leak identities'})."))

# %% [markdown]
# ### View 1 vs View 2: the leakage trap
# Notebook 02 trains on View 1's DevTrain people. If those people also appear in View 2's pairs, a View 2
# score of that model is inflated: it has learned those very faces.

# %%
train_names = faces_lfw.people_dev_train["name"]
test_names = set(faces_lfw.people_dev_test["name"])
pair_train_names = audit.pair_identities(faces_lfw.dev_train_pairs)["name"]
leak = pd.DataFrame({
    "View 1 DevTrain people (peopleDevTrain)": audit.view_overlap(train_names, pairs, faces_lfw.images),
    "names in pairsDevTrain.txt": audit.view_overlap(pair_train_names, pairs, faces_lfw.images),
})
display(leak)
people_leak = leak.iloc[:, 0]
display(Markdown(
    f"View 1 DevTrain and DevTest share **{len(set(train_names) & test_names)}** identities. "
    f"The DevTrain people share **{people_leak['shared_identities']:,}** identities "
    f"({people_leak['shared_identity_images']:,} images) with View 2, touching "
    f"{people_leak['view2_pairs_touching_shared']:,} of its {people_leak['view2_pairs']:,} pairs; counting only the "
    f"names used in `pairsDevTrain.txt` (what the course report trained on), the overlap is "
    f"**{leak.iloc[:, 1]['shared_identities']:,}** identities. "
    "**Consequence:** a model trained on DevTrain is scored on View 1 DevTest (identity-disjoint) in this "
    "project; a View 2 number for it would be contaminated by faces seen in training and is not reported "
    "as an LFW result."
))
if faces_lfw.people_from_pairs:
    display(Markdown("**Note:** this LFW copy has no people files; View 1 identities were taken from the pair files."))

# %% [markdown]
# ### Exact duplicates in LFW

# %%
if hash_lfw:
    lfw_table = faces_lfw.images.assign(id=faces_lfw.images["path"], split="all", race="", gender="", age="")
    lfw_table = lfw_table.rename(columns={"path": "image"})
    lfw_hashes = audit.content_hashes(lfw_table["image"], desc="hashing LFW")
    lfw_dups = audit.find_duplicates(lfw_table, lfw_hashes)
    display(Markdown(f"Byte-identical LFW files: **{len(lfw_dups)}** in {lfw_dups['group'].nunique() if len(lfw_dups) else 0} groups."))
    display(lfw_dups[["group", "id"]].head(10))

# %% [markdown]
# ### Gender labels for LFW
# LFW has no demographic labels of its own. Notebook 04 uses third-party per-image gender lists
# (`male_names.txt`, `female_names.txt`, CRLF line endings). Images in both lists or in neither are
# reported, not guessed.

# %%
gender_folder = paths.lfw_gender_folder(lfw_root)  # the copy's own gender/ folder, else the lists shipped in data/lfw_gender/
if gender_folder.is_dir():
    genders, gender_report = lfw.load_lfw_gender(gender_folder, faces_lfw)
    display(genders["gender"].value_counts(dropna=False).rename("images").to_frame())
    display(pd.Series({k: v for k, v in gender_report.items() if not isinstance(v, list)}, name="count").to_frame())
else:
    print("No gender lists for this LFW copy.")

# %% [markdown]
# ## Saved for the findings
# The counts the findings below quote, one row each (`data/results/<profile>/01_audit.csv`).

# %%
from lib import findings
from lib.tables import write_csv

validation_shares = shares["val"] if "val" in shares.columns else shares.iloc[:, -1]
audit_counts = pd.DataFrame([
    ("FairFace images", len(faces)),
    ("smallest validation race group", validation_shares.idxmin()),
    ("smallest validation race share", validation_shares.min()),
    ("largest validation race group", validation_shares.idxmax()),
    ("largest validation race share", validation_shares.max()),
    ("byte-identical sets across train and validation", n_across),
    ("byte-identical sets with conflicting labels", conflicting["group"].nunique() if len(conflicting) else 0),
    ("View 1 DevTrain/DevTest shared identities", len(set(train_names) & test_names)),
    ("View 1 DevTrain people in View 2", people_leak["shared_identities"]),
], columns=["quantity", "value"])
planted = synthetic.read_metadata(fairface_root.parent) if is_synthetic else None
if planted:  # what lib.synthetic planted, for the findings to compare with what was found
    kinds = [duplicate["kind"] for duplicate in planted["planted_duplicates"]]
    audit_counts = pd.concat([audit_counts, pd.DataFrame([
        ("planted byte-identical sets across train and validation", kinds.count("across splits")),
        ("planted byte-identical sets with conflicting labels",
         sum(bool(duplicate["conflicting_label"]) for duplicate in planted["planted_duplicates"])),
    ], columns=["quantity", "value"])], ignore_index=True)
print("wrote", paths.shown(write_csv(audit_counts, paths.results_dir(profile) / "01_audit.csv")))

# %% [markdown]
# ## Findings
# What the audit means for the experiments, in words; every number is read from `01_audit.csv` and checked
# again when the report is rendered. Padding 0.25 vs 1.25 is a crop-context comparison on the same images,
# not a data-size comparison (section above).

# %%
findings.data_audit_findings(paths.results_dir(profile), profile, synthetic=is_synthetic)

# %% [markdown]
# ## References
# * K. Kärkkäinen, J. Joo. *FairFace: Face Attribute Dataset for Balanced Race, Gender, and Age for Bias
#   Measurement and Mitigation.* WACV 2021; its repository `joojs/fairface` (README: faces cropped with
#   dlib's `get_face_chip()`, padding 0.25 and 1.25).
# * D. E. King. *Dlib-ml: A Machine Learning Toolkit.* JMLR 10, 2009; the documentation of
#   `get_face_chip_details` (`dlib/image_transforms/interpolation_abstract.h`): "a padding of 0.5 would
#   double the width of the cropped area, a value of 1 would triple it".
# * G. B. Huang, M. Ramesh, T. Berg, E. Learned-Miller. *Labeled Faces in the Wild: A Database for Studying
#   Face Recognition in Unconstrained Environments.* UMass Amherst TR 07-49, 2007 (View 1, View 2).
# * G. B. Huang, M. Mattar, H. Lee, E. Learned-Miller. *Learning to Align from Scratch.* NIPS 2012
#   (the deep-funneled LFW images).
#
# Full list, complete, with what each source contributes: the report's [references page](references.html)
# (generated from `lib/references.py`, like the *References* section of `README.md`).
