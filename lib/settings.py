"""One object holds everything that decides what a training run computes: :class:`RunSettings`.

A notebook builds it from its parameters (:meth:`RunSettings.from_parameters`), the training engine
(:func:`lib.training.fit`) stores it in every checkpoint and resumes only a checkpoint whose settings
are the same, and the trial script builds its command-line options and CSV columns from its fields.
Adding a setting means adding one field here (with a default that reproduces the behaviour before it
existed) and using it where it acts.

Run identity. :meth:`RunSettings.run_name` is ``<head>-seed<seed>-<digest>``, where the digest covers
every field that differs from its default, the head's hyperparameters with their defaults filled in,
and the identity of the training data (a digest of the cached images and labels, :func:`data_digest`).
A changed margin, crop, image size, precision or data set therefore gives a new run name, and an old
checkpoint is never picked up by a run it does not belong to. Fields left at their defaults are not
hashed, so adding a field never renames existing runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import types
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from lib.alignment import alignment_problems

__all__ = ["NOT_TUNED", "RunSettings", "data_digest", "resolve_head_hparams", "settings_difference"]

PRECISIONS = ("off", "bf16", "fp16")


def resolve_head_hparams(head: str, overrides: Mapping | None = None) -> dict:
    """Every hyperparameter of head ``head`` (``lib.losses`` name): its constructor defaults updated by
    ``overrides``, values as plain floats/ints. Unknown names raise, listing the head's hyperparameters."""
    from lib.losses import HEADS

    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {list(HEADS)}")
    parameters = inspect.signature(HEADS[head].__init__).parameters
    accepted = {name: p.default for name, p in parameters.items() if name not in ("self", "in_features", "num_classes")}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise ValueError(f"head {head!r} does not take {unknown}; its hyperparameters are {sorted(accepted)}")
    resolved = dict(accepted)
    for name, value in overrides.items():
        default = accepted[name]
        if isinstance(default, float) and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = float(value)  # scale=30 and scale=30.0 are one setting
        resolved[name] = value
    return {name: _plain(value) for name, value in sorted(resolved.items())}


def _plain(value):
    """JSON-stable scalars: numpy/torch numbers → Python numbers, integral floats stay floats."""
    if isinstance(value, (np.generic, torch.Tensor)):
        value = value.item()
    if isinstance(value, float) and math.isfinite(value) and value == int(value) and abs(value) < 2**53:
        return float(value)
    return value


def data_digest(inputs, labels) -> str:
    """A 16-hex-digit BLAKE2b digest of a training set: the inputs' shape, dtype and bytes, and the labels.

    Reads every byte once (about 1 GB/s; a memory-mapped image cache is hashed without copying it).
    Compute it once per data set and pass it in :attr:`RunSettings.data`.
    """
    return content_digest(inputs, labels)


def content_digest(*arrays) -> str:
    """A 16-hex-digit BLAKE2b digest of arrays (tensors, NumPy arrays, or sequences that NumPy turns into
    arrays of numbers or fixed-width strings): each one's shape, dtype and bytes, in order. Also used for
    evaluation inputs (validation images, labels, pairs), which are not part of a run's identity."""
    digest = hashlib.blake2b(digest_size=8)
    for array in arrays:
        array = array.detach().cpu().numpy() if torch.is_tensor(array) else np.asarray(array)
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        view = array.reshape(-1).view(np.uint8) if array.size else array
        for start in range(0, view.size, 1 << 26):  # 64 MiB at a time: a memmap is read page by page
            digest.update(memoryview(view[start : start + (1 << 26)]))
    return digest.hexdigest()


_NUMERIC_FIELDS = {"embedding_dim": int, "dropout": float, "image_size": int, "crop": int, "max_shift": int,
                   "erase": float, "lr": float, "weight_decay": float, "momentum": float, "epochs": int,
                   "batch_size": int, "seed": int, "align_margin": float}
_OPTIONAL_FIELDS = {"image_size", "crop"}


