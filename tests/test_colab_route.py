"""The colab profile's first-run safety nets, on a CPU: the GPU guard, the report copy that never writes
outside its folder, the time estimates the README and the launcher share, the GPU check script."""

from __future__ import annotations

import subprocess

import pytest
import torch

from lib import notebooks, parameters, paths
from lib.parameters import ParameterError, declared_in


def notebook_defaults(stem: str) -> dict:
    return declared_in(paths.NOTEBOOKS / f"{stem}.py")


# ------------------------------------------------------------------------------------------ GPU guard
@pytest.mark.parametrize("stem", ["01_data_audit", "02_sphereface", "03_cosrelu_vs_softmax"])
def test_colab_profile_stops_without_a_gpu_and_says_how_to_get_one(stem, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    values = {**notebook_defaults(stem), **notebooks.notebook_parameters("colab", stem)}
    assert values["allow_cpu"] is False  # set by params/colab.yaml, not by the notebook
    with pytest.raises(ParameterError) as info:
        parameters.validate(stem, values, check_paths=False, quiet=True)
    message = str(info.value)
    assert "allow_cpu" in message and "Runtime → Change runtime type → GPU" in message
    assert "nothing was run" in message


def test_allow_cpu_opts_in_and_a_gpu_passes(monkeypatch):
    stem = "03_cosrelu_vs_softmax"
    values = {**notebook_defaults(stem), **notebooks.notebook_parameters("colab", stem)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    parameters.validate(stem, {**values, "allow_cpu": True}, check_paths=False, quiet=True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    parameters.validate(stem, values, check_paths=False, quiet=True)


def test_other_profiles_run_on_a_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for profile in ("smoke", "default", "real"):
        for stem in ("01_data_audit", "02_sphereface", "03_cosrelu_vs_softmax"):
            values = {**notebook_defaults(stem), **notebooks.notebook_parameters(profile, stem)}
            assert parameters.gpu_guard(values) is None, (profile, stem)


def test_the_runner_stops_before_the_first_notebook(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    executed = []
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: executed.append(a))
    with pytest.raises(SystemExit, match="Change runtime type → GPU"):
        notebooks.execute("colab")
    assert executed == []


# ------------------------------------------------------------------------------------------ the launcher
def launcher_cells() -> list[str]:
    import nbformat

    notebook = nbformat.read(paths.NOTEBOOKS / "run_on_colab.ipynb", as_version=4)
    return [cell.source for cell in notebook.cells]


def run_first_cell(repository: str, monkeypatch, returncode: int = 0) -> list[list[str]]:
    commands = []

    def fake_run(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, returncode, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    source = launcher_cells()[0].replace('REPOSITORY = "<owner>/<name>"', f"REPOSITORY = {repository!r}")
    exec(compile(source, "run_on_colab.ipynb[0]", "exec"), {})
    return commands


def test_launcher_first_cell_says_what_to_set_and_refuses_the_placeholder(monkeypatch):
    first = launcher_cells()[0]
    assert first.splitlines()[0].startswith("# Set REPOSITORY to your fork")
    with pytest.raises(ValueError, match="set it to the owner/name of your copy"):
        run_first_cell("<owner>/<name>", monkeypatch)
    with pytest.raises(ValueError, match="cannot be read"):
        run_first_cell("alice/angular-margin-fairness", monkeypatch, returncode=128)
    commands = run_first_cell("alice/angular-margin-fairness", monkeypatch)
    assert commands == [["git", "ls-remote", "--heads", "https://github.com/alice/angular-margin-fairness.git"]]
    assert not any("git clone" in cell or '"clone"' in cell for cell in launcher_cells()[:1])


def test_launcher_and_readme_copy_the_report_with_the_checked_command():
    readme = (paths.ROOT / "README.md").read_text()
    for text in ("\n".join(launcher_cells()), readme):
        assert "python -m lib.notebooks keep --profile colab" in text
        assert '"$FACE_STORAGE"/' not in text  # the old copy that wrote into / without FACE_STORAGE


# ------------------------------------------------------------------------------------------ keep_report
@pytest.fixture
def built_report(tmp_path, monkeypatch):
    root = tmp_path / "clone"
    monkeypatch.setattr(paths, "REPORTS", root / "reports")
    monkeypatch.setattr(paths, "FIGURES", root / "figures")
    (root / "reports" / "colab").mkdir(parents=True)
    (root / "reports" / "colab" / "index.html").write_text("<html></html>")
    (root / "figures" / "colab").mkdir(parents=True)
    (root / "figures" / "colab" / "01_x.png").write_bytes(b"png")
    return tmp_path


def everything_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_keep_refuses_without_a_storage_folder_and_writes_nothing(built_report, monkeypatch):
    monkeypatch.setattr(paths, "STORAGE", None)
    before = everything_under(built_report)
    with pytest.raises(SystemExit, match="FACE_STORAGE is not set"):
        notebooks.keep_report("colab")
    assert everything_under(built_report) == before


def test_keep_copies_into_the_storage_folder_only(built_report, monkeypatch):
    storage = built_report / "drive" / "angular-margin-fairness"
    storage.parent.mkdir()
    monkeypatch.setattr(paths, "STORAGE", storage)
    notebooks.keep_report("colab")
    assert everything_under(storage) == ["figures", "figures/colab", "figures/colab/01_x.png", "reports",
                                         "reports/colab", "reports/colab/index.html"]
    assert everything_under(built_report / "drive") == ["angular-margin-fairness"] + [
        f"angular-margin-fairness/{p}" for p in everything_under(storage)]


def test_an_unmounted_drive_stops_before_anything_is_written(tmp_path):
    """FACE_STORAGE under a Drive that is not mounted: lib.paths refuses at import, in a fresh process."""
    import os
    import sys

    env = {**os.environ, "FACE_STORAGE": str(tmp_path / "drive" / "MyDrive" / "x"), "PYTHONPATH": str(paths.ROOT)}
    result = subprocess.run([sys.executable, "-m", "lib.notebooks", "keep", "--profile", "colab"], env=env,
                            capture_output=True, text=True, cwd=paths.ROOT)
    assert result.returncode != 0 and "mount Google Drive first" in result.stderr
    assert not (tmp_path / "drive").exists()


# ------------------------------------------------------------------------------------------ time estimates
def test_readme_time_table_is_the_computed_one():
    readme = (paths.ROOT / "README.md").read_text()
    assert notebooks.time_table_markdown("colab") in readme


def test_estimate_counts_every_seed_head_and_target(monkeypatch):
    """Doubling the seeds of notebook 03 doubles its training work; dropping the encoder removes dlib's share."""
    base = {e.stem: e for e in notebooks.expected_times("colab")}
    original = notebooks.notebook_parameters

    def with_changes(changes):
        def patched(profile, stem):
            values = original(profile, stem)
            return {**values, **changes} if stem == "03_cosrelu_vs_softmax" else values
        return patched

    monkeypatch.setattr(notebooks, "notebook_parameters", with_changes({"pretrained_encoder": None}))
    alone = {e.stem: e for e in notebooks.expected_times("colab")}["03_cosrelu_vs_softmax"]
    # 4,337,200 training images at 650..450 images/s plus 50 x 10,954 validation images at 1950..1350 images/s
    assert alone.low == pytest.approx(5 * 10 * 86744 / 650 + 50 * 10954 / 1950)
    assert alone.high == pytest.approx(5 * 10 * 86744 / 450 + 50 * 10954 / 1350)
    monkeypatch.setattr(notebooks, "notebook_parameters", with_changes({"pretrained_encoder": None, "seeds": [0, 1]}))
    two = {e.stem: e for e in notebooks.expected_times("colab")}["03_cosrelu_vs_softmax"]
    assert two.low == pytest.approx(2 * alone.low) and "2 seeds" in two.work
    assert base["03_cosrelu_vs_softmax"].low > alone.low  # dlib's embeddings counted


def test_runner_prints_the_expected_time_before_each_notebook(capsys):
    notebooks.announce_expected_time("colab", "03_cosrelu_vs_softmax")
    assert capsys.readouterr().out.startswith("[colab] 03_cosrelu_vs_softmax: expected ")
    notebooks.announce_expected_time("default", "03_cosrelu_vs_softmax")
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------------------------------ cache-read bench
def bench_cache_reads():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_cache_reads", paths.ROOT / "scripts" / "bench_cache_reads.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chunked_order_uses_every_row_once_and_is_seeded():
    bench = bench_cache_reads()
    batches = bench.chunked_epoch_batches(1000, 64, 0, 1, chunk_rows=100, window=3)
    rows = torch.cat(batches)
    assert sorted(rows.tolist()) == list(range(1000))
    again = torch.cat(bench.chunked_epoch_batches(1000, 64, 0, 1, chunk_rows=100, window=3))
    assert torch.equal(rows, again)
    assert not torch.equal(rows, torch.cat(bench.chunked_epoch_batches(1000, 64, 0, 2, chunk_rows=100, window=3)))
    first_window = rows[:300] // 100  # the first 300 rows come from 3 chunks
    assert len(first_window.unique()) == 3


def test_chunked_gather_returns_the_rows_asked_for():
    bench = bench_cache_reads()
    images = torch.randint(0, 256, (500, 3, 4, 4), dtype=torch.uint8)
    source = bench.ChunkedBatches(images, torch.device("cpu"), chunk_rows=64, window=2)
    order = bench.chunked_epoch_batches(500, 32, 0, 0, chunk_rows=64, window=2)
    for index, rows in source.gather_ahead(order):
        assert torch.equal(rows, images[index])
    assert len(source.loaded) <= 4


def test_cache_read_bench_runs_and_prints_each_order(capsys):
    assert bench_cache_reads().main(["--images", "96", "--size", "16", "--rounds", "1", "--chunk-rows", "16"]) == 0
    out = capsys.readouterr().out
    for label in ("(1) random permutation, pages dropped", "(2) chunked", "(3) file order", "(4) random permutation, "
                  "pages in the page cache", "chunked / random from disk"):
        assert label in out


# ------------------------------------------------------------------------------------------ the GPU check
GPU_CHECK = paths.ROOT / "scripts" / "gpu_check.sh"


def gpu_check(*arguments, **env):
    import os
    import sys

    environment = {**os.environ, "PY": sys.executable, **env}
    return subprocess.run(["bash", str(GPU_CHECK), *arguments], capture_output=True, text=True, env=environment,
                          cwd=paths.ROOT, timeout=900)


def test_gpu_check_parses_and_lists_its_steps():
    assert subprocess.run(["bash", "-n", str(GPU_CHECK)]).returncode == 0
    result = gpu_check("--dry-run")
    assert result.returncode == 0
    steps = [line.strip() for line in result.stdout.splitlines()[1:]]
    assert "scripts/bench_pipeline.py --device cuda --model resnet18 --size 224 --batch-size 64 --amp auto" in steps[0]
    assert "bench_cache_reads.py --device cuda" in steps[1] and "notebook03" in steps[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_gpu_check_stops_clearly_without_cuda():
    result = gpu_check()
    assert result.returncode == 2
    assert "no CUDA GPU" in result.stderr and "run it on a machine with an NVIDIA GPU" in result.stderr
    assert "==" not in result.stdout  # no step started


@pytest.mark.slow
def test_gpu_check_notebook_step_runs_on_a_cpu_with_small_settings(tmp_path):
    """Step 3's parameters are valid for notebook 03 (on a CPU, 32 px, 150 images per split)."""
    import shutil

    try:
        result = gpu_check("--notebook-only", GPU_CHECK_DEVICE="cpu", GPU_CHECK_IMAGE_SIZE="32",
                           GPU_CHECK_LIMIT="150", GPU_CHECK_STORAGE=str(tmp_path / "storage"))
    finally:
        shutil.rmtree(paths.FIGURES / "gpu-check", ignore_errors=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "gpu_check: notebook 03" in result.stdout and "done in" in result.stdout
    assert (tmp_path / "storage" / "results" / "gpu-check" / "03_predictions.csv").is_file()
