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


def test_hold_out_of_train_splits_the_training_images_only(tmp_path):
    root = tmp_path / "fairface"
    fixtures.build_fairface_folder(root, n_train=140, n_val=14, size=(40, 40))
    data = fx.load_classification(root, target="gender", size=32, cache_dir=tmp_path / "cache", progress=False)
    tuning = fx.hold_out_of_train(data, fraction=0.2, seed=3)

    train_ids, held_ids = set(tuning.train["id"]), set(tuning.val["id"])
    assert not train_ids & held_ids and train_ids | held_ids == set(data.train["id"])
    assert not held_ids & set(data.val["id"])  # the reported validation images are never used
    # Rows stay aligned: each kept image and label is the original one of that id.
    position = {image_id: i for i, image_id in enumerate(data.train["id"])}
    for split_rows, images, labels in ((tuning.train, tuning.train_images, tuning.train_labels),
                                       (tuning.val, tuning.val_images, tuning.val_labels)):
        index = [position[i] for i in split_rows["id"]]
        assert torch.equal(images, data.train_images[index]) and torch.equal(labels, data.train_labels[index])
    # Stratified: about a fifth of every (race, gender) cell is held out, counted independently here.
    cells = data.train.assign(label=data.train_labels.numpy()).groupby(["race", "label"], observed=True).size()
    held = tuning.val.assign(label=tuning.val_labels.numpy()).groupby(["race", "label"], observed=True).size()
    for cell, n in cells.items():
        if n >= 2:
            assert held.get(cell, 0) == max(1, min(n - 1, round(0.2 * n)))
    assert torch.equal(fx.hold_out_of_train(data, 0.2, seed=3).val_labels, tuning.val_labels)  # seeded
    assert set(fx.hold_out_of_train(data, 0.2, seed=4).val["id"]) != held_ids


def test_clamp_angle():
    assert fx.CLAMP_ANGLE_DEGREES == pytest.approx(130.54, abs=0.01)  # arccos(0.35 - 1)
    assert fx.ARCFACE_FALLBACK_DEGREES == pytest.approx(151.35, abs=0.01)  # 180° - 0.5 rad


def test_fallback_branch_of_each_head():
    from lib.losses import make_head

    clamp = fx.fallback_branch(make_head("cosrelu", 4, 3))
    assert clamp.name == "clamp" and clamp.angle == pytest.approx(130.54, abs=0.01)
    assert fx.fallback_branch(make_head("cosrelu", 4, 3, margin=0.5)).angle == pytest.approx(120.0)
    arcface = fx.fallback_branch(make_head("arcface", 4, 3, margin=0.5))
    assert arcface.name == "fallback" and arcface.angle == pytest.approx(151.35, abs=0.01)
    easy = fx.fallback_branch(make_head("arcface", 4, 3, easy_margin=True))
    assert easy.name == "no margin" and easy.angle == pytest.approx(90.0)
    for name in ("cosface", "normsoftmax", "cosine_softmax"):
        assert fx.fallback_branch(make_head(name, 4, 3)) is None


def test_head_settings_are_read_from_the_built_heads():
    table = fx.head_settings(["cosrelu", "arcface"])
    assert table.loc["arcface", "settings"] == ("scale = 30, margin = 0.5, easy_margin = False, "
                                                "margin_warmup_steps = 250, centered_weights = True")
    assert table.loc["arcface", "fallback branch"] == "fallback: θ_y > 151.4°"
    assert table.loc["arcface", "target logit"].endswith("over the first 250 steps")
    assert table.loc["arcface", "other logits"].endswith("centred weights w_j − mean(w)")
    assert table.loc["cosrelu", "fallback branch"] == "clamp: θ_y > 130.5°"
    override = fx.head_settings(["arcface"], {"arcface": {"scale": 64.0, "margin": 0.5, "easy_margin": True}})
    assert override.loc["arcface", "settings"] == ("scale = 64, margin = 0.5, easy_margin = True, "
                                                   "margin_warmup_steps = 250, centered_weights = True")
    assert override.loc["arcface", "fallback branch"] == "no margin: θ_y > 90.0°"
    assert override.loc["arcface", "target logit"].startswith("s·cos(θ_y + m) where θ_y < 90°, else s·cos θ_y;")
    assert fx.resolve_head_hparams("arcface", {"margin": 0.3}) == {"scale": 30.0, "margin": 0.3, "margin_warmup_steps": 250,
                                                                  "centered_weights": True}
    assert fx.resolve_head_hparams("cosface") == {}


