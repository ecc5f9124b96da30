"""Notebook parameters, checked in each notebook's first code cell before anything slow runs.

Papermill injects a profile's values (``params/<profile>.yaml``) and command-line values into a
notebook's ``parameters`` cell without looking at them, so a bad value used to fail late (after the
image cache and the toy sweep) or with a message about something else (``epochs: 0`` as
``KeyError: 'seconds'``). Each notebook calls, right after its imports::

    parameters.validate("02_sphereface", globals())

which checks every parameter named in that notebook's spec (:data:`SPECS`), raises one
:class:`ParameterError` listing every bad value (each with where it came from, e.g.
``params/smoke.yaml:17``, what is accepted and what to do), and prints notes about valid but
consequential choices (a single head: the head comparisons are skipped).

A spec maps a parameter name to a :class:`Rule`; adding a parameter is one line in :data:`SPECS`, and
every parameter a notebook declares must be in its spec: papermill injects any name it is given (as a
cell after the ``parameters`` cell), so a misspelt name (``-y "{epoch: 7}"``) would otherwise leave the
notebook on its default. :func:`unknown_parameters` finds such names among ``globals()``: the plain
values (numbers, strings, lists, mappings, None) under a lower-case name that no spec lists; modules,
functions, classes, upper-case constants and IPython's own names are not parameters. :data:`ANY`
declares a name that may hold anything.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lib import paths

__all__ = ["ANY", "COMPARISONS", "ParameterError", "Rule", "SPECS", "comparisons", "gpu_guard",
           "unknown_parameters", "validate"]


class ParameterError(ValueError):
    """One or more notebook parameters are invalid; the message lists each one and how to fix it."""


@dataclass(frozen=True)
class Rule:
    """How one parameter is checked: ``problem(value)`` returns what is wrong (or None); ``expects`` says
    what is accepted, for the message."""

    expects: str
    problem: Callable[[Any], str | None]


# ----------------------------------------------------------------------------------- rule builders
def _is_whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _string_hint(value) -> str | None:
    """Papermill's ``-p name value`` passes lists and dicts as strings; say how to pass them."""
    if isinstance(value, str) and value.strip()[:1] in "[{":
        return (f"it is the string {value!r}, not a list or mapping (papermill -p passes text; pass YAML "
                f"with -y, e.g. -y \"seeds: [0, 1]\")")
    return None


def whole(minimum: int | None = None, maximum: int | None = None) -> Rule:
    """A whole number (``bool`` is not one), within ``[minimum, maximum]``."""
    bounds = _bounds_text(minimum, maximum)

    def problem(value):
        if not _is_whole(value):
            return f"not a whole number ({type(value).__name__})"
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            return f"out of range: must be {bounds}"
        return None

    return Rule(f"a whole number {bounds}".strip(), problem)


def number(minimum: float | None = None, maximum: float | None = None, *, above: float | None = None,
           below: float | None = None) -> Rule:
    """A finite real number within closed bounds ``minimum``/``maximum`` or open ones ``above``/``below``."""
    parts = [f">= {minimum:g}" if minimum is not None else "", f"> {above:g}" if above is not None else "",
             f"<= {maximum:g}" if maximum is not None else "", f"< {below:g}" if below is not None else ""]
    bounds = " and ".join(part for part in parts if part)

    def problem(value):
        if not _is_number(value):
            return f"not a finite number ({type(value).__name__})"
        if ((minimum is not None and value < minimum) or (maximum is not None and value > maximum)
                or (above is not None and value <= above) or (below is not None and value >= below)):
            return f"out of range: must be {bounds}"
        return None

    return Rule(f"a number {bounds}".strip(), problem)


def probability(below_one: bool = False) -> Rule:
    """A probability: in [0, 1] (or [0, 1) with ``below_one``, e.g. a dropout rate)."""
    return number(0.0, None if below_one else 1.0, below=1.0 if below_one else None)


def flag() -> Rule:
    def problem(value):
        return None if isinstance(value, bool) else f"not True or False ({type(value).__name__})"

    return Rule("True or False", problem)


