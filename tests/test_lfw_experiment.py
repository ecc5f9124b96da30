"""lib.lfw_experiment: the validation split and pair draw, settings reaching the engine, DevTest scored once,
seeds x pairs intervals, the trial table."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from lib import lfw, lfw_experiment as experiment, paths, synthetic
from lib.settings import RunSettings
from lib.verification import interval_over_seeds_and_pairs
from statsmodels.stats.multitest import multipletests


# --------------------------------------------------------------------------------------------------
# Validation identities and pairs
# --------------------------------------------------------------------------------------------------
def test_validation_identities_are_a_seeded_fraction_of_distinct_names():
    names = np.repeat([f"person{i:03d}" for i in range(200)], 3)
    held = experiment.split_validation_identities(names, 0.15)
    assert len(held) == 30 and len(set(held)) == 30 and set(held) <= set(names)
    assert np.array_equal(held, experiment.split_validation_identities(names[::-1], 0.15))  # order-free
    assert not np.array_equal(held, experiment.split_validation_identities(names, 0.15, seed=1))
    with pytest.raises(ValueError, match="validation_fraction"):
        experiment.split_validation_identities(names, 1.0)


def test_pairs_are_drawn_as_lfw_draws_them():
    identity = np.array(["a"] * 4 + ["b"] * 3 + ["c"] * 1 + ["d"] * 2 + [f"single{i}" for i in range(20)])
    pair_index, same = experiment.draw_pairs(identity, 9, 40, seed=3)  # 10 matched pairs exist
    assert same.sum() == 9 and (~same).sum() == 40
    first, second = identity[pair_index[:, 0]], identity[pair_index[:, 1]]
    assert np.all((first == second) == same)  # matched pairs share a person, mismatched ones never do
    assert np.all(pair_index[:, 0] != pair_index[:, 1])
    keys = {tuple(sorted(p)) for p in pair_index.tolist()}
    assert len(keys) == len(pair_index)  # no pair twice
    again, _ = experiment.draw_pairs(identity, 9, 40, seed=3)
    assert np.array_equal(again, pair_index)


def test_pair_draw_returns_fewer_when_the_images_cannot_supply_them():
    identity = np.array(["a", "a", "b", "c"])  # one matched pair possible
    pair_index, same = experiment.draw_pairs(identity, 5, 2, seed=0)
    assert same.sum() == 1 and (~same).sum() == 2


@pytest.fixture(scope="module")
def smoke_view1():
    synthetic.ensure_synthetic(preset="smoke")
    faces = lfw.load_lfw(paths.dataset_root("synthetic", "lfw", "smoke"))
    return faces, experiment.load_view1(faces, size=96, crop=None, validation_fraction=0.3, progress=False)


def test_held_out_identities_never_reach_training(smoke_view1):
    faces, data = smoke_view1
    trained = set(data.train_names)
    assert not trained & set(data.held_out_names)
    assert set(data.validation.identity) == set(data.held_out_names)
    assert set(data.train_pairs.identity) <= trained
    assert not trained & set(data.test.identity)  # DevTest people are disjoint from DevTrain people
    devtrain = set(faces.people_dev_train["name"])
    assert trained | set(data.held_out_names) == devtrain
    assert len(data.test) == len(faces.dev_test_pairs)
    assert data.digest and len(data.train_labels) == len(data.train_images)


# --------------------------------------------------------------------------------------------------
# Training: settings reach the engine, DevTest is scored after training only
# --------------------------------------------------------------------------------------------------
def test_split_table_counts_are_integers_and_a_missing_pair_count_is_blank(smoke_view1):
    """Issue 26: the split table showed "8271.0 … NaN" (the training part has no pairs)."""
    _, data = smoke_view1
    table = experiment.describe_splits(data)
    assert all(str(dtype) == "Int64" for dtype in table.dtypes)
    assert table.loc["training (DevTrain people, minus held-out)", "images"] == len(data.train_images)
    assert table["matched pairs"].isna().sum() == 1  # the training part only
    shown = table.style.format(na_rep="—").to_html()
    assert "—" in shown and ".0<" not in shown and "nan" not in shown.lower()


def _settings(**changes):
    return RunSettings(**{"head": "cosface", "epochs": 1, "batch_size": 16, "seed": 0, "crop": None, **changes})


def test_train_head_records_validation_by_epoch_and_scores_devtest_once(smoke_view1, tmp_path):
    _, data = smoke_view1
    run = experiment.train_head(_settings(epochs=2), data, eval_every=1, device="cpu", progress=False,
                                checkpoint_dir=tmp_path)
    assert {"val_acc_10fold", "train_pairs_acc_10fold", "val_auc"} <= set(run.history.columns)
    assert "acc_10fold" not in run.history  # nothing about DevTest during training
    assert run.history["val_acc_10fold"].notna().all()
    assert len(run.result.scores) == len(data.test) and run.test_features.shape[0] == len(data.test.images)
    stored = torch.load(run.settings and next(tmp_path.glob("*.pt")), weights_only=True)["settings"]
    assert stored["data"] == data.digest and stored["epochs"] == 2
    trial = experiment.train_head(_settings(epochs=2), data, eval_every=1, device="cpu", progress=False,
                                  checkpoint_dir=tmp_path, score_test=False)
    assert trial.run_name == run.run_name  # the same run, reloaded
    assert len(trial.result.scores) == len(data.validation)


def test_a_changed_fuse_flip_is_scored_again_not_read_from_the_stored_history(smoke_view1, tmp_path):
    """fuse_flip is not part of training, so the checkpoint is reused; val_acc_10fold stayed at the value
    computed with fuse_flip on."""
    _, data = smoke_view1
    options = dict(eval_every=1, device="cpu", progress=False, score_test=False)
    experiment.train_head(_settings(epochs=1), data, flip=True, checkpoint_dir=tmp_path / "a", **options)
    with pytest.warns(UserWarning, match=r"fuse_flip: True → False"):
        reused = experiment.train_head(_settings(epochs=1), data, flip=False, checkpoint_dir=tmp_path / "a", **options)
    fresh = experiment.train_head(_settings(epochs=1), data, flip=False, checkpoint_dir=tmp_path / "b", **options)
    np.testing.assert_array_equal(reused.test_features, fresh.test_features)  # the same model
    columns = ["val_acc_10fold", "val_acc_fixed_0.5", "val_auc", "train_pairs_acc_10fold"]
    pd.testing.assert_frame_equal(reused.history[columns], fresh.history[columns])
    assert experiment.summary_table([reused])["val_acc_10fold"].iloc[0] == fresh.history["val_acc_10fold"].iloc[-1]


def test_one_pass_over_every_pair_set_equals_one_pass_per_set(smoke_view1):
    """The shared evaluation pass gives each set exactly the features of its own pass (the old path), and a
    set named twice is embedded once."""
    _, data = smoke_view1
    model, _ = experiment.build_model_and_head(_settings(), data.num_classes)
    sets = {"validation": data.validation, "train_pairs": data.train_pairs, "final": data.test,
            "again": data.validation}
    shared = experiment.pair_set_features(model, sets, device="cpu")
    for name, pair_set in sets.items():
        alone = experiment.features(model, pair_set.images, device="cpu")
        assert shared[name].shape == alone.shape and np.array_equal(shared[name], alone), name
        np.testing.assert_array_equal(experiment.score_pairs(shared[name], pair_set).scores,
                                      experiment.evaluate(model, pair_set, device="cpu").scores)


def test_each_evaluation_embeds_every_image_once_and_devtest_joins_the_last(smoke_view1, tmp_path, monkeypatch):
    """One embedding pass per evaluation (validation and training-identity pairs; DevTest in the last one,
    not again after training), and the DevTest result equals that of a run reloaded from its finished
    checkpoint, which embeds DevTest after training."""
    _, data = smoke_view1
    passes = []
    original = experiment.features

    def counting(model, images, **kwargs):
        passes.append(len(images))
        return original(model, images, **kwargs)

    monkeypatch.setattr(experiment, "features", counting)
    run = experiment.train_head(_settings(epochs=2), data, eval_every=1, device="cpu", progress=False,
                                checkpoint_dir=tmp_path)
    evaluated = len(data.validation.images) + len(data.train_pairs.images)
    assert passes == [evaluated, evaluated + len(data.test.images)]
    passes.clear()
    reloaded = experiment.train_head(_settings(epochs=2), data, eval_every=1, device="cpu", progress=False,
                                     checkpoint_dir=tmp_path)
    assert passes == [len(data.test.images)]  # no evaluation ran: DevTest embedded after training
    assert np.array_equal(reloaded.test_features, run.test_features)
    np.testing.assert_array_equal(reloaded.result.scores, run.result.scores)
    pd.testing.assert_frame_equal(reloaded.history, run.history)


def test_train_head_settings_reach_the_checkpoint(smoke_view1, tmp_path):
    _, data = smoke_view1
    run = experiment.train_head(_settings(weight_decay=0.5, max_shift=4, amp="bf16", erase=0.5, dropout=0.25), data,
                                eval_every=1, device="cpu", progress=False, checkpoint_dir=tmp_path)
    stored = torch.load(tmp_path / f"{run.run_name}.pt", weights_only=True)["settings"]
    assert (stored["weight_decay"], stored["max_shift"], stored["amp"], stored["erase"], stored["dropout"]) == (
        0.5, 4, "bf16", 0.5, 0.25)
    with pytest.raises(ValueError, match="SphereCNN only"):
        experiment.train_head(_settings(model="sphereface4", dropout=0.25), data, device="cpu", progress=False)


# --------------------------------------------------------------------------------------------------
# Seeds x pairs intervals
# --------------------------------------------------------------------------------------------------
def test_seeds_and_pairs_interval_with_one_seed_is_the_pair_bootstrap():
    rng = np.random.default_rng(0)
    correct = (rng.random((1, 800)) < 0.8).astype(float)
    ours = interval_over_seeds_and_pairs(correct, n_boot=4000, seed=1)
    reference = stats.bootstrap((correct[0],), np.mean, n_resamples=4000, method="percentile", random_state=2)
    assert ours.mean == pytest.approx(correct.mean())
    assert ours.lower == pytest.approx(reference.confidence_interval.low, abs=0.006)
    assert ours.upper == pytest.approx(reference.confidence_interval.high, abs=0.006)


def test_seeds_and_pairs_interval_widens_with_seed_variation():
    rng = np.random.default_rng(0)
    pairs = (rng.random(1000) < 0.8).astype(float)
    identical_seeds = np.stack([pairs] * 3)
    shifted = identical_seeds.copy()
    shifted[0, :100] = 1.0  # seeds that disagree on a tenth of the pairs
    shifted[2, :100] = 0.0
    narrow = interval_over_seeds_and_pairs(identical_seeds, seed=0)
    wide = interval_over_seeds_and_pairs(shifted, seed=0)
    assert narrow.std == pytest.approx(0, abs=1e-12) and wide.std > 0.05
    assert (wide.upper - wide.lower) > 1.5 * (narrow.upper - narrow.lower)
    with pytest.raises(ValueError, match="seeds, pairs"):
        interval_over_seeds_and_pairs(pairs)


class _Run:
    """The fields of HeadRun that the seed tables read."""

    def __init__(self, head, seed, correct):
        self.settings = RunSettings(head=head, seed=seed)
        self.result = type("R", (), {"cv": type("C", (), {"correct": np.asarray(correct, bool),
                                                          "mean": float(np.mean(correct))})()})()

    head = property(lambda self: self.settings.head)
    seed = property(lambda self: self.settings.seed)


def test_paired_difference_pairs_by_seed_and_pair():
    rng = np.random.default_rng(1)
    base = rng.random((3, 400)) < 0.7
    better = base.copy()
    better[:, :40] = True  # b is right wherever a is, and on 40 more pairs at most
    runs = [_Run("softmax", s, base[s]) for s in range(3)] + [_Run("sphereface", s, better[s]) for s in range(3)]
    diff = experiment.paired_difference(runs, "sphereface", "softmax")
    assert diff.estimate[0] == pytest.approx((better.mean() - base.mean()))
    assert diff.lower[0] > 0  # every seed and pair favours sphereface, so the interval excludes 0
    table = experiment.comparison_table(runs, [("sphereface", "softmax"), ("cosface", "softmax")])
    assert list(table.index) == ["sphereface − softmax"] and table["verdict"].iloc[0] == "higher"
    assert experiment.comparison_table(runs[:3], [("sphereface", "softmax")]).empty
    summary = experiment.seed_summary(runs)
    assert summary.loc["softmax", "seeds"] == 3 and summary.loc["softmax", "acc_10fold"] == pytest.approx(base.mean())


def test_comparison_table_is_holm_corrected_and_says_what_its_intervals_cover():
    # Notebook 02's paired differences: one family, Holm-adjusted like statsmodels does it; a small
    # difference that is the same in every seed is not resolved once the pairs' sampling is counted.
    rng = np.random.default_rng(3)
    base = rng.random(600) < 0.7
    heads = {"softmax": base, "sphereface": base.copy(), "cosface": base.copy(), "normsoftmax": base.copy()}
    wrong = np.flatnonzero(~base)
    heads["sphereface"][wrong[:90]] = True  # +0.15
    heads["cosface"][wrong[0]] = True  # one pair better, in every seed
    heads["normsoftmax"][wrong[:30]] = True
    runs = [_Run(head, s, np.where(rng.random(600) < 0.02, ~correct, correct))
            for head, correct in heads.items() for s in range(3)]
    runs_by = {(run.head, run.seed): run.result.cv.correct for run in runs}
    comparisons = [("sphereface", "softmax"), ("cosface", "softmax"), ("normsoftmax", "softmax")]
    table = experiment.comparison_table(runs, comparisons)
    np.testing.assert_allclose(table["p_adjusted"], multipletests(table["p_value"], method="holm")[1])
    assert table.loc["sphereface − softmax", "verdict"] == "higher"
    assert table.loc["cosface − softmax", "verdict"] == "not resolved"
    assert (table["interval"] == "95% over seeds (Student-t) and DevTest pairs (bootstrap), paired by seed and "
                                 "pair; verdict Holm over 3 comparisons").all()
    # The seeds-only t-interval stays beside it, labelled so: scipy's t-interval of the per-seed differences.
    per_seed = np.array([[runs_by[("sphereface", s)].mean() - runs_by[("softmax", s)].mean()] for s in range(3)])[:, 0]
    expected = stats.t.interval(0.95, 2, loc=per_seed.mean(), scale=stats.sem(per_seed))
    row = table.loc["sphereface − softmax"]
    assert (row["seeds-only t 95% CI low"], row["seeds-only t 95% CI high"]) == pytest.approx(expected)
    one_seed = experiment.comparison_table([run for run in runs if run.seed == 0], comparisons)
    assert (one_seed["verdict"] == "no verdict (one seed)").all() and one_seed["p_adjusted"].isna().all()
    # one seed has no seeds-only interval: missing (shown as a dash), not clipped to [-1, 1]
    assert one_seed[["seeds-only t 95% CI low", "seeds-only t 95% CI high"]].isna().all().all()


# --------------------------------------------------------------------------------------------------
# Setting trials
# --------------------------------------------------------------------------------------------------
def test_sweep_table_is_best_first_and_names_what_varied(tmp_path):
    row = {**RunSettings(head="sphereface").as_dict(), "val_acc_10fold": 0.7, "run": "a"}
    pd.DataFrame([row]).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame([{**row, "run": "b", "dropout": 0.5, "val_acc_10fold": 0.8}]).to_csv(tmp_path / "b.csv", index=False)
    table = experiment.sweep_table(tmp_path)
    assert list(table.index) == ["b", "a"]
    assert experiment.varied_settings(table) == ["dropout"]
    # A constant schedule (the default) is an empty cell; each head's own head_hparams is not a trial of it.
    pd.DataFrame([{**row, "run": "c", "schedule": "cosine"}]).to_csv(tmp_path / "c.csv", index=False)
    softmax = {**RunSettings(head="softmax").as_dict(), "val_acc_10fold": 0.6, "run": "d"}
    pd.DataFrame([softmax]).to_csv(tmp_path / "d.csv", index=False)
    table = experiment.sweep_table(tmp_path)
    assert table.loc["a", "head_hparams"] != table.loc["d", "head_hparams"]
    assert experiment.varied_settings(table) == ["head", "dropout", "schedule"]
    assert experiment.sweep_table(tmp_path / "absent").empty
    pd.DataFrame([{"run": "old", "head": "x"}]).to_csv(tmp_path / "old.csv", index=False)
    with pytest.raises(ValueError, match=r"val_acc_10fold.*sweep_lfw_settings"):
        experiment.sweep_table(tmp_path)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_sweep_table_never_reads_the_temporary_file_of_a_killed_write(tmp_path):
    """A write killed mid-way leaves ``.<run>.csv.<pid>-<tid>-<hex>.tmp.csv``, which ``*.csv`` matches: it was
    read as data (a cut-short row, a cut-short value, or a raw EmptyDataError for an empty one)."""
    row = {**RunSettings(head="sphereface").as_dict(), "val_acc_10fold": 0.7, "run": "a"}
    pd.DataFrame([row]).to_csv(tmp_path / "a.csv", index=False)
    expected = experiment.sweep_table(tmp_path)
    whole = pd.DataFrame([{**row, "run": "b", "val_acc_10fold": 0.95}]).to_csv(index=False)
    dead = _dead_pid()
    cut_short = tmp_path / f".b.csv.{dead}-140131-0a1b2c3d.tmp.csv"
    cut_short.write_text(whole[: whole.rindex("0.95") + 3])  # the value cut short to 0.9
    empty = tmp_path / f".c.csv.{dead}-140131-deadbeef.tmp.csv"
    empty.write_text("")
    live = tmp_path / f".d.csv.{os.getpid()}-140131-00ff00ff.tmp.csv"  # a writer still running
    live.write_text(whole)
    pd.testing.assert_frame_equal(experiment.sweep_table(tmp_path), expected)
    assert not cut_short.exists() and not empty.exists()  # stale: their writer is dead
    assert live.exists()  # its writer may still rename it


def _trial(folder, head: str, accuracy: float, **changes) -> None:
    """One trial file as scripts/sweep_lfw_settings.py writes it (settings columns, head_hparams as text)."""
    base = dict(epochs=40, max_shift=4, lr=1e-3, schedule="cosine", crop=150, amp="bf16")
    settings = RunSettings(head=head, **{**base, **changes})
    row = {"run": settings.run_name(), **settings.as_dict(), "val_acc_10fold": accuracy}
    row["head_hparams"] = str(row["head_hparams"])
    pd.DataFrame([row]).to_csv(folder / f"{settings.run_name()}.csv", index=False)


def test_one_at_a_time_choice_applies_the_rule_fixed_before_the_trials(tmp_path):
    for head, accuracy in (("sphereface", 0.85), ("softmax", 0.79)):  # the current setting: mean 0.82
        _trial(tmp_path, head, accuracy)
    _trial(tmp_path, "sphereface", 0.80, epochs=20), _trial(tmp_path, "softmax", 0.78, epochs=20)  # 0.79
    _trial(tmp_path, "sphereface", 0.86, epochs=60), _trial(tmp_path, "softmax", 0.80, epochs=60)  # 0.83: wins
    _trial(tmp_path, "sphereface", 0.84, schedule=None), _trial(tmp_path, "softmax", 0.80, schedule=None)  # tie
    _trial(tmp_path, "sphereface", 0.99, max_shift=0)  # softmax's max_shift=0 trial is missing
    # Neither of these may count: another seed, and two settings changed at once.
    _trial(tmp_path, "sphereface", 0.99, epochs=20, seed=1), _trial(tmp_path, "softmax", 0.99, epochs=20, seed=1)
    _trial(tmp_path, "sphereface", 0.99, epochs=20, max_shift=0)
    _trial(tmp_path, "softmax", 0.99, epochs=20, max_shift=0)
    current = RunSettings(head="softmax", epochs=40, max_shift=4, lr=1e-3, schedule="cosine", crop=150,
                          amp="bf16", seed=2).as_dict()  # head and seed of `current` play no part
    grid = {"epochs": [20, 40, 60], "schedule": [None, "cosine"], "max_shift": [0, 4]}
    choice = experiment.one_at_a_time_choice(experiment.sweep_table(tmp_path), grid, ["sphereface", "softmax"],
                                             current).set_index(["setting", "value"])
    assert choice.loc[("epochs", 20), "score"] == pytest.approx(0.79)
    assert choice.loc[("epochs", 60), "score"] == pytest.approx(0.83)
    assert choice.loc[("epochs", 40), ["sphereface", "softmax"]].tolist() == [0.85, 0.79]
    assert choice.xs("epochs")["chosen"].tolist() == [False, False, True]
    assert choice.xs("schedule")["chosen"].tolist() == [False, True]  # 0.82 each: the current value stays
    assert choice.xs("max_shift")["chosen"].isna().all()
    assert choice.loc[("max_shift", 0), "missing"] == "softmax"
    assert experiment.missing_trials(choice.reset_index(), ["sphereface", "softmax"]) == [
        {"head": "softmax", "max_shift": 0}]
    text = experiment.describe_choice(choice.reset_index(), ["sphereface", "softmax"])
    assert "9 trials" in text  # 2 current + 2 + 2 + 2 + 1, none of the four that must not count
    assert "**60 (0.830" in text and "set `epochs: 60`" in text
    assert "`max_shift`: **undecided**" in text and "`schedule`: 'cosine' (0.820" in text
    with pytest.raises(ValueError, match="not run settings"):
        experiment.one_at_a_time_choice(experiment.sweep_table(tmp_path), {"epoch": [1, 2]}, ["softmax"], current)
    with pytest.raises(ValueError, match="do not include the current value"):
        experiment.one_at_a_time_choice(experiment.sweep_table(tmp_path), {"lr": [0.1, 0.2]}, ["softmax"], current)


def test_tuning_stages_keep_decided_settings_out_of_a_later_stage(tmp_path):
    """A setting added to the grid after the others were decided: its stage is tried with them at their choices,
    and their own trials (run while it was at its first candidate) still decide them."""
    for head, accuracy in (("sphereface", 0.85), ("softmax", 0.79)):  # stage 1, centre crops: epochs 40 (0.82)
        _trial(tmp_path, head, accuracy)
    _trial(tmp_path, "sphereface", 0.80, epochs=20), _trial(tmp_path, "softmax", 0.78, epochs=20)  # 0.79
    _trial(tmp_path, "sphereface", 0.88, alignment="aligned"), _trial(tmp_path, "softmax", 0.82, alignment="aligned")
    _trial(tmp_path, "sphereface", 0.89, alignment="aligned", align_margin=0.1)  # stage 3: 0.845 < 0.85
    _trial(tmp_path, "softmax", 0.80, alignment="aligned", align_margin=0.1)
    current = RunSettings(head="softmax", epochs=40, max_shift=4, lr=1e-3, schedule="cosine", crop=150, amp="bf16",
                          alignment="aligned", align_margin=0.0).as_dict()
    grid = {"epochs": [20, 40], "alignment": ["center", "aligned"], "align_margin": [0.0, 0.1]}
    stages = [["epochs"], ["alignment"], ["align_margin"]]
    sweep = experiment.sweep_table(tmp_path)
    choice = experiment.one_at_a_time_choice(sweep, grid, ["sphereface", "softmax"], current, stages=stages)
    choice = choice.set_index(["setting", "value"])
    assert choice.loc[("epochs", 20), "score"] == pytest.approx(0.79)  # scored on centre crops, its stage's value
    assert choice.xs("epochs")["chosen"].tolist() == [False, True]
    assert choice.loc[("alignment", "center"), "score"] == pytest.approx(0.82)
    assert choice.xs("alignment")["chosen"].tolist() == [False, True]  # 0.85 > 0.82
    assert choice.loc[("align_margin", 0.1), "score"] == pytest.approx(0.845)
    assert choice.xs("align_margin")["chosen"].tolist() == [True, False]
    # Without stages, epochs would need new trials on aligned faces.
    flat = experiment.one_at_a_time_choice(sweep, grid, ["sphereface", "softmax"], current).set_index(["setting", "value"])
    assert flat.xs("epochs")["chosen"].isna().all() and flat.loc[("epochs", 20), "missing"] == "sphereface, softmax"
    text = experiment.describe_choice(choice.reset_index(), ["sphereface", "softmax"], stages=stages)
    assert "decided in stages" in text and "`epochs`; then `alignment`; then `align_margin`" in text
    with pytest.raises(ValueError, match="each setting of the tuning grid once"):
        experiment.one_at_a_time_choice(sweep, grid, ["softmax"], current, stages=[["epochs"], ["alignment"]])


# ------------------------------------------------------------------------------ face alignment (issue 25)
def test_trials_written_before_alignment_existed_count_as_centre_crops(tmp_path):
    for head, accuracy in (("sphereface", 0.85), ("softmax", 0.79)):
        _trial(tmp_path, head, accuracy)
    for path in tmp_path.glob("*.csv"):  # as written before the alignment fields existed
        pd.read_csv(path).drop(columns=["alignment", "align_margin"]).to_csv(path, index=False)
    _trial(tmp_path, "sphereface", 0.90, alignment="aligned")
    _trial(tmp_path, "softmax", 0.82, alignment="aligned")
    current = RunSettings(head="softmax", epochs=40, max_shift=4, lr=1e-3, schedule="cosine", crop=150,
                          amp="bf16").as_dict()
    choice = experiment.one_at_a_time_choice(experiment.sweep_table(tmp_path), {"alignment": ["center", "aligned"]},
                                             ["sphereface", "softmax"], current).set_index("value")
    assert choice.loc["center", "score"] == pytest.approx(0.82)
    assert choice.loc["aligned", "score"] == pytest.approx(0.86)
    assert choice["chosen"].tolist() == [False, True]


def test_alignment_is_a_run_setting_that_renames_runs_only_when_used():
    plain = RunSettings(head="softmax", crop=150)
    assert plain.identity().keys().isdisjoint({"alignment", "align_margin"})  # old run names unchanged
    aligned = plain.replace(alignment="aligned")
    assert aligned.run_name() != plain.run_name()
    assert aligned.replace(align_margin=0.2).run_name() != aligned.run_name()
    with pytest.raises(ValueError, match="align_margin=0.2 only applies to alignment='aligned'"):
        plain.replace(align_margin=0.2)
    with pytest.raises(ValueError, match="alignment must be one of"):
        plain.replace(alignment="funneled")


class _CentreLandmarks:
    """Landmarks at the template's place in the middle of an LFW-sized photo; every third image a 'miss'."""

    model_digest = "c" * 64

    def __init__(self):
        self.calls = 0

    def landmarks(self, image):
        from lib.alignment import template_points

        self.calls += 1
        points = template_points(96) * 1.2 + (image.shape[1] / 2 - 57.6)
        return points, "fallback box" if self.calls % 3 == 0 else "detector"


