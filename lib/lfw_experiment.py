"""Notebook 02's experiment: train an identity classifier on LFW View 1 DevTrain people, then verify the
identity-disjoint View 1 DevTest pairs by the cosine of (flip-fused) embeddings.

DevTest has no official folds, so accuracy uses a 10-fold cross-validated threshold inside DevTest
(:func:`lib.verification.cross_validated_accuracy`, the same seeded folds for every head so per-fold
accuracies can be compared head against head). The course report's fixed 0.5 threshold is reported
beside it, labelled as such.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lib import lfw as lfw_data
from lib.imagecache import build_cache
from lib.losses import make_head
from lib.models import make_model
from lib.training import Augment, embed, fit, seed_everything
from lib.verification import (
    FoldedAccuracy,
    angular_fisher_score,
    cosine_scores,
    cross_validated_accuracy,
    fixed_threshold_accuracy,
    fuse_flip,
    roc_metrics,
    summarize_interval,
)


@dataclass
class View1Data:
    """Decoded View 1 images: DevTrain people for training, DevTest pair images for verification."""

    train_images: torch.Tensor  # uint8 (N, 3, H, W)
    train_labels: torch.Tensor  # int64 (N,), identity ids in sorted-name order
    train_names: list[str]
    pair_images: torch.Tensor  # uint8 (M, 3, H, W): every distinct image used by a DevTest pair
    pair_image_names: np.ndarray  # identity of each pair image (for the Angular Fisher score)
    pair_index: np.ndarray  # (P, 2) rows of pair_images forming each pair
    pairs: pd.DataFrame  # the DevTest pair table (name1, index1, name2, index2, same, path1, path2)

    @property
    def num_classes(self) -> int:
        return len(self.train_names)

    @property
    def same(self) -> np.ndarray:
        return self.pairs["same"].to_numpy(dtype=bool)


def load_view1(faces: lfw_data.LFW, *, size: int = 96, crop: int | None = 150, progress: bool = True) -> View1Data:
    """Decode (once, cached under ``data/cache``) DevTrain people's images and DevTest pair images."""
    train = lfw_data.view1_training_set(faces)
    train_images = build_cache(train["path"].tolist(), size, crop=crop, key="lfw-devtrain", progress=progress)
    pairs = faces.dev_test_pairs.reset_index(drop=True)
    unique_paths = pd.unique(pd.concat([pairs["path1"], pairs["path2"]], ignore_index=True))
    position = {path: i for i, path in enumerate(unique_paths)}
    pair_index = np.stack([pairs["path1"].map(position), pairs["path2"].map(position)], axis=1)
    names = np.concatenate([pairs["name1"], pairs["name2"]])
    name_of = dict(zip(pd.concat([pairs["path1"], pairs["path2"]]), names))
    pair_images = build_cache(list(unique_paths), size, crop=crop, key="lfw-devtest", progress=progress)
    return View1Data(
        train_images=train_images,
        train_labels=torch.as_tensor(train["label"].to_numpy().copy()),
        train_names=sorted(train["name"].unique()),
        pair_images=pair_images,
        pair_image_names=np.array([name_of[p] for p in unique_paths]),
        pair_index=pair_index,
        pairs=pairs,
    )


def pair_features(model, data: View1Data, *, flip: bool = True, device="auto") -> np.ndarray:
    """L2-normalized features of every DevTest image (flip-fused by sum when ``flip``)."""
    plain, mirrored = embed(model, data.pair_images, flip=flip, device=device)
    if flip:
        return fuse_flip(plain, mirrored, mode="sum")
    features = plain.double().numpy()
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def pair_scores(features: np.ndarray, data: View1Data) -> np.ndarray:
    """Cosine similarity of each DevTest pair."""
    return cosine_scores(features[data.pair_index[:, 0]], features[data.pair_index[:, 1]])


@dataclass
class VerificationResult:
    """Scores of one model on DevTest and everything computed from them."""

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


