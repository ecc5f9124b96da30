"""Notebook 03's experiment: FairFace attribute classification (race as in the course report, gender as
in the FairFace paper's per-race evaluation) with a ResNet-18 embedding and one cosine-classifier head,
the same engine for every head.

What the course report did differently, and what is done here instead (its code: ``Y-LEBBAR/COMP478_Project``,
``src/dataset.py`` at 97ca878, ``src/model.py`` at d79555b; quoted in notebook 03):

* validation images get **no** training augmentation (the report augmented them);
* predictions come from ``head.logits`` — the same normalized classifier the loss trains (the report
  predicted with unnormalized weights);
* several seeds per head; a seed fixes the initialization, the batch order and the augmentation, so
  two heads trained with the same seed see exactly the same batches.

Every epoch the validation split is scored: overall accuracy, accuracy per race, how many samples sit
beyond CosReLU's clamp angle (the target cosine below ``m − 1``, θ_y > 130.5° for m = 0.35), and how
many sit in the trained head's own fallback or clamp branch (:func:`fallback_branch`) — the evidence
for a collapsed run (:mod:`lib.head_comparison`).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix

from lib import fairface, paths
from lib.errors import DataError
from lib.imagecache import build_cache
from lib.losses import ArcFaceHead, CosReLUHead, make_head
from lib.margin_geometry import holdout_split
from lib.models import make_model
from lib.tables import write_csv
from lib.settings import RunSettings, content_digest, data_digest
from lib.training import embed, fit, resolve_device, resolve_precision, seed_everything
from lib.verification import summarize_interval

TARGETS = ("race", "gender", "age")
METADATA_COLUMNS = ("id", "race", "gender", "age", "service_test")
COSRELU_MARGIN = 0.35
# θ_y beyond which CosReLU clamps (cos θ_y − m < −1), for the default margin: 130.5°.
CLAMP_ANGLE_DEGREES = math.degrees(math.acos(COSRELU_MARGIN - 1.0))
# θ_y beyond which ArcFace (m = 0.5, without easy margin) uses its fallback cos θ_y − m·sin m: 151.4°.
ARCFACE_FALLBACK_DEGREES = 180.0 - math.degrees(0.5)
BEYOND_CLAMP = "val_beyond_clamp"  # history column: fraction of validation samples with θ_y past that angle

FALLBACK_SHARE = "val_fallback_share"  # history column: fraction of validation samples in the head's fallback branch

# Notebook 03's head settings where they differ from lib.losses' defaults (a notebook's ``head_hparams``
# overrides them per head). ArcFace: s = 30 like the other scaled heads, the paper's m = 0.5 rad, a margin
# warm-up over the first 250 steps (one epoch of the full training split at batch 64) and centred class
# weights. Chosen on a split held out of the training images (scripts/arcface_regime_trial.py,
# data/results/real/03_arcface_trials.csv) by a rule fixed before the trials: the largest margin whose run is
# healthy on race and on gender. With free class weights every margin collapsed on gender (most samples
# beyond 90° from their class weight: the margin's cost vanishes far from every class weight, and two classes
# leave the weights' common direction free for that); with centred weights m = 0.1, 0.2 and 0.5 were healthy
# on both targets.
HEAD_HPARAMS = {
    "arcface": {"scale": 30.0, "margin": 0.5, "margin_warmup_steps": 250, "centered_weights": True},
}

# File names of the per-head result tables, in the course report's spirit ("478 Results - COSRELU.csv").
RESULT_NAMES = {
    "cosine_softmax": "Softmax",
    "cosrelu": "COSRELU",
    "normsoftmax": "NormSoftmax",
    "cosface": "CosFace",
    "arcface": "ArcFace",
    "softmax": "LinearSoftmax",
}


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
@dataclass
class FairFaceData:
    """Decoded FairFace train/val images and the labels of one classification target."""

    target: str
    classes: tuple[str, ...]  # class id -> label, in lib.labels order
    groups: tuple[str, ...]  # the race vocabulary (FairFace races or the synthetic groups)
    train_images: torch.Tensor  # uint8 (N, 3, H, W)
    train_labels: torch.Tensor  # int64 (N,)
    val_images: torch.Tensor
    val_labels: torch.Tensor
    train: pd.DataFrame  # metadata rows aligned with train_images (METADATA_COLUMNS)
    val: pd.DataFrame
    padding: str
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["id", "split", "error"]))
    digest: str = ""  # lib.settings.data_digest of the training images and labels, filled on first use

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _decode_split(rows: pd.DataFrame, size: int, key: str, progress: bool, cache_dir) -> tuple[pd.DataFrame, torch.Tensor, pd.DataFrame]:
    """Cache one split's images; unreadable images are dropped with a warning (never silently)."""
    def decode(frame):
        return build_cache(frame["image"].tolist(), size, key=key, cache_dir=cache_dir, progress=progress)

    try:
        return rows, decode(rows), rows.iloc[:0][["id", "split"]]
    except DataError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # re-raised below with the whole count
            kept, check = fairface.validate_images(rows)
        if check.ok:
            raise  # not a decoding problem (e.g. a missing file): keep the original message
        warnings.warn(str(check), stacklevel=3)
        if kept.empty:
            raise DataError(f"no image of split {rows['split'].iloc[0]!r} can be decoded: {check}") from None
        return kept, decode(kept), check.unreadable


