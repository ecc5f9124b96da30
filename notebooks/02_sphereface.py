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
# # 02 · SphereFace on LFW: the course report, corrected
#
# The SphereFace course report trained a small CNN with an A-Softmax loss on LFW View 1 and reported a
# verification accuracy of 0.584 → 0.652 at a fixed cosine threshold of 0.5. Its loss had three bugs (quoted
# from its code below, *What the course report did*). Here the same network is trained with the course's loss
# (reproduced bugs included, only to compare), a plain softmax, a normalized softmax, the paper's A-Softmax
# (m = 4, annealed) and CosFace, all on the same data with the same schedule, and scored with the proper protocol: a 10-fold cross-validated
# threshold on the identity-disjoint View 1 DevTest pairs, beside the course's fixed 0.5.

# %% [markdown]
# ## What the course report did
# **Its setting** (the COSI 159A homework "159 Assignment 2 - Sphereface", repository
# `sonnygeorge/sphereface`, commit `0ac96a0`): `model.py`'s `SphereCNN` (four stride-2 3×3 convolutions,
# 32-128-256-512 channels, `Linear(512 * 5 * 5, 512)`) trained as a classifier over every LFW identity folder
# (`dataloader.py`: `names = os.listdir(img_folder)`, 5,749 classes) on the images named in
# `pairsDevTrain.txt`, the whole 250×250 image resized to 96 px (`transforms.Resize(96)`) with random
# flips; Adam, learning rate 1e-3, batch 128, 100 epochs, seed 2021 (`main.py`). Every 20 epochs it scored
# the DevTest pairs by the cosine of their two features against a fixed threshold (`main.py`,
# `eval(..., threshold: float = 0.5)`).
#
# **Its numbers** (`README.md`, column "Test Acc."; the README labels the rows with the 0-based loop index
# 19, 39, …, i.e. after 20, 40, … epochs):
#
# | epochs trained | 20 | 40 | 60 | 80 | 100 |
# |---|---|---|---|---|---|
# | DevTest accuracy at cosine 0.5 | 0.584 | 0.623 | 0.652 | 0.651 | 0.649 |
#
# **What this notebook corrects**, quoted from `model.py` at `0ac96a0` (`AngularPenaltySMLoss`):
#
# 1. *The weights are never normalized* (lines 23–24):
#    `for W in self.fc.parameters(): W = F.normalize(W, p=2, dim=1)` rebinds the loop variable and leaves
#    `self.fc.weight` unchanged, so `wf = self.fc(x)` (line 28) is ‖w‖·cos θ rather than cos θ, and it is
#    clamped to ±(1 − ε) before `torch.acos` (no gradient beyond the clamp).
# 2. *A non-monotonic target logit* (lines 30–39): `numerator = torch.cos(self.m * torch.acos(torch.clamp(...)))`.
#    With m = 4, cos(4θ) falls from θ = 0° to 45° and rises again up to 90°, so between 45° and 90° the loss
#    rewards moving a feature *away* from its class. SphereFace uses ψ(θ) = (−1)ᵏ cos(mθ) − 2k for
#    θ ∈ [kπ/m, (k+1)π/m], which keeps falling (Liu et al. 2017, following L-Softmax, Liu et al. 2016).
# 3. *No scale and no annealing*: the logits are unscaled (cosines of unit features), and the paper's λ,
#    which starts as a plain softmax and phases the margin in, is absent.
# 4. *A Python loop over the batch* (lines 41–47): `torch.cat([torch.cat((wf[i, :y], wf[i, y + 1 :])).unsqueeze(0)
#    for i, y in enumerate(labels)], dim=0)`. Its values are right; `lib.losses.CourseSphereFaceHead`
#    computes the same loss with one scatter (bugs 1–3 kept, to reproduce the report).
# 5. *The evaluation*: the fixed threshold 0.5 instead of LFW's protocol (the threshold chosen on nine folds
#    and applied to the tenth, Huang et al. 2007).
#
# Here the course loss (`course_sphereface`) trains beside the corrected heads on DevTrain's *people* (not the
# pairsDevTrain images, so no DevTest identity is ever a class), and every head is scored both ways. The
# course report's numbers and this run's stand side by side at the end of the notebook.

