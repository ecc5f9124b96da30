"""Notebook 04's analysis layer (lib.fairness_analysis) against fairlearn, statsmodels and loops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame
from sklearn.metrics import accuracy_score

import fixtures
from lib import fairness, fairness_analysis as analysis, head_comparison, lfw, paths
from lib.errors import DataError
from lib.labels import RACES

HEADS = ("cosine_softmax", "cosrelu", "arcface")


def make_predictions(seeds=(0, 1, 2), n=700, seed=0, accuracy_by_group=None) -> pd.DataFrame:
    """Saved-predictions-shaped table: every head and seed scores the same n images."""
    rng = np.random.default_rng(seed)
    race = np.array(RACES)[rng.integers(0, 7, n)]
    gender = rng.choice(["Male", "Female"], n)
    y_true = np.array(RACES)[rng.integers(0, 7, n)]
    accuracy_by_group = accuracy_by_group or {}
    frames = []
    for head_index, head in enumerate(HEADS):
        for run_seed in seeds:
            p = np.array([accuracy_by_group.get(r, 0.6 + 0.05 * head_index) for r in race])
            right = rng.random(n) < p
            wrong = np.array(RACES)[(np.searchsorted(RACES, y_true) + rng.integers(1, 7, n)) % 7]
            y_pred = np.where(right, y_true, wrong)
            frames.append(pd.DataFrame({
                "id": [f"val/{i}.jpg" for i in range(n)], "y_true": y_true, "y_pred": y_pred, "race": race,
                "gender": gender, "age": "20-29", "service_test": np.arange(n) % 3 == 0, "head": head,
                "seed": run_seed,
            }))
    predictions = pd.concat(frames, ignore_index=True)
    predictions["correct"] = predictions["y_true"] == predictions["y_pred"]
    return predictions


def test_missing_results_say_which_notebook_to_run(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RESULTS", tmp_path)
    with pytest.raises(DataError, match=r"--profile nowhere --only 03"):
        analysis.read_predictions("nowhere")
    folder = paths.results_dir("partial")
    pd.DataFrame({"id": [1]}).to_csv(folder / analysis.PREDICTIONS_FILE, index=False)
    with pytest.raises(DataError, match="lacks column"):
        analysis.read_predictions("partial")


def test_per_group_accuracy_and_disparity_match_fairlearn():
    predictions = make_predictions()
    table = analysis.per_group_accuracy(predictions, "race", order=RACES)
    disparity = analysis.disparities(predictions, "race", order=RACES).set_index("head")
    for head in HEADS:
        frames = {s: predictions[(predictions["head"] == head) & (predictions["seed"] == s)] for s in (0, 1, 2)}
        metric = {s: MetricFrame(metrics=accuracy_score, y_true=f["y_true"], y_pred=f["y_pred"],
                                 sensitive_features=f["race"]) for s, f in frames.items()}
        by_group = pd.concat([m.by_group for m in metric.values()], axis=1).mean(axis=1)
        mine = table[table["head"] == head].set_index("group")["accuracy"]
        np.testing.assert_allclose(mine.loc[list(RACES)], by_group.loc[list(RACES)], atol=1e-12)
        assert disparity.loc[head, "gap"] == pytest.approx(np.mean([m.difference() for m in metric.values()]))
        assert disparity.loc[head, "ratio"] == pytest.approx(np.mean([m.ratio() for m in metric.values()]))
        assert disparity.loc[head, "n_seeds"] == 3


def test_one_seed_uses_wilson_intervals():
    predictions = make_predictions(seeds=(4,))
    table = analysis.per_group_accuracy(predictions, "gender")
    rows = predictions[predictions["head"] == "arcface"]
    expected = fairness.group_accuracy(rows["y_true"], rows["y_pred"], rows["gender"])
    mine = table[table["head"] == "arcface"].reset_index(drop=True)
    np.testing.assert_allclose(mine[["accuracy", "lower", "upper"]], expected[["accuracy", "lower", "upper"]])
    assert analysis.interval_label(predictions).startswith("95% Wilson")


def test_permutation_tests_and_conclusion():
    # Planted: the reference is far less equal across groups than the other heads.
    unequal = {race: 0.3 + 0.1 * i for i, race in enumerate(RACES)}
    predictions = make_predictions(seeds=(0, 1), n=2100)
    reference = make_predictions(seeds=(0, 1), n=2100, accuracy_by_group=unequal)
    predictions = pd.concat([predictions[predictions["head"] != "cosine_softmax"],
                             reference[reference["head"] == "cosine_softmax"]], ignore_index=True)
    tests = analysis.gap_permutation_tests(predictions, "race", n_permutations=300)
    assert tests.loc[tests["head"] == "cosine_softmax", "p_value"].max() < 0.01
    row = tests[(tests["head"] == "arcface") & (tests["seed"] == 0)].iloc[0]
    frame = predictions[(predictions["head"] == "arcface") & (predictions["seed"] == 0)]
    expected = fairness.permutation_test_gap(frame["y_true"], frame["y_pred"], frame["race"], 300, 0)
    assert (row["gap"], row["p_value"]) == (expected.observed_gap, expected.p_value)

    predictions["target"] = "race"
    status = head_comparison.head_status(predictions)
    comparisons = head_comparison.compare_heads(predictions, status, [("arcface", "cosine_softmax")], order=RACES)
    text = analysis.conclusion(comparisons, status, gap_tests={"race": tests})
    assert text.startswith(head_comparison.summary_text(comparisons, status))
    significant = int((tests["p_value"] < 0.05).sum())
    assert f"For {significant} of {len(tests)} trained models" in text and "per-class recall" in text


def test_subset_accuracy_known_answer():
    predictions = make_predictions(seeds=(0,))
    table = analysis.subset_accuracy(predictions).set_index(["head", "group"])
    rows = predictions[predictions["head"] == "cosrelu"]
    assert table.loc[("cosrelu", "all validation images"), "accuracy"] == pytest.approx(rows["correct"].mean())
    assert table.loc[("cosrelu", "service_test subset"), "accuracy"] == pytest.approx(
        rows.loc[rows["service_test"], "correct"].mean())
    assert table.loc[("cosrelu", "service_test subset"), "n"] == rows["service_test"].sum()


def test_verification_by_gender_with_unknown_faces(tmp_path):
    root = fixtures.build_lfw(tmp_path / "lfw", attributes=True).protocol_dir
    faces, report = analysis.lfw_face_groups(root)
    assert faces.set_index("file").loc["Ann_Archer_0001.jpg", "group"] == "Group A"
    assert report["in_both"] == 1
    unknown = set(faces.loc[faces["gender"] == analysis.UNKNOWN, "file"])
    assert fixtures.LFW_BOTH in unknown and fixtures.LFW_NEITHER in unknown

    pairs = lfw.load_lfw(root).pairs
    rng = np.random.default_rng(0)
    scores = pd.DataFrame({
        "pair": np.arange(len(pairs)), "file1": pairs["path1"].str.rsplit("/", n=1).str[-1],
        "file2": pairs["path2"].str.rsplit("/", n=1).str[-1], "same": pairs["same"].astype(bool),
        "head": "cosface", "seed": 0, "score": rng.uniform(-1, 1, len(pairs)), "threshold_10fold": 0.1,
    })
    rates, notes = analysis.verification_by_group(scores, faces, "gender", "10fold")
    assert notes.loc["cosface", "threshold"] == 0.1
    gender = faces.set_index("file")["gender"]
    g1, g2 = scores["file1"].map(gender), scores["file2"].map(gender)
    known = (g1 != analysis.UNKNOWN) & (g2 != analysis.UNKNOWN)
    assert notes.loc["cosface", "pairs with an unknown face"] == (~known).sum()
    table = rates["cosface"].table.set_index("group")
    for group in ("Male", "Female"):  # brute force over the kept pairs
        members = known & (g1 == group) & (g2 == group)
        impostor = members & ~scores["same"]
        if impostor.any():
            assert table.loc[group, "fmr"] == pytest.approx(np.mean(scores.loc[impostor, "score"] > 0.1))
        genuine = members & scores["same"]
        if genuine.any():
            assert table.loc[group, "fnmr"] == pytest.approx(np.mean(scores.loc[genuine, "score"] <= 0.1))

    _, at_far = analysis.verification_by_group(scores, faces, "gender", 0.25)
    assert at_far.loc["cosface", "threshold"] == fairness.threshold_at_far(scores["score"], scores["same"], 0.25)


def test_planted_order_check():
    difficulty = {"Group A": 0.0, "Group B": 0.5, "Group C": 1.0}
    per_group = pd.DataFrame({"head": ["h"] * 3 + ["g"] * 3, "group": ["Group A", "Group B", "Group C"] * 2,
                              "accuracy": [0.9, 0.8, 0.7, 0.7, 0.8, 0.9]})
    table = analysis.planted_order_check(per_group, difficulty)
    assert table.loc["h", "spearman_rho"] == pytest.approx(-1.0) and table.loc["h", "hardest planted group is worst"]
    assert table.loc["g", "spearman_rho"] == pytest.approx(1.0) and not table.loc["g", "hardest planted group is worst"]
    assert analysis.group_order(["Group C", "Group A"]) == ["Group A", "Group C"]
    assert analysis.group_order(["Black", "White"]) == ["White", "Black"]
