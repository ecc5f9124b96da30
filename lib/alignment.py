"""Face alignment: five landmarks → a similarity transform → a face crop in a fixed template.

Every face-recognition pipeline since DeepFace trains and tests on *aligned* faces; SphereFace (Liu et al.,
CVPR 2017, §4.1) detects five landmarks (two eyes, the nose, two mouth corners) with MTCNN and maps them by
a similarity transform onto a fixed 112×96 template (:data:`PAPER_TEMPLATE`, the coordinates of the
authors' ``preprocess/code/face_align_demo.m``). This module holds the geometry, with no model in it:

* :func:`umeyama`: the least-squares similarity (rotation, uniform scale, translation; no reflection) that
  maps one point set onto another (Umeyama, IEEE TPAMI 13(4), 1991);
* :func:`template_points`: the template placed in a square ``size``×``size`` crop with a ``margin``;
* :func:`align_face`: landmarks of a photo → the aligned crop, refusing a degenerate transform (the
  landmarks all at one point) and a blank crop, with the file named.

The landmarks come from dlib's 5-point shape predictor (:meth:`lib.pretrained.DlibEncoder.landmarks`,
with its counted fallback box for faces the detector misses). Those five points are not MTCNN's: dlib marks
the two corners of each eye and the base of the nose, no mouth. :data:`DLIB_TEMPLATE` is therefore the
paper's template *expressed in dlib's five points*: each eye's two corners placed so that their midpoint is
the paper's eye centre, and the nose base below, at the positions these points take on average on LFW
deep-funneled faces once their eye centres are mapped onto the paper's (measured by
``scripts/measure_alignment_template.py`` on the 497 of 500 LFW images where the detector found the face; the
paper's eye centres and scale are kept exactly, only the points dlib finds instead of the paper's are
measured; the eye corners vary by 0.5 px between faces there, the nose base by 3.8 px).

Crops are square because SphereCNN's input is square (96×96): the paper's 112×96 frame is centred in a 112×112
square, and ``margin`` adds a border of ``margin``×112 on every side (0: the paper's framing, the face
filling the crop; 0.2: a looser crop with more of the head). The output side ``size`` is the network's input
size, so the warp goes straight from the photo to the network's pixels (antialiased by supersampling).
:class:`FaceAligner` is the preprocessing step the image cache (:mod:`lib.imagecache`) calls per image;
its :attr:`FaceAligner.key` enters the cache's key, so crops of other settings are never reused.
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lib.errors import DataError

__all__ = ["PAPER_TEMPLATE", "DLIB_TEMPLATE", "ALIGNMENTS", "alignment_problems", "umeyama", "apply_transform", "template_points",
           "alignment_transform", "align_face", "warp", "FaceAligner", "MIN_LANDMARK_SPREAD", "MIN_CROP_STD"]

ALIGNMENTS = ("center", "aligned")  # RunSettings.alignment: centre crop of the photo, or five-point alignment

# SphereFace's template in its 96 (wide) × 112 (high) crop, (x, y) in pixels: left eye, right eye, nose tip,
# left and right mouth corner ("left" = the image's left). wy19911220/sphereface, preprocess/code/face_align_demo.m.
PAPER_TEMPLATE = np.array([[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366],
                           [33.5493, 92.3655], [62.7299, 92.2041]])
PAPER_FRAME = (112, 96)  # (height, width) of the paper's crop

# The same template in dlib's five points, in the same 96 × 112 frame (x, y), in dlib's order: outer and
# inner corner of the image-right eye, outer and inner corner of the image-left eye, base of the nose.
# The eye-corner midpoints are the paper's eye centres; the offsets are the LFW means measured by
# scripts/measure_alignment_template.py (500 LFW deep-funneled images, eye centres mapped onto the paper's).
DLIB_TEMPLATE = np.array([[72.4600, 51.2815], [58.6036, 51.7213], [23.3085, 51.5849],
                          [37.2807, 51.8077], [48.5240, 78.7056]])

MIN_LANDMARK_SPREAD = 2.0  # px: landmarks closer than this to their centroid (RMS) define no face
MIN_CROP_STD = 2.0  # grey levels: an aligned crop flatter than this is blank, not a face


def alignment_problems(alignment: str, margin: float) -> list[str]:
    """What is wrong with an ``alignment`` and ``align_margin`` pair (see :mod:`lib.alignment`)."""
    if alignment not in ALIGNMENTS:
        return [f"alignment must be one of {list(ALIGNMENTS)}, got {alignment!r}"]
    if not 0.0 <= margin <= 1.0:
        return [f"align_margin is a fraction of the template's height in [0, 1], got {margin}"]
    if alignment == "center" and margin != 0.0:
        return [f"align_margin={margin} only applies to alignment='aligned' (a centre crop's size is `crop`); "
                f"leave it at 0 or set alignment: aligned"]
    return []


def umeyama(source, target) -> np.ndarray:
    """The 2×3 similarity ``[sR | t]`` minimising Σ‖s·R·source_i + t − target_i‖² (no reflection).

    Umeyama (1991), eqs. (40)–(42): the rotation from the SVD of the cross-covariance, the scale from the
    source's variance. ``source`` and ``target``: (N, 2) point sets, N ≥ 2. Raises ``ValueError`` when the
    source points coincide (their variance is zero): no transform maps a single point to a face.
    """
    source, target = np.asarray(source, float), np.asarray(target, float)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or len(source) < 2:
        raise ValueError(f"need two (N, 2) point sets with N >= 2, got {source.shape} and {target.shape}")
    mean_s, mean_t = source.mean(axis=0), target.mean(axis=0)
    centred_s, centred_t = source - mean_s, target - mean_t
    variance = float((centred_s ** 2).sum(axis=1).mean())
    if not variance > 1e-12:
        raise ValueError("the source points coincide: no similarity transform is defined")
    covariance = centred_t.T @ centred_s / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(singular) @ sign)) / variance
    translation = mean_t - scale * rotation @ mean_s
    return np.hstack([scale * rotation, translation[:, None]])


def apply_transform(matrix: np.ndarray, points) -> np.ndarray:
    """``points`` (N, 2) mapped by the 2×3 affine ``matrix``."""
    points = np.asarray(points, float)
    return points @ matrix[:, :2].T + matrix[:, 2]


def template_points(size: int, margin: float = 0.0, template: np.ndarray = DLIB_TEMPLATE) -> np.ndarray:
    """``template`` (in the paper's 96×112 frame) placed in a ``size``×``size`` crop: the frame centred in
    a 112×112 square, a border of ``margin``×112 on every side, the whole scaled to ``size`` pixels.
    Pixel coordinates with pixel centres at integers (as dlib's landmarks)."""
    if not (isinstance(size, (int, np.integer)) and size >= 16):
        raise ValueError(f"size must be an integer of at least 16 px, got {size!r}")
    if not 0.0 <= margin <= 1.0:
        raise ValueError(f"margin must be in [0, 1] (a border as a fraction of the template's height), got {margin!r}")
    height, width = PAPER_FRAME
    side = height * (1 + 2 * margin)
    offset = np.array([(height - width) / 2 + margin * height, margin * height])
    # the frame spans [0, side] continuously; pixel i covers [i, i + 1] there, its centre at i + 0.5
    return (np.asarray(template, float) + offset) * (size / side) - 0.5


def warp(image: np.ndarray, matrix: np.ndarray, size: int, *, fill: int = 0) -> tuple[np.ndarray, float]:
    """The ``size``×``size`` crop of ``image`` (H, W, 3 uint8) under the 2×3 ``matrix`` (photo → crop), and
    the fraction of its pixels that fall outside the photo (filled with ``fill``).

    Bilinear sampling at up to 4× the output resolution, then an antialiased reduction: a photo shrunk by
    the transform is averaged, not aliased."""
    linear = matrix[:, :2]
    scale = math.sqrt(abs(np.linalg.det(linear)))
    factor = int(min(4, max(1, math.ceil(1 / scale)))) if scale > 0 else 1
    big = size * factor
    # output pixel (u, v) of the supersampled crop ↔ crop coordinate ((u + 0.5)/factor − 0.5, ...)
    to_crop = np.array([[1 / factor, 0, 0.5 / factor - 0.5], [0, 1 / factor, 0.5 / factor - 0.5], [0, 0, 1]])
    forward = np.vstack([matrix, [0, 0, 1]])
    inverse = np.linalg.inv(forward) @ to_crop  # supersampled output pixel → photo coordinate (centres at integers)
    # PIL samples output pixel (u, v) at its centre (u + 0.5, v + 0.5) and reads the input in the same
    # convention, so shift both ways by half a pixel.
    shift_in = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    shift_out = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    pil = shift_in @ inverse @ shift_out
    source = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    crop = source.transform((big, big), Image.Transform.AFFINE, data=tuple(pil[:2].reshape(-1)),
                            resample=Image.Resampling.BILINEAR, fillcolor=(fill,) * 3)
    inside = Image.new("L", source.size, 255).transform(
        (big, big), Image.Transform.AFFINE, data=tuple(pil[:2].reshape(-1)), resample=Image.Resampling.NEAREST,
        fillcolor=0)
    if factor > 1:
        crop = crop.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    outside = 1.0 - float(np.asarray(inside, dtype=np.float64).mean() / 255.0)
    return np.asarray(crop, dtype=np.uint8), outside


def alignment_transform(landmarks, size: int, margin: float = 0.0, *, template: np.ndarray = DLIB_TEMPLATE,
                        name: str = "image") -> np.ndarray:
    """The 2×3 similarity (photo → crop) that maps ``landmarks`` ((5, 2) (x, y) pixels, in the order of
    ``template``) onto :func:`template_points` in the least-squares sense (:func:`umeyama`).

    Refused with :class:`lib.errors.DataError` naming ``name``: landmarks within
    :data:`MIN_LANDMARK_SPREAD` px (RMS) of their centroid (a degenerate transform, e.g. all at one point,
    which would blow a pixel up into a crop)."""
    points = np.asarray(landmarks, float)
    if points.shape != np.shape(template) or not np.all(np.isfinite(points)):
        raise DataError(f"{name}: expected {len(template)} finite (x, y) landmarks, got {points.tolist()}")
    spread = float(np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=1).mean()))
    if spread < MIN_LANDMARK_SPREAD:
        raise DataError(f"{name}: its {len(points)} landmarks lie within {spread:.2f} px of one point, which gives a "
                        f"degenerate alignment (a transform that blows a few pixels up into a face). Check the image "
                        f"and the landmark detector's output for it, or remove the image")
    return umeyama(points, template_points(size, margin, template))


