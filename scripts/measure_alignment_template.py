"""Measure ``lib.alignment.DLIB_TEMPLATE``: SphereFace's 112×96 template expressed in dlib's five landmarks.

SphereFace aligns MTCNN's five points (eye centres, nose tip, mouth corners); dlib's predictor finds four
eye corners and the base of the nose. For ``--images`` LFW deep-funneled photos (every k-th of the sorted
list, faces the detector found), the landmarks are mapped by the similarity that puts the midpoints of the
two eyes' corners exactly onto the paper's two eye centres; the mean position of each dlib point in the
paper's frame is printed, with the paper's eye centres substituted for the corner midpoints so that the
template keeps the paper's eye positions and scale exactly.

    python scripts/measure_alignment_template.py [--images 500]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from PIL import Image

from lib import paths, pretrained
from lib.alignment import PAPER_TEMPLATE, apply_transform, umeyama


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500)
    args = parser.parse_args(argv)
    files = sorted((paths.SHARED_LFW / "lfw-deepfunneled").glob("*/*.jpg"))
    if not files:
        print(f"no LFW images under {paths.SHARED_LFW}", file=sys.stderr)
        return 2
    encoder = pretrained.make_encoder("dlib")
    step = max(1, len(files) // args.images)
    mapped, missed = [], 0
    for path in files[::step][: args.images]:
        points, found_by = encoder.landmarks(np.asarray(Image.open(path).convert("RGB")))
        if found_by != "detector":
            missed += 1
            continue
        eyes = np.array([points[2:4].mean(axis=0), points[0:2].mean(axis=0)])  # image-left eye, image-right eye
        mapped.append(apply_transform(umeyama(eyes, PAPER_TEMPLATE[:2]), points))
    mean = np.mean(mapped, axis=0)
    std = np.std(mapped, axis=0)
    # keep the paper's eye centres exactly: shift each eye's corners so that their midpoint is the paper's
    mean[0:2] += PAPER_TEMPLATE[1] - mean[0:2].mean(axis=0)
    mean[2:4] += PAPER_TEMPLATE[0] - mean[2:4].mean(axis=0)
    print(f"{len(mapped)} faces found by the detector ({missed} missed, left out)")
    print("DLIB_TEMPLATE = np.array([" + ", ".join(f"[{x:.4f}, {y:.4f}]" for x, y in mean) + "])")
    print("std over faces (px): " + ", ".join(f"({x:.2f}, {y:.2f})" for x, y in std))
    return 0


if __name__ == "__main__":
    sys.exit(main())