def evaluate(model, data: View1Data, *, flip: bool = True, cv_seed: int = 0, device="auto") -> VerificationResult:
    """Verification metrics of ``model`` on DevTest (10-fold CV threshold, fixed 0.5, ROC, AFS)."""
    features = pair_features(model, data, flip=flip, device=device)
    scores = pair_scores(features, data)
    same = data.same
    # Ten folds, as LFW; a tiny test set (the smoke profile) gets as many as its smaller class allows.
    n_folds = int(min(10, same.sum(), (~same).sum()))
    if n_folds < 2:
        raise ValueError(f"DevTest needs at least 2 matched and 2 mismatched pairs, has {same.sum()} and {(~same).sum()}")
    return VerificationResult(
        scores=scores,
        cv=cross_validated_accuracy(scores, same, n_folds=n_folds, seed=cv_seed),
        fixed_accuracy=fixed_threshold_accuracy(scores, same, 0.5),
        roc=roc_metrics(scores, same),
        afs=angular_fisher_score(features, data.pair_image_names, normalize=False),
        afs_normalized=angular_fisher_score(features, data.pair_image_names, normalize=True),
    )


@dataclass
class HeadRun:
    """One trained head: its training history, final DevTest result and wall time."""

    head: str
    seed: int
    history: pd.DataFrame
    result: VerificationResult
    seconds: float
    hparams: dict = field(default_factory=dict)


def train_head(
    head_name: str,
    data: View1Data,
    *,
    head_hparams: dict | None = None,
    model_name: str = "spherecnn",
    embedding_dim: int = 512,
    image_size: int = 96,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    schedule: str | None = None,
    seed: int = 0,
    eval_every: int = 5,
    flip: bool = True,
    max_shift: int = 0,
    erase: float = 0.0,
    dropout: float = 0.0,
    checkpoint_dir=None,
    device="auto",
    amp="auto",
    progress: bool = True,
) -> HeadRun:
    """Train ``model_name`` + ``head_name`` on DevTrain people and evaluate on DevTest.

    Every ``eval_every`` epochs the history gets the 10-fold and fixed-0.5 DevTest accuracies (as the
    course printed its test accuracy every 20 epochs). Checkpoints make a re-run resume or return at once.
    ``amp`` is :func:`lib.training.fit`'s (``"bf16"`` trains in bfloat16 autocast on a CPU too).
    Regularization against over-fitting the ~9,500 training images: ``max_shift`` and ``erase``
    (:class:`lib.training.Augment`), ``dropout`` before SphereCNN's embedding layer.
    """
    head_hparams = dict(head_hparams or {})
    seed_everything(seed)
    kwargs = {"input_size": image_size} if model_name.lower() in ("spherecnn", "sphereface4") else {}
    if dropout:
        if model_name.lower() != "spherecnn":
            raise ValueError(f"dropout is an option of SphereCNN only, not of {model_name!r}")
        kwargs["dropout"] = dropout
    model = make_model(model_name, embedding_dim=embedding_dim, **kwargs)
    head = make_head(head_name, embedding_dim, data.num_classes, **head_hparams)

    def eval_fn(model, head, epoch):
        summary = evaluate(model, data, flip=flip, cv_seed=seed).summary()
        return {key: summary[key] for key in ("acc_10fold", "acc_fixed_0.5", "auc")}

    start = time.perf_counter()
    fitted = fit(
        model, head, data.train_images, data.train_labels,
        epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, weight_decay=weight_decay,
        schedule=schedule, seed=seed, device=device, amp=amp,
        augment=Augment(flip=True, max_shift=max_shift, erase=erase),
        eval_fn=eval_fn, eval_every=eval_every, checkpoint_dir=checkpoint_dir,
        run_name=f"{head_name}-seed{seed}", progress=progress,
    )
    result = evaluate(fitted.model, data, flip=flip, cv_seed=seed)
    history = fitted.history.assign(head=head_name, seed=seed)
    return HeadRun(head_name, seed, history, result, time.perf_counter() - start, head_hparams)


