"""Result tables: written so that a crash or a second writer never leaves half a file behind, and shown on
the pages in one number format per quantity (:func:`style`, :func:`setup_display`).

Every writer goes through :func:`atomic_write`: the content is written to a temporary file with a
unique name in the target's folder, then renamed over the target with ``os.replace``. A rename within
one file system is atomic (POSIX ``rename(2)``; ``MoveFileEx`` with ``MOVEFILE_REPLACE_EXISTING`` on
Windows), so a reader sees either the old file or the new one, never a mixture, and never a missing
file once the target exists. The temporary name holds the process id, the thread id and a random
token, so two runs (or two threads of one run) writing the same target never share a temporary file:
a fixed name such as ``.<name>.<pid>.tmp`` is shared by the threads of one process, and a plain
``<name>.tmp`` by every process. If writing fails, the temporary file is removed and the target is
left as it was.

A writer killed mid-write (``kill -9``, a lost Colab session) leaves its temporary file behind. Its name
ends like a result's (``.X.csv.<pid>-<tid>-<hex>.tmp.csv`` matches ``*.csv``), so every reader that lists
a folder of results goes through :func:`result_files`, which never returns a temporary file and first
deletes those of writers that no longer run (:func:`remove_stale_temporaries`).

Every table a notebook shows goes through :func:`style` (:func:`setup_display` makes it the HTML of every
displayed ``DataFrame``): accuracies, shares and other measurements at three decimals, p-values at two
significant digits, counts as integers with thousands separators, durations at one decimal, settings
such as a learning rate as written (``5e-04`` stays 0.0005), and a missing value as "—", never "NaN".
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "MISSING",
    "atomic_write",
    "cell_format",
    "is_temporary",
    "remove_stale_temporaries",
    "result_files",
    "setup_display",
    "style",
    "temporary_name",
    "write_csv",
    "write_text",
]

# .<target name>.<pid>-<thread id>-<8 hex>.tmp<target suffix>, as temporary_name() builds it
_TEMPORARY = re.compile(r"^\..+\.(?P<pid>\d+)-\d+-[0-9a-f]+\.tmp(\.[^.]*)?$")


def temporary_name(path: str | os.PathLike) -> Path:
    """A fresh hidden name beside ``path``: ``.<name>.<pid>-<thread>-<random>.tmp<suffix>``.

    The target's suffix is kept at the end so that writers which infer a format from the file name
    (``to_csv`` compression for ``.gz``, ``savefig`` for ``.png``) still infer the right one.
    """
    path = Path(path)
    token = f"{os.getpid()}-{threading.get_ident()}-{secrets.token_hex(4)}"
    return path.with_name(f".{path.name}.{token}.tmp{path.suffix}")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary_path)``, then rename the temporary file over ``path``.

    The temporary file is created empty first, exclusively (``open(..., "x")``), so no other writer
    can hold the same name and the file gets the usual permissions (``0o666`` minus the umask).
    On any exception the temporary file is removed, ``path`` is untouched and the exception propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, of=path)
    while True:
        temp = temporary_name(path)
        try:
            with open(temp, "x"):
                break
        except FileExistsError:  # a random collision: draw another token
            continue
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def write_csv(frame: pd.DataFrame, path: str | os.PathLike, index: bool = False, **to_csv_options) -> Path:
    """``frame.to_csv(path, index=index)``, atomically (see :func:`atomic_write`); returns ``path``."""
    return atomic_write(path, lambda temp: frame.to_csv(temp, index=index, **to_csv_options))


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """``Path(path).write_text(text)``, atomically (see :func:`atomic_write`); returns ``path``."""
    return atomic_write(path, lambda temp: temp.write_text(text, encoding=encoding))


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like a temporary file of :func:`atomic_write` (never a result)."""
    return _TEMPORARY.match(Path(path).name) is not None


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` may still be writing its temporary file (when in doubt: yes, so that a live
    writer's file is never removed)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # another user's process, or not a pid we can check: leave its file alone
    return True


def remove_stale_temporaries(folder: str | os.PathLike, of: str | os.PathLike | None = None) -> list[Path]:
    """Delete the temporary files in ``folder`` (only those of target ``of``, when given) left by
    :func:`atomic_write` calls of processes that no longer run (a writer killed mid-write); returns what
    was removed. A live writer's file is kept. :func:`atomic_write` calls it for its target before writing,
    :func:`result_files` for the folder before listing it."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    candidates = folder.glob(f".{glob.escape(Path(of).name)}.*.tmp*") if of is not None else folder.iterdir()
    for path in sorted(candidates):
        match = _TEMPORARY.match(path.name)
        if match and path.is_file() and not process_alive(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def result_files(folder: str | os.PathLike, pattern: str = "*.csv") -> list[Path]:
    """The result files in ``folder`` that match ``pattern``, sorted; never a hidden file (a name that
    starts with "."): not a temporary file of an unfinished or killed write (those of dead writers are
    deleted first), nor another tool's (macOS's ``._X.csv``). ``[]`` when ``folder`` does not exist."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    remove_stale_temporaries(folder)
    return sorted(path for path in folder.glob(pattern) if path.is_file() and not path.name.startswith("."))


# --------------------------------------------------------------------------------------------------
# Shown tables: one number format per quantity
# --------------------------------------------------------------------------------------------------
MISSING = "—"  # a missing value (a head without a branch, a side without a number): never "NaN"
_P_VALUE = re.compile(r"^p([ _-]?(value|adjusted|adj))?$|^p[ _-]?value|^p[ _-]adjusted", re.IGNORECASE)
_DURATION = re.compile(r"minutes|seconds|\bhours\b|wall|_s$", re.IGNORECASE)
_RATE = re.compile(r"^(fmr|fnmr)([ _-](lower|upper|low|high))?$", re.IGNORECASE)  # error rates, down to 1e-5
_SETTING = re.compile(r"^(lr|learning[ _]rate|weight[ _]decay|target[ _]fmr|far|fmr target)$", re.IGNORECASE)


def _names(column) -> list[str]:
    """Every level's name of a column label (a tuple for MultiIndex columns), as strings."""
    return [str(level) for level in (column if isinstance(column, tuple) else (column,))]


def _is_missing(value) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):  # an array-like cell
        return False


def _count(value) -> str:
    return f"{int(round(float(value))):,}"


def _measurement(value) -> str:
    return f"{float(value):.3f}"


def _p_value(value) -> str:
    return f"{float(value):#.2g}"  # 2 significant digits: 0.046, 0.00050, 1.0


def _rate(value) -> str:
    """An error rate: three decimals from 0.01 up, else two significant digits (0.0014, 1.2e-05), so the rates
    at an FMR of 1e-4 or 1e-5 do not all read 0.000."""
    value = float(value)
    return f"{value:.3f}" if value == 0 or abs(value) >= 0.01 else f"{value:.2g}"


def _duration(value) -> str:
    return f"{float(value):,.1f}"


def _setting(value) -> str:
    return f"{float(value):g}"  # a learning rate of 5e-4 reads 0.0005, not 0.001 nor 0.000500


def _value(value) -> str:
    """Any one cell, by its own type: integers as counts, floats as measurements, text as it is."""
    if _is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return _measurement(value)
    return str(value)


def cell_format(column, values: pd.Series):
    """The formatter (value → text) for one column of a shown table, chosen by its name, then its values:
    p-values (``p``, ``p_value``, ``p_adjusted``) at two significant digits; error rates (``fmr``, ``fnmr``
    and their bounds) at three decimals from 0.01 up, else two significant digits; durations (``minutes``,
    ``seconds``) at one decimal; settings (``lr``, ``weight_decay``, ``target_fmr``) as written; integers,
    and floats that are all whole numbers with one above 1 (a count turned float by a missing value:
    ``8271.0``), as counts; other floats at three decimals; anything else by its own type. Missing → "—"."""
    names = _names(column)
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric:
        if any(_P_VALUE.search(name) for name in names):
            chosen = _p_value
        elif any(_RATE.match(name) for name in names):
            chosen = _rate
        elif any(_DURATION.search(name) for name in names):
            chosen = _duration
        elif any(_SETTING.match(name) for name in names):
            chosen = _setting
        elif pd.api.types.is_integer_dtype(values):
            chosen = _count
        else:
            present = values.dropna().to_numpy(dtype=float)
            finite = present[np.isfinite(present)]
            whole = len(finite) > 0 and bool(np.all(finite == np.round(finite))) and bool(np.any(np.abs(finite) > 1))
            chosen = _count if whole else _measurement
        return lambda value: MISSING if _is_missing(value) else chosen(value)
    return _value


def _label(value) -> str:
    """An index or header label: a missing one as "—", a float as written (0.001, not 1.000e-03)."""
    if _is_missing(value):
        return MISSING
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


def style(frame: pd.DataFrame, formats: dict | None = None, *, caption: str | None = None):
    """``frame`` as a pandas ``Styler`` in the project's one number format (see :func:`cell_format`);
    ``formats`` overrides a column's formatter (a format string such as ``"{:+.3f}"`` or a callable).
    The frame itself is not changed."""
    formats = dict(formats or {})
    styler = frame.style.set_table_attributes('class="dataframe"')
    unique = frame.columns.is_unique
    for position, column in enumerate(frame.columns):
        chosen = formats.get(column) or cell_format(column, frame.iloc[:, position])
        if isinstance(chosen, str):
            template = chosen
            chosen = lambda value, template=template: MISSING if _is_missing(value) else template.format(value)
        if unique:
            styler = styler.format(chosen, subset=pd.IndexSlice[:, [column]])
        else:  # a repeated name: one formatter, by each cell's own type
            styler = styler.format(_value)
            break
    for axis in ("index", "columns"):
        styler = styler.format_index(_label, axis=axis, level=None)
    if caption:
        styler = styler.set_caption(caption)
    return styler


def _frame_html(frame: pd.DataFrame) -> str:
    """The HTML of a displayed ``DataFrame``: :func:`style`, cut like pandas' own display (``display.max_rows``
    and ``display.max_columns``)."""
    max_rows = pd.get_option("display.max_rows")
    rows = pd.get_option("display.min_rows") if max_rows and len(frame) > max_rows else max_rows
    try:
        return style(frame).to_html(max_rows=rows or None, max_columns=pd.get_option("display.max_columns") or None)
    except Exception:  # a frame the Styler cannot render: pandas' own table, missing values still as "—"
        return frame.to_html(na_rep=MISSING, max_rows=max_rows, max_cols=pd.get_option("display.max_columns"))


def setup_display(shell=None) -> None:
    """Show every ``DataFrame`` a notebook displays through :func:`style` (its HTML; the plain-text form is
    pandas' own) and never cut a cell's text short. Called once at the top of each notebook, beside
    ``lib.plots.setup_style``; outside IPython only the pandas option is set."""
    pd.set_option("display.max_colwidth", None)
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - IPython is a dependency of the notebooks extra
            return
        shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, _frame_html)
