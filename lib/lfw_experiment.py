"""Notebook 02's experiment: train an identity classifier on LFW View 1 DevTrain people, then verify pairs
of people it never saw by the cosine of (flip-fused) embeddings.

Three pair sets, three roles:

* **validation pairs** — drawn, as LFW draws its pairs, among DevTrain identities *held out of training*
  (:func:`split_validation_identities`). Every setting (epochs, augmentation, regularization, learning
  rate, schedule) is chosen on these, never on DevTest.
* **training-identity pairs** — the same draw among the identities the network trains on: the gap between
  these and the validation pairs is the over-fitting picture.
* **DevTest pairs** (``pairsDevTest.txt``) — scored once per final model, after training.

DevTest has no official folds, so accuracy uses a 10-fold cross-validated threshold inside each pair set
(:func:`lib.verification.cross_validated_accuracy`) with the same folds for every head and seed
(``CV_SEED``), so per-pair results can be paired across heads and seeds. The course report's fixed 0.5
threshold is reported beside it, labelled as such.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lib import lfw as lfw_data
from lib.alignment import FaceAligner, alignment_problems
from lib.fairness import adjust_p_values
from lib.imagecache import ImageCache
from lib.losses import make_head
from lib.models import make_model
from lib.settings import NOT_TUNED, RunSettings, content_digest, data_digest
from lib.tables import result_files, write_csv
from lib.training import embed, fit, resolve_device, resolve_precision, seed_everything
from lib.verification import (
    FoldedAccuracy,
    angular_fisher_score,
    interval_over_seeds_and_pairs,
    interval_over_seeds_and_samples,
    cosine_scores,
    cross_validated_accuracy,
    fixed_threshold_accuracy,
    fuse_flip,
    roc_metrics,
    summarize_interval,
)

CV_SEED = 0  # the DevTest / validation folds: one protocol setting shared by every model
SPLIT_SEED = 0  # which DevTrain identities are held out, and which pairs are drawn


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
@dataclass
class PairSet:
    """Images and the pairs drawn from them: ``pair_index`` (P, 2) rows of ``images`` per pair."""

    images: torch.Tensor  # uint8 (M, 3, H, W)
    identity: np.ndarray  # name of each image
    files: np.ndarray  # file name of each image (e.g. Aaron_Peirsol_0001.jpg)
    pair_index: np.ndarray  # (P, 2)
    same: np.ndarray  # (P,) bool

    def __len__(self) -> int:
        return len(self.same)


@dataclass
class View1Data:
    """LFW View 1 as notebook 02 uses it."""

    train_images: torch.Tensor  # uint8 (N, 3, H, W): DevTrain people minus the held-out identities
    train_labels: torch.Tensor  # int64 (N,), identity ids in sorted-name order
    train_names: list[str]
    digest: str  # lib.settings.data_digest of the training images and labels (the runs' data identity)
    validation: PairSet  # pairs among held-out DevTrain identities: where settings are chosen
    train_pairs: PairSet  # pairs among training identities: the over-fitting reference
    test: PairSet  # the DevTest pairs, over every DevTest-people image
    pairs: pd.DataFrame  # the DevTest pair table (name1, index1, name2, index2, same, path1, path2)
    held_out_names: list[str]
    alignment: str = "center"  # how the faces were cut: "center" crop or five-point "aligned" (lib.alignment)
    alignment_counts: pd.DataFrame | None = None  # aligned only: per part, images, detector misses (fallback box), ...

    @property
    def num_classes(self) -> int:
        return len(self.train_names)


def split_validation_identities(names, fraction: float, seed: int = SPLIT_SEED) -> np.ndarray:
    """A seeded random ``fraction`` of the distinct ``names`` (sorted first, so the draw does not depend on
    row order): the identities held out of training."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {fraction!r}")
    distinct = np.sort(pd.unique(np.asarray(names)))
    count = int(round(fraction * len(distinct)))
    if count < 2 or count >= len(distinct):
        raise ValueError(f"holding out {fraction:.0%} of {len(distinct)} identities leaves too few on one side")
    return np.sort(np.random.default_rng(seed).choice(distinct, size=count, replace=False))


