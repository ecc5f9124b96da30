"""Embedding networks: shapes and sizes against hand computations; offline pretrained-weights handling."""

from __future__ import annotations

import urllib.error
import pytest
import torch
from torch import nn

from lib.models import (
    IMAGENET_NORMALIZATION,
    PretrainedWeightsUnavailable,
    ResNet18Embedding,
    SphereCNN,
    SphereFace4,
    conv_output_size,
    make_model,
)


def n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv_params(c_in: int, c_out: int, k: int = 3) -> int:
    return c_in * c_out * k * k + c_out


def test_spherecnn_is_the_course_network():
    model = SphereCNN()
    # 96 → (96−3)//2+1 = 47 → 23 → 11 → 5, no padding anywhere.
    assert [conv_output_size(s, 3, 2, 0) for s in (96, 47, 23, 11)] == [47, 23, 11, 5]
    features = model.features(torch.zeros(2, 3, 96, 96))
    assert features.shape == (2, 512, 5, 5)
    for conv in (model.conv1, model.conv2, model.conv3, model.conv4):
        assert conv.kernel_size == (3, 3) and conv.stride == (2, 2) and conv.padding == (0, 0)
    assert model.fc5.in_features == 512 * 5 * 5 and model.fc5.out_features == 512
    expected = (
        conv_params(3, 32) + conv_params(32, 128) + conv_params(128, 256) + conv_params(256, 512)
        + (512 * 25 * 512 + 512)
    )
    assert expected == 8_067_328
    assert n_parameters(model) == expected
    assert model(torch.zeros(2, 3, 96, 96)).shape == (2, 512)


def test_spherecnn_dropout_acts_only_while_training():
    torch.manual_seed(0)
    plain = SphereCNN()
    dropped = SphereCNN(dropout=0.5)
    assert dropped.state_dict().keys() == plain.state_dict().keys()  # no weights: checkpoints interchange
    dropped.load_state_dict(plain.state_dict())
    images = torch.randn(4, 3, 96, 96)
    plain.eval(), dropped.eval()
    assert torch.equal(dropped(images), plain(images))
    dropped.train()
    flat = plain.features(images).flatten(1)
    torch.manual_seed(1)
    expected = plain.fc5(torch.nn.functional.dropout(flat, 0.5, True))
    torch.manual_seed(1)
    got = dropped(images)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, plain(images))
    with pytest.raises(ValueError, match="dropout"):
        SphereCNN(dropout=1.0)


def test_spherecnn_rejects_other_sizes_with_a_hint():
    with pytest.raises(ValueError, match="96x96"):
        SphereCNN()(torch.zeros(1, 3, 112, 96))


def test_sphereface4_matches_the_paper_table():
    model = SphereFace4()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    prelus = [m for m in model.modules() if isinstance(m, nn.PReLU)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512]
    assert all(c.stride == (2, 2) and c.padding == (1, 1) and c.kernel_size == (3, 3) for c in convs)
    assert [p.num_parameters for p in prelus] == [64, 128, 256, 512]
    # 112x96 → 56x48 → 28x24 → 14x12 → 7x6
    assert model.feature_map_size == (7, 6)
    expected = (
        conv_params(3, 64) + conv_params(64, 128) + conv_params(128, 256) + conv_params(256, 512)
        + (64 + 128 + 256 + 512)
        + (512 * 7 * 6 * 512 + 512)
    )
    assert n_parameters(model) == expected
    assert model(torch.zeros(2, 3, 112, 96)).shape == (2, 512)


@pytest.mark.parametrize("size, expected_map", [(32, (2, 2)), ((33, 40), (3, 3)), (96, (6, 6))])
def test_sphereface4_any_size_from_32(size, expected_map):
    model = SphereFace4(embedding_dim=16, input_size=size)
    assert model.feature_map_size == expected_map
    h, w = (size, size) if isinstance(size, int) else size
    assert model(torch.zeros(1, 3, h, w)).shape == (1, 16)


def test_sphereface4_rejects_tiny_inputs():
    with pytest.raises(ValueError, match="at least 32"):
        SphereFace4(input_size=24)


def test_resnet18_embedding_shapes_and_normalization():
    model = ResNet18Embedding(embedding_dim=128, batchnorm=True).eval()
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 128)
    assert isinstance(model.bn, nn.BatchNorm1d)
    assert model.input_normalization == IMAGENET_NORMALIZATION


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """torch hub pointed at an empty folder, and any download attempt fails as it would offline."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path


def test_resnet18_imagenet_offline_error_says_what_to_do(empty_hub):
    with pytest.raises(PretrainedWeightsUnavailable) as error:
        ResNet18Embedding(weights="imagenet")
    message = str(error.value)
    assert "weights=None" in message
    assert str(empty_hub / "checkpoints" / "resnet18-f37072fd.pth") in message


def test_resnet18_imagenet_uses_a_pre_placed_file(empty_hub):
    from torchvision.models import resnet18

    torch.manual_seed(3)
    reference = resnet18(weights=None)
    (empty_hub / "checkpoints").mkdir()
    torch.save(reference.state_dict(), empty_hub / "checkpoints" / "resnet18-f37072fd.pth")
    model = ResNet18Embedding(weights="imagenet")
    assert torch.equal(model.trunk.conv1.weight, reference.conv1.weight)
    assert torch.equal(model.trunk.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)


def test_make_model_registry():
    assert isinstance(make_model("SphereCNN", embedding_dim=8), SphereCNN)
    assert isinstance(make_model("sphereface4", input_size=32), SphereFace4)
    assert isinstance(make_model("resnet18"), ResNet18Embedding)
    with pytest.raises(ValueError, match="choose one of"):
        make_model("vgg")
    with pytest.raises(ValueError, match="weights"):
        make_model("resnet18", weights="IMAGENET1K_V1")
