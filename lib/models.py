"""Embedding networks: image batch (N, 3, H, W) float → embeddings (N, D).

The classification head (the loss) is a separate module (``lib.losses``), so one network can be
trained with any head and then used alone for verification.

Each model carries ``input_normalization`` (per-channel mean, std applied to pixels scaled to [0, 1])
and ``input_size`` ((H, W) it was built for, or ``None`` when any size ≥ 32 works);
``lib.training`` reads them when asked for ``normalize="auto"``.

* :class:`SphereCNN` — the course report's network, unchanged (``sonnygeorge/sphereface``, ``model.py`` at 0ac96a0).
* :class:`SphereFace4` — the SphereFace paper's 4-layer CNN (Liu et al. 2017, Table 2).
* :class:`ResNet18Embedding` — torchvision's ResNet-18 trunk + a linear embedding (the FairFace report).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = [
    "COURSE_NORMALIZATION",
    "IMAGENET_NORMALIZATION",
    "SphereCNN",
    "SphereFace4",
    "ResNet18Embedding",
    "PretrainedWeightsUnavailable",
    "MODELS",
    "make_model",
    "conv_output_size",
]

# (mean, std) per RGB channel for pixels in [0, 1].
COURSE_NORMALIZATION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # transforms.Normalize(0.5, 0.5) of the course
IMAGENET_NORMALIZATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

MIN_INPUT_SIZE = 32


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Spatial size after a convolution: ``floor((size + 2·padding − kernel) / stride) + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def _as_hw(size, name: str = "input_size") -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if min(height, width) < MIN_INPUT_SIZE:
        raise ValueError(f"{name} must be at least {MIN_INPUT_SIZE} pixels per side, got {(height, width)}")
    return int(height), int(width)


def _check_input(images: torch.Tensor, expected_hw: tuple[int, int] | None, model: str) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{model} expects a float batch (N, 3, H, W), got shape {tuple(images.shape)}")
    if expected_hw is not None and tuple(images.shape[-2:]) != expected_hw:
        raise ValueError(
            f"{model} was built for {expected_hw[0]}x{expected_hw[1]} inputs, got "
            f"{images.shape[-2]}x{images.shape[-1]}; resize the images (lib.imagecache.build_cache(size=...)) "
            f"or build the model with input_size={tuple(images.shape[-2:])}"
        )


class SphereCNN(nn.Module):
    """The course report's ``SphereCNN``: four unpadded 3x3 stride-2 convs with ReLU, then one linear layer.

    3→32→128→256→512 channels. At 96x96 the maps are 47, 23, 11, 5 pixels per side, so the flattened
    feature has 512·5·5 = 12,800 values and the embedding layer is ``Linear(12800, embedding_dim)``.
    Layer names (``conv1``..``conv4``, ``fc5``) are the report's. ``input_size`` other than 96 only
    exists to make tiny test models; the report's network is the default.

    ``dropout`` (default 0, the report's network) drops that fraction of the 12,800 flattened values
    before ``fc5`` while training. ``fc5`` holds 6.55M of the network's 8.07M weights, and on the ~9,500
    DevTrain images it fits the training set almost perfectly; dropout there is the classic remedy
    (AlexNet's fully connected layers). It has no weights, so the state dict is the same either way.
    """

    input_normalization = COURSE_NORMALIZATION

    def __init__(self, embedding_dim: int = 512, input_size: int = 96, dropout: float = 0.0):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = float(dropout)
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3, stride=2)
        self.conv2 = nn.Conv2d(32, 128, kernel_size=3, stride=2)
        self.conv3 = nn.Conv2d(128, 256, kernel_size=3, stride=2)
        self.conv4 = nn.Conv2d(256, 512, kernel_size=3, stride=2)
        height, width = self.input_size = _as_hw(input_size)
        for _ in range(4):
            height, width = conv_output_size(height, 3, 2, 0), conv_output_size(width, 3, 2, 0)
        self.feature_map_size = (height, width)
        self.fc5 = nn.Linear(512 * height * width, embedding_dim)
        self.embedding_dim = embedding_dim

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The last convolutional map, (N, 512, 5, 5) at 96x96."""
        x = torch.relu(self.conv1(images))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        return torch.relu(self.conv4(x))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_input(images, self.input_size, "SphereCNN")
        flat = self.features(images).flatten(1)
        if self.dropout:
            flat = nn.functional.dropout(flat, self.dropout, self.training)
        return self.fc5(flat)


class SphereFace4(nn.Module):
    """The SphereFace paper's 4-layer CNN (Liu et al., CVPR 2017, Table 2, "4-layer CNN" column).

    Conv1.x … Conv4.x are one 3x3 convolution each with 64, 128, 256, 512 filters, stride 2 and
    padding 1 (every stage halves the map, rounding up), each followed by PReLU (one slope per
    channel, as in the authors' Caffe models); no residual units at this depth; then FC1 with
    ``embedding_dim`` outputs and no activation. The paper's input is 112x96 (H x W), giving a
    7x6 map and ``Linear(512·7·6, 512)``.

    The flattened size is computed at construction from ``input_size`` (an int for square images or
    ``(H, W)``, each ≥ 32), and ``forward`` rejects other sizes with a clear error; no adaptive
    pooling, so the network stays the paper's.
    """

    input_normalization = COURSE_NORMALIZATION  # the authors' Caffe data layer: (x − 127.5) / 128

    def __init__(self, embedding_dim: int = 512, input_size: int | tuple[int, int] = (112, 96)):
        super().__init__()
        channels = (3, 64, 128, 256, 512)
        stages = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            stages += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1), nn.PReLU(c_out)]
        self.body = nn.Sequential(*stages)
        height, width = self.input_size = _as_hw(input_size)
        for _ in range(4):
            height, width = conv_output_size(height, 3, 2, 1), conv_output_size(width, 3, 2, 1)
        self.feature_map_size = (height, width)
        self.fc1 = nn.Linear(channels[-1] * height * width, embedding_dim)
        self.embedding_dim = embedding_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_input(images, self.input_size, "SphereFace4")
        return self.fc1(self.body(images).flatten(1))


