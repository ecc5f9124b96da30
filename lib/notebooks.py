"""Run, check and render the notebook series.

The reviewed source of each notebook is a jupytext percent script ``notebooks/NN_name.py`` paired with
``notebooks/NN_name.ipynb``. A *profile* is a papermill parameter file ``params/<profile>.yaml`` with a
``common`` section (given to every notebook) and one optional section per notebook stem.

Command line (what the Makefile calls)::

    python -m lib.notebooks run --profile default      # execute all notebooks, then render
    python -m lib.notebooks render --profile default   # re-render HTML + index only
    python -m lib.notebooks prepare --profile smoke    # inject parameters without executing (for nbval)
    python -m lib.notebooks check-sync                 # .py and .ipynb say the same thing
    python -m lib.notebooks sync                       # rewrite each .ipynb from its .py
    python -m lib.notebooks lab --port 8888            # JupyterLab on notebooks/ (`make lab`)
    python -m lib.notebooks times --profile colab      # expected time of each notebook on a T4 (estimates)
    python -m lib.notebooks keep --profile colab       # copy the report and figures into FACE_STORAGE
    python -m lib.notebooks timings --profile default  # README's timing block from the run records

Executed copies go to ``reports/<profile>/`` and never back into the paired notebooks, each with a small
``NN_name.run.json`` beside it (wall time, git commit, Python/torch versions, device, CPU/GPU model) that
the index page shows. Every output file is written to a unique temporary name first and renamed, so a
crash (or a second run at the same time) never leaves a half-written file.

The kernel draws with IPython's inline backend and ``lib.plots.save_figure`` displays each exported
PNG, so every figure is in the executed notebook and embedded in its HTML page (a page opened alone
shows them). The kernel's printed progress (epochs, heads, seeds) streams to this process's terminal.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import io
import json
import math
import os
import platform
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from lib import paths

# Environment of the kernels the runner starts: plain progress lines instead of redrawn bars (see
# lib.progress) and IPython's inline matplotlib backend (never Agg: with Agg `plt.show()` draws nothing
# into the notebook). The repository root goes first on PYTHONPATH so that the kernel imports this
# checkout's `lib`, not another copy installed in the environment.
KERNEL_ENV = {
    "FACE_PROGRESS": "plain",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}

# The kernel `make lab` registers inside the environment, and the kernelspec the paired notebooks carry in
# git (papermill and nbval start `python3`; the lab's contents manager saves this one back, see
# scripts/jupyter_server_config.py).
PROJECT_KERNEL = "angular-margin-fairness"
COMMITTED_KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
LAB_CONFIG = paths.ROOT / "scripts" / "jupyter_server_config.py"

# Figures shown as thumbnails on the index, per notebook, in this order; names that a run did not
# produce are skipped, and a notebook without any of them gets its first figures.
KEY_FIGURES = {
    "01_data_audit": ["01_fairface_label_distributions", "01_fairface_faces_per_group", "01_lfw_fold_overlap"],
    "02_sphereface": ["02_accuracy_by_epoch", "02_det", "02_score_histograms", "02_toy_features_3d"],
    "03_cosrelu_vs_softmax": ["03_accuracy_and_loss", "03_per_race_final", "03_confusion"],
    "04_fairness": ["04_gender_by_race", "04_lfw_gender_det_dlib", "04_lfw_group_det_dlib",
                    "04_lfw_gender_det_trained", "04_lfw_group_det_trained"],
}
THUMBNAILS_PER_NOTEBOOK = 3
THUMBNAIL_WIDTH = 360


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (for messages)."""
    try:
        return str(path.relative_to(paths.ROOT))
    except ValueError:
        return str(path)


def notebook_sources(folder: Path | None = None) -> list[Path]:
    """The numbered jupytext sources in ``folder`` (default ``notebooks/``), in order."""
    return sorted((folder or paths.NOTEBOOKS).glob("[0-9][0-9]_*.py"))


def load_profile(profile: str) -> dict:
    """The parameter file of ``profile`` as a dict (``common`` plus per-notebook sections)."""
    path = paths.PARAMS / f"{profile}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in paths.PARAMS.glob("*.yaml"))
        raise SystemExit(f"unknown profile {profile!r}: no {_shown(path)} (known: {', '.join(known)})")
    return _read_profile(path)


def _read_profile(path: Path) -> dict:
    """A profile's YAML as a dict; a file that is not plain YAML (a Python tag such as ``!!python/object``,
    a syntax error) or not a mapping stops with its line and what to do, not a raw ``yaml`` traceback."""
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{_shown(path)}:{mark.line + 1}" if mark is not None else _shown(path)
        problem = getattr(error, "problem", None) or str(error)
        raise SystemExit(f"{where}: not a plain YAML parameter file ({problem}). A profile holds plain values "
                         f"(numbers, strings, lists, mappings) under 'common' and one section per notebook; "
                         f"Python tags such as !!python/object are refused. Fix that line.") from None
    except UnicodeDecodeError as error:
        raise SystemExit(f"{_shown(path)}: not UTF-8 text ({error}); save the profile as UTF-8") from None
    if not isinstance(config, dict):
        raise SystemExit(f"{_shown(path)}: a profile is a mapping ('common:' and one section per notebook), "
                         f"not a {type(config).__name__}")
    return config


def declared_parameters(stem: str) -> set[str]:
    """Names assigned in the ``parameters`` cell of notebook ``stem``."""
    import papermill

    return set(papermill.inspect_notebook(str(paths.NOTEBOOKS / f"{stem}.ipynb")))


def notebook_parameters(profile: str, stem: str) -> dict:
    """Parameters papermill injects into notebook ``stem`` under ``profile``.

    ``common`` values a notebook does not declare are left out; a per-notebook value it does not
    declare is a typo in the profile and an error.
    """
    config = load_profile(profile)
    declared = declared_parameters(stem)
    section = config.get(stem) or {}
    unknown = sorted(set(section) - declared)
    if unknown:
        raise SystemExit(f"params/{profile}.yaml, section {stem}: {unknown} are not parameters of the notebook "
                         f"(it declares {sorted(declared)})")
    parameters = {"profile": profile}
    parameters.update({k: v for k, v in (config.get("common") or {}).items() if k in declared})
    parameters.update(section)
    return parameters


def select(names: list[str] | None) -> list[Path]:
    """Sources whose stem starts with one of ``names`` (e.g. ``01`` or ``02_sphereface``); all when empty."""
    sources = notebook_sources()
    if not names:
        return sources
    chosen = [s for s in sources if any(s.stem.startswith(n) for n in names)]
    if not chosen:
        raise SystemExit(f"no notebook matches {names}; have {[s.stem for s in sources]}")
    return chosen


