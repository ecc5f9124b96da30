"""Training engine: batching, augmentation and normalization against brute force; determinism,
bit-identical resume, NaN detection, epoch metrics, inference helpers; progress-bar modes."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lib import progress as progress_module
from lib import training
from lib.losses import make_head
from lib.settings import RunSettings, data_digest
from lib.training import (
    Augment,
    CheckpointError,
    augment_batch,
    embed,
    erase_rectangles,
    epoch_batches,
    epoch_generator,
    fit,
    normalize_batch,
    predict,
    remove_stale_temporaries,
    resolve_device,
    resolve_normalization,
    resolve_precision,
    shift_and_flip,
)

torch.set_num_threads(1)

N_IMAGES, N_CLASSES, EMBEDDING = 30, 3, 8


class TinyNet(nn.Module):
    """A few hundred parameters; dropout so that the global RNG matters to resume."""

    input_normalization = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.dropout = dropout
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(4 * 7 * 7, EMBEDDING)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.conv(x)).flatten(1)))


class CountingHead(nn.Module):
    """CosFace-like head whose ``extra_metrics`` is a known per-step sequence (1, 2, 3, ...)."""

    def __init__(self, poison_at: int | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(N_CLASSES, EMBEDDING))
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self.poison_at = poison_at

    def logits(self, embeddings):
        return 10 * F.linear(F.normalize(embeddings), F.normalize(self.weight))

    def forward(self, embeddings, labels):
        self.iteration += 1
        loss = F.cross_entropy(self.logits(embeddings), labels)
        if self.poison_at is not None and int(self.iteration) == self.poison_at:
            loss = loss * float("nan")
        return loss

    def extra_metrics(self):
        return {"count": float(self.iteration)}


@pytest.fixture(scope="module")
def data():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N_IMAGES, 3, 16, 16), dtype=torch.uint8, generator=generator)
    labels = torch.arange(N_IMAGES) % N_CLASSES
    return images, labels


def fresh(seed=0, head="sphereface", dropout=0.1, head_hparams=None):
    torch.manual_seed(seed)
    model = TinyNet(dropout)
    head = make_head(head, EMBEDDING, N_CLASSES, **(head_hparams or {})) if isinstance(head, str) else head
    return model, head


BASE_SETTINGS = dict(head="sphereface", model="TinyNet", embedding_dim=EMBEDDING, image_size=16, dropout=0.1,
                     batch_size=8, lr=3e-3, optimizer="adam", weight_decay=1e-4, schedule="cosine", seed=7,
                     flip=True, max_shift=2, epochs=2, amp="off")  # float32 on every CPU: auto would pick bf16 on some


def settings(**changes) -> RunSettings:
    return RunSettings(**{**BASE_SETTINGS, **changes})


def train(run_settings, model, head, images, labels, **kwargs):
    return fit(run_settings, model, head, images, labels, device="cpu", progress=False, **kwargs)


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------------------------------
# Batches, augmentation, normalization
# --------------------------------------------------------------------------------------------------
def test_epoch_batches_are_seeded_permutations():
    batches = epoch_batches(23, 5, seed=1, epoch=4)
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    assert sorted(torch.cat(batches).tolist()) == list(range(23))
    again = epoch_batches(23, 5, seed=1, epoch=4)
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    assert not torch.equal(torch.cat(batches), torch.cat(epoch_batches(23, 5, seed=1, epoch=5)))
    assert not torch.equal(torch.cat(batches), torch.cat(epoch_batches(23, 5, seed=2, epoch=4)))
    # seed and epoch are mixed, not added
    assert not torch.equal(torch.cat(epoch_batches(23, 5, 1, 0)), torch.cat(epoch_batches(23, 5, 0, 1)))
    assert [len(b) for b in epoch_batches(23, 5, 1, 4, drop_last=True)] == [5, 5, 5, 5]


def test_normalize_batch_matches_formula():
    images = torch.randint(0, 256, (4, 3, 5, 6), dtype=torch.uint8)
    for name in ("course", "imagenet"):
        mean, std = resolve_normalization(name)
        expected = (images.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1).double()) / torch.tensor(
            std
        ).view(1, 3, 1, 1).double()
        got = normalize_batch(images, mean, std)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), expected, atol=1e-6, rtol=0)
    assert resolve_normalization("auto", TinyNet()) == ((0.5,) * 3, (0.5,) * 3)


def test_shift_and_flip_matches_brute_force():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 3, 7, 9), dtype=np.uint8)
    shift_y, shift_x = rng.integers(-3, 4, 6), rng.integers(-3, 4, 6)
    flip = np.array([True, False, True, False, True, True])
    got = shift_and_flip(*(torch.from_numpy(a) for a in (images, shift_y, shift_x, flip)))
    s = 3
    for n in range(6):
        padded = np.pad(images[n], ((0, 0), (s, s), (s, s)), mode="edge")
        top, left = s - shift_y[n], s - shift_x[n]
        expected = padded[:, top : top + 7, left : left + 9]
        if flip[n]:
            expected = expected[:, :, ::-1]
        np.testing.assert_array_equal(got[n].numpy(), expected)


def test_flip_only_augmentation_is_seeded_and_mirrors():
    images = torch.randint(0, 256, (64, 3, 4, 5), dtype=torch.uint8)
    out = augment_batch(images, Augment(flip=True), epoch_generator(0, 0, 1))
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    kept = (out == images).flatten(1).all(1)
    assert bool((mirrored | kept).all()) and 10 < int(mirrored.sum()) < 54
    assert torch.equal(out, augment_batch(images, Augment(flip=True), epoch_generator(0, 0, 1)))
    assert torch.equal(augment_batch(images, Augment(flip=False), epoch_generator(0, 0, 1)), images)


def test_erase_rectangles_fills_exactly_the_rectangle():
    images = torch.randint(0, 100, (3, 2, 6, 7), dtype=torch.uint8)
    out = erase_rectangles(images, *(torch.tensor(v) for v in ([1, 0, 2], [2, 0, 3], [3, 6, 1], [4, 7, 2])),
                           torch.tensor([True, True, False]))
    expected = images.clone()
    expected[0, :, 1:4, 2:6] = 128
    expected[1] = 128  # the whole image
    assert torch.equal(out, expected)  # image 2 untouched: apply is False
    assert int(images.max()) < 100  # the input is not modified


def test_random_erasing_area_rate_and_seed():
    images = torch.zeros(400, 1, 20, 20, dtype=torch.uint8)
    erase_all = Augment(flip=False, erase=1.0)
    out = augment_batch(images, erase_all, epoch_generator(0, 0, 1))
    erased = (out == 128).flatten(1).float().mean(1)
    # 2–33 % of the area, up to rounding of the sides and clipping at the border
    assert float(erased.min()) > 0 and float(erased.max()) <= 0.45
    assert 0.12 < float(erased.mean()) < 0.2  # E[area] = 17.5 %, less what the border clips
    assert torch.equal(out, augment_batch(images, erase_all, epoch_generator(0, 0, 1)))
    half = augment_batch(images, Augment(flip=False, erase=0.5), epoch_generator(0, 0, 1))
    assert 150 < int((half == 128).flatten(1).any(1).sum()) < 250
    with pytest.raises(ValueError, match="probability"):
        Augment(erase=1.5)


def test_erase_off_draws_the_same_augmentation_as_before():
    """erase=0 must not consume random numbers: earlier runs and checkpoints stay reproducible."""
    images = torch.randint(0, 256, (16, 3, 9, 9), dtype=torch.uint8)
    generator = epoch_generator(0, 0, 1)
    flip = torch.rand(16, generator=generator) < 0.5
    shifts = torch.randint(-2, 3, (2, 16), generator=generator)
    expected = shift_and_flip(images, shifts[0], shifts[1], flip)
    assert torch.equal(augment_batch(images, Augment(max_shift=2, erase=0.0), epoch_generator(0, 0, 1)), expected)


# --------------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------------
def test_same_seed_same_weights(data):
    images, labels = data
    runs = [train(settings(), *fresh(), images, labels) for _ in range(2)]
    assert same_state(runs[0].model, runs[1].model) and same_state(runs[0].head, runs[1].head)
    pd.testing.assert_frame_equal(runs[0].history.drop(columns="seconds"), runs[1].history.drop(columns="seconds"))
    other = train(settings(seed=8), *fresh(), images, labels)
    assert not torch.equal(other.model.fc.weight, runs[0].model.fc.weight)


class Crash(Exception):
    pass


def make_eval(crash_at: int | None = None):
    """Validation metrics that use the global RNG (so its checkpointed state matters), optionally crashing."""

    def eval_fn(model, head, epoch):
        if epoch == crash_at:
            raise Crash
        return {"val_noise": float(torch.rand(())), "val_norm": float(model.fc.weight.detach().norm())}

    return eval_fn


def test_resume_after_crash_is_identical(data, tmp_path):
    images, labels = data
    run_settings = settings(epochs=3)
    straight = train(run_settings, *fresh(), images, labels, eval_fn=make_eval(), checkpoint_dir=tmp_path / "a")

    with pytest.raises(Crash):  # epoch 3 trains, then the process "dies" before its checkpoint
        train(run_settings, *fresh(), images, labels, eval_fn=make_eval(crash_at=3), checkpoint_dir=tmp_path / "b")
    [stored_path] = list((tmp_path / "b").iterdir())  # no temporary files left
    assert stored_path.name.startswith("sphereface-seed7-") and stored_path.suffix == ".pt"
    assert torch.load(stored_path, weights_only=True)["epoch"] == 2

    # a new process: different initial weights, all replaced by the checkpoint
    resumed = train(run_settings, *fresh(seed=123), images, labels, eval_fn=make_eval(), checkpoint_dir=tmp_path / "b")
    assert resumed.resumed_from_epoch == 2
    assert same_state(resumed.model, straight.model)
    assert same_state(resumed.head, straight.head)  # includes SphereFace's iteration counter
    assert int(resumed.head.iteration) == 3 * 4
    pd.testing.assert_frame_equal(resumed.history.drop(columns="seconds"), straight.history.drop(columns="seconds"))


def scored_on(labels_name: str, crash_at: int | None = None):
    """An eval_fn whose number depends on the model and on which validation labels it is scored against."""
    offset = {"old labels": 0.0, "new labels": 100.0}[labels_name]

    def eval_fn(model, head, epoch):
        if epoch == crash_at:
            raise Crash
        return {"val_score": offset + float(model.fc.weight.detach().abs().sum())}

    return eval_fn


def test_a_reused_run_never_reports_metrics_of_other_evaluation_inputs(data, tmp_path):
    """Changed validation labels (or fuse_flip) reuse the checkpoint, as training did not change, but the
    stored history, computed on the old inputs, was reported beside fresh numbers."""
    images, labels = data
    old, new = {"validation": "digest-1", "fuse_flip": True}, {"validation": "digest-2", "fuse_flip": True}
    first = train(settings(epochs=3), *fresh(), images, labels, eval_fn=scored_on("old labels"), eval_inputs=old,
                  checkpoint_dir=tmp_path)
    weight_sum = float(first.model.fc.weight.detach().abs().sum())
    assert first.history["val_score"].iloc[-1] == pytest.approx(weight_sum)
    with pytest.warns(UserWarning, match=r"other evaluation inputs \(validation: 'digest-1' → 'digest-2'\); epoch "
                                         r"3's are recomputed .* rm '.*\.pt'"):
        again = train(settings(epochs=3), *fresh(seed=4), images, labels, eval_fn=scored_on("new labels"),
                      eval_inputs=new, checkpoint_dir=tmp_path)
    assert again.resumed_from_epoch == 3 and same_state(again.model, first.model)
    assert again.history["val_score"].iloc[-1] == pytest.approx(100 + weight_sum)  # scored on the new inputs
    assert again.history["val_score"].iloc[:-1].isna().all()  # no stale number is left as if current
    training_columns = ["epoch", "loss", "train_accuracy", "lr"]
    pd.testing.assert_frame_equal(again.history[training_columns], first.history[training_columns])
    with warnings.catch_warnings():  # the checkpoint now holds the history of the new inputs
        warnings.simplefilter("error")
        third = train(settings(epochs=3), *fresh(), images, labels, eval_fn=scored_on("new labels"), eval_inputs=new,
                      checkpoint_dir=tmp_path)
    pd.testing.assert_frame_equal(third.history, again.history)


def test_a_run_resumed_with_other_evaluation_inputs_blanks_the_epochs_it_cannot_recompute(data, tmp_path):
    images, labels = data
    with pytest.raises(Crash):  # epochs 1 and 2 are stored, evaluated on the old inputs
        train(settings(epochs=3), *fresh(), images, labels, eval_fn=scored_on("old labels", crash_at=3),
              eval_inputs={"fuse_flip": True}, checkpoint_dir=tmp_path)
    with pytest.warns(UserWarning, match=r"fuse_flip: True → False\); epoch 2's are recomputed"):
        resumed = train(settings(epochs=3), *fresh(), images, labels, eval_fn=scored_on("new labels"),
                        eval_inputs={"fuse_flip": False}, checkpoint_dir=tmp_path)
    scores = resumed.history["val_score"].tolist()
    assert math.isnan(scores[0]) and scores[1] > 100 and scores[2] > 100


def test_finished_run_returns_stored_result_without_training(data, tmp_path):
    images, labels = data
    done = train(settings(), *fresh(), images, labels, checkpoint_dir=tmp_path)

    def must_not_run(*args):
        raise AssertionError("eval_fn called although every epoch was done")

    again = train(settings(), *fresh(seed=5), images, labels, checkpoint_dir=tmp_path, eval_fn=must_not_run)
    assert same_state(again.model, done.model) and same_state(again.head, done.head)
    pd.testing.assert_frame_equal(again.history, done.history)


@pytest.mark.parametrize("change", [
    {"lr": 1e-2}, {"max_shift": 0}, {"erase": 0.5}, {"epochs": 3}, {"amp": "bf16"}, {"batch_size": 7},
    {"head_hparams": {"margin": 3}}, {"crop": 12}, {"image_size": 12}, {"flip": False}, {"weight_decay": 0.0},
])
def test_any_changed_setting_trains_a_new_run(data, tmp_path, change):
    """Each setting is part of the run's identity: a changed one never resumes the other run's model."""
    images, labels = data
    first = train(settings(), *fresh(), images, labels, checkpoint_dir=tmp_path)
    changed = settings(**change)
    model, head = fresh(head_hparams=change.get("head_hparams", {}))
    second = train(changed, model, head, images, labels, checkpoint_dir=tmp_path)
    assert second.resumed_from_epoch == 0 and second.checkpoint_path != first.checkpoint_path
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_changed_data_trains_a_new_run(data, tmp_path):
    images, labels = data
    first = train(settings(), *fresh(), images, labels, checkpoint_dir=tmp_path)
    edited = images.clone()
    edited[0, 0, 0, 0] ^= 1  # one pixel of one image
    second = train(settings(), *fresh(), edited, labels, checkpoint_dir=tmp_path)
    assert second.resumed_from_epoch == 0 and second.checkpoint_path != first.checkpoint_path
    relabelled = train(settings(), *fresh(), images, labels.roll(1), checkpoint_dir=tmp_path)
    assert relabelled.checkpoint_path not in (first.checkpoint_path, second.checkpoint_path)


def test_checkpoint_of_another_run_is_refused_naming_the_fields(data, tmp_path):
    images, labels = data
    train(settings(), *fresh(), images, labels, checkpoint_dir=tmp_path, run_name="mine")
    with pytest.raises(CheckpointError, match=r"max_shift: 2 → 0; lr: 0\.003 → 1\.0"):
        train(settings(lr=1.0, max_shift=0), *fresh(), images, labels, checkpoint_dir=tmp_path, run_name="mine")


def test_head_or_model_not_built_from_the_settings_is_refused(data):
    images, labels = data
    model, head = fresh(head_hparams={"margin": 3})
    with pytest.raises(ValueError, match="margin=3"):
        train(settings(), model, head, images, labels)  # settings say margin 4 (the default)
    with pytest.raises(ValueError, match="dropout"):
        train(settings(dropout=0.3), *fresh(), images, labels)


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "not ours"])
def test_damaged_checkpoint_names_the_file_and_what_to_do(data, tmp_path, damage):
    images, labels = data
    done = train(settings(), *fresh(), images, labels, checkpoint_dir=tmp_path)
    path = done.checkpoint_path
    content = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(content[: len(content) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 1000)
    else:
        torch.save({"epoch": 1, "model": {}}, path)
    with pytest.raises(CheckpointError) as error:
        train(settings(), *fresh(), images, labels, checkpoint_dir=tmp_path)
    assert str(path) in str(error.value) and "rm " in str(error.value)


def test_a_flipped_byte_inside_a_tensor_is_caught_by_the_stored_digest(data, tmp_path):
    """torch.load does not notice a changed byte inside a tensor's data: it loaded silently."""
    images, labels = data
    done = train(settings(), *fresh(), images, labels, checkpoint_dir=tmp_path)
    path = done.checkpoint_path
    weight = done.model.fc.weight.detach().cpu().contiguous().numpy().tobytes()
    content = bytearray(path.read_bytes())
    at = content.find(weight)
    assert at > 0 and content.find(weight, at + 1) == -1  # the tensor's bytes are stored as they are
    content[at + len(weight) // 2] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(content))
    assert not torch.equal(torch.load(path, weights_only=True)["model"]["fc.weight"], done.model.fc.weight)
    with pytest.raises(CheckpointError, match="does not match the content digest") as error:
        train(settings(), *fresh(), images, labels, checkpoint_dir=tmp_path)
    assert str(path) in str(error.value) and "rm " in str(error.value)


def _hand_made(path, edit) -> None:
    """The checkpoint at ``path`` edited by hand and saved without a digest (as one made outside fit)."""
    state = torch.load(path, weights_only=True)
    state.pop("digest", None)
    edit(state)
    torch.save(state, path)


def _drop(key):
    return lambda state: state.pop(key)


def _set_model_weight(state):
    state["model"]["fc.weight"] = torch.zeros(3, 3)


def _set_optimizer_moment(state):
    moments = next(iter(state["optimizer"]["state"].values()))
    moments["exp_avg"] = torch.zeros(5, 5)
    state["epoch"], state["history"] = 1, state["history"][:1]  # so that training resumes and steps


def _drop_model_key(state):
    state["model"].pop("fc.bias")


def _set(key, value):
    return lambda state: state.__setitem__(key, value)


@pytest.mark.parametrize("edit, message", [
    (_drop("optimizer"), r"lacks \['optimizer'\]"),
    (_drop("rng"), r"lacks \['rng'\]"),
    (_drop("history"), r"lacks \['history'\]"),
    (_drop_model_key, r"its model state does not fit .*fc.bias"),
    (_set_model_weight, r"its model state does not fit .*size mismatch for fc.weight"),
    (_set_optimizer_moment, r"optimizer state 'exp_avg' has shape \(5, 5\)"),
    (_set("epoch", "2"), "epoch is str, expected int"),
    (_set("rng", {"torch": torch.zeros(3)}), "random-number state is malformed"),
])
def test_a_hand_made_checkpoint_that_does_not_fit_names_the_file(data, tmp_path, edit, message):
    """A missing key or a wrong shape gave a raw KeyError / RuntimeError (or trained on, for an optimizer
    moment of the wrong shape, until the first step)."""
    images, labels = data
    done = train(settings(), *fresh(), images, labels, checkpoint_dir=tmp_path)
    _hand_made(done.checkpoint_path, edit)
    with pytest.raises(CheckpointError, match=message) as error:
        train(settings(), *fresh(), images, labels, checkpoint_dir=tmp_path)
    assert str(done.checkpoint_path) in str(error.value) and "rm " in str(error.value)


def test_a_checkpoint_without_a_digest_loads_as_before(data, tmp_path):
    """Checkpoints written before digests were stored (e.g. the real profile's) still load, unchecked."""
    images, labels = data
    done = train(settings(), *fresh(), images, labels, checkpoint_dir=tmp_path)
    _hand_made(done.checkpoint_path, lambda state: None)
    again = train(settings(), *fresh(seed=3), images, labels, checkpoint_dir=tmp_path)
    assert same_state(again.model, done.model)
    pd.testing.assert_frame_equal(again.history, done.history)


def test_stale_temporary_files_are_removed(data, tmp_path):
    """A kill during a save leaves a temporary file named after its process; the next run removes it when
    that process is gone, and leaves a live writer's alone."""
    import subprocess

    images, labels = data
    name = settings().replace(data=data_digest(images, labels), amp="off").run_name() + ".pt"
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".{name}.{dead.pid}.abcd1234.tmp"
    old_style = tmp_path / f".{name}.{dead.pid}.tmp"
    live = tmp_path / f".{name}.1.ffff0000.tmp"  # pid 1 is always alive
    for path in (stale, old_style, live):
        path.write_bytes(b"partial checkpoint")
    train(settings(), *fresh(), images, labels, checkpoint_dir=tmp_path)
    assert not stale.exists() and not old_style.exists() and live.exists()
    assert remove_stale_temporaries(tmp_path / name) == []


def test_nan_loss_stops_with_epoch_and_step(data, tmp_path):
    images, labels = data
    head = CountingHead(poison_at=4 + 3)  # 4 steps per epoch: the 3rd step of epoch 2
    before = None

    def remember(model, head, epoch):
        nonlocal before
        before = copy.deepcopy(model.state_dict())
        return {}

    with pytest.raises(FloatingPointError, match="epoch 2, step 3"):
        train(settings(head="counting", epochs=3), fresh()[0], head, images, labels, eval_fn=remember,
              checkpoint_dir=tmp_path)
    [path] = tmp_path.glob("*.pt")
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert before is not None


def test_epoch_metrics_are_sample_means(data):
    """With lr=0 nothing changes, so the epoch loss/accuracy must equal full-set values computed directly."""
    images, labels = data
    model, _ = fresh(dropout=0.0)
    head = CountingHead()
    run_settings = settings(head="counting", lr=1e-30, flip=False, max_shift=0, schedule=None, batch_size=7,
                            epochs=1, dropout=0.0)  # 7 does not divide 30
    result = train(run_settings, model, head, images, labels)
    row = result.history.iloc[0]
    with torch.no_grad():
        x = (images.double() / 255 - 0.5) / 0.5
        logits = head.logits(model(x.float()))
        expected_loss = F.cross_entropy(logits, labels).item()
        expected_accuracy = (logits.argmax(1) == labels).double().mean().item()
    assert row["loss"] == pytest.approx(expected_loss, abs=1e-5)
    assert row["train_accuracy"] == pytest.approx(expected_accuracy, abs=1e-12)
    assert row["count"] == pytest.approx(np.mean([1, 2, 3, 4, 5]))  # 5 steps; extras averaged per step
    assert list(result.history.columns[:3]) == ["epoch", "loss", "train_accuracy"]
    _, predicted = predict(model, head, images, device="cpu")
    assert row["train_accuracy"] == pytest.approx((predicted == labels).double().mean().item(), abs=1e-12)


def test_schedule_reaches_zero_and_eval_every(data):
    images, labels = data
    calls = []

    def eval_fn(model, head, epoch):
        calls.append(epoch)
        return {"val_accuracy": 0.5}

    result = train(settings(epochs=3), *fresh(), images, labels, eval_fn=eval_fn, eval_every=2)
    assert calls == [2, 3]  # every 2nd epoch, and the last
    assert result.history["lr"].iloc[-1] == pytest.approx(0.0, abs=1e-12)
    assert result.history["val_accuracy"].isna().tolist() == [True, False, False]
    assert "lambda" in result.history  # the SphereFace head's extra metric


def test_bad_inputs_say_what_to_do(data):
    images, labels = data
    with pytest.raises(ValueError, match="feature inputs cannot be augmented"):
        train(settings(), *fresh(), images.float(), labels)
    with pytest.raises(ValueError, match="3 classes"):
        train(settings(), *fresh(), images, labels + 1)
    with pytest.raises(ValueError, match="fp16 only on CUDA"):
        train(settings(amp="fp16"), *fresh(), images, labels)
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        settings(epochs=0)
    with pytest.raises(ValueError, match="seed must be an integer, got '\\[0\\]'"):
        settings(seed="[0]")


def test_bf16_on_cpu_autocasts_the_backbone_and_resumes_identically(data, tmp_path):
    images, labels = data
    full = train(settings(), *fresh(), images, labels)
    half = train(settings(amp="bf16"), *fresh(), images, labels, checkpoint_dir=tmp_path / "a", eval_fn=make_eval())
    [stored] = (tmp_path / "a").glob("*.pt")
    assert torch.load(stored, weights_only=True)["settings"]["amp"] == "bf16"
    # the same first epoch in bf16: close to float32, but not equal (autocast did act)
    loss_fp32, loss_bf16 = full.history["loss"].iloc[0], half.history["loss"].iloc[0]
    assert loss_bf16 != loss_fp32 and loss_bf16 == pytest.approx(loss_fp32, rel=0.05)
    assert next(half.model.parameters()).dtype == torch.float32  # master weights stay float32

    with pytest.raises(Crash):  # dies during epoch 2, after epoch 1's checkpoint
        train(settings(amp="bf16"), *fresh(), images, labels, checkpoint_dir=tmp_path / "b",
              eval_fn=make_eval(crash_at=2))
    resumed = train(settings(amp="bf16"), *fresh(seed=9), images, labels, checkpoint_dir=tmp_path / "b",
                    eval_fn=make_eval())
    assert same_state(resumed.model, half.model) and same_state(resumed.head, half.head)
    float32 = train(settings(), *fresh(), images, labels, checkpoint_dir=tmp_path / "b")
    assert float32.resumed_from_epoch == 0  # a float32 run never continues a bf16 checkpoint


def test_feature_inputs_train_a_frozen_feature_classifier():
    """Float features (a frozen encoder's embeddings) go through the same step, without augmentation."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(N_CLASSES, EMBEDDING, generator=generator) * 3
    labels = torch.arange(60) % N_CLASSES
    features = centres[labels] + 0.3 * torch.randn(60, EMBEDDING, generator=generator)
    run_settings = RunSettings(head="cosface", head_hparams={"scale": 10.0, "margin": 0.2}, model="identity",
                               embedding_dim=EMBEDDING, image_size=None, flip=False, epochs=15, batch_size=16,
                               lr=0.05, seed=1)
    torch.manual_seed(1)
    head = make_head("cosface", EMBEDDING, N_CLASSES, scale=10.0, margin=0.2)
    result = fit(run_settings, nn.Identity(), head, features, labels, device="cpu", progress=False)
    assert result.history["train_accuracy"].iloc[-1] == 1.0
    with pytest.raises(ValueError, match="cannot be augmented"):
        fit(run_settings.replace(flip=True), nn.Identity(), head, features, labels, device="cpu", progress=False)


# --------------------------------------------------------------------------------------------------
# Devices and precision
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("capability, amp, expected", [
    ((7, 5), "auto", "fp16"), ((8, 0), "auto", "bf16"), ((9, 0), "auto", "bf16"), ((7, 0), "fp16", "fp16"),
    ((8, 6), "fp16", "fp16"), ((7, 5), "off", "off"), ((8, 0), False, "off"),
])
def test_precision_follows_the_gpu_generation(monkeypatch, capability, amp, expected):
    """T4-class GPUs (compute capability 7.5) only emulate bf16: they get fp16 with a gradient scaler."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    assert resolve_precision(amp, torch.device("cuda")) == expected


def test_bf16_on_an_old_gpu_is_refused_with_the_alternative(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    with pytest.raises(ValueError, match="Tesla T4.*7.5.*amp='auto'"):
        resolve_precision("bf16", torch.device("cuda"))


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "off")])
def test_cpu_precision(monkeypatch, native, expected):
    """``auto`` on a CPU: bf16 where the processor has native bf16, float32 elsewhere."""
    monkeypatch.setattr(training, "cpu_native_bf16", lambda cpuinfo=None: native)
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == expected and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="fp16 only on CUDA"):
        resolve_precision("fp16", cpu)