def load_classification(
    source,
    *,
    padding: str = "0.25",
    target: str = "race",
    size: int = 64,
    limit: int | None = None,
    cache_dir=paths.CACHE,
    progress: bool = True,
) -> FairFaceData:
    """Load FairFace (folder, ``"hub"`` or Hub parquet; see :func:`lib.fairface.load_fairface`), decode
    every image once at ``size`` x ``size`` into the uint8 cache, and encode ``target`` as class ids.

    ``limit`` keeps the first rows of each split (quick trials). Unreadable images are skipped with a
    warning and listed in ``skipped``. ``cache_dir``: where the decoded images are memory-mapped.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    table = fairface.load_fairface(source, padding=padding, limit=limit)
    classes = tuple(table[target].cat.categories)
    groups = tuple(table["race"].cat.categories)
    splits, skipped = {}, []
    for split in ("train", "val"):
        rows = table[table["split"] == split].reset_index(drop=True)
        if rows.empty:
            raise DataError(f"FairFace source {source} has no {split!r} images; notebook 03 needs train and val")
        kept, images, bad = _decode_split(rows, size, key=f"fairface-{padding}-{split}", progress=progress,
                                         cache_dir=cache_dir)
        splits[split] = (kept, images)
        skipped.append(bad)
    (train, train_images), (val, val_images) = splits["train"], splits["val"]

    def labels(rows):
        return torch.as_tensor(rows[target].cat.codes.to_numpy(dtype=np.int64))

    return FairFaceData(
        target=target, classes=classes, groups=groups,
        train_images=train_images, train_labels=labels(train),
        val_images=val_images, val_labels=labels(val),
        train=train.loc[:, list(METADATA_COLUMNS)], val=val.loc[:, list(METADATA_COLUMNS)],
        padding=str(padding), skipped=pd.concat(skipped, ignore_index=True),
    )


def hold_out_of_train(data: FairFaceData, fraction: float = 0.2, seed: int = 0) -> FairFaceData:
    """A tuning split that never touches the reported validation images: ``fraction`` of the *training*
    images (seeded, stratified by race and target label) become the ``val`` split, the rest ``train``.
    Settings are chosen on it; the real ``val`` split is then scored once per final model."""
    race = data.train["race"].astype(str).to_numpy()
    strata = pd.factorize(pd.Series(race) + "|" + pd.Series(data.train_labels.numpy()).astype(str))[0]
    is_train = torch.from_numpy(holdout_split(strata, fraction, seed))
    keep, held = is_train.nonzero().squeeze(1), (~is_train).nonzero().squeeze(1)
    return FairFaceData(
        target=data.target, classes=data.classes, groups=data.groups,
        train_images=data.train_images[keep], train_labels=data.train_labels[keep],
        val_images=data.train_images[held], val_labels=data.train_labels[held],
        train=data.train.iloc[keep.numpy()].reset_index(drop=True),
        val=data.train.iloc[held.numpy()].reset_index(drop=True),
        padding=data.padding,
    )


def split_counts(data: FairFaceData) -> pd.DataFrame:
    """Images per race and split (the groups whose accuracy is tracked), with totals."""
    counts = pd.DataFrame({
        "train": data.train["race"].value_counts().reindex(data.groups, fill_value=0),
        "val": data.val["race"].value_counts().reindex(data.groups, fill_value=0),
    })
    counts.loc["total"] = counts.sum()
    return counts


# --------------------------------------------------------------------------------------------------
# Heads: settings and their fallback branches
# --------------------------------------------------------------------------------------------------
def resolve_head_hparams(head_name: str, overrides: dict | None = None) -> dict:
    """The settings notebook 03 trains ``head_name`` with: :data:`HEAD_HPARAMS` updated by ``overrides``."""
    return {**HEAD_HPARAMS.get(head_name, {}), **dict(overrides or {})}


@dataclass(frozen=True)
class FallbackBranch:
    """Where a head's target logit stops being its margin formula: samples with ``cos θ_y < max_cosine``
    (θ_y beyond ``angle`` degrees), where the head's margin formula no longer applies: CosReLU's target is
    the constant −s (no gradient to the target), ArcFace's is ``cos θ_y − m·sin m`` (a CosFace-like
    additive margin), or plain ``cos θ_y`` with the easy margin."""

    name: str
    max_cosine: float

    @property
    def angle(self) -> float:
        return math.degrees(math.acos(max(-1.0, min(1.0, self.max_cosine))))

    def __str__(self) -> str:
        return f"{self.name}: θ_y > {self.angle:.1f}°"


def fallback_branch(head) -> FallbackBranch | None:
    """The fallback or clamp branch of a built head: CosReLU's clamp, ArcFace's fallback beyond π − m, or
    with ``easy_margin`` the region beyond 90° where its margin is off; ``None`` for heads without one."""
    if isinstance(head, CosReLUHead):
        return FallbackBranch("clamp", head.margin - 1.0)
    if isinstance(head, ArcFaceHead):
        if head.easy_margin:
            return FallbackBranch("no margin", 0.0)
        return FallbackBranch("fallback", math.cos(math.pi - head.margin))
    return None


# Target logits as lib.losses computes them (inference uses the same logits without the margin).
_TARGET_LOGITS = {
    "softmax": ("w_y·x", "w_j·x"),
    "cosine_softmax": ("cos θ_y", "cos θ_j"),
    "normsoftmax": ("s·cos θ_y", "s·cos θ_j"),
    "cosface": ("s·(cos θ_y − m)", "s·cos θ_j"),
    "cosrelu": ("s·max(cos θ_y − m, −1)", "s·cos θ_j"),
}


def head_settings(heads, head_hparams: dict | None = None, num_classes: int = 7) -> pd.DataFrame:
    """One row per head as notebook 03 builds it: its target and other logits, its settings (read from
    the built head, so the table cannot drift from the code) and its fallback branch, if any."""
    head_hparams = head_hparams or {}
    rows = []
    for name in heads:
        head = make_head(name, 8, num_classes, **resolve_head_hparams(name, head_hparams.get(name)))
        if isinstance(head, ArcFaceHead):
            target = ("s·cos(θ_y + m) where θ_y < 90°, else s·cos θ_y" if head.easy_margin else
                      "s·cos(θ_y + m); beyond π − m: s·(cos θ_y − m·sin m)")
            if head.margin_warmup_steps:
                target += f"; m rises linearly from 0 over the first {head.margin_warmup_steps} steps"
            others = "s·cos θ_j"
            if head.centered_weights:
                others += "; every θ measured to the centred weights w_j − mean(w)"
        else:
            target, others = _TARGET_LOGITS.get(name, ("(see lib.losses)", ""))
        branch = fallback_branch(head)
        settings = ", ".join(f"{key} = {value:g}" if isinstance(value, float) else f"{key} = {value}"
                             for key, value in head.hparams.items())
        rows.append({"head": name, "target logit": target, "other logits": others, "settings": settings or "none",
                     "fallback branch": str(branch) if branch else "none"})
    return pd.DataFrame(rows).set_index("head")


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------
def classify(model, head, images: torch.Tensor, labels: torch.Tensor, *, device="auto", amp="off") -> dict[str, np.ndarray]:
    """Predicted class ids (``head.logits``, no margin, no augmentation) and the cosine between each
    embedding and its true class's weight row."""
    embeddings, _ = embed(model, images, device=device, amp=amp)
    was_training = head.training
    head.eval()
    try:
        with torch.no_grad():
            weight = head.class_weights().detach()
            logits = head.logits(embeddings.to(weight.device)).float().cpu()
            cosines = F.normalize(embeddings.double(), dim=1) @ F.normalize(weight.double().cpu(), dim=1).T
    finally:
        head.train(was_training)
    labels = labels.cpu()
    return {
        "y_pred": logits.argmax(dim=1).numpy(),
        "target_cosine": cosines[torch.arange(len(labels)), labels].numpy(),
    }