def choice(*values) -> Rule:
    """One of ``values``, of the same type too (so that 1 is not taken for True, nor 0 for False)."""

    def problem(value):
        if any(value is accepted or (type(value) is type(accepted) and value == accepted) for accepted in values):
            return None
        return "not one of the accepted values"

    return Rule("one of " + " | ".join(repr(value) for value in values), problem)


def optional(rule: Rule) -> Rule:
    return Rule(f"None or {rule.expects}", lambda value: None if value is None else rule.problem(value))


def whole_list(minimum: int | None = None) -> Rule:
    """A non-empty list of distinct whole numbers (e.g. seeds)."""
    item = whole(minimum)
    return Rule(f"a non-empty list of distinct whole numbers {_bounds_text(minimum, None)}".strip(),
                lambda value: _elements_problem(value, item, distinct=True))


def _elements_problem(value, item: Rule, *, distinct: bool) -> str | None:
    """Why ``value`` is not a non-empty list whose elements all pass ``item`` (and, with ``distinct``,
    are distinct); None when it is."""
    if not isinstance(value, (list, tuple)):
        return _string_hint(value) or f"not a list ({type(value).__name__})"
    if not value:
        return "empty: give at least one"
    for element in value:
        if item.problem(element):
            return f"element {element!r}: {item.problem(element)}"
    if distinct and len(set(value)) != len(value):
        return "lists a value twice"
    return None


def _list_problem(value, allowed, what: str) -> str | None:
    """Why ``value`` is not a non-empty list of distinct entries of ``allowed`` (None when it is)."""
    if isinstance(value, str):
        return _string_hint(value) or f"a single string, not a list: write [{value}]"
    if not isinstance(value, (list, tuple)):
        return f"not a list ({type(value).__name__})"
    if not value:
        return f"empty: give at least one {what}"
    unknown = [element for element in value if element not in allowed]
    if unknown:
        return f"unknown {what}(s) {unknown}; the {what}s are {list(allowed)}"
    if len(set(value)) != len(value):
        return f"lists a {what} twice"
    return None


def head_names() -> Rule:
    """A non-empty list of distinct head names registered in :data:`lib.losses.HEADS`."""

    def problem(value):
        from lib.losses import HEADS

        return _list_problem(value, HEADS, "head")

    return Rule("a non-empty list of lib.losses head names", problem)


def choice_list(*values) -> Rule:
    """A non-empty list of distinct values, each one of ``values`` (e.g. the targets of notebook 03)."""
    return Rule("a non-empty list of " + " | ".join(repr(v) for v in values),
                lambda value: _list_problem(value, values, "value"))


def head_pairs() -> Rule:
    """A list of [head, reference] pairs of lib.losses head names (the comparisons a notebook reports)."""

    def problem(value):
        from lib.losses import HEADS

        if not isinstance(value, (list, tuple)):
            return _string_hint(value) or f"not a list ({type(value).__name__})"
        for pair in value:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                return f"element {pair!r} is not a [head, reference] pair"
            unknown = [head for head in pair if head not in HEADS]
            if unknown:
                return f"unknown head(s) {unknown} in {list(pair)}; the heads are {list(HEADS)}"
            if pair[0] == pair[1]:
                return f"{list(pair)} compares a head with itself"
        return None

    return Rule("a list of [head, reference] pairs of lib.losses head names", problem)


def head_name() -> Rule:
    def problem(value):
        from lib.losses import HEADS

        return None if value in HEADS else f"unknown head; the heads are {list(HEADS)}"

    return Rule("a lib.losses head name", problem)


def tuning_grid() -> Rule:
    """``{run setting: [candidate values]}``: the settings notebook 02 chooses on the validation pairs."""

    def problem(value):
        from dataclasses import fields

        from lib.settings import NOT_TUNED, RunSettings

        if not isinstance(value, Mapping):
            return _string_hint(value) or f"not a mapping ({type(value).__name__})"
        names = {spec.name for spec in fields(RunSettings)} - set(NOT_TUNED)
        for name, candidates in value.items():
            if name not in names:
                return f"{name!r} is not a run setting; choose among {sorted(names)}"
            if not isinstance(candidates, list) or len(candidates) < 2:
                return f"{name}: give a list of at least two candidate values, got {candidates!r}"
        return None

    return Rule("a mapping {run setting: [two or more candidate values]}", problem)


