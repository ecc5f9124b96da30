"""A demographic audit of a face verifier in the style of NIST FRVT Part 3 (Grother, Ngan, Hanaoka,
*Face Recognition Vendor Test Part 3: Demographic Effects*, NISTIR 8280, 2019).

Every image is compared with every other image (all-vs-all, each unordered pair once). A pair of two
images of one identity is *genuine*, any other pair an *impostor*. One threshold is fixed for everyone
by a target **overall** false-match rate (FMR) over all impostor pairs, as FRVT does ("a threshold
fixed globally to give FMR = 1e-4 over all impostor comparisons"); then, per demographic group:

* FMR  = impostor pairs whose two images are both of the group and whose score passes the threshold,
  over all such pairs (FRVT's same-demographic impostors);
* FNMR = genuine pairs of the group whose score does not pass it.

Two comparators are supported (``comparator=``): ``"cosine"`` scores a pair by the cosine of its two
L2-normalized features (the trained heads' comparator, "match" when score > threshold), ``"euclidean"`` by
the Euclidean distance of the raw, unnormalized features (dlib's comparator, "match" when distance <
threshold). The distance is binned as the score ``-distance``, so the same machinery serves both; tables
report thresholds in the comparator's own unit (a cosine, or a distance).

Cross-group impostor pairs (two images of different groups) count towards the overall FMR that sets
the threshold and are reported on their own row (``cross-group``); FRVT reports them in its
off-diagonal heatmap cells. They are usually *less* similar than same-group impostors, so a threshold set
on all impostors is lower than one set on same-group impostors only, which raises the same-group FMRs
above the target. Pairs that touch an image without a group label (``unknown``) count towards the
overall rates only.

How it stays cheap (LFW: 13,233 images, 242,257 genuine and 87,307,271 impostor pairs):

* scores are computed in float32 row blocks of the upper triangle (never an N x N matrix) and counted
  into fixed fine bins (2^18 bins on [-1, 1], width 7.6e-6) per (pair category, genuine/impostor): no sort of
  the 87 M impostor scores. Thresholds are bin edges; "match" means score > threshold, as in
  :mod:`lib.verification`;
* for the bootstrap over identities (resample identities with replacement; a resampled copy of a person
  brings its images, its genuine pairs and its impostor pairs with every other drawn person), a replicate
  only needs (1) every genuine pair's bin and identity, (2) the impostor pairs above the lowest threshold
  any replicate can reach (kept while scoring: the top ``tail_fmr`` fraction of impostors), and (3) the
  number of impostor pairs per category, which is a quadratic form in the identity weights computed from
  per-identity image counts. A replicate is then weighted sums over these arrays, not a re-scoring.
  Identity ``a`` drawn ``w_a`` times weights its genuine pairs by ``w_a`` and an impostor pair of people
  ``a`` and ``b`` by ``w_a w_b``; two copies of one person form no pairs with each other.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lib.tables import write_csv, write_text

__all__ = [
    "UNKNOWN",
    "CROSS_GROUP",
    "COMPARATORS",
    "ScoreBins",
    "euclidean_bins",
    "AllPairsCounts",
    "count_all_pairs",
    "error_rates",
    "identity_weights",
    "bootstrap",
    "summarize",
    "rate_ratio",
    "det_curves",
    "det_plot",
    "describe",
    "Audit",
    "audit",
    "DEVTEST_EMBEDDINGS_FILE",
    "read_model_embeddings",
    "repeated_images",
    "ModelAudits",
    "audit_models",
]

UNKNOWN = "unknown"  # group of an image without a label, and of every pair that touches one
CROSS_GROUP = "cross-group"  # pairs whose two images have different (known) groups
DEFAULT_BIN_COUNT = 2**18
# How a pair is scored: the cosine of two L2-normalized features (match: score > threshold), or the
# Euclidean distance of the raw features (match: distance < threshold; binned as the score -distance).
COMPARATORS = {"cosine": "cosine of the L2-normalized features (match: cosine > threshold)",
               "euclidean": "Euclidean distance of the raw features (match: distance < threshold)"}


# --------------------------------------------------------------------------------------------------
# Bins
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoreBins:
    """``count`` equal bins on ``[low, high]``; bin ``k`` holds scores in ``(edges[k], edges[k+1]]``.

    With that convention "score > edges[k]" is exactly "bin >= k", so a threshold at a bin edge splits
    the bins without ambiguity. Scores at or below ``low`` fall in bin 0, above ``high`` in the last.
    """

    count: int = DEFAULT_BIN_COUNT
    low: float = -1.0
    high: float = 1.0

    def __post_init__(self):
        if self.count < 2 or not self.high > self.low:
            raise ValueError(f"need count >= 2 and high > low, got {self}")

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.low, self.high, self.count + 1)

    def index_(self, scores: np.ndarray) -> np.ndarray:
        """Bin of each score, in place on a float32 array (used on the large score blocks)."""
        scores -= np.float32(self.low)
        scores *= np.float32(self.count / (self.high - self.low))
        np.ceil(scores, out=scores)
        index = scores.astype(np.int32)
        index -= 1
        np.clip(index, 0, self.count - 1, out=index)
        return index

    def index(self, scores) -> np.ndarray:
        """Bin of each score (a copy; float32 arithmetic, as for the score blocks)."""
        return self.index_(np.array(scores, dtype=np.float32, copy=True))

    def edge_index(self, score: float) -> int:
        """The ``k`` with ``edges[k] == score`` (to 1e-6 of a bin width), else ValueError: a fixed threshold
        must be a bin edge, or "score > threshold" would not split the bins exactly."""
        width = (self.high - self.low) / self.count
        k = int(round((score - self.low) / width))
        if not 0 <= k <= self.count or abs(self.low + k * width - score) > 1e-6 * width:
            raise ValueError(f"score {score} is not an edge of {self} (edges every {width:.3g}): choose bins with it "
                             f"as an edge, e.g. frvt.euclidean_bins() for distances in steps of 0.01")
        return k


def euclidean_bins(max_distance: float = 2.0, count: int = DEFAULT_BIN_COUNT) -> ScoreBins:
    """Bins for the score ``-distance`` on ``[-L, 0]``, ``L`` = 0.01 x 2^j >= ``max_distance``: with ``count`` a
    multiple of 2^j (2^18 and distances up to 2.56: j = 8), every multiple of 0.01, such as dlib's 0.6, is a bin
    edge (:meth:`ScoreBins.edge_index` checks it)."""
    if not max_distance > 0:
        raise ValueError(f"max_distance must be > 0, got {max_distance}")
    low = 0.01 * 2.0 ** math.ceil(math.log2(max_distance / 0.01))
    return ScoreBins(count, -low, 0.0)


# --------------------------------------------------------------------------------------------------
# Counting all pairs
# --------------------------------------------------------------------------------------------------
@dataclass
class AllPairsCounts:
    """Counts of all-vs-all scores, and what a bootstrap over identities needs.

    ``categories`` are the known groups (same-group pairs), then ``cross-group``, then ``unknown``.
    ``genuine`` / ``impostor``: int64 (category, bin) counts. ``images_per_identity``: (identity,
    group + unknown) image counts. ``genuine_*``: every genuine pair (bin, identity code, category).
    ``tail_*``: every impostor pair with bin >= ``tail_start`` (bin, both identity codes, category),
    sorted by bin, highest first.
    """

    bins: ScoreBins
    groups: tuple
    identities: np.ndarray
    genuine: np.ndarray
    impostor: np.ndarray
    images_per_identity: np.ndarray
    genuine_bin: np.ndarray
    genuine_identity: np.ndarray
    genuine_category: np.ndarray
    tail_start: int
    tail_bin: np.ndarray
    tail_identity_a: np.ndarray
    tail_identity_b: np.ndarray
    tail_category: np.ndarray
    n_images: int
    seconds: float
    block_rows: int
    notes: dict = field(default_factory=dict)
    comparator: str = "cosine"

    def threshold(self, edge):
        """A bin edge (score) in the comparator's unit: the cosine, or the distance (``-score``)."""
        return -edge if self.comparator == "euclidean" else edge

    def threshold_bin(self, threshold: float) -> int:
        """The bin edge index of a fixed threshold in the comparator's unit (it must be a bin edge)."""
        return self.bins.edge_index(-threshold if self.comparator == "euclidean" else threshold)

    @property
    def categories(self) -> tuple:
        return (*self.groups, CROSS_GROUP, UNKNOWN)

    @property
    def n_genuine(self) -> int:
        return int(self.genuine.sum())

    @property
    def n_impostor(self) -> int:
        return int(self.impostor.sum())

    @property
    def pairs_per_second(self) -> float:
        return (self.n_genuine + self.n_impostor) / self.seconds if self.seconds > 0 else float("nan")

    @property
    def tail_fmr(self) -> float:
        """Fraction of all impostor pairs kept in the tail (the highest FMR a replicate can reach)."""
        return len(self.tail_bin) / max(self.n_impostor, 1)

    def summary(self) -> dict:
        return {
            "images": self.n_images,
            "identities": len(self.identities),
            "genuine pairs": self.n_genuine,
            "impostor pairs": self.n_impostor,
            "seconds": round(self.seconds, 2),
            "pairs/s": self.pairs_per_second,
            "impostor pairs kept for the bootstrap": len(self.tail_bin),
        }


def _group_codes(groups, order) -> tuple[tuple, np.ndarray]:
    """(known group names, code per image); unknown (None, NaN, "unknown") gets code len(names)."""
    values = pd.Series(np.asarray(groups, dtype=object))
    missing = values.isna() | (values == UNKNOWN)
    present = sorted(set(values[~missing]), key=str)
    if order is None:
        names = tuple(present)
    else:
        extra = [name for name in present if name not in order]
        if extra:
            raise ValueError(f"groups {extra[:5]} are not in `order` {list(order)}; list every group or leave order=None")
        names = tuple(name for name in order if name in set(present))
    if not names:
        raise ValueError("no image has a known group: pass group labels (None or 'unknown' marks a missing one)")
    codes = pd.Index(names).get_indexer(values.where(~missing, None))
    codes = np.where(missing, len(names), codes).astype(np.int32)
    return names, codes


def _category_matrix(n_groups: int) -> np.ndarray:
    """Category of a pair from its two image-group codes (the last code is unknown)."""
    cross, unknown = n_groups, n_groups + 1
    matrix = np.full((n_groups + 1, n_groups + 1), cross, dtype=np.int32)
    np.fill_diagonal(matrix, np.arange(n_groups + 1))
    matrix[n_groups, :] = unknown
    matrix[:, n_groups] = unknown
    return matrix


def _check_comparator(comparator: str) -> str:
    if comparator not in COMPARATORS:
        raise ValueError(f"comparator must be one of {sorted(COMPARATORS)}, got {comparator!r}")
    return comparator


