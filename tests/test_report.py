"""The report runner and renderer (lib.notebooks) and figure export (lib.plots.save_figure).

A profile, notebook folder, report folder and figure folder are built under ``tmp_path`` (the
module-level folders of ``lib.paths`` are monkeypatched), so nothing here touches ``reports/``.
"""

from __future__ import annotations

import base64
import html.parser
import io
import json
import shutil
import threading
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output  # noqa: E402
from PIL import Image  # noqa: E402

from lib import notebooks, paths, plots  # noqa: E402

INTRO = ("# 01 · A tiny notebook\n\nIt checks **bold** and `code` in the summary.\n\n"
         "* a first point,\n* a second point that ends the introduction.")


def _png(width=300, height=200, colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Empty params/notebooks/reports/figures folders under tmp_path, with a ``tiny`` profile."""
    for name in ("PARAMS", "NOTEBOOKS", "REPORTS", "FIGURES"):
        folder = tmp_path / name.lower()
        folder.mkdir()
        monkeypatch.setattr(paths, name, folder)
    (tmp_path / "params" / "tiny.yaml").write_text("common:\n  seed: 0\n")
    return tmp_path


def _executed_notebook(figure_name="01_tiny_curve.png") -> nbformat.NotebookNode:
    image = new_output("display_data", data={"image/png": base64.b64encode(_png()).decode("ascii"),
                                             "text/plain": "<IPython.core.display.Image object>"},
                       metadata={"figure": figure_name})
    notebook = new_notebook(cells=[new_markdown_cell(INTRO), new_code_cell("1 + 1", outputs=[image])])
    notebook.metadata["papermill"] = {"duration": 12.5, "start_time": "2024-05-01T10:00:00"}
    return notebook


def _write_executed(project, record: dict | None = None) -> Path:
    (project / "notebooks" / "01_tiny.py").write_text("# %%\n1 + 1\n")
    out = project / "reports" / "tiny"
    out.mkdir()
    nbformat.write(_executed_notebook(), out / "01_tiny.ipynb")
    if record is not None:
        (out / "01_tiny.run.json").write_text(json.dumps(record))
    return out


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets = []  # every href/src value
        self.tagged = []  # (tag, attribute, value)
        self.scripts = []  # inline script text
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self._in_script = tag == "script"
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.targets.append(value)
                self.tagged.append((tag, name, value))

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def _links(page: str) -> list[str]:
    parser = _Links()
    parser.feed(page)
    return parser.targets


def _network_loads(page: str) -> list[str]:
    """What a page would fetch from the network: any src/href that is not a plain hyperlink (<a>) and
    points off the machine, and any URL inside an inline script (e.g. an import() of a CDN module)."""
    parser = _Links()
    parser.feed(page)
    remote = ("http:", "https:", "//")
    loads = [f"<{tag} {name}={value}>" for tag, name, value in parser.tagged
             if tag != "a" and value.startswith(remote)]
    loads += [f"script text: ...{text[max(0, text.find('//') - 40):text.find('//') + 60]}..."
              for text in parser.scripts if "https://" in text or "http://" in text]
    return loads


# ------------------------------------------------------------------------------------------- render
def test_render_embeds_figures_and_builds_a_self_contained_index(project, tmp_path):
    record = {"notebook": "01_tiny", "started": "2024-05-01T10:00:00+00:00", "wall_seconds": 125.0,
              "git_commit": "abc1234", "python": "3.11.7", "torch": "2.3.0", "device": "cpu",
              "cpu": "Test CPU 9000", "cpu_count": 2, "gpu": None, "platform": "Linux"}
    out = _write_executed(project, record)

    notebooks.render("tiny")

    page = (out / "01_tiny.html").read_text()
    assert page.count('src="data:image/png;base64,') == 1  # the figure is inside the page, not linked
    index = (out / "index.html").read_text()
    assert "<strong>bold</strong>" in index and "<code>code</code>" in index and "**" not in index
    assert "ends the introduction." in index  # the whole introduction, not its first paragraph
    assert index.count('src="data:image/jpeg;base64,') == 1  # the thumbnail, embedded
    assert "<figcaption>tiny curve</figcaption>" in index
    for expected in ("abc1234", "3.11.7", "2.3.0", "Test CPU 9000", "2.1 min"):
        assert expected in index
    # Copied anywhere alone, every link of the index still resolves inside the copy.
    copy = shutil.copytree(out, tmp_path / "elsewhere" / "copy")
    local = [t for t in _links(index) if not t.startswith(("data:", "http://", "https://", "#"))]
    assert local and all((copy / t).is_file() for t in local), local


def test_pages_load_nothing_from_the_network_and_ship_mathjax(project, tmp_path):
    """Item 1 of issue 26: a reader offline sees typeset formulas. nbconvert's own template loads
    require.js, MathJax 2 and mermaid from a CDN; the report's pages load MathJax from mathjax/."""
    out = _write_executed(project, {"git_commit": "abc1234", "python": "3.11.7", "started": "2024-05-01T10:00:00"})
    notebook = nbformat.read(out / "01_tiny.ipynb", as_version=4)
    notebook.cells.append(new_markdown_cell("A-Softmax: $\\psi(\\theta) = (-1)^k \\cos(m\\theta) - 2k$, "
                                            "see [the paper](https://arxiv.org/abs/1704.08063)."))
    nbformat.write(notebook, out / "01_tiny.ipynb")

    notebooks.render("tiny")

    for name in ("01_tiny.html", "index.html", "references.html"):
        page = (out / name).read_text()
        assert _network_loads(page) == [], name
        local = [t for t in _links(page) if not t.startswith(("data:", "http://", "https://", "#", "mailto:"))]
        assert all((out / t.split("#")[0]).exists() for t in local), (name, local)
        assert name == "references.html" or 'href="references.html"' in page  # every page links the references
        assert name == "index.html" or 'href="index.html"' in page
    page = (out / "01_tiny.html").read_text()
    assert 'src="mathjax/tex-svg.js"' in page and "require.js" not in page and "mermaid" not in page
    assert "table { display: block; max-width: 100%; overflow-x: auto; }" in page  # wide tables scroll
    assert 'href="https://arxiv.org/abs/1704.08063"' in page  # a plain hyperlink to a cited source stays
    script = (out / "mathjax" / "tex-svg.js").read_bytes()
    assert len(script) > 500_000 and b"MathJax" in script  # the real single-file build, fonts included
    assert "Apache License" in (out / "mathjax" / "LICENSE").read_text()
    # The stock nbconvert page, for contrast, does load from the network (what this test guards against).
    from nbconvert import HTMLExporter
    stock, _ = HTMLExporter(template_name="lab").from_notebook_node(notebook)
    assert _network_loads(stock)


@pytest.mark.parametrize("page", sorted((paths.ROOT / "reports" / "real").glob("*.html")), ids=lambda p: p.name)
def test_the_committed_real_report_loads_nothing_from_the_network(page):
    """The publication itself, not only a freshly rendered test page: no script, style or image from the
    network, and every page but the references page links to it and to the index."""
    text = page.read_text(encoding="utf-8")
    assert _network_loads(text) == []
    if page.name != "references.html":
        assert 'href="references.html"' in text
    if page.name not in ("index.html", "references.html"):
        assert 'href="index.html"' in text and 'src="mathjax/tex-svg.js"' in text
    assert (page.parent / "mathjax" / "tex-svg.js").is_file()


def _two_pages(project, commits=("aaa1111", "bbb2222")) -> Path:
    """Two executed notebooks, 01 executed first at commits[0], 02 later at commits[1]."""
    out = _write_executed(project, {"git_commit": commits[0], "python": "3.11.7", "started": "2024-05-01T10:00:00"})
    (project / "notebooks" / "02_other.py").write_text("# %%\n2\n")
    nbformat.write(_executed_notebook("02_other.png"), out / "02_other.ipynb")
    (out / "02_other.run.json").write_text(json.dumps(
        {"git_commit": commits[1], "python": "3.11.7", "started": "2024-05-02T10:00:00"}))
    return out


def test_render_refuses_pages_from_different_commits_before_writing_anything(project):
    out = _two_pages(project)
    with pytest.raises(SystemExit) as stop:
        notebooks.render("tiny")
    message = str(stop.value)
    assert "01_tiny: aaa1111" in message and "(older)" in message and "02_other: bbb2222" in message
    assert "--only 01" in message and "--allow-mixed-commits" in message  # says what to do
    assert not list(out.glob("*.html"))  # no index (nor page) over mixed commits


def test_render_with_a_reason_names_the_older_pages_on_the_index(project):
    out = _two_pages(project)
    notebooks.main(["render", "--profile", "tiny", "--allow-mixed-commits", "02 fixed a typo only"])
    index = (out / "index.html").read_text()
    assert "Not one commit" in index and "01_tiny (commit aaa1111)" in index and "02 fixed a typo only" in index
    assert "02_other (commit" not in index


def test_pages_from_one_commit_render_without_a_warning(project):
    out = _two_pages(project, commits=("ccc3333", "ccc3333"))
    notebooks.render("tiny")
    assert "Not one commit" not in (out / "index.html").read_text()


def test_run_record_names_the_pretrained_encoders_versions(monkeypatch):
    from importlib import metadata

    real = metadata.version
    fake = {"dlib-bin": "19.24.6", "face-recognition-models": "0.3.0"}
    monkeypatch.setattr(metadata, "version", lambda name: fake[name] if name in fake else real(name))
    environment = notebooks.run_environment("cpu")
    assert environment["dlib"] == "19.24.6" and environment["face_recognition_models"] == "0.3.0"
    labels = dict(notebooks.METADATA_FIELDS)
    assert labels["dlib"] == "dlib" and "face_recognition_models" in labels  # shown on the index


def test_project_code_named_on_a_page_links_to_its_file():
    page = ("<p><code>lib.losses.docstring_markdown</code>, <code>scripts/sweep_lfw_settings.py</code>, "
            "<code>src/loss.py</code>, <code>model.py</code>, <a href='x'><code>lib.frvt</code></a></p>")
    linked = notebooks.link_project_code(page)
    assert '<a href="../../lib/losses.py"><code>lib.losses.docstring_markdown</code></a>' in linked
    assert '<a href="../../scripts/sweep_lfw_settings.py"><code>scripts/sweep_lfw_settings.py</code></a>' in linked
    assert "<code>src/loss.py</code>, <code>model.py</code>" in linked  # another project's files: plain
    assert "<a href='x'><code>lib.frvt</code></a>" in linked  # already a link: untouched


def test_project_code_links_to_its_file_on_the_repository_host_at_the_pages_commit():
    """With the repository's URL set (lib.paths.REPOSITORY_URL), code a page names links to its file on the
    host at the commit the page was executed from, a folder to its tree; a file git does not track (a
    result, the image cache) is the reader's own run's, not a source, and stays plain text."""
    tracked = {"lib/losses.py", "scripts/arcface_regime_trial.py", "data/lfw_gender/male_names.txt"}
    page = ("<p><code>lib.losses.CosFaceHead</code> <code>scripts/arcface_regime_trial.py</code> "
            "<code>data/lfw_gender/</code> <code>data/cache/</code> <code>data/results/real/02_devtest_embeddings.npz</code> "
            "<code>lib.not_a_module</code></p>")
    linked = notebooks.link_project_code(page, repository="https://github.com/owner/project/", commit="abc123+dirty",
                                         tracked=tracked)
    assert ('<a href="https://github.com/owner/project/blob/abc123/lib/losses.py"><code>lib.losses.CosFaceHead</code>'
            '</a>') in linked
    assert 'href="https://github.com/owner/project/blob/abc123/scripts/arcface_regime_trial.py"' in linked
    assert 'href="https://github.com/owner/project/tree/abc123/data/lfw_gender"' in linked
    for plain in ("data/cache/", "data/results/real/02_devtest_embeddings.npz", "lib.not_a_module"):
        assert f"<code>{plain}</code>" in linked and f"><code>{plain}</code></a>" not in linked
    relative = notebooks.link_project_code(page, repository="", tracked=tracked)  # no URL set: links within a clone
    assert '<a href="../../lib/losses.py">' in relative and "../../data/cache" not in relative


def test_rendered_pages_link_code_at_the_commit_of_their_run(project, monkeypatch):
    out = _write_executed(project)
    notebook = nbformat.read(out / "01_tiny.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_markdown_cell("Scored by `lib.frvt`."))
    nbformat.write(notebook, out / "01_tiny.ipynb")
    record = {"notebook": "01_tiny", "profile": "tiny", "started": "2026-01-01T00:00:00+00:00",
              "wall_seconds": 1.0, "git_commit": "0123abcd"}
    (out / "01_tiny.run.json").write_text(json.dumps(record))
    monkeypatch.setattr(notebooks.paths, "REPOSITORY_URL", "https://example.org/team/project")
    monkeypatch.setattr(notebooks, "tracked_files", lambda root=None: {"lib/frvt.py"})
    notebooks.render("tiny")
    assert ('<a href="https://example.org/team/project/blob/0123abcd/lib/frvt.py"><code>lib.frvt</code></a>'
            in (out / "01_tiny.html").read_text())


def test_index_falls_back_to_papermill_timing_and_exported_figures(project):
    out = _write_executed(project)  # no run.json: executed before run records existed
    notebook = nbformat.read(out / "01_tiny.ipynb", as_version=4)
    notebook.cells[1].outputs = []  # and no figure outputs in the notebook
    nbformat.write(notebook, out / "01_tiny.ipynb")
    (project / "figures" / "tiny").mkdir()
    (project / "figures" / "tiny" / "01_tiny_exported.png").write_bytes(_png(colour=(0, 0, 250)))

    notebooks.render("tiny")

    index = (out / "index.html").read_text()
    assert "wall time 12 s" in index
    assert index.count('src="data:image/jpeg;base64,') == 1
    assert "../" not in index


def test_thumbnail_is_small_and_keeps_the_picture():
    uri = notebooks._thumbnail_uri(_png(width=1200, height=600, colour=(10, 200, 10)))
    data = base64.b64decode(uri.split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (notebooks.THUMBNAIL_WIDTH, notebooks.THUMBNAIL_WIDTH // 2)
        red, green, blue = image.convert("RGB").getpixel((50, 50))
    assert green > 180 and red < 40 and blue < 40


def test_render_without_executed_notebooks_says_what_to_run(project):
    (project / "notebooks" / "01_tiny.py").write_text("# %%\n1\n")
    with pytest.raises(SystemExit, match="make run PROFILE=tiny"):
        notebooks.render("tiny")


@pytest.mark.parametrize("command", ["execute", "render", "prepare"])
def test_unknown_profile_fails_before_creating_a_folder(project, command):
    (project / "notebooks" / "01_tiny.py").write_text("# %%\n1\n")
    calls = {"execute": lambda: notebooks.execute("nope"), "render": lambda: notebooks.render("nope"),
             "prepare": lambda: notebooks.prepare("nope", project / "build" / "nope")}
    with pytest.raises(SystemExit, match="unknown profile 'nope'.*known: tiny"):
        calls[command]()
    assert not (project / "reports" / "nope").exists()
    assert not (project / "build" / "nope").exists()


# ------------------------------------------------------------------------------------- atomic writes
def test_atomic_write_text_never_shows_a_torn_file_to_a_reader(tmp_path):
    target = tmp_path / "page.html"
    texts = ["a" * 3_000_000, "b" * 2_000_000]
    notebooks._atomic_write_text(target, texts[0])
    errors, torn, stop = [], [], threading.Event()

    def write(text):
        try:
            for _ in range(25):
                notebooks._atomic_write_text(target, text)
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    def read():
        while not stop.is_set():
            content = target.read_text()
            if content not in texts:
                torn.append(len(content))

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(text,)) for text in texts]
    reader.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    stop.set()
    reader.join()
    assert not errors and not torn
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]  # no temporary file left behind


def test_save_figure_writes_atomically_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "FIGURES", tmp_path)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    target = plots.save_figure(fig, "01_line", "tiny")
    assert target == tmp_path / "tiny" / "01_line.png" and target.read_bytes().startswith(b"\x89PNG")
    good = target.read_bytes()

    def broken_savefig(*args, **kwargs):
        Path(args[0]).write_bytes(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plots.save_figure(fig, "01_line", "tiny")
    assert target.read_bytes() == good
    assert [p.name for p in (tmp_path / "tiny").iterdir()] == ["01_line.png"]
    plt.close(fig)


# --------------------------------------------------------------------- executing with a real kernel
@pytest.mark.slow
def test_execute_shows_every_figure_once_and_records_the_run(project):
    """Runs a two-figure notebook through papermill with the runner's kernel environment."""
    import jupytext

    source = project / "notebooks" / "01_tiny.py"
    source.write_text(
        '# %% [markdown]\n# # 01 · Tiny\n#\n# Two figures.\n\n# %% tags=["parameters"]\nprofile = "tiny"\n\n'
        f"# %%\nimport matplotlib.pyplot as plt\nfrom pathlib import Path\nfrom lib import paths, plots\n"
        f"paths.FIGURES = Path({str(paths.FIGURES)!r})  # the kernel is another process: no monkeypatch there\n"
        "fig, ax = plt.subplots()\nax.plot([0, 1])\nplots.save_figure(fig, '01_saved', profile)\nplt.show()\n\n"
        "# %%\nfig, ax = plt.subplots()\nax.plot([1, 0])\nplt.show()  # shown, not exported\n")
    paired = jupytext.read(source)
    paired.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(paired, source.with_suffix(".ipynb"))

    notebooks.execute("tiny")

    out = project / "reports" / "tiny"
    executed = nbformat.read(out / "01_tiny.ipynb", as_version=4)
    images = [o for c in executed.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the exported figure once (not again by plt.show), and the inline one
    assert [o.get("metadata", {}).get("figure") for o in images] == ["01_saved.png", None]
    exported = (project / "figures" / "tiny" / "01_saved.png").read_bytes()
    assert base64.b64decode(images[0]["data"]["image/png"]) == exported
    record = json.loads((out / "01_tiny.run.json").read_text())
    assert record["wall_seconds"] > 0 and record["python"] and record["device"] in ("cpu", "cuda", "mps")
    assert not list(out.glob(".*"))  # the running copy was renamed, nothing hidden is left


def test_stale_figures_of_a_notebook_are_removed_before_it_runs_again(project):
    folder = project / "figures" / "tiny"
    folder.mkdir()
    for name in ("02_old_roc.png", "02_det.png", "03_kept.png", "12_other.png"):
        (folder / name).write_bytes(_png())
    removed = notebooks.remove_figures("tiny", "02_sphereface")
    assert sorted(path.name for path in removed) == ["02_det.png", "02_old_roc.png"]
    assert sorted(path.name for path in folder.iterdir()) == ["03_kept.png", "12_other.png"]
    assert notebooks.remove_figures("nothing-here", "02_sphereface") == []


def test_progress_bars_are_stripped_from_the_executed_notebook_but_not_warnings():
    from nbformat.v4 import new_output as out

    bar = "\rcosface-seed2 epoch 2/4, ETA 2 min:  39%|▍ | 98/250 [02:19<03:39,  1.44s/it, loss=11.3]"
    decoding = "decoding lfw → 96x96: 100%|████| 13233/13233 [00:01<00:00, 9000.00img/s]\n"
    cell = new_code_cell("train()", outputs=[
        out("stream", name="stderr", text=bar), out("stream", name="stderr", text="\n"),
        out("stream", name="stderr", text=decoding + bar),
        out("stream", name="stderr", text="UserWarning: 2 folds, not 10\n"),
        out("stream", name="stdout", text="race cosface seed 2: val accuracy 0.417\n")])
    notebook = new_notebook(cells=[cell])
    assert notebooks.strip_progress(notebook) == 3
    kept = [(o["name"], o["text"]) for o in notebook.cells[0]["outputs"]]
    assert kept == [("stderr", "UserWarning: 2 folds, not 10\n"), ("stdout", "race cosface seed 2: val accuracy 0.417\n")]


# --------------------------------------------------------------------------------------------------
# The README's timings, generated from the run records
# --------------------------------------------------------------------------------------------------
def _record(stem: str, seconds: float, **extra) -> dict:
    return {"notebook": stem, "profile": "tiny", "started": "2026-12-07T18:00:00+00:00", "wall_seconds": seconds,
            "load_average_at_start": 0.3, "load_average_at_end": 1.9, "checkpoints_at_start": 0,
            "git_commit": "0123456789abcdef", "python": "3.11.7", "cpu": "Some CPU", "cpu_count": 2,
            "torch": "2.4.0", "device": "cpu", "gpu": None, "amp_auto": "bf16", **extra}


def test_the_readme_timings_are_generated_from_the_run_records(project):
    for stem in ("01_tiny", "02_other"):
        (project / "notebooks" / f"{stem}.py").write_text("# %%\n1 + 1\n")
    out = project / "reports" / "tiny"
    out.mkdir()
    readme = project / "README.md"
    begin, end = notebooks.timings_markers("tiny")
    readme.write_text(f"# Title\n\nBefore.\n{begin}\nold, typed by hand: 12 min\n{end}\nAfter.\n")
    (out / "01_tiny.run.json").write_text(json.dumps(_record("01_tiny", 41.2)))
    with pytest.raises(FileNotFoundError, match="02_other"):
        notebooks.update_readme_timings("tiny", readme)
    (out / "02_other.run.json").write_text(json.dumps(_record("02_other", 312.0)))
    notebooks.update_readme_timings("tiny", readme)
    notebooks.update_readme_timings("tiny", readme)  # again: the block is replaced, not repeated
    text = readme.read_text()
    assert text.startswith("# Title\n\nBefore.\n") and text.endswith(f"{end}\nAfter.\n") and "typed by hand" not in text
    assert text.count(begin) == 1
    parsed = notebooks.parse_timings(text, "tiny")
    assert parsed["notebooks"] == {"01": "41 s", "02": "5.2 min"} and parsed["total"] == "5.9 min"
    for fact in ("2026-12-07", "Some CPU", "2 cores", "`bf16`", "0123456789ab", "0.3 to 1.9", "a first run"):
        assert fact in parsed["block"], fact
    (out / "02_other.run.json").write_text(json.dumps(_record("02_other", 20.0, checkpoints_at_start=10)))
    assert "10 checkpoints were present" in notebooks.update_readme_timings("tiny", readme)
    readme.write_text("# No markers\n")
    with pytest.raises(ValueError, match="needs exactly one pair"):
        notebooks.update_readme_timings("tiny", readme)


def test_timings_from_older_records_say_what_they_lack_and_name_each_pages_commit(project):
    """The real profile's records: pages run on different days at different commits, records from before
    the load average, checkpoint count and amp fields existed, one without a wall time. Nothing missing
    may read as a fact ('a first run'); the training per run comes from the results the pages read."""
    stems = ("01_tiny", "02_other", "03_third")
    for stem in stems:
        (project / "notebooks" / f"{stem}.py").write_text("# %%\n1 + 1\n")
    out = project / "reports" / "tiny"
    out.mkdir()
    old = {"python": "3.11.7", "cpu": "AMD EPYC", "cpu_count": 2, "torch": "2.4.0", "device": "cpu", "gpu": None}
    records = [{"notebook": "01_tiny", "started": "2026-12-01T17:28:30+00:00", "wall_seconds": 11.8,
                "git_commit": "eca5cea705f2ba82", **old},
               {"notebook": "02_other", "started": "2026-12-01T15:48:25+00:00", "wall_seconds": 265.3,
                "git_commit": "39e6ec58b0fd99c2", **old},
               {"notebook": "03_third", "started": "2026-12-02T10:00:00+00:00", "git_commit": "acf07d14e4fc960f", **old}]
    for record in records:
        (out / f"{record['notebook']}.run.json").write_text(json.dumps(record))
    results = notebooks.paths.results_dir("tiny")
    pd.DataFrame({"head": ["a", "a", "b"], "seed": [0, 1, 0], "train_minutes": [6.9, 11.8, 7.0]}).to_csv(
        results / "02_summary.csv", index=False)
    pd.DataFrame({"target": "race", "head": ["a", "a", "b"], "seed": 0, "epoch": [1, 2, 1],
                  "seconds": [120.0, 120.0, 300.0]}).to_csv(results / "03_history.csv", index=False)
    readme = project / "README.md"
    begin, end = notebooks.timings_markers("tiny")
    readme.write_text(f"{begin}\n{end}\n")
    block = notebooks.update_readme_timings("tiny", readme)
    parsed = notebooks.parse_timings(readme.read_text(), "tiny")
    assert parsed["notebooks"] == {"01": "12 s", "02": "4.4 min", "03": "not recorded"}
    assert parsed["total"] == "4.6 min" and "for the 2 notebooks with a recorded time" in block
    for fact in ("01 12 s [2026-12-01, eca5cea705f2]", "03 not recorded [2026-12-02, acf07d14e4fc]",
                 "checkpoints present at the start: not recorded", "load average not recorded",
                 "resolved to `not recorded`", "02: 3 runs of 6.9–11.8 min (25.7 min in all)",
                 "03: 2 runs of 4.0–5.0 min (9.0 min in all)"):
        assert fact in block, fact
    assert "a first run" not in block


def test_training_ranges_of_sub_minute_runs_read_in_seconds():
    """A range of runs shorter than 90 s reads in seconds ("0.1–0.1 min" said nothing); hours past 90 min."""
    assert notebooks._duration_range(4.2, 41.0) == "4–41 s"
    assert notebooks._duration_range(30.0, 600.0) == "0.5–10.0 min"
    assert notebooks._duration_range(3600.0, 9000.0) == "1.0–2.5 h"


@pytest.mark.parametrize("profile", ["default", "real"])
def test_the_readme_timing_block_of_the_default_profile_parses(profile):
    """The repository's README carries the generated blocks (rewrite them with `python -m lib.notebooks timings`)."""
    parsed = notebooks.parse_timings((paths.ROOT / "README.md").read_text(encoding="utf-8"), profile)
    assert list(parsed["notebooks"]) == [source.stem[:2] for source in notebooks.notebook_sources()]
    assert "cores" in parsed["block"] and "Generated from the run records" in parsed["block"]


def test_the_readme_real_timings_agree_with_the_committed_pages():
    """Item 7 of issue 26: the README's real-profile times are those of the committed pages' run records
    (after re-executing the real report, `python -m lib.notebooks timings --profile real` rewrites them)."""
    parsed = notebooks.parse_timings((paths.ROOT / "README.md").read_text(encoding="utf-8"), "real")
    records = [json.loads(path.read_text()) for path in sorted((paths.ROOT / "reports" / "real").glob("*.run.json"))]
    assert records, "no run records in reports/real/"
    assert parsed["notebooks"] == {
        r["notebook"][:2]: notebooks._duration(float(r["wall_seconds"])) if r.get("wall_seconds") is not None
        else notebooks.NOT_RECORDED for r in records}


def test_checkpoints_at_start_count_only_the_notebooks_own(tmp_path, monkeypatch):
    """A first `make all` must read as a first run: notebook 03 starts after 02 wrote its checkpoints, and
    those are not 03's (the README block said '31 checkpoints were present' of a fresh clone's run)."""
    from lib import notebooks

    monkeypatch.setattr(notebooks.paths, "checkpoints_dir", lambda profile: tmp_path / profile)
    own = tmp_path / "default" / "02_sphereface"
    own.mkdir(parents=True)
    for name in ("a.pt", "b.pt"):
        (own / name).write_bytes(b"x")
    assert notebooks._checkpoint_count("default", "02_sphereface") == 2
    assert notebooks._checkpoint_count("default", "03_cosrelu_vs_softmax") == 0
    assert notebooks._checkpoint_count("default", "04_fairness") == 0
    (tmp_path / "default" / "03_cosrelu").mkdir()
    (tmp_path / "default" / "03_cosrelu" / "c.pt").write_bytes(b"x")
    assert notebooks._checkpoint_count("default", "03_cosrelu_vs_softmax") == 1


def test_a_field_missing_from_an_old_run_record_reads_not_recorded():
    """The committed real pages' records predate dlib's version field; the index said 'dlib: none' for runs
    that used dlib."""
    from lib import notebooks

    entry = notebooks.IndexEntry("02_sphereface", "", "", [], {"python": "3.11.7", "started": "2026-12-01", "dlib": None})
    old = notebooks.IndexEntry("03_cosrelu_vs_softmax", "", "", [], {"python": "3.11.7", "started": "2026-12-02"})
    rows = notebooks._metadata_rows([entry, old])
    assert "<th>dlib</th><td>not recorded" in rows
    assert "<th>device</th><td>not recorded" in rows
