"""Tests of lib.pretrained: the embedding cache and the DevTest protocol with a tiny stand-in encoder (no
dlib needed), dlib's pipeline against dlib's own example steps (skipped with a reason without dlib)."""

from __future__ import annotations

import hashlib
import io

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lib import lfw, paths, pretrained
from lib.errors import DataError
from lib.lfw_experiment import CV_SEED, PairSet
from lib.verification import cross_validated_accuracy

DLIB_MISSING = pretrained.unavailable_reason("dlib")
needs_dlib = pytest.mark.skipif(DLIB_MISSING is not None, reason=f"dlib encoder unavailable: {DLIB_MISSING}")


class MeanColourEncoder(pretrained.Encoder):
    """A stand-in encoder: the descriptor is the mean colour of the image plus a constant; counts calls."""

    name = "mean-colour"
    embedding_dim = 4

    def __init__(self, version: int = 1):
        self.version = version
        self.encoded = 0

    @property
    def model_digest(self) -> str:
        return hashlib.sha256(f"mean-colour v{self.version}".encode()).hexdigest()

    def align(self, image):
        return pretrained.Aligned(image, "detector")

    def encode(self, chips):
        self.encoded += len(chips)
        return np.array([[*chip.reshape(-1, 3).mean(axis=0), 1.0] for chip in chips], dtype=np.float32)

    def spec(self):
        return {"version": self.version}


def solid_jpeg(path, colour, size=(20, 20)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="JPEG", quality=95)
    return path


def expected_mean(path):
    return np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).mean(axis=0)


# ------------------------------------------------------------------------------------ cache
def test_cache_is_keyed_by_content_and_model(tmp_path):
    red = solid_jpeg(tmp_path / "img" / "red.jpg", (200, 10, 10))
    blue = solid_jpeg(tmp_path / "img" / "blue.jpg", (10, 10, 200))
    red_copy = tmp_path / "img" / "red_copy.jpg"
    red_copy.write_bytes(red.read_bytes())
    cache = tmp_path / "cache"

    encoder = MeanColourEncoder()
    first = pretrained.embed_images(encoder, [red, blue, red_copy], workers=1, cache_dir=cache, progress=False)
    assert encoder.encoded == 2 and first.computed == 2 and first.cached == 0  # identical bytes computed once
    np.testing.assert_allclose(first.vectors[:, :3], [expected_mean(red), expected_mean(blue), expected_mean(red)],
                               atol=1e-4)
    assert first.n_fallback == 0 and first.aligned_by.tolist() == [0, 0, 0]
    # The summary accounts for every image: the copy is neither "from cache" nor "computed" (issue 24).
    summary = first.summary()
    assert (summary["images"], summary["byte-identical copies (embedded once)"], summary["from cache"],
            summary["computed"]) == (3, 1, 0, 2)

    again = MeanColourEncoder()
    second = pretrained.embed_images(again, [blue, red], workers=1, cache_dir=cache, progress=False)
    assert again.encoded == 0 and second.cached == 2
    np.testing.assert_array_equal(second.vectors, first.vectors[[1, 0]])

    solid_jpeg(blue, (10, 200, 10))  # edited in place: new content, new key
    edited = pretrained.embed_images(again, [blue], workers=1, cache_dir=cache, progress=False)
    assert again.encoded == 1 and edited.computed == 1
    np.testing.assert_allclose(edited.vectors[0, :3], expected_mean(blue), atol=1e-4)

    other_model = MeanColourEncoder(version=2)
    pretrained.embed_images(other_model, [red], workers=1, cache_dir=cache, progress=False)
    assert other_model.encoded == 1  # another model digest never reads this model's entries
    folders = sorted(p.name for p in cache.iterdir())
    assert len(folders) == 2 and all(name.startswith("mean-colour-") for name in folders)
    assert not [p for p in cache.rglob("*") if p.name.startswith(".")]  # shards renamed into place, no temporary left


