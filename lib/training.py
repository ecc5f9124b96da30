"""The training engine shared by the notebooks: batches from a uint8 image cache, on-device
augmentation, one visible training step, a seeded and resumable ``fit``, and batched inference
(``embed``, ``predict``).

Data path of one training step::

    cached uint8 (N, 3, H, W) ──gather rows──▶ uint8 batch ──to device──▶ flip / shift / erase (uint8)
        ──▶ float, (x/255 − mean)/std ──▶ model ──▶ embeddings ──▶ head(embeddings, labels) = loss

:func:`train_epoch` and :func:`train_step` are that path in code (notebook 02 prints them); :func:`fit` is
the harness around them: the run's :class:`lib.settings.RunSettings`, resume, RNG, checkpoints, the NaN
stop and evaluation. Every model of the series, the toy networks of ``lib.margin_geometry`` and the
benchmark included, trains through :func:`train_step`.

Images travel as uint8 (4x less than float32) and are augmented and normalized on the device, so
no per-image Python code runs during training (compare the course code, which decoded every JPEG
every epoch; ``scripts/bench_pipeline.py`` measures the difference).

Reproducibility. The shuffling order and the augmentation of epoch ``e`` come from generators seeded
by ``(seed, e)`` alone, so an epoch does not depend on what ran before it; everything else that
changes (weights, optimizer moments, scheduler, the head's buffers such as SphereFace's iteration
counter, the global RNG states, the history) is checkpointed atomically after every epoch, together
with the run's settings (to local disk, and copied to a persistent folder such as Google Drive at most
every few minutes and at the run's end: :class:`CheckpointStore`). Calling ``fit`` again with the same
settings continues after the last finished epoch and, on CPU, gives bit-identical results to an uninterrupted run; any other setting is another
run, with another checkpoint.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import secrets
import shutil
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from lib import paths
from lib.errors import human_bytes
from lib.models import COURSE_NORMALIZATION, IMAGENET_NORMALIZATION
from lib.progress import progress as progress_bar
from lib.settings import RunSettings, data_digest, settings_difference
from lib.tables import process_alive

__all__ = [
    "Augment",
    "CheckpointError",
    "CheckpointStore",
    "EpochMeter",
    "FeatureBatches",
    "FitResult",
    "ImageBatches",
    "NORMALIZATIONS",
    "augment_batch",
    "erase_rectangles",
    "embed",
    "epoch_batches",
    "epoch_generator",
    "fit",
    "load_checkpoint",
    "state_digest",
    "normalize_batch",
    "predict",
    "remove_stale_temporaries",
    "resolve_device",
    "resolve_normalization",
    "resolve_precision",
    "seed_everything",
    "shift_and_flip",
    "train_epoch",
    "train_step",
]

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
    """``"auto"`` → CUDA if available, else Apple MPS, else CPU; anything else is passed to ``torch.device``.

    Asking for a device that is not there is an error that says why (a CPU build of torch, or no GPU /
    driver visible), never a silent run on the CPU.
    """
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(cuda_unavailable_reason())
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("device 'mps' was asked for, but this torch/machine has no Apple MPS backend; "
                           "use device='auto' or 'cpu'")
    return resolved


def cuda_unavailable_reason() -> str:
    """Why ``torch.cuda.is_available()`` is False, in words a user can act on."""
    if torch.version.cuda is None:
        return (f"CUDA was asked for, but torch {torch.__version__} is a CPU-only build. Install a CUDA build of "
                f"torch that matches the GPU driver (on Google Colab, keep the preinstalled torch and choose "
                f"Runtime > Change runtime type > GPU), or run with device='cpu'")
    return (f"CUDA was asked for, and torch {torch.__version__} is built for CUDA {torch.version.cuda}, but no "
            f"usable GPU is visible (torch.cuda.is_available() is False): no GPU attached (on Colab: Runtime > "
            f"Change runtime type > GPU), or an NVIDIA driver too old for CUDA {torch.version.cuda} (check "
            f"`nvidia-smi`). Or run with device='cpu'")


def resolve_precision(amp, device: torch.device) -> str:
    """The autocast precision of the backbone on ``device``: ``"off"``, ``"bf16"`` or ``"fp16"``.

    ``"auto"``: on CUDA, bf16 on GPUs of compute capability 8.0 and above (Ampere and newer), else fp16
    with a gradient scaler — older GPUs such as Colab's T4 (7.5) only emulate bf16, and cuDNN has no bf16
    convolutions there. On a CPU, bf16 where the processor computes it natively (:func:`cpu_native_bf16`:
    AMX or AVX-512-BF16, which oneDNN's bf16 convolutions use; ``make bench`` measured 3x over float32 for
    SphereCNN on such a CPU), float32 elsewhere (emulated bf16 is slower than float32). The choice depends
    on the machine only, never on a timing, so a run is reproducible there; the resolved precision is what
    :func:`fit` stores in the run's settings, so its checkpoints never mix precisions. ``"bf16"`` also runs
    on a CPU without native support (slowly). ``"fp16"`` is CUDA only. Other devices (MPS): float32.
    """
    amp = {False: "off", None: "off", True: "auto"}.get(amp, amp)
    if amp not in ("auto", "off", "bf16", "fp16"):
        raise ValueError(f"amp must be 'auto', 'off', 'bf16' or 'fp16', got {amp!r}")
    if amp == "off":
        return "off"
    if device.type == "cuda":
        capability = torch.cuda.get_device_capability(device)
        native_bf16 = capability >= (8, 0)
        if amp == "auto":
            return "bf16" if native_bf16 else "fp16"
        if amp == "bf16" and not native_bf16:
            raise ValueError(
                f"amp='bf16' on {torch.cuda.get_device_name(device)} (compute capability "
                f"{capability[0]}.{capability[1]}) would be emulated and slow: bf16 needs 8.0 or newer. Use "
                f"amp='auto' (fp16 with a gradient scaler here) or amp='fp16'"
            )
        return amp
    if amp == "auto":
        return "bf16" if device.type == "cpu" and cpu_native_bf16() else "off"
    if device.type == "cpu" and amp == "bf16":
        return "bf16"
    raise ValueError(f"amp={amp!r} is not available on {device}: use amp='bf16' on a CPU, fp16 only on CUDA, "
                     f"or amp='auto' / 'off'")


# /proc/cpuinfo flags of the x86 instructions oneDNN runs bf16 convolutions and matrix products with.
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively (a flag of :data:`NATIVE_BF16_FLAGS` in ``/proc/cpuinfo``,
    or in the ``cpuinfo`` text given) and torch has oneDNN to use it. False where that cannot be read
    (macOS, Windows): ``amp="auto"`` then stays float32 on the CPU."""
    if not torch.backends.mkldnn.is_available():
        return False
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            return any(flag in flags for flag in NATIVE_BF16_FLAGS)
    return False