# %% tags=["parameters"]
profile = "default"  # which params/<profile>.yaml produced this run
seed = 0  # model initialisation, shuffling, augmentation and the DevTest CV folds
synthetic_preset = "default"  # size of the embedded synthetic dataset (smoke | default)
lfw_source = "synthetic"  # synthetic | shared | a folder path (lfw/, lfw-deepfunneled/, sklearn's lfw_home)
heads = ["course_sphereface", "softmax", "normsoftmax", "sphereface", "cosface"]  # lib.losses names
head_hparams = {}  # per-head overrides, e.g. {"cosface": {"margin": 0.4}}
model_name = "spherecnn"  # the course network (lib.models)
image_size = 96  # network input (SphereCNN needs 96)
crop = 150  # centre crop (px) of the 250x250 LFW image before resizing; null keeps the whole image
epochs = 15
batch_size = 128
lr = 1e-3  # Adam, as in the course report
weight_decay = 0.0  # L2 penalty added to the gradient by Adam (the course used none)
schedule = None  # learning-rate schedule: None (constant, as the course) | "cosine" | "step"
eval_every = 5  # DevTest accuracy every few epochs (the course printed it every 20)
flip = True  # fuse the embeddings of each image and its mirror image
max_shift = 0  # random translation (pixels) on top of the random flip
erase = 0.0  # probability of random erasing (a grey rectangle, 2-33 % of the image) per training image
dropout = 0.0  # dropout before SphereCNN's embedding layer while training (the course used none)
toy_identities = 6  # classes in the 2-D/3-D margin picture
toy_steps = 600
device = "auto"  # auto | cpu | cuda | mps
amp = "auto"  # mixed precision: auto (bf16 on CUDA, off elsewhere) | bf16 (also on a CPU) | false

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from lib import lfw, lfw_experiment as experiment, margin_geometry as geometry, paths, plots, synthetic
from lib.training import resolve_device

plots.setup_style()
pd.set_option("display.precision", 4)
if lfw_source == "synthetic":
    synthetic.ensure_synthetic(preset=synthetic_preset)
lfw_root = paths.dataset_root(lfw_source, "lfw", synthetic_preset)
checkpoints = paths.checkpoints_dir(profile) / "02_sphereface"
notebook_start = time.perf_counter()
display(Markdown(f"**Profile** `{profile}` · LFW from `{lfw_root}` · device `{resolve_device(device)}` · "
                 f"{model_name} at {image_size}px (crop {crop}) · {epochs} epochs, batch {batch_size}, Adam {lr} "
                 f"(weight decay {weight_decay}), schedule {schedule or 'constant'} · random flip"
                 + (f" and shift ±{max_shift}px" if max_shift else "")
                 + (f", random erasing p={erase}" if erase else "") + (f" · dropout {dropout}" if dropout else "")
                 + f" · mixed precision `{amp}`"))

# %% [markdown]
# ## What the margin does, before any face: the paper's bounds on m
# A-Softmax assigns a feature to class *i* only when m·θᵢ < θⱼ for every other class *j*. The paper asks for
# which m the largest angle inside a class is at most the smallest angle between classes, and proves
# m ≥ 2+√3 for two classes and m ≥ 3 for many. `lib.margin_geometry` finds both bounds numerically from the
# decision rule (bisection over the weight configurations), without the closed forms.

# %%
binary_bound = geometry.binary_margin_bound()
multiclass_bound = geometry.multiclass_margin_bound()
display(pd.DataFrame({
    "found numerically": [binary_bound.value, multiclass_bound.value],
    "paper": [2 + np.sqrt(3), 3.0],
}, index=["binary (Property 2)", "multi-class (Property 3)"]))
fig = geometry.plot_margin_bounds(binary_bound, multiclass_bound)
plots.save_figure(fig, "02_margin_bounds", profile)
plt.show()

