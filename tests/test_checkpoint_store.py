"""Checkpoints on a network drive (``FACE_STORAGE`` on Google Drive): every epoch to local disk, copied to the
persistent folder at most every ``persist_every`` seconds and at the end of the run, one file per run there;
a resume after a disconnect (local disk lost) loses at most ``persist_every`` seconds of training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lib import paths, training
from lib.losses import make_head
from lib.settings import RunSettings
from lib.training import CheckpointStore, fit

torch.set_num_threads(1)

MINUTE = 60.0
EPOCH_MINUTES = 4.0  # the fake clock advances this much per epoch
EVERY_MINUTES = 10.0


class Net(nn.Module):
    input_normalization = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    dropout = 0.0

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x):
        return self.fc(x.flatten(1))


class Crash(Exception):
    pass


@pytest.fixture
def data():
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (24, 3, 8, 8), dtype=torch.uint8, generator=generator), torch.arange(24) % 3


@pytest.fixture
def clock(monkeypatch):
    """A fake clock that the epochs advance (through eval_fn, called once per epoch)."""
    now = [0.0]
    monkeypatch.setattr(training, "_checkpoint_clock", lambda: now[0])
    return now


@pytest.fixture
def copies(monkeypatch):
    """Every copy to the persistent folder, counted (the real copy still runs)."""
    made = []
    real = training.copy_atomically

    def counting(source, target):
        made.append(torch.load(source, weights_only=True)["epoch"])
        real(source, target)

    monkeypatch.setattr(training, "copy_atomically", counting)
    return made


SETTINGS = RunSettings(head="cosface", model="Net", embedding_dim=4, image_size=8, batch_size=8, lr=1e-2, seed=3,
                       epochs=10)


def run(data, clock, tmp_path, crash_at=None, seed=0, **kwargs):
    def eval_fn(model, head, epoch):  # called after every epoch's training, before its checkpoint
        clock[0] += EPOCH_MINUTES * MINUTE
        if epoch == crash_at:
            raise Crash
        return {}

    torch.manual_seed(seed)
    model, head = Net(), make_head("cosface", 4, 3)
    options = dict(checkpoint_dir=tmp_path / "drive", local_checkpoint_dir=tmp_path / "local",
                   persist_every=EVERY_MINUTES * MINUTE)
    return fit(SETTINGS, model, head, *data, device="cpu", progress=False, eval_fn=eval_fn, **{**options, **kwargs})


def test_a_run_writes_the_drive_at_most_once_per_interval_and_at_its_end(data, clock, copies, tmp_path):
    result = run(data, clock, tmp_path)
    # 10 epochs of 4 min, a copy once 10 min have passed since the last: after epochs 3 (12 min), 6 (24 min),
    # 9 (36 min), and the last epoch (40 min) always.
    assert copies == [3, 6, 9, 10]
    assert len(copies) <= int(10 * EPOCH_MINUTES // EVERY_MINUTES) + 1  # the bound the README states
    assert [p.name for p in (tmp_path / "drive").iterdir()] == [result.checkpoint_path.name]  # one file per run
    assert torch.load(result.checkpoint_path, weights_only=True)["epoch"] == 10
    assert len(list((tmp_path / "local").glob("*.pt"))) == 1


def test_a_finished_run_writes_nothing_again(data, clock, copies, tmp_path):
    run(data, clock, tmp_path)
    copies.clear()
    again = run(data, clock, tmp_path)
    assert copies == [] and again.resumed_from_epoch == 10


def test_without_a_local_folder_every_epoch_goes_to_the_persistent_folder(data, clock, copies, tmp_path):
    saved = []
    real = training._save_atomically
    training_save = lambda payload, path: (saved.append(path.parent.name), real(payload, path))  # noqa: E731
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "_save_atomically", training_save)
        run(data, clock, tmp_path, local_checkpoint_dir=None)
    assert saved == ["drive"] * 10 and copies == []


def test_resume_after_a_disconnect_loses_at_most_the_interval(data, clock, copies, tmp_path):
    straight = run(data, clock, tmp_path / "straight")
    with pytest.raises(Crash):  # epoch 8 trains, then the runtime disconnects before its checkpoint
        run(data, clock, tmp_path / "cut", crash_at=8)
    assert torch.load(next((tmp_path / "cut" / "drive").glob("*.pt")), weights_only=True)["epoch"] == 6
    for file in (tmp_path / "cut" / "local").iterdir():  # a new runtime: the local disk is gone
        file.unlink()
    resumed = run(data, clock, tmp_path / "cut", seed=99)
    assert resumed.resumed_from_epoch == 6  # 2 epochs = 8 min lost, less than the 10 min interval
    assert all(torch.equal(a, b) for a, b in zip(resumed.model.state_dict().values(),
                                                   straight.model.state_dict().values()))


def test_resume_in_the_same_runtime_takes_the_newer_local_copy(data, clock, copies, tmp_path):
    with pytest.raises(Crash):
        run(data, clock, tmp_path, crash_at=8)
    copies.clear()
    resumed = run(data, clock, tmp_path, seed=99)
    assert resumed.resumed_from_epoch == 7  # local holds epoch 7, the drive epoch 6
    assert copies == [10]


def test_a_damaged_local_copy_falls_back_to_the_drive(data, clock, copies, tmp_path, capsys):
    with pytest.raises(Crash):
        run(data, clock, tmp_path, crash_at=8)
    [local] = (tmp_path / "local").glob("*.pt")
    local.write_bytes(local.read_bytes()[:100])
    resumed = run(data, clock, tmp_path, seed=99)
    assert resumed.resumed_from_epoch == 6
    assert "resuming from the other copy" in capsys.readouterr().out


def test_store_persists_a_local_copy_that_is_ahead_when_finishing(tmp_path):
    local, drive = tmp_path / "local" / "r.pt", tmp_path / "drive" / "r.pt"
    store = CheckpointStore(drive, local, every=1e9, clock=lambda: 0.0)
    store.save({"settings": {}, "epoch": 1})
    assert not drive.exists()
    store.finish()
    assert torch.load(drive, weights_only=True)["epoch"] == 1 and store.writes == 1


def test_local_checkpoint_folder_only_for_folders_in_the_storage(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "STORAGE", tmp_path / "drive")
    assert paths.local_checkpoint_dir(tmp_path / "drive" / "checkpoints" / "colab" / "03") == (
        paths.LOCAL_CHECKPOINTS / "checkpoints" / "colab" / "03")
    assert paths.local_checkpoint_dir(tmp_path / "elsewhere") is None
    monkeypatch.setattr(paths, "STORAGE", None)
    assert paths.local_checkpoint_dir(tmp_path / "drive" / "checkpoints") is None


@pytest.mark.parametrize("value, seconds", [("", 15 * 60.0), ("2.5", 150.0), ("0", 0.0)])
def test_storage_interval_from_the_environment(value, seconds, monkeypatch):
    monkeypatch.setenv(paths.STORAGE_EVERY_ENV, value)
    assert paths.storage_every_seconds() == seconds


def test_a_bad_storage_interval_says_what_to_give(monkeypatch):
    monkeypatch.setenv(paths.STORAGE_EVERY_ENV, "soon")
    with pytest.raises(ValueError, match="minutes between checkpoint copies"):
        paths.storage_every_seconds()