def evaluation_inputs(data, val_inputs, precision: str) -> dict:
    """What a run's validation metrics depend on besides the model (``lib.training.fit``'s ``eval_inputs``):
    a digest of the validation inputs (images or frozen features), their labels and races, the target,
    the class and race vocabularies, and the precision of evaluation. ``data``: a :class:`FairFaceData`
    or the frozen-feature regime's data."""
    races = np.asarray(data.val["race"].astype(str).to_numpy(), dtype=str)
    return {"validation": content_digest(val_inputs, data.val_labels, races), "target": data.target,
            "classes": "|".join(data.classes), "groups": "|".join(data.groups), "precision": precision}


def validation_metrics(data: FairFaceData, y_pred: np.ndarray, target_cosine: np.ndarray,
                       margin: float = COSRELU_MARGIN, branch: FallbackBranch | None = None) -> dict[str, float]:
    """``overall`` accuracy, accuracy per race (one key per group; NaN for an absent group), the
    fraction of samples with ``cos θ_y < margin − 1`` and the fraction in ``branch`` (NaN without one)."""
    correct = y_pred == data.val_labels.numpy()
    race = data.val["race"].astype(str).to_numpy()
    metrics = {"overall": float(correct.mean())}
    for group in data.groups:
        members = race == group
        metrics[group] = float(correct[members].mean()) if members.any() else float("nan")
    metrics[BEYOND_CLAMP] = float(np.mean(target_cosine < margin - 1.0))
    metrics[FALLBACK_SHARE] = float(np.mean(target_cosine < branch.max_cosine)) if branch else float("nan")
    return metrics


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------
@dataclass
class ClassifierRun:
    """One trained (head, seed): per-epoch history, final validation predictions, wall time."""

    head: str
    seed: int
    history: pd.DataFrame
    predictions: pd.DataFrame
    seconds: float
    hparams: dict = field(default_factory=dict)
    target: str = "race"
    settings: RunSettings | None = None  # what the run computed (None for runs built by hand)

    @property
    def accuracy(self) -> float:
        return float(self.predictions["correct"].mean())


