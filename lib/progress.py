"""Progress bars that stay readable in notebooks executed by papermill.

A ``tqdm.auto`` bar redraws many times a second; in a notebook executed headless every redraw becomes
a line of saved output. The project's notebook runner sets ``FACE_PROGRESS=plain`` (see
``lib.notebooks``), which switches to a plain text bar that prints at most every 30 seconds.

``FACE_PROGRESS``:

* unset or ``auto``: ``tqdm.auto.tqdm`` (a widget in Jupyter, text in a terminal);
* ``plain``: ``tqdm.std.tqdm`` on stderr with ``mininterval=30`` (overridable by the caller), each bar's
  final state kept as one log line;
* ``off``: the bar is disabled (the iterable is still iterated normally).
"""

from __future__ import annotations

import os
import sys

from tqdm import std as tqdm_std

ENV_VARIABLE = "FACE_PROGRESS"
MODES = ("auto", "plain", "off")
PLAIN_MIN_INTERVAL_S = 30.0


def progress_mode() -> str:
    """The mode named by ``FACE_PROGRESS`` (``"auto"`` when unset or empty)."""
    mode = os.environ.get(ENV_VARIABLE, "").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"{ENV_VARIABLE}={mode!r} is not a progress mode; use one of {list(MODES)}")
    return mode


def progress(iterable=None, **kwargs):
    """A tqdm bar over ``iterable`` (or a manual one with ``total=``) following ``FACE_PROGRESS``.

    Keyword arguments go to tqdm unchanged (``desc``, ``total``, ``leave``, ``disable``, ...);
    a caller's ``disable=True`` always wins.
    """
    mode = progress_mode()
    if mode == "off":
        kwargs["disable"] = True
        return tqdm_std.tqdm(iterable, **kwargs)
    if mode == "plain":
        kwargs.setdefault("mininterval", PLAIN_MIN_INTERVAL_S)
        kwargs.setdefault("file", sys.stderr)
        # A text bar in a saved notebook is a log, not an animation: no in-place width games.
        kwargs.setdefault("dynamic_ncols", False)
        kwargs.setdefault("ncols", 100)
        # A bar closed with leave=False is "erased" by writing spaces, which a log keeps as a blank line;
        # keeping the final state instead leaves one informative line per bar.
        kwargs["leave"] = True
        return tqdm_std.tqdm(iterable, **kwargs)
    # Imported here: tqdm.auto warns at import time when ipywidgets is missing, even if never used.
    from tqdm import auto as tqdm_auto

    return tqdm_auto.tqdm(iterable, **kwargs)
