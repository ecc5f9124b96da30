"""The embedded synthetic face dataset: cartoon faces in the real FairFace and LFW on-disk formats.

A fresh clone has no real faces, so the project draws its own, deterministically from a seed, and
writes them exactly as the real releases lay them out, so the real loaders and protocol parsers are
what reads them::

    <root>/metadata.json                       seed, preset, version, counts, planted facts
    <root>/fairface/{train,val}/N.jpg          224x224, one person per image, N = 1..n
    <root>/fairface/fairface_label_{train,val}.csv   file,age,gender,race,service_test
    <root>/lfw/lfw/<Name>/<Name>_NNNN.jpg      250x250, long-tailed images per person
    <root>/lfw/pairs.txt                       View 2: 10 identity-disjoint folds of P + P pairs
    <root>/lfw/pairs{DevTrain,DevTest}.txt     View 1 pairs, people{DevTrain,DevTest}.txt
    <root>/lfw/identities.csv                  name,group,gender,age (metadata real LFW lacks)
    <root>/lfw/gender/{male,female}_names.txt  one image file name per line, CRLF (third-party format)

**How a face is made.** Every photo gets an :class:`Appearance` (head shape, jaw, eye/nose/mouth
layout, skin/hair/iris colour, hair style and curl, beard, glasses, make-up, moles, wrinkles). Its
18 continuous traits are ``z = prototype(group) + TRAIT_SPREAD * N(0, I)`` in standard-deviation
units, then shifted by gender (jaw, brows, lips, hair length, beard) and age (child proportions;
wrinkles, grey and receding hair). The seven prototypes are a regular simplex of edge
``GROUP_SEPARATION`` built so that a cyclic shift of the groups maps it onto itself: every group is
as far from every other, and mixes colour and shape, so the groups' looks overlap and none is easier
to tell apart *by construction*. Every photo also draws a :class:`Nuisance` from one distribution
for all groups: pose (roll, yaw, pitch), scale and shift, expression (smile, open mouth, squint,
brows), glasses off, lighting, exposure and colour cast, contrast, blur, noise and occlusion. A preset's
``lfw_nuisance`` scales how far the LFW-style photos stray (pose spread and degradation; the FairFace-style
ones keep full strength), so a network trained for a minute on the ``default`` preset can tell people apart
at all: otherwise every group sits near chance and the planted difference cannot show.

**Planted disparity.** ``GROUP_DIFFICULTY`` gives each group a ``d`` in [0, 1] (``Group A`` 0 ..
``Group G`` 1). It acts in two ways that no single image reveals:

* *photo-to-photo variability* (the nuisance that makes verification harder): a share
  ``0.1 + 0.7 d`` of the trait variance is re-drawn for every photo instead of fixed per person,
  and each style choice (hair style and cut, beard, glasses, make-up) is re-drawn per photo with
  that probability, so one person of a hard group looks less alike across photos;
* *a less distinctive group look* (what makes group classification harder): the prototype is
  pulled towards the centre of all groups by the factor ``1 - PROTOTYPE_PULL * d``.

Per-group accuracy should therefore fall with ``d``, for group classification on the FairFace-style
set and for verification on the LFW-style pairs: ``EXPECTED_ORDER`` lists the groups from easiest
to hardest. Why not simply more blur/noise/lower contrast for hard groups? A first version did that,
and ``scripts/calibrate_synthetic.py`` showed the CNN learning "degraded => hard group": the hardest
group became one of the *easiest* to classify (77 % against 44-57 % for the middle groups). So
degradation is the same for everyone and the disparity lives where one image cannot give it away.

**Planted duplicates.** Like the real FairFace release, a few FairFace-style files are byte-identical
copies of another file: one within train, two across train and val, and one within train whose
copy carries a different group label. ``metadata.json`` lists them (``planted_duplicates``).

Everything is a pure function of ``(preset, seed)``: one random stream per identity and per image
(``numpy`` ``SeedSequence`` keys), JPEG quality fixed, so the bytes do not depend on the number of
worker processes. Generating the ``default`` preset takes well under a minute on two cores.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from lib import paths
from lib.labels import AGES, GENDERS, SYNTHETIC_GROUPS
from lib.progress import progress

GENERATOR_VERSION = "3"  # bump on any change to the bytes written: ensure_synthetic then regenerates
JPEG_QUALITY = 90
FAIRFACE_SIZE = 224
LFW_SIZE = 250
# As in the original lfw.tgz: images in an ``lfw/`` folder, protocol files beside it (lib.lfw reads that).
LFW_IMAGE_FOLDER = "lfw"

# ----------------------------------------------------------------------------------- planted facts
#: Per-group difficulty d in [0, 1]: the one knob of the planted disparity (see the module docstring).
GROUP_DIFFICULTY = {
    "Group A": 0.0,
    "Group B": 0.1,
    "Group C": 0.2,
    "Group D": 0.35,
    "Group E": 0.5,
    "Group F": 0.7,
    "Group G": 1.0,
}
#: Groups from easiest to hardest: the ordering a per-group accuracy should recover.
EXPECTED_ORDER = tuple(sorted(GROUP_DIFFICULTY, key=GROUP_DIFFICULTY.get))
HARDEST_GROUPS = EXPECTED_ORDER[-2:]
EASIEST_GROUPS = EXPECTED_ORDER[:2]

DISPARITY_DESCRIPTION = (
    "Per-group difficulty d = GROUP_DIFFICULTY[group] in [0, 1] (Group A 0.0 ... Group G 1.0). "
    "(1) Photo-to-photo variability: a share 0.1 + 0.7 d of the trait variance, and each style choice "
    "(hair, beard, glasses, make-up) with that probability, is re-drawn for every photo, so a person of a "
    "hard group looks less alike across photos (harder verification). (2) The group prototype is pulled "
    "towards the centre of all groups by 1 - PROTOTYPE_PULL * d (harder group classification). Image "
    "degradation (blur, noise, contrast, lighting) has the same distribution for every group, so no single "
    "image reveals d. Prototypes are equidistant, so per-group accuracy should fall from Group A (easiest) "
    "to Group G (hardest)."
)

# Continuous appearance traits (standard-deviation units before mapping to drawing units), in pairs:
# each pair is one "circle" of the group prototypes below.
TRAIT_CIRCLES = (  # ((trait, trait), multiplier); the two traits of a circle are about equally visible
    (("skin_lightness", "hair_lightness"), 1),
    (("skin_warmth", "iris_lightness"), 2),
    (("face_width", "face_length"), 3),
    (("jaw_width", "hair_curl"), 1),
    (("eye_size", "eye_spacing"), 2),
    (("nose_length", "mouth_width"), 3),
    (("nose_width", "lip_thickness"), 1),
    (("eye_height", "brow_thickness"), 2),
    (("ear_size", "eye_tilt"), 3),
)
TRAITS = tuple(trait for pair, _ in TRAIT_CIRCLES for trait in pair)
#: Distance (in trait standard deviations) between any two group prototypes.
GROUP_SEPARATION = 6.0
#: Spread of one image's traits around its group prototype (standard deviations), for every group.
TRAIT_SPREAD = 0.8
#: How far difficulty pulls a group's prototype towards the centre of all groups: factor 1 - PULL * d.
PROTOTYPE_PULL = 0.6


def _group_prototypes() -> np.ndarray:
    """(7, len(TRAITS)) group means: every group at the same distance from every other, same role.

    Group ``k`` sits at angle ``2 pi m k / 7 + phase`` on each circle (a pair of traits) of radius r,
    with a circle's multiplier ``m`` in {1, 2, 3}, three circles each. The squared distance between
    groups ``k`` and ``k + D`` is ``sum over circles of 2 r^2 (1 - cos(2 pi m D / 7))`` = ``21 r^2``
    for every ``D != 0``, because ``mD`` runs over all non-zero residues mod 7 up to sign. So the
    prototypes form a regular simplex (no pair of groups is easier to tell apart), and a cyclic shift
    of the groups maps the set onto itself (no group is more typical or more salient than another);
    each group's look mixes colour and shape. The fixed phases only decorrelate the circles.
    """
    groups = np.arange(len(SYNTHETIC_GROUPS))
    radius = GROUP_SEPARATION / math.sqrt(21.0)
    columns = []
    for circle, ((_, _), multiplier) in enumerate(TRAIT_CIRCLES):
        angle = 2 * math.pi * multiplier * groups / 7 + 2.4 * circle  # 2.4 rad: an arbitrary fixed phase step
        columns += [radius * np.cos(angle), radius * np.sin(angle)]
    return np.stack(columns, axis=1)


GROUP_PROTOTYPES = _group_prototypes()

# Demographic mixes. FairFace: its age shares (measured on the full official label files) and male
# share; LFW: mostly adult and mostly male, as the real one. Groups are equally likely in both.
FAIRFACE_AGE_SHARES = (0.021, 0.120, 0.105, 0.295, 0.222, 0.124, 0.072, 0.032, 0.010)
FAIRFACE_MALE_SHARE = 0.53
LFW_AGE_SHARES = (0.0, 0.0, 0.02, 0.15, 0.25, 0.25, 0.19, 0.10, 0.04)
LFW_MALE_SHARE = 0.7
AGE_YEARS = (1, 6, 15, 25, 35, 45, 55, 65, 75)  # a representative age for each FairFace age bin

# LFW-style images per person: many people with one image, a long tail, and a few "celebrities".
_FEW_IMAGES_SHARES = {1: 0.32, 2: 0.09, 3: 0.06, 4: 0.05, 5: 0.04}  # the rest: 5 + Geometric(0.25)
_MANY_IMAGES_CAP = 30


# ----------------------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes of one synthetic dataset.

    ``pairs_per_fold``, ``dev_train_pairs`` and ``dev_test_pairs`` count *matched* pairs; each file
    holds as many mismatched pairs (LFW's convention: ``pairsDevTrain.txt`` header 1100 = 1100 + 1100).
    """

    fairface_train: int
    fairface_val: int
    lfw_identities: int
    pairs_per_fold: int
    dev_train_pairs: int
    dev_test_pairs: int
    celebrities: int = 2  # LFW people with very many images (real LFW: George_W_Bush has 530)
    celebrity_images: tuple[int, int] = (40, 80)  # their image count range (inclusive)
    dev_train_share: float = 0.7  # share of LFW people in View 1 DevTrain (real LFW: 4038 of 5749)
    lfw_nuisance: float = 1.0  # strength of the LFW-style photos' pose and degradation (sample_nuisance)


