"""Notebook 03's pretrained regime: the cosine heads (and a plain linear probe) trained on *frozen*
embeddings of a pretrained face encoder, the CPU-feasible stand-in for the course report's pretrained
backbone.

Each FairFace image is embedded once by a :mod:`lib.pretrained` encoder (cached on disk), L2-normalized,
and only the head's class weights are trained, with the project's training engine
(:func:`lib.training.fit` on float feature inputs: no augmentation, the seed fixing the initialisation and
the batch order). The model in front of the head is the identity, so every head sees the same fixed
representation and any difference between heads comes from the loss alone.

The runs are :class:`lib.fairface_experiment.ClassifierRun` objects with the same per-sample prediction
table as the from-scratch runs, so notebook 03's and 04's per-group tables apply unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from lib import fairface, pretrained
from lib.fairface_experiment import (
    COSRELU_MARGIN,
    METADATA_COLUMNS,
    TARGETS,
    ClassifierRun,
    evaluation_inputs,
    CosReLUHead,
    resolve_head_hparams,
    fallback_branch,
    prediction_table,
    validation_metrics,
)
from lib.losses import make_head
from lib.settings import RunSettings, data_digest
from lib.training import fit, seed_everything
from lib.verification import interval_over_seeds_and_samples, summarize_interval

LINEAR_PROBE = "softmax"  # lib.losses' plain softmax classifier, z_j = w_j·x: a linear probe without bias


@dataclass
class FrozenData:
    """FairFace embeddings of one encoder and the labels of one target (the fields that
    :func:`lib.fairface_experiment.validation_metrics` and ``prediction_table`` read)."""

    target: str
    classes: tuple[str, ...]
    groups: tuple[str, ...]
    train_features: torch.Tensor  # float32 (N, D), L2-normalized
    train_labels: torch.Tensor
    val_features: torch.Tensor
    val_labels: torch.Tensor
    train: pd.DataFrame
    val: pd.DataFrame
    encoder: str
    embeddings: dict  # split -> lib.pretrained.Embeddings (alignment counts, throughput)
    digest: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def with_target(self, target: str) -> "FrozenData":
        """The same embeddings labelled for another target (race, gender or age)."""
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        classes = tuple(self.train[target].cat.categories)

        def labels(rows):
            return torch.as_tensor(rows[target].cat.codes.to_numpy(dtype=np.int64))

        return FrozenData(target, classes, self.groups, self.train_features, labels(self.train), self.val_features,
                          labels(self.val), self.train, self.val, self.encoder, self.embeddings)


def encoder_for_padding(padding: str, name: str = "dlib") -> pretrained.Encoder:
    """FairFace at padding 0.25 already is a dlib face chip (fed as is); at 1.25 the face is detected."""
    return pretrained.make_encoder(name, input="chip" if str(padding) == "0.25" else "photo")


def load_frozen(source, *, padding: str = "0.25", target: str = "race", encoder: pretrained.Encoder | None = None,
                limit: int | None = None, **embed_kwargs) -> FrozenData:
    """Embed FairFace's train and val images with ``encoder`` (default: :func:`encoder_for_padding`)."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    encoder = encoder or encoder_for_padding(padding)
    table = fairface.load_fairface(source, padding=padding, limit=limit)
    features, frames, embeddings = {}, {}, {}
    for split in ("train", "val"):
        rows = table[table["split"] == split].reset_index(drop=True)
        images = [ref["bytes"] if isinstance(ref, dict) else ref for ref in rows["image"]]
        embeddings[split] = pretrained.embed_images(encoder, images, **embed_kwargs)
        features[split] = torch.from_numpy(embeddings[split].normalized())
        frames[split] = rows.loc[:, list(METADATA_COLUMNS)]
    data = FrozenData(target, (), tuple(table["race"].cat.categories), features["train"], torch.empty(0),
                      features["val"], torch.empty(0), frames["train"], frames["val"], encoder.name, embeddings)
    return data.with_target(target)


