"""Opening ``notebooks/NN_*.ipynb`` and running all reproduces the ``default`` profile's settings.

Each notebook's ``parameters`` cell holds the defaults a reader gets when editing interactively;
papermill injects ``params/default.yaml`` (``common`` values the notebook declares, then its own
section) for ``make all``. The two must agree value for value.
"""

from __future__ import annotations

import ast
from numbers import Real

import papermill
import pytest

from lib import notebooks, paths


def parameter_cell_defaults(stem: str) -> dict:
    """Name -> value of every assignment in notebook ``stem``'s parameters cell (literals only)."""
    declared = papermill.inspect_notebook(str(paths.NOTEBOOKS / f"{stem}.ipynb"))
    values = {}
    for name, info in declared.items():
        try:
            values[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError) as error:
            raise AssertionError(f"notebooks/{stem}.py: the default of {name!r} ({info['default']}) is not a "
                                 f"literal, so the profile cannot be compared with it") from error
    return values


def same_value(a, b) -> bool:
    """Equal and of the same kind: 1 == 1.0 counts, True == 1 and '1e-3' == 0.001 do not."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, Real) and isinstance(b, Real):
        return a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("stem", [source.stem for source in notebooks.notebook_sources()])
def test_parameter_cell_matches_the_default_profile(stem):
    defaults = parameter_cell_defaults(stem)
    expected = notebooks.notebook_parameters("default", stem)
    mismatches = {name: {"parameters cell": defaults.get(name, "<not declared>"), "params/default.yaml": value}
                  for name, value in expected.items() if not same_value(defaults.get(name), value)}
    assert not mismatches, f"notebooks/{stem}.py parameters cell vs params/default.yaml: {mismatches}"


def test_same_value_is_strict_about_kinds():
    assert same_value(1, 1.0) and same_value([0, 1], [0, 1]) and same_value({"a": [1]}, {"a": [1.0]})
    assert not same_value(True, 1) and not same_value("1e-3", 0.001) and not same_value(None, 0)
    assert not same_value([0, 1], [0, 1, 2]) and not same_value({"a": 1}, {"b": 1})


@pytest.mark.parametrize("stem", [source.stem for source in notebooks.notebook_sources()])
def test_papermill_reads_every_assignment_of_the_parameters_cell(stem):
    """A line papermill cannot parse is silently left out of the declared parameters (it only warns), and
    a profile that sets it is then rejected as 'not a parameter of the notebook'."""
    import nbformat

    notebook = nbformat.read(paths.NOTEBOOKS / f"{stem}.ipynb", as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    assigned = {target.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    assert assigned == set(papermill.inspect_notebook(str(paths.NOTEBOOKS / f"{stem}.ipynb")))


@pytest.mark.parametrize("stem", [source.stem for source in notebooks.notebook_sources()])
def test_profile_changed_by_hand_says_which_values_differ_and_the_line_that_applies_them(stem):
    """In a lab, setting only `profile = "real"` would run the real profile's name on the default values
    (synthetic data, CPU-sized epochs); the parameter check says so and gives the line that applies them."""
    from lib.parameters import SPECS, declared_in, validate

    namespace = {**declared_in(paths.NOTEBOOKS / f"{stem}.py"), "profile": "real"}
    expected = {name for name, value in notebooks.notebook_parameters("real", stem).items()
                if name in SPECS[stem] and not same_value(namespace.get(name), value)}
    notes = validate(stem, namespace, check_paths=False, quiet=True)
    differ = [note for note in notes if "differ from params/real.yaml" in note]
    assert len(differ) == 1 and differ[0].startswith(f"{len(expected)} value(s) differ"), notes
    assert all(f"{name} = " in differ[0] for name in expected)
    line = differ[0].split("`")[1]
    exec(line, namespace)  # the suggested cell, as a user would paste it
    assert not [note for note in validate(stem, namespace, check_paths=False, quiet=True) if "differ from" in note]


def test_face_alignment_parameters_of_notebook_02():
    from lib import parameters

    base = {"profile": "default", "lfw_source": "synthetic", "alignment": "center", "align_margin": 0.0}
    parameters.validate("02", base, check_paths=False, quiet=True)  # no error
    with pytest.raises(parameters.ParameterError, match=r"alignment = 'aligned'.*synthetic faces are drawn"):
        parameters.validate("02", {**base, "alignment": "aligned"}, check_paths=False)
    with pytest.raises(parameters.ParameterError, match=r"align_margin = 0.1.*only aligned faces have a margin"):
        parameters.validate("02", {**base, "align_margin": 0.1}, check_paths=False)
    with pytest.raises(parameters.ParameterError, match=r"alignment = 'dlib'"):
        parameters.validate("02", {**base, "alignment": "dlib"}, check_paths=False)
    parameters.validate("02", {**base, "lfw_source": "shared", "alignment": "aligned", "align_margin": 0.2},
                        check_paths=False, quiet=True)


def test_longer_run_parameter_of_notebook_03():
    from lib import parameters

    base = {"profile": "default", "fairface_source": "synthetic"}
    for good in (None, {"target": "race", "head": "normsoftmax", "seed": 0}):
        parameters.validate("03", {**base, "longer_run": good}, check_paths=False, quiet=True)
    for bad, message in (({"target": "race", "head": "normsoftmax"}, "keys target, head and seed"),
                         ({"target": "race", "head": "nosuchhead", "seed": 0}, "unknown head"),
                         ({"target": "height", "head": "cosface", "seed": 0}, "height"),
                         ("race", "not a mapping")):
        with pytest.raises(parameters.ParameterError, match=message):
            parameters.validate("03", {**base, "longer_run": bad}, check_paths=False)