def _cells(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def check_sync(folder: Path | None = None) -> list[str]:
    """Names of notebooks whose ``.py`` and ``.ipynb`` differ in content (cell types and sources), in
    ``folder`` (default ``notebooks/``).

    Outputs, execution counts and metadata are ignored: only what a reader or reviewer sees counts.
    """
    import jupytext

    problems = []
    for source in notebook_sources(folder):
        paired = source.with_suffix(".ipynb")
        if not paired.exists():
            problems.append(f"{paired.name}: missing (run `make sync`)")
            continue
        if _cells(jupytext.read(source)) != _cells(jupytext.read(paired)):
            problems.append(f"{source.name} and {paired.name} differ (edit the .py, then run `make sync`)")
    return problems


def sync() -> None:
    """Rewrite each paired ``.ipynb`` from its ``.py`` (the reviewed source), dropping outputs."""
    import jupytext

    for source in notebook_sources():
        notebook = jupytext.read(source)
        for number, cell in enumerate(notebook.cells):
            cell.id = f"cell-{number:03d}"  # stable ids: re-syncing an unchanged source changes nothing
        target = source.with_suffix(".ipynb")
        notebook.metadata["kernelspec"] = dict(COMMITTED_KERNELSPEC)
        _atomic_write_text(target, jupytext.writes(notebook, fmt="ipynb"))
        print(f"synced {_shown(target)}")


def _unique_temp(path: Path, suffix: str = ".tmp") -> Path:
    """A hidden name beside ``path`` that no other process or thread uses."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a unique temporary file and a rename."""
    tmp = _unique_temp(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def kernel_environment(extra: dict | None = None):
    """Set :data:`KERNEL_ENV`, ``extra`` and the repository root on ``PYTHONPATH`` for kernels started
    inside; everything is restored on exit (nothing leaks into the caller's later runs)."""
    extra = dict(extra or {})
    saved = {name: os.environ.get(name) for name in (*KERNEL_ENV, *extra, "PYTHONPATH")}
    os.environ.update(KERNEL_ENV)
    os.environ.update(extra)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(paths.ROOT), saved["PYTHONPATH"]) if p)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def prepare(profile: str, out_dir: Path, names: list[str] | None = None) -> list[Path]:
    """Inject ``profile``'s parameters into copies of the notebooks without executing them (for nbval)."""
    import papermill

    sources = select(names)
    parameters = {source.stem: notebook_parameters(profile, source.stem) for source in sources}  # checks the profile
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sources:
        target = out_dir / f"{source.stem}.ipynb"
        papermill.execute_notebook(
            str(source.with_suffix(".ipynb")),
            str(target),
            parameters=parameters[source.stem],
            prepare_only=True,
            progress_bar=False,
        )
        written.append(target)
    return written


def execute(profile: str, names: list[str] | None = None) -> list[Path]:
    """Execute the notebooks with papermill under ``profile`` into ``reports/<profile>/``.

    Each notebook runs into a uniquely named hidden file that is renamed to ``NN_name.ipynb`` when it
    finishes (or to ``NN_name.failed.ipynb``, as far as it ran, when a cell fails); its wall time and
    the run's environment go to ``NN_name.run.json``. The kernel's output streams to this terminal.
    """
    import papermill

    load_profile(profile)  # an unknown profile stops here, before reports/<profile>/ exists
    sources = select(names)
    parameters = {source.stem: notebook_parameters(profile, source.stem) for source in sources}
    check_gpu(profile, parameters)
    storage = (load_profile(profile).get("common") or {}).get("storage_dir")
    extra_env = {}
    if storage and not os.environ.get(paths.STORAGE_ENV):  # the environment variable wins over the profile
        extra_env[paths.STORAGE_ENV] = str(storage)  # read by lib.paths in each notebook's kernel
    out_dir = paths.reports_dir(profile)
    written = []
    for source in sources:
        target = out_dir / f"{source.stem}.ipynb"
        partial = _unique_temp(target, suffix=".running.ipynb")
        started = datetime.now(timezone.utc)
        # Taken before the run: the commit (and dirtiness) of the code the notebook starts from, not of a
        # checkout that changed while it ran.
        environment = run_environment(parameters[source.stem].get("device", "auto"))
        state_at_start = {"load_average_at_start": _load_average(),
                          "checkpoints_at_start": _checkpoint_count(profile, source.stem)}
        start = time.perf_counter()
        announce_expected_time(profile, source.stem)
        print(f"[{profile}] executing {source.stem} ...", flush=True)
        remove_figures(profile, source.stem)
        try:
            with kernel_environment(extra_env):
                papermill.execute_notebook(
                    str(source.with_suffix(".ipynb")),
                    str(partial),
                    parameters=parameters[source.stem],
                    cwd=str(paths.NOTEBOOKS),
                    kernel_name="python3",
                    progress_bar=False,
                    stdout_file=sys.stdout,
                    stderr_file=sys.stderr,
                )
        except BaseException:
            failed = out_dir / f"{source.stem}.failed.ipynb"
            if partial.exists():
                os.replace(partial, failed)
                print(f"[{profile}] {source.stem} FAILED; the notebook as far as it ran: {failed}", file=sys.stderr)
            raise
        wall_seconds = time.perf_counter() - start
        strip_progress_file(partial)
        os.replace(partial, target)
        (out_dir / f"{source.stem}.failed.ipynb").unlink(missing_ok=True)
        record = {"notebook": source.stem, "profile": profile, "started": started.isoformat(timespec="seconds"),
                  "wall_seconds": round(wall_seconds, 1), **state_at_start,
                  "load_average_at_end": _load_average(), **environment}
        _atomic_write_text(run_record_path(out_dir, source.stem), json.dumps(record, indent=2) + "\n")
        print(f"[{profile}] {source.stem} done in {wall_seconds:.0f} s", flush=True)
        written.append(target)
    return written


# --------------------------------------------------------------------------------------------------
# Expected times on a T4 (estimates from the work each notebook does; README "Run on Colab" prints this table)
# --------------------------------------------------------------------------------------------------
# Per-image costs, (fast, slow) ends of the range, images per second; how each was arrived at is in the README.
T4_RESNET18_224_TRAIN = (650.0, 450.0)  # ResNet-18 224 px training steps, fp16 autocast, batch 64
T4_RESNET18_224_FORWARD = (1950.0, 1350.0)  # a forward pass only: about a third of a training step
T4_SPHERECNN_96_TRAIN = (11000.0, 1850.0)  # SphereCNN 96 px: bound by per-step overhead, hence the width
DLIB_IMAGES_PER_CORE = (11.4, 5.7)  # dlib decode + detection + alignment + descriptor per CPU core (README)
COLAB_CORES = 2
FEATURE_STEP_SECONDS = (0.0005, 0.0015)  # one Adam step of a head on 256 frozen 128-d features on a GPU
# The data the colab profile reads (counted on the files): scikit-learn's LFW View 1 DevTrain (images), the
# DevTest pairs' distinct images (at most 2 per pair), all LFW images, FairFace 0.25's train and val images.
LFW_DEVTRAIN_IMAGES, LFW_DEVTEST_IMAGES, LFW_IMAGES = 6685, 2000, 13233
FAIRFACE_TRAIN, FAIRFACE_VAL = 86744, 10954
FIXED_MINUTES = {"01_data_audit": (5.0, 10.0), "04_fairness": (2.0, 5.0)}  # downloads and audits; statistics
ESTIMATED_PROFILES = ("colab",)  # the profiles whose cost model this is (a T4 GPU and Colab's 2 CPU cores)


@dataclass(frozen=True)
class Estimate:
    """The expected wall time of one notebook under a profile: ``low``–``high`` seconds, and the work counted."""

    stem: str
    work: str
    low: float
    high: float

    def text(self) -> str:
        low, high = _clock_text(self.low), _clock_text(self.high)
        if low.split()[1] == high.split()[1]:
            return f"{low.split()[0]}–{high}"
        return f"{low}–{high}"


