r"""The geometry of SphereFace's multiplicative angular margin: the paper's lower bounds on m, and the
classic picture of what the margin does to a low-dimensional embedding.

**1. Lower bounds on m** (Liu et al., *SphereFace*, CVPR 2017, Properties 2 and 3 and Appendix).
With normalized class weights :math:`w_i` and :math:`\theta_i` the angle between a feature and
:math:`w_i`, A-Softmax assigns a feature to class :math:`i` only when

.. math:: m\,\theta_i < \theta_j \quad \text{for every } j \ne i

(for an integer m this is :math:`\psi(\theta_i) > \cos\theta_j`, ``lib.losses.sphereface_psi`` being
decreasing with :math:`\psi(\theta) = \cos m\theta` on :math:`[0, \pi/m]`). In the plane spanned by the
weights each class therefore owns an arc around its weight, and the paper asks for which m the
**largest intra-class angle is at most the smallest inter-class angle**
(:math:`\max_i \text{span}(\text{arc}_i) \le \min_{i \ne j} \text{gap}(\text{arc}_i, \text{arc}_j)`).

* Binary case (Property 2). Weights at angle :math:`\theta_{12}`. The arc of class 1 reaches
  :math:`\theta_{12}/(m+1)` towards :math:`w_2` and :math:`\theta_{12}/(m-1)` away from it while
  :math:`\theta_{12} \le (m-1)\pi/m`; for wider pairs its far end is nearer to :math:`w_2` the other way
  round the circle and the arc reaches :math:`(2\pi - \theta_{12})/(m+1)` on that side. The proof's
  condition (max intra-class angle <= min inter-class angle, the gap towards :math:`w_2` being the
  smaller one) is therefore

  .. math:: \frac{\theta_{12}}{m-1} + \frac{\theta_{12}}{m+1} \le \frac{m-1}{m+1}\theta_{12}
            \quad (\theta_{12} \le \tfrac{m-1}{m}\pi), \qquad
            \frac{2\pi - \theta_{12}}{m+1} + \frac{\theta_{12}}{m+1} \le \frac{m-1}{m+1}\theta_{12}
            \quad (\theta_{12} > \tfrac{m-1}{m}\pi),

  the first being :math:`m^2 - 4m + 1 \ge 0` and the second :math:`m \ge 1 + 2\pi/\theta_{12}`;
  requiring them for every :math:`\theta_{12} \in (0, \pi]` gives :math:`m_{min} = 2 + \sqrt3 \approx 3.732`
  (needed for every :math:`\theta_{12} \le (\sqrt3 - 1)\pi`, about 132 degrees).
* Multi-class case (Property 3). K weights evenly spaced, :math:`\theta_{i,i+1} = \theta = 2\pi/K`:
  each arc reaches :math:`\theta/(m+1)` towards both neighbours, so
  :math:`\frac{2\theta}{m+1} \le \frac{m-1}{m+1}\theta`, i.e. :math:`m_{min} = 3`.

This module does **not** use those closed forms: :func:`decision_arcs` finds the arc ends by bisection
on :math:`m t - \min_{j \ne i} d(w_i \pm t, w_j) = 0` (d the angle on the circle),
:func:`angular_separation` measures the largest intra-class and smallest inter-class angles of the
arcs, and :func:`minimal_separating_margin` bisects on m. :func:`binary_margin_bound` and
:func:`multiclass_margin_bound` take the worst case over the configurations (the tests compare with
the closed forms above).

**2. Toy embeddings.** :func:`train_toy_embedding` trains a tiny CNN (or MLP, for feature vectors)
with a 2-D or 3-D embedding and any head of ``lib.losses``; :func:`plot_features_2d` and
:func:`plot_features_3d` draw the features (raw, and their angles / their directions on the unit
sphere) with the class-weight directions, and :meth:`ToyEmbedding.afs` is the Angular Fisher score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from lib.errors import DataError
from lib.losses import make_head
from lib.training import train_step
from lib.verification import angular_fisher_score

__all__ = [
    "DEFAULT_TOY_SETTINGS",
    "MarginBound",
    "TOY_SPHEREFACE_ANNEALING",
    "ToyEmbedding",
    "angular_separation",
    "binary_margin_bound",
    "circle_distance",
    "decision_arcs",
    "holdout_split",
    "minimal_separating_margin",
    "multiclass_margin_bound",
    "plot_decision_regions",
    "plot_features_2d",
    "plot_features_3d",
    "plot_margin_bounds",
    "summarize_toy_embeddings",
    "toy_network",
    "train_margin_sweep",
    "train_toy_embedding",
]

_BISECTION_STEPS = 60  # halves [0, pi] down to ~3e-18: below float64 resolution


# ==================================================================================================
# 1. Decision arcs and the lower bounds on m
# ==================================================================================================
def circle_distance(a, b) -> np.ndarray:
    """Angle in [0, pi] between the directions at polar angles ``a`` and ``b`` (radians, broadcast)."""
    return np.abs(np.remainder(np.asarray(a) - np.asarray(b) + math.pi, 2 * math.pi) - math.pi)


def _weight_angles(weight_angles) -> np.ndarray:
    angles = np.asarray(weight_angles, dtype=np.float64)
    if angles.ndim < 1 or angles.shape[-1] < 2:
        raise ValueError(
            f"weight_angles must hold the polar angles of at least 2 class weights in its last axis, "
            f"got shape {angles.shape}"
        )
    gaps = circle_distance(angles[..., :, None], angles[..., None, :])
    gaps[..., np.arange(angles.shape[-1]), np.arange(angles.shape[-1])] = np.inf
    if not np.all(gaps > 1e-12):
        raise ValueError("two class weights point the same way: their decision regions are undefined")
    return angles


def _margin_array(m, batch_shape: tuple[int, ...]) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if np.any(~(m >= 1)):
        raise ValueError(f"the angular margin m must be >= 1 (m = 1 is no margin: the modified softmax), got {m}")
    return np.broadcast_to(m, batch_shape)


def decision_arcs(weight_angles, m) -> tuple[np.ndarray, np.ndarray]:
    r"""Arcs of the unit circle that A-Softmax with margin m assigns to each class.

    ``weight_angles`` has shape ``(..., K)``: the polar angles of K class weights (one configuration
    per leading index); ``m`` (>= 1, real) broadcasts against the leading shape. Class i owns the
    directions :math:`\phi` with :math:`m\,d(\phi, w_i) < \min_{j \ne i} d(\phi, w_j)`. Along either
    direction away from :math:`w_i` the left side grows at rate m and the right side changes at
    rate at most 1, so for m >= 1 the region is one arc around :math:`w_i`; its two ends are the roots
    of :math:`g(t) = m t - \min_{j \ne i} d(w_i \pm t, w_j)` on :math:`[0, \pi]`
    (:math:`g(0) < 0 \le g(\pi)`), found by vectorized bisection.

    Returns ``(backward, forward)``, each ``(..., K)``: class i owns
    :math:`[\alpha_i - \text{backward}_i,\ \alpha_i + \text{forward}_i]`.
    """
    angles = _weight_angles(weight_angles)
    num_classes = angles.shape[-1]
    m = _margin_array(m, angles.shape[:-1])[..., None, None]  # (..., 1, 1)
    direction = np.array([-1.0, 1.0])  # backward, forward
    others = ~np.eye(num_classes, dtype=bool)  # [i, j]: j competes with i

    def g(t):  # t: (..., K, 2)
        points = angles[..., :, None] + direction * t  # (..., K, 2)
        distances = circle_distance(points[..., None], angles[..., None, None, :])  # (..., K, 2, K)
        nearest_rival = np.where(others[:, None, :], distances, np.inf).min(axis=-1)
        return m * t - nearest_rival

    low = np.zeros(angles.shape + (2,))
    high = np.full_like(low, math.pi)
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        inside = g(middle) < 0
        low = np.where(inside, middle, low)
        high = np.where(inside, high, middle)
    ends = 0.5 * (low + high)
    return ends[..., 0], ends[..., 1]


def angular_separation(weight_angles, m) -> tuple[np.ndarray, np.ndarray]:
    r"""``(max_intra, min_inter)``: the largest intra-class and smallest inter-class angle of the arcs.

    The largest angle between two directions of one arc of length L is :math:`\min(L, \pi)`; the
    smallest angle between two disjoint arcs is reached at their ends. Both have the leading shape of
    ``weight_angles`` (the maximum / minimum is over classes and class pairs).
    """
    angles = _weight_angles(weight_angles)
    backward, forward = decision_arcs(angles, m)
    max_intra = np.minimum(backward + forward, math.pi).max(axis=-1)
    ends = np.stack([angles - backward, angles + forward], axis=-1)  # (..., K, 2)
    # end-to-end angles between classes i and j: (..., K, 2, K, 2)
    pairwise = circle_distance(ends[..., :, :, None, None], ends[..., None, None, :, :])
    between = pairwise.min(axis=(-1, -3))  # (..., K, K)
    num_classes = angles.shape[-1]
    min_inter = np.where(~np.eye(num_classes, dtype=bool), between, np.inf).min(axis=(-1, -2))
    return max_intra, min_inter


def minimal_separating_margin(weight_angles, m_high: float = 64.0) -> np.ndarray:
    r"""Smallest real m >= 1 with max intra-class angle <= min inter-class angle, per configuration.

    A larger m shrinks every arc (the root of :math:`g` moves towards 0), so the criterion is monotone
    in m and bisection on :math:`[1, m_{high}]` finds its threshold to float64 precision.
    """
    angles = _weight_angles(weight_angles)
    batch_shape = angles.shape[:-1]

    def separated(m):
        max_intra, min_inter = angular_separation(angles, m)
        return max_intra <= min_inter

    if not np.all(separated(np.full(batch_shape, m_high))):
        raise ValueError(f"some configuration is not separated even at m = {m_high}; raise m_high")
    low, high = np.ones(batch_shape), np.full(batch_shape, float(m_high))
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        ok = separated(middle)
        low = np.where(ok, low, middle)
        high = np.where(ok, middle, high)
    return high


@dataclass(frozen=True)
class MarginBound:
    """The worst case over configurations of the minimal separating margin.

    ``angles`` are the angles between neighbouring class weights (radians) of the configurations
    tried, ``required`` the minimal m of each, ``value = max(required)`` the lower bound on m.
    """

    name: str
    value: float
    angles: np.ndarray
    required: np.ndarray
    num_classes: np.ndarray

    def worst_angles(self, tolerance: float = 1e-9) -> np.ndarray:
        """The angles (radians) whose required m is within ``tolerance`` of the bound."""
        return self.angles[self.required >= self.value - tolerance]

    def __str__(self) -> str:
        worst = np.degrees(self.worst_angles())
        return (f"{self.name}: m_min = {self.value:.6f}, needed for angles between weights of "
                f"{worst.min():.1f} to {worst.max():.1f} degrees")


def binary_margin_bound(num_angles: int = 720) -> MarginBound:
    r"""Property 2, numerically: :math:`\max_{\theta_{12}} m_{min}(\theta_{12})` over a grid of
    :math:`\theta_{12} \in (0, \pi]` (two weights at polar angles 0 and :math:`\theta_{12}`).

    The paper's value is :math:`2 + \sqrt3 \approx 3.732`, reached for every
    :math:`\theta_{12} \le (\sqrt3 - 1)\pi` (132 degrees); wider pairs need only
    :math:`1 + 2\pi/\theta_{12}` (3 at 180 degrees).
    """
    if num_angles < 2:
        raise ValueError(f"num_angles must be at least 2, got {num_angles}")
    theta12 = np.linspace(0.0, math.pi, num_angles + 1)[1:]
    weights = np.stack([np.zeros_like(theta12), theta12], axis=-1)
    required = minimal_separating_margin(weights)
    return MarginBound("binary (Property 2)", float(required.max()), theta12, required, np.full(num_angles, 2))


def multiclass_margin_bound(class_counts=range(3, 13)) -> MarginBound:
    r"""Property 3, numerically: K evenly spaced weights (:math:`\theta_{i,i+1} = 2\pi/K`), worst K.

    The paper's value is 3 for every K >= 3: each arc reaches :math:`\theta/(m+1)` towards both
    neighbours.
    """
    counts = np.asarray(list(class_counts), dtype=int)
    if counts.size == 0 or counts.min() < 2:
        raise ValueError(f"class_counts must be integers >= 2, got {counts.tolist()}")
    # One configuration per K (their sizes differ, so no common batch axis).
    required = np.array([
        float(minimal_separating_margin(2 * math.pi * np.arange(k) / k)) for k in counts
    ])
    return MarginBound("multi-class, evenly spaced (Property 3)", float(required.max()),
                       2 * math.pi / counts, required, counts)


# ------------------------------------------------------------------------------------------- figures
def plot_margin_bounds(binary: MarginBound | None = None, multiclass: MarginBound | None = None,
                       margins=None) -> plt.Figure:
    """Two panels: (a) max intra / min inter angle vs m, (b) the minimal m vs the angle between weights.

    (a) shows the binary case for several :math:`\\theta_{12}` and K = 4 evenly spaced classes; the
    criterion holds where a curve is below 1, and the two bounds are marked. Every
    :math:`\\theta_{12} \\le 132°` follows the 45° curve once m is past the bound (the ratio is then
    :math:`2m/(m-1)^2`), and 180° (two opposite weights) coincides with the evenly spaced classes. (b) is
    :func:`minimal_separating_margin` over :math:`\\theta_{12}` (binary) and over K (multi-class, at
    :math:`\\theta = 360°/K`).
    """
    binary = binary or binary_margin_bound()
    multiclass = multiclass or multiclass_margin_bound()
    margins = np.linspace(1.5, 6.0, 181) if margins is None else np.asarray(margins, dtype=float)
    fig, (ax_ratio, ax_required) = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")

    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, 4))
    for colour, degrees in zip(colours, (45, 120, 150, 180)):
        weights = np.broadcast_to([0.0, math.radians(degrees)], (len(margins), 2))
        intra, inter = angular_separation(weights, margins)
        ax_ratio.plot(margins, intra / inter, color=colour, lw=2.5 if degrees == 180 else 1.5,
                      label=f"2 classes, θ12 = {degrees}°")
    weights = np.broadcast_to(2 * math.pi * np.arange(4) / 4, (len(margins), 4))
    intra, inter = angular_separation(weights, margins)
    ax_ratio.plot(margins, intra / inter, "k--", label="4 classes, evenly spaced")
    ax_ratio.axhline(1.0, color="grey", lw=1)
    for bound, style in ((binary, "-"), (multiclass, ":")):
        ax_ratio.axvline(bound.value, color="crimson", ls=style, lw=1.3,
                         label=f"{bound.name.split(' (')[0]} bound m = {bound.value:.3f}")
    ax_ratio.set(ylim=(0, 3), xlabel="angular margin m",
                 ylabel="max intra-class angle / min inter-class angle",
                 title="A-Softmax separates classes where the ratio is ≤ 1")
    ax_ratio.legend(fontsize=8, loc="upper right")

    counts = multiclass.num_classes
    ax_required.plot(np.degrees(binary.angles), binary.required, color="C0", label="2 classes (weights θ12 apart)")
    ax_required.plot(np.degrees(multiclass.angles), multiclass.required, "o", color="C1",
                     label=f"K evenly spaced classes (K = {counts.min()}…{counts.max()})")
    ax_required.axhline(binary.value, color="crimson", ls="--", lw=1, zorder=1,
                        label=f"sup over θ12 = {binary.value:.4f} (2+√3)")
    ax_required.axhline(multiclass.value, color="crimson", ls=":", lw=1, zorder=1,
                        label=f"multi-class = {multiclass.value:.4f}")
    ax_required.set(xlabel="angle between neighbouring class weights (degrees)", ylabel="smallest m that separates",
                    xlim=(0, 180), ylim=(2.5, 4.2), title="Lower bounds on m (SphereFace, Properties 2–3)")
    ax_required.legend(fontsize=8, loc="lower left")
    return fig


def plot_decision_regions(weight_angles, margins=(1, 2, 4), ax: plt.Axes | None = None) -> plt.Axes:
    """The arcs each class owns under A-Softmax, one ring per m (outer ring = first m), weights as arrows."""
    angles = _weight_angles(weight_angles)
    if angles.ndim != 1:
        raise ValueError(f"plot one configuration at a time: weight_angles must be 1-D, got shape {angles.shape}")
    ax = ax or plt.subplots(figsize=(4.5, 4.5))[1]
    colours = plt.get_cmap("tab10")(np.arange(len(angles)) % 10)
    radii = np.linspace(1.0, 0.45, len(margins))
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="lightgrey", lw=0.8))
    for radius, m in zip(radii, margins):
        backward, forward = decision_arcs(angles, m)
        for colour, alpha, b, f in zip(colours, angles, backward, forward):
            arc = np.linspace(alpha - b, alpha + f, 100)
            ax.plot(radius * np.cos(arc), radius * np.sin(arc), color=colour, lw=4, solid_capstyle="butt")
    for colour, alpha in zip(colours, angles):
        ax.annotate("", xy=(1.15 * math.cos(alpha), 1.15 * math.sin(alpha)), xytext=(0, 0),
                    arrowprops=dict(arrowstyle="->", color=colour, lw=1.5))
    ax.set(xlim=(-1.25, 1.25), ylim=(-1.25, 1.25), aspect="equal", xticks=[], yticks=[],
           title="A-Softmax decision arcs",
           xlabel="rings, outer to inner: m = " + ", ".join(f"{m:g}" for m in margins) + "\narrows: class weights")
    return ax


# ==================================================================================================
# 2. Toy embeddings: what the margin does to 2-D / 3-D features
# ==================================================================================================
# SphereFace's Caffe annealing, lambda = max(5, 1000 / (1 + 0.12 t)), reaches lambda_min after ~1,700
# of its ~28,000 iterations (6%) and then keeps a softmax share of 1/6 in the target. A toy run has a
# few hundred steps: the same curve with gamma 10 instead of 0.12 (lambda = 5 at step 20, 1 at step 100,
# 0.17 at step 600), going down to 0 (the pure A-Softmax of the paper's 2-D / 3-D figures). Measured
# with m = 4 on 6 slightly overlapping Gaussian classes, 2-D embedding, 600 steps, mean of 3 seeds:
# normalized AFS 0.0069 with gamma 10, 0.0143 with gamma 1, 0.0232 with the authors' gamma 0.12
# (lambda still ~14 at the end), 0.0167 for softmax. Passing any lambda_* hyperparameter replaces all
# of these.
TOY_SPHEREFACE_ANNEALING = {"lambda_base": 1000.0, "lambda_gamma": 10.0, "lambda_power": 1.0, "lambda_min": 0.0}

# The classic comparison: plain softmax, then A-Softmax with m = 1 (the "modified softmax") ... 4.
DEFAULT_TOY_SETTINGS: dict[str, tuple[str, dict]] = {
    "softmax": ("softmax", {}),
    **{f"A-Softmax m={m}": ("sphereface", {"margin": m}) for m in (1, 2, 3, 4)},
}


class ToyEmbedding(NamedTuple):
    """A trained toy embedding.

    ``features`` (N, D) float32 of every input (network in eval mode), ``labels`` (N,) as given,
    ``class_weights`` (C, D) the head's weight rows for ``classes`` (the sorted label values),
    ``losses`` the training loss of every step, ``is_train`` (N,) True for the samples trained on
    (all of them unless ``holdout_fraction > 0``), ``predictions`` (N,) the label predicted by the
    head's inference logits.
    """

    features: np.ndarray
    labels: np.ndarray
    class_weights: np.ndarray
    classes: np.ndarray
    losses: np.ndarray
    is_train: np.ndarray
    predictions: np.ndarray

    def _subset(self, split: str) -> np.ndarray:
        masks = {"all": np.ones_like(self.is_train), "train": self.is_train, "heldout": ~self.is_train}
        if split not in masks:
            raise ValueError(f"split must be one of {list(masks)}, got {split!r}")
        if not masks[split].any():
            raise ValueError(f"no {split} samples (train with holdout_fraction > 0 for a held-out split)")
        return masks[split]

    def afs(self, normalize: bool = True, split: str = "all") -> float:
        """Angular Fisher score of one split (lower = more compact classes); features L2-normalized by default."""
        mask = self._subset(split)
        return angular_fisher_score(self.features[mask], self.labels[mask], normalize=normalize)

    def accuracy(self, split: str = "all") -> float:
        """Share of the split whose head prediction is its label."""
        mask = self._subset(split)
        return float(np.mean(self.predictions[mask] == self.labels[mask]))


def toy_network(input_shape: tuple[int, ...], embedding_dim: int) -> nn.Module:
    """A tiny embedding network: 3 stride-2 conv blocks (16-32-64 channels, BN, ReLU), global average
    pooling and 2 linear layers for images (3, H, W); a 2-hidden-layer MLP (64 units) for feature vectors (D,).

    The last layer is linear with no normalization, so the embedding is free in :math:`R^{D}` and the
    head decides how its norm and angle are used.
    """
    if len(input_shape) == 3:
        def block(c_in, c_out):  # stride 2 instead of pooling: 4x fewer positions per layer
            return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        return nn.Sequential(
            *block(input_shape[0], 16), *block(16, 32), *block(32, 64),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, embedding_dim),
        )
    if len(input_shape) == 1:
        return nn.Sequential(
            nn.Linear(input_shape[0], 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, embedding_dim),
        )
    raise ValueError(f"inputs must be images (N, 3, H, W) or feature vectors (N, D), got sample shape {input_shape}")


def _prepare_inputs(inputs, image_size: int) -> torch.Tensor:
    """float32 images (N, 3, image_size, image_size) or feature vectors (N, D), checked."""
    tensor = inputs if torch.is_tensor(inputs) else torch.from_numpy(np.asarray(inputs))
    tensor = tensor.detach().cpu()
    if tensor.ndim == 4:
        if tensor.shape[1] != 3:
            raise ValueError(
                f"images must be channels-first (N, 3, H, W), got shape {tuple(tensor.shape)}; "
                "for (N, H, W, 3) arrays pass images.transpose(0, 3, 1, 2)"
            )
        tensor = tensor.to(torch.float32)
        if len(tensor) and tuple(tensor.shape[-2:]) != (image_size, image_size):
            tensor = F.interpolate(tensor, size=(image_size, image_size), mode="bilinear",
                                   antialias=True, align_corners=False)
    elif tensor.ndim == 2:
        tensor = tensor.to(torch.float32)
    else:
        raise ValueError(
            f"inputs must be images (N, 3, H, W) or feature vectors (N, D), got shape {tuple(tensor.shape)}"
        )
    if len(tensor) == 0:
        raise DataError("inputs is empty: the toy embedding needs a few samples per class")
    if not torch.isfinite(tensor).all():
        raise DataError("inputs contain NaN or infinite values")
    return tensor


def _standardize(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` with the statistics of ``reference``, per channel (images) or per column."""
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    mean = reference.mean(dim=axes, keepdim=True)
    std = reference.std(dim=axes, keepdim=True).nan_to_num(1.0).clamp(min=1e-6)  # constant inputs stay 0
    return (x - mean) / std