PRESETS = {
    "smoke": SyntheticConfig(fairface_train=140, fairface_val=70, lfw_identities=40, pairs_per_fold=3,
                             dev_train_pairs=20, dev_test_pairs=8, celebrities=1, celebrity_images=(12, 20)),
    # lfw_nuisance 0.2: at full strength the LFW-style pairs were close to chance for a SphereCNN trained for a
    # minute (validation 10-fold 0.68 at 48 px), so no group difference could show; 0.2 gave 0.77 (issue 29).
    "default": SyntheticConfig(fairface_train=3500, fairface_val=1000, lfw_identities=600, pairs_per_fold=60,
                               dev_train_pairs=300, dev_test_pairs=150, lfw_nuisance=0.2),
}


def get_config(preset: str) -> SyntheticConfig:
    """The :class:`SyntheticConfig` of a preset name (``"smoke"`` or ``"default"``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[preset]


# ----------------------------------------------------------------------------------- random streams
# Each identity and each image draws from its own stream keyed by (seed, purpose, index...), so the
# output does not depend on generation order or on how the work is split between processes.
_STREAM_PLAN, _STREAM_IDENTITY, _STREAM_IMAGE = 0, 1, 2
_DATASET_CODE = {"fairface": 0, "lfw": 1}


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, *key])


# --------------------------------------------------------------------------------------- appearance
@dataclass(frozen=True)
class Appearance:
    """Everything that stays the same across one person's images (drawing units: head half-height 1)."""

    group: str
    gender: str
    age: str
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    lips: tuple[float, float, float]
    face_width: float  # head half-width
    face_length: float  # head half-height
    jaw_width: float  # chin width as a share of the cheek width
    eye_size: float  # eye half-width
    eye_spacing: float  # half the distance between eye centres
    eye_height: float  # eye line (y grows downwards, 0 = head centre)
    eye_tilt: float
    nose_length: float
    nose_width: float
    mouth_width: float
    lip_thickness: float
    brow_thickness: float
    brow_arch: float
    ear_size: float
    hair_style: str  # "short", "long", "buzz", "receding", "bun"
    hair_volume: float
    hair_curl: float
    fringe: float  # how far the hairline comes down, 0..1
    parting: float  # -1..1, side of the parting
    beard: str  # "none", "stubble", "full"
    glasses: str  # "none", "round", "square"
    frame: tuple[float, float, float]
    moles: tuple[tuple[float, float, float], ...]
    wrinkles: float  # 0..1
    blush: float


def _mix(a, b, t: float) -> tuple[float, float, float]:
    t = float(np.clip(t, 0.0, 1.0))
    return tuple(float(x + (y - x) * t) for x, y in zip(a, b))


def photo_variability(difficulty: float) -> float:
    """Share of a person's look re-drawn for every photo: ``0.1 + 0.7 d`` (the planted nuisance).

    It is the share of the trait variance that is drawn per photo (the rest is fixed per person) and
    the probability that each style choice (hair style and cut, beard, glasses, make-up) is drawn
    again for a photo. Photo draws come from the same distributions as person draws, so one image
    looks like any other image of its group: only how consistent a person looks across photos changes.
    """
    return 0.1 + 0.7 * difficulty


def _style(rng: np.random.Generator, male: bool, years: int) -> dict:
    """Choices a person may change between photos: hair style and cut, beard, glasses, make-up."""
    old = float(np.clip((years - 35) / 40, 0.0, 1.0))
    weights = ({"short": 0.55, "long": 0.08, "buzz": 0.22, "receding": 0.1 + 0.5 * old, "bun": 0.0} if male
               else {"short": 0.25, "long": 0.6, "buzz": 0.02, "receding": 0.0, "bun": 0.13})
    if years < 16:
        weights["receding"] = 0.0
    shares = np.array(list(weights.values()))
    hair_style = list(weights)[rng.choice(len(weights), p=shares / shares.sum())]
    beard = ("none", "stubble", "full")[rng.choice(3, p=(0.62, 0.22, 0.16))] if male and years >= 20 else "none"
    glasses = rng.choice(("round", "square")) if years >= 10 and rng.random() < 0.12 + 0.3 * old else "none"
    lipstick = float(rng.uniform(0.3, 0.7)) if not male and years >= 16 and rng.random() < 0.45 else 0.0
    return {
        "hair_style": hair_style, "hair_volume": float(rng.uniform(1.04, 1.16)), "fringe": float(rng.uniform(0, 1)),
        "parting": float(rng.uniform(-1, 1)), "beard": beard, "glasses": str(glasses), "lipstick": lipstick,
        "blush": 0.0 if male else float(rng.uniform(0.0, 0.25)), "brow_arch": float(rng.uniform(0.0, 0.06)),
        "frame": tuple(float(c) for c in rng.uniform(10, 140, 3)),
    }