# %% [markdown]
# ## The data: View 1
# We train an identity classifier on the **DevTrain people** and verify the **DevTest pairs**, whose people
# the network has never seen. Notebook 01 showed why View 2 is not used here: it shares thousands of
# identities with DevTrain. Images are decoded once into a uint8 cache (`data/cache/`).

# %%
faces = lfw.load_lfw(lfw_root)
data = experiment.load_view1(faces, size=image_size, crop=crop)
display(pd.Series({
    "training images (DevTrain people)": len(data.train_images),
    "training identities": data.num_classes,
    "DevTest pairs": len(data.pairs),
    "matched DevTest pairs": int(data.same.sum()),
    "distinct DevTest images": len(data.pair_images),
}, name="count").to_frame())
if faces.people_from_pairs:
    display(Markdown(f"**Note:** {faces.note}"))

# %% [markdown]
# ### The classic picture: features on the circle and the sphere
# A tiny CNN with a 2-D and a 3-D embedding, trained on the `toy_identities` identities with the most training images,
# with softmax and with A-Softmax for m = 1…4. With a larger m each class's features crowd closer to their
# weight direction; the normalized Angular Fisher score (within-class over between-class angular scatter,
# lower is more compact) in each title measures it.

# %%
counts = pd.Series(data.train_labels.numpy()).value_counts()
toy_classes = counts.index[:toy_identities].to_numpy()
toy_mask = np.isin(data.train_labels.numpy(), toy_classes)
toy_images, toy_labels = data.train_images[toy_mask], data.train_labels[toy_mask]
print(f"{len(toy_images)} images of {len(toy_classes)} identities; {toy_steps} steps per setting")
toy = {dim: geometry.train_margin_sweep(toy_images, toy_labels, embedding_dim=dim, steps=toy_steps, seed=seed)
       for dim in (2, 3)}
display(pd.concat({f"{dim}-D": geometry.summarize_toy_embeddings(results) for dim, results in toy.items()}))

# %%
fig = geometry.plot_features_2d(toy[2])
plots.save_figure(fig, "02_toy_features_2d", profile)
plt.show()
fig = geometry.plot_features_3d(toy[3])
plots.save_figure(fig, "02_toy_features_3d", profile)
plt.show()

# %% [markdown]
# ## Training every head on the same data
# Same network (`SphereCNN`: four stride-2 convolutions, 32-128-256-512, `Linear(512·25, 512)`), same
# initialisation seed, same order of batches, same random flips; only the loss head differs. Checkpoints
# are written every epoch, so an interrupted run resumes and a finished one is reloaded instead of retrained.

# %%
runs = []
for head_name in heads:
    run = experiment.train_head(
        head_name, data, head_hparams=head_hparams.get(head_name, {}), model_name=model_name,
        image_size=image_size, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
        schedule=schedule, seed=seed,
        eval_every=eval_every, flip=flip, max_shift=max_shift, erase=erase, dropout=dropout,
        checkpoint_dir=checkpoints, device=device, amp=amp,
    )
    runs.append(run)
    print(f"{head_name:>18}: 10-fold {run.result.cv.mean:.3f} ± {run.result.cv.std:.3f}, "
          f"fixed 0.5 {run.result.fixed_accuracy:.3f}, {run.history['seconds'].sum() / 60:.1f} min")
history = pd.concat([run.history for run in runs], ignore_index=True)

# %% [markdown]
# ### Loss and λ by epoch
# The losses are not comparable in level across heads (each has its own scale and margin), only in shape.
# A-Softmax's λ starts at 1000 (the plain `‖x‖cos θ` softmax) and decays to λ_min = 5, where the margin is
# only partly in force: the target logit is (λ cos θ + ψ(θ))/(1 + λ).

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for head_name, group in history.groupby("head", sort=False):
    axes[0].plot(group["epoch"], group["loss"], marker="o", ms=3, label=head_name)
