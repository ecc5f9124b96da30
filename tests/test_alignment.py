"""Five-point face alignment (lib.alignment) and its image cache (lib.imagecache with align=)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lib import alignment
from lib.errors import DataError
from lib.imagecache import ImageCache

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255)]


def similarity(angle_degrees: float, scale: float, shift) -> np.ndarray:
    angle = math.radians(angle_degrees)
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return np.hstack([rotation, np.asarray(shift, float)[:, None]])


def dotted_photo(points, size=250, radius=4.0, grey=110) -> np.ndarray:
    """A grey photo with a coloured disc centred on each point (x, y), pixel centres at integers."""
    image = Image.new("RGB", (size, size), (grey,) * 3)
    draw = ImageDraw.Draw(image)
    for (x, y), colour in zip(points, COLOURS):
        draw.ellipse([x - radius + 0.5, y - radius + 0.5, x + radius + 0.5, y + radius + 0.5], fill=colour)
    return np.asarray(image)


def dot_centres(crop: np.ndarray) -> np.ndarray:
    """Centroid of each colour's pixels (weighted by closeness to the colour)."""
    crop = crop.astype(float)
    ys, xs = np.mgrid[: crop.shape[0], : crop.shape[1]]
    centres = []
    for colour in COLOURS:
        distance = np.linalg.norm(crop - np.array(colour, float), axis=2)
        weight = np.clip(1 - distance / 120.0, 0, None)
        assert weight.sum() > 0, f"dot {colour} vanished from the crop"
        centres.append([(xs * weight).sum() / weight.sum(), (ys * weight).sum() / weight.sum()])
    return np.array(centres)


def least_squares_similarity(source, target) -> np.ndarray:
    """Reference: the similarity x' = a·x − b·y + tx, y' = b·x + a·y + ty by linear least squares."""
    rows, values = [], []
    for (x, y), (u, v) in zip(source, target):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        values += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows, float), np.array(values, float), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def test_umeyama_recovers_a_known_similarity_and_matches_linear_least_squares():
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 100, size=(5, 2))
    known = similarity(33.0, 1.7, (12.0, -40.0))
    np.testing.assert_allclose(alignment.umeyama(source, alignment.apply_transform(known, source)), known, atol=1e-9)
    noisy_target = alignment.apply_transform(known, source) + rng.normal(0, 3.0, size=(5, 2))
    np.testing.assert_allclose(alignment.umeyama(source, noisy_target), least_squares_similarity(source, noisy_target),
                               atol=1e-9)