def _prepare_labels(labels, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels as given, sorted classes, class index 0..C-1)."""
    array = labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
    if array.shape != (n,):
        raise DataError(f"labels must have shape ({n},), one per input, got {array.shape}")
    if array.dtype.kind not in "iu":
        raise DataError(f"labels must be integer class ids, got dtype {array.dtype}")
    classes, index = np.unique(array, return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"the toy embedding needs at least 2 classes, got {len(classes)}")
    return array, classes, index.astype(np.int64)


def holdout_split(class_index: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask, True = train: a seeded, per-class random ``round(fraction · n_c)`` samples of
    each class are held out (at least 1 when ``fraction > 0``, never all of a class)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {fraction!r}")
    counts = np.bincount(class_index)
    if fraction == 0:
        return np.ones(len(class_index), dtype=bool)
    if counts.min() < 2:
        raise DataError("holding samples out needs at least 2 samples in every class")
    held = np.clip(np.round(fraction * counts), 1, counts - 1).astype(int)
    keys = np.random.default_rng(seed).random(len(class_index))
    order = np.lexsort((keys, class_index))  # by class, random within class
    rank = np.empty(len(class_index), dtype=int)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank[order] = np.arange(len(class_index)) - np.repeat(starts, counts)
    return rank >= held[class_index]


@contextmanager
def _torch_threads(threads: int | None):
    """Run with ``threads`` intra-op threads (None: leave as is), then restore the previous number."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_toy_embedding(
    inputs,
    labels,
    head_name: str,
    embedding_dim: int = 2,
    steps: int = 600,
    seed: int = 0,
    *,
    batch_size: int = 64,
    lr: float = 3e-3,
    image_size: int = 32,
    holdout_fraction: float = 0.0,
    threads: int | None = 1,
    **head_hparams,
) -> ToyEmbedding:
    """Train :func:`toy_network` + ``make_head(head_name, embedding_dim, C, **head_hparams)`` with Adam
    (learning rate ``lr`` decayed to 0 by a cosine schedule over ``steps``).

    Cost: ~4 ms per step for 32x32 images at batch 64 on one CPU thread, so the default 600 steps take
    a few seconds per setting; A-Softmax with m = 3-4 needs about that many to converge (at 300 steps
    its training loss is still 0.1-0.5 on 8 classes of toy images).

    ``inputs``: images (N, 3, H, W) (uint8 or float, any range; resized to ``image_size`` and
    standardized per channel) or feature vectors (N, D) (standardized per column), as numpy arrays or
    tensors. ``labels``: N integer ids (any values; mapped to 0..C-1 in sorted order). Each step takes
    the next ``batch_size`` training samples of a seeded random permutation (a new one per pass).
    ``holdout_fraction`` of every class (seeded) is not trained on, so compactness can also be measured
    on unseen samples (``result.afs(split="heldout")``).

    For ``head_name="sphereface"`` the lambda annealing defaults to :data:`TOY_SPHEREFACE_ANNEALING`
    (fast, down to lambda = 0) unless lambda hyperparameters are given.

    Deterministic for a seed on a given machine: the network, the head, the split and the batch order
    come from ``seed``, and ``threads`` (default 1, None = unchanged) fixes torch's thread count while
    it runs (restored afterwards). Returns a :class:`ToyEmbedding` with the features of all inputs
    computed in eval mode.
    """
    if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
        raise ValueError(f"embedding_dim must be a positive int, got {embedding_dim!r}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got steps={steps}, batch_size={batch_size}")
    x = _prepare_inputs(inputs, image_size)
    raw_labels, classes, class_index = _prepare_labels(labels, len(x))
    is_train = holdout_split(class_index, holdout_fraction, seed)
    x = _standardize(x, x[torch.from_numpy(is_train)])
    y = torch.from_numpy(class_index)
    train_rows = torch.from_numpy(np.flatnonzero(is_train))
    if head_name == "sphereface" and not any(name.startswith("lambda_") for name in head_hparams):
        head_hparams = {**TOY_SPHEREFACE_ANNEALING, **head_hparams}

    with _torch_threads(threads):
        torch.manual_seed(seed)
        network = toy_network(tuple(x.shape[1:]), embedding_dim)
        head = make_head(head_name, embedding_dim, len(classes), **head_hparams)
        optimizer = torch.optim.Adam([*network.parameters(), *head.parameters()], lr=lr)
        # Cosine decay to 0: without it Adam's late loss spikes (once the loss is ~1e-3) can leave the
        # final features mid-jump.
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        order = train_rows[_batch_order(len(train_rows), min(batch_size, len(train_rows)), steps, seed)]

        network.train()
        head.train()
        losses = torch.empty(steps)
        for step, batch in enumerate(order):  # the training step every model in the project uses
            losses[step] = train_step(network, head, optimizer, None, x[batch], y[batch])
            schedule.step()
        if not torch.isfinite(losses).all():
            raise FloatingPointError(f"{head_name} diverged (non-finite loss); lower lr (now {lr})")

        network.eval()
        head.eval()
        with torch.no_grad():
            features = torch.cat([network(chunk) for chunk in x.split(1024)])
            predicted = head.logits(features).argmax(dim=1).numpy()
    return ToyEmbedding(
        features=features.numpy(),
        labels=raw_labels,
        class_weights=head.class_weights().detach().numpy().copy(),
        classes=classes,
        losses=losses.numpy(),
        is_train=is_train,
        predictions=classes[predicted],
    )