def test_result_file_names_tell_targets_apart():
    assert fx.result_file_name("cosrelu") == "Results - COSRELU.csv"
    assert fx.result_file_name("cosrelu", "gender") == "Results - COSRELU (gender).csv"


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
    assert math.isnan(metrics[fx.FALLBACK_SHARE])
    branch = fx.FallbackBranch("fallback", math.cos(math.radians(120)))
    with_branch = fx.validation_metrics(data, y_pred, cosine, branch=branch)
    assert with_branch[fx.FALLBACK_SHARE] == pytest.approx(np.mean(np.degrees(np.arccos(cosine)) > 120))


def test_grid_tables_and_resume(data, tmp_path):
    size = int(data.train_images.shape[-1])

    def grid(heads, seeds):
        return [fx.classifier_settings(head, seed, image_size=size, epochs=2, batch_size=8, lr=1e-3)
                for head in heads for seed in seeds]

    kwargs = dict(checkpoint_dir=tmp_path / "ckpt", device="cpu", progress=False)
    runs = fx.train_grid(grid(["cosine_softmax", "cosrelu", "cosface"], [0, 1]), data, **kwargs)
    assert [(run.head, run.seed) for run in runs] == [(h, s) for h in ("cosine_softmax", "cosrelu", "cosface") for s in (0, 1)]
    history = fx.history_table(runs)
    assert len(history) == 12 and history["overall"].notna().all() and (history["target"] == "race").all()
    assert history.loc[history["head"] == "cosrelu", "clamp_fraction"].between(0, 1).all()
    assert history.loc[history["head"] == "cosface", fx.FALLBACK_SHARE].isna().all()
    assert history.loc[history["head"] == "cosrelu", fx.FALLBACK_SHARE].between(0, 1).all()

    # The last history row is the final model's accuracy, recomputed from the saved predictions.
    for run in runs:
        assert run.history["overall"].iloc[-1] == pytest.approx(run.accuracy)
        by_race = run.predictions.groupby("race")["correct"].mean()
        for race, value in by_race.items():
            assert run.history[race].iloc[-1] == pytest.approx(value)

    # A second call reloads the checkpoints and reproduces the predictions exactly.
    again = fx.train_grid(grid(["cosrelu"], [1]), data, **kwargs)[0]
    pd.testing.assert_frame_equal(again.predictions, runs[3].predictions)

    # CosReLU = CosFace where the clamp never acts: bit-identical training.
    predictions = fx.predictions_table(runs)
    if history.loc[history["head"] == "cosrelu", "clamp_fraction"].max() == 0:
        cosrelu, cosface = (predictions[predictions["head"] == h].reset_index(drop=True) for h in ("cosrelu", "cosface"))
        assert cosrelu["y_pred"].equals(cosface["y_pred"])

    tables = fx.results_tables(runs, data.groups)
    assert list(tables) == [("race", "cosine_softmax"), ("race", "cosrelu"), ("race", "cosface")]
    assert list(tables["race", "cosrelu"].columns) == ["epoch", "seed", "loss", "overall", *RACES]
    written = fx.write_results(runs, data.groups, tmp_path / "results")
    assert sorted(path.name for path in written) == ["Results - COSRELU.csv", "Results - CosFace.csv", "Results - Softmax.csv"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "results" / "Results - COSRELU.csv"), tables["race", "cosrelu"],
                                  check_dtype=False)

    assert len(predictions) == 6 * len(data.val_labels)
    assert {"id", "y_true", "y_pred", "race", "gender", "age", "target", "head", "seed"} <= set(predictions.columns)
    assert (predictions["correct"] == (predictions["y_true"] == predictions["y_pred"])).all()
    # The fallback-branch flag is the target cosine below the clamp's cosine, and NaN for heads without one.
    cosrelu = predictions[predictions["head"] == "cosrelu"]
    np.testing.assert_array_equal(cosrelu["in_fallback_branch"], (cosrelu["target_cosine"] < fx.COSRELU_MARGIN - 1).astype(float))
    assert predictions.loc[predictions["head"] == "cosface", "in_fallback_branch"].isna().all()

    matrices = fx.confusion_by_head(runs, data.classes)
    matrix, labels = matrices["cosface"]
    assert labels == list(RACES) and matrix.sum() == 2 * len(data.val_labels)
    assert np.trace(matrix) == sum(run.predictions["correct"].sum() for run in runs if run.head == "cosface")