# What notebook 03 fixes in every run's settings (the rest comes from its parameters).
FIXED_SETTINGS = {"model": "resnet18", "crop": None, "flip": True, "drop_last": True}


def classifier_settings(head: str, seed: int = 0, *, head_hparams: dict | None = None, weights: str | None = None,
                        image_size: int = 32, **fields) -> RunSettings:
    """Notebook 03's settings of one run, built as the notebook builds them: a ResNet-18 embedding
    (``weights``: ``None`` = random initialisation, or ``"imagenet"``) on the whole ``image_size`` image
    (no crop), flips, full batches only, the head's :data:`HEAD_HPARAMS` updated by ``head_hparams``;
    ``fields`` set any other :class:`RunSettings` field (``epochs``, ``lr``, ``amp``, ...). The notebook
    passes its parameters through :meth:`RunSettings.from_parameters` with the same fixed values
    (:data:`FIXED_SETTINGS`); scripts and tests use this."""
    return RunSettings(head=head, seed=seed, head_hparams=resolve_head_hparams(head, head_hparams), pretrained=weights,
                       image_size=image_size, **{**FIXED_SETTINGS, **fields})


def train_classifier(settings: RunSettings, data: FairFaceData, *, checkpoint_dir=None, device="auto",
                     progress: bool = True) -> ClassifierRun:
    """Train the ResNet-18 embedding and head ``settings`` describe on the train split of ``data``, scoring
    the val split every epoch.

    ``settings`` is one run's :class:`RunSettings`, built by the notebook from its parameters (or by
    :func:`classifier_settings`); its ``image_size`` must be the size ``data`` was decoded at, and an empty
    ``data`` field is filled with the digest of the training images and labels. Settings other than the
    defaults are part of the checkpoint's name, so a run with other settings never resumes from it.
    ``pretrained``: ``None`` (random initialisation) or ``"imagenet"`` (needs internet or torch hub's
    cache). Training augmentation: random horizontal flip plus a random shift of up to ``max_shift`` pixels.
    """
    size = int(data.train_images.shape[-1])
    if settings.image_size != size:
        raise ValueError(f"the run's image_size is {settings.image_size} but the {data.target} images were decoded at "
                         f"{size} px; load them at the run's size")
    if not data.digest:
        data.digest = data_digest(data.train_images, data.train_labels)
    if not settings.data:
        settings = settings.replace(data=data.digest)
    elif settings.data != data.digest:
        raise ValueError(f"the run's settings name training data {settings.data}, these images are {data.digest}")
    head_name, seed = settings.head, settings.seed
    seed_everything(seed)
    model = make_model(settings.model, embedding_dim=settings.embedding_dim, weights=settings.pretrained)
    head = make_head(head_name, settings.embedding_dim, data.num_classes, **settings.head_hparams)
    margin = head.margin if isinstance(head, CosReLUHead) else COSRELU_MARGIN
    branch = fallback_branch(head)
    eval_amp = (resolve_precision(settings.amp, resolve_device(device)) if resolve_device(device).type == "cuda"
                else "off")

    def eval_fn(model, head, epoch):
        scored = classify(model, head, data.val_images, data.val_labels, device=device, amp=eval_amp)
        return validation_metrics(data, scored["y_pred"], scored["target_cosine"], margin, branch)

    start = time.perf_counter()
    fitted = fit(settings, model, head, data.train_images, data.train_labels, device=device, eval_fn=eval_fn,
                 eval_every=1, eval_inputs=evaluation_inputs(data, data.val_images, eval_amp),
                 checkpoint_dir=checkpoint_dir, progress=progress)
    scored = classify(fitted.model, fitted.head, data.val_images, data.val_labels, device=device, amp=eval_amp)
    predictions = prediction_table(data, scored, head_name, seed, branch)
    history = fitted.history.assign(target=data.target, head=head_name, seed=seed)
    return ClassifierRun(head_name, seed, history, predictions, time.perf_counter() - start,
                         dict(settings.head_hparams), data.target, settings)