class PretrainedWeightsUnavailable(RuntimeError):
    """Pretrained weights were asked for but could neither be found in the cache nor downloaded."""


def _imagenet_resnet18_state() -> dict:
    """torchvision's IMAGENET1K_V1 ResNet-18 weights from torch hub's cache, downloading them if needed."""
    from torchvision.models import ResNet18_Weights

    weights = ResNet18_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as error:  # URLError, socket timeouts, HTTP errors, hash mismatch
        raise PretrainedWeightsUnavailable(
            f"could not load ImageNet ResNet-18 weights ({type(error).__name__}: {error}). "
            f"Either pass weights=None (random initialization), or download {weights.url} "
            f"on a machine with internet access and place it at {cached}"
        ) from error


class ResNet18Embedding(nn.Module):
    """torchvision ResNet-18 trunk (global-average-pooled 512 features) + ``Linear(512, embedding_dim)``.

    ``weights=None`` initializes randomly; ``weights="imagenet"`` loads torchvision's IMAGENET1K_V1
    (from torch hub's cache, ``torch.hub.get_dir()/checkpoints``, downloading when online; offline and
    not cached raises :class:`PretrainedWeightsUnavailable` saying where to put the file).
    ``batchnorm=True`` appends ``BatchNorm1d(embedding_dim)`` to the embedding, as ArcFace-style
    heads often do. Any input size ≥ 32 works (adaptive pooling); 224x224 is ImageNet's.
    """

    input_normalization = IMAGENET_NORMALIZATION

    def __init__(self, embedding_dim: int = 512, weights: str | None = None, batchnorm: bool = False):
        super().__init__()
        from torchvision.models import resnet18

        if weights not in (None, "imagenet"):
            raise ValueError(f"weights must be None or 'imagenet', got {weights!r}")
        trunk = resnet18(weights=None)
        if weights == "imagenet":
            trunk.load_state_dict(_imagenet_resnet18_state())
        trunk.fc = nn.Identity()
        self.trunk = trunk
        self.embedding = nn.Linear(512, embedding_dim)
        self.bn = nn.BatchNorm1d(embedding_dim) if batchnorm else nn.Identity()
        self.input_size = None
        self.embedding_dim = embedding_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_input(images, None, "ResNet18Embedding")
        if min(images.shape[-2:]) < MIN_INPUT_SIZE:
            raise ValueError(f"ResNet18Embedding needs inputs of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}")
        return self.bn(self.embedding(self.trunk(images)))


MODELS = {
    "spherecnn": SphereCNN,
    "sphereface4": SphereFace4,
    "resnet18": ResNet18Embedding,
}


def make_model(name: str, **kwargs) -> nn.Module:
    """Build a network by name (``"spherecnn"``, ``"sphereface4"``, ``"resnet18"``; case-insensitive)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[key](**kwargs)
