"""Notebook 03's experiment (lib.fairface_experiment): data loading, evaluation, training grid, tables."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score

import fixtures
from lib import fairface_experiment as fx
from lib.errors import DataError
from lib.labels import AGES, GENDERS, RACES
from lib.training import predict


@pytest.fixture
def small_fairface(tmp_path):
    root = tmp_path / "fairface"
    fixtures.build_fairface_folder(root, n_train=21, n_val=14, size=(40, 40))
    return root


@pytest.fixture
def data(small_fairface, tmp_path):
    return fx.load_classification(small_fairface, size=32, cache_dir=tmp_path / "cache", progress=False)


def test_load_classification_targets(small_fairface):
    for target, vocabulary in (("race", RACES), ("gender", GENDERS), ("age", AGES)):
        data = fx.load_classification(small_fairface, target=target, size=32, cache_dir=small_fairface.parent / "cache", progress=False)
        assert data.classes == vocabulary and data.groups == RACES
        assert data.train_images.shape == (21, 3, 32, 32) and data.train_images.dtype == torch.uint8
        assert len(data.val_labels) == 14
        written = pd.read_csv(small_fairface / "fairface_label_val.csv")
        expected = [vocabulary.index(label) for label in written[target]]
        assert data.val_labels.tolist() == expected
        assert data.val["id"].tolist() == ("val/" + written["file"].str.split("/").str[-1]).tolist()
    with pytest.raises(ValueError, match="target must be one of"):
        fx.load_classification(small_fairface, target="emotion", cache_dir=small_fairface.parent / "cache")


def test_unreadable_images_are_skipped_with_a_warning(small_fairface):
    (small_fairface / "train" / "3.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match="1 of 21 images cannot be decoded"):
        data = fx.load_classification(small_fairface, size=32, cache_dir=small_fairface.parent / "cache", progress=False)
    assert len(data.train_images) == 20 and "train/3.jpg" not in set(data.train["id"])
    assert data.skipped["id"].tolist() == ["train/3.jpg"]
    assert len(data.train_labels) == len(data.train) == 20


def test_missing_split_is_a_clear_error(small_fairface):
    (small_fairface / "fairface_label_val.csv").write_text("file,age,gender,race,service_test\n")
    with pytest.raises(DataError, match="no rows"):
        fx.load_classification(small_fairface, size=32, cache_dir=small_fairface.parent / "cache", progress=False)


def test_clamp_angle():
    assert fx.CLAMP_ANGLE_DEGREES == pytest.approx(130.54, abs=0.01)  # degrees(arccos(0.35 - 1)) = 130.54


def test_classify_matches_predict_and_brute_force_cosines(data):
    torch.manual_seed(0)
    from lib.losses import make_head
    from lib.models import make_model

    model, head = make_model("resnet18", embedding_dim=16), make_head("cosface", 16, data.num_classes)
    scored = fx.classify(model, head, data.val_images, data.val_labels, device="cpu")
    _, predicted = predict(model, head, data.val_images, device="cpu")
    np.testing.assert_array_equal(scored["y_pred"], predicted.numpy())
    model.eval()
    with torch.no_grad():
        from lib.training import normalize_batch, resolve_normalization

        mean, std = resolve_normalization("auto", model)
        embeddings = model(normalize_batch(data.val_images, mean, std)).double()
    for i, label in enumerate(data.val_labels.tolist()):
        expected = F.cosine_similarity(embeddings[i], head.weight[label].double(), dim=0).item()
        assert scored["target_cosine"][i] == pytest.approx(expected, abs=1e-6)


def test_validation_metrics_by_hand(data):
    rng = np.random.default_rng(3)
    y_pred = rng.integers(0, data.num_classes, len(data.val_labels))
    cosine = rng.uniform(-1, 1, len(y_pred))
    metrics = fx.validation_metrics(data, y_pred, cosine)
    y_true = data.val_labels.numpy()
    assert metrics["overall"] == pytest.approx(accuracy_score(y_true, y_pred))
    race = data.val["race"].astype(str).to_numpy()
    for group in RACES:
        members = race == group
        expected = accuracy_score(y_true[members], y_pred[members]) if members.any() else math.nan
        assert metrics[group] == pytest.approx(expected, nan_ok=True)
    assert metrics[fx.BEYOND_CLAMP] == pytest.approx(np.mean(np.degrees(np.arccos(cosine)) > fx.CLAMP_ANGLE_DEGREES))


def test_grid_tables_and_resume(data, tmp_path):
    kwargs = dict(epochs=2, batch_size=8, lr=1e-3, checkpoint_dir=tmp_path / "ckpt", device="cpu", progress=False)
    runs = fx.train_grid(["cosine_softmax", "cosrelu", "cosface"], [0, 1], data, **kwargs)
    assert [(run.head, run.seed) for run in runs] == [(h, s) for h in ("cosine_softmax", "cosrelu", "cosface") for s in (0, 1)]
    history = fx.history_table(runs)
    assert len(history) == 12 and history["overall"].notna().all()
    assert history.loc[history["head"] == "cosrelu", "clamp_fraction"].between(0, 1).all()

    # The last history row is the final model's accuracy, recomputed from the saved predictions.
    for run in runs:
        assert run.history["overall"].iloc[-1] == pytest.approx(run.accuracy)
        by_race = run.predictions.groupby("race")["correct"].mean()
        for race, value in by_race.items():
            assert run.history[race].iloc[-1] == pytest.approx(value)

    # A second call reloads the checkpoints and reproduces the predictions exactly.
    again = fx.train_grid(["cosrelu"], [1], data, **kwargs)[0]
    pd.testing.assert_frame_equal(again.predictions, runs[3].predictions)

    # CosReLU = CosFace where the clamp never acts: bit-identical training.
    if history.loc[history["head"] == "cosrelu", "clamp_fraction"].max() == 0:
        assert fx.prediction_agreement(runs, "cosrelu", "cosface") == 1.0

    tables = fx.results_tables(runs, data.groups)
    assert list(tables) == ["cosine_softmax", "cosrelu", "cosface"]
    assert list(tables["cosrelu"].columns) == ["epoch", "seed", "loss", "overall", *RACES]
    written = fx.write_results(runs, data.groups, tmp_path / "results")
    assert sorted(path.name for path in written) == ["Results - COSRELU.csv", "Results - CosFace.csv", "Results - Softmax.csv"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "results" / "Results - COSRELU.csv"), tables["cosrelu"],
                                  check_dtype=False)

    predictions = fx.predictions_table(runs)
    assert len(predictions) == 6 * len(data.val_labels)
    assert {"id", "y_true", "y_pred", "race", "gender", "age", "head", "seed"} <= set(predictions.columns)
    assert (predictions["correct"] == (predictions["y_true"] == predictions["y_pred"])).all()

    matrices = fx.confusion_by_head(runs, data.classes)
    matrix, labels = matrices["cosface"]
    assert labels == list(RACES) and matrix.sum() == 2 * len(data.val_labels)
    assert np.trace(matrix) == sum(run.predictions["correct"].sum() for run in runs if run.head == "cosface")


def test_paired_seed_difference_known_answer():
    def run(head, seed, correct):
        predictions = pd.DataFrame({"correct": correct, "y_pred": ["a"] * len(correct)})
        return fx.ClassifierRun(head, seed, pd.DataFrame({"seconds": [60.0]}), predictions, 0.0)

    runs = [run("a", 0, [1, 1, 0, 0]), run("a", 1, [1, 1, 1, 0]), run("a", 2, [1, 1, 1, 1]),
            run("b", 0, [1, 0, 0, 0]), run("b", 1, [1, 1, 0, 0]), run("b", 2, [1, 1, 1, 1]), run("b", 9, [0] * 4)]
    diff = fx.paired_seed_difference(runs, "a", "b")  # differences 0.25, 0.25, 0 over seeds 0, 1, 2
    assert diff.n == 3 and diff.mean == pytest.approx(1 / 6)
    assert diff.std == pytest.approx(np.std([0.25, 0.25, 0.0], ddof=1))
    with pytest.raises(ValueError, match="share no seed"):
        fx.paired_seed_difference(runs, "a", "c")
    summary = fx.summary_over_seeds([r for r in runs if r.seed != 9])
    assert summary.loc["a", "accuracy"] == pytest.approx(0.75) and summary.loc["a", "seeds"] == 3
    assert summary.loc["b", "training minutes"] == pytest.approx(3.0)


def test_target_angle_summary_known_answer():
    cosines = np.cos(np.radians([10, 100, 140, 160]))
    predictions = pd.DataFrame({"head": ["a", "a", "b", "b"], "target_cosine": cosines})
    table = fx.target_angle_summary(predictions)
    assert table.loc["a", "median θ_y (degrees)"] == pytest.approx(55)
    assert table.loc["a", "share beyond clamp angle"] == 0 and table.loc["b", "share beyond clamp angle"] == 1
    assert table.loc["b", "share beyond 151.4° (ArcFace fallback, m = 0.5)"] == 0.5
