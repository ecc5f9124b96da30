"""The colab profile's first-run safety nets, on a CPU: the GPU guard, the report copy that never writes
outside its folder, the time estimates the README and the launcher share, the GPU check script."""

from __future__ import annotations

import subprocess

import pytest
import torch

from lib import notebooks, parameters, paths
from lib.parameters import ParameterError, declared_in


def notebook_defaults(stem: str) -> dict:
    return declared_in(paths.NOTEBOOKS / f"{stem}.py")


# ------------------------------------------------------------------------------------------ GPU guard
@pytest.mark.parametrize("stem", ["01_data_audit", "02_sphereface", "03_cosrelu_vs_softmax"])
def test_colab_profile_stops_without_a_gpu_and_says_how_to_get_one(stem, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    values = {**notebook_defaults(stem), **notebooks.notebook_parameters("colab", stem)}
    assert values["allow_cpu"] is False  # set by params/colab.yaml, not by the notebook
    with pytest.raises(ParameterError) as info:
        parameters.validate(stem, values, check_paths=False, quiet=True)
    message = str(info.value)
    assert "allow_cpu" in message and "Runtime → Change runtime type → GPU" in message
    assert "nothing was run" in message


def test_allow_cpu_opts_in_and_a_gpu_passes(monkeypatch):
    stem = "03_cosrelu_vs_softmax"
    values = {**notebook_defaults(stem), **notebooks.notebook_parameters("colab", stem)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    parameters.validate(stem, {**values, "allow_cpu": True}, check_paths=False, quiet=True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    parameters.validate(stem, values, check_paths=False, quiet=True)


def test_other_profiles_run_on_a_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for profile in ("smoke", "default", "real"):
        for stem in ("01_data_audit", "02_sphereface", "03_cosrelu_vs_softmax"):
            values = {**notebook_defaults(stem), **notebooks.notebook_parameters(profile, stem)}
            assert parameters.gpu_guard(values) is None, (profile, stem)


def test_the_runner_stops_before_the_first_notebook(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    executed = []
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: executed.append(a))
    with pytest.raises(SystemExit, match="Change runtime type → GPU"):
        notebooks.execute("colab")
    assert executed == []