def _as_features(features, comparator: str = "cosine") -> np.ndarray:
    features = np.asarray(features)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features must be (N >= 2, D), got shape {features.shape}")
    features = features.astype(np.float32, copy=False)
    if not np.all(np.isfinite(features)):
        raise ValueError("features contain NaN or infinite values")
    if _check_comparator(comparator) == "euclidean":
        return np.ascontiguousarray(features)  # raw descriptors, as the encoder's users compare them
    norms = np.linalg.norm(features, axis=1)
    if np.any(np.abs(norms - 1) > 1e-3):
        worst = int(np.argmax(np.abs(norms - 1)))
        raise ValueError(f"features must be L2-normalized for comparator='cosine': row {worst} has norm "
                         f"{norms[worst]:.4f} (normalize them, or audit raw descriptors with comparator='euclidean')")
    return np.ascontiguousarray(features)


def repeated_images(images) -> dict:
    """``{name: [rows]}`` of every image name that occurs in more than one row of ``images``."""
    names, inverse, counts = np.unique(np.asarray(images).astype(str), return_inverse=True, return_counts=True)
    return {str(names[code]): np.flatnonzero(inverse == code).tolist() for code in np.flatnonzero(counts > 1)}


def _check_distinct_images(images, n: int) -> None:
    """Refuse an image listed twice: with itself it would make a genuine pair of score 1, and with every
    other image a second, identical set of pairs."""
    if images is None:
        return
    if np.asarray(images).shape != (n,):
        raise ValueError(f"images needs one name per feature row ({n}), got shape {np.asarray(images).shape}")
    repeated = repeated_images(images)
    if repeated:
        shown = "; ".join(f"{name} in rows {rows}" for name, rows in list(repeated.items())[:5])
        raise ValueError(f"{len(repeated)} image(s) occur in more than one row ({shown}): an image paired with "
                         f"itself is no genuine pair. Keep one row per image")


class _TopImpostors:
    """The impostor pairs in the highest bins, at least ``keep`` of them (whole bins are kept)."""

    def __init__(self, keep: int, bin_count: int):
        self.keep, self.bin_count, self.start = keep, bin_count, 0
        self.parts: list[tuple] = []
        self.size = 0

    def add(self, bins, rows, cols, categories):
        self.parts.append((bins, rows, cols, categories))
        self.size += len(bins)
        if self.size > 2 * self.keep:
            self.prune()

    def prune(self):
        if not self.parts:
            return
        bins, rows, cols, categories = (np.concatenate(column) for column in zip(*self.parts))
        above = np.cumsum(np.bincount(bins, minlength=self.bin_count)[::-1])[::-1]  # pairs with bin >= k
        # The highest bin that still keeps `keep` pairs above it; bins below it can never matter.
        self.start = max(self.start, int(np.flatnonzero(above >= self.keep)[-1]) if above[0] >= self.keep else 0)
        kept = bins >= self.start
        self.parts = [(bins[kept], rows[kept], cols[kept], categories[kept])]
        self.size = int(kept.sum())

    def result(self):
        self.prune()
        if not self.parts:
            empty = np.zeros(0, np.int32)
            return self.start, empty, empty, empty, empty
        bins, rows, cols, categories = self.parts[0]
        order = np.argsort(-bins, kind="stable")
        return self.start, bins[order], rows[order], cols[order], categories[order]