def prediction_table(data: FairFaceData, scored: dict, head: str, seed: int,
                     branch: FallbackBranch | None = None) -> pd.DataFrame:
    """Per-sample validation predictions: ``id, y_true, y_pred`` (label strings), ``correct``, the
    metadata columns, ``target``, ``target_cosine``, ``in_fallback_branch`` (1.0 or 0.0; NaN for a head
    without such a branch), ``head``, ``seed`` — what notebook 04 reads."""
    classes = np.asarray(data.classes, dtype=object)
    y_true = data.val_labels.numpy()
    frame = data.val.reset_index(drop=True).copy()
    for column in ("race", "gender", "age"):
        frame[column] = frame[column].astype(str)
    frame.insert(1, "y_true", classes[y_true])
    frame.insert(2, "y_pred", classes[scored["y_pred"]])
    frame.insert(3, "correct", scored["y_pred"] == y_true)
    in_branch = (scored["target_cosine"] < branch.max_cosine).astype(float) if branch else np.full(len(frame), np.nan)
    return frame.assign(target=data.target, target_cosine=scored["target_cosine"], in_fallback_branch=in_branch,
                        head=head, seed=seed)


def train_grid(settings, data: FairFaceData, **kwargs) -> list[ClassifierRun]:
    """One run per :class:`RunSettings` in ``settings`` (e.g. every head with every seed, same data and
    schedule), in order; ``kwargs`` go to :func:`train_classifier`. Prints one line per finished run."""
    runs = []
    for run_settings in settings:
        run = train_classifier(run_settings, data, **kwargs)
        runs.append(run)
        print(f"{data.target:>7} {run.head:>15} seed {run.seed}: val accuracy {run.accuracy:.3f} "
              f"({run.history['seconds'].sum() / 60:.1f} min training, {run.history['epoch'].max()} epochs)", flush=True)
    return runs


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------
def history_table(runs: list[ClassifierRun]) -> pd.DataFrame:
    """All runs' per-epoch histories stacked (one row per target, head, seed, epoch)."""
    return pd.concat([run.history for run in runs], ignore_index=True)