def sample_appearance(rng: np.random.Generator, group: str, gender: str, age: str,
                      photo_rng: np.random.Generator | None = None) -> Appearance:
    """One person's look, in one photo when ``photo_rng`` is given (else their typical look).

    ``rng`` is the person's own stream. Traits: the group prototype pulled towards the centre by
    ``PROTOTYPE_PULL * d``, plus ``TRAIT_SPREAD * N(0, I)`` split between a per-person and a
    per-photo part by :func:`photo_variability`; then gender and age shift the drawing units.
    """
    d = GROUP_DIFFICULTY[group]
    share = photo_variability(d)
    male, years = gender == "Male", AGE_YEARS[AGES.index(age)]
    prototype = (1 - PROTOTYPE_PULL * d) * GROUP_PROTOTYPES[SYNTHETIC_GROUPS.index(group)]
    traits = prototype + TRAIT_SPREAD * math.sqrt(1 - share) * rng.standard_normal(len(TRAITS))
    redhead, grey_rate, blue_eyes = rng.random() < 0.06, rng.uniform(0.5, 1.4), rng.random() < 0.6
    moles = tuple(
        (float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.1, 0.6)), float(rng.uniform(0.015, 0.03)))
        for _ in range(rng.choice(4, p=(0.55, 0.3, 0.1, 0.05)))
    )
    style = _style(rng, male, years)
    if photo_rng is not None:
        traits = traits + TRAIT_SPREAD * math.sqrt(share) * photo_rng.standard_normal(len(TRAITS))
        photo_style = _style(photo_rng, male, years)
        redraw = photo_rng.random(len(style)) < share
        style = {key: photo_style[key] if again else value for (key, value), again in zip(style.items(), redraw)}
    z = dict(zip(TRAITS, traits))
    child = max(0.0, (16 - years) / 15)  # 1 for a baby, 0 from 16 years on
    old = float(np.clip((years - 35) / 40, 0.0, 1.0))

    skin_t = 1 / (1 + math.exp(-0.9 * z["skin_lightness"]))  # 0 dark .. 1 light
    skin = _mix((96, 58, 38), (250, 218, 192), skin_t)
    warmth = 9 * z["skin_warmth"]
    skin = _mix((skin[0] + 0.4 * warmth, skin[1] + 0.5 * warmth, skin[2] - 1.2 * warmth), (200, 190, 185), 0.15 * old)
    hair = _mix((22, 17, 15), (226, 190, 120), 1 / (1 + math.exp(-1.1 * (z["hair_lightness"] - 0.5))))
    if redhead:
        hair = _mix(hair, (160, 70, 30), 0.7)
    hair = _mix(hair, (205, 205, 205), old * grey_rate)
    iris_t = 1 / (1 + math.exp(-1.3 * (z["iris_lightness"] - 0.8)))
    iris = _mix((58, 34, 20), (80, 125, 170) if blue_eyes else (85, 125, 75), iris_t)
    lips = _mix(_mix(skin, (170, 70, 80), 0.45), (190, 30, 60), style["lipstick"])

    return Appearance(
        group=group, gender=gender, age=age, skin=skin, hair=hair, iris=iris, lips=lips,
        face_width=0.74 + 0.045 * z["face_width"] + (0.03 if male else -0.01) + 0.04 * child,
        face_length=1.0 + 0.04 * z["face_length"] - 0.07 * child,
        jaw_width=float(np.clip(0.52 + 0.07 * z["jaw_width"] + (0.1 if male else -0.04) - 0.08 * child, 0.25, 0.9)),
        eye_size=(0.145 + 0.012 * z["eye_size"] + (0.0 if male else 0.008)) * (1 + 0.25 * child),
        eye_spacing=0.31 + 0.018 * z["eye_spacing"],
        eye_height=-0.08 + 0.045 * z["eye_height"] + 0.12 * child,
        eye_tilt=0.05 * z["eye_tilt"],
        nose_length=(0.33 + 0.035 * z["nose_length"]) * (1 - 0.3 * child),
        nose_width=(0.14 + 0.017 * z["nose_width"]) * (1 - 0.2 * child),
        mouth_width=0.25 + 0.022 * z["mouth_width"] - 0.05 * child,
        lip_thickness=max(0.02, 0.05 + 0.012 * z["lip_thickness"] + (0.0 if male else 0.01)),
        brow_thickness=max(0.015, 0.04 + 0.008 * z["brow_thickness"] + (0.015 if male else 0.0) - 0.015 * child),
        brow_arch=style["brow_arch"],
        ear_size=1.0 + 0.12 * z["ear_size"],
        hair_style=style["hair_style"], hair_volume=style["hair_volume"],
        hair_curl=float(np.clip(0.35 * z["hair_curl"] + 0.25, 0.0, 1.0)),
        fringe=style["fringe"], parting=style["parting"], beard=style["beard"], glasses=style["glasses"],
        frame=style["frame"],
        moles=moles, wrinkles=old, blush=style["blush"],
    )


# ------------------------------------------------------------------------------------------ nuisance
@dataclass(frozen=True)
class Nuisance:
    """Everything that changes from one image of a person to the next."""

    roll: float  # degrees
    yaw: float  # -1..1, turns the features sideways
    pitch: float
    scale: float
    shift: tuple[float, float]  # share of the image size
    smile: float
    mouth_open: bool
    eye_open: float
    brow_raise: float
    glasses_off: bool
    hair_up: bool  # long hair worn up in a bun for this photo
    background: tuple[tuple[float, float, float], tuple[float, float, float]]
    clothing: tuple[float, float, float]
    light_angle: float
    light_strength: float
    exposure: float
    color_cast: tuple[float, float, float]
    contrast: float
    blur: float  # Gaussian sigma in output pixels
    noise: float  # Gaussian sigma in 0..255 units
    noise_seed: int
    occluder: tuple | None  # (kind, x, y, w, h, angle, colour) in drawing units, or None


