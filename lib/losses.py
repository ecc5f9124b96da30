r"""Classification heads with angular margins: softmax, NormFace, SphereFace, CosFace, CosReLU, ArcFace.

Every head is built the same way, ``make_head(name, in_features, num_classes, **hparams)``, and is a
:class:`MarginHead`: an ``nn.Module`` holding one ``weight`` of shape ``(num_classes, in_features)``
(the layout of ``nn.Linear.weight``), with

* ``head(embeddings, labels)`` -> scalar loss, the batch mean of the cross-entropy of the *margin*
  logits (the target logit made harder to win, as each loss prescribes);
* ``head.logits(embeddings)`` -> the logits the classifier predicts with (no margin, no labels).
  Cosine heads return ``scale * cos(theta_j)``, computed from normalized weights, never raw weights;
* ``head.extra_metrics()`` -> a dict of scalars worth plotting per step (``{}`` for most heads).

Notation: :math:`x` an embedding, :math:`w_j` the weight row of class :math:`j`, :math:`\theta_j`
the angle between them, :math:`y` the label, :math:`s` the scale, :math:`m` the margin.

Numerics. All heads compute in at least float32, with autocast switched off inside the head: under
``torch.autocast(..., dtype=torch.bfloat16)`` the backbone may run in bf16, but margins such as
``cos(theta) - 0.35`` are below bf16 resolution near ``cos = 1`` (its spacing there is 2**-8), and the
head is small. float64 inputs stay float64 (the tests compare against pytorch-metric-learning in
float64). No head takes ``acos`` of a cosine with gradient, so ``|cos theta| = 1`` (an embedding equal
to a weight row, or to its negation) gives finite losses and gradients.

Two heads reproduce the course reports rather than the papers, and say so: ``cosine_softmax`` (the
FairFace report's "softmax") and ``course_sphereface`` (the SphereFace report's loss, bugs included).
"""

from __future__ import annotations

import inspect
import math
import re
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from lib.errors import DataError

__all__ = [
    "HEADS",
    "docstring_markdown",
    "ArcFaceHead",
    "CosFaceHead",
    "CosReLUHead",
    "CosineSoftmaxHead",
    "CourseSphereFaceHead",
    "MarginHead",
    "NormalizedSoftmaxHead",
    "SoftmaxHead",
    "SphereFaceHead",
    "available_heads",
    "chebyshev_cos_multiple",
    "cosine_softmax_loss_floor",
    "course_target_logit",
    "make_head",
    "sphereface_lambda",
    "sphereface_psi",
]


# --------------------------------------------------------------------------------------------------
# Formulas shared by the heads (public: the notebooks plot them)
# --------------------------------------------------------------------------------------------------


def chebyshev_cos_multiple(cos_theta: torch.Tensor, m: int) -> torch.Tensor:
    r""":math:`\cos(m\theta)` as the Chebyshev polynomial :math:`T_m(\cos\theta)`.

    :math:`T_0 = 1,\ T_1 = c,\ T_{n+1} = 2c\,T_n - T_{n-1}` (so :math:`T_2 = 2c^2 - 1`,
    :math:`T_4 = 8c^4 - 8c^2 + 1`). A polynomial in :math:`c`, hence differentiable everywhere,
    unlike ``cos(m * acos(c))`` whose gradient is infinite at :math:`c = \pm 1`.
    """
    m = _check_integer_margin(m)
    previous, current = torch.ones_like(cos_theta), cos_theta
    if m == 0:
        return previous
    for _ in range(m - 1):
        previous, current = current, 2 * cos_theta * current - previous
    return current