def test_load_view1_with_aligned_faces_counts_the_misses(smoke_view1):
    faces, centred = smoke_view1  # the aligned crops are cached under a key naming this fake landmarker
    data = experiment.load_view1(faces, size=96, crop=150, validation_fraction=0.3, progress=False,
                                 alignment="aligned", landmarker=_CentreLandmarks)
    assert data.alignment == "aligned"
    counts = data.alignment_counts
    assert counts["images"].tolist() == [len(data.train_images), len(data.validation.images), len(data.test.images)]
    assert counts["detector missed: fallback box"].sum() > 0
    assert (counts["landmarks by the detector"] + counts["detector missed: fallback box"] == counts["images"]).all()
    assert data.train_images.shape == centred.train_images.shape
    assert not np.array_equal(data.train_images.numpy(), centred.train_images.numpy())
    assert np.array_equal(data.test.pair_index, centred.test.pair_index)  # the same pairs for both variants
    with pytest.raises(ValueError, match="align_margin"):
        experiment.load_view1(faces, size=96, crop=150, alignment="center", align_margin=0.1, progress=False)


def _scores_file(folder, alignment, accuracy_by_head, *, settings="{}", n_pairs=200, seeds=(0, 1, 2)):
    """A 02_lfw_pair_scores-<alignment>.csv whose pairs are right with the given probability per head."""
    rng = np.random.default_rng(len(alignment))
    same = np.arange(n_pairs) % 2 == 0
    rows = []
    for head, accuracy in accuracy_by_head.items():
        for seed in seeds:
            right = rng.random(n_pairs) < accuracy
            score = np.where(same == right, 0.8, 0.2)  # two values: every fold threshold lies between them
            rows.append(pd.DataFrame({"pair": np.arange(n_pairs), "same": same, "head": head, "seed": seed,
                                      "score": score, "settings": settings}))
    table = pd.concat(rows, ignore_index=True)
    table.to_csv(experiment.alignment_scores_file(folder, alignment), index=False)
    return table