def sample_nuisance(rng: np.random.Generator, strength: float = 1.0) -> Nuisance:
    """One photo's pose, expression, lighting and degradation (the same distribution for every group).

    A photo's degradation ``severity`` ~ ``strength * clip(N(0.3, 0.25), 0, 1)`` scales colour cast,
    exposure jitter, contrast loss, blur, noise, light strength and the chance of an occluder together;
    ``strength`` also scales the spread of pose (roll, yaw, pitch), scale and shift. The same random
    numbers are drawn whatever ``strength`` is, so it changes how far each photo strays, not which photo it is.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"nuisance strength must be in [0, 1], got {strength}")
    s = strength * float(np.clip(rng.normal(0.3, 0.25), 0.0, 1.0))
    occluder = None
    if rng.random() < 0.04 + 0.2 * s:
        kind = ("bar", "blob", "hand")[rng.choice(3)]
        colour = tuple(float(c) for c in rng.uniform(20, 235, 3))
        occluder = (kind, float(rng.uniform(-0.7, 0.7)), float(rng.uniform(-0.3, 0.8)),
                    float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.2, 0.45)), float(rng.uniform(-40, 40)), colour)
    background = rng.uniform(40, 215, 3)
    return Nuisance(
        roll=float(np.clip(rng.normal(0, 8 * strength), -20, 20)),
        yaw=float(np.clip(rng.normal(0, 0.45 * strength), -0.9, 0.9)),
        pitch=float(np.clip(rng.normal(0, 0.35 * strength), -0.8, 0.8)),
        scale=float(math.exp(rng.normal(0, 0.08 * strength))),
        shift=(float(rng.normal(0, 0.035 * strength)), float(rng.normal(0, 0.035 * strength))),
        smile=float(rng.uniform(-0.3, 1.0)),
        mouth_open=bool(rng.random() < 0.2),
        eye_open=float(0.25 if rng.random() < 0.08 else rng.uniform(0.75, 1.1)),
        brow_raise=float(rng.normal(0, 0.6)),
        glasses_off=bool(rng.random() < 0.25),
        hair_up=bool(rng.random() < 0.2),
        background=(tuple(float(c) for c in background),
                    tuple(float(c) for c in np.clip(background + rng.normal(0, 30, 3), 0, 255))),
        clothing=tuple(float(c) for c in rng.uniform(15, 230, 3)),
        light_angle=float(rng.uniform(0, 2 * math.pi)),
        light_strength=float(rng.uniform(0.0, 0.3 + 0.3 * s)),
        exposure=float(math.exp(rng.normal(0, 0.1 + 0.25 * s))),
        color_cast=tuple(float(c) for c in rng.normal(0, 0.04 + 0.14 * s, 3)),
        contrast=float(1 - rng.uniform(0.0, 0.15) - 0.6 * s * rng.uniform(0.5, 1.0)),
        blur=float(rng.uniform(0.0, 0.8) + 3.0 * s * rng.uniform(0.5, 1.0)),
        noise=float(rng.uniform(1.0, 4.0) + 18.0 * s * rng.uniform(0.5, 1.0)),
        noise_seed=int(rng.integers(2**32)),
        occluder=occluder,
    )


# ------------------------------------------------------------------------------------------ drawing
def _ellipse_points(cx, cy, rx, ry, angle=0.0, n=32, start=0.0, stop=2 * math.pi):
    t = np.linspace(start, stop, n, endpoint=stop - start < 2 * math.pi - 1e-9)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


class _Pen:
    """Draws in face units (head centre at 0, head half-height 1, y downwards) through one similarity transform."""

    def __init__(self, image: Image.Image, centre, pixels_per_unit: float, roll_degrees: float):
        self.draw = ImageDraw.Draw(image)
        self.centre = np.asarray(centre, dtype=float)
        self.k = pixels_per_unit
        angle = math.radians(roll_degrees)
        self.rotation = pixels_per_unit * np.array([[math.cos(angle), -math.sin(angle)],
                                                    [math.sin(angle), math.cos(angle)]])

    def _xy(self, points):
        return (np.asarray(points, dtype=float) @ self.rotation.T + self.centre).ravel().tolist()

    def polygon(self, points, fill):
        self.draw.polygon(self._xy(points), fill=_rgb(fill))

    def ellipse(self, cx, cy, rx, ry, fill, angle=0.0, n=32):
        self.polygon(_ellipse_points(cx, cy, rx, ry, angle, n), fill)

    def line(self, points, width, fill):
        self.draw.line(self._xy(points), fill=_rgb(fill), width=max(1, round(width * self.k)), joint="curve")


def _rgb(colour) -> tuple[int, int, int]:
    return tuple(min(255, max(0, round(c))) for c in colour)


def _shade(colour, factor):
    return tuple(c * factor for c in colour)


def _head_outline(a: Appearance, n: int = 48) -> np.ndarray:
    """Egg-shaped head: an ellipse whose lower half narrows towards a chin of width ``jaw_width``."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    down = np.clip(np.sin(t), 0, None)
    up = np.clip(-np.sin(t), 0, None)
    width = 1 - (1 - a.jaw_width) * down**2.2 - 0.06 * up**2
    return np.stack([a.face_width * np.cos(t) * width, a.face_length * np.sin(t)], axis=1)


def _hair_cap(a: Appearance) -> np.ndarray:
    """Hair over the top of the head: outer edge over the crown (bumpy when curly), inner edge the hairline.

    The polygon runs from the left side burn over the crown to the right one, then back along the
    hairline: down the right temple, across the forehead, up and down the left temple.
    """
    volume = {"buzz": 1.015, "receding": 1.03}.get(a.hair_style, a.hair_volume * (1 + 0.1 * a.hair_curl))
    side_y = a.eye_height - (0.02 if a.hair_style != "receding" else 0.1)
    t = np.linspace(math.pi, 2 * math.pi, 40)
    bump = 1 + 0.07 * a.hair_curl * np.abs(np.sin(t * 9))
    outer = np.stack([a.face_width * volume * 1.03 * np.cos(t) * bump,
                      a.face_length * volume * np.sin(t) * bump - 0.02], axis=1)
    outer = np.concatenate([[[-a.face_width * volume * 1.03, side_y]], outer, [[a.face_width * volume * 1.03, side_y]]])
    hairline = {"buzz": -0.6, "receding": -0.86}.get(a.hair_style, -0.68 + 0.3 * a.fringe)
    temple_x = a.face_width * (0.82 if a.hair_style != "receding" else 0.9)
    s = np.linspace(1, -1, 15)
    forehead_y = hairline + 0.1 * s**2 + 0.08 * a.parting * s
    if a.hair_style == "receding":
        forehead_y = hairline + 0.35 * s**4
    inner = np.concatenate([
        [[a.face_width, side_y], [temple_x, side_y]],
        np.stack([temple_x * s, forehead_y], axis=1),
        [[-temple_x, side_y], [-a.face_width, side_y]],
    ])
    return np.concatenate([outer, inner])