def sphereface_psi(cos_theta: torch.Tensor, m: int) -> torch.Tensor:
    r"""SphereFace's monotonic target function, as a function of :math:`\cos\theta`.

    .. math:: \psi(\theta) = (-1)^k \cos(m\theta) - 2k, \qquad
              \theta \in \left[\tfrac{k\pi}{m}, \tfrac{(k+1)\pi}{m}\right],\ k \in \{0, \dots, m-1\}

    :math:`\psi` decreases from 1 to :math:`1 - 2m` on :math:`[0, \pi]` and is continuous at the
    joints :math:`k\pi/m`. The interval index :math:`k` is piecewise constant, so it is computed
    without gradient; :math:`\cos(m\theta)` comes from :func:`chebyshev_cos_multiple`.
    """
    m = _check_integer_margin(m, minimum=1)
    with torch.no_grad():
        theta = torch.acos(cos_theta.detach().clamp(-1.0, 1.0))
        # theta = pi belongs to the last interval, k = m - 1 (floor would give m).
        k = torch.floor(theta * (m / math.pi)).clamp(max=m - 1)
        sign = 1.0 - 2.0 * torch.remainder(k, 2)  # (-1)^k
    return sign * chebyshev_cos_multiple(cos_theta, m) - 2.0 * k


def sphereface_lambda(
    iteration: int | float,
    base: float = 1000.0,
    gamma: float = 0.12,
    power: float = 1.0,
    minimum: float = 5.0,
) -> float:
    r"""SphereFace's annealing weight :math:`\lambda = \max(\lambda_{min}, b\,(1 + \gamma t)^{-p})`.

    :math:`t` is the training iteration, :math:`b` the base and :math:`p` the power.

    Defaults are the authors' Caffe settings (base 1000, gamma 0.12, power 1, lambda_min 5).
    """
    return max(minimum, base * (1.0 + gamma * iteration) ** (-power))


def course_target_logit(cos_theta: torch.Tensor, m: float = 4.0, eps: float = 1e-7) -> torch.Tensor:
    r"""The SphereFace course report's target: :math:`\cos(m \arccos(\mathrm{clamp}(c, -1+\epsilon, 1-\epsilon)))`.

    Kept only to reproduce the report. It is *not* monotonic in :math:`\theta` beyond
    :math:`\pi/m` (m=4: 1, 0, -1, 0, 1 at 0, 22.5, 45, 67.5, 90 degrees), so it rewards some wrong
    angles; the clamp also zeroes the gradient wherever the (unnormalized) "cosine" leaves
    :math:`[-1+\epsilon, 1-\epsilon]`.
    """
    return torch.cos(m * torch.acos(torch.clamp(cos_theta, -1.0 + eps, 1.0 - eps)))


def cosine_softmax_loss_floor(num_classes: int, scale: float = 1.0) -> float:
    r"""Lowest cross-entropy reachable with logits :math:`s\cos\theta_j`: :math:`\log(1 + (C-1)e^{-sC/(C-1)})`.

    Attained when the class weights form a regular simplex (pairwise cosine :math:`-1/(C-1)`) and
    every embedding points at its class weight. For :math:`s = 1, C = 7` this is 1.054: the FairFace
    report's unscaled "softmax" cannot train its loss below it.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    c = num_classes
    return math.log1p((c - 1) * math.exp(-scale * c / (c - 1)))


def _check_integer_margin(m, minimum: int = 0) -> int:
    if isinstance(m, bool) or not float(m).is_integer() or m < minimum:
        raise ValueError(
            f"the multiplicative angular margin m must be an integer >= {minimum}, got {m!r} "
            "(SphereFace uses m=4)"
        )
    return int(m)


def _cosine(embeddings: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(N, C) cosines between embeddings and class weights, both L2-normalized in the graph."""
    return F.linear(F.normalize(embeddings, dim=1), F.normalize(weight, dim=1))