def summary_table(runs: list[HeadRun], confidence: float = 0.95) -> pd.DataFrame:
    """One row per head: 10-fold accuracy mean ± std with a t-interval over folds, fixed-0.5 accuracy,
    ROC summaries, AFS, the training epochs' wall time (a resumed run reports its stored seconds)."""
    rows = []
    for run in runs:
        interval = summarize_interval(run.result.cv.accuracies, confidence)
        summary = run.result.summary()
        rows.append({
            "head": run.head, "seed": run.seed,
            "acc_10fold": interval.mean, "std": interval.std,
            f"ci{int(confidence * 100)}_low": interval.lower, f"ci{int(confidence * 100)}_high": interval.upper,
            **{k: summary[k] for k in ("threshold_10fold", "acc_fixed_0.5", "auc", "eer", "tar@far=1e-2",
                                       "tar@far=1e-3", "afs", "afs_normalized")},
            "epochs": int(run.history["epoch"].max()),
            "train_minutes": float(run.history["seconds"].sum()) / 60,
        })
    return pd.DataFrame(rows).set_index("head")


def paired_difference(run_a: HeadRun, run_b: HeadRun, confidence: float = 0.95):
    """Mean difference of per-fold DevTest accuracies (a − b) with a t-interval; the folds are the same
    pairs for both runs when they share ``cv_seed``, so the comparison is paired."""
    if not np.array_equal(run_a.result.cv.folds, run_b.result.cv.folds) or run_a.seed != run_b.seed:
        raise ValueError("the two runs must be evaluated on the same cross-validation folds (same seed)")
    return summarize_interval(run_a.result.cv.accuracies - run_b.result.cv.accuracies, confidence)


def pair_score_table(data: View1Data, runs: list[HeadRun]) -> pd.DataFrame:
    """Long table of per-pair scores for notebook 04: one row per (head, seed, pair)."""
    pairs = data.pairs.reset_index(drop=True)
    base = pd.DataFrame({
        "pair": np.arange(len(pairs)),
        "name1": pairs["name1"], "index1": pairs["index1"], "name2": pairs["name2"], "index2": pairs["index2"],
        "file1": pairs["path1"].map(lambda p: p.rsplit("/", 1)[-1]),
        "file2": pairs["path2"].map(lambda p: p.rsplit("/", 1)[-1]),
        "same": pairs["same"].astype(bool),
    })
    frames = []
    for run in runs:
        threshold = float(np.mean(run.result.cv.thresholds))
        frames.append(base.assign(head=run.head, seed=run.seed, score=run.result.scores, threshold_10fold=threshold))
    return pd.concat(frames, ignore_index=True)


SETTING_COLUMNS = ["head", "epochs", "optimizer", "amp", "schedule", "crop", "max_shift", "erase", "dropout",
                   "weight_decay", "lr"]
SWEEP_COLUMNS = [*SETTING_COLUMNS, "acc_10fold", "std", "ci95_low", "ci95_high", "acc_fixed_0.5",
                 "final_train_accuracy", "acc_10fold_by_epoch"]


def sweep_table(folder) -> pd.DataFrame:
    """The one-head setting trials of ``scripts/sweep_lfw_settings.py`` (one CSV per run in ``folder``),
    best 10-fold accuracy first; an empty table with the same columns when there are none."""
    files = sorted(Path(folder).glob("*.csv")) if Path(folder).is_dir() else []
    if not files:
        return pd.DataFrame(columns=["run", *SWEEP_COLUMNS]).set_index("run")
    table = pd.concat([pd.read_csv(path) for path in files], ignore_index=True)
    missing = sorted(set(["run", *SWEEP_COLUMNS]) - set(table.columns))
    if missing:
        raise ValueError(f"sweep CSVs in {folder} lack columns {missing}; re-run scripts/sweep_lfw_settings.py")
    return table.set_index("run")[SWEEP_COLUMNS].sort_values("acc_10fold", ascending=False)


def precision_comparison(sweep: pd.DataFrame) -> pd.DataFrame:
    """Trials of :func:`sweep_table` that differ only in ``amp``: one row per setting, the 10-fold accuracy
    per precision in columns (e.g. ``off``, ``bf16``); empty when no setting was run in two precisions."""
    setting = [column for column in SETTING_COLUMNS if column != "amp"]
    wide = sweep.pivot_table(index=setting, columns="amp", values="acc_10fold", aggfunc="first")
    wide = wide.dropna()
    return wide if wide.shape[1] >= 2 else wide.iloc[0:0]