def test_a_leftover_temporary_is_never_read(tmp_path):
    image = solid_jpeg(tmp_path / "a.jpg", (1, 2, 3))
    encoder = MeanColourEncoder()
    pretrained.embed_images(encoder, [image], workers=1, cache_dir=tmp_path / "c", progress=False)
    (folder,) = (tmp_path / "c").iterdir()
    (folder / ".half.npz.123-4-abcd.tmp.npz").write_bytes(b"PK\x03\x04 cut off")  # a killed writer's remains
    again = pretrained.embed_images(encoder, [image], workers=1, cache_dir=tmp_path / "c", progress=False)
    assert again.cached == 1 and encoder.encoded == 1


def test_cache_is_written_in_shards_as_it_goes(tmp_path):
    images = [solid_jpeg(tmp_path / f"{i}.jpg", (i * 20, 0, 0)) for i in range(7)]
    encoder = MeanColourEncoder()
    pretrained.embed_images(encoder, images, workers=1, chunk_size=2, shard_size=3, cache_dir=tmp_path / "c",
                            progress=False)
    sizes = []
    for shard in (tmp_path / "c").rglob("*.npz"):
        with np.load(shard) as data:
            assert data["vectors"].dtype == np.float32 and data["vectors"].shape[1] == 4
            sizes.append(len(data["digests"]))
    assert sorted(sizes) == [3, 4]  # chunks of 2, 2 | 2, 1: saved as soon as 3 or more are pending


def test_bytes_inputs_and_missing_files(tmp_path):
    data = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 255, 0)).save(data, format="PNG")
    result = pretrained.embed_images(MeanColourEncoder(), [data.getvalue()], workers=1, cache=False, progress=False)
    np.testing.assert_allclose(result.vectors[0], [0, 255, 0, 1])
    with pytest.raises(DataError, match="does not exist"):
        pretrained.embed_images(MeanColourEncoder(), [tmp_path / "absent.jpg"], workers=1, progress=False)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="cannot decode image .*broken.jpg"):
        pretrained.embed_images(MeanColourEncoder(), [tmp_path / "broken.jpg"], workers=1, cache=False, progress=False)


def test_l2_normalize():
    rows = pretrained.l2_normalize(np.array([[3.0, 4.0], [0.0, 2.0]]))
    np.testing.assert_allclose(rows, [[0.6, 0.8], [0.0, 1.0]])
    with pytest.raises(ValueError, match="all zeros"):
        pretrained.l2_normalize(np.zeros((1, 3)))


# ------------------------------------------------------------------------------------ DevTest protocol
def test_pair_set_protocol_matches_notebook_02(lfw_copy, tmp_path):
    """Scores are cosines of the normalized descriptors, the accuracy is notebook 02's 10-fold protocol."""
    faces = lfw.load_lfw(lfw_copy.root)
    files = np.array(["Jon_Jones_0001.jpg", "Jon_Jones_0002.jpg", "Jon_Jones_0003.jpg", "Eva_Ekberg_0001.jpg",
                      "Eva_Ekberg_0002.jpg", "Dee_Dunn_0001.jpg"])
    identity = np.array([name.rsplit("_", 1)[0] for name in files])
    pair_index = np.array([[0, 1], [0, 2], [3, 4], [2, 3], [5, 1], [4, 5]])
    same = identity[pair_index[:, 0]] == identity[pair_index[:, 1]]
    pair_set = PairSet(torch.zeros((6, 3, 8, 8), dtype=torch.uint8), identity, files, pair_index, same)
    result, embeddings, features = pretrained.evaluate_on_pairs(MeanColourEncoder(), pair_set, faces, workers=1,
                                                                cache_dir=tmp_path / "c", progress=False)
    path_of = {Path(p).name: p for p in faces.images["path"]}
    vectors = np.array([[*expected_mean(path_of[name]), 1.0] for name in files])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(features, vectors, atol=1e-5)
    expected_scores = np.einsum("pd,pd->p", vectors[pair_index[:, 0]], vectors[pair_index[:, 1]])
    np.testing.assert_allclose(result.scores, expected_scores, atol=1e-5)
    reference = cross_validated_accuracy(expected_scores, same, n_folds=3, seed=CV_SEED)
    assert result.summary()["acc_10fold"] == pytest.approx(reference.mean)
    assert set(result.summary()) >= {"acc_10fold", "acc_10fold_stderr", "auc", "eer", "afs"}
    assert embeddings.computed == 6


