"""Canonical label vocabularies, in one fixed order used everywhere (tables, plots, class ids).

FairFace strings are the exact ones of the official CSVs. The Hugging Face Hub copy stores the same
labels as ClassLabel integers in a *different* order, so loaders always map by string, never by id.
The synthetic dataset uses neutral group names in the same CSV column (``race``).
"""

from __future__ import annotations

# Order of the FairFace authors' released model (dchen236/FairFace, predict.py `assign_labels`, at 195801a);
# not sorted, not the Hub's order.
RACES = (
    "White",
    "Black",
    "Latino_Hispanic",
    "East Asian",
    "Southeast Asian",
    "Indian",
    "Middle Eastern",
)
GENDERS = ("Male", "Female")
AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")

# The Hub's ClassLabel order for `race` (HuggingFaceM4/FairFace), kept only to test string mapping.
HUB_RACE_ORDER = (
    "East Asian",
    "Indian",
    "Black",
    "White",
    "Middle Eastern",
    "Latino_Hispanic",
    "Southeast Asian",
)

# The embedded synthetic dataset's seven demographic-like groups (neutral names, overlapping looks).
SYNTHETIC_GROUPS = tuple(f"Group {letter}" for letter in "ABCDEFG")

VOCABULARIES = {"race": RACES, "gender": GENDERS, "age": AGES}


def race_vocabulary(values) -> tuple[str, ...]:
    """The vocabulary a `race` column uses: FairFace's races or the synthetic groups.

    Raises ``ValueError`` naming the unknown strings when the values fit neither (or mix both).
    """
    seen = set(map(str, values))
    for vocabulary in (RACES, SYNTHETIC_GROUPS):
        if seen <= set(vocabulary):
            return vocabulary
    unknown = sorted(seen - set(RACES) - set(SYNTHETIC_GROUPS))
    if unknown:
        raise ValueError(
            f"unknown race label(s) {unknown[:5]}; expected FairFace's {list(RACES)} "
            f"or the synthetic {list(SYNTHETIC_GROUPS)}"
        )
    raise ValueError("race column mixes FairFace race labels and synthetic group labels")