@dataclass(frozen=True)
class RunSettings:
    """The settings of one training run. Every field is part of the run's identity.

    Network: ``model`` (``lib.models`` name, or a label for a network built by hand), ``embedding_dim``,
    ``dropout`` (before SphereCNN's embedding layer), ``pretrained`` (``None`` or ``"imagenet"``).
    Head: ``head`` (``lib.losses`` name) and ``head_hparams`` (all of them; defaults are filled in).
    Input: ``image_size``, ``crop`` (centre crop in source pixels before resizing; ``None`` keeps the
    whole image; used by ``alignment="center"`` only), ``alignment`` (``"center"``: the centre crop;
    ``"aligned"``: five landmarks mapped onto SphereFace's template by a similarity, :mod:`lib.alignment`),
    ``align_margin`` (the aligned crop's border, a fraction of the template's height; 0 for centre crops),
    ``normalize`` (``"auto"`` = the network's own), and the augmentation ``flip``,
    ``max_shift`` (pixels), ``erase`` (probability of random erasing).
    Optimisation: ``optimizer`` (adam | adamw | sgd), ``lr``, ``weight_decay``, ``momentum`` (SGD only),
    ``schedule`` (None | cosine | step), ``epochs``, ``batch_size``, ``drop_last``, ``amp``
    (``"auto"`` is resolved per device by :func:`lib.training.resolve_precision` before a run starts:
    off | bf16 | fp16), ``seed`` (initialisation, batch order, augmentation).
    Data: ``data``, the :func:`data_digest` of the training inputs and labels (filled in by ``fit``
    when empty).
    """

    head: str
    head_hparams: Mapping = field(default_factory=dict)
    model: str = "spherecnn"
    embedding_dim: int = 512
    dropout: float = 0.0
    pretrained: str | None = None
    image_size: int | None = 96
    crop: int | None = None
    alignment: str = "center"
    align_margin: float = 0.0
    normalize: str = "auto"
    flip: bool = True
    max_shift: int = 0
    erase: float = 0.0
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str | None = None
    epochs: int = 10
    batch_size: int = 128
    drop_last: bool = False
    amp: str = "auto"
    seed: int = 0
    data: str = ""

    def __post_init__(self):
        from lib.losses import HEADS

        hparams = resolve_head_hparams(self.head, self.head_hparams) if self.head in HEADS else dict(self.head_hparams)
        object.__setattr__(self, "head_hparams", hparams)
        object.__setattr__(self, "amp", {False: "off", None: "off", True: "auto"}.get(self.amp, self.amp))
        problems = []
        for name, kind in _NUMERIC_FIELDS.items():
            value = getattr(self, name)
            if value is None and name in _OPTIONAL_FIELDS:
                continue
            try:
                converted = kind(value)
                if isinstance(value, bool) or (kind is int and converted != value):
                    raise ValueError
            except (TypeError, ValueError):
                problems.append(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
                continue
            object.__setattr__(self, name, converted)
        if problems:
            raise ValueError("; ".join(problems))
        if self.epochs < 1:
            problems.append(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be at least 1, got {self.batch_size}")
        if self.image_size is not None and self.image_size < 1:
            problems.append(f"image_size must be positive, got {self.image_size}")
        if self.crop is not None and self.crop < 1:
            problems.append(f"crop must be positive or None, got {self.crop}")
        if self.max_shift < 0:
            problems.append(f"max_shift must be >= 0, got {self.max_shift}")
        for name in ("erase", "dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        if not self.lr > 0:
            problems.append(f"lr must be positive, got {self.lr}")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            problems.append(f"optimizer must be 'adam', 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in (None, "cosine", "step"):
            problems.append(f"schedule must be None, 'cosine' or 'step', got {self.schedule!r}")
        problems += alignment_problems(self.alignment, self.align_margin)
        if self.amp not in ("auto", *PRECISIONS):
            problems.append(f"amp must be 'auto', 'off', 'bf16' or 'fp16', got {self.amp!r}")
        if problems:
            raise ValueError("; ".join(problems))

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def from_parameters(cls, parameters: Mapping, **overrides) -> "RunSettings":
        """Settings from a mapping of notebook parameters (e.g. ``globals()``): every key named like a
        field is taken (``data`` excepted: it is the images' digest, never a parameter), everything else
        ignored; ``overrides`` win (e.g. ``head=...``, ``seed=...``)."""
        names = {f.name for f in fields(cls)} - {"data"}
        values = {name: parameters[name] for name in names if name in parameters}
        values.update(overrides)
        for name, value in values.items():  # e.g. `from lib import pretrained` in a notebook shadows a field
            if isinstance(value, types.ModuleType) or callable(value):
                raise TypeError(f"parameter {name!r} is {value!r}, not a setting: a module or function of that "
                                f"name shadows the notebook parameter; import it under another name")
        return cls(**values)

    def replace(self, **changes) -> "RunSettings":
        return dataclasses.replace(self, **changes)

    # -- identity ---------------------------------------------------------------------------------
    def as_dict(self) -> dict:
        """All fields as JSON-ready values (what a checkpoint and a trial row store)."""
        return {f.name: _plain(getattr(self, f.name)) if f.name != "head_hparams" else dict(self.head_hparams)
                for f in fields(self)}

    def identity(self) -> dict:
        """The fields that differ from their defaults, plus head, seed and data (always named)."""
        defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                    for f in fields(self) if f.name != "head"}
        current = self.as_dict()
        kept = {name: value for name, value in current.items() if name not in defaults or value != defaults[name]}
        kept.update(head=self.head, seed=self.seed, data=self.data)
        return kept

    def digest(self) -> str:
        text = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.blake2b(text.encode(), digest_size=5).hexdigest()

    def run_name(self) -> str:
        """``<head>-seed<seed>-<10 hex digits>``: the checkpoint's file stem; changes with any setting."""
        return f"{self.head}-seed{self.seed}-{self.digest()}"

    def describe(self) -> str:
        """The non-default settings in one line, for logs and notebook headers."""
        shown = {k: v for k, v in self.identity().items() if k not in ("head", "seed", "data")}
        return ", ".join(f"{k}={v}" for k, v in shown.items()) or "defaults"


def settings_difference(stored: Mapping, current: Mapping) -> list[str]:
    """``"field: stored → current"`` for every field whose values differ (a field missing on one side is
    taken at its default, so checkpoints written before a field existed still compare)."""
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else
                         (f.default_factory() if f.default_factory is not dataclasses.MISSING else None))
                for f in fields(RunSettings)}
    names = list(current) + [name for name in stored if name not in current]
    differences = []
    for name in names:
        before, now = stored.get(name, defaults.get(name)), current.get(name, defaults.get(name))
        if before != now:
            differences.append(f"{name}: {before!r} → {now!r}")
    return differences


# Fields no tuning decision varies: they name the run (head, seed) or follow from the head and the data.
NOT_TUNED = ("head", "head_hparams", "seed", "data")