def _draw_face(pen: _Pen, a: Appearance, n: Nuisance) -> None:
    skin, hair = a.skin, a.hair
    outline = _head_outline(a)
    fx, fy = 0.22 * n.yaw * a.face_width, 0.06 * n.pitch  # features follow the head turn
    style = "bun" if a.hair_style == "long" and n.hair_up else a.hair_style

    # body, long hair behind the head, neck, ears
    pen.ellipse(0, 1.95, 1.55, 0.75, n.clothing)
    if style == "long":
        length = 1.3 + 0.4 * a.hair_curl
        back = np.array([[-a.face_width * 1.15, -0.3], [-a.face_width * 1.3, length],
                         [a.face_width * 1.3, length], [a.face_width * 1.15, -0.3]])
        pen.polygon(back, _shade(hair, 0.8))
    if style == "bun":
        pen.ellipse(0, -a.face_length * 1.12, 0.3, 0.25, _shade(hair, 0.9))
    pen.polygon([[-0.26, 0.5], [0.26, 0.5], [0.3, 1.45], [-0.3, 1.45]], _shade(skin, 0.82))
    ear_y = a.eye_height + 0.12
    for side in (-1, 1):
        ear_x = side * (a.face_width * 0.98) - 0.08 * n.yaw
        pen.ellipse(ear_x, ear_y, 0.1 * a.ear_size, 0.19 * a.ear_size, _shade(skin, 0.9))
        pen.ellipse(ear_x, ear_y, 0.05 * a.ear_size, 0.11 * a.ear_size, _shade(skin, 0.75))

    # head, cheeks, beard
    pen.polygon(outline, skin)
    if a.blush > 0:
        for side in (-1, 1):
            pen.ellipse(fx + side * (a.eye_spacing + 0.05), a.eye_height + 0.3, 0.12, 0.07,
                        _mix(skin, (230, 110, 120), a.blush))
    mouth_y = a.eye_height + a.nose_length + 0.2
    if a.beard != "none":
        lower = outline[outline[:, 1] >= a.eye_height + 0.18]
        lower = lower[np.argsort(-np.arctan2(lower[:, 1], lower[:, 0]))]
        inner = _ellipse_points(fx, mouth_y + 0.02, a.mouth_width + 0.1, 0.16, n=16, start=math.pi, stop=0)
        colour = _mix(skin, hair, 0.35) if a.beard == "stubble" else _shade(hair, 0.9)
        pen.polygon(np.concatenate([lower, inner[::-1]]), colour)
    if a.wrinkles > 0.05:
        crease = _mix(skin, _shade(skin, 0.55), a.wrinkles)
        for k in range(1 + int(3 * a.wrinkles)):
            y = -0.42 - 0.08 * k
            pen.line([[-0.3 + fx, y], [0 + fx, y - 0.02], [0.3 + fx, y]], 0.012, crease)
        for side in (-1, 1):
            x0 = fx + side * (a.eye_spacing + a.eye_size + 0.03)
            for dy in (-0.04, 0.03):
                pen.line([[x0, a.eye_height + dy / 2], [x0 + side * 0.08, a.eye_height + dy]], 0.01, crease)
            pen.line([[fx + side * (a.nose_width + 0.02), a.eye_height + a.nose_length - 0.02],
                      [fx + side * (a.mouth_width + 0.04), mouth_y + 0.05]], 0.012, crease)
    for mx, my, mr in a.moles:
        pen.ellipse(fx + mx * a.face_width, my, mr, mr, _shade(skin, 0.45), n=10)

    # hair on top (drawn after the head so it covers the forehead)
    pen.polygon(_hair_cap(a), hair)
    if style == "long":  # side locks framing the face
        for side in (-1, 1):
            pen.polygon([[side * a.face_width * 0.95, -0.45], [side * a.face_width * 1.18, -0.2],
                         [side * a.face_width * 1.2, 0.9], [side * a.face_width * 0.97, 0.55]], hair)

    # eyes and brows
    ey = a.eye_height + fy
    for side in (-1, 1):
        ex = fx + side * a.eye_spacing
        tilt = -side * a.eye_tilt
        open_ry = a.eye_size * 0.55 * n.eye_open
        pen.ellipse(ex, ey, a.eye_size, max(open_ry, 0.012), (238, 236, 232), angle=tilt, n=24)
        if n.eye_open > 0.5:
            iris_r = a.eye_size * 0.52
            pen.ellipse(ex + 0.03 * n.yaw, ey, iris_r, min(iris_r, open_ry), a.iris, n=20)
            pen.ellipse(ex + 0.03 * n.yaw, ey, iris_r * 0.45, min(iris_r * 0.45, open_ry), (12, 10, 10), n=12)
        lid = _ellipse_points(ex, ey, a.eye_size * 1.02, max(open_ry, 0.012) * 1.05, tilt, n=12,
                              start=math.pi, stop=2 * math.pi)
        pen.line(lid, 0.022 if a.gender == "Male" else 0.032, (30, 22, 20))
        by = ey - 0.17 - 0.05 * n.brow_raise
        brow = [[ex - side * a.eye_size * 1.1, by + 0.02], [ex, by - a.brow_arch],
                [ex + side * a.eye_size * 1.15, by + 0.03]]
        pen.line(brow, a.brow_thickness, _mix(_shade(hair, 0.8), (30, 25, 20), 0.3))

    # nose
    tip_y = a.eye_height + a.nose_length + fy
    nose_shadow = _shade(skin, 0.72)
    pen.line([[fx + 0.02 * n.yaw, ey + 0.06], [fx + 0.06 * n.yaw + 0.02, tip_y - 0.03]], 0.018, nose_shadow)
    pen.ellipse(fx + 0.05 * n.yaw, tip_y - 0.02, a.nose_width * 0.55, 0.06, _shade(skin, 0.9), n=16)
    for side in (-1, 1):
        pen.ellipse(fx + 0.05 * n.yaw + side * a.nose_width * 0.5, tip_y, 0.035, 0.022, _shade(skin, 0.45), n=10)

    # mouth: lips around a smile curve, optionally open
    my = mouth_y + fy
    w = a.mouth_width
    x = np.linspace(-w, w, 15)
    curve = my - 0.07 * n.smile * (x / w) ** 2 + 0.03 * n.smile
    bulge = np.sqrt(np.clip(1 - (x / w) ** 2, 0, 1))
    gap = 0.05 * bulge if n.mouth_open else 0.0 * bulge
    upper = np.stack([x + fx, curve - gap - a.lip_thickness * bulge * (1 - 0.25 * np.exp(-((x / w) * 6) ** 2))], axis=1)
    lower = np.stack([x + fx, curve + gap + a.lip_thickness * 1.2 * bulge], axis=1)
    if n.mouth_open:
        top_edge = np.stack([x + fx, curve - gap], 1)
        pen.polygon(np.concatenate([top_edge, np.stack([x + fx, curve + gap], 1)[::-1]]), (60, 20, 25))  # mouth
        teeth = np.stack([x + fx, curve - gap * 0.3], 1)
        pen.polygon(np.concatenate([top_edge, teeth[::-1]]), (235, 232, 225))
    pen.polygon(np.concatenate([upper, np.stack([x + fx, curve - gap], 1)[::-1]]), _shade(a.lips, 0.9))
    pen.polygon(np.concatenate([np.stack([x + fx, curve + gap], 1), lower[::-1]]), a.lips)
    if not n.mouth_open:
        pen.line(np.stack([x + fx, curve], 1), 0.012, _shade(a.lips, 0.55))
    if a.beard == "full" or (a.beard == "stubble" and a.hair_curl > 0.5):  # moustache
        top = my - a.lip_thickness
        pen.polygon([[fx - w * 0.9, top - 0.01], [fx, top - 0.08], [fx + w * 0.9, top - 0.01], [fx, top - 0.03]],
                    _shade(hair, 0.85))

    # glasses
    if a.glasses != "none" and not n.glasses_off:
        r = a.eye_size * 1.45
        for side in (-1, 1):
            ex = fx + side * a.eye_spacing
            if a.glasses == "round":
                frame = _ellipse_points(ex, ey, r, r * 0.85, n=24)
            else:
                frame = np.array([[ex - r, ey - r * 0.7], [ex + r, ey - r * 0.7],
                                  [ex + r, ey + r * 0.75], [ex - r, ey + r * 0.75]])
            pen.line(np.concatenate([frame, frame[:1]]), 0.028, a.frame)
            pen.line([[ex + side * r, ey - 0.03], [side * a.face_width * 0.98, ey + 0.02]], 0.025, a.frame)
        pen.line([[fx - a.eye_spacing + r, ey - 0.02], [fx + a.eye_spacing - r, ey - 0.02]], 0.028, a.frame)

    if n.occluder is not None:
        kind, ox, oy, ow, oh, oangle, colour = n.occluder
        if kind == "hand":
            colour = _shade(skin, 1.05)
        corners = 4 if kind == "bar" else 24  # a 4-point "ellipse" is a rotated rectangle
        pen.ellipse(ox, oy, ow / 2, oh / 2, colour, angle=math.radians(oangle), n=corners)


# Half the output resolution is drawn, then upsampled: edges come out soft, and drawing is 4x cheaper.
_RENDER_DOWNSCALE = 2
# Head half-height as a share of the image height: FairFace crops are tight (padding 0.25), LFW is wider.
_HEAD_SHARE = {"fairface": 0.36, "lfw": 0.21}