def test_changed_validation_labels_never_leave_the_old_numbers_in_the_history(data, tmp_path):
    """The checkpoint is rightly reused (training did not change), but its history, scored on the old
    validation labels, was reported as current beside fresh predictions (e.g. overall 0.2286 vs 0.10)."""
    import dataclasses

    kwargs = dict(checkpoint_dir=tmp_path / "ckpt", device="cpu", progress=False)
    settings = fx.classifier_settings("cosface", 0, image_size=int(data.train_images.shape[-1]), epochs=2,
                                      batch_size=8, lr=1e-3)
    first = fx.train_classifier(settings, data, **kwargs)
    predicted = first.predictions["y_pred"].map({name: i for i, name in enumerate(data.classes)})
    relabelled = dataclasses.replace(data, val_labels=torch.tensor(predicted.to_numpy()))  # now all "correct"
    with pytest.warns(UserWarning, match=r"other evaluation inputs \(validation: .*epoch 2's are recomputed"):
        again = fx.train_classifier(settings, relabelled, **kwargs)
    assert again.accuracy == 1.0 and first.accuracy < 1.0  # the labels matter to the numbers
    assert again.history["overall"].iloc[-1] == pytest.approx(again.accuracy)
    by_race = again.predictions.groupby("race")["correct"].mean()
    for race, value in by_race.items():
        assert again.history[race].iloc[-1] == pytest.approx(value)
    assert again.history["overall"].iloc[:-1].isna().all()  # epoch 1's model is not stored: no number
    table = fx.results_tables([again], data.groups)["race", "cosface"]
    assert table["overall"].iloc[-1] == pytest.approx(again.accuracy)


def test_summary_over_seeds_known_answer():
    def run(head, seed, correct, target="race"):
        predictions = pd.DataFrame({"correct": correct, "y_pred": ["a"] * len(correct)})
        return fx.ClassifierRun(head, seed, pd.DataFrame({"seconds": [60.0]}), predictions, 0.0, target=target)

    runs = [run("a", 0, [1, 1, 0, 0]), run("a", 1, [1, 1, 1, 0]), run("a", 2, [1, 1, 1, 1]),
            run("b", 0, [1, 0, 0, 0]), run("b", 1, [1, 1, 0, 0]), run("a", 0, [1, 0, 0, 0], target="gender")]
    summary = fx.summary_over_seeds(runs)
    assert list(summary.index) == [("race", "a"), ("race", "b"), ("gender", "a")]
    assert summary.loc[("race", "a"), "accuracy"] == pytest.approx(0.75) and summary.loc[("race", "a"), "seeds"] == 3
    assert summary.loc[("race", "a"), "std"] == pytest.approx(np.std([0.5, 0.75, 1.0], ddof=1))
    assert summary.loc[("race", "b"), "training minutes, all seeds"] == pytest.approx(2.0)
    assert summary.loc[("gender", "a"), "accuracy"] == pytest.approx(0.25)


def test_target_angle_summary_known_answer():
    cosines = np.cos(np.radians([10, 100, 140, 160]))
    predictions = pd.DataFrame({"head": ["a", "a", "b", "b"], "target_cosine": cosines,
                                "in_fallback_branch": [np.nan, np.nan, 0.0, 1.0]})
    table = fx.target_angle_summary(predictions)
    assert table.loc["a", "median θ_y (degrees)"] == pytest.approx(55)
    assert table.loc["a", "share beyond 90°"] == 0.5 and table.loc["b", "share beyond 90°"] == 1
    assert table.loc["a", "share beyond 130.5°"] == 0 and table.loc["b", "share beyond 130.5°"] == 1
    assert table.loc["b", "share beyond 151.4°"] == 0.5
    assert np.isnan(table.loc["a", "share in own fallback branch"]) and table.loc["b", "share in own fallback branch"] == 0.5


