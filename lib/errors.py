"""The one exception the data loaders raise, and a helper that keeps its messages short.

Every data problem (missing folder, wrong CSV header, unknown label, missing or corrupt image,
malformed protocol line) raises :class:`DataError` with a message that says what is wrong *and*
what to do about it. It subclasses ``ValueError`` so generic handlers still catch it.
"""

from __future__ import annotations

from collections.abc import Iterable


class DataError(ValueError):
    """A problem with the data on disk (or on the Hub) that the user can fix; the message says how."""


def examples(items: Iterable, limit: int = 5) -> str:
    """``"a, b, c, ... (12 in all)"``: the first ``limit`` items of a list for an error message."""
    items = [str(item) for item in items]
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items)} in all)"