def test_auto_precision_is_resolved_into_the_run_settings(data, tmp_path, monkeypatch):
    """What ``amp="auto"`` picked is the run's precision in its settings and checkpoint, and part of its name:
    a run trained in bf16 never resumes a float32 checkpoint, nor the other way round."""
    images, labels = data
    paths_by_precision = {}
    for native, expected in ((True, "bf16"), (False, "off")):
        monkeypatch.setattr(training, "cpu_native_bf16", lambda cpuinfo=None, native=native: native)
        result = train(settings(amp="auto", epochs=1), *fresh(), images, labels, checkpoint_dir=tmp_path)
        assert result.settings.amp == expected and result.resumed_from_epoch == 0
        assert torch.load(result.checkpoint_path, weights_only=True)["settings"]["amp"] == expected
        paths_by_precision[expected] = result.checkpoint_path
    assert paths_by_precision["bf16"] != paths_by_precision["off"]


CPUINFO = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f {extra} avx512bw\n\n"


@pytest.mark.parametrize("extra, expected", [("amx_bf16 amx_tile", True), ("avx512_bf16", True), ("avx512_vnni", False),
                                             ("", False)])
def test_native_bf16_is_read_from_the_cpu_flags(extra, expected):
    assert training.cpu_native_bf16(CPUINFO.format(extra=extra)) is expected
    assert training.cpu_native_bf16("processor\t: 0\n") is False  # no flags line (not x86 Linux)


