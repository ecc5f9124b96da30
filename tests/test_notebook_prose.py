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


@pytest.mark.parametrize("source", notebooks.notebook_sources(), ids=lambda p: p.stem)
def test_messages_on_the_page_do_not_use_parameter_names_as_words(source):
    """Text the code cells put on the page (Markdown(...), print(...)) says what a setting does, not its
    variable name: 04 printed "see `head_pairs` in notebook 03" (another notebook's parameter)."""
    declared = set().union(*(notebooks.declared_parameters(s.stem) for s in notebooks.notebook_sources()))
    named = set()
    for cell in jupytext.read(source).cells:
        if cell.cell_type != "code" or "parameters" in cell.metadata.get("tags", []):
            continue
        for literal in re.findall(r'"([^"\n]*)"', cell.source):
            words = re.sub(r"\{[^}]*\}", "", literal)  # an f-string's placeholders are values, not names
            named |= {name for name in re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", words) if name in declared}
            named |= {name for name in re.findall(r"\b([a-z]+(?:_[a-z0-9]+)+)\b is (?:off|on)\b", words)
                      if name in declared}
    assert sorted(named) == [], f"{source.name}: parameter names in messages: {sorted(named)}"