def _clock_text(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _with_defaults(profile: str, stem: str) -> dict:
    """The values notebook ``stem`` runs with under ``profile``: its parameter cell, then the profile's."""
    import ast

    import papermill

    declared = papermill.inspect_notebook(str(paths.NOTEBOOKS / f"{stem}.ipynb"))
    values = {name: ast.literal_eval(info["default"]) for name, info in declared.items()}
    values.update(notebook_parameters(profile, stem))
    return values


def _seconds(images: float, rates: tuple[float, float]) -> tuple[float, float]:
    return images / rates[0], images / rates[1]


def expected_times(profile: str = "colab") -> list[Estimate]:
    """Each notebook's expected time on a T4 under ``profile``: epochs × images × per-image cost for every
    head, seed and target trained, plus the pretrained encoder on Colab's two CPU cores. Estimates, not
    measurements (README "Run on Colab")."""
    estimates = []
    dlib = tuple(rate * COLAB_CORES for rate in DLIB_IMAGES_PER_CORE)
    for source in notebook_sources():
        stem, v = source.stem, _with_defaults(profile, source.stem)
        encoder = v.get("pretrained_encoder") is not None
        if stem in FIXED_MINUTES:
            low, high = (minutes * 60 for minutes in FIXED_MINUTES[stem])
            work = "download FairFace 0.25 (563 MB) and LFW (about 200 MB); label and duplicate audits"
            if stem == "04_fairness":
                work = "statistics on the saved predictions"
                if encoder:
                    extra = _seconds(LFW_IMAGES - LFW_DEVTEST_IMAGES, dlib)
                    low, high = low + extra[0], high + extra[1]
                    work += f"; dlib on the {LFW_IMAGES - LFW_DEVTEST_IMAGES:,} or more LFW images 02 did not embed (CPU, once)"
        elif stem == "02_sphereface":
            runs = len(v["heads"]) * len(v["seeds"])
            images = runs * v["epochs"] * LFW_DEVTRAIN_IMAGES * (1 - v["validation_fraction"])
            low, high = _seconds(images, T4_SPHERECNN_96_TRAIN)
            work = (f"SphereCNN at {v['image_size']} px: {_count(len(v['heads']), 'head')} × {_count(len(v['seeds']), 'seed')} × "
                    f"{v['epochs']} epochs × {LFW_DEVTRAIN_IMAGES * (1 - v['validation_fraction']):,.0f} images = "
                    f"{images / 1e6:.1f} M training images")
            if encoder:
                extra = _seconds(LFW_DEVTEST_IMAGES, dlib)
                low, high = low + extra[0], high + extra[1]
                work += f"; dlib on ≤ {LFW_DEVTEST_IMAGES:,} DevTest images (CPU, once)"
        elif stem == "03_cosrelu_vs_softmax":
            runs = len(v["heads"]) * len(v["seeds"]) * len(v["targets"])
            images = runs * v["epochs"] * FAIRFACE_TRAIN
            train = _seconds(images, T4_RESNET18_224_TRAIN)
            validation = _seconds(runs * v["epochs"] * FAIRFACE_VAL, T4_RESNET18_224_FORWARD)
            low, high = train[0] + validation[0], train[1] + validation[1]
            work = (f"ResNet-18 at {v['image_size']} px: {_count(len(v['heads']), 'head')} × "
                    f"{_count(len(v['seeds']), 'seed')} × {_count(len(v['targets']), 'target')} × {v['epochs']} epochs × {FAIRFACE_TRAIN:,} images = "
                    f"{images / 1e6:.2f} M training images, plus {runs * v['epochs']} validation passes over "
                    f"{FAIRFACE_VAL:,} images")
            if encoder:
                embedding = _seconds(FAIRFACE_TRAIN + FAIRFACE_VAL, dlib)
                frozen_runs = len(v["frozen_heads"]) * len(v["frozen_seeds"]) * len(v["frozen_targets"])
                steps = frozen_runs * v["frozen_epochs"] * math.ceil(FAIRFACE_TRAIN / v["frozen_batch_size"])
                low += embedding[0] + steps * FEATURE_STEP_SECONDS[0]
                high += embedding[1] + steps * FEATURE_STEP_SECONDS[1]
                work += (f"; dlib on {FAIRFACE_TRAIN + FAIRFACE_VAL:,} images (CPU, once) and {frozen_runs} "
                         f"frozen-feature runs ({steps / 1e3:.0f} k steps)")
        else:
            continue
        estimates.append(Estimate(stem, work, low, high))
    return estimates


def time_table_markdown(profile: str = "colab") -> str:
    """The README's table of :func:`expected_times` (a test keeps the README's copy equal to this)."""
    estimates = expected_times(profile)
    rows = ["| notebook | work | expected time on a T4 (estimate) |", "| --- | --- | --- |"]
    rows += [f"| {e.stem[:2]} | {e.work} | {e.text()} |" for e in estimates]
    total = Estimate("all", "", sum(e.low for e in estimates), sum(e.high for e in estimates))
    rows.append(f"| all | | {total.text()} |")
    return "\n".join(rows)


def announce_expected_time(profile: str, stem: str) -> None:
    """Print the notebook's expected time before it starts (profiles with a cost model only)."""
    if profile not in ESTIMATED_PROFILES:
        return
    estimate = next((e for e in expected_times(profile) if e.stem == stem), None)
    if estimate is not None:
        print(f"[{profile}] {stem}: expected {estimate.text()} on a T4 (an estimate; README \"Run on Colab\"): "
              f"{estimate.work}", flush=True)



def keep_report(profile: str) -> Path:
    """Copy ``reports/<profile>/`` and ``figures/<profile>/`` into the persistent storage (``FACE_STORAGE``, or
    the profile's ``storage_dir``), as ``<storage>/reports/<profile>/`` and ``<storage>/figures/<profile>/``.

    Writes nothing anywhere else: without a storage folder, or when its parent is missing (Google Drive not
    mounted), it stops with a message instead of copying into ``/`` or into an empty mount point."""
    import shutil

    storage = paths.STORAGE
    if storage is None:
        configured = (load_profile(profile).get("common") or {}).get("storage_dir")
        if not configured:
            raise SystemExit(f"nothing copied: {paths.STORAGE_ENV} is not set (nor storage_dir in params/{profile}.yaml). "
                             f"On Colab mount Google Drive and set it first, e.g. os.environ['{paths.STORAGE_ENV}'] = "
                             f"'/content/drive/MyDrive/angular-margin-fairness'")
        storage = Path(str(configured)).expanduser()
        if not storage.is_absolute() or not storage.parent.is_dir():
            raise SystemExit(f"nothing copied: storage_dir {configured} in params/{profile}.yaml must be an absolute "
                             f"folder whose parent exists (on Colab: mount Google Drive first)")
    sources = [(paths.REPORTS / profile, storage / "reports" / profile),
               (paths.FIGURES / profile, storage / "figures" / profile)]
    missing = [_shown(source) for source, _ in sources if not source.is_dir()]
    if missing:
        raise SystemExit(f"nothing copied: {', '.join(missing)} missing; run the notebooks first (make all PROFILE={profile})")
    for source, target in sources:
        shutil.copytree(source, target, dirs_exist_ok=True)
        print(f"copied {_shown(source)} to {target}")
    return storage


def check_gpu(profile: str, parameters: dict[str, dict]) -> None:
    """Stop before the first notebook when the profile needs a GPU that is not there (lib.parameters.gpu_guard;
    each notebook checks again in its parameter cell)."""
    from lib.parameters import gpu_guard

    for stem, values in parameters.items():
        problem = gpu_guard(values)
        if problem:
            raise SystemExit(f"[{profile}] {stem}: nothing was run: {problem}")


def remove_figures(profile: str, stem: str) -> list[Path]:
    """Delete ``figures/<profile>/NN_*.png`` of notebook ``stem`` (``NN_name``) before it runs again, so
    the folder only ever holds figures that the last run of each notebook wrote (a renamed or dropped
    figure does not linger as a stale file beside the new ones)."""
    folder = paths.FIGURES / profile
    prefix = stem.split("_", 1)[0]
    removed = sorted(folder.glob(f"{prefix}_*.png")) if folder.is_dir() else []
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


# A progress-bar line as lib.progress prints it while a kernel runs (tqdm's "NN%|...| n/total [").
PROGRESS_LINE = re.compile(r"\d+%\|.*\|\s*[\d.]+[kM]?/[\d.]+[kM]?\s*\[")


def strip_progress(notebook) -> int:
    """Remove the progress bars from an executed notebook: ``stderr`` stream outputs whose every line
    is a progress-bar line or blank. They keep a long run's cell alive while papermill executes it;
    in the report they would bury the results. Warnings and other stderr text stay. Returns how many
    outputs were removed."""
    removed = 0
    for cell in notebook.cells:
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                text = output.get("text", "")
                text = "".join(text) if isinstance(text, list) else text
                lines = [line for line in re.split(r"[\r\n]", text) if line.strip()]
                if all(PROGRESS_LINE.search(line) for line in lines):
                    removed += 1
                    continue
            kept.append(output)
        if "outputs" in cell:
            cell["outputs"] = kept
    return removed


def strip_progress_file(path: Path) -> int:
    """:func:`strip_progress` on the notebook file ``path``, rewritten in place (atomically)."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    removed = strip_progress(notebook)
    if removed:
        _atomic_write_text(path, nbformat.writes(notebook))
    return removed


def run_record_path(out_dir: Path, stem: str) -> Path:
    """Where :func:`execute` records the wall time and environment of notebook ``stem``."""
    return out_dir / f"{stem}.run.json"


def _load_average() -> float | None:
    """The machine's 1-minute load average (None where the OS has none): a time measured on a busy
    machine says so in its record."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _checkpoint_count(profile: str, stem: str) -> int:
    """Training checkpoints of ``profile`` that notebook ``stem`` itself writes (its folders start with its
    number, e.g. ``02_sphereface/``) present before it starts: 0 on a first run, where every run trains;
    otherwise finished runs are reloaded and its time is not that of a first run. Checkpoints an earlier
    notebook of the same ``make all`` wrote do not count."""
    folder = paths.checkpoints_dir(profile)
    if not folder.is_dir():
        return 0
    return sum(1 for own in folder.glob(f"{stem[:2]}_*") if own.is_dir() for _ in own.rglob("*.pt"))


def run_environment(device: str = "auto") -> dict:
    """What a reader needs to judge a run's numbers and times: commit, versions, device, processor."""
    environment = {"git_commit": _git_commit(), "python": platform.python_version(),
                   "platform": platform.platform(terse=True), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
                   **pretrained_versions()}
    try:
        import torch
    except ImportError:
        return {**environment, "torch": None, "device": device, "gpu": None}
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    resolved = ("cuda" if cuda else "mps" if mps else "cpu") if device in (None, "auto") else str(device)
    from lib.training import resolve_precision

    auto = resolve_precision("auto", torch.device(resolved)) if resolved in ("cpu", "cuda") else "off"
    return {**environment, "torch": torch.__version__, "device": resolved,
            "gpu": torch.cuda.get_device_name(0) if cuda else None, "amp_auto": auto}


def _distribution_version(*names: str) -> str | None:
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def pretrained_versions() -> dict:
    """The versions of the pretrained encoder's packages (None when not installed): ``dlib`` (the
    ``dlib-bin`` wheel, or Colab's own ``dlib``) and ``face_recognition_models`` (its model files)."""
    dlib = _distribution_version("dlib-bin", "dlib")
    if dlib is None:
        try:  # a dlib built from source without package metadata
            import dlib as dlib_module

            dlib = getattr(dlib_module, "__version__", None)
        except ImportError:
            pass
    return {"dlib": dlib, "face_recognition_models": _distribution_version("face-recognition-models",
                                                                           "face_recognition_models")}


# What the runs themselves write: a change there does not make the code that produced a run "dirty".
OUTPUT_PATHSPECS = (":!data/results", ":!figures", ":!reports")


def _git_commit() -> str | None:
    """The checkout's commit, with ``+dirty`` when tracked files other than the runs' own outputs
    (:data:`OUTPUT_PATHSPECS`) differ from it; None outside git."""
    try:
        commit = subprocess.run(["git", "-C", str(paths.ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        changed = subprocess.run(["git", "-C", str(paths.ROOT), "status", "--porcelain", "--untracked-files=no",
                                  "--", ".", *OUTPUT_PATHSPECS],
                                 capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if changed else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def render(profile: str, mixed_commits_reason: str | None = None) -> Path:
    """Render every executed notebook of ``profile`` to HTML, with ``references.html`` and the index page.

    Every page of a report must come from one commit (its ``run.json``): pages executed at different
    commits are refused before anything is written, unless ``mixed_commits_reason`` says why they may be
    shown together; the index then names the pages that are older than the newest and gives that reason.
    """
    import nbformat

    load_profile(profile)
    out_dir = paths.REPORTS / profile
    executed = [(source, out_dir / f"{source.stem}.ipynb") for source in notebook_sources()]
    executed = [(source, path) for source, path in executed if path.exists()]
    if not executed:
        raise SystemExit(f"no executed notebooks in {_shown(out_dir)}/: run "
                         f"`make run PROFILE={profile}` (or `python -m lib.notebooks run --profile {profile}`) first")
    notebooks_read = {source.stem: nbformat.read(path, as_version=4) for source, path in executed}
    records = {stem: _run_record(out_dir, stem, notebook) for stem, notebook in notebooks_read.items()}
    older = pages_behind(records)
    if older and not mixed_commits_reason:
        raise SystemExit(mixed_commits_message(profile, records, older))
    findings_html = page_findings(profile, notebooks_read)  # stops on a stale or unsupported Findings number
    exporter = page_exporter()
    copy_mathjax(out_dir)
    to_root = Path(os.path.relpath(paths.ROOT, out_dir)).as_posix() + "/"  # "../../" for reports/<profile>/
    tracked = tracked_files()
    newest = max(records, key=lambda stem: str(records[stem].get("started", "")))

    def link_code(page: str, stem: str = newest) -> str:
        """Code named on ``stem``'s page linked at the commit that page was executed from."""
        return link_project_code(page, prefix=to_root, commit=records[stem].get("git_commit"), tracked=tracked)

    entries = []
    for stem, notebook in notebooks_read.items():
        body, _ = exporter.from_notebook_node(notebook)
        _atomic_write_text(out_dir / f"{stem}.html", link_code(body, stem))
        entries.append(IndexEntry(
            stem=stem, title=_title(notebook, stem), summary_html=link_code(_summary_html(notebook), stem),
            thumbnails=_thumbnails(notebook, stem, profile), record=records[stem]))
        print(f"rendered {_shown(out_dir / f'{stem}.html')}")
    from lib import references

    _atomic_write_text(out_dir / "references.html", references.page_html(link_code))
    print(f"wrote {_shown(out_dir / 'references.html')}")
    index = out_dir / "index.html"
    _atomic_write_text(index, index_page(profile, entries, older=older, older_reason=mixed_commits_reason,
                                         findings_html=findings_html))
    print(f"wrote {_shown(index)}")
    return index


def is_synthetic(profile: str) -> bool:
    """Whether ``profile`` runs on the generated faces (its data sources are ``synthetic``, the default)."""
    common = load_profile(profile).get("common") or {}
    return "synthetic" in (common.get("fairface_source", "synthetic"), common.get("lfw_source", "synthetic"))


def page_findings(profile: str, notebooks_read: dict) -> str:
    """Check every executed page's Findings numbers against ``data/results/<profile>/`` (a stale page stops
    the render, naming the number and the table) and return the index's findings as HTML, composed from the
    same tables now (empty when no page of the series was executed)."""
    from nbconvert.filters import markdown2html

    from lib import findings

    folder = paths.RESULTS / profile
    try:
        for stem, notebook in notebooks_read.items():
            findings.check_notebook(notebook, folder, f"reports/{profile}/{stem}.ipynb")
        text = findings.series_findings(folder, profile, stems=list(notebooks_read),
                                        synthetic=is_synthetic(profile))
    except findings.FindingsError as error:
        raise SystemExit(f"render stopped: {error}") from None
    return markdown2html(text.markdown) if text.markdown else ""


def pages_behind(records: dict[str, dict]) -> dict[str, str | None]:
    """{notebook: its commit} for every notebook whose recorded commit differs from the commit of the most
    recently executed notebook (a missing record counts as a commit of its own, ``None``); empty when all
    pages come from one commit."""
    commits = {stem: record.get("git_commit") for stem, record in records.items()}
    if len(set(commits.values())) <= 1:
        return {}
    newest = max(records, key=lambda stem: str(records[stem].get("started", "")))
    return {stem: commit for stem, commit in commits.items() if commit != commits[newest]}


def mixed_commits_message(profile: str, records: dict[str, dict], older: dict[str, str | None]) -> str:
    lines = [f"reports/{profile}/: the executed notebooks come from different commits, so the report would not "
             f"describe one version of the code:"]
    for stem, record in records.items():
        started = str(record.get("started", "?")).replace("T", " ")[:16]
        mark = "  (older)" if stem in older else ""
        lines.append(f"  {stem}: {record.get('git_commit') or 'no commit recorded'}, executed {started}{mark}")
    only = " ".join(stem[:2] for stem in older)
    lines.append(f"Re-execute the older ones at this commit: python -m lib.notebooks run --profile {profile} "
                 f"--only {only} (or all: make run PROFILE={profile}); or render them together anyway, saying "
                 f"why, and the index will name the older pages: python -m lib.notebooks render --profile "
                 f"{profile} --allow-mixed-commits \"REASON\"")
    return "\n".join(lines)


# `lib.name` (a module, optionally with an attribute) or a repository path such as `scripts/x.py`, as inline
# code in a page: linked to the file in the repository (on its host when lib.paths.REPOSITORY_URL is set).
_INLINE_CODE = re.compile(r"<code>([^<>\s]+)</code>")


def tracked_files(root: Path | None = None) -> set[str] | None:
    """The paths git tracks in the checkout at ``root`` (relative, with "/"); None outside git."""
    root = root or paths.ROOT
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True,
                                timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {name for name in listed.decode("utf-8", "replace").split("\0") if name}


def code_url(path: str, *, folder: bool = False, prefix: str = "../../", repository: str | None = None,
             commit: str | None = None) -> str:
    """Where a page links a repository file: ``<repository>/blob/<commit>/<path>`` (``tree`` for a folder) on
    the host when ``repository`` (default :data:`lib.paths.REPOSITORY_URL`) is set, at ``commit`` (a run
    record's; ``+dirty`` dropped; the default branch, ``HEAD``, when unknown); else ``prefix + path``."""
    repository = paths.REPOSITORY_URL if repository is None else repository
    if not repository:
        return prefix + path
    revision = (commit or "HEAD").removesuffix("+dirty")
    return f"{repository.rstrip('/')}/{'tree' if folder else 'blob'}/{revision}/{path.rstrip('/')}"


def link_project_code(page: str, root: Path | None = None, prefix: str = "../../", *, repository: str | None = None,
                      commit: str | None = None, tracked: set[str] | None = None) -> str:
    """Wrap inline code that names one of this project's files in a link to that file (:func:`code_url`):
    ``lib.x`` or ``lib.x.attr`` -> ``lib/x.py``, and paths with a slash that the repository tracks
    (``scripts/…``, ``tests/…``, ``params/…``, ``data/lfw_gender/``). A path git does not track (a result
    file, ``data/cache/``) is a file of the reader's own run, not a source: it stays plain text, as do other
    projects' files (a course repository's ``src/loss.py``) and code already inside a link. ``tracked``:
    the tracked paths (default: ``git ls-files`` at ``root``; outside git, whatever exists there)."""
    root = root or paths.ROOT
    tracked = tracked_files(root) if tracked is None else tracked

    def known(name: str) -> tuple[bool, bool]:
        """(a tracked file or folder, a folder)"""
        name = name.rstrip("/")
        if tracked is None:
            return (root / name).exists(), (root / name).is_dir()
        if name in tracked:
            return True, False
        folder = any(path.startswith(name + "/") for path in tracked)
        return folder, folder

    def target(name: str) -> tuple[str, bool] | None:
        if re.fullmatch(r"lib(\.\w+)+", name):
            module = f"lib/{name.split('.')[1]}.py"
            return (module, False) if known(module)[0] else None
        if "/" in name and not name.startswith(("/", ".", "http")) and ".." not in name:
            found, folder = known(name)
            return (name, folder) if found else None
        return None

    def replace(match: re.Match) -> str:
        if page.rfind("<a ", 0, match.start()) > page.rfind("</a>", 0, match.start()):
            return match.group(0)
        found = target(html.unescape(match.group(1)))
        if not found:
            return match.group(0)
        url = code_url(found[0], folder=found[1], prefix=prefix, repository=repository, commit=commit)
        return f'<a href="{html.escape(url)}">{match.group(0)}</a>'

    return _INLINE_CODE.sub(replace, page)


# The pages' template: JupyterLab's, with nothing loaded from the network. MathJax 3 (single-file SVG
# build: its fonts are inside the script) is read from mathjax/ beside the pages; require.js (only for
# widgets, which these notebooks do not use), the widget manager and mermaid are left out. Each page
# starts and ends with links to the index and the references page.
MATHJAX_DIR = "mathjax"
MATHJAX_SCRIPT = "tex-svg.js"
NAV_HTML = ('<nav class="report-nav"><a href="index.html">Report index</a> · '
            '<a href="references.html">References</a></nav>')
PAGE_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
<script>
window.MathJax = {
  tex: {inlineMath: [['$', '$'], ['\\(', '\\)']], displayMath: [['$$', '$$'], ['\\[', '\\]']],
        processEscapes: true, processEnvironments: true, tags: 'ams'},
  svg: {fontCache: 'global'}
};
</script>
<script defer src="MATHJAX_DIR/MATHJAX_SCRIPT"></script>
<style>
nav.report-nav { font-family: system-ui, sans-serif; font-size: .95rem; padding: .4rem 0; }
/* A table wider than the page scrolls inside its own box instead of running off the page. */
.jp-RenderedHTMLCommon table { display: block; max-width: 100%; overflow-x: auto; }
</style>
{%- endblock html_head_js_mathjax -%}
{%- block body_header -%}
{{ super() }}
NAV_HTML
{%- endblock body_header -%}
{% block body_footer %}
NAV_HTML
{{ super() }}
{% endblock body_footer %}
""".replace("MATHJAX_DIR", MATHJAX_DIR).replace("MATHJAX_SCRIPT", MATHJAX_SCRIPT).replace("NAV_HTML", NAV_HTML)


def page_exporter():
    """nbconvert's HTML exporter with :data:`PAGE_TEMPLATE` (no prompts, nothing from the network)."""
    import jinja2
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", extra_loaders=[jinja2.DictLoader({"report.html.j2": PAGE_TEMPLATE})])
    exporter.template_file = "report.html.j2"
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    return exporter


def mathjax_source() -> Path:
    """The folder of MathJax 3's browser builds in the installed ``django-static-mathjax`` package (MathJax
    3.2.2, Apache-2.0; a pure-data wheel without dependencies: the ``notebooks`` extra installs it)."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    folder = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax" if spec and \
        spec.submodule_search_locations else None
    if folder is None or not (folder / "es5" / MATHJAX_SCRIPT).is_file():
        raise SystemExit("MathJax is not installed, so the pages could not typeset formulas offline: "
                         "pip install django-static-mathjax (or `make setup`, which installs the notebooks extra)")
    return folder


def copy_mathjax(out_dir: Path) -> Path:
    """Copy MathJax's single-file SVG build and its licence into ``out_dir/mathjax/`` (once)."""
    source = mathjax_source()
    target = out_dir / MATHJAX_DIR
    target.mkdir(parents=True, exist_ok=True)
    for name, origin in ((MATHJAX_SCRIPT, source / "es5" / MATHJAX_SCRIPT), ("LICENSE", source / "LICENSE")):
        data = origin.read_bytes()
        if not (target / name).is_file() or (target / name).read_bytes() != data:
            tmp = _unique_temp(target / name)
            try:
                tmp.write_bytes(data)
                os.replace(tmp, target / name)
            finally:
                tmp.unlink(missing_ok=True)
    return target / MATHJAX_SCRIPT


class IndexEntry:
    """One notebook on the index page."""

    def __init__(self, stem: str, title: str, summary_html: str, thumbnails: list[tuple[str, str]], record: dict):
        self.stem, self.title, self.summary_html = stem, title, summary_html
        self.thumbnails = thumbnails  # (figure name, data: URI of a small PNG)
        self.record = record  # run.json contents (may be empty)


def _title(notebook, fallback: str) -> str:
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def _summary_markdown(notebook) -> str:
    """The notebook's introduction: its first markdown cell without the title line, whole."""
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        lines = [line for line in cell.source.splitlines() if not line.startswith("# ")]
        text = "\n".join(lines).strip()
        if text:
            return text
    return ""


def _summary_html(notebook) -> str:
    """The introduction rendered from markdown to HTML (bold, code, lists, links, tables)."""
    from nbconvert.filters import markdown2html

    return markdown2html(_summary_markdown(notebook))


def _figure_outputs(notebook) -> list[tuple[str | None, bytes]]:
    """(figure file name or None, PNG bytes) of every image output, in order."""
    images = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                png = data["image/png"]
                png = "".join(png) if isinstance(png, list) else png
                images.append((output.get("metadata", {}).get("figure"), base64.b64decode(png)))
    return images


def _thumbnails(notebook, stem: str, profile: str) -> list[tuple[str, str]]:
    """Small embedded copies of the notebook's key figures (see :data:`KEY_FIGURES`).

    Taken from the executed notebook's own outputs; for a notebook executed before figures were
    displayed, from the exported PNGs in ``figures/<profile>/``. Embedded as data URIs, so the index
    keeps working when ``reports/<profile>/`` is copied anywhere alone.
    """
    shown = {name: png for name, png in _figure_outputs(notebook) if name}
    if not shown:
        folder = paths.FIGURES / profile
        shown = {p.name: p.read_bytes() for p in sorted(folder.glob(f"{stem[:2]}_*.png"))} if folder.is_dir() else {}
    wanted = [f"{name}.png" for name in KEY_FIGURES.get(stem, [])]
    chosen = [name for name in wanted if name in shown] or list(shown)
    return [(name, _thumbnail_uri(shown[name])) for name in chosen[:THUMBNAILS_PER_NOTEBOOK]]


def _thumbnail_uri(png: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        flat = Image.new("RGB", image.size, "white")  # transparent parts on white, as on the page
        flat.paste(image.convert("RGBA"), mask=image.convert("RGBA"))
    if flat.width > THUMBNAIL_WIDTH:
        flat = flat.resize((THUMBNAIL_WIDTH, round(flat.height * THUMBNAIL_WIDTH / flat.width)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    flat.save(buffer, format="JPEG", quality=85, optimize=True)  # a tenth of a PNG's size for face grids
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _run_record(out_dir: Path, stem: str, notebook) -> dict:
    """The notebook's ``run.json``; without one, papermill's own start time and duration."""
    path = run_record_path(out_dir, stem)
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    meta = notebook.metadata.get("papermill", {})
    record = {}
    if meta.get("duration") is not None:
        record["wall_seconds"] = round(float(meta["duration"]), 1)
    if meta.get("start_time"):
        record["started"] = str(meta["start_time"])[:19]
    return record


def _figure_caption(name: str) -> str:
    """``02_accuracy_by_epoch.png`` -> ``accuracy by epoch``."""
    stem = Path(name).stem
    stem = stem[3:] if stem[:2].isdigit() and stem[2:3] == "_" else stem
    return stem.replace("_", " ")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _duration_range(shortest: float, longest: float) -> str:
    """``12–40 s`` or ``1.5–3.0 min``: both ends in the unit :func:`_duration` gives the longer one."""
    if longest < 90:
        return f"{shortest:.0f}–{longest:.0f} s"
    if longest < 5400:
        return f"{shortest / 60:.1f}–{longest / 60:.1f} min"
    return f"{shortest / 3600:.1f}–{longest / 3600:.1f} h"


METADATA_FIELDS = [("git_commit", "git commit"), ("python", "Python"), ("torch", "PyTorch"),
                   ("dlib", "dlib"), ("face_recognition_models", "face-recognition-models"), ("device", "device"),
                   ("cpu", "CPU"), ("cpu_count", "CPU cores"), ("gpu", "GPU"), ("platform", "platform")]


def _metadata_rows(entries: list[IndexEntry]) -> str:
    """The run's environment once (from the most recent record), and where notebooks differ from it."""
    records = [e.record for e in entries if "python" in e.record]
    if not records:
        return "<tr><td colspan=2>not recorded (executed before run records existed)</td></tr>"
    newest = max(records, key=lambda r: r.get("started", ""))
    rows = []
    for key, label in METADATA_FIELDS:
        values = {e.stem[:2]: e.record.get(key) for e in entries if "python" in e.record}
        value = newest.get(key)
        if key not in newest:  # a record written before the field existed: unknown, not absent
            text = "not recorded"
        else:
            text = html.escape(str(value)) if value not in (None, "") else "none"
        differing = sorted(stem for stem, v in values.items() if v != value)
        if differing:
            text += " <small>(" + "; ".join(f"notebook {s}: {html.escape(str(values[s]))}" for s in differing) + ")</small>"
        rows.append(f"<tr><th>{label}</th><td>{text}</td></tr>")
    return "\n".join(rows)


def index_page(profile: str, entries: list[IndexEntry], older: dict[str, str | None] | None = None,
               older_reason: str | None = None, findings_html: str = "") -> str:
    """The index: per notebook its title, introduction, key-figure thumbnails and wall time; the
    run's environment once; the pages older than the newest commit, if any, and why. Only relative links
    to files inside ``reports/<profile>/``."""
    older = older or {}
    warning = ""
    if older:
        names = ", ".join(f"{html.escape(stem)} (commit {html.escape(str(commit or 'not recorded'))})"
                          for stem, commit in older.items())
        warning = (f'<p class="older"><strong>Not one commit.</strong> These pages were executed at an older '
                   f'commit than the others: {names}. Why: {html.escape(older_reason or "not given")}.</p>')
    def older_note(stem: str) -> str:
        return f" · <strong>older commit ({html.escape(str(older[stem] or 'not recorded'))})</strong>" \
            if stem in older else ""

    sections = []
    for entry in entries:
        seconds = entry.record.get("wall_seconds")
        timing = f"executed {html.escape(str(entry.record.get('started', '')).replace('T', ' ')[:16])} UTC" \
            if entry.record.get("started") else ""
        if seconds is not None:
            timing += f"{', ' if timing else ''}wall time {_duration(float(seconds))}"
        figures = "\n".join(
            f'<figure><a href="{entry.stem}.html"><img src="{uri}" alt="{html.escape(name)}"></a>'
            f"<figcaption>{html.escape(_figure_caption(name))}</figcaption></figure>"
            for name, uri in entry.thumbnails)
        sections.append(f"""<section>
<h2><a href="{entry.stem}.html">{html.escape(entry.title)}</a></h2>
<p class="meta">{timing} · <a href="{entry.stem}.ipynb">executed notebook</a>{older_note(entry.stem)}</p>
<div class="summary">{entry.summary_html}</div>
<div class="thumbs">{figures}</div>
</section>""")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    profile_html = html.escape(profile)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Angular-margin losses and fairness: report ({profile_html})</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; color: #222; }}
section {{ border-top: 1px solid #ddd; padding-top: .5rem; margin-top: 1.5rem; }}
h2 {{ margin-bottom: .2rem; }} h2 a {{ text-decoration: none; }}
.meta {{ color: #555; font-size: .9rem; margin-top: 0; }}
.summary {{ font-size: .95rem; }} .summary table {{ border-collapse: collapse; }}
.summary td, .summary th {{ border: 1px solid #ccc; padding: .1rem .4rem; }}
.thumbs {{ display: flex; flex-wrap: wrap; gap: .6rem; }}
.thumbs figure {{ margin: 0; }} .thumbs figcaption {{ font-size: .8rem; color: #555; text-align: center; }}
.thumbs img {{ max-width: 18rem; max-height: 14rem; border: 1px solid #ccc; background: #fff; }}
table.run th {{ text-align: left; padding-right: 1rem; font-weight: 600; }}
code {{ background: #f3f3f3; padding: 0 .2rem; }}
.older {{ background: #fff4e0; border-left: 4px solid #e8a33d; padding: .4rem .8rem; }}
</style></head><body>
<nav><a href="references.html">References</a></nav>
<h1>Angular-margin losses and their fairness for face recognition</h1>
{f'<h2>Findings</h2>{chr(10)}<div class="findings">{findings_html}</div>' if findings_html else ""}
<p>Report for the <code>{profile_html}</code> profile (parameters in <code>params/{profile_html}.yaml</code>),
rendered {stamp}. Re-run with <code>make all PROFILE={profile_html}</code>. The pages need no network: their
figures are embedded, their formulas are typeset by the copy of MathJax in <code>mathjax/</code> beside them,
and every figure is also exported as PNG to <code>figures/{profile_html}/</code> in the repository. The sources
the pages cite are listed, complete, on the <a href="references.html">references page</a>. Wall times are those of the notebook runs themselves: a re-run reloads trained models from
their checkpoints instead of training again, so it can be much shorter than the first.</p>
{warning}
<h2>Run</h2>
<table class="run">
<tr><th>profile</th><td>{profile_html}</td></tr>
{_metadata_rows(entries)}
</table>
{"".join(sections)}
</body></html>
"""


def free_port(wanted: int, host: str = "127.0.0.1") -> int:
    """``wanted`` if it can be bound on ``host``, else the next free port above it (else one the OS picks)."""
    for port in range(wanted, wanted + 50):
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        return port
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def lab(port: int = 8888, root: Path | None = None, open_browser: bool = True) -> None:
    """Replace this process by JupyterLab on 127.0.0.1 in ``root`` (default ``notebooks/``), configured by
    :data:`LAB_CONFIG` (jupytext's contents manager, the project's kernel), after printing its URL.

    A taken ``port`` is replaced by a free one, and said so. The token is ``JUPYTER_TOKEN`` when set, else
    a random one. Kernels get :data:`KERNEL_ENV` and this checkout first on ``PYTHONPATH``, as in
    :func:`execute`, so an interactive run imports the same ``lib`` and draws the same way as papermill's.
    """
    import importlib.util

    if importlib.util.find_spec("jupyterlab") is None:
        raise SystemExit(f"JupyterLab is not installed for {sys.executable}: `make lab` installs it (the lab "
                         f"extra, `pip install -e \".[lab]\"`) and registers the project's kernel")
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(PROJECT_KERNEL)
    except NoSuchKernel:
        raise SystemExit(f"the project's kernel {PROJECT_KERNEL!r} is not registered for {sys.executable}: "
                         f"`make lab` registers it ({sys.executable} -m ipykernel install --sys-prefix --name "
                         f"{PROJECT_KERNEL})") from None
    chosen = free_port(port)
    if chosen != port:
        print(f"make lab: port {port} on 127.0.0.1 is taken; using port {chosen} instead "
              f"(choose one with `make lab LAB_PORT=<port>`)", flush=True)
    token = os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(24)
    root = Path(root or paths.NOTEBOOKS).resolve()
    command = [sys.executable, "-m", "jupyterlab", f"--config={LAB_CONFIG}", f"--ServerApp.root_dir={root}",
               f"--ServerApp.port={chosen}", f"--ServerApp.open_browser={open_browser}"]
    print(f"JupyterLab on {_shown(root)} with the kernel {PROJECT_KERNEL!r} (Ctrl+C twice stops it):\n"
          f"    http://127.0.0.1:{chosen}/lab?token={token}", flush=True)
    with kernel_environment({"JUPYTER_TOKEN": token}):
        os.execv(sys.executable, command)  # the environment is inherited by the server and its kernels


# --------------------------------------------------------------------------------------------------
# The README's timings, generated from the run records (never typed)
# --------------------------------------------------------------------------------------------------
def timings_markers(profile: str) -> tuple[str, str]:
    """The comment lines that enclose the generated timing block of ``profile`` in the README."""
    return (f"<!-- timings:{profile} begin: generated by `python -m lib.notebooks timings --profile {profile}` "
            f"from reports/{profile}/*.run.json; do not edit by hand -->", f"<!-- timings:{profile} end -->")


def run_records(profile: str) -> list[dict]:
    """The ``NN_name.run.json`` of every notebook of the series, in order; an error naming the missing
    ones (a notebook not yet run under ``profile``)."""
    out_dir = paths.reports_dir(profile)
    records, missing = [], []
    for source in notebook_sources():
        path = run_record_path(out_dir, source.stem)
        if path.exists():
            records.append(json.loads(path.read_text(encoding="utf-8")))
        else:
            missing.append(source.stem)
    if missing:
        raise FileNotFoundError(f"no run record for {', '.join(missing)} in {_shown(out_dir)}: run "
                                f"`python -m lib.notebooks run --profile {profile}` (or `make all PROFILE={profile}`) first")
    return records


NOT_RECORDED = "not recorded"  # a run-record field that an older record lacks


def _commit_label(commit) -> str:
    commit = str(commit or "")
    return (commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")) if commit else NOT_RECORDED


def training_minutes(profile: str) -> dict[str, pd.Series]:
    """The training time per run that the pages show, from the results they read: notebook 02's
    ``train_minutes`` per (head, seed) (``02_summary.csv``) and notebook 03's epoch ``seconds`` summed per
    (target, head, seed) (``03_history.csv``); a notebook without such a file is left out."""
    import pandas as pd

    folder = paths.results_dir(profile)
    found = {}
    summary, history = folder / "02_summary.csv", folder / "03_history.csv"
    if summary.is_file():
        minutes = pd.read_csv(summary).get("train_minutes")
        if minutes is not None and minutes.notna().any():
            found["02"] = minutes.dropna()
    if history.is_file():
        table = pd.read_csv(history)
        keys = [key for key in ("target", "head", "seed") if key in table.columns]
        if "seconds" in table.columns and keys:
            found["03"] = table.groupby(keys)["seconds"].sum() / 60
    return found


def timings_markdown(profile: str, records: list[dict], training: dict | None = None) -> str:
    """One paragraph: each notebook's wall time (``not recorded`` for a record without one), the sum of the
    recorded ones, and the setting that produced them (date, processor, cores, device, what ``amp: auto``
    resolved to, commit, load average, whether finished runs were reloaded from checkpoints). Where the
    notebooks ran on different days or commits, each one's are named. A field an older record lacks reads
    ``not recorded``, never a guess. ``training``: :func:`training_minutes`, the training per run that the
    pages show (a notebook's wall time excludes the training it reloaded from checkpoints)."""
    dates = sorted(str(r.get("started", ""))[:10] for r in records if r.get("started"))
    first = max(records, key=lambda r: str(r.get("started", "")))  # the machine of the latest run
    timed = [r for r in records if r.get("wall_seconds") is not None]
    total = sum(float(r["wall_seconds"]) for r in timed)
    commits = sorted({_commit_label(r.get("git_commit")) for r in records})
    several = len(commits) > 1 or len(set(dates)) > 1

    def each(r: dict) -> str:
        text = f"{r['notebook'][:2]} " + (_duration(float(r["wall_seconds"])) if r.get("wall_seconds") is not None
                                         else NOT_RECORDED)
        if several:
            text += f" [{str(r.get('started', ''))[:10] or 'date ' + NOT_RECORDED}, {_commit_label(r.get('git_commit'))}]"
        return text

    per_notebook = ", ".join(each(r) for r in records)
    loads = [r[key] for r in records for key in ("load_average_at_start", "load_average_at_end")
             if r.get(key) is not None]
    counted = [int(r["checkpoints_at_start"]) for r in records if r.get("checkpoints_at_start") is not None]
    untimed = len(records) - len(timed)
    when = (f"run on {dates[0]}{'' if dates[0] == dates[-1] else ' to ' + dates[-1]}" if dates
            else f"run dates {NOT_RECORDED}")
    total_text = (f"**{_duration(total)} for the four notebooks**" if not untimed else
                  f"**{_duration(total)} for the {len(timed)} notebooks with a recorded time**")
    if not counted:
        reloads = f"; checkpoints present at the start: {NOT_RECORDED} (older run records)"
    elif len(counted) < len(records):
        reloads = (f"; checkpoints present at the start: {max(counted)} at most where recorded, "
                   f"{NOT_RECORDED} for {len(records) - len(counted)} notebook(s)")
    elif max(counted) == 0:
        reloads = "; a first run (no checkpoints)."
    else:
        reloads = f"; **{max(counted)} checkpoints were present at the start**, so finished runs were reloaded, not trained."
    device = first.get("gpu") or f"{first.get('cpu') or 'processor ' + NOT_RECORDED} CPU"
    lines = [
        f"Generated from the run records of `make all PROFILE={profile}` (`reports/{profile}/*.run.json`), "
        f"{when}: {total_text} ({per_notebook}), setup not included.",
        f"Machine: {device}, {first.get('cpu_count', NOT_RECORDED)} cores, device `{first.get('device', NOT_RECORDED)}`, "
        f"`amp: auto` resolved to `{first.get('amp_auto', NOT_RECORDED)}`; torch {first.get('torch', NOT_RECORDED)}, "
        f"Python {first.get('python', NOT_RECORDED)}; commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}"
        + (f"; 1-minute load average {min(loads):.1f} to {max(loads):.1f} while it ran" if loads
           else f"; load average {NOT_RECORDED}")
        + reloads,
    ]
    if training:
        parts = [f"{stem}: {len(minutes)} runs of {_duration_range(minutes.min() * 60, minutes.max() * 60)} "
                 f"({_duration(float(minutes.sum()) * 60)} in all)" for stem, minutes in sorted(training.items())]
        lines.append("Training per run, as the pages show it (from the results they read; a notebook's wall time "
                     "above leaves out the training of runs it reloaded): " + "; ".join(parts) + ".")
    return "\n".join(lines)


def update_readme_timings(profile: str, readme: Path | None = None) -> str:
    """Rewrite the block between :func:`timings_markers` in ``readme`` (default: the repository's
    README.md) from ``profile``'s run records; returns the new block."""
    readme = Path(readme) if readme is not None else paths.ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    begin, end = timings_markers(profile)
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"{_shown(readme)} needs exactly one pair of lines\n{begin}\n{end}\nwhere the timings go")
    block = timings_markdown(profile, run_records(profile), training_minutes(profile))
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    _atomic_write_text(readme, f"{head}{begin}\n{block}\n{end}{tail}")
    return block


TIMING_LINE = re.compile(r"\*\*(?P<total>[\d.]+ (?:s|min|h)) for the (?:four notebooks|\d+ notebooks with a recorded "
                         r"time)\*\* \((?P<each>[^)]*)\)")
_TIMING_ITEM = re.compile(r"(?P<stem>\d\d) (?P<time>[^,\[]+?)(?: \[[^\]]*\])?(?:, |$)")


def parse_timings(text: str, profile: str) -> dict:
    """The generated block of ``profile`` in a README's ``text``: ``{"total": "9.1 min", "notebooks":
    {"01": "41 s", ...}, "block": the text}``; ValueError when absent or not in the generated form."""
    begin, end = timings_markers(profile)
    if begin not in text or end not in text:
        raise ValueError(f"no timings block for {profile!r}")
    block = text.split(begin, 1)[1].split(end, 1)[0].strip()
    match = TIMING_LINE.search(block)
    if not match:
        raise ValueError(f"the timings block of {profile!r} is not in the generated form: {block[:200]!r}")
    each = {item["stem"]: item["time"] for item in _TIMING_ITEM.finditer(match["each"])}
    return {"total": match["total"], "notebooks": each, "block": block}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.notebooks", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "render", "prepare"):
        command = sub.add_parser(name)
        command.add_argument("--profile", default="default")
        if name != "render":
            command.add_argument("--only", nargs="*", help="notebook prefixes, e.g. 01 03")
        if name == "prepare":
            command.add_argument("--out", type=Path, default=None, help="default: build/nbval/<profile>")
        else:
            command.add_argument("--allow-mixed-commits", metavar="REASON", default=None,
                                 help="render pages executed at different commits together; the index names "
                                      "the older pages and gives REASON")
    keep = sub.add_parser("keep", help="copy reports/PROFILE and figures/PROFILE into FACE_STORAGE (e.g. Drive)")
    keep.add_argument("--profile", default="colab")
    times = sub.add_parser("times", help="the README's table of expected times on a T4 (estimates)")
    times.add_argument("--profile", default="colab")
    sub.add_parser("check-sync")
    sub.add_parser("sync")
    lab_command = sub.add_parser("lab", help="JupyterLab on notebooks/ with the project's kernel (make lab)")
    lab_command.add_argument("--port", type=int, default=8888, help="tried first; a taken port is replaced")
    lab_command.add_argument("--root", type=Path, default=None, help="the folder it opens (default: notebooks/)")
    lab_command.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    timings = sub.add_parser("timings", help="rewrite the README's timing block from reports/<profile>/*.run.json")
    timings.add_argument("--profile", default="default")
    timings.add_argument("--readme", type=Path, default=None, help="default: the repository's README.md")
    args = parser.parse_args(argv)

    if args.command == "run":
        execute(args.profile, args.only)
        render(args.profile, args.allow_mixed_commits)
    elif args.command == "render":
        render(args.profile, args.allow_mixed_commits)
    elif args.command == "prepare":
        out = args.out or paths.BUILD / "nbval" / args.profile
        for path in prepare(args.profile, out, args.only):
            print(f"prepared {path}")
    elif args.command == "check-sync":
        problems = check_sync()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            return 1
        print(f"check-sync: {len(notebook_sources())} notebook pairs agree")
    elif args.command == "keep":
        keep_report(args.profile)
    elif args.command == "times":
        print(time_table_markdown(args.profile))
    elif args.command == "sync":
        sync()
    elif args.command == "lab":
        lab(args.port, args.root, open_browser=not args.no_browser)
    elif args.command == "timings":
        print(update_readme_timings(args.profile, args.readme))
    return 0


if __name__ == "__main__":
    sys.exit(main())
