#!/bin/sh
# Install the project for `make` (its $(STAMP) rule runs this; settings come from the environment).
#   VENV=<folder>  (default .venv) a virtual environment made with $PYTHON -m venv, the project installed in it.
#   VENV=none      install into $PYTHON itself (Colab's default: the Makefile sets it when COLAB_RELEASE_TAG
#                  is set). torch, torchvision and torchaudio already installed there are pinned to their
#                  installed versions with a pip constraints file, so pip can never replace them (on Colab:
#                  its CUDA build that matches the driver), and the versions are compared after installing.
#   EXTRAS         the pyproject extras to install (default dev: notebooks, Hub, test tools).
#   STAMP          the file touched on success.
#   CONSTRAINTS    the pinned versions (default constraints.txt, written by `make constraints`): applied when
#                  this Python's version is the one they were resolved under (their first line); into an
#                  existing Python (VENV=none) only for packages not installed there yet, so Colab keeps its
#                  torch and the rest of its stack. CONSTRAINTS=none installs the newest allowed versions.
set -eu
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-dev}
STAMP=${STAMP:?STAMP must name the stamp file}
CONSTRAINTS=${CONSTRAINTS:-constraints.txt}

fail() {
    printf 'make setup: %s\n' "$*" >&2
    exit 1
}

# The installed versions of the torch packages, one "name==version" line each (pip constraints syntax).
torch_pins() {
    "$1" - <<'PY'
from importlib import metadata
for name in ("torch", "torchvision", "torchaudio"):
    try:
        print(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pass
PY
}

# Writes to $2 the lines of $CONSTRAINTS that apply to interpreter $1 (nothing when CONSTRAINTS=none, the file
# is missing, or it was resolved under another Python version; with $3 = keep-installed, also without the
# packages already installed in $1); says on stderr what it did.
applicable_constraints() {
    : >"$2"
    [ "$CONSTRAINTS" = none ] && return 0
    [ -f "$CONSTRAINTS" ] || { echo "make setup: no $CONSTRAINTS; installing the newest allowed versions" >&2; return 0; }
    "$1" - "$CONSTRAINTS" "$2" "${3:-}" <<'PY'
import re, sys
from importlib import metadata
source, target, mode = sys.argv[1], sys.argv[2], sys.argv[3]
lines = open(source, encoding="utf-8").read().splitlines()
wanted = next((l.split(":", 1)[1].strip() for l in lines if l.startswith("# python:")), None)
here = "%d.%d" % sys.version_info[:2]
if wanted != here:
    print(f"make setup: {source} was resolved under Python {wanted}, this is {here}: installing without the pins",
          file=sys.stderr)
    sys.exit(0)
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
installed = {norm(d.metadata["Name"]) for d in metadata.distributions() if d.metadata["Name"]} \
    if mode == "keep-installed" else set()
pins = [l for l in lines if l and not l.startswith("#") and norm(l.split("==")[0]) not in installed]
open(target, "w", encoding="utf-8").write("\n".join(pins) + "\n")
kept = f", {len(installed)} installed packages kept as they are" if installed else ""
print(f"make setup: pinned versions from {source} ({len(pins)} pins{kept})", file=sys.stderr)
PY
}

mkdir -p build/setup
pinned=build/setup/constraints.txt

if [ "$VENV" = none ]; then
    PY=$PYTHON
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
        fail "$PY is not a Python >= 3.10 interpreter; set PYTHON=/path/to/python3"
    "$PY" -m pip --version >/dev/null 2>&1 ||
        fail "$PY has no pip (install python3-pip), or use a virtual environment instead: VENV=.venv"
    constraints=build/setup/installed-torch-constraints.txt
    torch_pins "$PY" >"$constraints"
    before=$(cat "$constraints")
    if [ -n "$before" ]; then
        "$PY" -c 'import torch, torchvision' ||
            fail "torch/torchvision are installed ($(echo $before)) but do not import in $PY; repair them first"
        echo "Installing into $PY without a virtual environment; keeping $(echo $before)"
    else
        echo "Installing into $PY without a virtual environment (no torch there yet: pip installs it)"
    fi
    applicable_constraints "$PY" "$pinned" keep-installed
    "$PY" -m pip install --quiet -e ".[$EXTRAS]" -c "$constraints" -c "$pinned"
    after=$(torch_pins "$PY")
    if [ -n "$before" ] && [ "$after" != "$before" ]; then
        fail "the torch packages changed during the install (before: $(echo $before); after: $(echo $after))"
    fi
else
    PY=$VENV/bin/python
    if ! "$PY" -m pip --version >/dev/null 2>&1; then
        if [ -e "$VENV" ]; then
            # A venv whose creation failed half-way (e.g. no ensurepip) has a python but no pip: start over.
            [ -f "$VENV/pyvenv.cfg" ] ||
                fail "$VENV exists but is not a virtual environment; remove it or choose another VENV=<folder>"
            echo "make setup: $VENV has no working pip (an earlier creation failed?); creating it again"
            rm -rf "$VENV"
        fi
        if ! "$PYTHON" -m venv "$VENV"; then
            rm -rf "$VENV"
            fail "'$PYTHON -m venv $VENV' failed (usually: this Python has no ensurepip, as on Colab or Debian" \
                 "without python3-venv). Install into the running Python instead: make <target> VENV=none" \
                 "(a torch already installed there is kept), or install python3-venv and run make again."
        fi
    fi
    "$PY" -m pip install --quiet --upgrade pip
    applicable_constraints "$PY" "$pinned"
    "$PY" -m pip install --quiet -e ".[$EXTRAS]" -c "$pinned"
fi
mkdir -p "$(dirname "$STAMP")"
touch "$STAMP"