def test_alignment_gain_pairs_the_two_variants_by_seed_and_pair(tmp_path):
    table, note = experiment.alignment_gain(tmp_path)
    assert table is None and "02_lfw_pair_scores-center.csv" in note and "02_lfw_pair_scores-aligned.csv" in note
    center = _scores_file(tmp_path, "center", {"softmax": 0.70, "sphereface": 0.75})
    aligned = _scores_file(tmp_path, "aligned", {"softmax": 0.85, "sphereface": 0.75})
    table, note = experiment.alignment_gain(tmp_path, n_boot=500)
    assert note == ""
    for head in ("softmax", "sphereface"):
        # scores 0.8 / 0.2 put every pair on the side its `right` flag says, whatever the fold's threshold
        expected = {name: float(((frame[frame["head"] == head]["score"] > 0.5) == frame[frame["head"] == head]["same"]).mean())
                    for name, frame in (("center", center), ("aligned", aligned))}
        assert table.loc[head, "centre crop"] == pytest.approx(expected["center"])
        assert table.loc[head, "aligned"] == pytest.approx(expected["aligned"])
        assert table.loc[head, "aligned − centre"] == pytest.approx(expected["aligned"] - expected["center"])
        assert table.loc[head, "95% CI low"] <= table.loc[head, "aligned − centre"] <= table.loc[head, "95% CI high"]
    assert table.loc["softmax", "excludes 0"] and table.loc["softmax", "95% CI low"] > 0.05
    _scores_file(tmp_path, "aligned", {"softmax": 0.85}, settings='{"epochs": 60}')
    table, note = experiment.alignment_gain(tmp_path)
    assert table is None and "other settings differ" in note