def test_run_settings_built_from_notebook_parameters_keep_the_old_run_names(data):
    """Notebook 03 now builds one RunSettings per run from its parameters; the runs it trained before (whose
    train_classifier built the settings from 16 keywords) keep their names, so their checkpoints are reused."""
    from lib import pretrained as a_module_named_like_a_setting  # what notebook 03 imports
    from lib.settings import RunSettings

    digest = "0123456789abcdef"
    for head, overrides, weights, amp in (("arcface", {}, None, "auto"), ("cosrelu", {"margin": 0.3}, None, "bf16"),
                                          ("normsoftmax", {}, "imagenet", "auto")):
        # exactly what train_classifier built before issue 25
        before = RunSettings(head=head, head_hparams=fx.resolve_head_hparams(head, overrides), model="resnet18",
                             embedding_dim=512, pretrained=weights, image_size=32, crop=None, flip=True, max_shift=2,
                             optimizer="adam", lr=1e-3, schedule="cosine", epochs=4, batch_size=64, drop_last=True,
                             amp=amp, seed=1, data=digest)
        parameters = {"seeds": [0, 1], "heads": [head], "head_hparams": {head: overrides}, "weights": weights,
                      "image_size": 32, "epochs": 4, "batch_size": 64, "lr": 1e-3, "schedule": "cosine", "max_shift": 2,
                      "amp": amp, "limit": None, "device": "auto", "pretrained": a_module_named_like_a_setting}
        notebook = RunSettings.from_parameters(
            parameters, head=head, seed=1, head_hparams=fx.resolve_head_hparams(head, overrides), pretrained=weights,
            data=digest, **fx.FIXED_SETTINGS)
        helper = fx.classifier_settings(head, 1, head_hparams=overrides, weights=weights, image_size=32, max_shift=2,
                                        lr=1e-3, schedule="cosine", epochs=4, batch_size=64, amp=amp, data=digest)
        assert notebook == before and helper == before
        assert notebook.run_name() == before.run_name()


def test_train_classifier_refuses_settings_for_other_images(data):
    settings = fx.classifier_settings("cosface", 0, image_size=int(data.train_images.shape[-1]) * 2, epochs=1)
    with pytest.raises(ValueError, match="decoded at"):
        fx.train_classifier(settings, data, device="cpu", progress=False)
    other = fx.classifier_settings("cosface", 0, image_size=int(data.train_images.shape[-1]), epochs=1,
                                   data="ffffffffffffffff")
    with pytest.raises(ValueError, match="training data"):
        fx.train_classifier(other, data, device="cpu", progress=False)


def test_plateau_table_flags_heads_still_learning_over_the_last_quarter():
    rows = []
    for seed in (0, 1):
        for epoch in range(1, 9):  # 8 epochs: the last quarter runs from epoch 6 to 8
            rows.append({"target": "race", "head": "climbing", "seed": seed, "epoch": epoch,
                         "overall": 0.30 + 0.02 * epoch + 0.01 * seed})
            rows.append({"target": "race", "head": "flat", "seed": seed, "epoch": epoch,
                         "overall": min(0.5, 0.1 * epoch) + (0.004 * seed if epoch == 8 else 0.0)})
    table = fx.plateau_table(pd.DataFrame(rows))
    climbing, flat = table.loc[("race", "climbing")], table.loc[("race", "flat")]
    assert climbing["from epoch"] == 6 and climbing["epochs"] == 8
    assert climbing["last-quarter gain"] == pytest.approx(0.04)  # 2 epochs × 0.02
    assert climbing["still learning"] and not flat["still learning"]
    assert flat["last-quarter gain"] == pytest.approx(0.002)
    assert flat["largest gain of a seed"] == pytest.approx(0.004)
    one_epoch = fx.plateau_table(pd.DataFrame(rows).query("epoch == 1"))
    assert np.isnan(one_epoch["last-quarter gain"]).all() and not one_epoch["still learning"].any()


