"""Tests of lib.frozen_features: heads trained on fixed feature vectors with the project's engine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from lib import frozen_features


def blob_data(seed=0, n_train=600, n_val=300, dim=16, classes=("a", "b", "c")):
    """Unit vectors around three class centres; race groups independent of the class."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(classes), dim)) * 2

    def split(n, prefix):
        labels = rng.integers(0, len(classes), n)
        x = centres[labels] + rng.standard_normal((n, dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        meta = pd.DataFrame({"id": [f"{prefix}/{i}.jpg" for i in range(n)],
                             "race": pd.Categorical(rng.choice(["G1", "G2"], n), categories=["G1", "G2"]),
                             "gender": pd.Categorical(np.array(classes)[labels], categories=list(classes)),
                             "age": pd.Categorical(["20-29"] * n), "service_test": False})
        return torch.tensor(x, dtype=torch.float32), torch.tensor(labels), meta

    train_x, train_y, train = split(n_train, "train")
    val_x, val_y, val = split(n_val, "val")
    return frozen_features.FrozenData("gender", tuple(classes), ("G1", "G2"), train_x, train_y, val_x, val_y, train,
                                      val, "blobs", {})


def test_linear_probe_reaches_logistic_regression():
    data = blob_data()
    run = frozen_features.train_head_on_features(frozen_features.LINEAR_PROBE, data, seed=0, epochs=20, lr=1e-2)
    reference = LogisticRegression(max_iter=2000).fit(data.train_features.numpy(), data.train_labels.numpy())
    expected = reference.score(data.val_features.numpy(), data.val_labels.numpy())
    assert run.accuracy == pytest.approx(expected, abs=0.03)
    assert frozen_features.logistic_regression_accuracy(data) == pytest.approx(expected)
    assert list(run.history["epoch"]) == list(range(1, 21)) and "overall" in run.history.columns
    assert set(run.predictions.columns) >= {"id", "y_true", "y_pred", "correct", "race", "head", "seed"}
    assert run.predictions["correct"].mean() == pytest.approx(run.accuracy)


def test_same_seed_same_run_and_other_seed_other_run():
    data = blob_data(seed=1)
    first = frozen_features.train_head_on_features("cosface", data, seed=3, epochs=3)
    again = frozen_features.train_head_on_features("cosface", data, seed=3, epochs=3)
    other = frozen_features.train_head_on_features("cosface", data, seed=4, epochs=3)
    pd.testing.assert_series_equal(first.history["loss"], again.history["loss"])
    assert not np.allclose(first.history["loss"], other.history["loss"])


def test_with_target_relabels_the_same_features():
    data = blob_data()
    race = data.with_target("race")
    assert race.classes == ("G1", "G2") and race.train_features is data.train_features
    np.testing.assert_array_equal(race.val_labels.numpy(), data.val["race"].cat.codes.to_numpy())
    with pytest.raises(ValueError, match="target must be"):
        data.with_target("height")


def test_regime_table_cells():
    frame = pd.DataFrame({"head": "h", "seed": np.repeat([0, 1, 2], 4), "race": ["G1", "G1", "G2", "G2"] * 3,
                          "correct": [1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0]})
    table = frozen_features.regime_table({"frozen": frame}, ("G1", "G2"))
    row = table.loc[("frozen", "h")]
    # per seed overall 0.75, 0.75, 0.75 (zero spread); G1: 1.0, 0.5, 1.0
    assert row["overall"] == "0.750 [0.750, 0.750]" and row["seeds"] == 3
    assert row["G1"].startswith("0.833 [")


def test_regime_table_intervals_cover_the_validation_images():
    # Identical seeds: over seeds alone the interval has no width; with the image ids it is the image-sampling
    # one (±1.96·√(p(1−p)/n) per group, here n = 400 and 100).
    rng = np.random.default_rng(0)
    race = np.array(["G1"] * 400 + ["G2"] * 100)
    correct = rng.random(500) < 0.8
    frame = pd.concat([pd.DataFrame({"head": "h", "seed": seed, "id": np.arange(500), "race": race,
                                     "correct": correct}) for seed in range(3)], ignore_index=True)
    row = frozen_features.regime_table({"frozen": frame}, ("G1", "G2")).loc[("frozen", "h")]
    for group, n in (("G1", 400), ("G2", 100)):
        p = correct[race == group].mean()
        low, high = (float(x) for x in row[group].split("[")[1].rstrip("]").split(", "))
        assert (high - low) / 2 == pytest.approx(1.96 * np.sqrt(p * (1 - p) / n), rel=0.15)
    seeds_only = frozen_features.regime_table({"frozen": frame.drop(columns="id")}, ("G1", "G2")).loc[("frozen", "h")]
    assert seeds_only["G1"] == f"{correct[race == 'G1'].mean():.3f} [{correct[race == 'G1'].mean():.3f}, " \
                               f"{correct[race == 'G1'].mean():.3f}]"


def _regime(accuracy: dict) -> pd.DataFrame:
    """Two seeds per head, 10 images each; ``accuracy[head]`` = (seed 0, seed 1) share correct."""
    rows = []
    for head, per_seed in accuracy.items():
        for seed, share in enumerate(per_seed):
            rows += [{"head": head, "seed": seed, "race": "A", "correct": i < round(share * 10)} for i in range(10)]
    return pd.DataFrame(rows)


def test_accuracy_order_ranks_by_mean_over_seeds_and_compares_regimes():
    scratch = _regime({"a": (0.4, 0.6), "b": (0.6, 0.6), "c": (0.2, 0.2)})  # means 0.5, 0.6, 0.2
    frozen = _regime({"probe": (0.9, 0.9), "a": (0.7, 0.7), "b": (0.3, 0.3), "c": (0.5, 0.5)})
    text = frozen_features.accuracy_order({"scratch": scratch, "frozen": frozen})
    assert text.split("  \n") == [
        "*scratch:* `b` (0.600) > `a` (0.500) > `c` (0.200)",
        "*frozen:* `probe` (0.900) > `a` (0.700) > `c` (0.500) > `b` (0.300)",
        "The 3 heads trained in every regime are ranked **in a different order**: a ranking of heads in one "
        "regime does not carry over to the other."]
    same = frozen_features.accuracy_order({"scratch": scratch, "again": _regime({"b": (0.9, 0.9), "a": (0.8, 0.8),
                                                                                 "c": (0.1, 0.1)})})
    assert same.endswith("The 3 heads trained in every regime are ranked in the same order.")