def test_umeyama_never_reflects():
    source = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 5.0]])
    mirrored = source * np.array([-1.0, 1.0])
    matrix = alignment.umeyama(source, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


@pytest.mark.parametrize("angle, scale, margin", [(25.0, 2.2, 0.0), (-40.0, 1.3, 0.2), (90.0, 2.4, 0.1)])
def test_rotated_and_scaled_face_comes_out_upright_on_the_template(angle, scale, margin):
    size = 96
    template = alignment.template_points(size, margin)
    # The photo is the template crop rotated by `angle`, scaled by `scale` and moved: its landmarks are known.
    photo_from_crop = similarity(angle, scale, (125.0, 125.0))
    photo_from_crop[:, 2] -= photo_from_crop[:, :2] @ template.mean(axis=0)  # face centre at the photo's centre
    landmarks = alignment.apply_transform(photo_from_crop, template)
    photo = dotted_photo(landmarks, radius=2.2 * scale)
    crop, outside = alignment.align_face(photo, landmarks, size, margin, name="dots.png")
    assert crop.shape == (size, size, 3)
    found = dot_centres(crop)
    assert np.abs(found - template).max() < 2.0, (found - template)
    # upright: the two eyes' dots (outer corners) level within a pixel
    assert abs(found[0, 1] - found[2, 1]) < 1.0
    assert outside < 0.05


def test_the_template_keeps_the_papers_eye_centres():
    size, margin = 112, 0.0
    dlib_points = alignment.template_points(size, margin)
    paper_points = alignment.template_points(size, margin, alignment.PAPER_TEMPLATE)
    np.testing.assert_allclose(dlib_points[2:4].mean(axis=0), paper_points[0], atol=1e-6)  # image-left eye
    np.testing.assert_allclose(dlib_points[0:2].mean(axis=0), paper_points[1], atol=1e-6)  # image-right eye
    assert dlib_points[4, 1] > paper_points[2, 1]  # dlib marks the base of the nose, below the paper's tip


def test_degenerate_landmarks_are_refused_with_the_file_named():
    photo = dotted_photo(alignment.template_points(96) + 80)
    with pytest.raises(DataError, match="odd_face.jpg.*degenerate"):
        alignment.align_face(photo, np.full((5, 2), 120.0), 96, name="odd_face.jpg")
    with pytest.raises(DataError, match="odd_face.jpg.*finite"):
        alignment.align_face(photo, np.full((5, 2), np.nan), 96, name="odd_face.jpg")


def test_a_blank_crop_is_refused_with_the_file_named():
    blank = np.full((250, 250, 3), 128, np.uint8)
    with pytest.raises(DataError, match="blank.jpg.*blank"):
        alignment.align_face(blank, alignment.template_points(96) * 2 + 20, 96, name="blank.jpg")
    # far outside the photo: the crop is all fill
    with pytest.raises(DataError, match="far.jpg.*blank"):
        alignment.align_face(dotted_photo(alignment.template_points(96)), alignment.template_points(96) + 5000, 96,
                             name="far.jpg")


def test_invalid_size_or_margin():
    with pytest.raises(ValueError, match="margin"):
        alignment.template_points(96, -0.1)
    with pytest.raises(ValueError, match="size"):
        alignment.template_points(8)


class FakeLandmarker:
    """Returns the dots' known landmarks; images whose name says `miss` count as detector misses."""

    model_digest = "f" * 64
    calls = 0

    def __init__(self, landmarks_by_mean):
        self.landmarks_by_mean = landmarks_by_mean

    def landmarks(self, image):
        FakeLandmarker.calls += 1
        key = int(image[0, 0, 0])
        points, found_by = self.landmarks_by_mean[key]
        return points, found_by


def test_aligned_cache_counts_fallbacks_is_keyed_by_the_settings_and_is_reused(tmp_path):
    size = 64
    files, known = [], {}
    for index in range(6):
        landmarks = alignment.apply_transform(similarity(10.0 * index, 2.0 + 0.1 * index, (60.0 + index, 70.0)),
                                              alignment.template_points(size))
        photo = dotted_photo(landmarks, radius=5, grey=100 + 5 * index)  # the fake landmarker tells them apart
        path = tmp_path / f"face_{index}.png"
        Image.fromarray(photo).save(path)
        decoded = np.asarray(Image.open(path).convert("RGB"))
        known[int(decoded[0, 0, 0])] = (landmarks, "fallback box" if index in (1, 4) else "detector")
        files.append(path)
    factory = lambda: FakeLandmarker(known)  # noqa: E731
    aligner = alignment.FaceAligner(size, 0.0, factory)
    cache = ImageCache(size, cache_dir=tmp_path / "cache", align=aligner, workers=2, progress=False)
    images = cache.load(files, key="aligned-test")
    assert images.shape == (6, 3, size, size)
    assert cache.record["fallback"] == 2
    assert cache.record["aligned_by"] == ["detector", "fallback box", "detector", "detector", "fallback box", "detector"]
    for crop in images:
        found = dot_centres(crop.numpy().transpose(1, 2, 0))
        assert np.abs(found - alignment.template_points(size)).max() < 2.0
    calls = FakeLandmarker.calls
    again = ImageCache(size, cache_dir=tmp_path / "cache", align=aligner, progress=False)
    assert np.array_equal(again.load(files, key="aligned-test").numpy(), images.numpy())
    assert FakeLandmarker.calls == calls  # served from the cache
    assert again.record["fallback"] == 2
    other_margin = ImageCache(size, cache_dir=tmp_path / "cache", align=alignment.FaceAligner(size, 0.2, factory),
                              progress=False)
    centre = ImageCache(size, cache_dir=tmp_path / "cache", progress=False)
    names = {cache.paths_for(files, "aligned-test")[0].name, other_margin.paths_for(files, "aligned-test")[0].name,
             centre.paths_for(files, "aligned-test")[0].name}
    assert len(names) == 3


def test_aligned_cache_names_the_file_with_degenerate_landmarks(tmp_path):
    path = tmp_path / "collapsed.png"
    Image.fromarray(dotted_photo(alignment.template_points(64) + 50)).save(path)

    class OnePoint:
        model_digest = "0" * 64

        def landmarks(self, image):
            return np.full((5, 2), 100.0), "detector"

    cache = ImageCache(64, cache_dir=tmp_path, align=alignment.FaceAligner(64, 0.0, OnePoint), progress=False)
    with pytest.raises(DataError, match="collapsed.png.*degenerate"):
        cache.load([path])


def test_aligned_cache_takes_no_centre_crop(tmp_path):
    class Never:
        model_digest = "0" * 64

    with pytest.raises(ValueError, match="no centre crop"):
        ImageCache(64, crop=150, cache_dir=tmp_path, align=alignment.FaceAligner(64, 0.0, Never))


def test_real_lfw_face_rotated_and_scaled_is_aligned_like_the_original():
    from lib import paths, pretrained

    reason = pretrained.unavailable_reason("dlib")
    if reason:
        pytest.skip(reason)
    files = sorted((paths.SHARED_LFW / "lfw-deepfunneled" / "Aaron_Eckhart").glob("*.jpg"))
    if not files:
        pytest.skip(f"the real LFW images are not under {paths.SHARED_LFW}")
    encoder = pretrained.make_encoder("dlib")
    original = np.asarray(Image.open(files[0]).convert("RGB"))
    # Rotate by 20° and shrink by 0.8 about the centre (PIL maps output → input with the inverse).
    angle, scale = 20.0, 0.8
    forward = similarity(angle, scale, (0.0, 0.0))
    centre = np.array([124.5, 124.5])
    forward[:, 2] = centre - forward[:, :2] @ centre
    inverse = np.linalg.inv(np.vstack([forward, [0, 0, 1]]))
    shift_in = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    shift_out = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    data = tuple((shift_in @ inverse @ shift_out)[:2].reshape(-1))
    rotated = np.asarray(Image.fromarray(original).transform((250, 250), Image.Transform.AFFINE, data=data,
                                                             resample=Image.Resampling.BICUBIC, fillcolor=(0, 0, 0)))
    size = 96
    points, found_by = encoder.landmarks(rotated)
    assert found_by == "detector"
    matrix = alignment.alignment_transform(points, size)
    template = alignment.template_points(size)
    mapped = alignment.apply_transform(matrix, points)
    eyes = np.array([mapped[2:4].mean(axis=0), mapped[0:2].mean(axis=0)])
    expected_eyes = np.array([template[2:4].mean(axis=0), template[0:2].mean(axis=0)])
    assert np.abs(eyes - expected_eyes).max() < 2.0
    # the true landmarks of the rotated photo: the original's mapped by the known rotation
    true_points = alignment.apply_transform(forward, encoder.landmarks(original)[0])
    true_eyes = alignment.apply_transform(matrix, np.array([true_points[2:4].mean(axis=0),
                                                            true_points[0:2].mean(axis=0)]))
    assert np.abs(true_eyes - expected_eyes).max() < 2.0
    upright, _ = alignment.align_face(original, encoder.landmarks(original)[0], size)
    turned, _ = alignment.align_face(rotated, points, size)
    assert np.abs(upright.astype(int) - turned.astype(int)).mean() < 20  # the same face, the same pose
