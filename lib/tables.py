"""Writing result tables so that a crash never leaves half a file behind."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def write_csv(frame: pd.DataFrame, path: str | os.PathLike, index: bool = False) -> Path:
    """``frame.to_csv(path)`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        frame.to_csv(temp, index=index)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path
