"""Writing result files so that a crash or a second writer never leaves half a file behind.

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
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

import pandas as pd

__all__ = [
    "atomic_write",
    "is_temporary",
    "remove_stale_temporaries",
    "result_files",
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
