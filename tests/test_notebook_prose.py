"""What the notebooks' prose says to a reader: no parameter names used as words (issue 26)."""

from __future__ import annotations

import re

import jupytext
import pytest

from lib import notebooks


@pytest.mark.parametrize("source", notebooks.notebook_sources(), ids=lambda p: p.stem)
def test_prose_does_not_use_parameter_names_as_words(source):
    declared = notebooks.declared_parameters(source.stem)
    markdown = [cell.source for cell in jupytext.read(source).cells if cell.cell_type == "markdown"]
    named = sorted({name for text in markdown for name in re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", text)
                    if name in declared})
    assert named == [], f"{source.name}: parameter names in the prose: {named}"
