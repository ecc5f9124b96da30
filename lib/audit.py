"""Data-audit computations for notebook 01: counts, image statistics, exact duplicates, LFW protocol checks.

Everything here works on the canonical tables of :mod:`lib.fairface` (one row per image with ``id``,
``split``, ``image``, ``age``, ``gender``, ``race``, ``service_test``) and :class:`lib.lfw.LFW`.
"""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from lib.progress import progress

LABEL_COLUMNS = ("race", "gender", "age")


def _read_bytes(ref) -> bytes:
    return bytes(ref) if isinstance(ref, (bytes, bytearray, memoryview)) else Path(ref).read_bytes()


# ----------------------------------------------------------------------------------------------- counts
def split_sizes(table: pd.DataFrame) -> pd.DataFrame:
    """Number of images per split, with the share of the whole."""
    counts = table.groupby("split", observed=True).size().rename("images").to_frame()
    counts["share"] = counts["images"] / counts["images"].sum()
    return counts


def label_counts(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Counts and within-split proportions of one label column, categories in canonical order."""
    counts = pd.crosstab(table[column], table["split"], dropna=False)
    shares = counts / counts.sum(axis=0)
    return pd.concat({"count": counts, "share": shares.round(4)}, axis=1)


def service_test_balance(table: pd.DataFrame) -> pd.DataFrame:
    """Race x gender counts inside the ``service_test`` subset (designed to be balanced) per split."""
    subset = table[table["service_test"]]
    return pd.crosstab([subset["split"], subset["race"]], subset["gender"], margins=True, margins_name="total")


# ----------------------------------------------------------------------------------------- image stats
def _describe_image(ref) -> dict:
    data = _read_bytes(ref)
    try:
        with Image.open(io.BytesIO(data)) as image:
            return {"width": image.width, "height": image.height, "mode": image.mode,
                    "format": image.format, "bytes": len(data)}
    except Exception as error:  # noqa: BLE001 - an unreadable file is a finding, not a crash
        return {"width": np.nan, "height": np.nan, "mode": None, "format": f"unreadable: {error}", "bytes": len(data)}


def image_statistics(refs, sample: int | None = 500, seed: int = 0) -> pd.DataFrame:
    """Width, height, mode, format and file size of (a seeded sample of) images; reads headers only."""
    refs = list(refs)
    if sample is not None and len(refs) > sample:
        chosen = np.random.default_rng(seed).choice(len(refs), size=sample, replace=False)
        refs = [refs[i] for i in sorted(chosen)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        rows = list(progress(pool.map(_describe_image, refs), total=len(refs), desc="image headers"))
    return pd.DataFrame(rows)


def summarize_image_statistics(stats: pd.DataFrame) -> pd.DataFrame:
    """One row per (format, mode, size) combination with its count, plus mean file size."""
    keyed = stats.assign(size=stats["width"].astype("Int64").astype(str) + "x" + stats["height"].astype("Int64").astype(str))
    return (keyed.groupby(["format", "mode", "size"], dropna=False)
            .agg(images=("bytes", "size"), mean_kib=("bytes", lambda b: round(b.mean() / 1024, 1)))
            .reset_index())


# ---------------------------------------------------------------------------------- exact duplicates
def content_hashes(refs, desc: str = "hashing") -> list[str]:
    """SHA-256 of each image's bytes (exact, byte-identical duplicates only)."""
    refs = list(refs)

    def digest(ref) -> str:
        return hashlib.sha256(_read_bytes(ref)).hexdigest()

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(progress(pool.map(digest, refs), total=len(refs), desc=desc))


def find_duplicates(table: pd.DataFrame, hashes: list[str] | None = None) -> pd.DataFrame:
    """Groups of byte-identical images.

    Returns one row per duplicated image: ``hash``, ``group`` (a small integer per set of identical
    files), ``id``, ``split``, the label columns, and per group: ``scope`` (``within train``, ``within
    val`` or ``across splits``) and ``conflicting_labels`` (the label columns whose values differ inside
    the group, comma-separated; empty when the copies agree).
    """
    hashes = content_hashes(table["image"]) if hashes is None else hashes
    frame = table.assign(hash=hashes)
    duplicated = frame[frame.duplicated("hash", keep=False)].copy()
    columns = ["group", "hash", "id", "split", *LABEL_COLUMNS, "scope", "conflicting_labels"]
    if duplicated.empty:
        return pd.DataFrame(columns=columns)
    duplicated["group"] = duplicated.groupby("hash", sort=False).ngroup()

    def describe(members: pd.DataFrame) -> pd.Series:
        splits = sorted(set(members["split"]))
        scope = "across splits" if len(splits) > 1 else f"within {splits[0]}"
        conflicts = [c for c in LABEL_COLUMNS if members[c].astype(str).nunique() > 1]
        return pd.Series({"scope": scope, "conflicting_labels": ", ".join(conflicts)})

    per_group = duplicated.groupby("group")[["split", *LABEL_COLUMNS]].apply(describe)
    duplicated = duplicated.join(per_group, on="group")
    return duplicated[columns].sort_values(["group", "split", "id"]).reset_index(drop=True)


def duplicate_sets_to_show(duplicates: pd.DataFrame, limit: int = 5) -> list[int]:
    """Ids (``group``) of at most ``limit`` duplicate sets for a figure: sets with conflicting labels
    first, then sets spanning train and validation, then the rest; by id within each kind."""
    if duplicates.empty:
        return []
    firsts = duplicates.drop_duplicates("group")
    rank = (firsts["conflicting_labels"] == "").astype(int) * 2 + (firsts["scope"] != "across splits").astype(int)
    return [int(g) for g in firsts.assign(rank=rank).sort_values(["rank", "group"])["group"].head(limit)]


def duplicate_summary(duplicates: pd.DataFrame) -> pd.DataFrame:
    """Per scope: number of duplicate groups, images involved, and groups with conflicting labels."""
    if duplicates.empty:
        return pd.DataFrame({"groups": [0], "images": [0], "groups_with_conflicting_labels": [0]},
                            index=pd.Index(["none"], name="scope"))
    groups = duplicates.drop_duplicates("group")
    return pd.DataFrame({
        "groups": groups.groupby("scope").size(),
        "images": duplicates.groupby("scope").size(),
        "groups_with_conflicting_labels": groups[groups["conflicting_labels"] != ""].groupby("scope").size(),
    }).fillna(0).astype(int).rename_axis("scope")


# ------------------------------------------------------------------------------------------------- LFW
def images_per_identity(images: pd.DataFrame) -> pd.Series:
    """Number of images of each identity (index: name), largest first."""
    return images.groupby("name").size().sort_values(ascending=False).rename("images")


def pair_identities(pairs: pd.DataFrame) -> pd.DataFrame:
    """Long table (fold, name) of every identity a pair file uses."""
    left = pairs[["fold", "name1"]].rename(columns={"name1": "name"})
    right = pairs[["fold", "name2"]].rename(columns={"name2": "name"})
    return pd.concat([left, right]).drop_duplicates().reset_index(drop=True)


def fold_overlap_matrix(pairs: pd.DataFrame) -> pd.DataFrame:
    """Identities shared by each pair of View 2 folds (off-diagonal zeros = identity-disjoint folds)."""
    ids = pair_identities(pairs)
    sets = {fold: set(group["name"]) for fold, group in ids.groupby("fold")}
    folds = sorted(sets)
    return pd.DataFrame([[len(sets[a] & sets[b]) for b in folds] for a in folds],
                        index=pd.Index(folds, name="fold"), columns=pd.Index(folds, name="fold"))


def view_overlap(train_names, view2_pairs: pd.DataFrame, images: pd.DataFrame) -> dict:
    """How many View 1 training identities (and their images) also appear in View 2's pairs."""
    train = set(train_names)
    view2 = set(pair_identities(view2_pairs)["name"])
    shared = train & view2
    return {
        "view1_train_identities": len(train),
        "view2_identities": len(view2),
        "shared_identities": len(shared),
        "shared_identity_images": int(images["name"].isin(shared).sum()),
        "view2_pairs_touching_shared": int((view2_pairs["name1"].isin(shared) | view2_pairs["name2"].isin(shared)).sum()),
        "view2_pairs": len(view2_pairs),
    }