axes[0].set(title="Training loss by epoch", xlabel="epoch", ylabel="loss (batch mean)", yscale="log")
axes[0].legend()
if "lambda" in history:
    sphere = history.dropna(subset=["lambda"])
    for head_name, group in sphere.groupby("head", sort=False):
        axes[1].plot(group["epoch"], group["lambda"], marker="o", ms=3, label=head_name)
    axes[1].set(title="A-Softmax annealing weight λ (epoch mean)", xlabel="epoch", ylabel="λ", yscale="log")
    axes[1].legend()
else:
    axes[1].set_axis_off()
plots.save_figure(fig, "02_loss_and_lambda", profile)
plt.show()

# %% [markdown]
# ### Verification accuracy during training: 10-fold threshold vs the course's fixed 0.5
# The course scored every pair against a cosine of 0.5. Thresholds that maximise accuracy sit much lower for
# margin losses, so a fixed 0.5 under-reports; the 10-fold figure chooses the threshold on nine folds of
# DevTest and applies it to the tenth.

# %%
evaluated = history.dropna(subset=["acc_10fold"])
display(evaluated.pivot(index="epoch", columns="head", values=["acc_10fold", "acc_fixed_0.5"]).round(3))
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
for ax, column, title in zip(axes, ["acc_10fold", "acc_fixed_0.5"],
                             ["10-fold cross-validated threshold", "fixed threshold 0.5 (the course's way)"]):
    for head_name, group in evaluated.groupby("head", sort=False):
        ax.plot(group["epoch"], group[column], marker="o", label=head_name)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set(title=title, xlabel="epoch", ylabel="DevTest verification accuracy")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
axes[0].legend()
plots.save_figure(fig, "02_accuracy_by_epoch", profile)
plt.show()

# %% [markdown]
# ### ROC curves on DevTest

# %%
fig, ax = plt.subplots(figsize=(6, 5))
for run in runs:
    ax.plot(run.result.roc.fpr, run.result.roc.tpr, label=f"{run.head} (AUC {run.result.roc.auc:.3f})")
ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=0.8, label="chance")
ax.set(title="DevTest ROC (flip-fused cosine scores)", xlabel="false accept rate",
       ylabel="true accept rate")
ax.legend(loc="lower right", fontsize=8)
plots.save_figure(fig, "02_roc", profile)
plt.show()

# %% [markdown]
# ## Final results
# Mean ± std over the ten DevTest folds with a 95 % t-interval, the fixed-0.5 accuracy, the mean 10-fold
# threshold, ROC summaries and the Angular Fisher score of the DevTest features (lower = more compact
# identities; `afs` on raw, `afs_normalized` on L2-normalized features). TAR at FAR 1e-3 is NaN when DevTest
# has fewer than 1,000 impostor pairs (it cannot be resolved).

# %%
table = experiment.summary_table(runs)
table

# %%
by_head = {run.head: run for run in runs}
comparisons = []
for a, b in [("sphereface", "softmax"), ("cosface", "softmax"), ("sphereface", "course_sphereface"),
             ("cosface", "sphereface")]:
    if a in by_head and b in by_head:
        diff = experiment.paired_difference(by_head[a], by_head[b])
        comparisons.append({"comparison": f"{a} − {b}", "mean difference": diff.mean,
                            "95% CI low": diff.lower, "95% CI high": diff.upper,
                            "excludes 0": not (diff.lower <= 0 <= diff.upper)})
comparisons = pd.DataFrame(comparisons).set_index("comparison")
comparisons

# %%
best = table["acc_10fold"].idxmax()
course = table.loc["course_sphereface"] if "course_sphereface" in table.index else None
lines = [f"The best head is **{best}** with a 10-fold DevTest accuracy of **{table.loc[best, 'acc_10fold']:.3f}** "
         f"(95 % CI {table.loc[best, 'ci95_low']:.3f}–{table.loc[best, 'ci95_high']:.3f}) after "
         f"{int(table.loc[best, 'epochs'])} epochs."]