def _replace_target(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Copy of ``logits`` whose entry ``[i, labels[i]]`` is ``target[i]`` (gradient goes to ``target``)."""
    return logits.scatter(1, labels.unsqueeze(1), target.unsqueeze(1))


def _target_column(matrix: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return matrix.gather(1, labels.unsqueeze(1)).squeeze(1)


# --------------------------------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------------------------------


class MarginHead(nn.Module):
    r"""A linear classifier over embeddings whose training loss may add a margin to the target logit.

    Subclasses implement :meth:`class_logits` (inference logits) and, if they have a margin,
    :meth:`margin_logits` (training logits given the labels). The loss is
    :math:`\frac1N \sum_i -\log \mathrm{softmax}(z_i)_{y_i}` over the margin logits :math:`z`.
    ``hparam_names`` lists the constructor's hyperparameters (shown by ``repr`` and :attr:`hparams`).
    """

    hparam_names: tuple[str, ...] = ()

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        for name, value in (("in_features", in_features), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.in_features = in_features
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s initialisation (so a seeded head matches a seeded ``nn.Linear(..., bias=False)``)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    # -- what subclasses define ------------------------------------------------------------------
    def class_logits(self, embeddings: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """(N, C) logits used to predict; inputs already validated and in compute precision."""
        raise NotImplementedError

    def margin_logits(
        self, embeddings: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """(N, C) logits fed to the cross-entropy in training; default: no margin."""
        return self.class_logits(embeddings, weight)

    def extra_metrics(self) -> dict[str, float]:
        """Scalars worth logging each step (e.g. SphereFace's lambda); none by default."""
        return {}

    def class_weights(self) -> torch.Tensor:
        """The (C, D) class weight rows the logits use: :attr:`weight` itself unless a head transforms it."""
        return self.weight

    # -- public interface ------------------------------------------------------------------------
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Batch-mean cross-entropy of the margin logits: a 0-d tensor (float32, or float64 for float64 input)."""
        self._check_embeddings(embeddings)
        labels = self._check_labels(labels, len(embeddings))
        with self._full_precision(embeddings):
            embeddings, weight = self._upcast(embeddings)
            return F.cross_entropy(self.margin_logits(embeddings, weight, labels), labels)

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(N, C) inference logits; ``argmax`` over classes is the prediction."""
        self._check_embeddings(embeddings)
        with self._full_precision(embeddings):
            return self.class_logits(*self._upcast(embeddings))

    @property
    def hparams(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.hparam_names}

    def extra_repr(self) -> str:
        settings = ", ".join(f"{name}={value}" for name, value in self.hparams.items())
        base = f"in_features={self.in_features}, num_classes={self.num_classes}"
        return f"{base}, {settings}" if settings else base

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _full_precision(embeddings: torch.Tensor):
        """Switch autocast off inside the head (the cosines and margins need >= float32)."""
        device_type = embeddings.device.type
        if device_type in ("cpu", "cuda"):
            return torch.autocast(device_type=device_type, enabled=False)
        return nullcontext()

    def _upcast(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and weight in one dtype of at least float32 (bf16/fp16 -> fp32, fp64 kept)."""
        dtype = torch.promote_types(embeddings.dtype, self.weight.dtype)
        dtype = torch.promote_types(dtype, torch.float32)
        return embeddings.to(dtype), self.class_weights().to(dtype)

    def _check_embeddings(self, embeddings: torch.Tensor) -> None:
        if not torch.is_tensor(embeddings) or not embeddings.is_floating_point():
            raise ValueError(f"embeddings must be a floating-point tensor, got {_describe(embeddings)}")
        if embeddings.ndim != 2 or embeddings.shape[1] != self.in_features:
            raise ValueError(
                f"embeddings must have shape (batch, {self.in_features}), got {tuple(embeddings.shape)}; "
                f"build the head with in_features equal to the backbone's embedding size"
            )

    def _check_labels(self, labels: torch.Tensor, batch_size: int) -> torch.Tensor:
        """The labels as int64 class ids, after checking their type, shape and range."""
        integer = torch.is_tensor(labels) and not (labels.is_floating_point() or labels.is_complex())
        if not integer or labels.dtype == torch.bool:
            raise ValueError(f"labels must be an integer tensor of class ids, got {_describe(labels)}")
        if labels.shape != (batch_size,):
            raise ValueError(
                f"labels must have shape ({batch_size},) to match the embeddings, got {tuple(labels.shape)}"
            )
        if batch_size == 0:
            raise ValueError("empty batch: the loss is a mean over samples and needs at least one")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= self.num_classes:
            raise DataError(
                f"labels must lie in [0, {self.num_classes - 1}] for a head with num_classes="
                f"{self.num_classes}, got values in [{low}, {high}]; build the head with the "
                f"dataset's number of classes, or map labels to 0..C-1"
            )
        return labels.long()


def _describe(value) -> str:
    if torch.is_tensor(value):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


# --------------------------------------------------------------------------------------------------
# Heads without margin
# --------------------------------------------------------------------------------------------------


class SoftmaxHead(MarginHead):
    r"""Plain softmax classifier (the baseline): logits :math:`z_j = w_j^\top x` (no bias, no normalization).

    Its weights and features are free to grow, so its loss can go to 0. For the FairFace report's
    "softmax" (normalized weights and features, no scale) use ``cosine_softmax``.
    """

    def class_logits(self, embeddings, weight):
        return F.linear(embeddings, weight)


class NormalizedSoftmaxHead(MarginHead):
    r"""Normalized softmax (NormFace): :math:`z_j = s \cos\theta_j`, both :math:`x` and :math:`w_j` L2-normalized.

    Without a scale the logits live in :math:`[-1, 1]` and the loss cannot fall below
    :func:`cosine_softmax_loss_floor`; :math:`s = 30` lifts that floor out of the way.
    """

    hparam_names = ("scale",)

    def __init__(self, in_features: int, num_classes: int, scale: float = 30.0):
        super().__init__(in_features, num_classes)
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.scale = float(scale)

    def class_logits(self, embeddings, weight):
        return self.scale * _cosine(embeddings, weight)


class CosineSoftmaxHead(NormalizedSoftmaxHead):
    r"""The FairFace course report's "softmax": :math:`z_j = \cos\theta_j`, normalized :math:`x, w_j`, **no scale**.

    It is :class:`NormalizedSoftmaxHead` with :math:`s = 1`. Its loss is bounded below by
    :math:`\log(1 + (C-1)e^{-C/(C-1)})` (1.054 for the 7 FairFace races), which is why the report's
    softmax loss curve stays above 1. Kept to reproduce the report; prefer ``softmax`` or ``normsoftmax``.
    """

    def __init__(self, in_features: int, num_classes: int, scale: float = 1.0):
        super().__init__(in_features, num_classes, scale=scale)


# --------------------------------------------------------------------------------------------------
# Additive margins on the cosine
# --------------------------------------------------------------------------------------------------


class CosFaceHead(NormalizedSoftmaxHead):
    r"""CosFace / AM-softmax: target logit :math:`s(\cos\theta_y - m)`, others :math:`s\cos\theta_j`.

    Defaults :math:`s = 30, m = 0.35`. Inference logits are :math:`s\cos\theta_j` (no margin).
    """

    hparam_names = ("scale", "margin")

    def __init__(self, in_features: int, num_classes: int, scale: float = 30.0, margin: float = 0.35):
        super().__init__(in_features, num_classes, scale=scale)
        if not 0.0 <= margin <= 1.0:  # also refuses NaN
            raise ValueError(f"the cosine margin m is subtracted from the target's cosine and must be in [0, 1] (the "
                             f"papers use 0.35; a negative m favours the target instead of demanding a margin), "
                             f"got {margin!r}")
        self.margin = float(margin)

    def target_cosine(self, cos_target: torch.Tensor) -> torch.Tensor:
        """The target's cosine after the margin (before the scale)."""
        return cos_target - self.margin

    def margin_logits(self, embeddings, weight, labels):
        cosine = _cosine(embeddings, weight)
        target = self.target_cosine(_target_column(cosine, labels))
        return self.scale * _replace_target(cosine, labels, target)


class CosReLUHead(CosFaceHead):
    r"""The FairFace report's "CosReLU": target logit :math:`s\max(\cos\theta_y - m, -1)`.

    Identical to CosFace except where :math:`\cos\theta_y - m < -1`, i.e.
    :math:`\theta_y > \arccos(m - 1)` (130.5 degrees for m = 0.35): there the target logit is the
    constant :math:`-s`, so the target weight and the target cosine get **zero gradient** (only the
    non-target logits still push the sample). :attr:`last_clamp_fraction` (also in
    :meth:`extra_metrics`) is the fraction of the last batch in that branch.
    """

    def __init__(self, in_features: int, num_classes: int, scale: float = 30.0, margin: float = 0.35):
        super().__init__(in_features, num_classes, scale=scale, margin=margin)
        self._clamp_fraction: torch.Tensor | None = None

    def target_cosine(self, cos_target):
        shifted = cos_target - self.margin
        # Detached, kept as a tensor so that measuring it never forces a device sync in the step.
        self._clamp_fraction = (shifted.detach() < -1.0).float().mean()
        return shifted.clamp(min=-1.0)

    @property
    def last_clamp_fraction(self) -> float | None:
        """Fraction of the last batch (training or eval forward) whose target was clamped; None before any."""
        return None if self._clamp_fraction is None else float(self._clamp_fraction)

    def extra_metrics(self):
        fraction = self.last_clamp_fraction
        return {} if fraction is None else {"clamp_fraction": fraction}


class ArcFaceHead(NormalizedSoftmaxHead):
    r"""ArcFace: target logit :math:`s\cos(\theta_y + m)`, others :math:`s\cos\theta_j`.

    :math:`\cos(\theta + m) = \cos\theta\cos m - \sin\theta\sin m` with
    :math:`\sin\theta = \sqrt{1 - \cos^2\theta}` (no ``acos``). Past :math:`\theta + m > \pi` that
    target would start *increasing* with :math:`\theta`, so (insightface, ``easy_margin=False``)
    it is replaced by :math:`\cos\theta - m\sin m` wherever :math:`\cos\theta \le \cos(\pi - m)`.
    Defaults :math:`s = 64, m = 0.5` (radians); :math:`s = 30` also works for small data.

    ``easy_margin=True`` applies the margin only where :math:`\cos\theta_y > 0` (the target is
    :math:`\cos\theta_y` beyond 90 degrees), the ``easy_margin`` option of the common PyTorch
    implementation (ronghuaiyang/arcface-pytorch, ``models/metrics.py`` ``ArcMarginProduct``, commit
    04ffdb3). Why it matters from a random initialisation: the margin's pull on the target,
    :math:`\sin(\theta_y + m)`, is weaker than the plain cosine's :math:`\sin\theta_y` for every
    :math:`\theta_y > (\pi - m)/2` (75.7 degrees for m = 0.5) and vanishes at :math:`\pi - m`, so samples
    that start near 90 degrees can be pushed away from every class weight and stay there (notebook 03
    measures it).

    :math:`\sin\theta` uses :math:`\max(1 - \cos^2\theta, \epsilon_{dtype})` under the root: at
    :math:`|\cos\theta| = 1` the true derivative :math:`-\cos\theta/\sin\theta` is infinite, and the
    clamp makes it 0 there instead (value error at most :math:`\sqrt{\epsilon}\sin m`, 1.7e-4 in float32).

    ``margin_warmup_steps=T > 0`` ramps the margin linearly, :math:`m_t = m\,\min(1, t/T)` at training
    step :math:`t` (0-based): the first step is a normalized softmax and step :math:`T` on uses the full
    margin. It is this study's form of insightface's advice to start ArcFace from a softmax-trained model
    (deepinsight/insightface issue #214): the samples settle near their class weights before the margin
    can trap them. The step counter :attr:`iteration` is a buffer (saved in ``state_dict`` so a resumed
    run continues the ramp) that advances after every training-mode ``forward``, as SphereFace's lambda does;
    eval-mode forwards use the current margin. :meth:`extra_metrics` reports the margin the last step used.

    ``centered_weights=True`` uses the class weights minus their mean, :math:`w_j - \bar w` (then
    normalized), so the weights share no common direction; for two classes they are antipodal,
    :math:`w_2 = -w_1`. Why: the margin's cost to the target logit, :math:`s(\cos\theta_y - \cos(\theta_y + m))
    = 2s\sin(\theta_y + m/2)\sin(m/2)`, is largest near 90 degrees and vanishes far from the class weight,
    so a sample can shed it by moving away from *every* class weight at once, along the weights' common
    direction, while the comparison between classes is left intact. With free weights, two classes give
    that direction nothing else to do (notebook 03's trials: every ArcFace run on gender ended with its
    samples more than 150 degrees from their class weight); centred weights leave no such direction.
    """

    hparam_names = ("scale", "margin", "easy_margin", "margin_warmup_steps", "centered_weights")

    def __init__(self, in_features: int, num_classes: int, scale: float = 64.0, margin: float = 0.5,
                 easy_margin: bool = False, margin_warmup_steps: int = 0, centered_weights: bool = False):
        super().__init__(in_features, num_classes, scale=scale)
        if centered_weights and num_classes < 2:
            raise ValueError("centered_weights needs at least two classes (one centred weight row is zero)")
        self.centered_weights = bool(centered_weights)
        if not 0 <= margin < math.pi:
            raise ValueError(f"ArcFace's margin is an angle in radians in [0, pi), got {margin!r}")
        if isinstance(margin_warmup_steps, bool) or int(margin_warmup_steps) != margin_warmup_steps \
                or margin_warmup_steps < 0:
            raise ValueError(f"margin_warmup_steps must be a whole number of steps >= 0, got {margin_warmup_steps!r}")
        self.margin = float(margin)
        self.easy_margin = bool(easy_margin)
        self.margin_warmup_steps = int(margin_warmup_steps)
        # Only a ramp needs the counter; without one the state_dict stays as it always was.
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long),
                             persistent=self.margin_warmup_steps > 0)

    def class_weights(self) -> torch.Tensor:
        """The weight rows minus their mean with ``centered_weights`` (see the class docstring), else as stored."""
        if not self.centered_weights:
            return self.weight
        return self.weight - self.weight.mean(dim=0, keepdim=True)

    def current_margin(self, step: int | None = None) -> float:
        r"""The margin training step ``step`` (default: the next one) uses: :math:`m\,\min(1, t/T)`."""
        step = int(self.iteration) if step is None else int(step)
        if self.margin_warmup_steps == 0:
            return self.margin
        return self.margin * min(1.0, step / self.margin_warmup_steps)

    def extra_metrics(self):
        """The margin the *last* training step used (with a warm-up), as a per-step log wants it."""
        if self.margin_warmup_steps == 0:
            return {}
        return {"margin": self.current_margin(max(int(self.iteration) - 1, 0))}

    def _margin_tensor(self, like: torch.Tensor) -> torch.Tensor:
        # The ramp on the buffer, so a training step never syncs the device.
        ramp = (self.iteration.to(like.dtype) / self.margin_warmup_steps).clamp(max=1.0)
        return self.margin * ramp

    def target_cosine(self, cos_target: torch.Tensor) -> torch.Tensor:
        r""":math:`\cos(\theta_y + m)`, or :math:`\cos\theta_y - m \sin m` where :math:`\theta_y > \pi - m`
        (with ``easy_margin``: :math:`\cos\theta_y` where :math:`\theta_y \ge 90°`); :math:`m` is the
        current margin (see ``margin_warmup_steps``)."""
        eps = torch.finfo(cos_target.dtype).eps
        sin_target = torch.sqrt(torch.clamp(1.0 - cos_target * cos_target, min=eps))
        if self.margin_warmup_steps == 0:
            cos_m, sin_m, threshold = math.cos(self.margin), math.sin(self.margin), math.cos(math.pi - self.margin)
            margin = self.margin
        else:
            margin = self._margin_tensor(cos_target)
            cos_m, sin_m, threshold = torch.cos(margin), torch.sin(margin), -torch.cos(margin)
        cos_shifted = cos_target * cos_m - sin_target * sin_m
        if self.easy_margin:
            return torch.where(cos_target > 0, cos_shifted, cos_target)
        fallback = cos_target - margin * sin_m
        return torch.where(cos_target > threshold, cos_shifted, fallback)

    def margin_logits(self, embeddings, weight, labels):
        cosine = _cosine(embeddings, weight)
        target = self.target_cosine(_target_column(cosine, labels))
        return self.scale * _replace_target(cosine, labels, target)

    def forward(self, embeddings, labels):
        loss = super().forward(embeddings, labels)
        if self.training and self.margin_warmup_steps > 0:
            self.iteration += 1
        return loss


# --------------------------------------------------------------------------------------------------
# Multiplicative angular margin
# --------------------------------------------------------------------------------------------------


class SphereFaceHead(MarginHead):
    r"""A-Softmax (SphereFace), as in the paper: weights normalized, **features not normalized**.

    Logits :math:`z_j = \|x\|\cos\theta_j` for :math:`j \ne y`, and for the target

    .. math:: z_y = \|x\|\,\frac{\lambda\cos\theta_y + \psi(\theta_y)}{1 + \lambda},
              \qquad \lambda = \max(\lambda_{min},\ \text{base}\,(1 + \gamma\,t)^{-\text{power}})

    with :math:`\psi` from :func:`sphereface_psi` (integer margin m, default 4) and :math:`t` the
    training-step counter. Large :math:`\lambda` starts training near the plain "modified softmax"
    :math:`\|x\|\cos\theta`; it decays to :math:`\lambda_{min}` (authors: base 1000, gamma 0.12,
    power 1, lambda_min 5). ``lambda_base=0, lambda_min=0`` gives the pure A-Softmax (lambda = 0).

    The counter :attr:`iteration` is a buffer (saved in ``state_dict``) that advances by one after
    every ``forward`` in training mode, i.e. once per training step if the head is called once per
    step; forwards in eval mode use the current lambda and do not advance it. Step :math:`t`
    (0-based) uses :math:`\lambda(t)`. :attr:`lambda_` reports the lambda the *next* training forward
    will use, :meth:`extra_metrics` the one the last step used. Inference logits are :math:`\|x\|\cos\theta_j`.
    """

    hparam_names = ("margin", "lambda_base", "lambda_gamma", "lambda_power", "lambda_min")

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        margin: int = 4,
        lambda_base: float = 1000.0,
        lambda_gamma: float = 0.12,
        lambda_power: float = 1.0,
        lambda_min: float = 5.0,
    ):
        super().__init__(in_features, num_classes)
        self.margin = _check_integer_margin(margin, minimum=1)
        for name, value in (
            ("lambda_base", lambda_base),
            ("lambda_gamma", lambda_gamma),
            ("lambda_power", lambda_power),
            ("lambda_min", lambda_min),
        ):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        self.lambda_base = float(lambda_base)
        self.lambda_gamma = float(lambda_gamma)
        self.lambda_power = float(lambda_power)
        self.lambda_min = float(lambda_min)
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    @property
    def lambda_(self) -> float:
        """The annealing weight at the current :attr:`iteration`."""
        return sphereface_lambda(
            int(self.iteration), self.lambda_base, self.lambda_gamma, self.lambda_power, self.lambda_min
        )

    def extra_metrics(self):
        """The lambda the *last* training step used (what a per-step log wants), λ(0) before any step."""
        last_step = max(int(self.iteration) - 1, 0)
        return {"lambda": sphereface_lambda(last_step, self.lambda_base, self.lambda_gamma,
                                            self.lambda_power, self.lambda_min)}

    def _lambda_tensor(self, like: torch.Tensor) -> torch.Tensor:
        # Same formula as sphereface_lambda, on the buffer, so a training step never syncs the device.
        step = self.iteration.to(like.dtype)
        decayed = self.lambda_base * (1.0 + self.lambda_gamma * step) ** (-self.lambda_power)
        return decayed.clamp(min=self.lambda_min)

    def class_logits(self, embeddings, weight):
        return embeddings.norm(dim=1, keepdim=True) * _cosine(embeddings, weight)

    def margin_logits(self, embeddings, weight, labels):
        norm = embeddings.norm(dim=1)
        cosine = _cosine(embeddings, weight)
        cos_target = _target_column(cosine, labels)
        lam = self._lambda_tensor(cosine)
        target = (lam * cos_target + sphereface_psi(cos_target, self.margin)) / (1.0 + lam)
        return norm.unsqueeze(1) * _replace_target(cosine, labels, target)

    def forward(self, embeddings, labels):
        loss = super().forward(embeddings, labels)
        if self.training:
            self.iteration += 1
        return loss


