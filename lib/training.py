"""The training engine shared by the notebooks: batches from a uint8 image cache, on-device
augmentation, a seeded and resumable ``fit``, and batched inference (``embed``, ``predict``).

Data path of one training step::

    cached uint8 (N, 3, H, W) ──gather rows──▶ uint8 batch ──to device──▶ flip / shift (uint8)
        ──▶ float, (x/255 − mean)/std ──▶ model ──▶ embeddings ──▶ head(embeddings, labels) = loss

Images travel as uint8 (4x less than float32) and are augmented and normalized on the device, so
no per-image Python code runs during training (compare the course code, which decoded every JPEG
every epoch; ``scripts/bench_pipeline.py`` measures the difference).

Reproducibility. The shuffling order and the augmentation of epoch ``e`` come from generators seeded
by ``(seed, e)`` alone, so an epoch does not depend on what ran before it; everything else that
changes (weights, optimizer moments, scheduler, the head's buffers such as SphereFace's iteration
counter, the global RNG states, the history) is checkpointed atomically after every epoch. Calling
``fit`` again with the same ``checkpoint_dir``/``run_name`` continues after the last finished epoch
and, on CPU, gives bit-identical results to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from lib.models import COURSE_NORMALIZATION, IMAGENET_NORMALIZATION
from lib.progress import progress as progress_bar

__all__ = [
    "Augment",
    "FitResult",
    "NORMALIZATIONS",
    "augment_batch",
    "erase_rectangles",
    "embed",
    "epoch_batches",
    "epoch_generator",
    "fit",
    "normalize_batch",
    "predict",
    "resolve_device",
    "resolve_normalization",
    "seed_everything",
    "shift_and_flip",
]

CHECKPOINT_VERSION = 1
NORMALIZATIONS = {"course": COURSE_NORMALIZATION, "imagenet": IMAGENET_NORMALIZATION}
# Independent random streams derived from (seed, epoch).
_SHUFFLE_STREAM, _AUGMENT_STREAM = 0, 1


# --------------------------------------------------------------------------------------------------
# Seeds, devices
# --------------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (call before building model and head)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int, stream: int = _SHUFFLE_STREAM) -> torch.Generator:
    """A CPU generator that depends only on ``(seed, epoch, stream)``.

    The three numbers are mixed by NumPy's ``SeedSequence`` rather than added, so seed 1 / epoch 0
    and seed 0 / epoch 1 do not share an order.
    """
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA if available, else Apple MPS, else CPU; anything else is passed to ``torch.device``."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _amp_dtype(amp, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for the backbone.

    ``"auto"``/``True``: bf16 on CUDA where supported, else fp16 (with a GradScaler); off on other devices,
    so CPU runs stay float32 unless asked. ``"bf16"`` also runs on the CPU, where oneDNN's bf16 convolutions
    use AMX/AVX-512-BF16 when the processor has them (``scripts/bench_pipeline.py`` prints the gain);
    ``"fp16"`` is CUDA only.
    """
    if amp in (False, None, "off"):
        return None
    if amp not in (True, "auto", "bf16", "fp16"):
        raise ValueError(f"amp must be 'auto', 'bf16', 'fp16', True or False, got {amp!r}")
    if device.type == "cpu" and amp == "bf16":
        return torch.bfloat16
    if device.type != "cuda":
        if amp in (True, "auto"):
            return None
        raise ValueError(
            f"amp={amp!r} is not available on {device}: use amp='bf16' on a CPU, fp16 only on CUDA, "
            f"or amp='auto' / False"
        )
    if amp == "fp16" or (amp in (True, "auto") and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


@contextmanager
def _deterministic(enabled: bool):
    """Ask torch for deterministic kernels (warn instead of failing where none exists), then restore.

    Deterministic mode also fills every newly allocated tensor with NaN by default
    (``torch.utils.deterministic.fill_uninitialized_memory``), a debugging aid that cost ~10 % of a
    SphereCNN step on CPU; it is switched off here since no kernel of ours reads uninitialized memory.
    """
    settings = torch.utils.deterministic
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        settings.fill_uninitialized_memory,
    )
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
        settings.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        settings.fill_uninitialized_memory = before[2]