def tuning_stages() -> Rule:
    """``[[setting, ...], ...]`` or null: the order notebook 02's tuning grid was decided in (one list per stage)."""

    def problem(value):
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(stage, list) and stage for stage in value):
            return _string_hint(value) or f"give a list of non-empty lists of setting names, got {value!r}"
        return None

    return Rule("null or a list of lists of the tuning grid's settings, in the order they were decided", problem)


def longer_run() -> Rule:
    """Notebook 03's plateau check: ``{target: ..., head: ..., seed: ...}``, one run trained with twice the epochs."""

    def problem(value):
        if not isinstance(value, Mapping):
            return _string_hint(value) or f"not a mapping ({type(value).__name__})"
        if set(value) != {"target", "head", "seed"}:
            return f"give exactly the keys target, head and seed, got {sorted(value)}"
        return (choice("race", "gender", "age").problem(value["target"]) or head_name().problem(value["head"])
                or whole(0).problem(value["seed"]))

    return Rule("None or {target: race|gender|age, head: a lib.losses head, seed: an integer}", problem)


def head_overrides() -> Rule:
    """``{head: {hyperparameter: value}}``; each head is built once (8-d, 2 classes) to check its values."""

    def problem(value):
        from lib.losses import HEADS, make_head

        if not isinstance(value, Mapping):
            return _string_hint(value) or f"not a mapping ({type(value).__name__})"
        for head, hparams in value.items():
            if head not in HEADS:
                return f"unknown head {head!r}; the heads are {list(HEADS)}"
            if not isinstance(hparams, Mapping):
                return f"{head}: not a mapping of hyperparameters ({type(hparams).__name__})"
            bad = {name: v for name, v in hparams.items() if not _is_number(v)}
            if bad:
                return f"{head}: {bad} are not finite numbers"
            try:
                make_head(head, 8, 2, **hparams)
            except (ValueError, TypeError) as error:
                return f"{head}: {error}"
        return None

    return Rule("a mapping {head: {hyperparameter: number}} with the heads' own hyperparameter names", problem)


def model_name() -> Rule:
    def problem(value):
        from lib.models import MODELS

        if not isinstance(value, str) or value.lower().replace("-", "").replace("_", "") not in MODELS:
            return f"unknown model; the models are {sorted(MODELS)}"
        return None

    return Rule("a lib.models network name (spherecnn | sphereface4 | resnet18)", problem)


def data_source(dataset: str, keywords: tuple[str, ...]) -> Rule:
    """A source keyword or a folder; the folder's existence is checked by :func:`validate` (``check_paths``)."""

    def problem(value):
        if not isinstance(value, str) or not value.strip():
            return f"not a source name or folder path ({type(value).__name__})"
        if value in keywords:
            return None
        if not re.search(r"[/\\~.]", value):
            return f"unknown source (not {' | '.join(keywords)}, and not a path)"
        return None

    return Rule(f"{' | '.join(keywords)} or the path of a {dataset} folder", problem)


def device() -> Rule:
    def problem(value):
        import torch

        if not isinstance(value, str):
            return f"not a device name ({type(value).__name__})"
        kind, _, index = value.partition(":")
        if kind in ("auto", "cpu") and not index:
            return None
        if kind == "cuda" and (not index or index.isdigit()):
            if not torch.cuda.is_available():
                build = torch.version.cuda
                return (
                    "CUDA is not usable here: torch.cuda.is_available() is False and this torch build is "
                    + (f"built for CUDA {build} (torch.version.cuda), so no NVIDIA driver/GPU is visible to it or "
                       "the driver is older than the build needs (nvidia-smi shows the driver's CUDA version)"
                       if build else "CPU-only (torch.version.cuda is None); install a CUDA build of torch")
                    + ". Use device: auto (or cpu) to run here"
                )
            if index and int(index) >= torch.cuda.device_count():
                return f"there are only {torch.cuda.device_count()} CUDA device(s), numbered from 0"
            return None
        if kind == "mps" and not index:
            backend = getattr(torch.backends, "mps", None)
            if backend is None or not backend.is_available():
                return "Apple MPS is not available (torch.backends.mps.is_available() is False); use device: auto"
            return None
        return "unknown device"

    return Rule("auto | cpu | cuda | cuda:N | mps", problem)