def _batch_order(n: int, batch_size: int, steps: int, seed: int) -> torch.Tensor:
    """(steps, batch_size) positions in 0..n-1: consecutive slices of seeded permutations (each
    permutation's incomplete last batch is dropped, so every batch has the same size)."""
    per_pass = n // batch_size
    passes = -(-steps // per_pass)
    generator = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(n, generator=generator)[: per_pass * batch_size] for _ in range(passes)])
    return order.reshape(-1, batch_size)[:steps]


def train_margin_sweep(inputs, labels, settings: Mapping[str, tuple[str, dict]] | None = None,
                       **train_kwargs) -> dict[str, ToyEmbedding]:
    """:func:`train_toy_embedding` once per ``title -> (head_name, head_hparams)`` (default
    :data:`DEFAULT_TOY_SETTINGS`), same data, seed and steps for all."""
    settings = DEFAULT_TOY_SETTINGS if settings is None else settings
    return {title: train_toy_embedding(inputs, labels, head_name, **train_kwargs, **hparams)
            for title, (head_name, hparams) in settings.items()}


def summarize_toy_embeddings(results: Mapping[str, ToyEmbedding]) -> pd.DataFrame:
    """One row per setting: normalized AFS and accuracy on the training samples (and on the held-out
    ones when there are any), the mean loss of the last 10% of steps and the mean feature norm."""
    rows = []
    for title, result in results.items():
        tail = max(1, len(result.losses) // 10)
        row = {"setting": title, "afs_train": result.afs(split="train"), "accuracy_train": result.accuracy("train")}
        if not result.is_train.all():
            row.update(afs_heldout=result.afs(split="heldout"), accuracy_heldout=result.accuracy("heldout"))
        row.update(final_loss=float(np.mean(result.losses[-tail:])),
                   mean_feature_norm=float(np.linalg.norm(result.features, axis=1).mean()))
        rows.append(row)
    return pd.DataFrame(rows).set_index("setting")


# ------------------------------------------------------------------------------------------- figures
def _unpack(result, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(features, labels, class weights or None, classes or None) from a ToyEmbedding or a tuple."""
    if isinstance(result, ToyEmbedding):
        mask = result._subset(split)
        return result.features[mask], result.labels[mask], result.class_weights, result.classes
    features, labels, *rest = result
    weights = rest[0] if rest else None
    return np.asarray(features), np.asarray(labels), weights, (np.unique(labels) if weights is not None else None)


def _class_colours(labels: np.ndarray) -> tuple[np.ndarray, dict]:
    classes = np.unique(labels)
    palette = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    return classes, {c: palette(i % palette.N) for i, c in enumerate(classes)}


def _title(title: str, features: np.ndarray, labels: np.ndarray) -> str:
    return f"{title}\nAFS {angular_fisher_score(features, labels, normalize=True):.2g}"


def _sample_phrase(results: Mapping[str, object], split: str) -> str:
    """Which samples the panels show, in words (the AFS in the titles is computed on them)."""
    embeddings = [r for r in results.values() if isinstance(r, ToyEmbedding)]
    if not embeddings:
        return "the given features"
    if split == "heldout":
        return "held-out images"
    if split == "train" or all(r.is_train.all() for r in embeddings):
        return "training images"
    return "all images (training and held-out)"


def _explain(fig: plt.Figure, results: Mapping[str, object], split: str, weight_handles: list, weight_labels: list) -> None:
    """A caption saying what colours, lines and markers are, and on which images the score is computed."""
    samples = _sample_phrase(results, split)
    fig.suptitle(f"Toy embeddings of {samples}: one colour per identity. Titles: the head and the normalized "
                 f"Angular Fisher score on the {samples}\n(within-class over between-class angular scatter; "
                 f"lower = identities more compact)", fontsize=10)
    dot = plt.Line2D([], [], ls="none", marker="o", ms=5, color="grey")
    fig.legend([dot, *weight_handles], [f"a feature of one {samples[:-1] if samples.endswith('images') else 'sample'} "
                                        "(colour = identity)", *weight_labels],
               loc="outside lower center", ncols=1 + len(weight_handles), frameon=False, fontsize=9)


def plot_features_2d(results: Mapping[str, object], bins: int = 90, split: str = "all") -> plt.Figure:
    """Two rows per setting: the raw 2-D features (class-weight directions as lines), and a histogram
    of the feature angles per class (weight directions as dashed lines). Titles give the normalized AFS;
    a caption and a legend below say what colours and lines are and on which images the AFS is computed.

    ``results`` maps a title to a :class:`ToyEmbedding` or a ``(features, labels[, class_weights])``
    tuple (weights in sorted-label order); ``split`` ("all", "train", "heldout") picks the samples of a
    :class:`ToyEmbedding`.
    """
    fig, axes = plt.subplots(2, len(results), figsize=(3.3 * len(results), 6.4), squeeze=False,
                             layout="constrained")
    for column, (title, result) in enumerate(results.items()):
        features, labels, weights, classes = _unpack(result, split)
        if features.ndim != 2 or features.shape[1] != 2:
            raise ValueError(f"{title!r}: plot_features_2d needs 2-D features, got shape {features.shape}")
        present, colours = _class_colours(labels)
        ax_raw, ax_angle = axes[0, column], axes[1, column]
        angles = np.degrees(np.arctan2(features[:, 1], features[:, 0]))
        for c in present:
            mask = labels == c
            ax_raw.scatter(features[mask, 0], features[mask, 1], s=5, alpha=0.6, color=colours[c], lw=0)
            ax_angle.hist(angles[mask], bins=bins, range=(-180, 180), color=colours[c], alpha=0.7)
        reach = np.abs(features).max() * 1.05
        if weights is not None:
            for c, w in zip(classes, np.asarray(weights)):
                direction = w / np.linalg.norm(w)
                ax_raw.plot([0, reach * direction[0]], [0, reach * direction[1]], color=colours.get(c, "k"), lw=1.2)
                ax_angle.axvline(np.degrees(np.arctan2(w[1], w[0])), color=colours.get(c, "k"), ls="--", lw=1)
        ax_raw.set(xlim=(-reach, reach), ylim=(-reach, reach), aspect="equal", title=_title(title, features, labels))
        ax_raw.tick_params(labelsize=7)
        ax_angle.set(xlim=(-180, 180), xticks=range(-180, 181, 90), xlabel="feature angle (degrees)")
        ax_angle.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("raw 2-D features")
    axes[1, 0].set_ylabel("count per class")
    if any(_unpack(r, split)[2] is not None for r in results.values()):
        _explain(fig, results, split,
                 [plt.Line2D([], [], color="grey", lw=1.2), plt.Line2D([], [], color="grey", ls="--", lw=1)],
                 ["the head's weight direction of the identity (top)", "its angle (bottom)"])
    else:
        _explain(fig, results, split, [], [])
    return fig


def plot_features_3d(results: Mapping[str, object], split: str = "all") -> plt.Figure:
    """Normalized 3-D features on the unit sphere, one panel per setting; class-weight directions as
    large outlined stars. Titles give the normalized AFS; caption and legend as in :func:`plot_features_2d`.
    Arguments as for :func:`plot_features_2d`."""
    fig = plt.figure(figsize=(3.6 * len(results), 3.9), layout="constrained")
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 25), np.linspace(0, np.pi, 13))
    sphere = np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v)
    for column, (title, result) in enumerate(results.items()):
        features, labels, weights, classes = _unpack(result, split)
        if features.ndim != 2 or features.shape[1] != 3:
            raise ValueError(f"{title!r}: plot_features_3d needs 3-D features, got shape {features.shape}")
        ax = fig.add_subplot(1, len(results), column + 1, projection="3d")
        ax.plot_wireframe(*sphere, color="lightgrey", lw=0.4, alpha=0.6)
        directions = features / np.linalg.norm(features, axis=1, keepdims=True).clip(min=1e-12)
        present, colours = _class_colours(labels)
        for c in present:
            mask = labels == c
            ax.scatter(*directions[mask].T, s=4, alpha=0.7, color=colours[c], depthshade=False)
        if weights is not None:
            weights = np.asarray(weights)
            tips = 1.08 * weights / np.linalg.norm(weights, axis=1, keepdims=True)
            ax.scatter(*tips.T, s=70, marker="*", c=[colours.get(c, "k") for c in classes],
                       edgecolors="k", linewidths=0.6, depthshade=False)
        ax.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1), box_aspect=(1, 1, 1), xticks=[], yticks=[], zticks=[])
        ax.set_title(_title(title, features, labels), fontsize=10)
    star = plt.Line2D([], [], ls="none", marker="*", ms=11, mfc="grey", mec="k", mew=0.6)
    has_weights = any(_unpack(r, split)[2] is not None for r in results.values())
    _explain(fig, results, split, [star] if has_weights else [],
             ["the head's weight direction of the identity"] if has_weights else [])
    return fig