def count_all_pairs(
    features,
    identities,
    groups,
    *,
    order=None,
    bins: ScoreBins = ScoreBins(),
    tail_fmr: float = 4e-3,
    min_tail_pairs: int = 0,
    block_rows: int = 1024,
    progress: bool = False,
    comparator: str = "cosine",
) -> AllPairsCounts:
    """Score every unordered pair of ``features`` and count the scores into bins.

    ``comparator="cosine"`` (rows must be L2-normalized): the score is the cosine. ``comparator="euclidean"``
    (raw rows): the score is ``-distance``, binned by ``bins`` (which must lie in ``[-inf, 0]``; default
    :func:`euclidean_bins` covering the largest possible distance, twice the largest norm).

    ``identities``: person of each image (any hashable labels); ``groups``: demographic group of each image
    (None, NaN or ``"unknown"`` when not known); ``order``: group order in the tables. ``tail_fmr``: keep
    the highest-scoring impostor pairs up to this fraction of all impostors (and at least
    ``min_tail_pairs`` of them) for :func:`bootstrap`, which can then use target FMRs up to about
    ``tail_fmr / 2`` (it checks every replicate). ``block_rows``
    rows are scored at a time: memory about 10 x block_rows x N bytes.
    """
    features = _as_features(features, comparator)
    n = len(features)
    squared_norms = None
    if comparator == "euclidean":
        squared_norms = np.einsum("nd,nd->n", features, features)
        if bins == ScoreBins():  # the cosine default: replace by bins that cover every distance
            bins = euclidean_bins(2 * float(np.sqrt(squared_norms.max())) + 1e-6, bins.count)
        elif bins.high > 0:
            raise ValueError(f"Euclidean scores are -distance <= 0: bins must end at 0 or below, got {bins}")
    identities = np.asarray(identities)
    if identities.shape != (n,) or np.asarray(groups).shape != (n,):
        raise ValueError(f"identities and groups need one entry per feature row ({n}), "
                         f"got {identities.shape} and {np.asarray(groups).shape}")
    if not 0 < tail_fmr <= 1:
        raise ValueError(f"tail_fmr must be in (0, 1], got {tail_fmr}")
    names, group_code = _group_codes(groups, order)
    identity_names, identity_code = np.unique(identities, return_inverse=True)
    identity_code = identity_code.astype(np.int32)
    n_groups = len(names)
    n_categories = n_groups + 2
    category_of = _category_matrix(n_groups)

    images_per_identity = np.zeros((len(identity_names), n_groups + 1), dtype=np.int64)
    np.add.at(images_per_identity, (identity_code, group_code), 1)
    per_identity = images_per_identity.sum(axis=1)
    n_genuine_expected = int((per_identity * (per_identity - 1) // 2).sum())
    n_impostor_expected = n * (n - 1) // 2 - n_genuine_expected
    tail = _TopImpostors(max(1, min_tail_pairs, math.ceil(tail_fmr * n_impostor_expected)), bins.count)

    histogram = np.zeros(n_categories * 2 * bins.count, dtype=np.int64)  # (category, genuine?, bin)
    genuine_parts = []
    started = time.perf_counter()
    starts = range(0, n - 1, block_rows)
    if progress:
        from lib.progress import progress as progress_bar

        starts = progress_bar(starts, desc="all-vs-all scoring", unit="block")
    for start in starts:
        stop = min(start + block_rows, n)
        rows = stop - start
        scores = features[start:stop] @ features[start:].T  # float32 (rows, n - start)
        if squared_norms is not None:  # -|a - b| = -sqrt(|a|^2 + |b|^2 - 2 a.b), in place
            scores *= np.float32(-2)
            scores += squared_norms[start:stop, None]
            scores += squared_norms[None, start:]
            np.maximum(scores, 0, out=scores)
            np.sqrt(scores, out=scores)
            np.negative(scores, out=scores)
        bin_index = bins.index_(scores)
        del scores
        category = category_of[group_code[start:stop, None], group_code[None, start:]]
        genuine = identity_code[start:stop, None] == identity_code[None, start:]
        code = (category * 2 + genuine) * bins.count + bin_index
        upper = np.ones(code.shape, dtype=bool)
        upper[:, :rows] = np.triu(np.ones((rows, rows), dtype=bool), k=1)  # each pair once, no self-pairs
        histogram += np.bincount(code[upper], minlength=histogram.size)

        row, col = np.nonzero(genuine & upper)
        genuine_parts.append((bin_index[row, col], identity_code[start + row], category[row, col]))
        candidates = upper & ~genuine & (bin_index >= tail.start)
        row, col = np.nonzero(candidates)
        tail.add(bin_index[row, col], identity_code[start + row], identity_code[start + col], category[row, col])
    seconds = time.perf_counter() - started

    histogram = histogram.reshape(n_categories, 2, bins.count)
    tail_start, tail_bin, tail_a, tail_b, tail_category = tail.result()
    genuine_bin, genuine_identity, genuine_category = (np.concatenate(column) for column in zip(*genuine_parts))
    counts = AllPairsCounts(
        bins=bins,
        groups=names,
        identities=identity_names,
        genuine=histogram[:, 1, :],
        impostor=histogram[:, 0, :],
        images_per_identity=images_per_identity,
        genuine_bin=genuine_bin.astype(np.int32),
        genuine_identity=genuine_identity.astype(np.int32),
        genuine_category=genuine_category.astype(np.int8),
        tail_start=tail_start,
        tail_bin=tail_bin.astype(np.int32),
        tail_identity_a=tail_a.astype(np.int32),
        tail_identity_b=tail_b.astype(np.int32),
        tail_category=tail_category.astype(np.int8),
        n_images=n,
        seconds=seconds,
        block_rows=block_rows,
        comparator=comparator,
    )
    if counts.n_genuine != n_genuine_expected or counts.n_impostor != n_impostor_expected:
        raise AssertionError(f"counted {counts.n_genuine} genuine / {counts.n_impostor} impostor pairs, expected "
                             f"{n_genuine_expected} / {n_impostor_expected}")
    return counts


# --------------------------------------------------------------------------------------------------
# Error rates at thresholds fixed by an overall FMR
# --------------------------------------------------------------------------------------------------
RATE_COLUMNS = ["target_fmr", "threshold", "group", "n_genuine", "false_non_matches", "fnmr",
                "n_impostor", "false_matches", "fmr"]


def _check_targets(target_fmrs) -> tuple[float, ...]:
    targets = tuple(float(t) for t in np.atleast_1d(target_fmrs))
    if not targets or any(not 0 <= t < 1 for t in targets):
        raise ValueError(f"target FMRs must be in [0, 1), got {targets}")
    return targets


def _threshold_bin(above: np.ndarray, total: float, target: float) -> int:
    """Smallest k with (impostors in bins >= k) <= target * total; ``above[k]`` is non-increasing and
    ends with 0, so such a k exists. With integer counts this allows floor(target * total) false matches,
    as :func:`lib.fairness.threshold_at_far`."""
    allowed = target * total * (1 + 1e-12)
    return int(np.searchsorted(-above, -allowed, side="left"))


def _rows(target, threshold, names, n_genuine, false_non_matches, n_impostor, false_matches) -> list[dict]:
    rows = []
    for c, name in enumerate(names):
        rows.append({
            "target_fmr": target, "threshold": threshold, "group": name,
            "n_genuine": n_genuine[c], "false_non_matches": false_non_matches[c],
            "fnmr": false_non_matches[c] / n_genuine[c] if n_genuine[c] > 0 else np.nan,
            "n_impostor": n_impostor[c], "false_matches": false_matches[c],
            "fmr": false_matches[c] / n_impostor[c] if n_impostor[c] > 0 else np.nan,
        })
    return rows


def _with_overall(names, n_genuine, fnm, n_impostor, fm):
    """Append an ``overall`` entry (sums over every category) to the per-category arrays."""
    return ((*names, "overall"), np.append(n_genuine, n_genuine.sum()), np.append(fnm, fnm.sum()),
            np.append(n_impostor, n_impostor.sum()), np.append(fm, fm.sum()))


def error_rates(counts: AllPairsCounts, target_fmrs=(1e-3, 1e-4, 1e-5)) -> pd.DataFrame:
    """Per target overall FMR: the threshold (a bin edge) and FMR/FNMR of every pair category and overall.

    Computed from the binned counts alone. Columns: ``target_fmr, threshold, group, n_genuine,
    false_non_matches, fnmr, n_impostor, false_matches, fmr``; rows per target: the groups, ``cross-group``,
    ``unknown`` and ``overall``.
    """
    edges = counts.bins.edges
    impostor_above = np.cumsum(counts.impostor[:, ::-1], axis=1)[:, ::-1]  # (category, k): bins >= k
    impostor_above = np.concatenate([impostor_above, np.zeros((len(impostor_above), 1), np.int64)], axis=1)
    genuine_below = np.concatenate([np.zeros((len(counts.genuine), 1), np.int64),
                                    np.cumsum(counts.genuine, axis=1)], axis=1)  # (category, k): bins < k
    n_genuine, n_impostor = counts.genuine.sum(axis=1), counts.impostor.sum(axis=1)
    rows = []
    for target in _check_targets(target_fmrs):
        k = _threshold_bin(impostor_above.sum(axis=0), n_impostor.sum(), target)
        rows += _rows(target, counts.threshold(edges[k]), *_with_overall(
            counts.categories, n_genuine, genuine_below[:, k], n_impostor, impostor_above[:, k]))
    return pd.DataFrame(rows, columns=RATE_COLUMNS)


FIXED_RATE_COLUMNS = [column for column in RATE_COLUMNS if column != "target_fmr"]


def _check_thresholds(thresholds) -> tuple[float, ...]:
    thresholds = tuple(float(t) for t in np.atleast_1d(thresholds))
    if not all(np.isfinite(thresholds)):
        raise ValueError(f"fixed thresholds must be finite numbers, got {thresholds}")
    return thresholds


def error_rates_at(counts: AllPairsCounts, thresholds) -> pd.DataFrame:
    """FMR and FNMR of every pair category and overall at fixed ``thresholds`` in the comparator's unit (e.g.
    dlib's documented distance 0.6); each must be a bin edge (:meth:`ScoreBins.edge_index`). Columns as
    :func:`error_rates` without ``target_fmr``."""
    n_genuine, n_impostor = counts.genuine.sum(axis=1), counts.impostor.sum(axis=1)
    rows = []
    for threshold in _check_thresholds(thresholds):
        k = counts.threshold_bin(threshold)
        rows += _rows(np.nan, threshold, *_with_overall(counts.categories, n_genuine, counts.genuine[:, :k].sum(axis=1),
                                                        n_impostor, counts.impostor[:, k:].sum(axis=1)))
    return pd.DataFrame(rows, columns=RATE_COLUMNS)[FIXED_RATE_COLUMNS]


# --------------------------------------------------------------------------------------------------
# Bootstrap over identities
# --------------------------------------------------------------------------------------------------
class TailTooShort(ValueError):
    """A replicate's threshold falls below the impostor pairs kept while counting."""


def _check_n_boot(n_boot) -> None:
    """The number of bootstrap replicates: a whole number >= 1 (with none, every interval would be empty
    and the summaries would fail far from the cause)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot is the number of identity-bootstrap replicates and must be a whole number >= 1 "
                         f"(1000 is usual), got {n_boot!r}")


def identity_weights(n_identities: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n_identities) int32: how often each identity is drawn when n_identities are drawn with
    replacement. Pass the same matrix to :func:`bootstrap` for several models on the same images to get
    replicates that resample the same people (e.g. to average over training seeds)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_identities, np.full(n_identities, 1 / n_identities), size=n_boot).astype(np.int32)


class _Replicator:
    """Error rates of one bootstrap replicate (identity weights ``w``) from the stored pairs of ``counts``."""

    def __init__(self, counts: AllPairsCounts):
        self.counts = counts
        self.n_categories = len(counts.categories)
        self.n_groups = len(counts.groups)
        self.tail_complete = len(counts.tail_bin) == counts.n_impostor  # every impostor pair is kept
        # Only the occupied bins of the kept impostors matter: index them 0..U-1 (ascending).
        self.occupied = np.unique(counts.tail_bin)
        local = np.searchsorted(self.occupied, counts.tail_bin)
        self.tail_offset = counts.tail_category.astype(np.int64) * len(self.occupied) + local
        # Genuine pairs per category, sorted by bin, so "bins < k" is a prefix.
        self.genuine = []
        for c in range(self.n_categories):
            members = np.flatnonzero(counts.genuine_category == c)
            members = members[np.argsort(counts.genuine_bin[members], kind="stable")]
            self.genuine.append((counts.genuine_bin[members], counts.genuine_identity[members]))
        n = counts.images_per_identity.astype(np.float64)
        self.images = n
        self.genuine_per_identity = self._genuine_per_identity(n)

    def _genuine_per_identity(self, n: np.ndarray) -> np.ndarray:
        """(identity, category) genuine pair counts from the image counts."""
        g = self.n_groups
        table = np.zeros((len(n), self.n_categories))
        table[:, :g] = n[:, :g] * (n[:, :g] - 1) / 2
        known = n[:, :g].sum(axis=1)
        table[:, g] = (known**2 - (n[:, :g] ** 2).sum(axis=1)) / 2  # pairs across two known groups
        total = n.sum(axis=1)
        table[:, g + 1] = total * (total - 1) / 2 - table[:, : g + 1].sum(axis=1)
        return table

    def impostor_totals(self, w: np.ndarray) -> np.ndarray:
        """Impostor pairs per category when identity a is drawn w[a] times (pairs of copies excluded)."""
        g = self.n_groups
        s = w @ self.images  # images per image-group
        m = self.images.T @ (w[:, None] ** 2 * self.images)  # sum_a w_a^2 n_ag n_ah
        between = np.outer(s, s) - m  # ordered pairs of images of different drawn people, by group pair
        totals = np.zeros(self.n_categories)
        totals[:g] = np.diag(between)[:g] / 2
        totals[g] = (between[:g, :g].sum() - np.trace(between[:g, :g])) / 2
        totals[g + 1] = between.sum() / 2 - totals[: g + 1].sum()
        return totals

    def rates(self, w: np.ndarray, targets) -> list[dict]:
        counts = self.counts
        w = np.asarray(w, dtype=np.float64)
        n_impostor = self.impostor_totals(w)
        n_genuine = w @ self.genuine_per_identity
        pair_weight = w[counts.tail_identity_a] * w[counts.tail_identity_b]
        occupied = len(self.occupied)
        per_bin = np.bincount(self.tail_offset, weights=pair_weight,
                              minlength=self.n_categories * occupied).reshape(self.n_categories, -1)
        above = np.cumsum(per_bin[:, ::-1], axis=1)[:, ::-1]  # [:, j]: pairs in occupied bins >= the j-th
        above = np.concatenate([above, np.zeros((self.n_categories, 1))], axis=1)
        overall_above = above.sum(axis=0)
        edges = counts.bins.edges
        rows = []
        for target in targets:
            j = _threshold_bin(overall_above, n_impostor.sum(), target)
            if j == 0 and not self.tail_complete:  # impostor pairs below the kept ones could pass
                raise TailTooShort(
                    f"target FMR {target:g} needs impostor pairs below the kept tail (the top "
                    f"{counts.tail_fmr:.2g} of impostors): recount with a larger tail_fmr (about 4 x the target)"
                )
            # The lowest bin edge that lets exactly these pairs pass: just above the last occupied bin below.
            k = int(self.occupied[j - 1]) + 1 if j > 0 else 0
            false_non_matches = np.array([w[identity[: np.searchsorted(bin_, k, side="left")]].sum()
                                          for bin_, identity in self.genuine])
            rows += _rows(target, counts.threshold(edges[k]), *_with_overall(
                counts.categories, n_genuine, false_non_matches, n_impostor, above[:, j]))
        return rows

    def rates_at_bins(self, w: np.ndarray, bins, genuine_weights: np.ndarray | None = None) -> list[dict]:
        """Error rates at fixed threshold bins ``bins`` (match: bin >= k) with identity weights ``w``;
        ``genuine_weights`` (per identity) weight the genuine pairs instead of ``w`` (e.g. a cap per identity)."""
        counts = self.counts
        w = np.asarray(w, dtype=np.float64)
        g = w if genuine_weights is None else np.asarray(genuine_weights, dtype=np.float64)
        n_impostor = self.impostor_totals(w)
        n_genuine = g @ self.genuine_per_identity
        pair_weight = w[counts.tail_identity_a] * w[counts.tail_identity_b]
        rows = []
        for k in bins:
            if k < counts.tail_start and not self.tail_complete:
                raise TailTooShort(f"a threshold at bin {k} needs impostor pairs below the kept tail (from bin "
                                   f"{counts.tail_start}): recount with a larger tail_fmr")
            kept = counts.tail_bin >= k
            false_matches = np.bincount(counts.tail_category[kept], weights=pair_weight[kept],
                                        minlength=self.n_categories)
            false_non_matches = np.array([g[identity[: np.searchsorted(bin_, k, side="left")]].sum()
                                          for bin_, identity in self.genuine])
            rows += _rows(np.nan, counts.threshold(counts.bins.edges[k]), *_with_overall(
                counts.categories, n_genuine, false_non_matches, n_impostor, false_matches))
        return rows


def _replicate_weights(counts: AllPairsCounts, weights, n_boot: int, seed: int) -> np.ndarray:
    """The identity-bootstrap weights (n_boot, identities): ``weights`` checked, or drawn when None."""
    if weights is None:
        weights = identity_weights(len(counts.identities), n_boot, seed)
    weights = np.asarray(weights)
    if weights.ndim != 2 or weights.shape[1] != len(counts.identities):
        raise ValueError(f"weights must be (n_boot, {len(counts.identities)} identities), got {weights.shape}")
    return weights


def bootstrap(counts: AllPairsCounts, target_fmrs=(1e-3, 1e-4, 1e-5), *, n_boot: int = 1000, seed: int = 0,
              weights: np.ndarray | None = None) -> pd.DataFrame:
    """Error rates of ``n_boot`` replicates that resample identities with replacement.

    Each replicate recomputes the threshold at each target overall FMR (the threshold is part of what
    varies). ``weights`` (from :func:`identity_weights`, one column per identity of ``counts.identities``)
    overrides ``n_boot``/``seed``. Returns the columns of :func:`error_rates` plus ``replicate``; counts are
    floats (weighted).
    """
    targets = _check_targets(target_fmrs)
    weights = _replicate_weights(counts, weights, n_boot, seed)
    replicator = _Replicator(counts)
    rows = [{"replicate": r, **row} for r, w in enumerate(weights) for row in replicator.rates(w, targets)]
    return pd.DataFrame(rows, columns=["replicate", *RATE_COLUMNS])


def bootstrap_at(counts: AllPairsCounts, thresholds, *, n_boot: int = 1000, seed: int = 0,
                 weights: np.ndarray | None = None) -> pd.DataFrame:
    """Error rates of ``n_boot`` identity-bootstrap replicates at fixed ``thresholds`` (comparator units, bin
    edges), as :func:`bootstrap` does at thresholds fixed by target FMRs; here the threshold does not vary.
    Columns: ``replicate`` and those of :func:`error_rates_at`."""
    thresholds = _check_thresholds(thresholds)
    weights = _replicate_weights(counts, weights, n_boot, seed)
    replicator = _Replicator(counts)
    bins = [counts.threshold_bin(t) for t in thresholds]
    rows = []
    for r, w in enumerate(weights):
        rates = replicator.rates_at_bins(w, bins)
        for threshold, row in zip(np.repeat(thresholds, len(counts.categories) + 1), rates):
            rows.append({"replicate": r, **row, "threshold": threshold})  # the threshold asked for, not its float edge
    return pd.DataFrame(rows, columns=["replicate", *RATE_COLUMNS])[["replicate", *FIXED_RATE_COLUMNS]]


def rate_ratio(table: pd.DataFrame, numerator, denominator, rate: str = "fmr", key: str = "target_fmr") -> pd.DataFrame:
    """``rate`` of group ``numerator`` / that of ``denominator`` per ``key`` (``target_fmr``, or ``threshold``
    for rates at fixed thresholds), and per replicate, if present."""
    keys = ["replicate", key] if "replicate" in table.columns else [key]
    for group in (numerator, denominator):
        if group not in set(table["group"]):
            raise ValueError(f"no group {group!r} in the table; groups are {list(table['group'].unique())}")
    wide = table.set_index([*keys, "group"])[rate].unstack("group")  # NaN rates stay NaN
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = wide[numerator] / wide[denominator]
    return ratio.rename(f"{rate} {numerator}/{denominator}").reset_index()


def summarize(point: pd.DataFrame, replicates: pd.DataFrame, confidence: float = 0.95,
              key: str = "target_fmr") -> pd.DataFrame:
    """The point estimates of :func:`error_rates` with percentile intervals from :func:`bootstrap`.

    Adds ``fmr_lower, fmr_upper, fnmr_lower, fnmr_upper, threshold_lower, threshold_upper`` and the
    number of replicates. ``key="threshold"``: the same for :func:`error_rates_at` and :func:`bootstrap_at`
    (the threshold is fixed, so it has no interval).
    """
    alpha = (1 - confidence) / 2
    if key == "threshold":
        grouped = replicates.groupby(["threshold", "group"], sort=False)
        bounds = {f"{column}_{side}": grouped[column].quantile(q) for column in ("fmr", "fnmr")
                  for side, q in (("lower", alpha), ("upper", 1 - alpha))}
        bounds["replicates"] = grouped["replicate"].nunique()
        table = point.merge(pd.DataFrame(bounds).reset_index(), on=["threshold", "group"], how="left")
        return table[["threshold", "group", "n_genuine", "false_non_matches", "fnmr", "fnmr_lower", "fnmr_upper",
                      "n_impostor", "false_matches", "fmr", "fmr_lower", "fmr_upper", "replicates"]]
    grouped = replicates.groupby(["target_fmr", "group"], sort=False)
    bounds = {}
    for column in ("fmr", "fnmr", "threshold"):
        bounds[f"{column}_lower"] = grouped[column].quantile(alpha)
        bounds[f"{column}_upper"] = grouped[column].quantile(1 - alpha)
    bounds["replicates"] = grouped["replicate"].nunique()
    table = point.merge(pd.DataFrame(bounds).reset_index(), on=["target_fmr", "group"], how="left")
    return table[["target_fmr", "threshold", "threshold_lower", "threshold_upper", "group", "n_genuine",
                  "false_non_matches", "fnmr", "fnmr_lower", "fnmr_upper", "n_impostor", "false_matches",
                  "fmr", "fmr_lower", "fmr_upper", "replicates"]]


def _ratio_summary(point, replicates, numerator, denominator, confidence, key: str = "target_fmr") -> pd.DataFrame:
    alpha = (1 - confidence) / 2
    rows = []
    for rate in ("fmr", "fnmr"):
        estimate = rate_ratio(point, numerator, denominator, rate, key).set_index(key).iloc[:, 0]
        boot = rate_ratio(replicates, numerator, denominator, rate, key)
        for target, values in boot.groupby(key):
            values = values.iloc[:, -1].to_numpy()
            finite = np.isfinite(values)
            rows.append({
                key: target, "rate": rate, "ratio": f"{numerator}/{denominator}",
                "estimate": float(estimate.loc[target]),
                "lower": float(np.quantile(values[finite], alpha)) if finite.any() else np.nan,
                "upper": float(np.quantile(values[finite], 1 - alpha)) if finite.any() else np.nan,
                "replicates without a finite ratio": int((~finite).sum()),
            })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# DET curves
# --------------------------------------------------------------------------------------------------
def det_curves(counts: AllPairsCounts, groups=None, max_points: int = 400) -> pd.DataFrame:
    """DET curve (FMR, FNMR at every bin edge) of each group's same-group pairs and of all pairs.

    Long table ``group, threshold, fmr, fnmr``, thinned to about ``max_points`` points per curve spaced
    evenly in log10 FMR (the DET's axis), keeping the end points.
    """
    groups = list(counts.groups if groups is None else groups)
    edges = counts.bins.edges
    curves = []
    for name in [*groups, "overall"]:
        if name == "overall":
            genuine, impostor = counts.genuine.sum(axis=0), counts.impostor.sum(axis=0)
        else:
            c = counts.categories.index(name)
            genuine, impostor = counts.genuine[c], counts.impostor[c]
        if genuine.sum() == 0 or impostor.sum() == 0:
            continue
        fmr = np.append(np.cumsum(impostor[::-1])[::-1], 0) / impostor.sum()
        fnmr = np.concatenate([[0], np.cumsum(genuine)]) / genuine.sum()
        changes = np.flatnonzero((np.diff(fmr, prepend=np.nan) != 0) | (np.diff(fnmr, prepend=np.nan) != 0))
        positive = changes[fmr[changes] > 0]
        if len(positive) > max_points:
            log_fmr = np.log10(fmr[positive])
            grid = np.linspace(log_fmr.min(), log_fmr.max(), max_points)
            # log_fmr is non-increasing along the edges: pick the edge nearest to each grid value
            picks = np.searchsorted(-log_fmr, -grid, side="left").clip(0, len(positive) - 1)
            positive = positive[np.unique(np.concatenate([[0], picks, [len(positive) - 1]]))]
        keep = np.unique(np.concatenate([positive, changes[fmr[changes] == 0][:1]]))
        curves.append(pd.DataFrame({"group": name, "threshold": counts.threshold(edges[keep]), "fmr": fmr[keep],
                                    "fnmr": fnmr[keep]}))
    return pd.concat(curves, ignore_index=True)


# Rates labelled on probit DET axes (those inside the drawn range are used).
PROBIT_TICKS = (1e-5, 1e-4, 1e-3, 0.003, 0.01, 0.03, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99, 0.999, 0.9999)


def probit(rates) -> np.ndarray:
    """The normal deviate Φ⁻¹(rate) of each rate: the DET's axis (0 and 1 map to ∓inf)."""
    from scipy import stats

    with np.errstate(divide="ignore"):
        return stats.norm.ppf(np.asarray(rates, dtype=float))


def probit_limits(rates, pad: float = 0.25) -> tuple[float, float]:
    """Axis limits in probit units that hold every rate strictly between 0 and 1 in ``rates``, padded."""
    values = np.asarray(rates, dtype=float)
    values = values[(values > 0) & (values < 1)]
    if not len(values):
        values = np.array([0.01, 0.5])
    low, high = probit([values.min(), values.max()])
    return float(low - pad), float(high + pad)


def set_probit_ticks(axis, limits: tuple[float, float], max_ticks: int = 8) -> None:
    """Ticks of a probit axis at the :data:`PROBIT_TICKS` rates inside ``limits``, labelled in percent, at
    least 1/``max_ticks`` of the axis apart (labels of neighbouring rates such as 90 % and 95 % would touch)."""
    gap = (limits[1] - limits[0]) / max_ticks
    ticks = []
    for tick in (t for t in PROBIT_TICKS if limits[0] <= probit(t) <= limits[1]):
        if not ticks or probit(tick) - probit(ticks[-1]) >= gap:
            ticks.append(tick)
    axis.set_ticks(probit(ticks))
    axis.set_ticklabels([f"{t * 100:g}%" for t in ticks])


def det_plot(curves: pd.DataFrame, operating_points: pd.DataFrame | None = None, ax=None, title: str = "",
             colors: dict | None = None, alpha: float = 1.0, legend: bool = True, scale: str = "log"):
    """DET curves (FNMR against FMR) with the operating points of each target FMR.

    ``scale="log"``: both axes logarithmic; ``scale="probit"``: both on normal-deviate axes, as notebook
    02's DET (``lib.verification_plots.det_plot``), which spread rates near 1 apart as well as rates near 0
    (small-data models whose FNMR is 0.9–0.999 at low FMR stay distinguishable); the limits then cover the
    drawn points (set them with :func:`probit_limits` to share them between panels).
    ``colors``: group → colour (the same across figures); ``overall`` is always a dashed black line.
    Call it again on the same ``ax`` with ``legend=False`` to overlay another model (e.g. another seed).
    """
    import matplotlib.pyplot as plt

    if scale not in ("log", "probit"):
        raise ValueError(f"scale must be 'log' or 'probit', got {scale!r}")
    transform = probit if scale == "probit" else np.asarray

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5))
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = dict(colors or {})
    for name in curves["group"].unique():
        if name != "overall":
            colors.setdefault(name, palette[len([c for c in colors if c != "overall"]) % len(palette)])
    colors["overall"] = "black"
    for name, curve in curves.groupby("group", sort=False):
        style = {"ls": "--", "lw": 1} if name == "overall" else {"lw": 1.6}
        visible = (curve["fmr"] > 0) & (curve["fnmr"] > 0)
        if scale == "probit":
            visible &= curve["fnmr"] < 1
        ax.plot(transform(curve.loc[visible, "fmr"]), transform(curve.loc[visible, "fnmr"]),
                label=name if legend else None, color=colors[name], alpha=alpha, **style)
    if operating_points is not None:
        markers = dict(zip(sorted(operating_points["target_fmr"].unique(), reverse=True), "osD^v"))
        for row in operating_points.itertuples():
            if row.group in curves["group"].values and 0 < row.fmr and 0 < row.fnmr and (scale == "log" or row.fnmr < 1):
                ax.plot(transform(row.fmr), transform(row.fnmr), markers[row.target_fmr], color=colors[row.group],
                        ms=6, mfc="none", alpha=alpha)
        if legend:
            for target, marker in markers.items():
                ax.plot([], [], marker, color="grey", mfc="none", label=f"threshold at overall FMR {target:g}")
    if scale == "probit":
        visible = curves[(curves["fmr"] > 0) & (curves["fnmr"] > 0) & (curves["fnmr"] < 1)]
        xlim, ylim = probit_limits(visible["fmr"]), probit_limits(visible["fnmr"])
        ax.set(xlim=xlim, ylim=ylim, xlabel="false match rate, FMR (probit scale)",
               ylabel="false non-match rate, FNMR (probit scale)", title=title)
        set_probit_ticks(ax.xaxis, xlim)
        set_probit_ticks(ax.yaxis, ylim)
        ax.grid(True, alpha=0.3)
    else:
        ax.set(xscale="log", yscale="log", xlabel="false match rate (FMR)", ylabel="false non-match rate (FNMR)",
               title=title)
        ax.grid(True, which="both", alpha=0.3)
    if legend:
        ax.legend(fontsize=8)
    return ax


def _group_rates(block: pd.DataFrame, groups) -> str:
    """``FMR g1 r [lo, hi], g2 …; FNMR …`` for the groups of ``block`` (indexed by group) in ``groups``' order."""
    present = [g for g in groups if g in block.index]
    fmr = ", ".join(f"{g} {_rate_with_interval(block.loc[g], 'fmr')}" for g in present)
    fnmr = ", ".join(f"{g} {_rate_with_interval(block.loc[g], 'fnmr')}" for g in present)
    return f"FMR {fmr}; FNMR {fnmr}"


def _ratio_clauses(ratios: pd.DataFrame) -> str:
    """``; FMR ratio A/B 1.23 [1.01, 1.50]`` per row of a ratios table (undefined when a group has no errors)."""
    text = ""
    for row in ratios.to_dict("records"):
        if pd.notna(row["estimate"]) and np.isfinite(row["estimate"]):
            text += (f"; {row['rate'].upper()} ratio {row['ratio']} {row['estimate']:.2f} "
                     f"[{row['lower']:.2f}, {row['upper']:.2f}]")
        else:
            text += f"; {row['rate'].upper()} ratio {row['ratio']} undefined (no errors in a group)"
    return text


def _rate_with_interval(row, rate: str) -> str:
    value = row[rate]
    if pd.isna(value):
        return "n/a"
    lower, upper = row.get(f"{rate}_lower", np.nan), row.get(f"{rate}_upper", np.nan)
    interval = "" if pd.isna(lower) else f" [{lower:.2g}, {upper:.2g}]"
    return f"{value:.2g}{interval}"


_COUNT_NAMES = {"seeds": "seeds", "n_genuine": "genuine pairs", "n_impostor": "impostor pairs"}


def rates_table(rates: pd.DataFrame) -> pd.DataFrame:
    """The rates of :func:`summarize` / :class:`ModelAudits` for reading: one row per (head,) target FMR and
    group, FMR and FNMR as ``"value [lower, upper]"``, the seed range where the table has one, and the
    pair counts; the full-precision columns stay in the saved CSV."""
    keys = [key for key in ("head", "target_fmr", "group") if key in rates.columns]
    shown = rates[keys].copy()
    shown["threshold"] = rates["threshold"].map("{:.3f}".format)
    for rate in ("fmr", "fnmr"):
        shown[rate.upper()] = [_rate_with_interval(row, rate) for row in rates.to_dict("records")]
        if f"{rate}_seed_min" in rates.columns:
            shown[f"{rate.upper()} over seeds"] = [
                "n/a" if pd.isna(low) else f"{low:.2g} to {high:.2g}"
                for low, high in zip(rates[f"{rate}_seed_min"], rates[f"{rate}_seed_max"])]
    for count, name in _COUNT_NAMES.items():
        if count in rates.columns:
            shown[name] = rates[count].map("{:,}".format)
    return shown.set_index(keys)


def describe(rates: pd.DataFrame, ratios: pd.DataFrame | None = None, groups=None) -> str:
    """A Markdown list, one item per target FMR (and head, when the table has a ``head`` column), every number
    taken from :func:`summarize` / :class:`ModelAudits` tables: threshold, FMR and FNMR of each group with
    its interval, and the ratios."""
    groups = list(groups) if groups is not None else [g for g in rates["group"].unique()
                                                      if g not in ("overall", CROSS_GROUP, UNKNOWN)]
    keys = ["head", "target_fmr"] if "head" in rates.columns else ["target_fmr"]
    sentences = []
    for key, block in rates.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        block = block.set_index("group")
        target = key[-1]
        who = f"`{key[0]}` " if len(key) == 2 else ""
        text = (f"{who}at overall FMR {target:g} (threshold {block['threshold'].iloc[0]:.3f}): "
                f"{_group_rates(block, groups)}")
        if ratios is not None and len(ratios):
            chosen = ratios[ratios["target_fmr"] == target]
            if len(key) == 2:
                chosen = chosen[chosen["head"] == key[0]]
            text += _ratio_clauses(chosen)
        sentences.append(text + ".")
    return "\n".join(f"- {sentence}" for sentence in sentences)


# --------------------------------------------------------------------------------------------------
# Everything at once
# --------------------------------------------------------------------------------------------------
@dataclass
class Audit:
    """What :func:`audit` computed: counts, per-group rates with intervals, ratios and DET curves.

    ``fixed`` / ``fixed_ratios``: the same at fixed thresholds (e.g. an encoder's documented one), keyed by
    ``threshold`` instead of ``target_fmr``; empty when none was asked for. ``fixed_replicates``: their replicates.
    """

    counts: AllPairsCounts
    rates: pd.DataFrame  # summarize(): point estimates with bootstrap intervals
    ratios: pd.DataFrame  # FMR and FNMR ratio numerator/denominator with intervals
    replicates: pd.DataFrame
    det: pd.DataFrame
    bootstrap_seconds: float
    fixed: pd.DataFrame = field(default_factory=pd.DataFrame)
    fixed_ratios: pd.DataFrame = field(default_factory=pd.DataFrame)
    fixed_replicates: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def comparator(self) -> str:
        return self.counts.comparator


def audit(features, identities, groups, *, target_fmrs=(1e-3, 1e-4, 1e-5), ratio=None, order=None,
          n_boot: int = 1000, seed: int = 0, weights=None, confidence: float = 0.95,
          bins: ScoreBins = ScoreBins(), block_rows: int = 1024, min_tail_pairs: int = 200_000,
          progress: bool = False, images=None, comparator: str = "cosine", fixed_thresholds=()) -> Audit:
    """Count all pairs, then the error rates at each target FMR with identity-bootstrap intervals.

    ``ratio``: ``(numerator, denominator)`` groups for the FMR and FNMR ratios (e.g. ``("Female",
    "Male")``); default: the first two groups in ``order``. The impostor tail kept for the bootstrap is
    4 x the largest target (at least ``min_tail_pairs`` pairs); if a replicate still needs more (a few
    people with very many images can dominate a small set), the pairs are counted again with 4 x more.
    ``images``: the name of each row's image (e.g. its file name); an image in two rows is refused.
    ``comparator``: ``"cosine"`` (L2-normalized rows) or ``"euclidean"`` (raw rows; see :data:`COMPARATORS`).
    ``fixed_thresholds``: thresholds in the comparator's unit (e.g. dlib's distance 0.6) also audited, with
    the same replicates, into ``Audit.fixed``; the kept impostor tail is widened to reach them.
    The replicates depend only on ``n_boot``, ``seed`` and the identities, so two audits of the same images
    (two comparators, two models) resample the same people and can be compared pairwise.
    """
    targets = _check_targets(target_fmrs)
    fixed_thresholds = _check_thresholds(fixed_thresholds) if len(np.atleast_1d(fixed_thresholds)) else ()
    _check_distinct_images(images, len(np.asarray(features)))
    if weights is None:
        _check_n_boot(n_boot)
        weights = identity_weights(len(np.unique(np.asarray(identities))), n_boot, seed)
    tail_fmr = min(1.0, 4 * max(targets))
    while True:
        counts = count_all_pairs(features, identities, groups, order=order, bins=bins, tail_fmr=tail_fmr,
                                 min_tail_pairs=min_tail_pairs, block_rows=block_rows, progress=progress,
                                 comparator=comparator)
        fixed_bins = [counts.threshold_bin(t) for t in fixed_thresholds]
        if fixed_bins and min(fixed_bins) < counts.tail_start and tail_fmr < 1.0:
            # the impostors that pass the fixed threshold must all be kept: widen the tail to them
            passing = counts.impostor[:, min(fixed_bins):].sum() / max(counts.n_impostor, 1)
            tail_fmr = min(1.0, max(4 * tail_fmr, 1.5 * passing))
            continue
        started = time.perf_counter()
        try:
            replicates = bootstrap(counts, targets, weights=weights)
            break
        except TailTooShort:
            if tail_fmr >= 1.0:
                raise
            tail_fmr = min(1.0, 4 * tail_fmr)  # a replicate's threshold fell below the kept pairs: keep more
    seconds = time.perf_counter() - started
    point = error_rates(counts, targets)
    if ratio is None:
        ratio = counts.groups[:2]
    ratios = _ratio_summary(point, replicates, *ratio, confidence) if len(ratio) == 2 else pd.DataFrame()
    result = Audit(counts, summarize(point, replicates, confidence), ratios, replicates, det_curves(counts), seconds)
    if fixed_thresholds:
        fixed_point = error_rates_at(counts, fixed_thresholds)
        result.fixed_replicates = bootstrap_at(counts, fixed_thresholds, weights=weights)
        result.fixed = summarize(fixed_point, result.fixed_replicates, confidence, key="threshold")
        if len(ratio) == 2:
            result.fixed_ratios = _ratio_summary(fixed_point, result.fixed_replicates, *ratio, confidence,
                                                 key="threshold")
    return result


# --------------------------------------------------------------------------------------------------
# Several models on the same images (notebook 02's trained heads, several seeds each)
# --------------------------------------------------------------------------------------------------
DEVTEST_EMBEDDINGS_FILE = "02_devtest_embeddings.npz"
MODEL_PREFIX = "model:"


def read_model_embeddings(path) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(files, identities, {(head, seed): features})`` from an ``.npz`` of notebook 02's layout.

    The file holds ``files`` (image file names, e.g. ``Aaron_Peirsol_0001.jpg``), ``identity`` (person of
    each image) and one float32 (N, D) array per model under ``model:<head>-seed<seed>``, rows aligned
    with ``files`` and L2-normalized.
    """
    from lib.errors import DataError, open_npz

    with open_npz(path, "re-run notebook 02 to rewrite it") as data:
        keys = list(data.keys())
        missing = [key for key in ("files", "identity") if key not in keys]
        if missing:
            raise DataError(f"{path} lacks array(s) {missing}; re-run notebook 02 to rewrite it")
        files, identities = data["files"].astype(str), data["identity"].astype(str)
        repeated = repeated_images(files)
        if repeated:
            shown = "; ".join(f"{name} at rows {rows}" for name, rows in list(repeated.items())[:5])
            raise DataError(f"{path}: {len(repeated)} image(s) listed more than once in 'files' ({shown}); each "
                            f"would be paired with itself as a genuine pair. Re-run notebook 02 to rewrite the file")
        models = {}
        for key in keys:
            if not key.startswith(MODEL_PREFIX):
                continue
            head, separator, seed = key[len(MODEL_PREFIX):].rpartition("-seed")
            if not separator or not seed.isdigit():
                raise DataError(f"{path}: array {key!r} is not named model:<head>-seed<seed>")
            features = data[key]
            if features.shape[0] != len(files):
                raise DataError(f"{path}: {key} has {features.shape[0]} rows for {len(files)} files")
            models[(head, int(seed))] = features
    if not models:
        raise DataError(f"{path} holds no model:<head>-seed<seed> arrays")
    return files, identities, models


@dataclass
class ModelAudits:
    """:func:`audit` of each model, and their summary per head over seeds.

    ``per_model``: the rates of every (head, seed) with identity-bootstrap intervals. ``per_head``: per
    head, target and group the mean over seeds, its interval (percentiles over replicates of the seed
    mean; the same resampled people for every seed, so it covers the identity sampling of that mean) and
    the lowest and highest seed. ``ratios``: per head and target, the ratio of the seed-mean FMRs (and
    FNMRs) of the two ``ratio`` groups, with the same kind of interval.
    """

    audits: dict
    per_model: pd.DataFrame
    per_head: pd.DataFrame
    ratios: pd.DataFrame
    det: pd.DataFrame
    # per replicate, head, target and group: the seed-mean FMR and FNMR (the bootstrap behind the intervals;
    # not saved, so None for a loaded audit)
    replicate_means: pd.DataFrame | None = None
    extra: dict = field(default_factory=dict)  # further saved tables by stem, e.g. "ratio_tests"


def audit_models(models: dict, identities, groups, *, target_fmrs=(1e-2, 1e-3), ratio=None, order=None,
                 n_boot: int = 1000, seed: int = 0, confidence: float = 0.95, bins: ScoreBins = ScoreBins(),
                 images=None) -> ModelAudits:
    """:func:`audit` of every ``{(head, seed): features}`` on the same images, with one identity bootstrap
    shared by all models, then summaries per head over seeds. ``images``: as in :func:`audit`."""
    _check_n_boot(n_boot)
    identity_count = len(np.unique(np.asarray(identities)))
    weights = identity_weights(identity_count, n_boot, seed)
    alpha = (1 - confidence) / 2
    audits, rows, det, replicate_frames = {}, [], [], []
    for (head, model_seed), features in models.items():
        result = audit(features, identities, groups, target_fmrs=target_fmrs, ratio=ratio, order=order,
                       weights=weights, confidence=confidence, bins=bins, images=images)
        audits[(head, model_seed)] = result
        rows.append(result.rates.assign(head=head, seed=model_seed))
        det.append(result.det.assign(head=head, seed=model_seed))
        replicate_frames.append(result.replicates.assign(head=head, seed=model_seed))
    per_model = pd.concat(rows, ignore_index=True)
    replicates = pd.concat(replicate_frames, ignore_index=True)

    keys = ["head", "target_fmr", "group"]
    mean_of_seeds = replicates.groupby(["replicate", *keys], sort=False)[["fmr", "fnmr"]].mean()
    bounds = mean_of_seeds.groupby(keys, sort=False).quantile([alpha, 1 - alpha]).unstack()
    bounds.columns = [f"{rate}_{'lower' if q == alpha else 'upper'}" for rate, q in bounds.columns]
    summary = per_model.groupby(keys, sort=False).agg(
        seeds=("seed", "nunique"), threshold=("threshold", "mean"),
        fmr=("fmr", "mean"), fmr_seed_min=("fmr", "min"), fmr_seed_max=("fmr", "max"),
        fnmr=("fnmr", "mean"), fnmr_seed_min=("fnmr", "min"), fnmr_seed_max=("fnmr", "max"),
    ).join(bounds).reset_index()
    summary = summary[["head", "target_fmr", "group", "seeds", "threshold", "fmr", "fmr_lower", "fmr_upper",
                       "fmr_seed_min", "fmr_seed_max", "fnmr", "fnmr_lower", "fnmr_upper", "fnmr_seed_min",
                       "fnmr_seed_max"]]

    ratio_table = pd.DataFrame()
    if ratio is None:
        ratio = next(iter(audits.values())).counts.groups[:2]
    if len(ratio) == 2:
        numerator, denominator = ratio
        rows = []
        for rate in ("fmr", "fnmr"):
            # the ratio of the seed-mean rates, per replicate and for the point estimate
            boot = mean_of_seeds[rate].unstack("group")
            point = summary.set_index(keys)[rate].unstack("group")
            with np.errstate(divide="ignore", invalid="ignore"):
                boot_ratio = (boot[numerator] / boot[denominator]).replace([np.inf, -np.inf], np.nan)
                point_ratio = point[numerator] / point[denominator]
            for (head, target), value in point_ratio.items():
                values = boot_ratio.xs((head, target), level=("head", "target_fmr")).dropna().to_numpy()
                rows.append({"head": head, "target_fmr": target, "rate": rate, "ratio": f"{numerator}/{denominator}",
                             "estimate": value,
                             "lower": np.quantile(values, alpha) if len(values) else np.nan,
                             "upper": np.quantile(values, 1 - alpha) if len(values) else np.nan,
                             "replicates without a finite ratio": n_boot - len(values)})
        ratio_table = pd.DataFrame(rows)
    return ModelAudits(audits, per_model, summary, ratio_table, pd.concat(det, ignore_index=True),
                       replicate_means=mean_of_seeds.reset_index())


# --------------------------------------------------------------------------------------------------
# A saved audit: what notebook 04 shows of the trained heads, kept with the runs it audited
# --------------------------------------------------------------------------------------------------
RUNS_ARRAY = "runs"  # run names (lib.settings.RunSettings.run_name) of the models in an embeddings file


def read_model_run_names(path) -> list[str]:
    """The run names stored beside the models of an embeddings file (``[]`` for a file written without them)."""
    from lib.errors import open_npz

    with open_npz(path, "re-run notebook 02 to rewrite it") as data:
        return sorted(data[RUNS_ARRAY].astype(str)) if RUNS_ARRAY in data else []


def _json_value(value):
    """numpy scalars as the numbers they are (not their text); anything else as text."""
    return value.item() if isinstance(value, np.generic) else str(value)


_SAVED_TABLES = {"per_model": "per_model", "per_head": "rates", "ratios": "ratios", "det": "det"}


def save_tables(tables: dict, folder, prefix: str, *, notes: dict) -> dict[str, Path]:
    """Write each ``{stem: DataFrame}`` as ``<prefix>_<stem>.csv`` and a manifest ``<prefix>_audit.json`` holding
    ``notes`` and a SHA-256 digest of each table, as one transaction: the old manifest is removed first and the
    new one, naming the digest of each table just written, is written last. An interruption in between leaves
    no manifest, or tables whose digests differ from the manifest's; either way :func:`read_tables` returns
    nothing rather than one run's tables under another run's notes."""
    folder = Path(folder)
    manifest_path = folder / f"{prefix}_audit.json"
    manifest_path.unlink(missing_ok=True)
    written = {stem: write_csv(frame, folder / f"{prefix}_{stem}.csv") for stem, frame in tables.items()}
    manifest = {**notes, _DIGESTS: {path.name: _file_digest(path) for path in written.values()}}
    written["manifest"] = write_text(manifest_path, json.dumps(manifest, indent=1, default=_json_value) + "\n")
    return written


def read_tables(folder, prefix: str, required=()) -> tuple[dict | None, dict | str]:
    """``({stem: DataFrame}, notes)`` of what :func:`save_tables` wrote under ``prefix``, every table checked
    against the manifest's digest; ``(None, why not)`` when the manifest is missing, a ``required`` stem is not
    among its tables, or a table is missing or not the one it names. A manifest written before tables had
    digests names no tables: then the ``required`` ones are read as they are."""
    folder = Path(folder)
    manifest_path = folder / f"{prefix}_audit.json"
    if not manifest_path.is_file():
        return None, f"no saved audit ({manifest_path.name})"
    notes = json.loads(manifest_path.read_text(encoding="utf-8"))
    digests = notes.pop(_DIGESTS, None)
    names = list(digests) if digests is not None else [f"{prefix}_{stem}.csv" for stem in required]
    missing = [stem for stem in required if f"{prefix}_{stem}.csv" not in names]
    if missing:
        return None, f"the saved audit ({manifest_path.name}) has no table(s) {missing}"
    tables = {}
    for name in names:
        path = folder / name
        if digests is not None:
            found = _file_digest(path) if path.is_file() else "missing"
            if found != digests[name]:
                return None, (f"the saved audit's table {name} is {'missing' if found == 'missing' else 'not the one'} "
                              f"its manifest ({manifest_path.name}) names (an interrupted save?), so its numbers may "
                              f"belong to other runs")
        tables[name[len(prefix) + 1:-len(".csv")]] = pd.read_csv(path)
    return tables, notes


def save_audits(result: ModelAudits, folder, prefix: str, *, runs, notes: dict) -> dict[str, Path]:
    """Write ``result``'s tables (and ``result.extra``) as ``<prefix>_<table>.csv`` and ``<prefix>_audit.json``
    (the audited ``runs``, ``notes`` such as pair counts, and a SHA-256 digest of each table), so the audit of
    the same runs can be shown without the embeddings (:func:`load_audits`). One transaction, as
    :func:`save_tables`."""
    tables = {stem: getattr(result, name) for name, stem in _SAVED_TABLES.items()}
    return save_tables({**tables, **result.extra}, folder, prefix,
                       notes={"runs": sorted(str(run) for run in runs), **notes})


_DIGESTS = "table_sha256"  # manifest key: {file name: SHA-256 of its bytes}


def _file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_audits(folder, prefix: str, *, runs, settings: dict | None = None) -> tuple[ModelAudits | None, dict | str]:
    """The audit :func:`save_audits` wrote, if it audited exactly ``runs`` and its notes hold ``settings``
    (e.g. the target FMRs and bootstrap size): ``(audits, notes)``; otherwise ``(None, why not)``. The loaded
    result has no per-model :class:`Audit` objects (``audits`` is empty) and no replicates; further tables
    saved with it (``extra``, e.g. ``ratio_tests``) come back in ``extra``."""
    tables, notes = read_tables(folder, prefix, required=list(_SAVED_TABLES.values()))
    if tables is None:
        return None, notes
    name = f"{prefix}_audit.json"
    saved, wanted = notes.pop("runs", []), sorted(str(run) for run in runs)
    if saved != wanted:
        return None, (f"the saved audit ({name}) is of other runs: {sorted(set(saved) - set(wanted))} "
                      f"instead of {sorted(set(wanted) - set(saved))}")
    differs = {key: (notes.get(key), value) for key, value in (settings or {}).items()
               if json.loads(json.dumps(value, default=_json_value)) != notes.get(key)}
    if differs:
        return None, (f"the saved audit ({name}) was made with other settings: "
                      + ", ".join(f"{key} {saved!r} instead of {wanted!r}" for key, (saved, wanted) in differs.items()))
    core = {name: tables.pop(stem) for name, stem in _SAVED_TABLES.items()}
    return ModelAudits(audits={}, **core, extra=tables), notes


# --------------------------------------------------------------------------------------------------
# What an audit's verdict rests on: the comparator, the most prolific identities, and whether two models'
# ratios differ
# --------------------------------------------------------------------------------------------------
def audit_comparators(vectors, identities, groups, *, comparators: dict, bins: dict | None = None,
                      **audit_options) -> dict[str, Audit]:
    """:func:`audit` of the same raw descriptors under each comparator: ``{comparator: fixed thresholds}``,
    e.g. ``{"euclidean": [0.6], "cosine": []}`` for dlib (its users' distance with its documented threshold,
    and the cosine used for the trained heads). Cosine audits get the rows L2-normalized; Euclidean ones the
    raw rows. Every audit resamples the same people (same ``n_boot``, ``seed`` and identities), so their
    replicates are paired (:func:`paired_ratio_test`). ``bins``: ``{comparator: ScoreBins}`` where not the
    default (cosine: :class:`ScoreBins`; Euclidean: :func:`euclidean_bins` covering every distance)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{int((norms == 0).sum())} descriptor(s) are all zeros: no cosine is defined for them")
    audits = {}
    for comparator, fixed in comparators.items():
        features = vectors / norms if _check_comparator(comparator) == "cosine" else vectors
        audits[comparator] = audit(features, identities, groups, comparator=comparator, fixed_thresholds=fixed or (),
                                   bins=(bins or {}).get(comparator, ScoreBins()), **audit_options)
    return audits


def comparator_tables(audits: dict[str, Audit]) -> dict[str, pd.DataFrame]:
    """The tables of several comparators' audits of one encoder, stacked with a ``comparator`` column (first):
    ``rates`` and ``ratios`` at the target FMRs, ``fixed_rates`` and ``fixed_ratios`` at fixed thresholds."""
    def stacked(name):
        frames = [getattr(result, name).assign(comparator=comparator) for comparator, result in audits.items()
                  if len(getattr(result, name))]
        if not frames:
            return pd.DataFrame(columns=["comparator"])
        table = pd.concat(frames, ignore_index=True)
        return table[["comparator", *[c for c in table.columns if c != "comparator"]]]

    return {"rates": stacked("rates"), "ratios": stacked("ratios"), "fixed_rates": stacked("fixed"),
            "fixed_ratios": stacked("fixed_ratios")}


def comparator_side_by_side(audits: dict[str, Audit], groups, ratio=None) -> pd.DataFrame:
    """For reading: one row per operating point (target FMR, or fixed threshold) and group, one column block
    per comparator: threshold, FMR and FNMR with their intervals; then one row per operating point with the
    ``ratio`` (numerator/denominator) of the FMRs and of the FNMRs."""
    blocks = {}
    for comparator, result in audits.items():
        parts = []
        for table, ratios, key in ((result.rates, result.ratios, "target_fmr"),
                                   (result.fixed, result.fixed_ratios, "threshold")):
            if not len(table):
                continue
            for value, block in table.groupby(key, sort=False):
                point = (f"overall FMR {value:g}" if key == "target_fmr"
                         else f"{comparator} threshold {value:g}")
                block = block.set_index("group")
                for group in (g for g in groups if g in block.index):
                    row = block.loc[group]
                    parts.append({"operating point": point, "group": group,
                                  "threshold": f"{row['threshold']:.4f}",
                                  "FMR": _rate_with_interval(row, "fmr"), "FNMR": _rate_with_interval(row, "fnmr")})
                if ratios is not None and len(ratios):
                    chosen = ratios[ratios[key] == value].set_index("rate")
                    cells = {}
                    for rate in ("fmr", "fnmr"):
                        r = chosen.loc[rate]
                        cells[rate.upper()] = (f"{r['estimate']:.2f} [{r['lower']:.2f}, {r['upper']:.2f}]"
                                               if np.isfinite(r["estimate"]) else "undefined")
                    parts.append({"operating point": point, "group": f"ratio {chosen['ratio'].iloc[0]}",
                                  "threshold": "", **cells})
        blocks[comparator] = pd.DataFrame(parts).set_index(["operating point", "group"])
    return pd.concat(blocks, axis=1)


def descriptor_norms(vectors, groups, order) -> pd.DataFrame:
    """L2 norm of each raw descriptor, summarized per group (``order``): images, mean, standard deviation and
    the 5/25/50/75/95th percentiles. The Euclidean distance of two descriptors is
    ``sqrt(|a|^2 + |b|^2 - 2 |a| |b| cos)``: at the same cosine, a group with shorter descriptors has shorter
    distances, so a distance threshold lets more of its pairs match than the cosine does."""
    norms = np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=1)
    groups = pd.Series(np.asarray(groups, dtype=object)).fillna(UNKNOWN).to_numpy()
    rows = []
    for group in [*order, "all"]:
        values = norms if group == "all" else norms[groups == group]
        if not len(values):
            continue
        q = np.percentile(values, [5, 25, 50, 75, 95])
        rows.append({"group": group, "images": len(values), "mean": values.mean(), "sd": values.std(ddof=1),
                     "p5": q[0], "p25": q[1], "median": q[2], "p75": q[3], "p95": q[4]})
    return pd.DataFrame(rows)