class CourseSphereFaceHead(MarginHead):
    r"""The SphereFace course report's ``AngularPenaltySMLoss``, reproduced exactly, **bugs included**.

    Only for reproducing that report's numbers; use ``sphereface`` for the paper's A-Softmax.
    With :math:`W` the raw ``weight`` and :math:`\hat x = x/\|x\|`:

    .. math:: f = \hat x W^\top, \qquad n = \cos(m \arccos(\mathrm{clamp}(f_y, -1+\epsilon, 1-\epsilon))),
    .. math:: L = -\frac1N\sum_i \Big[n_i - \log\big(e^{n_i} + \textstyle\sum_{j\ne y_i} e^{f_{ij}}\big)\Big]

    Bugs kept (the course code: ``sonnygeorge/sphereface``, ``model.py`` at 0ac96a0, lines 23-47): (1) its ``for W in self.fc.parameters(): W = F.normalize(W)``
    rebinds a loop variable, so the weights are **never normalized** and :math:`f_y = \|w_y\|\cos\theta_y`
    is clamped (zero gradient) once it passes :math:`\pm(1-\epsilon)`; (2) :math:`\cos(m\arccos c)` is
    not monotonic beyond :math:`\theta = \pi/m` (see :func:`course_target_logit`); (3) no scale and no
    lambda annealing. Features *are* normalized. The report's Python loop over the batch is replaced by
    a scatter, and :math:`\log\sum\exp` by ``cross_entropy``'s stable log-sum-exp: same values (to
    rounding; float64 agrees to 1e-15) without the loop and without the overflow the original would
    hit for :math:`f > 88` in float32.

    Inference logits are :math:`f = \hat x W^\top` (what the classifier computes; the report itself
    scored LFW pairs by the cosine of the features, not by these logits).
    """

    hparam_names = ("margin", "eps")

    def __init__(self, in_features: int, num_classes: int, margin: float = 4.0, eps: float = 1e-7):
        super().__init__(in_features, num_classes)
        if not margin >= 1.0:  # also refuses NaN
            raise ValueError(f"the course loss multiplies the angle by its margin m, which must be >= 1 (the course "
                             f"used 4; m < 1 shrinks the angle instead of widening it), got {margin!r}")
        self.margin = float(margin)
        self.eps = float(eps)

    def class_logits(self, embeddings, weight):
        return F.linear(F.normalize(embeddings, p=2, dim=1), weight)

    def margin_logits(self, embeddings, weight, labels):
        wf = self.class_logits(embeddings, weight)
        numerator = course_target_logit(_target_column(wf, labels), self.margin, self.eps)
        return _replace_target(wf, labels, numerator)


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------

