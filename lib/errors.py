"""The one exception the data loaders raise, and a helper that keeps its messages short.

Every data problem (missing folder, wrong CSV header, unknown label, missing or corrupt image,
malformed protocol line) raises :class:`DataError` with a message that says what is wrong *and*
what to do about it. It subclasses ``ValueError`` so generic handlers still catch it.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


class DataError(ValueError):
    """A problem with the data on disk (or on the Hub) that the user can fix; the message says how."""


def examples(items: Iterable, limit: int = 5) -> str:
    """``"a, b, c, ... (12 in all)"``: the first ``limit`` items of a list for an error message."""
    items = [str(item) for item in items]
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items)} in all)"


def read_utf8(path, what: str) -> str:
    """The text of a UTF-8 file, without a leading byte-order mark (Windows editors add one, and it
    would otherwise stick to the first name or number), or a :class:`DataError` naming the file, the
    line and the byte when the file is not UTF-8 (e.g. latin-1 accents). ``what`` names the file's role."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DataError(
            f"{path}:{line}: byte 0x{data[error.start]:02x} (offset {error.start}) is not UTF-8; {what} must "
            f"be UTF-8 (or ASCII) text. If it was saved as latin-1, convert it with "
            f"`iconv -f latin1 -t utf-8`, or re-download it."
        ) from None


def human_bytes(count: int) -> str:
    """``"14.7 GB"``, ``"2.8 MB"``, ``"512 bytes"``: a size for a message (decimal units, as ``df -H``)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


@contextmanager
def open_npz(path, remedy: str) -> Iterator:
    """``np.load(path)`` of an ``.npz`` (no pickles), with a truncated or damaged file, found on opening or
    while its arrays are read in the ``with`` block, reported as a :class:`DataError` that names the file
    and says what to do (``remedy``, e.g. "re-run notebook 02 to rewrite it") instead of a bare
    ``BadZipFile`` or ``EOFError``."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            yield data
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError) as error:
        if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise  # not the file's content: the usual message says what is wrong
        raise DataError(f"{path} is not a readable .npz file, it is truncated or damaged ({type(error).__name__}: "
                        f"{error}); {remedy}") from error