def align_face(image: np.ndarray, landmarks, size: int, margin: float = 0.0, *, template: np.ndarray = DLIB_TEMPLATE,
               name: str = "image") -> tuple[np.ndarray, float]:
    """The aligned ``size``×``size`` crop of ``image`` (H, W, 3 uint8) by :func:`alignment_transform`, and
    the fraction of the crop outside the photo.

    Refused with :class:`lib.errors.DataError` naming ``name``: degenerate landmarks (see
    :func:`alignment_transform`) and a crop flatter than :data:`MIN_CROP_STD` grey levels (blank: nothing
    to train on)."""
    matrix = alignment_transform(landmarks, size, margin, template=template, name=name)
    crop, outside = warp(image, matrix, size)
    if float(crop.std()) < MIN_CROP_STD:
        raise DataError(f"{name}: its aligned crop is blank (pixel std {crop.std():.2f}, {outside:.0%} outside the "
                        f"photo); it is not trained on. Check the image or remove it")
    return crop, outside


@dataclass(frozen=True)
class AlignedCrop:
    """One aligned crop (size, size, 3) uint8, how its landmarks were found (an entry of
    ``lib.pretrained.ALIGNED_BY``) and the fraction of it outside the photo."""

    crop: np.ndarray
    found_by: str
    outside: float