@functools.lru_cache(maxsize=4)
def _grids(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in [-0.5, 0.5): x (columns) and y (rows)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    return xs, ys


def render_face(appearance: Appearance, nuisance: Nuisance, size: int, framing: str = "fairface") -> Image.Image:
    """Draw one face image of ``size`` x ``size`` pixels (``framing`` "fairface" or "lfw").

    Drawing, blur and photometry happen at half resolution; the result is upsampled bilinearly.
    """
    n = nuisance
    small = size // _RENDER_DOWNSCALE
    xs, ys = _grids(small)
    top, bottom = np.array(n.background[0], np.float32), np.array(n.background[1], np.float32)
    canvas = top + (bottom - top) * (ys[..., None] + 0.5)
    image = Image.fromarray(canvas.astype(np.uint8), "RGB")
    centre = (small * (0.5 + n.shift[0]), small * (0.47 + n.shift[1]))
    pen = _Pen(image, centre, small * _HEAD_SHARE[framing] * n.scale, n.roll)
    _draw_face(pen, appearance, n)
    if n.blur > 0.05:
        image = image.filter(ImageFilter.GaussianBlur(n.blur / _RENDER_DOWNSCALE))

    # photometry: directional light, exposure and colour cast, contrast, then sensor noise
    pixels = np.asarray(image, dtype=np.float32)
    light = 1 + 2 * n.light_strength * (xs * math.cos(n.light_angle) + ys * math.sin(n.light_angle))
    pixels = pixels * light[..., None] * (n.exposure * (1 + np.array(n.color_cast, np.float32)))
    mean = float(pixels.mean())
    pixels = (pixels - mean) * n.contrast + mean
    pixels += np.random.default_rng(n.noise_seed).standard_normal(pixels.shape, dtype=np.float32) * n.noise
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    return image.resize((size, size), Image.BILINEAR)


def encode_jpeg(image: Image.Image) -> bytes:
    """JPEG bytes at the fixed quality (baseline, no optimisation pass: the same bytes every time)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------- people
@dataclass(frozen=True)
class Person:
    """Who is drawn: demographic labels and the key of the person's random stream."""

    key: tuple[int, ...]
    group: str
    gender: str
    age: str


@dataclass(frozen=True)
class _Job:
    """One image to render: the person, the image's own stream key, and where its bytes go."""

    path: str  # relative to the dataset root
    person: Person
    image_key: tuple[int, ...]
    size: int
    framing: str
    nuisance: float = 1.0  # sample_nuisance's strength


def _render_job(job: _Job, seed: int) -> bytes:
    person = job.person
    photo_rng = _rng(seed, _STREAM_IMAGE, *job.image_key)
    appearance = sample_appearance(_rng(seed, _STREAM_IDENTITY, *person.key), person.group, person.gender, person.age,
                                   photo_rng)
    nuisance = sample_nuisance(photo_rng, job.nuisance)
    return encode_jpeg(render_face(appearance, nuisance, job.size, job.framing))


def _write_job(job: _Job, seed: int, folder: str) -> int:
    data = _render_job(job, seed)
    Path(folder, job.path).write_bytes(data)
    return len(data)


def _demographics(rng: np.random.Generator, count: int, age_shares, male_share: float):
    """Equally likely groups, then gender and age drawn independently of the group."""
    groups = [SYNTHETIC_GROUPS[i] for i in rng.integers(len(SYNTHETIC_GROUPS), size=count)]
    genders = [GENDERS[0] if male else GENDERS[1] for male in rng.random(count) < male_share]
    shares = np.asarray(age_shares, dtype=float)
    ages = [AGES[i] for i in rng.choice(len(AGES), size=count, p=shares / shares.sum())]
    return groups, genders, ages


# ----------------------------------------------------------------------------------------- FairFace
_SPLIT_CODE = {"train": 0, "val": 1}


def _balanced_subset(groups, genders, rng: np.random.Generator, share: float = 0.5) -> np.ndarray:
    """FairFace's ``service_test``: the same number of rows from every (group, gender) cell.

    Each cell contributes ``round(share * smallest cell)`` rows chosen at random, which marks about
    46 % of the rows, as in the real release.
    """
    cells = np.array([f"{g}|{s}" for g, s in zip(groups, genders)])
    names = [f"{g}|{s}" for g in SYNTHETIC_GROUPS for s in GENDERS]
    per_cell = round(share * min(int(np.sum(cells == name)) for name in names))
    marked = np.zeros(len(cells), dtype=bool)
    for name in names:
        rows = np.flatnonzero(cells == name)
        marked[rng.choice(rows, size=per_cell, replace=False)] = True
    return marked


def _plan_duplicates(rng: np.random.Generator, n_train: int, n_val: int) -> list[dict]:
    """Byte-identical copies, as in the real release: one within train, two across splits, one relabelled."""
    train = rng.choice(np.arange(1, n_train + 1), size=6, replace=False).tolist()
    val = rng.choice(np.arange(1, n_val + 1), size=2, replace=False).tolist()
    plan = [
        ("train", train[0], "train", train[1], "within train", None),
        ("train", train[2], "val", val[0], "across splits", None),
        ("train", train[3], "val", val[1], "across splits", None),
        ("train", train[4], "train", train[5], "within train, conflicting label", "race"),
    ]
    return [{"original": f"{s}/{i}.jpg", "copy": f"{cs}/{ci}.jpg", "kind": kind, "conflicting_label": field}
            for s, i, cs, ci, kind, field in plan]


def _plan_fairface(config: SyntheticConfig, seed: int):
    """FairFace-style label tables (one dict of columns per split), the render jobs, and the duplicates."""
    rng = _rng(seed, _STREAM_PLAN, _DATASET_CODE["fairface"])
    tables, jobs = {}, []
    for split, count in (("train", config.fairface_train), ("val", config.fairface_val)):
        groups, genders, ages = _demographics(rng, count, FAIRFACE_AGE_SHARES, FAIRFACE_MALE_SHARE)
        tables[split] = {"file": [f"{split}/{n}.jpg" for n in range(1, count + 1)],
                         "age": ages, "gender": genders, "race": groups}
    duplicates = _plan_duplicates(rng, config.fairface_train, config.fairface_val)
    copies = set()
    for duplicate in duplicates:
        (split, n), (copy_split, copy_n) = (_split_number(duplicate[k]) for k in ("original", "copy"))
        for column in ("age", "gender", "race"):
            tables[copy_split][column][copy_n - 1] = tables[split][column][n - 1]
        if duplicate["conflicting_label"] == "race":
            original = tables[split]["race"][n - 1]
            others = [g for g in SYNTHETIC_GROUPS if g != original]
            relabelled = others[int(rng.integers(len(others)))]
            tables[copy_split]["race"][copy_n - 1] = relabelled
            duplicate["labels"] = {"original": original, "copy": relabelled}
        copies.add(duplicate["copy"])
    for split, table in tables.items():
        table["service_test"] = _balanced_subset(table["race"], table["gender"], rng).tolist()
        rows = zip(table["file"], table["age"], table["gender"], table["race"])
        for n, (file, age, gender, group) in enumerate(rows, 1):
            if file in copies:
                continue
            key = (_DATASET_CODE["fairface"], _SPLIT_CODE[split], n)
            jobs.append(_Job(f"fairface/{file}", Person(key, group, gender, age), key, FAIRFACE_SIZE, "fairface"))
    return tables, jobs, duplicates


def _split_number(file: str) -> tuple[str, int]:
    split, name = file.split("/")
    return split, int(name.removesuffix(".jpg"))


def _write_fairface(folder: Path, tables: dict) -> None:
    for split, table in tables.items():
        lines = ["file,age,gender,race,service_test"]
        lines += [f"{f},{a},{g},{r},{s}" for f, a, g, r, s in
                  zip(table["file"], table["age"], table["gender"], table["race"], table["service_test"])]
        (folder / f"fairface_label_{split}.csv").write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------- LFW
_MALE_FIRST = (
    "Aaron", "Adrian", "Alan", "Alberto", "Anders", "Andre", "Arjun", "Bruno", "Carlos", "Chen", "Colin",
    "Daniel", "Dario", "David", "Dmitri", "Edgar", "Emeka", "Felipe", "Gareth", "Hamid", "Hiroshi", "Igor",
    "Ivan", "James", "Jorge", "Juan", "Kenji", "Kofi", "Lars", "Luis", "Marco", "Mehmet", "Miguel", "Nikolai",
    "Omar", "Pavel", "Pedro", "Rahul", "Ramon", "Rashid", "Robert", "Samuel", "Sergei", "Tariq", "Thomas",
    "Tomas", "Victor", "Walter", "Yusuf", "Zoran",
)
_FEMALE_FIRST = (
    "Ada", "Aisha", "Alicia", "Amara", "Ana", "Anita", "Beatriz", "Carmen", "Chloe", "Claudia", "Daria",
    "Elena", "Emma", "Fatima", "Gloria", "Hana", "Helen", "Ines", "Irina", "Jana", "Julia", "Karin", "Keiko",
    "Laila", "Laura", "Lena", "Lucia", "Maria", "Marta", "Mei", "Nadia", "Naomi", "Nina", "Olga", "Paula",
    "Priya", "Rosa", "Sara", "Silvia", "Sofia", "Sunita", "Tanya", "Teresa", "Ursula", "Vera", "Wanda",
    "Ximena", "Yara", "Yuki", "Zainab",
)
_LAST = (
    "Abbott", "Acosta", "Adeyemi", "Alvarez", "Andersen", "Arslan", "Baker", "Barros", "Becker", "Bianchi",
    "Bose", "Brennan", "Castillo", "Chandra", "Costa", "Cruz", "Dahl", "Demir", "Dubois", "Duarte", "Eriksen",
    "Esposito", "Farah", "Fischer", "Fonseca", "Garcia", "Gomez", "Haddad", "Hansen", "Hoffman", "Ibrahim",
    "Ivanova", "Jansen", "Jovanovic", "Kaplan", "Kato", "Khan", "Kim", "Kowalski", "Kuznetsov", "Lambert",
    "Larsen", "Lopez", "Mahmoud", "Mancini", "Mendes", "Meyer", "Mori", "Murphy", "Nakamura", "Novak",
    "Nunez", "Okafor", "Oliveira", "Ortiz", "Park", "Patel", "Petrov", "Quinn", "Ramos", "Reyes", "Rossi",
    "Saito", "Santos", "Schmidt", "Silva", "Singh", "Sokolov", "Suzuki", "Tan", "Torres", "Tran", "Ueda",
    "Vargas", "Varga", "Vogel", "Wagner", "Walsh", "Wang", "Weber", "Yilmaz", "Young", "Zhang", "Zimmer",
)


def _lfw_names(rng: np.random.Generator, genders: list[str]) -> list[str]:
    """Unique ``Firstname_Lastname`` names (sometimes with a middle name), first names matching gender."""
    names, taken = [], set()
    capacity = min(len(_MALE_FIRST), len(_FEMALE_FIRST)) * len(_LAST) // 2
    if len(genders) > capacity:
        raise ValueError(f"cannot name {len(genders)} LFW-style people uniquely (at most {capacity})")
    for gender in genders:
        firsts = _MALE_FIRST if gender == "Male" else _FEMALE_FIRST
        while True:
            parts = [firsts[rng.integers(len(firsts))], _LAST[rng.integers(len(_LAST))]]
            if rng.random() < 0.1:
                parts.insert(1, firsts[rng.integers(len(firsts))])
            name = "_".join(parts)
            if name not in taken and len(set(parts)) == len(parts):
                break
        taken.add(name)
        names.append(name)
    return names


def _image_counts(rng: np.random.Generator, config: SyntheticConfig) -> np.ndarray:
    """Long-tailed images per person: 32 % have one, 44 % six or more, a few celebrities many."""
    few = np.array(list(_FEW_IMAGES_SHARES))
    shares = np.array(list(_FEW_IMAGES_SHARES.values()))
    draws = rng.choice(len(few) + 1, size=config.lfw_identities, p=np.append(shares, 1 - shares.sum()))
    many = np.minimum(5 + rng.geometric(0.25, size=config.lfw_identities), _MANY_IMAGES_CAP)
    counts = np.where(draws < len(few), few[np.minimum(draws, len(few) - 1)], many)
    low, high = config.celebrity_images
    celebrities = rng.choice(config.lfw_identities, size=config.celebrities, replace=False)
    counts[celebrities] = rng.integers(low, high + 1, size=config.celebrities)
    return counts


def _stratified_order(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    """People sorted by image count (ties in random order), so consecutive blocks have similar counts."""
    return np.lexsort((rng.random(len(counts)), -counts))


def _split_view1(rng: np.random.Generator, counts: np.ndarray, share: float) -> np.ndarray:
    """True for DevTrain people: in every block of 10 people of similar image count, ``share`` go to DevTrain."""
    order = _stratified_order(rng, counts)
    dev_train = np.zeros(len(counts), dtype=bool)
    for start in range(0, len(order), 10):
        block = order[start:start + 10]
        dev_train[rng.permutation(block)[:round(share * len(block))]] = True
    return dev_train


def _assign_folds(rng: np.random.Generator, counts: np.ndarray, folds: int = 10) -> np.ndarray:
    """Fold of each person (identity-disjoint folds); each block of ``folds`` similar people spreads over all folds."""
    order = _stratified_order(rng, counts)
    fold = np.empty(len(counts), dtype=int)
    for start in range(0, len(order), folds):
        block = order[start:start + folds]
        fold[block] = rng.permutation(folds)[:len(block)]
    return fold


def _matched_pairs(rng: np.random.Generator, names, counts, people, size: int, where: str) -> list[tuple]:
    """``size`` distinct (name, i, j) pairs, i < j 1-based; every person with 2+ images equally likely."""
    candidates, weights = [], []
    for person in people:
        i, j = np.triu_indices(counts[person], k=1)
        if len(i) == 0:
            continue
        candidates += [(names[person], a + 1, b + 1) for a, b in zip(i, j)]
        weights += [1.0 / len(i)] * len(i)
    if len(candidates) < size:
        raise ValueError(f"{where} has only {len(candidates)} possible matched pairs but {size} are asked for; "
                         "lower the preset's pair count or raise lfw_identities")
    chosen = rng.choice(len(candidates), size=size, replace=False, p=np.array(weights) / np.sum(weights))
    return sorted(candidates[k] for k in chosen)


def _mismatched_pairs(rng: np.random.Generator, names, counts, people, size: int, where: str) -> list[tuple]:
    """``size`` (name1, i, name2, j) pairs of two different people (name1 < name2), people pairs distinct."""
    people = sorted(people, key=lambda p: names[p])
    first, second = np.triu_indices(len(people), k=1)
    if len(first) < size:
        raise ValueError(f"{where} has only {len(first)} pairs of different people but {size} are asked for; "
                         "lower the preset's pair count or raise lfw_identities")
    chosen = rng.choice(len(first), size=size, replace=False)
    pairs = []
    for k in chosen:
        a, b = people[first[k]], people[second[k]]
        pairs.append((names[a], int(rng.integers(counts[a])) + 1, names[b], int(rng.integers(counts[b])) + 1))
    return sorted(pairs)


def _pair_lines(matched, mismatched) -> list[str]:
    return ["\t".join(map(str, pair)) for pair in matched] + ["\t".join(map(str, pair)) for pair in mismatched]


def _plan_lfw(config: SyntheticConfig, seed: int):
    """LFW-style people, their images, View 1 split, View 2 folds and every protocol file's lines."""
    rng = _rng(seed, _STREAM_PLAN, _DATASET_CODE["lfw"])
    n = config.lfw_identities
    groups, genders, ages = _demographics(rng, n, LFW_AGE_SHARES, LFW_MALE_SHARE)
    names = _lfw_names(rng, genders)
    counts = _image_counts(rng, config)
    dev_train = _split_view1(rng, counts, config.dev_train_share)
    fold = _assign_folds(rng, counts)
    everyone = np.argsort(names)  # people in name order, as LFW lists them

    files = {}
    train_people = [p for p in everyone if dev_train[p]]
    test_people = [p for p in everyone if not dev_train[p]]
    for title, people, size in (("DevTrain", train_people, config.dev_train_pairs),
                                ("DevTest", test_people, config.dev_test_pairs)):
        matched = _matched_pairs(rng, names, counts, people, size, f"View 1 {title}")
        mismatched = _mismatched_pairs(rng, names, counts, people, size, f"View 1 {title}")
        files[f"pairs{title}.txt"] = [str(size)] + _pair_lines(matched, mismatched)
        files[f"people{title}.txt"] = [str(len(people))] + [f"{names[p]}\t{counts[p]}" for p in people]
    view2 = [f"10\t{config.pairs_per_fold}"]
    for k in range(10):
        people = [p for p in everyone if fold[p] == k]
        matched = _matched_pairs(rng, names, counts, people, config.pairs_per_fold, f"View 2 fold {k + 1}")
        mismatched = _mismatched_pairs(rng, names, counts, people, config.pairs_per_fold, f"View 2 fold {k + 1}")
        view2 += _pair_lines(matched, mismatched)
    files["pairs.txt"] = view2
    files["identities.csv"] = ["name,group,gender,age"] + [
        f"{names[p]},{groups[p]},{genders[p]},{ages[p]}" for p in everyone]

    jobs, images_by_gender = [], {"Male": [], "Female": []}
    for p in everyone:
        person = Person((_DATASET_CODE["lfw"], int(p)), groups[p], genders[p], ages[p])
        for k in range(1, counts[p] + 1):
            file = f"{names[p]}_{k:04d}.jpg"
            image_key = (_DATASET_CODE["lfw"], int(p), k)
            jobs.append(_Job(f"lfw/{LFW_IMAGE_FOLDER}/{names[p]}/{file}", person, image_key, LFW_SIZE, "lfw",
                             config.lfw_nuisance))
            images_by_gender[genders[p]].append(file)
    summary = {
        "lfw_identities": n,
        "lfw_images": int(counts.sum()),
        "lfw_identities_with_1_image": int(np.sum(counts == 1)),
        "lfw_max_images_per_identity": int(counts.max()),
        "view2_pairs_per_fold": config.pairs_per_fold,
        "dev_train_people": len(train_people),
        "dev_train_images": int(counts[train_people].sum()),
        "dev_train_people_with_6_or_more_images": int(np.sum(counts[train_people] >= 6)),
        "dev_test_people": len(test_people),
        "dev_test_images": int(counts[test_people].sum()),
        "dev_train_pairs": config.dev_train_pairs,
        "dev_test_pairs": config.dev_test_pairs,
    }
    return files, images_by_gender, jobs, summary, names


def _write_lfw(folder: Path, files: dict, images_by_gender: dict, names) -> None:
    for name in names:
        (folder / LFW_IMAGE_FOLDER / name).mkdir(parents=True)
    for file, lines in files.items():
        (folder / file).write_text("\n".join(lines) + "\n")
    (folder / "gender").mkdir()
    for gender, stem in (("Male", "male"), ("Female", "female")):
        # the third-party gender lists use Windows line endings
        (folder / "gender" / f"{stem}_names.txt").write_bytes(
            "".join(f"{file}\r\n" for file in sorted(images_by_gender[gender])).encode("ascii"))


# ------------------------------------------------------------------------------------------ writing
def _default_workers(jobs: int) -> int:
    return 1 if jobs < 1000 else max(1, min(2, os.cpu_count() or 1))


def _render_all(jobs: list[_Job], seed: int, folder: Path, workers: int, show_progress: bool) -> None:
    bar = progress(total=len(jobs), desc="synthetic faces", unit="img", disable=not show_progress)
    if workers <= 1:
        for job in jobs:
            _write_job(job, seed, str(folder))
            bar.update()
    else:
        # "spawn": safe from notebooks and threads; workers only need this module
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for _ in pool.map(_write_job, jobs, [seed] * len(jobs), [str(folder)] * len(jobs), chunksize=64):
                bar.update()
    bar.close()


def generate(root: str | Path | None = None, preset: str = "default", seed: int = 0, workers: int | None = None,
             show_progress: bool = False) -> Path:
    """Write the synthetic dataset of ``preset`` and ``seed`` under ``root`` and return ``root``.

    ``root`` defaults to ``lib.paths.synthetic_root(preset)``. The dataset is built in a hidden
    sibling folder and renamed into place at the end, so ``root`` is never half-written; an existing
    ``root`` is replaced only if it is a synthetic dataset (has ``metadata.json``) or empty.
    ``workers`` processes render the images (default: 2 for large presets, 1 otherwise); the bytes
    written do not depend on it.
    """
    config = get_config(preset)
    root = Path(root) if root is not None else paths.synthetic_root(preset)
    if root.exists() and any(root.iterdir()) and not (root / "metadata.json").is_file():
        raise ValueError(f"{root} exists and is not a synthetic dataset (no metadata.json); "
                         "refusing to replace it: choose another root or delete the folder yourself")
    tables, fairface_jobs, duplicates = _plan_fairface(config, seed)
    lfw_files, images_by_gender, lfw_jobs, lfw_summary, names = _plan_lfw(config, seed)
    jobs = fairface_jobs + lfw_jobs

    root.parent.mkdir(parents=True, exist_ok=True)
    building = root.with_name(f".{root.name}.building-{os.getpid()}")
    if building.exists():
        shutil.rmtree(building)
    try:
        for split in ("train", "val"):
            (building / "fairface" / split).mkdir(parents=True)
        (building / "lfw").mkdir()
        _write_fairface(building / "fairface", tables)
        _write_lfw(building / "lfw", lfw_files, images_by_gender, names)
        _render_all(jobs, seed, building, workers or _default_workers(len(jobs)), show_progress)
        for duplicate in duplicates:
            shutil.copyfile(building / "fairface" / duplicate["original"], building / "fairface" / duplicate["copy"])
        metadata = {
            "generator": "lib.synthetic",
            "generator_version": GENERATOR_VERSION,
            "preset": preset,
            "seed": seed,
            "config": asdict(config),
            "jpeg_quality": JPEG_QUALITY,
            "image_size": {"fairface": FAIRFACE_SIZE, "lfw": LFW_SIZE},
            "counts": {"fairface_train": config.fairface_train, "fairface_val": config.fairface_val,
                       "fairface_service_test": {s: int(sum(t["service_test"])) for s, t in tables.items()},
                       **lfw_summary},
            "groups": list(SYNTHETIC_GROUPS),
            "group_difficulty": GROUP_DIFFICULTY,
            "expected_order_easiest_to_hardest": list(EXPECTED_ORDER),
            "planted_disparity": DISPARITY_DESCRIPTION,
            "planted_duplicates": duplicates,
        }
        (building / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if root.exists():
        retired = root.with_name(f".{root.name}.replaced-{os.getpid()}")
        root.rename(retired)
        building.rename(root)
        shutil.rmtree(retired)
    else:
        building.rename(root)
    return root


def read_metadata(root: str | Path) -> dict | None:
    """The ``metadata.json`` of a synthetic dataset folder, or None when there is none (or it is unreadable)."""
    try:
        return json.loads((Path(root) / "metadata.json").read_text())
    except (OSError, ValueError):
        return None


def ensure_synthetic(preset: str = "default", seed: int = 0, root: str | Path | None = None,
                     workers: int | None = None, show_progress: bool = False) -> Path:
    """Return the synthetic dataset folder, generating it only when missing or made by other settings.

    An existing folder is reused when its ``metadata.json`` names the same preset, seed, generator
    version and preset sizes; otherwise it is regenerated (see :func:`generate`).
    """
    root = Path(root) if root is not None else paths.synthetic_root(preset)
    metadata = read_metadata(root)
    wanted = {"preset": preset, "seed": seed, "generator_version": GENERATOR_VERSION,
              "config": asdict(get_config(preset))}
    wanted = json.loads(json.dumps(wanted))  # as read back from JSON (tuples become lists)
    if metadata is not None and all(metadata.get(key) == value for key, value in wanted.items()):
        return root
    return generate(root, preset=preset, seed=seed, workers=workers, show_progress=show_progress)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lib.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=None, help="output folder (default: data/synthetic/<preset>)")
    parser.add_argument("--workers", type=int, default=None, help="render processes (output does not depend on it)")
    parser.add_argument("--force", action="store_true", help="regenerate even if a matching dataset exists")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    make = generate if args.force else ensure_synthetic
    root = make(root=args.root, preset=args.preset, seed=args.seed, workers=args.workers, show_progress=True)
    print(f"synthetic {args.preset!r} (seed {args.seed}) ready in {root} ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