def _autocast(precision: str, device: torch.device):
    if precision == "off":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


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
# Batches: what one step trains on
# --------------------------------------------------------------------------------------------------
class ImageBatches:
    """Training batches from a uint8 image tensor (N, 3, H, W), e.g. a memory-mapped image cache.

    ``gather_ahead(order)`` yields each batch's rows already on the device; on CUDA, rows of a cache that
    stays on the host are gathered by a background thread into pinned memory and copied without blocking,
    so the next batch is ready before the current step ends (a cache small enough for the GPU is moved
    there once). ``augment_and_normalize`` then flips / shifts / erases the uint8 batch and converts it to
    float ``(x/255 − mean)/std`` on the device.
    """

    def __init__(self, images, augment: Augment, mean, std, device: torch.device, channels_last: bool = False):
        self.images = _check_images(images)
        self.augment, self.mean, self.std = augment, mean, std
        self.device, self.channels_last = device, channels_last
        self.source = self.images
        if device.type == "cuda":
            free_bytes, _ = torch.cuda.mem_get_info(device)
            if self.images.numel() < free_bytes // 4:
                self.source = self.images.to(device)

    def __len__(self) -> int:
        return len(self.images)

    def gather_ahead(self, order):
        if self.source.device == self.device or self.device.type != "cuda":
            for index in order:
                yield index, self.source[index.to(self.source.device)].to(self.device)
            return
        with ThreadPoolExecutor(max_workers=1) as pool:  # torch's gather releases the GIL
            pending = [pool.submit(lambda i: self.source[i].pin_memory(), index) for index in order[:2]]
            for step, index in enumerate(order):
                rows = pending[step].result().to(self.device, non_blocking=True)
                if step + 2 < len(order):
                    pending.append(pool.submit(lambda i: self.source[i].pin_memory(), order[step + 2]))
                yield index, rows

    def augment_and_normalize(self, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        batch = normalize_batch(augment_batch(rows, self.augment, generator), self.mean, self.std)
        return batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch


class FeatureBatches:
    """Training batches of precomputed float features (N, D): a frozen encoder's embeddings. Nothing to
    augment or normalize; rows are gathered on the device."""

    def __init__(self, features, device: torch.device):
        features = torch.as_tensor(features)
        if not features.is_floating_point() or features.ndim != 2 or len(features) == 0:
            raise ValueError(f"features must be a non-empty float tensor (N, D), got {features.dtype} "
                             f"{tuple(features.shape)}")
        self.images = features.float()  # the name ImageBatches uses, so the harness treats both alike
        self.device, self.source = device, features.float().to(device)

    def __len__(self) -> int:
        return len(self.source)

    def gather_ahead(self, order):
        for index in order:
            yield index, self.source[index.to(self.device)]

    def augment_and_normalize(self, rows, generator):
        return rows


# --------------------------------------------------------------------------------------------------
# The training step and epoch
# --------------------------------------------------------------------------------------------------
def train_step(model, head, optimizer, scaler, inputs, targets, *, precision: str = "off", record=None):
    """One optimizer step. ``record(loss, embeddings, targets)`` sees the step before its update.

    The backbone runs under autocast (``precision`` bf16 or fp16); the head always computes in float32,
    since margins such as cos θ − 0.35 are below bf16's resolution near cos θ = 1. In fp16 the
    gradient ``scaler`` (``torch.amp.GradScaler``) multiplies the loss so that small gradients do not
    flush to zero; ``scaler=None`` steps without one.
    """
    with _autocast(precision, inputs.device):
        embeddings = model(inputs)                          # forward: images → embeddings
    loss = head(embeddings.float(), targets)               # the head's margin loss
    if record is not None:
        record(loss.detach(), embeddings.detach(), targets)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()                                    # backward
        optimizer.step()                                   # update
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss.detach()


def train_epoch(model, head, optimizer, scheduler, scaler, batches, labels, settings, epoch: int, *,
                precision: str = "off", desc: str = "", progress: bool = True) -> dict:
    """One pass over the training set in the seeded order of ``(settings.seed, epoch)``; returns the
    epoch's history row (loss, training accuracy, the head's extra metrics)."""
    model.train()
    head.train()
    order = epoch_batches(len(labels), settings.batch_size, settings.seed, epoch, drop_last=settings.drop_last)
    augment_rng = epoch_generator(settings.seed, epoch, _AUGMENT_STREAM)
    meter = EpochMeter(head, len(order), epoch, labels.device)
    bar = progress_bar(batches.gather_ahead(order), total=len(order), desc=desc, leave=False, disable=not progress)
    for step, (index, rows) in enumerate(bar):              # gather: rows of the uint8 cache
        inputs = batches.augment_and_normalize(rows, augment_rng)  # flip / shift / erase, float, normalize
        targets = labels[index.to(labels.device)]
        train_step(model, head, optimizer, scaler, inputs, targets, precision=precision, record=meter.record)
        scheduler.step()
        if meter.checked:
            bar.set_postfix(loss=f"{meter.running_loss():.4f}", refresh=False)
    bar.close()
    return meter.row()


class EpochMeter:
    """Per-step bookkeeping of an epoch without a host sync per step: losses, correct predictions and the
    head's extra metrics accumulate on the device; the loss is checked for NaN/inf every step on a CPU
    and every 25 steps (and at the end) on a GPU, where checking forces a sync."""

    def __init__(self, head, steps: int, epoch: int, device: torch.device):
        self.head, self.steps, self.epoch, self.step = head, steps, epoch, 0
        self.check_every = 1 if device.type == "cpu" else 25
        accumulate = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self.losses = torch.zeros(steps, device=device)
        self.loss_sum = torch.zeros((), dtype=accumulate, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.seen = 0
        self.extras: dict[str, torch.Tensor] = {}
        self.checked = False

    def record(self, loss, embeddings, targets) -> None:
        step, self.step = self.step, self.step + 1
        self.losses[step] = loss
        self.checked = (step + 1) % self.check_every == 0 or step + 1 == self.steps
        if self.checked:
            _check_finite(self.losses[: step + 1], self.epoch, step, self.check_every)
        with torch.no_grad():
            predicted = self.head.logits(embeddings.float()).argmax(dim=1)
            self.correct += (predicted == targets).sum()
            self.loss_sum += loss.to(self.loss_sum.dtype) * len(targets)
        self.seen += len(targets)
        extra = self.head.extra_metrics() if hasattr(self.head, "extra_metrics") else {}
        for name, value in extra.items():
            value = torch.as_tensor(value, dtype=torch.float64).detach()
            self.extras[name] = self.extras.get(name, 0.0) + value

    def running_loss(self) -> float:
        return float(self.losses[: self.step].mean())

    def row(self) -> dict:
        return {
            "loss": float(self.loss_sum) / self.seen,
            "train_accuracy": int(self.correct) / self.seen,
            **{name: float(total) / self.steps for name, total in self.extras.items()},
        }


# --------------------------------------------------------------------------------------------------
# fit: the harness around the epoch (resume, RNG, checkpoints, evaluation)
# --------------------------------------------------------------------------------------------------
class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, or written by another run (the message says which)."""


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model and head (on the training device), one history row per
    finished epoch (``epoch`` counts from 1), and the settings as run (``amp`` and ``data`` resolved)."""

    model: nn.Module
    head: nn.Module
    history: pd.DataFrame
    checkpoint_path: Path | None = None
    resumed_from_epoch: int = 0
    settings: RunSettings | None = None


def _make_optimizer(settings: RunSettings, parameters):
    if settings.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    return torch.optim.SGD(parameters, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)


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


def _restore_rng(state: dict, path: Path) -> None:
    try:
        _set_rng_state(state["rng"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint {path}: its random-number state is malformed ({type(error).__name__}: "
                              f"{str(error)[:200]}). Delete it to train this run again from epoch 0: rm '{path}'") from error


def _save_atomically(payload: dict, path: Path) -> None:
    """``torch.save`` to a uniquely named temporary file in the same folder, then rename: a crash never
    leaves half a checkpoint, and two writers never share a temporary file. A failed write (a full disk,
    a read-only folder) is a :class:`CheckpointError` naming the file and the cause."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, temp)
        os.replace(temp, path)
    except (OSError, RuntimeError) as error:  # torch reports a full disk as "RuntimeError: [enforce fail ...]"
        raise CheckpointError(_save_failure(path, error)) from error
    finally:
        try:
            temp.unlink(missing_ok=True)
        except OSError:
            pass  # the folder itself is unreadable: the error above says so


def _save_failure(path: Path, error: BaseException) -> str:
    """Why saving checkpoint ``path`` failed, in words a user can act on (free space measured now)."""
    try:
        free = f"{human_bytes(shutil.disk_usage(path.parent).free)} free there now"
    except OSError:
        free = "its free space cannot be read"
    return (f"cannot write checkpoint {path} ({type(error).__name__}: {str(error)[:200]}; {free}). The disk may be "
            f"full or the folder read-only: free space or make {path.parent} writable (or set FACE_STORAGE to "
            f"another folder), then run again; training resumes from the last checkpoint that was written")


def _check_checkpoint_folder(checkpoint_path: Path) -> None:
    """Before the first epoch: the checkpoint folder must be writable (a read-only one failed only after
    a whole epoch of training)."""
    try:
        paths.check_writable(checkpoint_path.parent, "checkpoint")
    except paths.FolderNotWritable as error:
        raise CheckpointError(f"cannot write checkpoint {checkpoint_path}: {error.strerror}; nothing was "
                              f"trained") from None


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporary files of ``path`` left by writers that no longer run (a kill during a save);
    returns what was removed. A temporary file names its writer's process id."""
    removed = []
    for temp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = temp.name[len(path.name) + 2 :].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and process_alive(int(pid)):
            continue
        temp.unlink(missing_ok=True)
        removed.append(temp)
    return removed




# --------------------------------------------------------------------------------------------------
# Checkpoint integrity: what a loaded checkpoint must hold, and a digest of its content
# --------------------------------------------------------------------------------------------------
CHECKPOINT_KEYS = ("settings", "epoch", "model", "head", "optimizer", "scheduler", "scaler", "rng", "history")
DIGEST_KEY = "digest"  # BLAKE2b of everything else in the checkpoint (state_digest), written by fit


def _feed_digest(hasher, value) -> None:
    """Feed ``value`` to ``hasher`` by content: a tensor by dtype, shape and bytes; a dict by its items in
    key order; a list or tuple (a pickle round trip may turn one into the other) item by item; anything
    else (numbers, strings, None) by type and ``repr``, which is exact for floats."""
    if torch.is_tensor(value):
        tensor = value.detach().cpu().contiguous()
        hasher.update(f"tensor {tensor.dtype} {tuple(tensor.shape)};".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, dict):
        hasher.update(f"dict {len(value)}{{".encode())
        for key in sorted(value, key=repr):
            _feed_digest(hasher, key)
            _feed_digest(hasher, value[key])
        hasher.update(b"}")
    elif isinstance(value, (list, tuple)):
        hasher.update(f"sequence {len(value)}[".encode())
        for item in value:
            _feed_digest(hasher, item)
        hasher.update(b"]")
    else:
        hasher.update(f"{type(value).__name__} {value!r};".encode())


def state_digest(state: dict) -> str:
    """A 32-hex-digit BLAKE2b digest of a checkpoint's content (every entry but the digest itself)."""
    hasher = hashlib.blake2b(digest_size=16)
    _feed_digest(hasher, {key: value for key, value in state.items() if key != DIGEST_KEY})
    return hasher.hexdigest()


def _with_digest(state: dict) -> dict:
    return {**state, DIGEST_KEY: state_digest(state)}


def _check_structure(state: dict, path: Path) -> None:
    """Every entry fit restores is there and of the right kind (a hand-made or edited checkpoint may not be)."""
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing} (not written by lib.training.fit, or edited); "
                              f"delete it to train this run again from epoch 0: rm '{path}'")
    kinds = {"model": dict, "head": dict, "optimizer": dict, "scheduler": dict, "scaler": dict, "rng": dict,
             "history": list, "epoch": int}
    wrong = [f"{key} is {type(state[key]).__name__}, expected {kind.__name__}" for key, kind in kinds.items()
             if not isinstance(state[key], kind) or (kind is int and isinstance(state[key], bool))]
    record = state.get(EVALUATION_KEY)
    if record is not None and not (isinstance(record, dict) and {"inputs", "columns"} <= set(record)
                                   and isinstance(record["columns"], list)):
        wrong.append(f"{EVALUATION_KEY} is not a record of evaluation inputs and columns")
    if wrong:
        raise CheckpointError(f"checkpoint {path} is malformed ({'; '.join(wrong)}); delete it to train this run "
                              f"again from epoch 0: rm '{path}'")


def _check_digest(state: dict, path: Path) -> None:
    """The content digest stored at save time still matches (a checkpoint without one, written before
    digests were stored, is loaded unchecked)."""
    stored = state.get(DIGEST_KEY)
    if stored is not None and stored != state_digest(state):
        raise CheckpointError(
            f"checkpoint {path} does not match the content digest stored when it was saved: some bytes changed "
            f"since (disk or copy corruption, or an edit). Delete it to train this run again from epoch 0: rm '{path}'"
        )


def _restore(state: dict, path: Path, parts: dict) -> None:
    """Load each ``{name: module, optimizer, scheduler or scaler}`` from ``state[name]``; a state that does
    not fit (missing or unexpected keys, wrong shapes) is a :class:`CheckpointError` naming the file."""
    for name, target in parts.items():
        try:
            target.load_state_dict(state[name])
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as error:
            raise CheckpointError(
                f"checkpoint {path}: its {name} state does not fit this run's {name} ({type(error).__name__}: "
                f"{' '.join(str(error).split())[:300]}); it was not written by fit for these settings. "
                f"Delete it to train this run again from epoch 0: rm '{path}'"
            ) from error
    optimizer = parts.get("optimizer")
    if optimizer is not None:  # Optimizer.load_state_dict checks group sizes, not the shapes of its moments
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                for key, value in optimizer.state.get(parameter, {}).items():
                    if torch.is_tensor(value) and value.ndim and value.shape != parameter.shape:
                        raise CheckpointError(
                            f"checkpoint {path}: optimizer state {key!r} has shape {tuple(value.shape)} for a "
                            f"parameter of shape {tuple(parameter.shape)}; it was not written by fit for these "
                            f"settings. Delete it to train this run again from epoch 0: rm '{path}'"
                        )


def load_checkpoint(path: Path) -> dict:
    """The contents of a checkpoint written by :func:`fit`, or a :class:`CheckpointError` naming the file
    and what to do when it is unreadable, not one of ours, lacks an entry, or no longer matches the content
    digest stored when it was saved (checkpoints written before digests were stored load unchecked)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises EOFError, RuntimeError, pickle errors, ... for damaged files
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(error).__name__}: {str(error)[:200]}); the file is damaged "
            f"(e.g. cut short by a full disk or an interrupted copy). Delete it to train this run again from "
            f"epoch 0: rm '{path}'"
        ) from error
    if not isinstance(state, dict) or "settings" not in state:
        raise CheckpointError(
            f"{path} is not a checkpoint of this version of lib.training (no stored settings; older checkpoints "
            f"are never resumed because they do not record every setting). Delete or move it: rm '{path}'"
        )
    _check_structure(state, path)
    _check_digest(state, path)
    return state


def _checkpoint_clock() -> float:
    """Seconds on a monotonic clock: when :class:`CheckpointStore` may copy next (the tests replace it)."""
    return time.monotonic()


class CheckpointStore:
    """Where :func:`fit` keeps one run's checkpoint: ``persistent`` (e.g. on a mounted Google Drive), and
    optionally a ``local`` copy on fast local disk.

    Without ``local`` every epoch is written to ``persistent`` (atomically). With it, every epoch is written
    to ``local`` and copied to ``persistent`` only when ``every`` seconds have passed since the last copy
    (or since the store was made) and when the run ends: a run of T seconds writes the persistent file at
    most ``floor(T / every) + 1`` times, always the same single file, and a disconnect that loses the local
    disk loses finished epochs of less than ``every`` seconds (plus the epoch in progress, as any
    per-epoch checkpoint does). :meth:`load_newest`
    resumes from whichever copy holds more finished epochs.
    """

    def __init__(self, persistent: Path, local: Path | None = None, every: float = 0.0, clock=time.monotonic):
        self.persistent, self.local, self.every, self.clock = Path(persistent), local, float(every), clock
        self.last_copy = clock()
        self.persistent_epoch = self.local_epoch = 0
        self.writes = 0  # copies to (or saves into) the persistent folder

    def load_newest(self) -> dict | None:
        """The checkpoint with the most finished epochs among the two copies (None when neither exists);
        leftover temporary files of dead writers are removed first. A damaged copy is skipped when the
        other one is readable."""
        candidates = [self.persistent] + ([self.local] if self.local is not None else [])
        states, errors = {}, []
        for path in candidates:
            remove_stale_temporaries(path)
            if path.exists():
                try:
                    states[path] = load_checkpoint(path)
                except CheckpointError as error:
                    errors.append(error)
        if not states:
            if errors:
                raise errors[0]
            return None
        for error in errors:
            print(f"Warning: {error}; resuming from the other copy instead")
        self.persistent_epoch = states[self.persistent]["epoch"] if self.persistent in states else 0
        self.local_epoch = states[self.local]["epoch"] if self.local in states else 0
        if self.local is not None and self.local_epoch > self.persistent_epoch:
            return states[self.local]
        return states.get(self.persistent) or states[self.local]

    def save(self, payload: dict, *, final: bool = False) -> None:
        """Save one finished epoch (``payload["epoch"]``); ``final``: the run's last epoch, always persisted."""
        if self.local is None:
            _save_atomically(payload, self.persistent)
            self.persistent_epoch, self.writes = payload["epoch"], self.writes + 1
            return
        _save_atomically(payload, self.local)
        self.local_epoch = payload["epoch"]
        if final or self.clock() - self.last_copy >= self.every:
            self._copy_to_persistent()

    def finish(self) -> None:
        """Persist a local copy that is ahead of the persistent one (e.g. a finished run found on local disk)."""
        if self.local is not None and self.local_epoch > self.persistent_epoch:
            self._copy_to_persistent()

    def _copy_to_persistent(self) -> None:
        copy_atomically(self.local, self.persistent)
        self.persistent_epoch, self.writes, self.last_copy = self.local_epoch, self.writes + 1, self.clock()


def copy_atomically(source: Path, target: Path) -> None:
    """Copy ``source`` to a uniquely named temporary file beside ``target``, then rename it to ``target``: a
    disconnect during the copy leaves the previous ``target`` whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        shutil.copyfile(source, temp)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def fit(
    settings: RunSettings,
    model: nn.Module,
    head: nn.Module,
    inputs,
    labels,
    *,
    device: str | torch.device = "auto",
    eval_fn: Callable[[nn.Module, nn.Module, int], dict] | None = None,
    eval_every: int = 1,
    eval_inputs: dict | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    run_name: str | None = None,
    progress: bool = True,
    local_checkpoint_dir: str | os.PathLike | None = "auto",
    persist_every: float | None = None,
) -> FitResult:
    """Train ``model`` (inputs → embeddings) with ``head`` (embeddings, labels → loss) as ``settings`` say.

    Args:
        settings: the run's :class:`lib.settings.RunSettings`. ``amp="auto"`` is resolved for ``device``
            (:func:`resolve_precision`); an empty ``data`` is filled with :func:`lib.settings.data_digest`
            of ``inputs`` and ``labels``. Build ``model`` and ``head`` from the same settings (seed first,
            :func:`seed_everything`); a head whose hyperparameters or a model whose dropout disagree with
            ``settings`` is refused.
        inputs: uint8 images (N, 3, H, W), e.g. from :func:`lib.imagecache.build_cache` (may be memory-mapped;
            augmented and normalized per batch), or float features (N, D) of a frozen encoder (used as is).
        labels: N integer class ids in ``[0, head.weight.shape[0])``.
        device: ``"auto"`` (CUDA, MPS, CPU) or a device; an unavailable CUDA device is an error that says why.
        eval_fn: ``eval_fn(model, head, epoch) -> dict`` of validation metrics, called after epochs
            ``eval_every, 2·eval_every, …`` and after the last; its keys become history columns.
        eval_inputs: what ``eval_fn``'s numbers depend on besides the model, as a small dict of strings,
            numbers and flags (a digest of the validation data and labels, ``fuse_flip``, the protocol). It is
            not part of the run's identity (training does not depend on it) but is stored with the history:
            when a reused checkpoint's history was evaluated on other inputs, its evaluation columns are
            blanked (NaN) in every stored epoch, the last stored epoch is evaluated again with the restored
            model (the earlier epochs' models are not stored), the checkpoint is rewritten with that history,
            and a warning says so. A checkpoint written before this record existed is trusted as it is.
        checkpoint_dir, run_name: when a folder is given, ``{checkpoint_dir}/{run_name}.pt`` is written
            atomically after every epoch (``run_name`` defaults to ``settings.run_name()``, which changes with
            any setting). A later call resumes from it, or returns at once when all epochs are done — only if
            the stored settings equal these; otherwise a :class:`CheckpointError` names the differing fields.
        local_checkpoint_dir, persist_every: with a local folder, the checkpoint is written there after every
            epoch and copied to ``checkpoint_dir`` only when ``persist_every`` seconds have passed since the
            last copy (or the start) and when the run ends (:class:`CheckpointStore`); a resume takes the
            newer of the two. ``"auto"``: :func:`lib.paths.local_checkpoint_dir` (a local folder when
            ``checkpoint_dir`` is in ``FACE_STORAGE``, else None: written to ``checkpoint_dir`` every epoch);
            ``persist_every`` None: :func:`lib.paths.storage_every_seconds` (``FACE_STORAGE_EVERY``).

    Returns:
        :class:`FitResult` with ``history`` columns ``epoch, loss, train_accuracy, <head extra metrics>,
        lr, seconds, <eval metrics>``; ``loss`` and ``train_accuracy`` are means over the epoch's samples,
        computed on the augmented training batches with the weights of each step (before its update);
        head extras (e.g. SphereFace's ``lambda``, CosReLU's ``clamp_fraction``) are means over steps;
        ``lr`` is the rate at the epoch's end; ``seconds`` is the epoch's training time (``eval_fn`` excluded).

    Raises:
        FloatingPointError: the loss became NaN or infinite (the message names epoch and step).
    """
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    device = resolve_device(device)
    precision = resolve_precision(settings.amp, device)
    images = inputs if torch.is_tensor(inputs) else torch.from_numpy(np.asarray(inputs))
    num_classes = getattr(head, "weight", None)
    labels = _check_labels(labels, len(images), None if num_classes is None else num_classes.shape[0])
    settings = settings.replace(amp=precision, data=settings.data or data_digest(images, labels))
    _check_built_from(settings, model, head)
    mean, std = resolve_normalization(settings.normalize, model)

    # Channels-last helps oneDNN's bf16 convolutions (≈1.4x for SphereCNN) and CUDA's tensor cores;
    # float32 convolutions on a CPU gain nothing, so the memory format changes only in those cases.
    channels_last = (images.dtype == torch.uint8 and precision != "off"
                     and (device.type == "cuda" or precision == "bf16"))
    model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)
    head.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    if images.dtype == torch.uint8:
        augment = Augment(flip=settings.flip, max_shift=settings.max_shift, erase=settings.erase)
        batches = ImageBatches(images, augment, mean, std, device, channels_last)
    else:
        if settings.flip or settings.max_shift or settings.erase:
            raise ValueError("feature inputs cannot be augmented: set flip=False, max_shift=0, erase=0")
        batches = FeatureBatches(images, device)
    parameters = [p for module in (model, head) for p in module.parameters() if p.requires_grad]
    optimizer = _make_optimizer(settings, parameters)
    batches_per_epoch = len(epoch_batches(len(images), settings.batch_size, settings.seed, 0, shuffle=False,
                                          drop_last=settings.drop_last))
    if batches_per_epoch == 0:
        raise ValueError(f"no full batch: {len(images)} samples with batch_size={settings.batch_size} and drop_last")
    total_steps = max(1, settings.epochs * batches_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(settings.schedule, total_steps))
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")

    name = run_name or settings.run_name()
    checkpoint_path = Path(checkpoint_dir) / f"{name}.pt" if checkpoint_dir is not None else None
    store = None
    if checkpoint_path is not None:
        local = paths.local_checkpoint_dir(checkpoint_dir) if local_checkpoint_dir == "auto" else local_checkpoint_dir
        store = CheckpointStore(checkpoint_path, None if local is None else Path(local) / checkpoint_path.name,
                                paths.storage_every_seconds() if persist_every is None else persist_every,
                                clock=_checkpoint_clock)
    history: list[dict] = []
    eval_columns: set = set()  # the history columns that eval_fn wrote
    start_epoch = 0
    state = store.load_newest() if store is not None else None
    if state is not None:
        differences = settings_difference(state["settings"], settings.as_dict())
        if differences:
            raise CheckpointError(
                f"checkpoint {checkpoint_path} belongs to a run with other settings ({'; '.join(differences)}); "
                f"use another run_name (the default, settings.run_name(), is unique per setting), or delete it"
            )
        _restore(state, checkpoint_path, {"model": model, "head": head, "optimizer": optimizer,
                                          "scheduler": scheduler, "scaler": scaler})
        history, start_epoch = state["history"], state["epoch"]
        record = state.get(EVALUATION_KEY)
        if record is not None:
            eval_columns = set(record["columns"])
            if record["inputs"] != eval_inputs:
                with _deterministic(device.type == "cpu"):
                    history = _reevaluate(history, eval_columns, eval_fn, model, head, checkpoint_path,
                                          record["inputs"], eval_inputs)
                store.save(_with_digest({**state, "history": history,
                                         EVALUATION_KEY: _evaluation_record(eval_inputs, eval_columns)}), final=True)
        _restore_rng(state, checkpoint_path)
    else:
        torch.manual_seed(settings.seed)

    if checkpoint_path is not None and start_epoch < settings.epochs:
        _check_checkpoint_folder(checkpoint_path)  # a finished run can still be read from a read-only folder
    labels_on_device = labels.to(device)
    with _deterministic(device.type == "cpu"):
        for epoch in range(start_epoch, settings.epochs):
            started = time.perf_counter()
            seconds = [row["seconds"] for row in history]
            eta = f", ETA {_minutes(np.mean(seconds) * (settings.epochs - epoch))}" if seconds else ""
            row = {"epoch": epoch + 1}
            row.update(train_epoch(model, head, optimizer, scheduler, scaler, batches, labels_on_device, settings,
                                   epoch, precision=precision, progress=progress,
                                   desc=f"{name} epoch {epoch + 1}/{settings.epochs}{eta}"))
            row.update(lr=optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - started)
            if eval_fn is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == settings.epochs):
                metrics = _evaluate(eval_fn, model, head, epoch + 1, row)
                eval_columns.update(metrics)
                row.update(metrics)
            history.append(row)
            if store is not None:
                store.save(_with_digest(
                    {
                        "settings": settings.as_dict(),
                        "epoch": epoch + 1,
                        "model": model.state_dict(),
                        "head": head.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict(),
                        "rng": _rng_state(),
                        "history": history,
                        EVALUATION_KEY: _evaluation_record(eval_inputs, eval_columns),
                    }),
                    final=epoch + 1 == settings.epochs,
                )
    if store is not None:
        store.finish()
    return FitResult(model, head, pd.DataFrame(history), checkpoint_path, start_epoch, settings)


# --------------------------------------------------------------------------------------------------
# Evaluation inputs: part of the stored history's record
# --------------------------------------------------------------------------------------------------
EVALUATION_KEY = "evaluation"  # checkpoint entry: {"inputs": fit's eval_inputs, "columns": eval_fn's metric names}


def _evaluation_record(eval_inputs: dict | None, columns: set) -> dict:
    return {"inputs": eval_inputs, "columns": sorted(columns)}


def _inputs_difference(stored, current) -> str:
    if isinstance(stored, dict) and isinstance(current, dict):
        keys = [key for key in {**stored, **current} if stored.get(key) != current.get(key)]
        return "; ".join(f"{key}: {stored.get(key)!r} → {current.get(key)!r}" for key in keys)
    return f"{stored!r} → {current!r}"


def _reevaluate(history: list[dict], columns: set, eval_fn, model, head, path: Path, stored, current) -> list[dict]:
    """The stored ``history`` with its evaluation ``columns`` blanked in every epoch (they were computed
    on other evaluation inputs), and recomputed by ``eval_fn`` for the last stored epoch when that epoch
    was evaluated (its model is the one restored); ``columns`` gains eval_fn's names."""
    rows = [{key: (math.nan if key in columns else value) for key, value in row.items()} for row in history]
    recomputed = bool(rows) and eval_fn is not None and any(key in columns for key in history[-1])
    if recomputed:
        base = {key: value for key, value in history[-1].items() if key not in columns}
        metrics = _evaluate(eval_fn, model, head, int(base["epoch"]), base)
        columns.update(metrics)
        rows[-1] = {**base, **metrics}
    done = (f"epoch {rows[-1]['epoch']}'s are recomputed with the stored model, the other epochs' are left blank "
            f"(NaN), since their models are not stored" if recomputed else "they are left blank (NaN)")
    warnings.warn(
        f"checkpoint {path}: its validation metrics were computed on other evaluation inputs "
        f"({_inputs_difference(stored, current)}); {done}. Training is unchanged. To recompute every epoch, "
        f"delete the checkpoint and train again: rm '{path}'",
        stacklevel=3,
    )
    return rows


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _evaluate(eval_fn, model, head, epoch: int, row: dict) -> dict:
    metrics = eval_fn(model, head, epoch)
    if not isinstance(metrics, dict):
        raise TypeError(f"eval_fn must return a dict of metrics, got {type(metrics).__name__}")
    clash = sorted(set(metrics) & set(row))
    if clash:
        raise ValueError(f"eval_fn metric names {clash} clash with training columns; rename them")
    return {name: float(value) for name, value in metrics.items()}


def _check_built_from(settings: RunSettings, model: nn.Module, head: nn.Module) -> None:
    """Refuse a head or model that was not built from ``settings`` (its identity would be a lie)."""
    wrong = []
    for name in getattr(head, "hparam_names", ()):
        if name in settings.head_hparams and getattr(head, name) != settings.head_hparams[name]:
            wrong.append(f"head {name}={getattr(head, name)!r} but settings say {settings.head_hparams[name]!r}")
    if float(getattr(model, "dropout", 0.0)) != settings.dropout:
        wrong.append(f"model dropout={getattr(model, 'dropout', 0.0)!r} but settings say {settings.dropout!r}")
    if wrong:
        raise ValueError("model/head and settings disagree: " + "; ".join(wrong)
                         + ". Build both with lib.settings / make_model/make_head from the same settings")


def _check_finite(step_losses: torch.Tensor, epoch: int, step: int, check_every: int) -> None:
    finite = torch.isfinite(step_losses[-check_every:])
    if bool(finite.all()):
        return
    first_bad = len(step_losses) - len(finite) + int((~finite).nonzero()[0])
    value = float(step_losses[first_bad])
    raise FloatingPointError(
        f"loss is {value} at epoch {epoch + 1}, step {first_bad + 1} (1-based); lower the learning rate, "
        f"check the head's scale/margin, or try amp='off'"
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
        batch = images[start : start + batch_size]
        if device.type == "cuda" and not batch.is_cuda:
            batch = batch.pin_memory()
        yield normalize_batch(batch.to(device, non_blocking=True), mean, std)


def embed(
    model: nn.Module,
    images_uint8: torch.Tensor,
    *,
    batch_size: int = 256,
    normalize="auto",
    flip: bool = False,
    device: str | torch.device = "auto",
    amp="off",
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Embeddings (N, D) float32 on the CPU, in eval mode without gradients; with ``flip=True`` also
    those of the mirrored images (fuse them with ``lib.verification.fuse_flip``), else ``None``.
    ``amp``: the backbone's autocast precision, as in training (:func:`resolve_precision`).
    The model is moved to ``device`` and its train/eval mode restored afterwards."""
    images = _check_images(images_uint8)
    device = resolve_device(device)
    precision = resolve_precision(amp, device)
    mean, std = resolve_normalization(normalize, model)
    model.to(device)
    plain, mirrored = [], []
    with _eval_mode(model), _autocast(precision, device):
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
    amp="off",
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Classify: ``(logits (N, C) float32, predicted class ids (N,) int64)`` on the CPU, from
    ``head.logits`` (no margin), in eval mode without gradients and without augmentation; the backbone
    in the ``amp`` precision, the head in float32."""
    images = _check_images(images_uint8)
    device = resolve_device(device)
    precision = resolve_precision(amp, device)
    mean, std = resolve_normalization(normalize, model)
    model.to(device)
    head.to(device)
    logits = []
    with _eval_mode(model, head):
        for batch in _batched(images, batch_size, device, mean, std, progress, "predicting"):
            with _autocast(precision, device):
                embeddings = model(batch)
            logits.append(head.logits(embeddings.float()).float().cpu())
    logits = torch.cat(logits)
    return logits, logits.argmax(dim=1)