def norms_plot(vectors, groups, order, ax=None, colors: dict | None = None, title: str = ""):
    """Histogram (density) of the raw descriptor norms of each group in ``order``, medians dashed."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    norms = np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=1)
    groups = np.asarray(groups, dtype=object)
    bins = np.linspace(np.percentile(norms, 0.1), np.percentile(norms, 99.9), 60)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, group in enumerate(order):
        values = norms[groups == group]
        if not len(values):
            continue
        color = (colors or {}).get(group, palette[i % len(palette)])
        ax.hist(values, bins=bins, density=True, histtype="step", lw=1.6, color=color,
                label=f"{group} ({len(values):,} images, median {np.median(values):.3f})")
        ax.axvline(np.median(values), color=color, ls="--", lw=1)
    ax.set(xlabel="L2 norm of the raw descriptor", ylabel="density", title=title)
    ax.legend(fontsize=8)
    return ax


def identity_pairs(counts: AllPairsCounts) -> pd.DataFrame:
    """Every identity with its images and genuine pairs, most pairs first: ``identity, group`` (the group of
    all its labelled images, ``mixed`` if they differ, ``unknown`` if none has one), ``images, genuine_pairs``,
    and ``share_of_group``: its share of the genuine pairs of its group (of all genuine pairs for mixed/unknown)."""
    n = counts.images_per_identity
    known = n[:, :len(counts.groups)]
    labelled = known.sum(axis=1)
    group = np.where((known > 0).sum(axis=1) > 1, "mixed",
                     np.where(labelled == 0, UNKNOWN, np.array(counts.groups, dtype=object)[known.argmax(axis=1)]))
    images = n.sum(axis=1)
    pairs = images * (images - 1) // 2
    table = pd.DataFrame({"identity": counts.identities.astype(str), "group": group, "images": images,
                          "genuine_pairs": pairs})
    per_category = _Replicator(counts)._genuine_per_identity(n.astype(np.float64))
    totals = per_category.sum(axis=0)
    share = np.array([per_category[a, counts.categories.index(g)] / totals[counts.categories.index(g)]
                      if g in counts.groups else pairs[a] / max(counts.n_genuine, 1)
                      for a, g in enumerate(group)])
    table["share_of_group"] = share
    return table.sort_values(["genuine_pairs", "identity"], ascending=[False, True], ignore_index=True)


GENUINE_PAIR_CAP = 45  # genuine pairs per identity: what a person with ten images supplies
TOP_IDENTITIES = 10  # the identities with the most genuine pairs, left out in the third variant


def prolific_identity_effect(result: Audit, *, cap: int = GENUINE_PAIR_CAP, top: int = TOP_IDENTITIES,
                             ratio=None) -> pd.DataFrame:
    """How much each group's rates rest on the identities with the most images, at the audit's own thresholds
    (those fixed by the target FMRs over all pairs, and any fixed ones; not re-chosen per variant):

    * ``all pairs``: the audit's rates (every genuine pair weighs 1);
    * ``genuine pairs capped at <cap> per identity``: identity ``a`` with ``P_a > cap`` genuine pairs has each
      weighted ``cap / P_a`` (its FNMR counts as ``cap`` pairs); impostor pairs unchanged;
    * ``without the <top> identities with the most genuine pairs``: those people removed entirely (their
      genuine and impostor pairs).

    Long table: ``operating_point, threshold, variant, group, n_genuine`` (weighted), ``fnmr, n_impostor, fmr``,
    plus one row per variant with group ``ratio <num>/<den>`` holding the FMR and FNMR ratios."""
    counts = result.counts
    if cap < 1 or top < 0:
        raise ValueError(f"cap must be >= 1 and top >= 0, got cap={cap}, top={top}")
    replicator = _Replicator(counts)
    per_identity = counts.images_per_identity.sum(axis=1)
    pairs = per_identity * (per_identity - 1) / 2
    ones = np.ones(len(counts.identities))
    capped = np.where(pairs > cap, cap / np.maximum(pairs, 1), 1.0)
    ranked = identity_pairs(counts)["identity"].head(top)
    without = ones.copy()
    position = {str(name): a for a, name in enumerate(counts.identities)}
    without[[position[name] for name in ranked]] = 0.0
    variants = {"all pairs": (ones, None), f"genuine pairs capped at {cap} per identity": (ones, capped),
                f"without the {top} identities with the most genuine pairs": (without, None)}
    points = [(f"overall FMR {target:g}", threshold) for target, threshold in
              result.rates.groupby("target_fmr", sort=False)["threshold"].first().items()]
    if len(result.fixed):
        points += [(f"{counts.comparator} threshold {t:g}", t) for t in result.fixed["threshold"].unique()]
    bins = []
    for _, threshold in points:
        edge = -threshold if counts.comparator == "euclidean" else threshold
        bins.append(int(np.argmin(np.abs(counts.bins.edges - edge))))  # the audit's thresholds are bin edges
    ratio = tuple(ratio) if ratio is not None else counts.groups[:2]
    rows = []
    for variant, (w, g) in variants.items():
        rates = pd.DataFrame(replicator.rates_at_bins(w, bins, genuine_weights=g))
        rates["operating_point"] = np.repeat([name for name, _ in points], len(counts.categories) + 1)
        rates["threshold"] = np.repeat([t for _, t in points], len(counts.categories) + 1)
        for point, block in rates.groupby("operating_point", sort=False):
            block = block.set_index("group")
            for group in (*counts.groups, "overall"):
                row = block.loc[group]
                rows.append({"operating_point": point, "threshold": row["threshold"], "variant": variant,
                             "group": group, "n_genuine": row["n_genuine"], "fnmr": row["fnmr"],
                             "n_impostor": row["n_impostor"], "fmr": row["fmr"]})
            if len(ratio) == 2:
                num, den = block.loc[ratio[0]], block.loc[ratio[1]]
                with np.errstate(divide="ignore", invalid="ignore"):
                    rows.append({"operating_point": point, "threshold": num["threshold"], "variant": variant,
                                 "group": f"ratio {ratio[0]}/{ratio[1]}", "n_genuine": np.nan,
                                 "fnmr": num["fnmr"] / den["fnmr"], "n_impostor": np.nan,
                                 "fmr": num["fmr"] / den["fmr"]})
    return pd.DataFrame(rows)


def paired_ratio_test(replicates_a: pd.DataFrame, replicates_b: pd.DataFrame, point_a: pd.DataFrame,
                      point_b: pd.DataFrame, *, numerator, denominator, rate: str = "fmr", key: str = "target_fmr",
                      confidence: float = 0.95) -> pd.DataFrame:
    """Do two audits' ratios ``rate(numerator) / rate(denominator)`` differ? A paired identity bootstrap.

    ``replicates_a`` / ``replicates_b``: per ``replicate``, ``key`` and ``group`` the rate, from the same
    resampled people in replicate r for both (same identity weights: :func:`identity_weights`); ``point_*``: the
    point estimates (``key, group, rate``). Per value of ``key``: both ratios, their ratio ``a / b`` with the
    percentile interval of the replicates' ``a_r / b_r``, and a two-sided bootstrap p-value of "the log ratio of
    ratios is 0": ``min(1, 2 min((1 + #{d_r <= 0}) / (B + 1), (1 + #{d_r >= 0}) / (B + 1)))`` with ``d_r`` the
    replicate's log ratio of ratios over the B replicates where both ratios are finite and positive. Identical
    audits give d_r = 0 in every replicate, hence p = 1; a difference in every replicate gives p = 2 / (B + 1).
    """
    alpha = (1 - confidence) / 2

    def ratio_of(table):
        keys = ["replicate", key] if "replicate" in table.columns else [key]
        wide = table.set_index([*keys, "group"])[rate].unstack("group")
        with np.errstate(divide="ignore", invalid="ignore"):
            return (wide[numerator] / wide[denominator]).astype(float)

    boot = pd.concat({"a": ratio_of(replicates_a), "b": ratio_of(replicates_b)}, axis=1)
    if len(boot) == 0:
        raise ValueError("the replicate tables are empty: pass the replicates of two audits resampled alike")
    point = pd.concat({"a": ratio_of(point_a), "b": ratio_of(point_b)}, axis=1)
    rows = []
    for value, block in boot.groupby(level=key, sort=False):
        a, b = block["a"].to_numpy(), block["b"].to_numpy()
        usable = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
        d = np.log(a[usable]) - np.log(b[usable])
        n = len(d)
        ra, rb = point.loc[value, "a"], point.loc[value, "b"]
        with np.errstate(divide="ignore", invalid="ignore"):
            estimate = ra / rb
        row = {key: value, "rate": rate, "ratio": f"{numerator}/{denominator}", "ratio_a": ra, "ratio_b": rb,
               "ratio_of_ratios": estimate, "lower": np.nan, "upper": np.nan, "p_value": np.nan,
               "replicates": n, "replicates without a finite ratio": len(a) - n}
        if n:
            row["lower"], row["upper"] = np.quantile(np.exp(d), [alpha, 1 - alpha])  # of a_r / b_r
            row["p_value"] = min(1.0, 2 * min((1 + (d <= 0).sum()) / (n + 1), (1 + (d >= 0).sum()) / (n + 1)))
        rows.append(row)
    return pd.DataFrame(rows)


def compare_head_ratios(result: ModelAudits, pairs, *, target_fmrs=None, rate: str = "fmr", ratio=None,
                        confidence: float = 0.95, alpha: float = 0.05) -> pd.DataFrame:
    """Paired identity-bootstrap tests of whether two heads' group ratios differ (:func:`paired_ratio_test` on
    the seed-mean rates of :func:`audit_models`, whose replicates resample the same people for every model),
    for each ``(head, reference)`` of ``pairs`` and target FMR; Holm-adjusted across all the rows. ``verdict``:
    ``higher`` / ``lower`` (the head's ratio against the reference's) when the adjusted p < ``alpha``, else
    ``not resolved``."""
    from lib.fairness import adjust_p_values

    if result.replicate_means is None:
        raise ValueError("this audit has no replicates (a loaded audit): run audit_models on the embeddings")
    if ratio is None:
        groups = [g for g in result.per_head["group"].unique() if g not in ("overall", CROSS_GROUP, UNKNOWN)]
        ratio = groups[:2]
    numerator, denominator = ratio
    means = result.replicate_means
    point = result.per_head
    if target_fmrs is not None:
        targets = set(_check_targets(target_fmrs))
        means, point = means[means["target_fmr"].isin(targets)], point[point["target_fmr"].isin(targets)]
    heads = set(point["head"])
    frames = []
    for head, reference in pairs:
        missing = [name for name in (head, reference) if name not in heads]
        if missing:
            raise ValueError(f"no head {missing} in the audit; heads are {sorted(heads)}")
        table = paired_ratio_test(means[means["head"] == head], means[means["head"] == reference],
                                  point[point["head"] == head], point[point["head"] == reference],
                                  numerator=numerator, denominator=denominator, rate=rate, confidence=confidence)
        frames.append(table.rename(columns={"ratio_a": "head_ratio", "ratio_b": "reference_ratio"})
                      .assign(head=head, reference=reference))
    table = pd.concat(frames, ignore_index=True)
    table["p_adjusted"] = adjust_p_values(table["p_value"], "holm")
    table["interval"] = f"{confidence:.0%} paired identity bootstrap (same people for both heads)"
    table["correction"] = f"holm over {int(table['p_value'].notna().sum())} tests"
    table["verdict"] = np.where(table["p_adjusted"] < alpha,
                                np.where(table["ratio_of_ratios"] > 1, "higher", "lower"),
                                np.where(table["p_value"].isna(), "untestable (no replicate with both ratios finite)",
                                         "not resolved"))
    return table[["head", "reference", "target_fmr", "rate", "ratio", "head_ratio", "reference_ratio",
                  "ratio_of_ratios", "lower", "upper", "p_value", "p_adjusted", "replicates", "interval",
                  "correction", "verdict"]]


def compare_comparator_ratios(audits: dict[str, Audit], first: str, second: str, *, numerator, denominator,
                              confidence: float = 0.95) -> pd.DataFrame:
    """Do two comparators give an encoder different group ratios at the same target FMRs? The paired test of
    :func:`paired_ratio_test` for the FMR and the FNMR ratio of ``audits[first]`` against ``audits[second]``
    (:func:`audit_comparators` resamples the same people for both); Holm across the rows."""
    from lib.fairness import adjust_p_values

    frames = [paired_ratio_test(audits[first].replicates, audits[second].replicates, audits[first].rates,
                                audits[second].rates, numerator=numerator, denominator=denominator, rate=rate,
                                confidence=confidence) for rate in ("fmr", "fnmr")]
    table = pd.concat(frames, ignore_index=True).rename(columns={"ratio_a": f"{first}_ratio",
                                                                 "ratio_b": f"{second}_ratio"})
    table["p_adjusted"] = adjust_p_values(table["p_value"], "holm")
    table.insert(0, "comparison", f"{first} / {second}")
    return table


def describe_fixed(fixed: pd.DataFrame, fixed_ratios: pd.DataFrame | None, groups, comparator: str) -> str:
    """A Markdown list, one item per fixed threshold of :attr:`Audit.fixed`: the FMR and FNMR of each group with
    its interval, the overall FMR it gives, and the ratios (every number from the tables)."""
    sentences = []
    for threshold, block in fixed.groupby("threshold", sort=False):
        block = block.set_index("group")
        text = (f"at the fixed {comparator} threshold {threshold:g} (overall FMR "
                f"{_rate_with_interval(block.loc['overall'], 'fmr')}): {_group_rates(block, groups)}")
        if fixed_ratios is not None and len(fixed_ratios):
            text += _ratio_clauses(fixed_ratios[fixed_ratios["threshold"] == threshold])
        sentences.append(text + ".")
    return "\n".join(f"- {sentence}" for sentence in sentences)


def describe_ratio_tests(tests: pd.DataFrame) -> str:
    """A Markdown list of :func:`compare_head_ratios`' rows: both heads' ratios, their ratio with its paired
    interval, the p-value, the Holm-adjusted one and the verdict."""
    lines = []
    for row in tests.to_dict("records"):
        if not pd.notna(row["p_value"]):
            lines.append(f"- `{row['head']}` against `{row['reference']}` at overall FMR {row['target_fmr']:g}: "
                         f"{row['verdict']}.")
            continue
        interval = (f" [{row['lower']:.2f}, {row['upper']:.2f}]" if pd.notna(row["lower"]) else "")
        lines.append(f"- `{row['head']}` against `{row['reference']}` at overall FMR {row['target_fmr']:g}: "
                     f"{row['rate'].upper()} ratio {row['ratio']} {row['head_ratio']:.2f} vs {row['reference_ratio']:.2f}, "
                     f"ratio of ratios {row['ratio_of_ratios']:.2f}{interval}, p = {row['p_value']:.2g} "
                     f"(Holm {row['p_adjusted']:.2g}): {row['verdict']}.")
    return "\n".join(lines)
