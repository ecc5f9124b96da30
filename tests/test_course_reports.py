"""The course reports' numbers beside a run's own (lib.course_reports), on small hand-made results."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lib import course_reports


def _history():
    rows = []
    for head, fixed, tenfold in [("course_sphereface", (0.55, 0.60), (0.60, 0.66)),
                                 ("softmax", (0.60, 0.65), (0.70, 0.79)),
                                 ("sphereface", (0.58, 0.62), (0.72, 0.85))]:
        for seed, shift in ((0, -0.01), (1, 0.01)):  # two seeds whose mean is the listed value
            rows.append({"head": head, "seed": seed, "epoch": 10, "val_acc_fixed_0.5": float("nan"),
                         "val_acc_10fold": float("nan")})
            rows.append({"head": head, "seed": seed, "epoch": 20, "val_acc_fixed_0.5": fixed[0] + shift,
                         "val_acc_10fold": tenfold[0] + shift})
            rows.append({"head": head, "seed": seed, "epoch": 40, "val_acc_fixed_0.5": fixed[1] + shift,
                         "val_acc_10fold": tenfold[1] + shift})
    return pd.DataFrame(rows)


def _summary():
    return pd.DataFrame({"head": ["course_sphereface", "course_sphereface", "sphereface", "sphereface", "softmax"],
                         "seed": [0, 1, 0, 1, 0], "acc_10fold": [0.64, 0.66, 0.84, 0.86, 0.80],
                         "epochs": [40] * 5})


def test_sphereface_comparison_aligns_epochs_and_picks_the_best_corrected_head():
    table = course_reports.sphereface_comparison(_history(), _summary())
    assert list(table.index) == [20, 40, 60, 80, 100]  # epoch 10 was not evaluated: no row
    assert list(table.columns) == ["course report: fixed 0.5", "course_sphereface: validation, fixed 0.5",
                                   "course_sphereface: validation, 10-fold", "sphereface: validation, 10-fold",
                                   "course_sphereface: DevTest, 10-fold", "sphereface: DevTest, 10-fold"]
    assert table.loc[20, "course report: fixed 0.5"] == 0.584
    assert table.loc[100, "course report: fixed 0.5"] == 0.649
    assert table.loc[40, "course_sphereface: validation, fixed 0.5"] == pytest.approx(0.60)
    assert table.loc[40, "sphereface: validation, 10-fold"] == pytest.approx(0.85)
    assert table.loc[40, "sphereface: DevTest, 10-fold"] == pytest.approx(0.85)  # mean of 0.84 and 0.86
    assert math.isnan(table.loc[20, "sphereface: DevTest, 10-fold"])  # DevTest is scored once, at the end
    assert math.isnan(table.loc[60, "sphereface: validation, 10-fold"])


def test_sphereface_comparison_names_missing_columns():
    with pytest.raises(ValueError, match=r"val_acc_fixed_0\.5"):
        course_reports.sphereface_comparison(_history().drop(columns=["val_acc_fixed_0.5"]))


def _write_results(folder, name, rows):
    pd.DataFrame(rows, columns=["epoch", "seed", "loss", "overall"]).to_csv(folder / f"Results - {name}.csv", index=False)


def test_cosrelu_comparison_takes_the_last_epoch_over_seeds(tmp_path):
    _write_results(tmp_path, "COSRELU", [(1, 0, 2.0, 0.40), (2, 0, 1.5, 0.50), (1, 1, 2.1, 0.42), (2, 1, 1.4, 0.60)])
    _write_results(tmp_path, "Softmax", [(1, 0, 1.9, 0.45), (2, 0, 1.8, 0.55)])
    table = course_reports.cosrelu_comparison(tmp_path)
    assert table.loc["cosrelu", "course report (FairFace 0.25, 1 run)"] == 0.652
    assert table.loc["cosine_softmax", "course report (FairFace 0.25, 1 run)"] == 0.655
    assert table.loc["cosrelu", "this run: mean over seeds"] == pytest.approx(0.55)
    assert table.loc["cosrelu", "std over seeds"] == pytest.approx(0.0707107, abs=1e-6)  # sd of (0.5, 0.6)
    assert table.loc["cosrelu", "seeds"] == 2 and table.loc["cosrelu", "epochs"] == 2
    assert math.isnan(table.loc["cosine_softmax", "std over seeds"])  # one seed: no spread


def test_fairface_curve_comparison_puts_the_course_curve_beside_ours(tmp_path):
    _write_results(tmp_path, "COSRELU", [(1, 0, 2.0, 0.40), (1, 1, 2.0, 0.50)])
    _write_results(tmp_path, "Softmax", [(1, 0, 1.9, 0.45)])
    table = course_reports.fairface_curve_comparison(tmp_path)
    assert list(table.index) == list(range(1, 11))
    assert table.loc[4, "course report (FairFace 1.25)"] == 0.680
    assert table.loc[1, "this run: cosrelu"] == pytest.approx(0.45)
    assert math.isnan(table.loc[2, "this run: cosine_softmax"])


def test_missing_results_file_says_which_notebook_writes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="Results - COSRELU.csv.*notebook 03"):
        course_reports.cosrelu_comparison(tmp_path)


def test_a_head_this_run_did_not_train_leaves_blanks_beside_the_course_number(tmp_path):
    """A profile that trains cosine_softmax but not cosrelu still gets both tables (no FileNotFoundError)."""
    _write_results(tmp_path, "Softmax", [(1, 0, 1.9, 0.45), (2, 0, 1.8, 0.55)])
    table = course_reports.cosrelu_comparison(tmp_path)
    assert table.loc["cosrelu", "course report (FairFace 0.25, 1 run)"] == 0.652
    assert math.isnan(table.loc["cosrelu", "this run: mean over seeds"]) and table.loc["cosrelu", "seeds"] == 0
    assert pd.isna(table.loc["cosrelu", "epochs"]) and table.loc["cosine_softmax", "epochs"] == 2
    curve = course_reports.fairface_curve_comparison(tmp_path)
    assert "this run: cosrelu" not in curve and curve.loc[2, "this run: cosine_softmax"] == pytest.approx(0.55)