def draw_pairs(identity, n_matched: int, n_mismatched: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Verification pairs drawn as LFW's were (Huang et al. 2007): a matched pair is a random person with
    at least two images and two of their images at random; a mismatched pair is two random different
    people and one random image of each. No pair is drawn twice. Fewer pairs are returned when the
    images cannot supply that many distinct ones.

    Returns ``(pair_index (P, 2) into identity's rows, same (P,))``, matched pairs first.
    """
    identity = np.asarray(identity)
    rng = np.random.default_rng(seed)
    rows_of = pd.Series(np.arange(len(identity))).groupby(identity).apply(np.array)
    people = np.array(rows_of.index)
    multi = people[rows_of.map(len).to_numpy() >= 2]
    chosen, seen = [], set()

    def take(count, draw):
        found, attempts = 0, 0
        while found < count and attempts < 50 * count + 100:
            attempts += 1
            i, j = draw()
            key = (min(i, j), max(i, j))
            if i != j and key not in seen:
                seen.add(key)
                chosen.append(key)
                found += 1
        return found

    def matched():
        rows = rows_of[rng.choice(multi)]
        i, j = rng.choice(rows, size=2, replace=False)
        return int(i), int(j)

    def mismatched():
        a, b = rng.choice(people, size=2, replace=False)
        return int(rng.choice(rows_of[a])), int(rng.choice(rows_of[b]))

    got_matched = take(n_matched, matched) if len(multi) else 0
    got_mismatched = take(n_mismatched, mismatched) if len(people) >= 2 else 0
    same = np.r_[np.ones(got_matched, bool), np.zeros(got_mismatched, bool)]
    return np.array(chosen, dtype=np.int64).reshape(-1, 2), same


def _cached(paths, size, crop, key, progress, aligner, counts: dict) -> torch.Tensor:
    """The images of ``paths``, centre-cropped (``aligner`` None) or aligned, from the image cache; with an
    aligner, ``counts[key]`` receives how the crops were made (detector misses are counted, not hidden)."""
    cache = ImageCache(size, crop=None if aligner is not None else crop, progress=progress, align=aligner,
                       workers=1 if aligner is not None else None)  # one dlib model: landmarks in one thread
    images = cache.load(list(paths), key=key if aligner is None else f"{key}-aligned")
    if aligner is not None:
        counts[key] = {"images": len(images), "landmarks by the detector": len(images) - cache.record["fallback"],
                       "detector missed: fallback box": cache.record["fallback"],
                       "crops over 25 % outside the photo": cache.record["outside_photo"],
                       "examples outside": "; ".join(_photo_name(example)
                                                     for example in cache.record["outside_photo_examples"])}
    return images


def _photo_name(example: str) -> str:
    """``image 7, image file /any/folder/Name/Name_0001.jpg (28%)`` as a page shows it: the photo's LFW name
    (person folder and file), not the reader-irrelevant absolute path of this machine's data folder."""
    return re.sub(r"image file (\S+)", lambda m: "photo " + "/".join(m.group(1).replace("\\", "/").split("/")[-2:]),
                  example)


def _pair_set(paths, identity, pair_index, same, size, crop, key, progress, aligner=None, counts=None) -> PairSet:
    images = _cached(paths, size, crop, key, progress, aligner, {} if counts is None else counts)
    files = np.array([str(p).replace("\\", "/").rsplit("/", 1)[-1] for p in paths])
    return PairSet(images, np.asarray(identity), files, np.asarray(pair_index), np.asarray(same, dtype=bool))


def load_view1(faces: lfw_data.LFW, *, size: int = 96, crop: int | None = 150, validation_fraction: float = 0.15,
               pairs_per_set: int = 500, progress: bool = True, alignment: str = "center",
               align_margin: float = 0.0, landmarker=None) -> View1Data:
    """Decode (once, cached under ``data/cache``) the training images, the held-out validation identities,
    and every DevTest-people image; draw the validation and training-identity pairs
    (``pairs_per_set`` matched and as many mismatched, fewer if the images cannot supply them).

    ``alignment``: ``"center"`` cuts the centre ``crop`` of each photo; ``"aligned"`` maps dlib's five
    landmarks onto SphereFace's template (:mod:`lib.alignment`, border ``align_margin``; ``landmarker``: a
    factory of landmark finders, default dlib's), counting the faces dlib's detector missed
    (``alignment_counts``). The pairs drawn do not depend on it, so both variants score the same pairs."""
    problems = alignment_problems(alignment, align_margin)
    if problems:
        raise ValueError("; ".join(problems))
    aligner = FaceAligner(size, align_margin, landmarker) if alignment == "aligned" else None
    counts: dict = {}
    devtrain = lfw_data.view1_training_set(faces)
    held_out = split_validation_identities(devtrain["name"], validation_fraction)
    is_held_out = devtrain["name"].isin(held_out).to_numpy()
    train = devtrain[~is_held_out].reset_index(drop=True)
    names = np.sort(train["name"].unique())
    labels = np.searchsorted(names, train["name"].to_numpy()).astype(np.int64)
    train_images = _cached(train["path"].tolist(), size, crop, "lfw-devtrain-fit", progress, aligner, counts)
    train_labels = torch.as_tensor(labels)

    valid = devtrain[is_held_out].reset_index(drop=True)
    validation = _pair_set(valid["path"], valid["name"], *draw_pairs(valid["name"], pairs_per_set, pairs_per_set),
                           size, crop, "lfw-devtrain-heldout", progress, aligner, counts)
    # Training-identity pairs reuse rows of the training cache (no second decode).
    train_pair_index, train_same = draw_pairs(train["name"], pairs_per_set, pairs_per_set)
    used = np.unique(train_pair_index)
    remap = np.full(len(train), -1)
    remap[used] = np.arange(len(used))
    train_pairs = PairSet(train_images[torch.as_tensor(used)], train["name"].to_numpy()[used],
                          train["path"].map(lambda p: str(p).rsplit("/", 1)[-1]).to_numpy()[used],
                          remap[train_pair_index], train_same)

    pairs = faces.dev_test_pairs.reset_index(drop=True)
    test_people = faces.images[faces.images["name"].isin(faces.people_dev_test["name"])]
    test_paths = pd.unique(pd.concat([test_people["path"], pairs["path1"], pairs["path2"]], ignore_index=True))
    position = {path: i for i, path in enumerate(test_paths)}
    name_of = dict(zip(faces.images["path"], faces.images["name"]))
    name_of.update(zip(pairs["path1"], pairs["name1"]))
    name_of.update(zip(pairs["path2"], pairs["name2"]))
    test = _pair_set(test_paths, [name_of[p] for p in test_paths],
                     np.stack([pairs["path1"].map(position), pairs["path2"].map(position)], axis=1),
                     pairs["same"].to_numpy(dtype=bool), size, crop, "lfw-devtest-people", progress, aligner,
                     counts)
    return View1Data(train_images, train_labels, list(names), data_digest(train_images, train_labels),
                     validation, train_pairs, test, pairs, list(held_out), alignment,
                     pd.DataFrame(counts).T.rename_axis("part") if counts else None)


def describe_splits(data: View1Data) -> pd.DataFrame:
    """Images, identities and pairs of each part of View 1 as notebook 02 uses it: counts as integers
    (nullable ``Int64``: a part without pairs has no pair count, not a NaN that turns every count into a float)."""
    def row(images, identity, pair_set=None):
        return {"images": len(images), "identities": len(pd.unique(np.asarray(identity))),
                "matched pairs": int(pair_set.same.sum()) if pair_set else None,
                "mismatched pairs": int((~pair_set.same).sum()) if pair_set else None}

    return pd.DataFrame({
        "training (DevTrain people, minus held-out)": row(data.train_images, data.train_labels.numpy()),
        "training-identity pairs (over-fitting reference)": row(data.train_pairs.images, data.train_pairs.identity,
                                                               data.train_pairs),
        "validation (held-out DevTrain identities)": row(data.validation.images, data.validation.identity,
                                                         data.validation),
        "DevTest (scored once per final model)": row(data.test.images, data.test.identity, data.test),
    }).T.astype("Int64")


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------
def inference_precision(precision: str, device) -> str:
    """Evaluate in the training precision on CUDA (where float32 evaluation would cost as much as an
    epoch), in float32 elsewhere (bf16 rounding of the embeddings moves cosine scores by ~1e-3)."""
    return precision if resolve_device(device).type == "cuda" else "off"


def features(model, images: torch.Tensor, *, flip: bool = True, device="auto", amp="off") -> np.ndarray:
    """L2-normalized features of ``images`` (flip-fused by sum when ``flip``)."""
    plain, mirrored = embed(model, images, flip=flip, device=device, amp=amp)
    if flip:
        return fuse_flip(plain, mirrored, mode="sum")
    array = plain.double().numpy()
    return array / np.linalg.norm(array, axis=1, keepdims=True)


@dataclass
class VerificationResult:
    """Scores of one model on one pair set and everything computed from them."""

    scores: np.ndarray
    cv: FoldedAccuracy
    fixed_accuracy: float
    roc: object
    afs: float
    afs_normalized: float

    def summary(self) -> dict:
        return {
            "acc_10fold": self.cv.mean,
            "acc_10fold_std": self.cv.std,
            "acc_10fold_stderr": self.cv.stderr,
            "threshold_10fold": float(np.mean(self.cv.thresholds)),
            "acc_fixed_0.5": self.fixed_accuracy,
            "auc": self.roc.auc,
            "eer": self.roc.eer,
            "tar@far=1e-2": self.roc.tar_at_far[1e-2],
            "tar@far=1e-3": self.roc.tar_at_far[1e-3],
            "afs": self.afs,
            "afs_normalized": self.afs_normalized,
        }


def score_pairs(features_: np.ndarray, pair_set: PairSet, *, with_afs: bool = True) -> VerificationResult:
    """Verification metrics from precomputed features of ``pair_set.images``: 10-fold CV threshold (folds
    fixed by ``CV_SEED``), fixed 0.5, ROC, Angular Fisher score of the pair images."""
    scores = cosine_scores(features_[pair_set.pair_index[:, 0]], features_[pair_set.pair_index[:, 1]])
    same = pair_set.same
    # Ten folds, as LFW; a tiny pair set (the smoke profile) gets as many as its smaller class allows.
    n_folds = int(min(10, same.sum(), (~same).sum()))
    if n_folds < 2:
        raise ValueError(f"a pair set needs at least 2 matched and 2 mismatched pairs, has {same.sum()} and "
                         f"{(~same).sum()}")
    in_pairs = np.unique(pair_set.pair_index)
    afs = angular_fisher_score(features_[in_pairs], pair_set.identity[in_pairs], normalize=False) if with_afs else np.nan
    afs_normalized = (angular_fisher_score(features_[in_pairs], pair_set.identity[in_pairs], normalize=True)
                      if with_afs else np.nan)
    return VerificationResult(
        scores=scores,
        cv=cross_validated_accuracy(scores, same, n_folds=n_folds, seed=CV_SEED),
        fixed_accuracy=fixed_threshold_accuracy(scores, same, 0.5),
        roc=roc_metrics(scores, same),
        afs=afs,
        afs_normalized=afs_normalized,
    )


def evaluation_inputs(data: View1Data, *, flip: bool, precision: str) -> dict:
    """What the validation columns of a run's history depend on besides the model (``lib.training.fit``'s
    ``eval_inputs``): digests of the validation and training-identity pair sets (images, pairs, labels),
    ``fuse_flip``, the protocol and the precision of evaluation."""
    def pair_set_digest(pair_set: PairSet) -> str:
        return content_digest(pair_set.images, pair_set.pair_index, pair_set.same,
                              np.asarray(pair_set.identity, dtype=str))

    return {"validation": pair_set_digest(data.validation), "train_pairs": pair_set_digest(data.train_pairs),
            "fuse_flip": bool(flip), "protocol": f"10-fold cross-validated threshold, folds seeded {CV_SEED}; "
                                                 f"fixed threshold 0.5", "precision": precision}


def evaluate(model, pair_set: PairSet, *, flip: bool = True, device="auto", amp="off") -> VerificationResult:
    """Verification metrics of ``model`` on ``pair_set``."""
    return score_pairs(features(model, pair_set.images, flip=flip, device=device, amp=amp), pair_set)


def pair_set_features(model, pair_sets: dict[str, PairSet], *, flip: bool = True, device="auto",
                      amp="off") -> dict[str, np.ndarray]:
    """:func:`features` of every pair set scored at one evaluation, from one batched pass: the images of
    all the sets go through :func:`lib.training.embed` together (each batch with its mirror image in the
    same forward) and are split back per set. A set named twice (the same object, e.g. the validation
    pairs of a setting trial, scored by epoch and as its final result) is embedded once. Embeddings are
    per image, so the features equal those of one :func:`features` call per set."""
    distinct = list({id(pair_set): pair_set for pair_set in pair_sets.values()}.values())
    images = torch.cat([pair_set.images for pair_set in distinct]) if len(distinct) > 1 else distinct[0].images
    every = features(model, images, flip=flip, device=device, amp=amp)
    ends = np.cumsum([len(pair_set.images) for pair_set in distinct])
    by_set = {id(pair_set): part for pair_set, part in zip(distinct, np.split(every, ends[:-1]))}
    return {name: by_set[id(pair_set)] for name, pair_set in pair_sets.items()}


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------
@dataclass
class HeadRun:
    """One trained (head, seed): its settings, per-epoch history, DevTest result (scored once, after
    training) and the DevTest features (for the all-vs-all analysis of notebook 04). A setting trial
    (``train_head(score_test=False)``) holds the validation pairs' result and features instead."""

    settings: RunSettings
    history: pd.DataFrame
    result: VerificationResult
    test_features: np.ndarray
    seconds: float
    run_name: str

    @property
    def head(self) -> str:
        return self.settings.head

    @property
    def seed(self) -> int:
        return self.settings.seed


def build_model_and_head(settings: RunSettings, num_classes: int):
    """The network and head ``settings`` describe, initialised from ``settings.seed``."""
    seed_everything(settings.seed)
    options = {}
    if settings.model.lower() in ("spherecnn", "sphereface4"):
        options["input_size"] = settings.image_size
    if settings.dropout:
        if settings.model.lower() != "spherecnn":
            raise ValueError(f"dropout is an option of SphereCNN only, not of {settings.model!r}")
        options["dropout"] = settings.dropout
    if settings.pretrained:
        options["weights"] = settings.pretrained
    model = make_model(settings.model, embedding_dim=settings.embedding_dim, **options)
    head = make_head(settings.head, settings.embedding_dim, num_classes, **settings.head_hparams)
    return model, head


def train_head(settings: RunSettings, data: View1Data, *, eval_every: int = 5, flip: bool = True,
               checkpoint_dir=None, device="auto", progress: bool = True, score_test: bool = True) -> HeadRun:
    """Train ``settings.model`` + ``settings.head`` on the training identities; every ``eval_every`` epochs
    record 10-fold accuracy on the validation pairs and the training-identity pairs; score DevTest once at
    the end (``score_test=False`` for a setting trial: its result then holds validation scores instead).
    Checkpoints (named by ``settings.run_name()``) make a re-run resume or return at once."""
    settings = settings.replace(data=data.digest)
    model, head = build_model_and_head(settings, data.num_classes)
    amp = inference_precision(resolve_precision(settings.amp, resolve_device(device)), device)
    final_set = data.test if score_test else data.validation
    final = {}  # the final set's features, when the last epoch's evaluation embedded them

    def eval_fn(model, head, epoch):
        # One pass over every image scored now; after the last epoch the final set (DevTest) joins it.
        sets = {"validation": data.validation, "train_pairs": data.train_pairs}
        if epoch == settings.epochs:
            sets["final"] = final_set
        embedded = pair_set_features(model, sets, flip=flip, device=device, amp=amp)
        final.update({"features": embedded["final"]} if "final" in embedded else {})
        validation = score_pairs(embedded["validation"], data.validation)
        train_pairs = score_pairs(embedded["train_pairs"], data.train_pairs, with_afs=False)
        return {"val_acc_10fold": validation.cv.mean, "val_acc_fixed_0.5": validation.fixed_accuracy,
                "val_auc": validation.roc.auc, "train_pairs_acc_10fold": train_pairs.cv.mean}

    start = time.perf_counter()
    fitted = fit(settings, model, head, data.train_images, data.train_labels, device=device, eval_fn=eval_fn,
                 eval_every=eval_every, eval_inputs=evaluation_inputs(data, flip=flip, precision=amp),
                 checkpoint_dir=checkpoint_dir, progress=progress)
    if "features" in final:
        test_features = final["features"]
    else:  # reloaded from a finished checkpoint: no evaluation ran
        test_features = features(fitted.model, final_set.images, flip=flip, device=device, amp=amp)
    result = score_pairs(test_features, final_set)
    history = fitted.history.assign(head=settings.head, seed=settings.seed)
    return HeadRun(fitted.settings, history, result, test_features.astype(np.float32),
                   time.perf_counter() - start, fitted.checkpoint_path.stem if fitted.checkpoint_path else "")


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------
def summary_table(runs: list[HeadRun], confidence: float = 0.95) -> pd.DataFrame:
    """One row per (head, seed): DevTest 10-fold accuracy mean ± std with a t-interval over folds,
    fixed-0.5 accuracy, ROC summaries, AFS, last validation accuracy, training minutes."""
    rows = []
    for run in runs:
        interval = summarize_interval(run.result.cv.accuracies, confidence)
        summary = run.result.summary()
        evaluated = run.history.dropna(subset=["val_acc_10fold"]) if "val_acc_10fold" in run.history else None
        rows.append({
            "head": run.head, "seed": run.seed,
            "acc_10fold": interval.mean, "std": interval.std,
            f"ci{int(confidence * 100)}_low": interval.lower, f"ci{int(confidence * 100)}_high": interval.upper,
            **{k: summary[k] for k in ("threshold_10fold", "acc_fixed_0.5", "auc", "eer", "tar@far=1e-2",
                                       "tar@far=1e-3", "afs", "afs_normalized")},
            "val_acc_10fold": float(evaluated["val_acc_10fold"].iloc[-1]) if evaluated is not None and len(evaluated) else np.nan,
            "epochs": int(run.history["epoch"].max()),
            "train_minutes": float(run.history["seconds"].sum()) / 60,
            "run": run.run_name,
        })
    return pd.DataFrame(rows)


def _correct_matrix(runs: list[HeadRun], head: str) -> tuple[list[int], np.ndarray]:
    mine = sorted((run for run in runs if run.head == head), key=lambda run: run.seed)
    return [run.seed for run in mine], np.stack([run.result.cv.correct for run in mine])


def seed_summary(runs: list[HeadRun], *, n_boot: int = 2000, confidence: float = 0.95) -> pd.DataFrame:
    """Per head, DevTest 10-fold accuracy over seeds: mean, std over seeds, and an interval over seeds and
    pairs (:func:`lib.verification.interval_over_seeds_and_pairs`), which includes both training-seed
    variation and the sampling of the DevTest pairs."""
    rows = []
    for head in dict.fromkeys(run.head for run in runs):
        seeds, correct = _correct_matrix(runs, head)
        interval = interval_over_seeds_and_pairs(correct, n_boot=n_boot, confidence=confidence)
        per_seed = {run.seed: run.result.cv.mean for run in runs if run.head == head}
        rows.append({"head": head, "seeds": len(seeds), "acc_10fold": interval.mean,
                     "std over seeds": interval.std, "ci_low": interval.lower, "ci_high": interval.upper,
                     "min over seeds": min(per_seed.values()), "max over seeds": max(per_seed.values())})
    return pd.DataFrame(rows).set_index("head")


def reference_summary(name: str, result: VerificationResult, *, n_boot: int = 2000,
                      confidence: float = 0.95) -> pd.DataFrame:
    """One row in :func:`seed_summary`'s format for a single fixed model (e.g. a pretrained encoder scored
    on the same pairs): ``seeds`` = 1, the interval of the same model with one seed, i.e. over the
    pairs only, and the per-seed range collapsed to its one value."""
    interval = interval_over_seeds_and_pairs(result.cv.correct[None, :], n_boot=n_boot, confidence=confidence)
    return pd.DataFrame([{"head": name, "seeds": 1, "acc_10fold": interval.mean, "std over seeds": np.nan,
                          "ci_low": interval.lower, "ci_high": interval.upper,
                          "min over seeds": result.cv.mean, "max over seeds": result.cv.mean}]).set_index("head")


def paired_difference(runs: list[HeadRun], head_a: str, head_b: str, *, n_boot: int = 2000,
                      confidence: float = 0.95):
    """DevTest accuracy difference ``a − b`` over the seeds both heads were trained with, paired by seed and
    by pair (same initial seed, same batches, same pairs and folds): a
    :class:`lib.verification.SeedsAndSamplesInterval` over seeds and pairs (one statistic: the mean)."""
    seeds_a, correct_a = _correct_matrix(runs, head_a)
    seeds_b, correct_b = _correct_matrix(runs, head_b)
    common = sorted(set(seeds_a) & set(seeds_b))
    if not common:
        raise ValueError(f"{head_a!r} and {head_b!r} share no seed")
    rows_a = correct_a[[seeds_a.index(s) for s in common]].astype(float)
    rows_b = correct_b[[seeds_b.index(s) for s in common]].astype(float)
    return interval_over_seeds_and_samples(rows_a - rows_b, n_boot=n_boot, confidence=confidence)


COMPARISON_COLUMNS = ["comparison", "seeds", "mean difference", "95% CI low", "95% CI high", "p_value", "p_adjusted",
                      "verdict", "seeds-only t 95% CI low", "seeds-only t 95% CI high", "interval"]


def comparison_table(runs: list[HeadRun], comparisons, *, n_boot: int = 2000, alpha: float = 0.05) -> pd.DataFrame:
    """:func:`paired_difference` for each ``(a, b)`` both of whose heads were trained (empty, with the
    columns, when none was): the mean difference, its 95 % interval over seeds and DevTest pairs, the matching
    p-value, Holm-adjusted across the comparisons of the table (``p_adjusted``), the ``verdict`` (higher /
    lower when ``p_adjusted < alpha``, else ``not resolved``; ``no verdict (one seed)`` with one seed), the
    Student-t interval over seeds alone (conditional on the pairs; for comparison, no verdict uses it) and
    ``interval``, which says what the interval and the verdict cover."""
    trained = {run.head for run in runs}
    rows = []
    for a, b in comparisons:
        if a in trained and b in trained:
            diff = paired_difference(runs, a, b, n_boot=n_boot)
            # A difference of two accuracies lies in [−1, 1]; few seeds can reach past it. np.clip keeps a
            # missing bound missing (one seed has no seeds-only interval); max(-1.0, nan) would show -1.
            def bound(value) -> float:
                return float(np.clip(float(value), -1.0, 1.0))
            rows.append({"comparison": f"{a} − {b}", "seeds": diff.n_seeds, "mean difference": float(diff.estimate[0]),
                         "95% CI low": bound(diff.lower[0]), "95% CI high": bound(diff.upper[0]),
                         "p_value": float(diff.p_value[0]) if diff.n_seeds > 1 else np.nan,
                         "seeds-only t 95% CI low": bound(diff.seeds_lower[0]),
                         "seeds-only t 95% CI high": bound(diff.seeds_upper[0])})
    table = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    tested = table["p_value"].notna()
    table["p_adjusted"] = adjust_p_values(table["p_value"].to_numpy(float), "holm")
    table["verdict"] = np.where(~tested, "no verdict (one seed)",
                                np.where(table["p_adjusted"] < alpha,
                                         np.where(table["mean difference"] > 0, "higher", "lower"), "not resolved"))
    family = int(tested.sum())
    table["interval"] = ("95% over seeds (Student-t) and DevTest pairs (bootstrap), paired by seed and pair; verdict "
                         + (f"Holm over {family} comparison{'s' if family != 1 else ''}" if family else "none"))
    return table[COMPARISON_COLUMNS].set_index("comparison")


def pair_score_table(data: View1Data, runs: list[HeadRun]) -> pd.DataFrame:
    """Long table of per-pair DevTest scores for notebook 04: one row per (head, seed, pair)."""
    pairs = data.pairs.reset_index(drop=True)
    base = pd.DataFrame({
        "pair": np.arange(len(pairs)),
        "name1": pairs["name1"], "index1": pairs["index1"], "name2": pairs["name2"], "index2": pairs["index2"],
        "file1": pairs["path1"].map(lambda p: str(p).rsplit("/", 1)[-1]),
        "file2": pairs["path2"].map(lambda p: str(p).rsplit("/", 1)[-1]),
        "same": pairs["same"].astype(bool),
    })
    frames = []
    for run in runs:
        threshold = float(np.mean(run.result.cv.thresholds))
        frames.append(base.assign(head=run.head, seed=run.seed, score=run.result.scores, threshold_10fold=threshold))
    return pd.concat(frames, ignore_index=True)


def save_test_embeddings(data: View1Data, runs: list[HeadRun], path) -> Path:
    """Every DevTest-people image's L2-normalized, flip-fused features per model, for notebook 04's
    all-vs-all comparisons: ``files``, ``identity``, ``model:<head>-seed<seed>`` arrays (float32) and ``runs``
    (the run names)."""
    path = Path(path)
    arrays = {"files": data.test.files.astype(str), "identity": data.test.identity.astype(str)}
    arrays.update({f"model:{run.head}-seed{run.seed}": run.test_features for run in runs})
    arrays["runs"] = np.array([run.run_name for run in runs])  # which runs these are (notebook 04 checks them)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.stem}.{time.time_ns()}.tmp.npz")
    np.savez_compressed(temp, **arrays)
    temp.replace(path)
    return path


def write_results(data: View1Data, runs: list[HeadRun], folder) -> dict[str, Path]:
    """The files notebook 04 reads: per-pair scores, per-run summary, history, DevTest embeddings; and the
    pair scores again under the name of this run's face alignment (:func:`alignment_scores_file`), which
    :func:`alignment_gain` compares with the other alignment's."""
    folder = Path(folder)
    history = pd.concat([run.history for run in runs], ignore_index=True)
    scores = pair_score_table(data, runs)
    by_alignment = scores.assign(run=[run.run_name for run in runs for _ in range(len(data.pairs))],
                                 settings=[_comparable_settings(run.settings) for run in runs for _ in range(len(data.pairs))])
    return {
        "pair scores": write_csv(scores, folder / "02_lfw_pair_scores.csv"),
        "pair scores of this alignment": write_csv(by_alignment, alignment_scores_file(folder, data.alignment)),
        "summary": write_csv(summary_table(runs), folder / "02_summary.csv"),
        "history": write_csv(history, folder / "02_history.csv"),
        "embeddings": save_test_embeddings(data, runs, folder / "02_devtest_embeddings.npz"),
    }


# --------------------------------------------------------------------------------------------------
# What face alignment bought: the same heads and seeds, centre crop vs aligned faces, on the same pairs
# --------------------------------------------------------------------------------------------------
def alignment_scores_file(folder, alignment: str) -> Path:
    """``02_lfw_pair_scores-<alignment>.csv``: the DevTest pair scores of the last run with that alignment."""
    return Path(folder) / f"02_lfw_pair_scores-{alignment}.csv"


def _comparable_settings(settings: RunSettings) -> str:
    """A run's settings apart from the face alignment, its seed and data: equal for two runs that differ
    only in how the faces were cut."""
    kept = {name: value for name, value in settings.identity().items()
            if name not in ("alignment", "align_margin", "seed", "data")}
    return json.dumps(kept, sort_keys=True, default=str)


def _correct_by_seed(scores: pd.DataFrame, head: str) -> dict[int, np.ndarray]:
    """Per seed, the 0/1 correctness of each DevTest pair (in pair order) under the 10-fold protocol,
    recomputed from the saved scores with the folds every model shares (``CV_SEED``)."""
    out = {}
    for seed, rows in scores[scores["head"] == head].groupby("seed"):
        rows = rows.sort_values("pair")
        same = rows["same"].to_numpy(dtype=bool)
        n_folds = int(min(10, same.sum(), (~same).sum()))
        out[int(seed)] = cross_validated_accuracy(rows["score"].to_numpy(float), same, n_folds=n_folds,
                                                  seed=CV_SEED).correct.astype(float)
    return out


def alignment_gain(folder, *, n_boot: int = 2000, confidence: float = 0.95) -> tuple[pd.DataFrame | None, str]:
    """Per head, DevTest 10-fold accuracy with aligned faces minus with the centre crop, paired by seed and
    by pair, with the interval over seeds and pairs of :func:`paired_difference`.

    Reads the two files of :func:`alignment_scores_file` in ``folder``; a head is compared only when both
    hold it, on the seeds both hold, and when its other settings are the same in both (the ``settings``
    column; a file written before that column existed is taken as it is, and the note says so). Returns
    ``(table or None, note)``: the note says what is missing or what was assumed."""
    files = {alignment: alignment_scores_file(folder, alignment) for alignment in ("center", "aligned")}
    absent = [f"{path.name} ({alignment})" for alignment, path in files.items() if not path.is_file()]
    if absent:
        return None, (f"Not both variants yet: {', '.join(absent)} is missing. Run this notebook once with "
                      f"`alignment: center` and once with `alignment: aligned` (same other settings) to compare them.")
    tables = {alignment: pd.read_csv(path) for alignment, path in files.items()}
    notes, rows = [], []
    for head in dict.fromkeys(tables["aligned"]["head"]):
        center, aligned = (table[table["head"] == head] for table in (tables["center"], tables["aligned"]))
        if center.empty:
            continue
        if "settings" in center and "settings" in aligned:
            differing = set(center["settings"]) ^ set(aligned["settings"])
            if differing:
                notes.append(f"`{head}`: other settings differ between the two variants, not compared")
                continue
        elif "settings" not in center or "settings" not in aligned:
            notes.append(f"`{head}`: one file predates the recorded settings; its runs are assumed to differ only "
                         f"in alignment")
        by_seed = {name: _correct_by_seed(frame, head) for name, frame in (("center", center), ("aligned", aligned))}
        seeds = sorted(set(by_seed["center"]) & set(by_seed["aligned"]))
        if not seeds:
            notes.append(f"`{head}`: no seed in common")
            continue
        center_correct = np.stack([by_seed["center"][seed] for seed in seeds])
        aligned_correct = np.stack([by_seed["aligned"][seed] for seed in seeds])
        if center_correct.shape != aligned_correct.shape:
            notes.append(f"`{head}`: the two files score different pair sets, not compared")
            continue
        diff = interval_over_seeds_and_pairs(aligned_correct - center_correct, n_boot=n_boot, confidence=confidence)
        rows.append({"head": head, "seeds": len(seeds), "centre crop": float(center_correct.mean()),
                     "aligned": float(aligned_correct.mean()), "aligned − centre": diff.mean,
                     "95% CI low": diff.lower, "95% CI high": diff.upper,
                     "excludes 0": not (diff.lower <= 0 <= diff.upper)})
    table = pd.DataFrame(rows).set_index("head") if rows else None
    return table, " ".join(notes)


# --------------------------------------------------------------------------------------------------
# Setting trials (scripts/sweep_lfw_settings.py), scored on the validation pairs only
# --------------------------------------------------------------------------------------------------
def trial_row(run: HeadRun) -> dict:
    """One trial's CSV row: every setting (the columns come from :class:`RunSettings`) and its validation
    result. DevTest is not part of it: trials choose settings, DevTest is scored once per final model."""
    history = run.history
    evaluated = history.dropna(subset=["val_acc_10fold"])
    last = evaluated.iloc[-1]
    settings = run.settings.as_dict()
    settings["head_hparams"] = str(settings["head_hparams"])
    return {
        "run": run.run_name, **settings,
        "val_acc_10fold": float(last["val_acc_10fold"]),
        "final_train_accuracy": float(history["train_accuracy"].iloc[-1]),
        "final_train_pairs_acc": float(last["train_pairs_acc_10fold"]),
        "val_acc_by_epoch": " ".join(f"{e}:{a:.3f}" for e, a in zip(evaluated["epoch"], evaluated["val_acc_10fold"])),
    }


def sweep_table(folder) -> pd.DataFrame:
    """The setting trials of ``scripts/sweep_lfw_settings.py`` (one CSV per run in ``folder``), best
    validation accuracy first; an empty table when there are none."""
    files = result_files(folder, "*.csv")
    if not files:
        return pd.DataFrame(columns=["run", "head", "val_acc_10fold"]).set_index("run")
    tables = []
    for path in files:
        table = pd.read_csv(path)
        missing = sorted({"run", "head", "val_acc_10fold"} - set(table.columns))
        if missing:
            raise ValueError(f"trial file {path} lacks columns {missing} (an older format?); re-run "
                             f"scripts/sweep_lfw_settings.py for that setting or move the file away")
        tables.append(_with_default_settings(table))
    return pd.concat(tables, ignore_index=True).set_index("run").sort_values("val_acc_10fold", ascending=False)


def _with_default_settings(table: pd.DataFrame) -> pd.DataFrame:
    """A trial table with a column for every :class:`RunSettings` field: a trial written before a field
    existed ran at that field's default (e.g. ``alignment="center"``), which is what its run name says too."""
    from dataclasses import MISSING, fields

    missing = {spec.name: spec.default for spec in fields(RunSettings)
               if spec.name not in table.columns and spec.default is not MISSING and spec.name != "data"}
    return table.assign(**missing) if missing else table


def varied_settings(sweep: pd.DataFrame) -> list[str]:
    """The setting columns whose value differs between trials of one head (what the trials actually
    compared), and ``head`` when there are several. A value that differs only from head to head (each
    head's ``head_hparams``) is a property of the head, not a trial. Missing values count as a value:
    a constant schedule is stored as an empty cell."""
    from dataclasses import fields

    names = [f.name for f in fields(RunSettings) if f.name not in ("data",) and f.name in sweep]
    keys = {name: sweep[name].map(_setting_key) for name in names}
    heads = sweep["head"] if "head" in sweep else pd.Series("", index=sweep.index)
    return [name for name in names
            if (keys[name].nunique() > 1 if name == "head" else (keys[name].groupby(heads).nunique() > 1).any())]


def _setting_key(value) -> str:
    """A trial CSV cell and a settings value compared as the same text (None, NaN and "" are all "None")."""
    if value is None or value == "" or (isinstance(value, float) and np.isnan(value)):
        return "None"
    if isinstance(value, bool) or str(value) in ("True", "False"):
        return str(value)
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value)


def one_at_a_time_choice(sweep: pd.DataFrame, grid: dict, heads, current: dict, *, seed: int = 0,
                         stages: list | None = None) -> pd.DataFrame:
    """The rule that picks notebook 02's setting from trials on the validation pairs, one setting at a time.

    For each ``setting`` in ``grid`` (name -> candidate values) the candidates are compared with every other
    setting at its ``current`` value: a candidate's score is the mean validation 10-fold accuracy of the
    ``heads`` (seed ``seed``), and the highest score wins; a tie keeps the current value. A candidate is
    only scored when each of ``heads`` has its trial (``missing`` lists the heads without one), and a
    setting is only decided when all its candidates are scored. One row per setting and candidate:
    ``setting, value, current, n_trials, score, <head> ..., missing, runs, chosen``; ``chosen`` is True on
    the winner and NaN while the setting is undecided; ``runs`` names the trials (the current setting's
    appear under every setting).

    ``stages`` (a list of lists of the grid's settings, in the order they were decided): a setting of stage k is
    compared with the settings of stages up to k at their ``current`` value and those of later stages at their
    *first* candidate (the value they had before their own stage), so a setting added to the grid after the others
    were decided does not send them back to trial. ``None``: one stage, every setting against all the others'
    current values."""
    heads = list(heads)
    untuned = {name: _setting_key(value) for name, value in current.items() if name not in NOT_TUNED}
    stage_of = {name: 0 for name in grid}
    if stages is not None:
        listed = [name for stage in stages for name in stage]
        if sorted(listed) != sorted(grid) or len(set(listed)) != len(listed):
            raise ValueError(f"tuning stages {stages} must list each setting of the tuning grid once "
                             f"({sorted(grid)})")
        stage_of = {name: k for k, stage in enumerate(stages) for name in stage}
    unknown = sorted(set(grid) - set(untuned))
    if unknown:
        raise ValueError(f"tuning grid names {unknown}, which are not run settings; choose among {sorted(untuned)}")
    absent = [name for name, candidates in grid.items()
              if untuned[name] not in {_setting_key(value) for value in candidates}]
    if absent:
        raise ValueError(f"the tuning grid's candidates for {absent} do not include the current value "
                         f"({', '.join(f'{name}={current[name]!r}' for name in absent)}): the rule compares against it")
    table = sweep.reset_index() if "run" not in sweep.columns else sweep
    if "seed" in table:
        table = table[table["seed"].map(_setting_key) == _setting_key(seed)]
    rows = []
    for name, candidates in grid.items():
        others = {key: (_setting_key(grid[key][0]) if stage_of.get(key, -1) > stage_of[name] else value)
                  for key, value in untuned.items() if key != name}
        present = [key for key in others if key in table.columns]
        matches = table
        for key in present:
            matches = matches[matches[key].map(_setting_key) == others[key]]
        setting_rows = []
        for value in candidates:
            trials = matches[matches[name].map(_setting_key) == _setting_key(value)] if name in matches else matches.iloc[:0]
            by_head = {head: trials.loc[trials["head"] == head, "val_acc_10fold"] for head in heads}
            scores = {head: float(values.iloc[0]) if len(values) else np.nan for head, values in by_head.items()}
            missing = [head for head, score in scores.items() if np.isnan(score)]
            setting_rows.append({"setting": name, "value": value,
                                 "current": _setting_key(value) == untuned[name],
                                 "n_trials": len(heads) - len(missing),
                                 "score": np.nan if missing else float(np.mean(list(scores.values()))),
                                 **scores, "missing": ", ".join(missing),
                                 "runs": ", ".join(trials.loc[trials["head"].isin(heads), "run"])})
        decided = all(not row["missing"] for row in setting_rows)
        if decided:
            best = max(row["score"] for row in setting_rows)
            winners = [row for row in setting_rows if row["score"] == best]
            winner = next((row for row in winners if row["current"]), winners[0])
        for row in setting_rows:
            row["chosen"] = (row is winner) if decided else np.nan
        rows += setting_rows
    return pd.DataFrame(rows)


CONSTANT_SCHEDULE = "none (constant)"  # how a table names schedule None: a constant learning rate


def choice_table(choice: pd.DataFrame) -> pd.DataFrame:
    """:func:`one_at_a_time_choice` for the page: one row per (setting, value), the trials' run names left out
    (they are in the trials table above it) and a constant schedule (``None``) named as such."""
    values = [CONSTANT_SCHEDULE if setting == "schedule" and (value is None or value != value) else value
              for setting, value in zip(choice["setting"], choice["value"])]
    return choice.drop(columns="runs").assign(value=values).set_index(["setting", "value"])


def missing_trials(choice: pd.DataFrame, heads) -> list[dict]:
    """The trials :func:`one_at_a_time_choice` still needs: ``{"head", setting: value}`` for each."""
    return [{"head": head, row["setting"]: row["value"]}
            for _, row in choice.iterrows() for head in heads if head in row["missing"].split(", ")]


def describe_choice(choice: pd.DataFrame, heads, *, stages: list | None = None) -> str:
    """What :func:`one_at_a_time_choice` decided, in words: the rule, each setting's winner (or the trials it
    still lacks), and, in bold, any setting where this run's value is not the one the rule chose."""
    heads = list(heads)
    scored = len({run for runs in choice["runs"] for run in runs.split(", ") if run})
    lines = [f"**The rule** (fixed before the trials): each setting is chosen with every other setting at this "
             f"profile's value, by the mean validation 10-fold accuracy of {' and '.join(f'`{h}`' for h in heads)} "
             f"at seed 0; a tie keeps the current value. {scored} trials, one row per candidate below (the current "
             f"setting's trials appear under every setting)."]
    if stages is not None and len(stages) > 1:
        lines.append("Settings were decided in stages, in this order: "
                     + "; then ".join(", ".join(f"`{name}`" for name in stage) for stage in stages)
                     + ". While a stage was decided, the settings of later stages stayed at their first candidate "
                       "(their value before their own stage).")
    for name, rows in choice.groupby("setting", sort=False):
        current = rows.loc[rows["current"], "value"]
        current_value = current.iloc[0] if len(current) else None
        if rows["chosen"].isna().any():
            lacking = "; ".join(f"{row.value}: {row.missing}" for row in rows.itertuples() if row.missing)
            lines.append(f"- `{name}`: **undecided**, trials missing ({lacking}); this run uses {current_value!r}.")
            continue
        winner = rows.loc[rows["chosen"].astype(bool)].iloc[0]
        others = ", ".join(f"{row.value!r}: {row.score:.3f}" for row in rows.itertuples() if not row.chosen)
        if winner["current"]:
            lines.append(f"- `{name}`: {winner['value']!r} ({winner['score']:.3f}; {others}), this run's value.")
        else:
            lines.append(f"- `{name}`: **{winner['value']!r} ({winner['score']:.3f}; {others}) is the rule's choice, "
                         f"but this run uses {current_value!r}**: set `{name}: {winner['value']!r}` in the profile "
                         f"and re-run.")
    return "\n".join(lines)