def _scores(head, features: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """Predicted classes from ``head.logits`` (no margin) and the cosine to the true class's weight row."""
    was_training = head.training
    head.eval()
    try:
        with torch.no_grad():
            weight = head.class_weights().detach().cpu()
            logits = head.logits(features.to(weight.device)).float()
            cosines = torch.nn.functional.normalize(features.double(), dim=1) @ torch.nn.functional.normalize(
                weight.double(), dim=1).T
    finally:
        head.train(was_training)
    return {"y_pred": logits.argmax(dim=1).numpy(), "target_cosine": cosines[torch.arange(len(labels)), labels].numpy()}


def train_head_on_features(head_name: str, data: FrozenData, *, seed: int = 0, head_hparams: dict | None = None,
                           epochs: int = 30, batch_size: int = 256, lr: float = 1e-2, schedule: str | None = "cosine",
                           checkpoint_dir=None, progress: bool = False) -> ClassifierRun:
    """Train ``head_name``'s class weights on the frozen training features, scoring val every epoch."""
    head_hparams = resolve_head_hparams(head_name, head_hparams)
    if not data.digest:
        data.digest = data_digest(data.train_features, data.train_labels)
    dim = int(data.train_features.shape[1])
    settings = RunSettings(
        head=head_name, head_hparams=head_hparams, model=f"frozen-{data.encoder}", embedding_dim=dim,
        image_size=None, crop=None, flip=False, max_shift=0, erase=0.0, optimizer="adam", lr=lr, schedule=schedule,
        epochs=epochs, batch_size=batch_size, drop_last=False, amp="off", seed=seed, data=data.digest,
    )
    seed_everything(seed)
    model = nn.Identity()  # frozen: the head sees the encoder's normalized embedding as it is
    head = make_head(head_name, dim, data.num_classes, **head_hparams)
    margin = head.margin if isinstance(head, CosReLUHead) else COSRELU_MARGIN
    branch = fallback_branch(head)

    def eval_fn(model, head, epoch):
        scored = _scores(head, data.val_features, data.val_labels)
        return validation_metrics(data, scored["y_pred"], scored["target_cosine"], margin, branch)

    start = time.perf_counter()
    fitted = fit(settings, model, head, data.train_features, data.train_labels, device="cpu", eval_fn=eval_fn,
                 eval_inputs=evaluation_inputs(data, data.val_features, "off"), checkpoint_dir=checkpoint_dir,
                 progress=progress)
    scored = _scores(fitted.head, data.val_features, data.val_labels)
    predictions = prediction_table(data, scored, head_name, seed, branch)
    history = fitted.history.assign(target=data.target, head=head_name, seed=seed)
    return ClassifierRun(head_name, seed, history, predictions, time.perf_counter() - start, head_hparams,
                         data.target)


def train_grid_on_features(heads, seeds, data: FrozenData, *, head_hparams: dict | None = None, **kwargs) -> list[ClassifierRun]:
    """Every head with every seed on the same frozen features."""
    head_hparams = head_hparams or {}
    return [train_head_on_features(head, data, seed=seed, head_hparams=head_hparams.get(head, {}), **kwargs)
            for head in heads for seed in seeds]


def regime_table(predictions: dict[str, pd.DataFrame], groups, confidence: float = 0.95,
                 flags: dict | None = None, *, sample: str = "id") -> pd.DataFrame:
    """Accuracy overall and per group (``race``) of every (regime, head): mean over seeds with a 95 %
    interval, as ``"mean [lower, upper]"`` cells; ``predictions`` maps a regime name to a prediction table
    (``head, seed, race, correct``, and ``sample`` naming the image); ``flags`` maps (regime, head) to a
    warning shown in a ``flag`` column (collapse and identical models: :mod:`lib.head_comparison`).

    With the ``sample`` column the interval covers the seeds and the sampling of the validation images
    (resampled within each group: :func:`lib.verification.interval_over_seeds_and_samples`); without it, a
    Student-t interval over seeds alone, conditional on the images."""
    rows = []
    for regime, table in predictions.items():
        for head, by_head in table.groupby("head", sort=False):
            row = {"regime": regime, "head": head, "seeds": by_head["seed"].nunique()}
            if flags is not None:
                row["flag"] = flags.get((regime, head), "")
            present = [group for group in groups if (by_head["race"].astype(str) == group).any()]
            if sample in by_head.columns and row["seeds"] > 1:
                wide = by_head.pivot(index="seed", columns=sample, values="correct").astype(float)
                image_groups = by_head.drop_duplicates(sample).set_index(sample).loc[wide.columns, "race"].astype(str)
                shares = image_groups.value_counts(normalize=True).reindex(present).to_numpy()
                result = interval_over_seeds_and_samples(
                    wide.to_numpy(), groups=image_groups.to_numpy(), order=present, confidence=confidence,
                    statistic=lambda m: np.concatenate([m[..., 0] @ shares[:, None], m[..., 0]], axis=-1))
                cells = [f"{value:.3f} [{max(0, low):.3f}, {min(1, high):.3f}]"
                         for value, low, high in zip(result.estimate, result.lower, result.upper)]
                row["overall"] = cells[0]
                row.update({group: cells[1 + index] for index, group in enumerate(present)})
                row.update({group: "" for group in groups if group not in present})
            else:
                row["overall"] = _cell(by_head.groupby("seed")["correct"].mean().to_numpy(), confidence)
                for group in groups:
                    members = by_head[by_head["race"].astype(str) == group]
                    row[group] = (_cell(members.groupby("seed")["correct"].mean().to_numpy(), confidence)
                                  if len(members) else "")
            rows.append(row)
    return pd.DataFrame(rows).set_index(["regime", "head"])


def accuracy_order(predictions: dict[str, pd.DataFrame]) -> str:
    """Markdown: per regime, its heads in order of overall accuracy (mean over seeds), and whether the heads
    present in every regime keep the same order; ``predictions`` as for :func:`regime_table`."""
    orders, lines = {}, []
    for regime, table in predictions.items():
        accuracy = table.groupby(["head", "seed"], sort=False)["correct"].mean().groupby("head", sort=False).mean()
        accuracy = accuracy.sort_values(ascending=False, kind="stable")
        orders[regime] = list(accuracy.index)
        lines.append(f"*{regime}:* " + " > ".join(f"`{head}` ({value:.3f})" for head, value in accuracy.items()))
    if len(orders) > 1:
        shared = set.intersection(*(set(order) for order in orders.values()))
        same = len({tuple(head for head in order if head in shared) for order in orders.values()}) == 1
        lines.append(f"The {len(shared)} heads trained in every regime are ranked "
                     + ("in the same order." if same else "**in a different order**: a ranking of heads in one "
                        "regime does not carry over to the other."))
    return "  \n".join(lines)


def _cell(values: np.ndarray, confidence: float) -> str:
    summary = summarize_interval(values, confidence)
    if summary.n < 2:
        return f"{summary.mean:.3f}"
    return f"{summary.mean:.3f} [{max(0, summary.lower):.3f}, {min(1, summary.upper):.3f}]"


def logistic_regression_accuracy(data: FrozenData, max_iter: int = 2000) -> float:
    """Validation accuracy of scikit-learn's multinomial logistic regression (L2, C = 1, with a bias) on
    the same features: a reference for what a linear probe reaches."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=max_iter)
    model.fit(data.train_features.numpy(), data.train_labels.numpy())
    return float(model.score(data.val_features.numpy(), data.val_labels.numpy()))