def results_tables(runs: list[ClassifierRun], groups) -> dict[tuple[str, str], pd.DataFrame]:
    """Per (target, head), the course report's CSV: ``epoch, seed, loss, overall`` and one accuracy
    column per race."""
    history = history_table(runs)
    columns = ["epoch", "seed", "loss", "overall", *groups]
    return {key: rows.loc[:, columns].reset_index(drop=True)
            for key, rows in history.groupby(["target", "head"], sort=False)}


def result_file_name(head: str, target: str = "race") -> str:
    """``Results - COSRELU.csv`` for race (the course report's names), ``Results - COSRELU (gender).csv``
    for another target."""
    suffix = "" if target == "race" else f" ({target})"
    return f"Results - {RESULT_NAMES.get(head, head)}{suffix}.csv"


def write_results(runs: list[ClassifierRun], groups, folder) -> list[Path]:
    """Write ``Results - <HEAD>[ (<target>)].csv`` per target and head into ``folder`` (atomically)."""
    return [write_csv(table, Path(folder) / result_file_name(head, target))
            for (target, head), table in results_tables(runs, groups).items()]


def predictions_table(runs: list[ClassifierRun]) -> pd.DataFrame:
    return pd.concat([run.predictions for run in runs], ignore_index=True)


def per_group_long(history: pd.DataFrame, groups) -> pd.DataFrame:
    """Per-race accuracy by epoch as a long table (head, seed, epoch, group, accuracy)."""
    present = [group for group in groups if group in history.columns]
    return history.melt(id_vars=["head", "seed", "epoch"], value_vars=present, var_name="group", value_name="accuracy")


def final_accuracy_table(runs: list[ClassifierRun], groups) -> pd.DataFrame:
    """One row per (target, head, seed): final overall and per-race validation accuracy."""
    rows = []
    for run in runs:
        by_race = run.predictions.groupby("race")["correct"].mean()
        rows.append({"target": run.target, "head": run.head, "seed": run.seed, "overall": run.accuracy,
                     **{group: by_race.get(group, np.nan) for group in groups}})
    return pd.DataFrame(rows)


def summary_over_seeds(runs: list[ClassifierRun], confidence: float = 0.95) -> pd.DataFrame:
    """Per (target, head): final validation accuracy mean, std (ddof=1) and a Student-t interval over seeds."""
    rows = []
    level = int(confidence * 100)
    for target, head in dict.fromkeys((run.target, run.head) for run in runs):  # in training order
        mine = [run for run in runs if (run.target, run.head) == (target, head)]
        interval = summarize_interval(np.array([run.accuracy for run in mine]), confidence)
        seconds = sum(run.history["seconds"].sum() for run in mine)
        rows.append({"target": target, "head": head, "seeds": len(mine), "accuracy": interval.mean,
                     "std": interval.std, f"ci{level}_low": interval.lower, f"ci{level}_high": interval.upper,
                     "training minutes, all seeds": seconds / 60})
    return pd.DataFrame(rows).set_index(["target", "head"])


