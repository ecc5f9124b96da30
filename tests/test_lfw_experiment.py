"""lib.lfw_experiment.train_head: the notebook-02 training settings reach the engine."""

import numpy as np
import pandas as pd
import pytest
import torch

from lib import lfw_experiment as experiment


def _tiny_view1(n_train: int = 12, n_pairs: int = 20, size: int = 96) -> experiment.View1Data:
    generator = torch.Generator().manual_seed(0)
    pair_images = torch.randint(0, 256, (2 * n_pairs, 3, size, size), dtype=torch.uint8, generator=generator)
    pairs = pd.DataFrame({
        "name1": [f"p{i}" for i in range(n_pairs)], "index1": 1,
        "name2": [f"q{i}" for i in range(n_pairs)], "index2": 1,
        "same": [i % 2 == 0 for i in range(n_pairs)],
        "path1": [f"p{i}/p{i}_0001.jpg" for i in range(n_pairs)],
        "path2": [f"q{i}/q{i}_0001.jpg" for i in range(n_pairs)],
    })
    return experiment.View1Data(
        train_images=torch.randint(0, 256, (n_train, 3, size, size), dtype=torch.uint8, generator=generator),
        train_labels=torch.arange(n_train) % 3,
        train_names=["a", "b", "c"],
        pair_images=pair_images,
        pair_image_names=np.array([f"p{i}" for i in range(n_pairs)] + [f"q{i}" for i in range(n_pairs)]),
        pair_index=np.stack([np.arange(n_pairs), np.arange(n_pairs, 2 * n_pairs)], axis=1),
        pairs=pairs,
    )


def _train(data, tmp_path, name, **kwargs):
    return experiment.train_head(
        "cosface", data, epochs=1, batch_size=6, eval_every=1, seed=0, device="cpu", progress=False,
        checkpoint_dir=tmp_path / name, **kwargs,
    )


def test_train_head_passes_weight_decay_shift_and_amp_to_the_engine(tmp_path):
    data = _tiny_view1()
    plain = _train(data, tmp_path, "plain")
    decayed = _train(data, tmp_path, "decayed", weight_decay=0.5, max_shift=4, amp="bf16")
    config = torch.load(tmp_path / "decayed" / "cosface-seed0.pt", weights_only=False)["config"]
    assert config["weight_decay"] == 0.5
    assert config["augment"] == {"flip": True, "max_shift": 4}
    assert config["amp"] == "bfloat16"
    assert "amp" not in torch.load(tmp_path / "plain" / "cosface-seed0.pt", weights_only=False)["config"]
    # Different settings train different models, so the DevTest scores differ.
    assert not np.allclose(plain.result.scores, decayed.result.scores)
    assert len(decayed.history) == 1 and np.isfinite(decayed.history["acc_10fold"]).all()


def test_train_head_passes_erasing_and_dropout_to_the_engine(tmp_path):
    data = _tiny_view1()
    _train(data, tmp_path, "regularized", erase=0.5, dropout=0.25, model_name="spherecnn")
    config = torch.load(tmp_path / "regularized" / "cosface-seed0.pt", weights_only=False)["config"]
    assert config["augment"] == {"flip": True, "max_shift": 0, "erase": 0.5}
    assert config["model_dropout"] == 0.25
    with pytest.raises(ValueError, match="SphereCNN only"):
        _train(data, tmp_path, "other", dropout=0.25, model_name="sphereface4")


def _sweep_row(run, accuracy):
    row = {column: 0.0 for column in experiment.SWEEP_COLUMNS}
    row.update(run=run, head="sphereface", schedule="cosine", acc_10fold=accuracy, acc_10fold_by_epoch="5:0.1")
    return pd.DataFrame([row])


def test_sweep_table_collects_one_file_per_run_best_first(tmp_path):
    _sweep_row("worse", 0.70).to_csv(tmp_path / "a.csv", index=False)
    _sweep_row("better", 0.80).assign(extra=1).to_csv(tmp_path / "b.csv", index=False)
    table = experiment.sweep_table(tmp_path)
    assert list(table.index) == ["better", "worse"]
    assert list(table.columns) == experiment.SWEEP_COLUMNS
    assert experiment.sweep_table(tmp_path / "absent").empty


def test_sweep_table_names_missing_columns(tmp_path):
    _sweep_row("old", 0.7).drop(columns=["crop"]).to_csv(tmp_path / "old.csv", index=False)
    with pytest.raises(ValueError, match=r"\['crop'\].*sweep_lfw_settings"):
        experiment.sweep_table(tmp_path)


def test_precision_comparison_pairs_trials_that_differ_only_in_amp(tmp_path):
    rows = [
        _sweep_row("e30", 0.842).assign(epochs=30, amp="off"),
        _sweep_row("e30-bf16", 0.841).assign(epochs=30, amp="bf16"),
        _sweep_row("e40-shift4-bf16", 0.85).assign(epochs=40, max_shift=4, amp="bf16"),  # no float32 twin
    ]
    for i, row in enumerate(rows):
        row.to_csv(tmp_path / f"{i}.csv", index=False)
    pairs = experiment.precision_comparison(experiment.sweep_table(tmp_path))
    assert len(pairs) == 1 and pairs.index[0][1] == 30  # (head, epochs, ...) of the one paired setting
    assert pairs.iloc[0].to_dict() == {"bf16": 0.841, "off": 0.842}
    lone = experiment.precision_comparison(experiment.sweep_table(tmp_path).iloc[[2]])
    assert lone.empty
