"""Try one notebook-02 training setting on one head and record its result on the validation pairs.

Settings are chosen on pairs of DevTrain identities held out of training (``lib.lfw_experiment``), never
on DevTest. Each trial writes one row to ``data/results/<profile>/02_sweep/<run>.csv`` (one file per run,
so two trials can go in parallel); notebook 02 shows the collected rows. A trial is an ordinary run of
notebook 02's ``train_head``: its checkpoint goes to the notebook's own folder under the run's settings
digest, so when the notebook later trains that head and seed with the chosen setting it reuses the trial
instead of training it again (the DevTest score is computed there, once).

Every option is a field of :class:`lib.settings.RunSettings` (``--help`` lists them); options not given
take the value the profile gives notebook 02, so a trial differs from the notebook run only in what is
written on its command line:

    python scripts/sweep_lfw_settings.py --head sphereface --dropout 0 --threads 1
    python scripts/sweep_lfw_settings.py --head softmax --epochs 60 --profile real

``--plan`` prints, instead, one such command line for each trial that the profile's ``tuning_grid`` still
needs (the rule that decides from them is :func:`lib.lfw_experiment.one_at_a_time_choice`):

    python scripts/sweep_lfw_settings.py --plan --profile real
"""

from __future__ import annotations

import argparse
import ast
import json
from dataclasses import MISSING, fields

import pandas as pd
import torch

from lib import lfw, lfw_experiment as experiment, notebooks, paths
from lib.settings import RunSettings
from lib.tables import write_csv

NOTEBOOK = "02_sphereface"


def notebook_values(profile: str) -> dict:
    """Notebook 02's parameter values under ``profile``: the parameter cell's defaults, then the profile's."""
    import papermill

    declared = papermill.inspect_notebook(str(paths.NOTEBOOKS / f"{NOTEBOOK}.ipynb"))
    values = {name: ast.literal_eval(spec["default"]) for name, spec in declared.items()}
    values.update(notebooks.notebook_parameters(profile, NOTEBOOK))
    return values


def _parse(kind, text: str):
    if text.lower() in ("none", "null"):
        return None
    if kind is bool:
        return text.lower() in ("1", "true", "yes")
    return kind(text)


def settings_parser(defaults: dict) -> argparse.ArgumentParser:
    """One ``--option`` per :class:`RunSettings` field (``data`` excepted: it comes from the images)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for spec in fields(RunSettings):
        if spec.name == "data":
            continue
        default = defaults.get(spec.name, spec.default if spec.default is not MISSING else None)
        if spec.name == "head_hparams":
            parser.add_argument("--head-hparams", type=json.loads, default=None,
                                help='JSON, e.g. \'{"margin": 0.4}\' (default: the profile\'s for this head)')
            continue
        kind = {"int": int, "float": float, "bool": bool}.get(str(spec.type).split(" ")[0], str)
        parser.add_argument(f"--{spec.name.replace('_', '-')}", type=lambda text, kind=kind: _parse(kind, text),
                            default=default, help=f"default: {default!r}")
    parser.add_argument("--profile", default="real", help="whose notebook-02 parameters, data and folders to use")
    parser.add_argument("--eval-every", type=int, default=None, help="validation every N epochs (the profile's)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return parser


def _option(value) -> str:
    return "none" if value is None else str(value)


def plan(profile: str, values: dict) -> list[str]:
    """Command lines for the trials the profile's tuning grid still lacks (none: every setting is decided)."""
    grid, heads = values.get("tuning_grid") or {}, values.get("tuning_heads") or []
    current = RunSettings.from_parameters(values, head=heads[0], seed=0).as_dict() if heads else {}
    choice = experiment.one_at_a_time_choice(experiment.sweep_table(paths.results_dir(profile) / "02_sweep"),
                                             grid, heads, current, stages=values.get("tuning_stages"))
    return [f"python scripts/sweep_lfw_settings.py --profile {profile} --head {trial.pop('head')} "
            + " ".join(f"--{name.replace('_', '-')} {_option(value)}" for name, value in trial.items())
            for trial in experiment.missing_trials(choice, heads)]


def main(argv=None) -> None:
    profile = argparse.ArgumentParser(add_help=False)
    profile.add_argument("--profile", default="real")
    profile.add_argument("--plan", action="store_true")
    known, _ = profile.parse_known_args(argv)
    values = notebook_values(known.profile)
    if known.plan:
        print("\n".join(plan(known.profile, values)) or "every setting of the tuning grid is decided")
        return
    args = settings_parser(values).parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = {spec.name: getattr(args, spec.name) for spec in fields(RunSettings) if spec.name != "data"}
    if chosen["head_hparams"] is None:
        chosen["head_hparams"] = values.get("head_hparams", {}).get(chosen["head"], {})
    settings = RunSettings(**chosen)

    source = values.get("lfw_source", "shared")
    faces = lfw.load_lfw(paths.dataset_root(source, "lfw", values.get("synthetic_preset", "default")))
    data = experiment.load_view1(faces, size=settings.image_size, crop=settings.crop,
                                 validation_fraction=values.get("validation_fraction", 0.15),
                                 alignment=settings.alignment, align_margin=settings.align_margin)
    run = experiment.train_head(
        settings, data, eval_every=args.eval_every or values.get("eval_every", 5), flip=values.get("fuse_flip", True),
        checkpoint_dir=paths.checkpoints_dir(known.profile) / NOTEBOOK, device=values.get("device", "auto"),
        score_test=False,
    )
    row = pd.DataFrame([{**experiment.trial_row(run), "threads": torch.get_num_threads()}])
    out = write_csv(row, paths.results_dir(known.profile) / "02_sweep" / f"{run.run_name}.csv")
    print(row.iloc[0].to_string())
    print(f"wrote {paths.shown(out)}")


if __name__ == "__main__":
    main()