def test_choice_table_names_a_constant_schedule_instead_of_nan():
    """02's decision table showed schedule 'nan' (a constant learning rate is schedule None) and lr 0.000500."""
    from lib.tables import style

    choice = pd.DataFrame({"setting": ["schedule", "schedule", "lr"], "value": ["cosine", None, 0.0005],
                           "score": [0.82, 0.81, 0.80], "runs": ["a", "b", "c"], "chosen": [True, False, True]})
    table = experiment.choice_table(choice)
    assert list(table.index) == [("schedule", "cosine"), ("schedule", "none (constant)"), ("lr", 0.0005)]
    assert "runs" not in table.columns
    rendered = style(table).to_html()
    assert ">none (constant)<" in rendered and ">0.0005<" in rendered
    assert "nan" not in rendered.lower() and "0.000500" not in rendered


@pytest.mark.parametrize("stored, shown", [
    ("image 2107, image file /work/shared/data/lfw/lfw-deepfunneled/Elena_de_Chavez/Elena_de_Chavez_0001.jpg (28%)",
     "image 2107, photo Elena_de_Chavez/Elena_de_Chavez_0001.jpg (28%)"),
    ("image 3, image file C:\\data\\lfw\\A_B\\A_B_0001.jpg (30%)", "image 3, photo A_B/A_B_0001.jpg (30%)"),
    ("image 3, in-memory image (30 bytes, blake2b ab) (30%)", "image 3, in-memory image (30 bytes, blake2b ab) (30%)"),
])
def test_the_alignment_table_names_photos_without_this_machines_folder(stored, shown):
    """The page's 'examples outside' column names LFW photos by person and file, not by an absolute path."""
    assert experiment._photo_name(stored) == shown