def test_longer_run_table_compares_final_accuracies():
    def run(epochs, correct):
        predictions = pd.DataFrame({"race": ["A", "A", "B", "B"], "correct": correct})
        history = pd.DataFrame({"epoch": range(1, epochs + 1)})
        return fx.ClassifierRun("normsoftmax", 0, history, predictions, 1.0)

    table = fx.longer_run_table(run(4, [True, False, True, True]), run(8, [True, True, True, True]))
    assert list(table.columns[:2]) == ["4 epochs", "8 epochs"]
    assert table.loc["overall", "difference"] == pytest.approx(0.25)
    assert table.loc["A", "difference"] == pytest.approx(0.5) and table.loc["B", "difference"] == 0
    assert table.loc["overall", "beyond threshold"] and not table.loc["B", "beyond threshold"]


def branch_history(clamp: float, arcface_share: float) -> pd.DataFrame:
    """Two seeds × three epochs of notebook 03's history: CosReLU records its training clamp fraction and a
    validation branch share, ArcFace only the latter, the plain cosine softmax neither (NaN: no branch)."""
    rows = []
    for seed in (0, 1):
        for epoch in (1, 2, 3):
            late = epoch == 2 and seed == 1
            rows += [{"target": "race", "head": "cosrelu", "seed": seed, "epoch": epoch,
                      "clamp_fraction": clamp if late else 0.0, fx.FALLBACK_SHARE: 0.0},
                     {"target": "race", "head": "arcface", "seed": seed, "epoch": epoch,
                      fx.FALLBACK_SHARE: arcface_share if epoch == 3 else 0.0},
                     {"target": "race", "head": "cosine_softmax", "seed": seed, "epoch": epoch,
                      fx.FALLBACK_SHARE: math.nan}]
    return pd.DataFrame(rows)


def test_branch_use_reports_heads_with_a_branch_and_says_when_none_was_used():
    """Notebook 03's per-epoch clamp and fallback tables were all 0.0 (and NaN for heads without a branch)
    on real FairFace: one row per head with a branch replaces them, and all-zero use is detected."""
    use = fx.branch_use(branch_history(clamp=0.0, arcface_share=0.0))
    assert list(use.index) == [("race", "cosrelu"), ("race", "arcface")]  # no row for the head without one
    assert fx.branch_never_used(use)
    assert math.isnan(use.loc[("race", "arcface"), "training: largest epoch share"])  # records no training share

    use = fx.branch_use(branch_history(clamp=0.04, arcface_share=0.3))
    assert not fx.branch_never_used(use)
    cosrelu, arcface = use.loc[("race", "cosrelu")], use.loc[("race", "arcface")]
    assert cosrelu["training: largest share of a seed"] == pytest.approx(0.04)
    assert cosrelu["training: largest epoch share"] == pytest.approx(0.02)  # mean of the two seeds at epoch 2
    assert arcface["validation: last epoch"] == pytest.approx(0.3)
    assert arcface["validation: largest epoch share"] == pytest.approx(0.3)
    assert (cosrelu["seeds"], cosrelu["epochs"]) == (2, 3)


def test_longer_run_rows_name_both_runs_epochs_in_fixed_columns():
    """03_longer_run.csv: the page's table (columns named by the epochs) in long form, the Findings' source."""
    table = pd.DataFrame({"12 epochs": [0.488, 0.61], "24 epochs": [0.501, 0.62]}, index=["overall", "White"])
    table["difference"] = table["24 epochs"] - table["12 epochs"]
    table["beyond threshold"] = [True, False]
    rows = fx.longer_run_rows(table, "race", "cosine_softmax", 0)
    assert list(rows.columns) == fx.LONGER_RUN_COLUMNS
    assert rows["group"].tolist() == ["overall", "White"]
    assert rows.loc[0, ["epochs", "longer epochs"]].tolist() == [12, 24]
    assert rows.loc[0, ["accuracy", "longer accuracy"]].tolist() == [0.488, 0.501]
    assert rows["beyond threshold"].tolist() == [True, False] and (rows["target"] == "race").all()