class FaceAligner:
    """The preprocessing step: photo (H, W, 3 uint8) → landmarks → aligned ``size``×``size`` crop.

    ``landmarker``: a factory of objects with ``landmarks(image) -> ((5, 2) array, found_by)`` and a
    ``model_digest`` (e.g. ``lambda: lib.pretrained.make_encoder("dlib")``); one is built per thread, since
    a dlib model is not shared between threads. :attr:`key` names the settings and the landmark model,
    for the image cache's key.
    """

    VERSION = 1  # bump when the geometry changes what it produces

    def __init__(self, size: int, margin: float = 0.0, landmarker=None, *, template: np.ndarray = DLIB_TEMPLATE):
        template_points(size, margin, template)  # validates size and margin
        if landmarker is None:
            from lib import pretrained

            landmarker = lambda: pretrained.make_encoder("dlib")  # noqa: E731
        self.size, self.margin, self.template = int(size), float(margin), np.asarray(template, float)
        self._factory = landmarker
        self._local = threading.local()
        template_digest = hashlib.blake2b(self.template.round(4).tobytes(), digest_size=4).hexdigest()
        self.key = f"aligned-v{self.VERSION}-m{self.margin:g}-{self._landmarker().model_digest[:12]}-t{template_digest}"

    def _landmarker(self):
        found = getattr(self._local, "landmarker", None)
        if found is None:
            found = self._local.landmarker = self._factory()
        return found

    def __call__(self, image: np.ndarray, name: str = "image") -> AlignedCrop:
        points, found_by = self._landmarker().landmarks(image)
        crop, outside = align_face(image, points, self.size, self.margin, template=self.template, name=name)
        return AlignedCrop(crop, found_by, outside)