if course is not None:
    lines.append(f"The course loss reaches {course['acc_10fold']:.3f} with the 10-fold threshold and "
                 f"{course['acc_fixed_0.5']:.3f} at the fixed 0.5 (the report: 0.584 → 0.652 at 0.5 after 20–60 "
                 f"epochs, with the whole 250-px image resized and trained on the pairsDevTrain images).")
if "sphereface − softmax" in comparisons.index:
    row = comparisons.loc["sphereface − softmax"]
    verdict = "a real difference" if row["excludes 0"] else "not distinguishable from fold-to-fold noise"
    lines.append(f"A-Softmax minus softmax: {row['mean difference']:+.3f} "
                 f"(95 % CI {row['95% CI low']:+.3f} to {row['95% CI high']:+.3f}) — {verdict} at this size.")
display(Markdown(" ".join(lines)))

# %% [markdown]
# ### How this compares with the course report and the paper
# * **The course report** (0.584 → 0.652) scored with a fixed cosine threshold of 0.5; with that rule even a
#   good model looks poor, because margin losses put the best threshold far below 0.5. Its loss also never
#   normalised the weights and used the non-monotonic `cos(m·acos x)`, so its "A-Softmax" is a different loss.
# * **The paper** reports 98.20 % for its 4-layer CNN on View 2 — trained on CASIA-WebFace (494k images of
#   10,575 identities) with aligned 112×96 crops. Here the network sees View 1 DevTrain only (about 9.5k images,
#   most identities with one or two images), so absolute numbers are far lower; what transfers is the
#   comparison between heads under identical conditions, with its interval.
# * The intervals are over the ten DevTest folds of one training run (seed shown above); they capture
#   test-set sampling, not training randomness.
# * **Selection on the test pairs.** View 1 has no validation split, and the `real` profile's setting
#   (epochs, shift, dropout) was chosen from the one-head trials below, which are scored on DevTest too. The
#   chosen setting's number is therefore slightly optimistic: picking the best of a handful of runs whose
#   differences are the size of the noise favours a lucky one. The comparison between heads is not affected
#   in the same way, since every head gets the same setting.

# %% [markdown]
# ### Other settings tried on one head
# Before a full run of all heads, alternative settings were tried on one head with
# `scripts/sweep_lfw_settings.py` (the same `train_head` call, one setting changed): longer training, random
# shifts, random erasing, dropout, weight decay, a tighter crop, SGD, and bfloat16 autocast on the CPU
# (`amp`: `off` = float32). Each row is one training run scored like the table above; the row of this
# notebook's own run of the same head is shown for comparison. The column `final_train_accuracy` shows
# the problem these settings attack: without regularization SphereCNN classifies nearly every one of the
# 9,525 training images correctly, so it memorizes rather than learns features that carry to new people;
# dropout before the 6.55M-weight `fc5` layer (the `dropout` column) keeps it further from that.
#
# They are single runs on one seed, so differences of a point or two are within the fold-to-fold noise of
# the intervals. A trial with exactly this notebook's setting need not give the same number: the trials ran
# with one torch thread each (two at a time), the notebook with the machine's default, and a different
# thread count adds up the same sums in a different order, so the two trainings drift apart about as two
# seeds would.

# %%
sweep = experiment.sweep_table(paths.results_dir(profile) / "02_sweep")
if sweep.empty:
    print(f"No one-head trials for profile {profile!r} (scripts/sweep_lfw_settings.py writes them).")