def target_angle_summary(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per head (all seeds pooled): median angle θ_y between a validation embedding and its own class
    weight; the shares beyond 90° (where ArcFace's easy margin is off), beyond CosReLU's clamp angle
    (130.5° for m = 0.35) and beyond ArcFace's fallback angle (π − 0.5 = 151.4°); and the share in the
    head's own fallback or clamp branch (NaN for a head without one)."""
    angles = np.degrees(np.arccos(np.clip(predictions["target_cosine"].to_numpy(dtype=float), -1, 1)))
    frame = pd.DataFrame({"head": predictions["head"].to_numpy(), "angle": angles,
                          "in_branch": predictions["in_fallback_branch"].to_numpy(dtype=float)})
    grouped = frame.groupby("head", sort=False)
    return pd.DataFrame({
        "median θ_y (degrees)": grouped["angle"].median(),
        "share beyond 90°": grouped["angle"].apply(lambda a: float(np.mean(a > 90))),
        f"share beyond {CLAMP_ANGLE_DEGREES:.1f}°": grouped["angle"].apply(lambda a: float(np.mean(a > CLAMP_ANGLE_DEGREES))),
        f"share beyond {ARCFACE_FALLBACK_DEGREES:.1f}°": grouped["angle"].apply(
            lambda a: float(np.mean(a > ARCFACE_FALLBACK_DEGREES))),
        "share in own fallback branch": grouped["in_branch"].mean(),  # NaN: the head has none
    })


BRANCH_USE_COLUMNS = ["seeds", "epochs", "training: largest epoch share", "training: largest share of a seed",
                      "validation: largest epoch share", "validation: last epoch"]


def branch_use(history: pd.DataFrame) -> pd.DataFrame:
    """How much each head's fallback or clamp branch was used, one row per (target, head) that has one (a
    head without a branch has nothing to report and is left out, rather than shown as a column of NaN):
    on the training samples (``clamp_fraction``, which CosReLU records per epoch; NaN for a head that records
    none) the largest epoch share (mean over seeds) and the largest share of a single seed; on the validation
    samples (:data:`FALLBACK_SHARE`, mean over seeds) the largest epoch share and the last epoch's.
    Per-epoch tables of such shares are all zeros when no sample reaches a branch (FairFace's real runs):
    these maxima say the same in one row per head, and a zero here means no sample in any epoch."""
    rows = []
    for (target, head), runs in history.groupby(["target", "head"], sort=False):
        validation = runs.groupby("epoch")[FALLBACK_SHARE].mean() if FALLBACK_SHARE in runs else pd.Series(dtype=float)
        if validation.isna().all():
            continue
        training = (runs.groupby("epoch")["clamp_fraction"].mean() if "clamp_fraction" in runs
                    else pd.Series(dtype=float))
        rows.append({"target": target, "head": head, "seeds": runs["seed"].nunique(),
                     "epochs": int(runs["epoch"].max()),
                     "training: largest epoch share": training.max() if training.notna().any() else np.nan,
                     "training: largest share of a seed": (runs["clamp_fraction"].max() if training.notna().any()
                                                           else np.nan),
                     "validation: largest epoch share": validation.max(),
                     "validation: last epoch": validation.sort_index().dropna().iloc[-1]})
    return pd.DataFrame(rows, columns=["target", "head", *BRANCH_USE_COLUMNS]).set_index(["target", "head"])


def branch_never_used(use: pd.DataFrame) -> bool:
    """Whether no training or validation sample of any head in :func:`branch_use` ever reached its branch."""
    shares = use[[c for c in BRANCH_USE_COLUMNS if c.startswith(("training", "validation"))]].to_numpy(float)
    return bool(np.all(np.nan_to_num(shares, nan=0.0) == 0))


# --------------------------------------------------------------------------------------------------
# Trained to a plateau? (issue 25)
# --------------------------------------------------------------------------------------------------
PLATEAU_FRACTION = 0.25  # the last quarter of the epochs
PLATEAU_GAIN = 0.01  # a mean validation accuracy that still gains more than 1 point there: still learning


def plateau_table(history: pd.DataFrame, *, fraction: float = PLATEAU_FRACTION,
                  threshold: float = PLATEAU_GAIN) -> pd.DataFrame:
    """Per (target, head): the validation accuracy (``overall``, mean over seeds) at the last epoch E and
    at epoch E − ⌈fraction·E⌉, their difference (the gain over the last ``fraction`` of the epochs), the
    largest single seed's gain, and ``still learning`` when the mean gain exceeds ``threshold``. With
    fewer than 2 epochs there is no earlier epoch: the gain is NaN and nothing is flagged."""
    rows = []
    for (target, head), rows_ in history.groupby(["target", "head"], sort=False):
        by_seed = rows_.pivot_table(index="epoch", columns="seed", values="overall").sort_index()
        last = int(by_seed.index.max())
        start = last - max(1, math.ceil(fraction * last))
        mean = by_seed.mean(axis=1)
        if start in by_seed.index:
            gain = float(mean.loc[last] - mean.loc[start])
            largest = float((by_seed.loc[last] - by_seed.loc[start]).max())
        else:
            gain = largest = float("nan")
        rows.append({"target": target, "head": head, "seeds": by_seed.shape[1], "epochs": last,
                     "from epoch": start if start >= 1 else np.nan,
                     "accuracy then": float(mean.loc[start]) if start in mean.index else np.nan,
                     "accuracy at the end": float(mean.loc[last]), "last-quarter gain": gain,
                     "largest gain of a seed": largest, "still learning": bool(gain > threshold)})
    return pd.DataFrame(rows).set_index(["target", "head"])


def longer_run_table(run: ClassifierRun, longer: ClassifierRun, *, threshold: float = PLATEAU_GAIN) -> pd.DataFrame:
    """The same head, seed and target trained for the profile's epochs and for more: final validation
    accuracy overall and per group of each, and the difference (longer − profile's); ``beyond threshold``
    flags a difference larger than ``threshold`` (more training would have changed the answer)."""
    def final(r):
        by_group = r.predictions.groupby("race", observed=True)["correct"].mean()
        return pd.Series({"overall": r.accuracy, **by_group.to_dict()})

    table = pd.DataFrame({f"{int(run.history['epoch'].max())} epochs": final(run),
                          f"{int(longer.history['epoch'].max())} epochs": final(longer)})
    table["difference"] = table.iloc[:, 1] - table.iloc[:, 0]
    table["beyond threshold"] = table["difference"].abs() > threshold
    return table


LONGER_RUN_COLUMNS = ["target", "head", "seed", "group", "epochs", "accuracy", "longer epochs", "longer accuracy",
                      "difference", "beyond threshold"]


def longer_run_rows(table: pd.DataFrame, target: str, head: str, seed: int) -> pd.DataFrame:
    """:func:`longer_run_table` in long form with fixed column names (what ``03_longer_run.csv`` holds and the
    Findings quote): one row per group (``overall`` first), both runs' epochs and accuracies, the difference."""
    (short, short_acc), (long, long_acc) = [(int(str(name).split()[0]), table[name]) for name in table.columns[:2]]
    return pd.DataFrame({"target": target, "head": head, "seed": seed, "group": table.index.astype(str),
                         "epochs": short, "accuracy": short_acc.to_numpy(float), "longer epochs": long,
                         "longer accuracy": long_acc.to_numpy(float), "difference": table["difference"].to_numpy(float),
                         "beyond threshold": table["beyond threshold"].to_numpy(bool)}, columns=LONGER_RUN_COLUMNS)


def confusion_by_head(runs: list[ClassifierRun], classes) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Per head, the confusion matrix summed over seeds (rows: true class), for
    :func:`lib.fairness_plots.confusion_matrices`; ``runs`` of one target."""
    labels = list(classes)
    out = {}
    for run in runs:
        matrix = confusion_matrix(run.predictions["y_true"], run.predictions["y_pred"], labels=labels)
        previous = out.get(run.head, (0, labels))[0]
        out[run.head] = (previous + matrix, labels)
    return out
