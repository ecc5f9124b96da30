"""The two course reports this project reproduces: what they published, and their numbers beside ours.

* **The SphereFace homework** (COSI 159A, "159 Assignment 2 - Sphereface"): ``sonnygeorge/sphereface`` on
  GitHub at commit :data:`SPHEREFACE_COMMIT`. ``README.md`` reports the DevTest verification accuracy at a
  fixed cosine threshold of 0.5 every 20 epochs of a 100-epoch run (``main.py``: Adam 1e-3, batch 128,
  ``eval_interval`` 20; ``dataloader.py``: the whole 250x250 image resized to 96, random flip, trained on
  the images named in ``pairsDevTrain.txt``).
* **The FairFace project** (COMP 478, "FairFace CosFace/CosReLU vs Softmax", Y. Lebbar):
  ``Y-LEBBAR/COMP478_Project`` on GitHub, ``README.md`` at commit :data:`COMP478_README_COMMIT`: final
  validation accuracy of race classification on FairFace 0.25 for CosReLU and its "softmax" (one run
  each, ImageNet ResNet-18 at 224 px, Adam 1e-4, batch 64), and a FairFace 1.25 run's accuracy by epoch.

Numbers are copied from those READMEs; every function here only arranges them next to what a run of
this project wrote to ``data/results/<profile>/``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

SPHEREFACE_REPOSITORY = "sonnygeorge/sphereface"
SPHEREFACE_COMMIT = "0ac96a07649e12eb150183ba2d8313786d332bc6"
COMP478_REPOSITORY = "Y-LEBBAR/COMP478_Project"
COMP478_README_COMMIT = "7075e4c10d7880455d6968876ad96633087fb82e"

# README table "Test Acc." (fixed threshold 0.5). The README labels rows with the 0-based loop index
# printed by main.py (19, 39, ...); evaluation runs when (epoch + 1) % 20 == 0, i.e. after 20, 40, ...
# completed epochs, which is how this project counts epochs (history column `epoch`, from 1).
SPHEREFACE_FIXED_THRESHOLD_ACCURACY = pd.Series(
    {20: 0.584, 40: 0.623, 60: 0.652, 80: 0.651, 100: 0.649}, name="course report: fixed 0.5")
SPHEREFACE_FIXED_THRESHOLD_ACCURACY.index.name = "epochs trained"

# README section 9.1, "Final accuracy (epoch 10)", FairFace 0.25, one run per loss.
COSRELU_VS_SOFTMAX = {"cosrelu": 0.652, "cosine_softmax": 0.655}

# README section 9.2, FairFace 1.25, "extracted from training logs": epoch -> (training loss, val accuracy).
FAIRFACE_125_BY_EPOCH = pd.DataFrame(
    {"loss": [8.689, 7.236, 6.546, 5.930, 5.353, 4.832, 4.305, 3.841, 3.400, 3.044],
     "accuracy": [0.618, 0.643, 0.652, 0.680, 0.678, 0.679, 0.674, 0.679, 0.664, 0.677]},
    index=pd.RangeIndex(1, 11, name="epoch"))


def sphereface_comparison(history: pd.DataFrame, summary: pd.DataFrame | None = None,
                          course_head: str = "course_sphereface", best_head: str | None = None) -> pd.DataFrame:
    """Accuracy by epochs trained: the course report's fixed-0.5 numbers beside this run's.

    The course report scored its DevTest pairs every 20 epochs; this project scores *validation* pairs
    (held-out DevTrain identities) during training and DevTest once, after the last epoch. So the
    columns are: the course report (DevTest, fixed 0.5); this run's course loss on the validation pairs
    at fixed 0.5 and with the 10-fold threshold; ``best_head`` (default: the corrected head with the
    highest mean final validation accuracy) on the validation pairs; and, in the last epoch's row only,
    DevTest 10-fold accuracy of the course loss and of ``best_head`` from ``summary`` (notebook 02's
    per-run table: ``head, seed, acc_10fold, epochs``). Means over seeds; blank where a side has no number.

    ``history`` is notebook 02's ``02_history.csv`` (``head, seed, epoch, val_acc_fixed_0.5,
    val_acc_10fold``; NaN where an epoch was not evaluated).
    """
    missing = {"head", "seed", "epoch", "val_acc_fixed_0.5", "val_acc_10fold"} - set(history.columns)
    if missing:
        raise ValueError(f"history lacks columns {sorted(missing)} (expected notebook 02's 02_history.csv)")
    evaluated = history.dropna(subset=["val_acc_10fold"])
    mean_by_epoch = evaluated.groupby(["head", "epoch"])[["val_acc_fixed_0.5", "val_acc_10fold"]].mean()
    if best_head is None:
        last = evaluated.sort_values("epoch").groupby(["head", "seed"])["val_acc_10fold"].last().groupby("head").mean()
        last = last.drop(course_head, errors="ignore")
        best_head = last.idxmax() if len(last) else None
    columns = {SPHEREFACE_FIXED_THRESHOLD_ACCURACY.name: SPHEREFACE_FIXED_THRESHOLD_ACCURACY}
    heads = set(mean_by_epoch.index.get_level_values("head"))
    if course_head in heads:
        course = mean_by_epoch.loc[course_head]
        columns[f"{course_head}: validation, fixed 0.5"] = course["val_acc_fixed_0.5"]
        columns[f"{course_head}: validation, 10-fold"] = course["val_acc_10fold"]
    if best_head is not None and best_head in heads:
        columns[f"{best_head}: validation, 10-fold"] = mean_by_epoch.loc[best_head]["val_acc_10fold"]
    if summary is not None and len(summary):
        for head in (course_head, best_head):
            rows = summary[summary["head"] == head] if head is not None else summary.iloc[:0]
            if len(rows):
                columns[f"{head}: DevTest, 10-fold"] = pd.Series({int(rows["epochs"].max()): rows["acc_10fold"].mean()})
    table = pd.DataFrame(columns).sort_index()
    table.index.name = "epochs trained"
    return table


def _results(results_dir: Path, head: str, missing_ok: bool = False) -> pd.DataFrame | None:
    from lib.fairface_experiment import result_file_name  # the file names notebook 03 writes

    path = Path(results_dir) / result_file_name(head)
    if not path.is_file():
        if missing_ok:
            return None
        raise FileNotFoundError(f"{path} does not exist: notebook 03 writes it (run it for this profile first)")
    return pd.read_csv(path)


def _require_some(results_dir, heads) -> None:
    """Stop when none of ``heads`` has a results file (notebook 03 has not run for this profile); a head
    missing beside others (a run that left it out) only leaves blanks."""
    if all(_results(results_dir, head, missing_ok=True) is None for head in heads):
        _results(results_dir, heads[0])  # raises, naming the file and the notebook that writes it


def cosrelu_comparison(results_dir, heads=("cosrelu", "cosine_softmax")) -> pd.DataFrame:
    """Final validation accuracy, the course report's single runs beside this run's seeds.

    Reads notebook 03's ``Results - <HEAD>.csv`` (columns ``epoch, seed, overall``) from
    ``results_dir``; per head the last epoch's accuracy: mean, standard deviation and number of seeds.
    """
    _require_some(results_dir, heads)
    rows = {}
    for head in heads:
        row = {"course report (FairFace 0.25, 1 run)": COSRELU_VS_SOFTMAX.get(head), "this run: mean over seeds": None,
               "std over seeds": None, "seeds": 0, "epochs": None}
        results = _results(results_dir, head, missing_ok=True)
        if results is not None:  # a head this run did not train keeps the course's number beside blanks
            final = results[results["epoch"] == results["epoch"].max()]
            row.update({"this run: mean over seeds": final["overall"].mean(),
                        "std over seeds": final["overall"].std(ddof=1) if len(final) > 1 else None,
                        "seeds": final["seed"].nunique(), "epochs": int(results["epoch"].max())})
        rows[head] = row
    table = pd.DataFrame(rows).T.rename_axis("head")
    return table.astype({"course report (FairFace 0.25, 1 run)": float, "this run: mean over seeds": float,
                         "std over seeds": float, "seeds": int, "epochs": "Int64"})


def fairface_curve_comparison(results_dir, heads=("cosrelu", "cosine_softmax")) -> pd.DataFrame:
    """Validation accuracy by epoch: the course report's FairFace 1.25 run beside this run's heads
    (mean over seeds of ``Results - <HEAD>.csv``; this run's padding is whatever its profile used)."""
    _require_some(results_dir, heads)
    columns = {"course report (FairFace 1.25)": FAIRFACE_125_BY_EPOCH["accuracy"]}
    for head in heads:
        results = _results(results_dir, head, missing_ok=True)  # a head this run did not train: no column
        if results is not None:
            columns[f"this run: {head}"] = results.groupby("epoch")["overall"].mean()
    return pd.DataFrame(columns).sort_index().rename_axis("epoch")