@pytest.mark.parametrize("cuda_build, expected", [(None, "CPU-only build"), ("12.4", "built for CUDA 12.4")])
def test_missing_cuda_is_an_error_that_says_why(monkeypatch, cuda_build, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", cuda_build)
    with pytest.raises(RuntimeError, match=expected):
        resolve_device("cuda")
    assert resolve_device("auto").type in ("cpu", "mps")  # "auto" may fall back; an explicit device may not


# --------------------------------------------------------------------------------------------------
# Run settings
# --------------------------------------------------------------------------------------------------
def test_run_name_is_stable_and_covers_every_setting():
    base = RunSettings(head="cosface")
    assert base.run_name() == RunSettings(head="cosface", head_hparams={"scale": 30}).run_name()  # defaults filled
    assert base.run_name().startswith("cosface-seed0-") and len(base.digest()) == 10
    for name, value in [("lr", 0.01), ("crop", 120), ("max_shift", 4), ("amp", "bf16"), ("data", "abc"),
                        ("head_hparams", {"margin": 0.1}), ("dropout", 0.5), ("epochs", 11)]:
        assert base.replace(**{name: value}).run_name() != base.run_name(), name
    # a field at its default is not hashed, so adding a field with a default never renames old runs
    assert "erase" not in base.identity() and "erase" in base.replace(erase=0.1).identity()


def test_settings_from_notebook_parameters_ignore_other_names():
    parameters = {"lr": 0.01, "epochs": 3, "heads": ["a"], "data": object(), "profile": "x", "max_shift": 2}
    built = RunSettings.from_parameters(parameters, head="softmax", seed=4)
    assert (built.lr, built.epochs, built.max_shift, built.seed, built.data) == (0.01, 3, 2, 4, "")


def test_settings_from_parameters_refuse_a_module_that_shadows_a_field():
    import lib.pretrained

    with pytest.raises(TypeError, match="'pretrained'.*shadows the notebook parameter"):
        RunSettings.from_parameters({"lr": 0.01, "pretrained": lib.pretrained}, head="softmax", seed=0)


def test_data_digest_reads_every_byte():
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    labels = torch.arange(4)
    reference = data_digest(images, labels)
    changed = images.clone()
    changed[3, 2, 7, 7] = 1
    assert data_digest(changed, labels) != reference
    assert data_digest(images, labels.flip(0)) != reference
    assert data_digest(images.numpy(), labels.numpy()) == reference


# --------------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------------
def test_embed_with_flip(data):
    from lib.verification import fuse_flip

    images, _ = data
    model, _ = fresh(dropout=0.5)
    model.train()
    emb, emb_flipped = embed(model, images, batch_size=7, flip=True, device="cpu")
    assert emb.shape == emb_flipped.shape == (N_IMAGES, EMBEDDING) and emb.dtype == torch.float32
    assert model.training  # mode restored
    direct, none = embed(model, images.flip(-1), batch_size=30, device="cpu")
    assert none is None
    torch.testing.assert_close(emb_flipped, direct)  # eval mode: dropout off, so deterministic
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(emb, model((images.float() / 255 - 0.5) / 0.5))
    assert fuse_flip(emb.numpy(), emb_flipped.numpy()).shape == (N_IMAGES, EMBEDDING)
    assert fuse_flip(emb.numpy(), emb_flipped.numpy(), mode="concat").shape == (N_IMAGES, 2 * EMBEDDING)


# --------------------------------------------------------------------------------------------------
# Progress bars
# --------------------------------------------------------------------------------------------------
def test_progress_modes(monkeypatch):
    from tqdm import std

    monkeypatch.setenv("FACE_PROGRESS", "off")
    assert progress_module.progress(range(3)).disable
    monkeypatch.setenv("FACE_PROGRESS", "plain")
    bar = progress_module.progress(range(3))
    assert type(bar) is std.tqdm and bar.mininterval == 30
    assert list(bar) == [0, 1, 2]
    import io

    log = io.StringIO()  # a closed plain bar leaves its final line, not a line of blanks
    list(progress_module.progress(range(3), desc="work", leave=False, file=log))
    assert log.getvalue().rstrip().splitlines()[-1].lstrip("\r").startswith("work: 100%")
    monkeypatch.setenv("FACE_PROGRESS", "loud")
    with pytest.raises(ValueError, match="FACE_PROGRESS"):
        progress_module.progress(range(3))


def test_batched_finite_check_names_the_first_bad_step():
    """The GPU path checks the loss every 25 steps; it must still name the first bad one."""
    from lib.training import _check_finite

    losses = torch.ones(50)
    _check_finite(losses, epoch=0, step=49, check_every=25)  # all finite: no error
    losses[[31, 40]] = torch.tensor([float("inf"), float("nan")])
    with pytest.raises(FloatingPointError, match="loss is inf at epoch 4, step 32 "):
        _check_finite(losses, epoch=3, step=49, check_every=25)