# --------------------------------------------------------------------------------------------------
# Batches, augmentation, normalization (all vectorized over the batch)
# --------------------------------------------------------------------------------------------------
def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True, drop_last: bool = False):
    """Index tensors (int64, CPU) of the batches of one epoch: a permutation seeded by ``(seed, epoch)``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = torch.randperm(n, generator=epoch_generator(seed, epoch)) if shuffle else torch.arange(n)
    batches = list(order.split(batch_size))
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


@dataclass(frozen=True)
class Augment:
    """Training augmentation on uint8 batches.

    ``flip``: mirror each image left-right with probability 1/2. ``max_shift``: translate each image
    by a random whole number of pixels in ``[-max_shift, max_shift]`` in each direction, repeating the
    edge pixels (a random crop of an edge-padded image, without building the padded copy).
    ``erase``: with this probability, fill one random rectangle of each image with mid-grey (random
    erasing, Zhong et al. 2020, with torchvision's ranges: 2–33 % of the area, aspect 0.3–3.3), applied
    after the shift and flip.
    """

    flip: bool = True
    max_shift: int = 0
    erase: float = 0.0

    def __post_init__(self):
        if self.max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {self.max_shift}")
        if not 0.0 <= self.erase <= 1.0:
            raise ValueError(f"erase is a probability in [0, 1], got {self.erase}")

    def config(self) -> dict:
        """The fields a checkpoint records (``erase`` only when on, so earlier checkpoints still match)."""
        fields = asdict(self)
        if not self.erase:
            del fields["erase"]
        return fields


def _resolve_augment(augment) -> Augment:
    if augment is None or augment is False:
        return Augment(flip=False, max_shift=0)
    if augment is True:
        return Augment()
    if isinstance(augment, dict):
        return Augment(**augment)
    if isinstance(augment, Augment):
        return augment
    raise ValueError(f"augment must be an Augment, a dict of its fields, True or None, got {augment!r}")


def shift_and_flip(
    images: torch.Tensor, shift_y: torch.Tensor, shift_x: torch.Tensor, flip: torch.Tensor
) -> torch.Tensor:
    """Per-image translation (edge pixels repeated) and optional mirror, as one gather.

    ``out[n, c, i, j] = images[n, c, clamp(i − shift_y[n]), clamp(j' − shift_x[n])]`` with
    ``j' = W−1−j`` where ``flip[n]`` (the shifted image is then mirrored) and ``j' = j`` elsewhere.
    """
    n, channels, height, width = images.shape
    device = images.device
    rows = (torch.arange(height, device=device) - shift_y.to(device)[:, None]).clamp_(0, height - 1)
    columns = torch.arange(width, device=device).expand(n, width)
    columns = torch.where(flip.to(device)[:, None], width - 1 - columns, columns)
    columns = (columns - shift_x.to(device)[:, None]).clamp_(0, width - 1)
    return images[
        torch.arange(n, device=device)[:, None, None, None],
        torch.arange(channels, device=device)[None, :, None, None],
        rows[:, None, :, None],
        columns[:, None, None, :],
    ]


ERASE_AREA = (0.02, 0.33)  # torchvision.transforms.RandomErasing's defaults
ERASE_ASPECT = (0.3, 3.3)
ERASE_FILL = 128  # uint8 mid-grey: 0 after the (x/255 − 0.5)/0.5 normalization


def erase_rectangles(images: torch.Tensor, top, left, height, width, apply) -> torch.Tensor:
    """Fill rows ``[top, top+height)`` × columns ``[left, left+width)`` of image n with mid-grey where
    ``apply[n]`` (all arguments are per-image (N,) tensors); returns a new tensor."""
    n, _, rows, columns = images.shape
    device = images.device
    top, left, height, width, apply = (t.to(device) for t in (top, left, height, width, apply))
    row = torch.arange(rows, device=device)[None, :]
    column = torch.arange(columns, device=device)[None, :]
    in_rows = (row >= top[:, None]) & (row < (top + height)[:, None])
    in_columns = (column >= left[:, None]) & (column < (left + width)[:, None])
    mask = (in_rows[:, :, None] & in_columns[:, None, :] & apply[:, None, None])[:, None]
    return images.masked_fill(mask, ERASE_FILL)


def _random_erase(images: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    n, _, rows, columns = images.shape
    apply = torch.rand(n, generator=generator) < probability
    area = torch.empty(n).uniform_(*ERASE_AREA, generator=generator) * rows * columns
    aspect = torch.empty(n).uniform_(math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1]), generator=generator).exp()
    height = (area * aspect).sqrt().round().clamp(1, rows).long()
    width = (area / aspect).sqrt().round().clamp(1, columns).long()
    top = (torch.rand(n, generator=generator) * (rows - height + 1)).long()
    left = (torch.rand(n, generator=generator) * (columns - width + 1)).long()
    return erase_rectangles(images, top, left, height, width, apply)


def augment_batch(images: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """Randomly flip/shift (then erase) a uint8 batch on its device; the random draws come from a CPU
    ``generator``."""
    n = len(images)
    flip = torch.rand(n, generator=generator) < 0.5 if augment.flip else torch.zeros(n, dtype=torch.bool)
    if augment.max_shift == 0:
        if augment.flip:
            images = torch.where(flip.to(images.device)[:, None, None, None], images.flip(-1), images)
    else:
        shifts = torch.randint(-augment.max_shift, augment.max_shift + 1, (2, n), generator=generator)
        images = shift_and_flip(images, shifts[0], shifts[1], flip)
    if augment.erase:
        images = _random_erase(images, augment.erase, generator)
    return images


def resolve_normalization(normalize, model: nn.Module | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` per channel from ``"auto"`` (the model's ``input_normalization``, else the
    course's 0.5/0.5), ``"course"``, ``"imagenet"``, or an explicit ``(mean, std)`` pair."""
    if isinstance(normalize, str):
        if normalize == "auto":
            return tuple(getattr(model, "input_normalization", COURSE_NORMALIZATION))
        if normalize not in NORMALIZATIONS:
            raise ValueError(
                f"normalize must be 'auto', one of {list(NORMALIZATIONS)} or (mean, std), got {normalize!r}"
            )
        return NORMALIZATIONS[normalize]
    mean, std = normalize
    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"normalize=(mean, std) needs 3 means and 3 positive stds, got {normalize!r}")
    return mean, std


def normalize_batch(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (N, 3, H, W) → float32 ``(x/255 − mean)/std``, computed as ``x·a + b`` on the batch's device."""
    mean = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return torch.addcmul(-mean / std, images.to(torch.float32), 1.0 / (255.0 * std))


# --------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------
def _check_images(images) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        got = (
            f"{images.dtype} tensor of shape {tuple(images.shape)}" if torch.is_tensor(images) else type(images).__name__
        )
        raise ValueError(
            f"images must be a uint8 tensor (N, 3, H, W) as built by lib.imagecache.build_cache, got a {got}"
        )
    if len(images) == 0:
        raise ValueError("images is empty")
    return images


def _check_labels(labels, n: int, num_classes: int | None) -> torch.Tensor:
    labels = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels)
    if labels.ndim != 1 or len(labels) != n or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(
            f"labels must be {n} integer class ids (one per image), got {labels.dtype} of shape {tuple(labels.shape)}"
        )
    labels = labels.to(torch.int64)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        raise ValueError(
            f"labels lie in [{low}, {high}] but the head has {num_classes} classes; "
            f"map labels to 0..C-1 and build the head with num_classes=C"
        )
    return labels


# --------------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------------
@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model and head (on the training device) and one history
    row per finished epoch (``epoch`` counts from 1)."""

    model: nn.Module
    head: nn.Module
    history: pd.DataFrame
    checkpoint_path: Path | None = None
    resumed_from_epoch: int = 0


def _make_optimizer(name: str, parameters, lr: float, weight_decay: float, momentum: float):
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {name!r}")


def _lr_factor(schedule: str | None, total_steps: int) -> Callable[[int], float]:
    """Learning-rate multiplier per optimizer step.

    ``"cosine"``: ``½(1 + cos(π·t/T))`` over all ``T`` steps; ``"step"``: ×0.1 after 50 % and again
    after 75 % of the steps (the SphereFace recipe's shape); ``None``: constant.
    """
    if schedule is None:
        return lambda step: 1.0
    if schedule == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    if schedule == "step":
        milestones = (total_steps // 2, (3 * total_steps) // 4)
        return lambda step: 0.1 ** sum(step >= milestone for milestone in milestones)
    raise ValueError(f"schedule must be None, 'cosine' or 'step', got {schedule!r}")


def _rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [v.tolist() if isinstance(v, np.ndarray) else v for v in np.random.get_state()],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, *rest = state["python"]
    random.setstate((version, tuple(rest[0]), *rest[1:]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_atomically(payload: dict, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _labels_digest(labels: torch.Tensor) -> str:
    return hashlib.blake2b(labels.cpu().numpy().tobytes(), digest_size=8).hexdigest()


def _check_resumable(stored: dict, current: dict, path: Path) -> None:
    ignore = {"epochs"} if current["schedule"] is None else set()  # a constant lr may be trained further
    keys = list(current) + [k for k in stored if k not in current]  # e.g. "amp" is recorded only when on
    differ = [k for k in keys if k not in ignore and stored.get(k) != current.get(k)]
    if differ:
        details = "; ".join(f"{k}: checkpoint {stored.get(k)!r}, now {current.get(k)!r}" for k in differ)
        raise ValueError(
            f"checkpoint {path} belongs to a different run ({details}); "
            f"use another run_name, or delete the file to start over"
        )


def fit(
    model: nn.Module,
    head: nn.Module,
    train_images: torch.Tensor,
    train_labels,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    schedule: str | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    amp="auto",
    augment=Augment(),
    normalize="auto",
    eval_fn: Callable[[nn.Module, nn.Module, int], dict] | None = None,
    eval_every: int = 1,
    checkpoint_dir: str | os.PathLike | None = None,
    run_name: str = "run",
    drop_last: bool = False,
    progress: bool = True,
) -> FitResult:
    """Train ``model`` (images → embeddings) with ``head`` (embeddings, labels → loss).

    Args:
        train_images: uint8 (N, 3, H, W), e.g. from :func:`lib.imagecache.build_cache` (may be memory-mapped).
        train_labels: N integer class ids in ``[0, head.weight.shape[0])``.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (with ``momentum``); the model's and the head's
            parameters are optimized together with the same ``lr`` and ``weight_decay``.
        schedule: ``None``, ``"cosine"`` or ``"step"`` (see :func:`_lr_factor`), stepped every batch.
        seed: seeds the global torch RNG at the start and the per-epoch shuffling/augmentation.
            Seed the model's and head's initialization yourself (:func:`seed_everything` first).
        device: ``"auto"`` (CUDA, MPS, CPU) or a device. On CUDA the whole image tensor is moved to the
            GPU when it takes less than a quarter of the free memory.
        amp: ``"auto"`` = bf16 autocast for the backbone on CUDA (fp16 + GradScaler where bf16 is not
            supported), off elsewhere; ``"bf16"`` also on the CPU (with channels-last tensors; recorded in
            the checkpoint config); ``False`` to disable. Heads compute in float32 regardless.
        augment: :class:`Augment` (default: random horizontal flip), a dict of its fields, or ``None``.
        normalize: ``"auto"`` (the model's ``input_normalization``), ``"course"``, ``"imagenet"`` or (mean, std).
        eval_fn: ``eval_fn(model, head, epoch) -> dict`` of validation metrics, called after epochs
            ``eval_every, 2·eval_every, …`` and after the last; its keys become history columns.
        checkpoint_dir, run_name: when given, ``{checkpoint_dir}/{run_name}.pt`` is written after every
            epoch and a later call resumes from it (returning at once if all epochs are done).
        drop_last: drop a last batch smaller than ``batch_size`` (needed if it could hold 1 sample and the
            model has BatchNorm).

    Returns:
        :class:`FitResult` with ``history`` columns ``epoch, loss, train_accuracy, <head extra metrics>,
        lr, seconds, <eval metrics>``; ``loss`` and ``train_accuracy`` are means over the epoch's samples,
        computed on the augmented training batches with the weights of each step (before its update);
        head extras (e.g. SphereFace's ``lambda``, CosReLU's ``clamp_fraction``) are means over steps of
        ``head.extra_metrics()`` read after each step's forward; ``lr`` is the rate at the epoch's end;
        ``seconds`` is the epoch's training time (``eval_fn`` excluded).

    Raises:
        FloatingPointError: the loss became NaN or infinite (the message names epoch and step).
    """
    if epochs < 0 or eval_every < 1:
        raise ValueError(f"epochs must be >= 0 and eval_every >= 1, got epochs={epochs}, eval_every={eval_every}")
    images = _check_images(train_images)
    num_classes = getattr(head, "weight", None)
    labels = _check_labels(train_labels, len(images), None if num_classes is None else num_classes.shape[0])
    device = resolve_device(device)
    amp_dtype = _amp_dtype(amp, device)
    mean, std = resolve_normalization(normalize, model)
    augment = _resolve_augment(augment)
    optimizer_name = optimizer

    # oneDNN's bf16 convolutions are fastest on channels-last tensors (≈1.4x over NCHW for SphereCNN);
    # float32 ones gain nothing, so the memory format changes only in that case.
    channels_last = device.type == "cpu" and amp_dtype == torch.bfloat16
    if channels_last:
        model.to(device, memory_format=torch.channels_last)
    else:
        model.to(device)
    head.to(device)
    parameters = [p for module in (model, head) for p in module.parameters() if p.requires_grad]
    optimizer = _make_optimizer(optimizer_name, parameters, lr, weight_decay, momentum)
    batches_per_epoch = len(epoch_batches(len(images), batch_size, seed, 0, shuffle=False, drop_last=drop_last))
    if batches_per_epoch == 0:
        raise ValueError(f"no full batch: {len(images)} images with batch_size={batch_size} and drop_last=True")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(schedule, max(1, epochs * batches_per_epoch)))
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    config = {
        "version": CHECKPOINT_VERSION,
        "model": type(model).__name__,
        **({"model_dropout": model.dropout} if getattr(model, "dropout", 0) else {}),
        "head": type(head).__name__,
        "n_images": len(images),
        "image_shape": list(images.shape[1:]),
        "labels": _labels_digest(labels),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": optimizer_name,
        "weight_decay": weight_decay,
        "momentum": momentum if optimizer_name == "sgd" else None,
        "schedule": schedule,
        "seed": seed,
        "augment": augment.config(),
        "normalize": [list(mean), list(std)],
        "drop_last": drop_last,
        **({"amp": str(amp_dtype).removeprefix("torch.")} if amp_dtype is not None else {}),
    }
    checkpoint_path = Path(checkpoint_dir) / f"{run_name}.pt" if checkpoint_dir is not None else None
    history: list[dict] = []
    start_epoch = 0
    if checkpoint_path is not None and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        _check_resumable(state["config"], config, checkpoint_path)
        if state["epoch"] > epochs:
            raise ValueError(f"checkpoint {checkpoint_path} has {state['epoch']} epochs, more than epochs={epochs}")
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        history, start_epoch = state["history"], state["epoch"]
    else:
        torch.manual_seed(seed)

    # Small enough caches go to the GPU once: batches are then gathered there, with no host copy per step.
    source = images
    if device.type == "cuda" and start_epoch < epochs:
        free_bytes, _ = torch.cuda.mem_get_info(device)
        if images.numel() < free_bytes // 4:
            source = images.to(device)
    labels_on_device = labels.to(device)
    non_blocking = device.type == "cuda"
    autocast = (
        (lambda: torch.autocast(device_type=device.type, dtype=amp_dtype)) if amp_dtype is not None else nullcontext
    )
    check_every = 1 if device.type == "cpu" else 25  # on a GPU, checking the loss forces a device sync
    accumulate_dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64

    with _deterministic(device.type == "cpu"):
        for epoch in range(start_epoch, epochs):
            started = time.perf_counter()
            model.train()
            head.train()
            batches = epoch_batches(len(images), batch_size, seed, epoch, drop_last=drop_last)
            augment_rng = epoch_generator(seed, epoch, _AUGMENT_STREAM)
            step_losses = torch.zeros(len(batches), device=device)
            loss_sum = torch.zeros((), dtype=accumulate_dtype, device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            extras: dict[str, float] = {}
            desc = f"{run_name} epoch {epoch + 1}/{epochs}"
            bar = progress_bar(batches, desc=desc, leave=False, disable=not progress)
            for step, index in enumerate(bar):
                batch = source[index.to(source.device)].to(device, non_blocking=non_blocking)
                target = labels_on_device[index.to(device)]
                batch = normalize_batch(augment_batch(batch, augment, augment_rng), mean, std)
                if channels_last:
                    batch = batch.contiguous(memory_format=torch.channels_last)
                with autocast():
                    embeddings = model(batch)
                loss = head(embeddings.float(), target)
                step_losses[step] = loss.detach()
                if (step + 1) % check_every == 0 or step + 1 == len(batches):
                    _check_finite(step_losses[: step + 1], epoch, step, check_every)
                    bar.set_postfix(loss=f"{float(step_losses[: step + 1].mean()):.4f}", refresh=False)
                with torch.no_grad():
                    predicted = head.logits(embeddings.detach().float()).argmax(dim=1)
                    correct += (predicted == target).sum()
                    loss_sum += loss.detach().to(accumulate_dtype) * len(index)
                for name, value in (head.extra_metrics() if hasattr(head, "extra_metrics") else {}).items():
                    extras[name] = extras.get(name, 0.0) + float(value)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
            bar.close()
            seen = sum(len(index) for index in batches)
            row = {
                "epoch": epoch + 1,
                "loss": float(loss_sum) / seen,
                "train_accuracy": int(correct) / seen,
                **{name: total / len(batches) for name, total in extras.items()},
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - started,
            }
            if eval_fn is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
                metrics = eval_fn(model, head, epoch + 1)
                if not isinstance(metrics, dict):
                    raise TypeError(f"eval_fn must return a dict of metrics, got {type(metrics).__name__}")
                clash = sorted(set(metrics) & set(row))
                if clash:
                    raise ValueError(f"eval_fn metric names {clash} clash with training columns; rename them")
                row.update({name: float(value) for name, value in metrics.items()})
            history.append(row)
            if checkpoint_path is not None:
                _save_atomically(
                    {
                        "config": config,
                        "epoch": epoch + 1,
                        "model": model.state_dict(),
                        "head": head.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict(),
                        "rng": _rng_state(),
                        "history": history,
                    },
                    checkpoint_path,
                )
    return FitResult(model, head, pd.DataFrame(history), checkpoint_path, start_epoch)


def _check_finite(step_losses: torch.Tensor, epoch: int, step: int, check_every: int) -> None:
    finite = torch.isfinite(step_losses[-check_every:])
    if bool(finite.all()):
        return
    first_bad = len(step_losses) - len(finite) + int((~finite).nonzero()[0])
    value = float(step_losses[first_bad])
    raise FloatingPointError(
        f"loss is {value} at epoch {epoch + 1}, step {first_bad + 1} (1-based); lower the learning rate, "
        f"check the head's scale/margin, or try amp=False"
    )


# --------------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------------
@contextmanager
def _eval_mode(*modules: nn.Module):
    modes = [module.training for module in modules]
    for module in modules:
        module.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)


def _batched(images: torch.Tensor, batch_size: int, device: torch.device, mean, std, progress: bool, desc: str):
    """Normalized float batches of ``images`` in order, on ``device``."""
    for start in progress_bar(range(0, len(images), batch_size), desc=desc, leave=False, disable=not progress):
        batch = images[start : start + batch_size].to(device, non_blocking=device.type == "cuda")
        yield normalize_batch(batch, mean, std)


def embed(
    model: nn.Module,
    images_uint8: torch.Tensor,
    *,
    batch_size: int = 256,
    normalize="auto",
    flip: bool = False,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Embeddings (N, D) float32 on the CPU, in eval mode without gradients; with ``flip=True`` also
    those of the mirrored images (fuse them with ``lib.verification.fuse_flip``), else ``None``.
    The model is moved to ``device`` and its train/eval mode restored afterwards."""
    images = _check_images(images_uint8)
    device = resolve_device(device)
    mean, std = resolve_normalization(normalize, model)
    model.to(device)
    plain, mirrored = [], []
    with _eval_mode(model):
        for batch in _batched(images, batch_size, device, mean, std, progress, "embedding"):
            if flip:  # one forward over [batch, mirrored batch]
                both = model(torch.cat([batch, batch.flip(-1)])).float()
                plain.append(both[: len(batch)].cpu())
                mirrored.append(both[len(batch) :].cpu())
            else:
                plain.append(model(batch).float().cpu())
    return torch.cat(plain), (torch.cat(mirrored) if flip else None)


def predict(
    model: nn.Module,
    head: nn.Module,
    images_uint8: torch.Tensor,
    *,
    batch_size: int = 256,
    normalize="auto",
    device: str | torch.device = "auto",
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Classify: ``(logits (N, C) float32, predicted class ids (N,) int64)`` on the CPU, from
    ``head.logits`` (no margin), in eval mode without gradients and without augmentation."""
    images = _check_images(images_uint8)
    device = resolve_device(device)
    mean, std = resolve_normalization(normalize, model)
    model.to(device)
    head.to(device)
    logits = []
    with _eval_mode(model, head):
        for batch in _batched(images, batch_size, device, mean, std, progress, "predicting"):
            logits.append(head.logits(model(batch).float()).float().cpu())
    logits = torch.cat(logits)
    return logits, logits.argmax(dim=1)