else:
    display(sweep.style.format(precision=3).format("{:g}", subset=["weight_decay", "lr"]))
    for head_name in sweep["head"].unique():
        if head_name in table.index:
            trial_best = sweep[sweep["head"] == head_name].iloc[0]
            mine = table.loc[head_name]
            display(Markdown(
                f"Best trial for **{head_name}**: {trial_best['acc_10fold']:.3f} "
                f"({trial_best['ci95_low']:.3f}–{trial_best['ci95_high']:.3f}; {trial_best.name}); this "
                f"notebook's run: {mine['acc_10fold']:.3f} ({mine['ci95_low']:.3f}–{mine['ci95_high']:.3f}) "
                f"after {int(mine['epochs'])} epochs."))
    same_but_precision = experiment.precision_comparison(sweep)
    if not same_but_precision.empty:
        display(Markdown("The same setting trained in float32 (`off`) and in bf16 autocast: 10-fold accuracy. "
                         "bf16 is what makes the longer runs affordable on a CPU, so it must not cost accuracy."))
        display(same_but_precision.round(3))

# %% [markdown]
# ### Scores saved for the fairness analysis
# Per-pair cosine scores of every head go to `data/results/<profile>/02_lfw_pair_scores.csv`; notebook 04
# reads them (no retraining).

# %%
scores = experiment.pair_score_table(data, runs)
scores_path = paths.results_dir(profile) / "02_lfw_pair_scores.csv"
scores.to_csv(scores_path.with_suffix(".tmp"), index=False)
scores_path.with_suffix(".tmp").replace(scores_path)
table.to_csv(paths.results_dir(profile) / "02_summary.csv")
history.to_csv(paths.results_dir(profile) / "02_history.csv", index=False)
print(f"wrote {scores_path.relative_to(paths.ROOT)} ({len(scores):,} rows); "
      f"notebook time {(time.perf_counter() - notebook_start) / 60:.1f} min; training time stored in the "
      f"checkpoints {history['seconds'].sum() / 60:.1f} min (a re-run reloads finished heads instead of training)")

# %% [markdown]
# ## The course report beside this run
# The course report's fixed-0.5 accuracy by epochs trained (its README) beside this run's course loss at
# the same fixed 0.5 and with the 10-fold threshold, and the best corrected head with the 10-fold
# threshold; blank where a side has no evaluation at that epoch. This run's numbers are read back from
# `data/results/<profile>/02_history.csv`, written above. Only the `real` profile trains on LFW: in the
# synthetic profiles this run's columns come from generated faces and compare with nothing in the report.

# %%
from lib import course_reports

display(course_reports.sphereface_comparison(pd.read_csv(paths.results_dir(profile) / "02_history.csv"))
        .style.format(precision=3, na_rep=""))

# %% [markdown]
# ## References
# * W. Liu, Y. Wen, Z. Yu, M. Li, B. Raj, L. Song. *SphereFace: Deep Hypersphere Embedding for Face
#   Recognition.* CVPR 2017 (A-Softmax, ψ(θ), λ annealing, the bounds on m, the Angular Fisher score).
# * W. Liu, Y. Wen, Z. Yu, M. Yang. *Large-Margin Softmax Loss for Convolutional Neural Networks.* ICML 2016.
# * F. Wang, X. Xiang, J. Cheng, A. L. Yuille. *NormFace: L2 Hypersphere Embedding for Face Verification.*
#   ACM MM 2017 (normalized softmax with a scale).
# * H. Wang et al. *CosFace: Large Margin Cosine Loss for Deep Face Recognition.* CVPR 2018; F. Wang, J. Cheng,
#   W. Liu, H. Liu. *Additive Margin Softmax for Face Verification.* IEEE SPL 25(7), 2018.
# * G. B. Huang, M. Ramesh, T. Berg, E. Learned-Miller. *Labeled Faces in the Wild.* UMass Amherst TR 07-49,
#   2007 (View 1 / View 2, the 10-fold protocol); G. B. Huang, M. Mattar, H. Lee, E. Learned-Miller.
#   *Learning to Align from Scratch.* NIPS 2012 (deep-funneled images).
# * The course report: `sonnygeorge/sphereface` (GitHub), commit `0ac96a07649e12eb150183ba2d8313786d332bc6`:
#   `README.md` (its numbers), `model.py` (network and loss), `main.py` and `dataloader.py` (its setting).
#
# Full list, with what each source contributes: `README.md`, *References*.