def profile_name() -> Rule:
    """A plain name: it becomes folder names (results, reports, checkpoints), so no path separators."""

    def problem(value):
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            return "not a plain name (letters, digits, '_', '.', '-'; it names folders)"
        return None

    return Rule("a plain profile name such as smoke, default or real", problem)


def rate_list() -> Rule:
    """A non-empty list of rates in (0, 1), e.g. the target false-match rates of an audit."""
    rate = number(above=0.0, below=1.0)
    return Rule("a non-empty list of rates, each > 0 and < 1",
                lambda value: _elements_problem(value, rate, distinct=False))


def encoder_name() -> Rule:
    def problem(value):
        from lib.pretrained import ENCODERS

        return None if value is None or value in ENCODERS else f"unknown encoder; the encoders are {sorted(ENCODERS)}"

    return Rule("None or a lib.pretrained encoder name (dlib)", problem)


def synthetic_preset() -> Rule:
    def problem(value):
        from lib.synthetic import PRESETS

        return None if value in PRESETS else f"unknown preset; the presets are {sorted(PRESETS)}"

    return Rule("a synthetic preset name (smoke | default)", problem)


ANY = Rule("anything", lambda value: None)


def _bounds_text(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f"from {minimum} to {maximum}"
    if minimum is not None:
        return f">= {minimum}"
    if maximum is not None:
        return f"<= {maximum}"
    return ""


# ------------------------------------------------------------------------------------------- specs
# Parameters several notebooks share; each spec picks the ones its notebook declares.
COMMON: dict[str, Rule] = {
    "profile": profile_name(),
    "seed": whole(0),
    "synthetic_preset": synthetic_preset(),
    "fairface_source": data_source("FairFace", ("synthetic", "shared", "hub")),
    "lfw_source": data_source("LFW", ("synthetic", "shared", "sklearn")),
    "fairface_padding": choice("0.25", "1.25", 0.25, 1.25),
    "device": device(),
    "allow_cpu": flag(),
}



# Network input side in pixels: the image cache refuses sources under 16 px on a side, and the sources are
# 224 (FairFace) or 250 (LFW) px, so more than twice that only upscales.
IMAGE_SIZE = (16, 512)


def _pick(*names: str) -> dict[str, Rule]:
    return {name: COMMON[name] for name in names}


SPECS: dict[str, dict[str, Rule]] = {
    "01_data_audit": {
        **_pick("profile", "seed", "synthetic_preset", "fairface_source", "lfw_source", "fairface_padding",
                "allow_cpu"),
        "audit_full_labels": flag(),
        "hash_lfw": flag(),
    },
    "02_sphereface": {
        **_pick("profile", "synthetic_preset", "lfw_source", "device", "allow_cpu"),
        "seeds": whole_list(0),
        "heads": head_names(),
        "head_hparams": head_overrides(),
        "model": model_name(),
        "embedding_dim": whole(1),
        "image_size": whole(*IMAGE_SIZE),
        "crop": optional(whole(1, 250)),  # LFW images are 250x250
        "alignment": choice("center", "aligned"),
        "align_margin": number(0.0, 1.0),
        "epochs": whole(1),
        "batch_size": whole(1),
        "optimizer": choice("adam", "adamw", "sgd"),
        "lr": number(above=0.0),
        "weight_decay": number(0.0),
        "schedule": choice(None, "cosine", "step"),
        "flip": flag(),
        "max_shift": whole(0),
        "erase": probability(),
        "dropout": probability(below_one=True),
        "amp": choice("auto", "bf16", "fp16", True, False, None, "off"),
        "validation_fraction": number(above=0.0, below=1.0),
        "pairs_per_set": whole(10),
        "eval_every": whole(1),
        "fuse_flip": flag(),
        "toy_identities": whole(2),
        "toy_steps": whole(1),
        "pretrained_encoder": encoder_name(),
        "setting_note": Rule("a string", lambda value: None if isinstance(value, str) else f"not a string ({type(value).__name__})"),
        "tuning_grid": tuning_grid(),
        "tuning_stages": tuning_stages(),
        "tuning_heads": head_names(),
    },
    "03_cosrelu_vs_softmax": {
        **_pick("profile", "synthetic_preset", "fairface_source", "fairface_padding", "device", "allow_cpu"),
        "seeds": whole_list(0),
        "targets": choice_list("race", "gender", "age"),
        "heads": head_names(),
        "head_hparams": head_overrides(),
        "head_pairs": head_pairs(),
        "correction": choice("holm", "bh"),
        "amp": choice("auto", "bf16", "fp16", True, False, None, "off"),
        "weights": choice(None, "imagenet"),
        "image_size": whole(*IMAGE_SIZE),
        "epochs": whole(1),
        "batch_size": whole(1),
        "lr": number(above=0.0),
        "schedule": choice(None, "cosine", "step"),
        "max_shift": whole(0),
        "limit": optional(whole(1)),
        "longer_run": optional(longer_run()),
        "pretrained_encoder": encoder_name(),
        "frozen_targets": choice_list("race", "gender", "age"),
        "frozen_heads": head_names(),
        "frozen_seeds": whole_list(0),
        "frozen_epochs": whole(1),
        "frozen_batch_size": whole(1),
        "frozen_lr": number(above=0.0),
    },
    "04_fairness": {
        **_pick("profile", "seed", "synthetic_preset", "lfw_source"),
        "lfw_gender_folder": ANY,  # None or a folder; checked with the paths (check_paths)
        "frvt_targets_trained": rate_list(),
        "frvt_targets_pretrained": rate_list(),
        "frvt_n_boot": whole(1),
        "pretrained_encoder": encoder_name(),
        "n_permutations": whole(1),
    },
}

# The head-vs-head comparisons each notebook reports (first minus second), in its order.
COMPARISONS: dict[str, tuple[tuple[str, str], ...]] = {
    "02_sphereface": (("sphereface", "softmax"), ("cosface", "softmax"), ("normsoftmax", "softmax"),
                      ("sphereface", "course_sphereface"), ("cosface", "sphereface")),
}  # notebook 03 takes its comparisons as the parameter head_pairs (checked in _notes)


def comparisons(notebook: str, heads: Iterable[str]) -> list[tuple[str, str]]:
    """The comparisons of ``notebook`` (see :data:`COMPARISONS`) whose two heads are both in ``heads``."""
    heads = set(heads)
    return [(a, b) for a, b in COMPARISONS.get(_stem(notebook), ()) if a in heads and b in heads]


# --------------------------------------------------------------------------------------- validation
def validate(notebook: str, params: Mapping[str, Any], *, check_paths: bool = True, quiet: bool = False) -> list[str]:
    """Check the parameters of ``notebook`` (a stem such as ``"02_sphereface"``, or just ``"02"``).

    ``params`` is any mapping that holds the parameters, typically the notebook's ``globals()``; only
    the names in the notebook's spec are looked at, and a spec name that is absent is skipped.
    ``check_paths``: also require folders named by the sources to exist and the folders the notebook
    writes (results, figures, image cache, checkpoints) to be writable (off to check a profile for
    another machine). Names papermill injected that the notebook does not declare are refused
    (:func:`unknown_parameters`). Raises :class:`ParameterError` listing every problem at once. Returns notes on
    valid but consequential values, and prints them unless ``quiet``.
    """
    stem = _stem(notebook)
    spec = SPECS[stem]
    values = {name: params[name] for name in spec if name in params}
    problems = [(name, rule, rule.problem(value)) for name, value in values.items()
                for rule in (spec[name],)]
    problems = [(name, f"{problem}. Expected {rule.expects}") for name, rule, problem in problems if problem]
    bad = {name for name, _ in problems}
    problems += [item for item in _cross_checks(stem, values, check_paths) if item[0] not in bad]
    unknown = unknown_parameters(stem, params)
    problems = [(name, _unknown_text(stem, name)) for name in unknown] + problems
    if problems:
        origin = _Origin(values.get("profile"), stem)
        shown = {**values, **{name: params[name] for name in unknown}}
        lines = [f"- {name} = {shown.get(name)!r}{origin.of(name, shown.get(name))}: {text}"
                 for name, text in problems]
        raise ParameterError(
            f"notebook {stem}: {len(problems)} invalid parameter(s), nothing was run:\n" + "\n".join(lines)
            + f"\nFix them in {origin.file_text} or on the command line (papermill -p name value; lists and "
              f"mappings as YAML: -y \"name: [a, b]\")."
        )
    notes = _notes(stem, values)
    if not quiet:
        for note in notes:
            print(f"Note: {note}")
    return notes


# Names IPython puts in a notebook's globals; plain values, but never parameters.
_IPYTHON_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit"})
_PLAIN_TYPES = (type(None), bool, numbers.Number, str, bytes, list, tuple, dict, set)


def unknown_parameters(notebook: str, params: Mapping[str, Any]) -> list[str]:
    """The names in ``params`` (a notebook's ``globals()``) that look injected by papermill but are not
    parameters of ``notebook``: plain values (None, numbers, strings, lists, mappings) under a name that
    is not private (``_x``), not upper case (an imported constant such as ``RACES``), not IPython's, and
    not in the notebook's spec. Call it before the notebook defines variables of its own."""
    spec = SPECS[_stem(notebook)]
    return sorted(name for name, value in params.items()
                  if name not in spec and not name.startswith("_") and not name.isupper()
                  and name not in _IPYTHON_NAMES and isinstance(value, _PLAIN_TYPES))


def _unknown_text(stem: str, name: str) -> str:
    close = difflib.get_close_matches(name, SPECS[stem], n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"its parameters are {sorted(SPECS[stem])}"
    return (f"not a parameter of notebook {stem} (papermill injects any name it is given, so the notebook would "
            f"run with its default instead); {hint}")


def _stem(notebook: str) -> str:
    matches = [stem for stem in SPECS if stem == notebook or stem.split("_", 1)[0] == notebook]
    if len(matches) != 1:
        raise KeyError(f"no parameter spec for notebook {notebook!r}; known: {sorted(SPECS)}")
    return matches[0]


def _cross_checks(stem: str, values: dict, check_paths: bool) -> list[tuple[str, str]]:
    """Problems that involve the data on disk or more than one parameter."""
    problems = []
    guard = gpu_guard(values)
    if guard:
        problems.append(("allow_cpu", guard))
    if check_paths:
        for name, dataset in (("fairface_source", "fairface"), ("lfw_source", "lfw")):
            source = values.get(name)
            # synthetic and sklearn sources are generated or downloaded by the notebooks when missing
            if name in values and source not in ("synthetic", "sklearn") and SPECS[stem][name].problem(source) is None:
                root = paths.dataset_root(source, dataset, "default")
                if root != "hub" and not Path(root).is_dir():
                    where = "the real-data folder (setting FACE_SHARED_DATA)" if source == "shared" else "a folder"
                    problems.append((name, f"{root} is not {where} that exists; download the data, point the "
                                           f"source at the folder that holds it, or use synthetic"))
        problems += _output_folder_problems(stem, values.get("profile"))
        gender_folder = values.get("lfw_gender_folder")
        if gender_folder is not None:
            folder = Path(str(gender_folder)).expanduser()
            folder = folder if folder.is_absolute() else paths.ROOT / folder
            missing = [name for name in ("male_names.txt", "female_names.txt") if not (folder / name).is_file()]
            if missing:
                problems.append(("lfw_gender_folder", f"{folder} lacks {missing}; point it at the folder that holds "
                                                      f"male_names.txt and female_names.txt, or use None"))
    problems += _precision_problems(values)
    problems += _alignment_checks(values)
    size, shift = values.get("image_size"), values.get("max_shift")
    if _is_whole(size) and _is_whole(shift) and shift >= size > 0:
        problems.append(("max_shift", f"a shift of {shift} px moves the whole {size} px image out of view; "
                                      f"use less than image_size"))
    return problems


def gpu_guard(values: Mapping[str, Any]) -> str | None:
    """Why a profile that needs a GPU (``allow_cpu: false``, as ``params/colab.yaml`` sets) cannot run here,
    or None. A runtime without CUDA (Colab's GPU quota used up, or the wrong runtime type) would otherwise
    train the series on two CPU cores for days without a word; ``allow_cpu: true`` runs it anyway."""
    if values.get("allow_cpu") is not False:
        return None
    import torch

    if torch.cuda.is_available():
        return None
    return ("this profile trains on a GPU, and no CUDA GPU is visible (torch.cuda.is_available() is False), so it "
            "would run on the CPU for days. On Google Colab choose Runtime → Change runtime type → GPU (a T4 is "
            "enough), then run the cells again; if no GPU is offered, your GPU quota is used up for now. To run "
            "on the CPU anyway, set allow_cpu: true (papermill -p allow_cpu True, or in the profile's common section)")


def _output_folder_problems(stem: str, profile) -> list[tuple[str, str]]:
    """The folders this notebook writes, each checked writable (:func:`lib.paths.check_writable`), so that a
    read-only or misplaced folder stops the run before any data is decoded or any model trained."""
    if not isinstance(profile, str) or profile_name().problem(profile):
        return []
    folders = {"results": paths.RESULTS / profile, "figures": paths.FIGURES / profile, "image cache": paths.CACHE}
    if stem in ("02_sphereface", "03_cosrelu_vs_softmax"):
        folders["checkpoint"] = paths.CHECKPOINTS / profile
    problems = []
    for role, folder in folders.items():
        try:
            paths.check_writable(folder, role)
        except paths.FolderNotWritable as error:
            problems.append(("profile", error.strerror))
    return problems


def _precision_problems(values: dict) -> list[tuple[str, str]]:
    """fp16 autocast needs CUDA: refused up front when ``device`` names another device, or is ``auto``
    on a machine without CUDA (it would fail in the training cell, after the image cache is decoded)."""
    device_name = values.get("device", "auto")
    if values.get("amp") != "fp16" or not isinstance(device_name, str):
        return []
    kind = device_name.partition(":")[0]
    if kind not in ("cuda", "auto"):
        return [("amp", f"fp16 needs CUDA, and device is {device_name!r}; use amp: bf16 on a CPU")]
    if kind == "auto":
        import torch

        if not torch.cuda.is_available():
            return [("amp", "fp16 needs CUDA, and device: auto is not CUDA here (torch.cuda.is_available() is "
                            "False); use amp: bf16 or auto on a CPU, or run on a CUDA GPU")]
    return []


def _alignment_checks(values: dict) -> list[tuple[str, str]]:
    """Notebook 02's face alignment: a margin without alignment, aligned synthetic faces."""
    alignment, margin = values.get("alignment"), values.get("align_margin")
    if alignment == "center" and _is_number(margin) and margin != 0:
        return [("align_margin", "only aligned faces have a margin (a centre crop's size is `crop`); leave it at 0 "
                                 "or set alignment: aligned")]
    if alignment == "aligned" and values.get("lfw_source") == "synthetic":
        return [("alignment", "the synthetic faces are drawn, not photographed: dlib's detector finds no landmarks "
                              "on them, so every face would come from the fallback box; use alignment: center")]
    return []


def _notes(stem: str, values: dict) -> list[str]:
    notes = []
    heads = values.get("heads")
    if isinstance(heads, (list, tuple)) and stem in COMPARISONS:
        kept = comparisons(stem, heads)
        skipped = [f"{a} − {b}" for a, b in COMPARISONS[stem] if (a, b) not in kept]
        if len(heads) == 1:
            notes.append(f"only one head ({heads[0]}): every head-vs-head comparison is skipped")
        elif skipped:
            notes.append(f"comparisons skipped because a head is not trained: {', '.join(skipped)}")
    pairs = values.get("head_pairs")
    if isinstance(heads, (list, tuple)) and isinstance(pairs, (list, tuple)):
        skipped = [f"{a} − {b}" for a, b in (tuple(p) for p in pairs if len(p) == 2) if a not in heads or b not in heads]
        if len(heads) == 1:
            notes.append(f"only one head ({heads[0]}): every head-vs-head comparison is skipped")
        elif skipped:
            notes.append(f"comparisons skipped because a head is not trained: {', '.join(skipped)}")
    overrides = values.get("head_hparams")
    if isinstance(overrides, Mapping) and isinstance(heads, (list, tuple)):
        unused = sorted(set(overrides) - set(heads))
        if unused:
            notes.append(f"head_hparams for {unused} are not used: those heads are not in heads")
    seeds = values.get("seeds")
    if isinstance(seeds, (list, tuple)) and len(seeds) == 1:
        notes.append("one seed: the differences between heads have no interval over seeds")
    if _is_whole(values.get("eval_every")) and _is_whole(values.get("epochs")) and values["eval_every"] > values["epochs"]:
        notes.append(f"eval_every ({values['eval_every']}) exceeds epochs ({values['epochs']}): "
                     f"the model is evaluated after the last epoch only")
    profile = values.get("profile")
    if isinstance(profile, str) and not (paths.PARAMS / f"{profile}.yaml").is_file():
        notes.append(f"there is no params/{profile}.yaml: the values are the notebook's defaults and what was passed")
    elif isinstance(profile, str):
        # Typically `profile` changed by hand in an interactive session, the other values left at the defaults.
        profile_values = _Origin(profile, stem).values
        differ = [f"{name} = {_short(values[name])} (the file: {_short(profile_values[name])})" for name in values
                  if name in profile_values and values[name] != profile_values[name]]
        if differ:
            notes.append(f"{len(differ)} value(s) differ from params/{profile}.yaml: {'; '.join(differ)}. To run "
                         f"with the profile's values in a lab, add a cell below the parameters cell: `from "
                         f"lib.notebooks import notebook_parameters; globals().update(notebook_parameters("
                         f"{profile!r}, {stem!r}))`")
    return notes


def _short(value, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


class _Origin:
    """Where a value came from, for messages: the line of ``params/<profile>.yaml`` that sets it, if any."""

    def __init__(self, profile, stem: str):
        self.path = paths.PARAMS / f"{profile}.yaml" if isinstance(profile, str) else None
        self.file_text = f"params/{profile}.yaml (section {stem} or common)" if self.path else "the parameters"
        self.lines, self.values = {}, {}
        if self.path is None or not self.path.is_file():
            return
        try:
            text = self.path.read_text(encoding="utf-8")
            root, data = yaml.compose(text), yaml.safe_load(text) or {}
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            return
        for section in ("common", stem):  # the notebook's section wins, as in lib.notebooks
            node = next((value for key, value in getattr(root, "value", []) if key.value == section), None)
            if isinstance(node, yaml.MappingNode):
                for key, _ in node.value:
                    self.lines[key.value] = key.start_mark.line + 1
                    self.values[key.value] = (data.get(section) or {}).get(key.value)

    def of(self, name: str, value) -> str:
        where = f"params/{self.path.name}:{self.lines[name]}" if name in self.lines else None
        if where is None:
            return " (the notebook's default, or passed on the command line)"
        if _same_value(self.values.get(name), value):
            return f" ({where})"
        return f" (passed on the command line; {where} has {self.values.get(name)!r})"


def _same_value(a, b) -> bool:
    """Equal and of the same type (True is not the profile's 1, nor 1.0 its 1), element by element."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    return a == b


def declared_in(source: str | Path) -> dict[str, Any]:
    """The parameters a jupytext percent script declares (its ``parameters`` cell, executed alone).

    Used by the tests to check that every spec name exists in its notebook.
    """
    text = Path(source).read_text(encoding="utf-8")
    match = re.search(r'^# %% tags=\["parameters"\]\n(.*?)(?=^# %%)', text, flags=re.S | re.M)
    if match is None:
        raise ValueError(f"{source} has no '# %% tags=[\"parameters\"]' cell")
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), str(source), "exec"), {}, namespace)  # the cell holds only assignments
    return namespace