HEADS: dict[str, type[MarginHead]] = {
    "softmax": SoftmaxHead,
    "cosine_softmax": CosineSoftmaxHead,
    "normsoftmax": NormalizedSoftmaxHead,
    "sphereface": SphereFaceHead,
    "cosface": CosFaceHead,
    "cosrelu": CosReLUHead,
    "arcface": ArcFaceHead,
    "course_sphereface": CourseSphereFaceHead,
}


def available_heads() -> tuple[str, ...]:
    """Names accepted by :func:`make_head`."""
    return tuple(HEADS)


def make_head(name: str, in_features: int, num_classes: int, **hparams) -> MarginHead:
    """Build the head registered as ``name`` (see :data:`HEADS`) with the given hyperparameters.

    Example: ``make_head("cosface", 512, 7, scale=30, margin=0.35)``. The weight is initialised from
    torch's global RNG: seed it (``torch.manual_seed``) for a reproducible head.
    """
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; choose one of {list(HEADS)}")
    cls = HEADS[name]
    fixed = ("self", "in_features", "num_classes")
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in fixed]
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        raise ValueError(f"head {name!r} does not take {unknown}; its hyperparameters are {accepted}")
    return cls(in_features, num_classes, **hparams)


_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_NAME_ROLE = re.compile(r":(?:func|attr|meth|class|data|mod):`~?([^`]+)`")


def docstring_markdown(obj) -> str:
    """``obj``'s docstring (written in reStructuredText for the API docs) as Markdown for a notebook page:
    ``.. math::`` blocks become ``$$…$$``, ``:math:`` roles ``$…$`` (MathJax typesets both), name roles
    and double backticks become code."""
    lines, out, i = inspect.cleandoc(obj.__doc__ or "").split("\n"), [], 0
    while i < len(lines):
        if lines[i].lstrip().startswith(".. math::"):
            body = [lines[i].split(".. math::", 1)[1].strip()]
            i += 1
            while i < len(lines) and lines[i].startswith(" ") and lines[i].strip():
                body.append(lines[i].strip())
                i += 1
            out.append("$$" + " ".join(body) + "$$")
            continue
        out.append(lines[i])
        i += 1
    text = _MATH_ROLE.sub(r"$\1$", "\n".join(out))
    return _NAME_ROLE.sub(r"`\1`", text).replace("``", "`")
