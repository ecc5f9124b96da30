"""Run, check and render the notebook series.

The reviewed source of each notebook is a jupytext percent script ``notebooks/NN_name.py`` paired with
``notebooks/NN_name.ipynb``. A *profile* is a papermill parameter file ``params/<profile>.yaml`` with a
``common`` section (given to every notebook) and one optional section per notebook stem.

Command line (what the Makefile calls)::

    python -m lib.notebooks run --profile default      # execute all notebooks, then render
    python -m lib.notebooks render --profile default   # re-render HTML + index only
    python -m lib.notebooks prepare --profile smoke    # inject parameters without executing (for nbval)
    python -m lib.notebooks check-sync                 # .py and .ipynb say the same thing
    python -m lib.notebooks sync                       # rewrite each .ipynb from its .py

Executed copies go to ``reports/<profile>/`` and never back into the paired notebooks. Every output file
is written to a temporary name first and renamed, so a crash leaves the previous report intact.
"""

from __future__ import annotations

import argparse
import html
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from lib import paths

# The notebook runner asks progress bars to stay quiet (see lib.progress).
PROGRESS_ENV = {"FACE_PROGRESS": "plain", "MPLBACKEND": "Agg", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


def notebook_sources() -> list[Path]:
    """The numbered jupytext sources, in order."""
    return sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def load_profile(profile: str) -> dict:
    """The parameter file of ``profile`` as a dict (``common`` plus per-notebook sections)."""
    path = paths.PARAMS / f"{profile}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in paths.PARAMS.glob("*.yaml"))
        raise SystemExit(f"unknown profile {profile!r}: no {path.relative_to(paths.ROOT)} (known: {', '.join(known)})")
    with open(path) as handle:
        config = yaml.safe_load(handle) or {}
    return config


def declared_parameters(stem: str) -> set[str]:
    """Names assigned in the ``parameters`` cell of notebook ``stem``."""
    import papermill

    return set(papermill.inspect_notebook(str(paths.NOTEBOOKS / f"{stem}.ipynb")))


def notebook_parameters(profile: str, stem: str) -> dict:
    """Parameters papermill injects into notebook ``stem`` under ``profile``.

    ``common`` values a notebook does not declare are left out; a per-notebook value it does not
    declare is a typo in the profile and an error.
    """
    config = load_profile(profile)
    declared = declared_parameters(stem)
    section = config.get(stem) or {}
    unknown = sorted(set(section) - declared)
    if unknown:
        raise SystemExit(f"params/{profile}.yaml, section {stem}: {unknown} are not parameters of the notebook "
                         f"(it declares {sorted(declared)})")
    parameters = {"profile": profile}
    parameters.update({k: v for k, v in (config.get("common") or {}).items() if k in declared})
    parameters.update(section)
    return parameters


def select(names: list[str] | None) -> list[Path]:
    """Sources whose stem starts with one of ``names`` (e.g. ``01`` or ``02_sphereface``); all when empty."""
    sources = notebook_sources()
    if not names:
        return sources
    chosen = [s for s in sources if any(s.stem.startswith(n) for n in names)]
    if not chosen:
        raise SystemExit(f"no notebook matches {names}; have {[s.stem for s in sources]}")
    return chosen


def _cells(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def check_sync() -> list[str]:
    """Names of notebooks whose ``.py`` and ``.ipynb`` differ in content (cell types and sources).

    Outputs, execution counts and metadata are ignored: only what a reader or reviewer sees counts.
    """
    import jupytext

    problems = []
    for source in notebook_sources():
        paired = source.with_suffix(".ipynb")
        if not paired.exists():
            problems.append(f"{paired.name}: missing (run `make sync`)")
            continue
        if _cells(jupytext.read(source)) != _cells(jupytext.read(paired)):
            problems.append(f"{source.name} and {paired.name} differ (edit the .py, then run `make sync`)")
    return problems


def sync() -> None:
    """Rewrite each paired ``.ipynb`` from its ``.py`` (the reviewed source), dropping outputs."""
    import jupytext

    for source in notebook_sources():
        notebook = jupytext.read(source)
        for number, cell in enumerate(notebook.cells):
            cell.id = f"cell-{number:03d}"  # stable ids: re-syncing an unchanged source changes nothing
        target = source.with_suffix(".ipynb")
        notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
        _atomic_write_text(target, jupytext.writes(notebook, fmt="ipynb"))
        print(f"synced {target.relative_to(paths.ROOT)}")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def prepare(profile: str, out_dir: Path, names: list[str] | None = None) -> list[Path]:
    """Inject ``profile``'s parameters into copies of the notebooks without executing them (for nbval)."""
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in select(names):
        target = out_dir / f"{source.stem}.ipynb"
        papermill.execute_notebook(
            str(source.with_suffix(".ipynb")),
            str(target),
            parameters=notebook_parameters(profile, source.stem),
            prepare_only=True,
            progress_bar=False,
        )
        written.append(target)
    return written


def execute(profile: str, names: list[str] | None = None) -> list[Path]:
    """Execute the notebooks with papermill under ``profile`` into ``reports/<profile>/``."""
    import papermill

    os.environ.update(PROGRESS_ENV)
    storage = (load_profile(profile).get("common") or {}).get("storage_dir")
    if storage and not os.environ.get(paths.STORAGE_ENV):  # the environment variable wins over the profile
        os.environ[paths.STORAGE_ENV] = str(storage)  # read by lib.paths in each notebook's kernel
    out_dir = paths.reports_dir(profile)
    written = []
    for source in select(names):
        target = out_dir / f"{source.stem}.ipynb"
        partial = out_dir / f".{source.stem}.running.ipynb"
        start = time.perf_counter()
        print(f"[{profile}] executing {source.stem} ...", flush=True)
        try:
            papermill.execute_notebook(
                str(source.with_suffix(".ipynb")),
                str(partial),
                parameters=notebook_parameters(profile, source.stem),
                cwd=str(paths.NOTEBOOKS),
                kernel_name="python3",
                progress_bar=False,
            )
        except Exception:
            failed = out_dir / f"{source.stem}.failed.ipynb"
            if partial.exists():
                os.replace(partial, failed)
                print(f"[{profile}] {source.stem} FAILED; the notebook as far as it ran: {failed}", file=sys.stderr)
            raise
        os.replace(partial, target)
        (out_dir / f"{source.stem}.failed.ipynb").unlink(missing_ok=True)
        print(f"[{profile}] {source.stem} done in {time.perf_counter() - start:.0f} s", flush=True)
        written.append(target)
    return written


def render(profile: str) -> Path:
    """Render every executed notebook of ``profile`` to HTML and write the index page."""
    import nbformat
    from nbconvert import HTMLExporter

    out_dir = paths.reports_dir(profile)
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    entries = []
    for source in notebook_sources():
        executed = out_dir / f"{source.stem}.ipynb"
        if not executed.exists():
            continue
        notebook = nbformat.read(executed, as_version=4)
        body, _ = exporter.from_notebook_node(notebook)
        _atomic_write_text(out_dir / f"{source.stem}.html", body)
        entries.append((source.stem, _title(notebook, source.stem), _summary(notebook)))
        print(f"rendered {(out_dir / f'{source.stem}.html').relative_to(paths.ROOT)}")
    index = out_dir / "index.html"
    _atomic_write_text(index, _index_page(profile, entries))
    print(f"wrote {index.relative_to(paths.ROOT)}")
    return index


def _title(notebook, fallback: str) -> str:
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def _summary(notebook) -> str:
    """The first paragraph after the title, as a one-line description for the index."""
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        paragraphs = [p.strip() for p in cell.source.split("\n\n") if p.strip() and not p.startswith("#")]
        if paragraphs:
            return " ".join(paragraphs[0].split())
    return ""


def _index_page(profile: str, entries: list[tuple[str, str, str]]) -> str:
    figures = paths.FIGURES / profile
    pngs = sorted(figures.glob("*.png")) if figures.is_dir() else []
    rows = "\n".join(
        f'<li><a href="{stem}.html">{html.escape(title)}</a> '
        f'<small>(<a href="{stem}.ipynb">executed notebook</a>)</small>'
        f"<p>{html.escape(summary)}</p></li>"
        for stem, title, summary in entries
    )
    figure_links = "\n".join(
        f'<li><a href="../../figures/{profile}/{p.name}">{html.escape(p.name)}</a></li>' for p in pngs
    )
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Angular-margin losses and fairness: report ({html.escape(profile)})</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; }}
li {{ margin-bottom: 1rem; }} li p {{ margin: .2rem 0 0 0; color: #444; }}
code {{ background: #f3f3f3; padding: 0 .2rem; }}
</style></head><body>
<h1>Angular-margin losses and their fairness for face recognition</h1>
<p>Report for the <code>{html.escape(profile)}</code> profile (<code>params/{html.escape(profile)}.yaml</code>),
rendered {stamp}. Re-run with <code>make all PROFILE={html.escape(profile)}</code>.</p>
<h2>Notebooks</h2>
<ol>
{rows}
</ol>
<h2>Figures</h2>
<p>Every figure is also exported as PNG to <code>figures/{html.escape(profile)}/</code>.</p>
<ul>
{figure_links}
</ul>
</body></html>
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.notebooks", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "render", "prepare"):
        command = sub.add_parser(name)
        command.add_argument("--profile", default="default")
        if name != "render":
            command.add_argument("--only", nargs="*", help="notebook prefixes, e.g. 01 03")
        if name == "prepare":
            command.add_argument("--out", type=Path, default=None, help="default: build/nbval/<profile>")
    sub.add_parser("check-sync")
    sub.add_parser("sync")
    args = parser.parse_args(argv)

    if args.command == "run":
        execute(args.profile, args.only)
        render(args.profile)
    elif args.command == "render":
        render(args.profile)
    elif args.command == "prepare":
        out = args.out or paths.BUILD / "nbval" / args.profile
        for path in prepare(args.profile, out, args.only):
            print(f"prepared {path}")
    elif args.command == "check-sync":
        problems = check_sync()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            return 1
        print(f"check-sync: {len(notebook_sources())} notebook pairs agree")
    elif args.command == "sync":
        sync()
    return 0


if __name__ == "__main__":
    sys.exit(main())