# ------------------------------------------------------------------------------------ dlib
def test_missing_models_raise_an_import_error_with_the_install_command(tmp_path):
    encoder = pretrained.DlibEncoder(models_folder=tmp_path)
    with pytest.raises(ImportError, match=r"pip install -e \"\.\[pretrained\]\""):
        encoder.check_available()
    with pytest.raises(ValueError, match="input must be"):
        pretrained.DlibEncoder(input="video")
    with pytest.raises(ValueError, match="unknown encoder"):
        pretrained.make_encoder("facenet")


@needs_dlib
def test_dlib_chip_input_is_resized_not_detected():
    encoder = pretrained.make_encoder("dlib", input="chip")
    image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    aligned = encoder.align(image)
    assert aligned.aligned_by == "given chip" and aligned.chip.shape == (150, 150, 3)
    expected = np.asarray(Image.fromarray(image).resize((150, 150), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(aligned.chip, expected)


@needs_dlib
def test_dlib_uses_the_fallback_box_when_no_face_is_found(tmp_path):
    encoder = pretrained.make_encoder("dlib")
    blank = np.full((250, 250, 3), 128, dtype=np.uint8)
    aligned = encoder.align(blank)
    assert aligned.aligned_by == "fallback box" and aligned.chip.shape == (150, 150, 3)
    box = encoder.fallback_rectangle(250, 250)
    left, top, right, bottom = encoder.fallback_box
    assert abs(box.left() - left * 250) <= 1 and abs(box.right() + 1 - right * 250) <= 1
    assert abs(box.top() - top * 250) <= 1 and abs(box.bottom() + 1 - bottom * 250) <= 1
    path = tmp_path / "blank.png"
    Image.fromarray(blank).save(path)
    result = pretrained.embed_images(encoder, [path, path], workers=1, cache=False, progress=False)
    assert result.n_fallback == 2 and result.summary()["aligned by fallback box"] == 2
    assert result.vectors.shape == (2, 128)


@needs_dlib
def test_dlib_workers_give_the_same_descriptors_as_one_process(tmp_path):
    rng = np.random.default_rng(1)
    images = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(path)
        images.append(path)
    encoder = pretrained.make_encoder("dlib")
    one = pretrained.embed_images(encoder, images, workers=1, cache=False, progress=False)
    two = pretrained.embed_images(encoder, images, workers=2, chunk_size=1, cache=False, progress=False)
    np.testing.assert_array_equal(one.vectors, two.vectors)
    assert two.throughput["workers"] == 2 and two.throughput["descriptor images per CPU-second"] > 0


@needs_dlib
@pytest.mark.real_data
def test_dlib_matches_dlib_example_pipeline_on_an_lfw_image():
    """The descriptor equals dlib's face recognition example done by hand: detect, 5 landmarks,
    get_face_chip(size=150, padding=0.25), compute_face_descriptor."""
    import dlib

    path = next((paths.SHARED_LFW / "lfw-deepfunneled" / "Aaron_Peirsol").glob("*.jpg"))
    image = np.asarray(Image.open(path).convert("RGB"))
    models = pretrained._models_folder()
    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    descriptor = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    (box,) = detector(image, 0)
    chip = dlib.get_face_chip(image, landmarks(image, box), size=150, padding=0.25)
    expected = np.array(descriptor.compute_face_descriptor(chip))

    result = pretrained.embed_images(pretrained.make_encoder("dlib"), [path], workers=1, cache=False, progress=False)
    assert result.aligned_by.tolist() == [0]
    np.testing.assert_allclose(result.vectors[0], expected, atol=1e-6)
