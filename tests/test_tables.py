"""lib.tables: atomic writes with unique temporary names; two writers at once never tear a file."""

from __future__ import annotations

import os
import stat
import threading

import numpy as np
import pandas as pd
import pytest

from lib.tables import atomic_write, is_temporary, result_files, temporary_name, write_csv, write_text


def frame_of(writer: int, rows: int = 60_000) -> pd.DataFrame:
    """A frame whose every row names its writer, so a read shows whether it mixes two writes."""
    values = np.arange(rows)
    return pd.DataFrame({"writer": writer, "row": values, "value": values * (writer + 1) % 9973})


def test_two_writers_never_tear_the_file(tmp_path):
    """Two threads (one process id: where a .<name>.<pid>.tmp name collides) write different frames to
    one path over and over; a reader reads it as fast as it can. Every read must be one whole frame."""
    path = tmp_path / "02_lfw_pair_scores.csv"
    frames = {writer: frame_of(writer) for writer in (1, 2)}
    write_csv(frames[1], path)
    errors, reads, done = [], [], threading.Event()

    def writer(number: int) -> None:
        try:
            for _ in range(8):
                write_csv(frames[number], path)
        except Exception as error:  # reported below; a thread's exception would otherwise vanish
            errors.append(error)

    def reader() -> None:
        while not done.is_set():
            try:
                table = pd.read_csv(path)
            except Exception as error:
                errors.append(error)
                continue
            owners = table["writer"].unique().tolist()
            reads.append((len(table), owners))

    threads = [threading.Thread(target=writer, args=(n,)) for n in (1, 2)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()

    assert errors == []
    assert reads, "the reader never got a turn"
    assert all(rows == 60_000 and len(owners) == 1 for rows, owners in reads), reads[:5]
    assert pd.read_csv(path).equals(frames[1]) or pd.read_csv(path).equals(frames[2])
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temporary file left


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "summary.csv"
    write_csv(frame_of(1, rows=3), path)
    before = path.read_bytes()

    def half_then_crash(temp):
        temp.write_text("writer,row\n1,")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_then_crash)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]


def test_temporary_names_are_unique_hidden_and_keep_the_suffix(tmp_path):
    path = tmp_path / "scores.csv.gz"
    names = {temporary_name(path).name for _ in range(200)}
    assert len(names) == 200
    assert all(name.startswith(".scores.csv.gz.") and name.endswith(".tmp.gz") for name in names)
    # the kept suffix lets pandas infer gzip from the name, as it would for the target
    write_csv(frame_of(1, rows=5), path)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert pd.read_csv(path).equals(frame_of(1, rows=5))


def test_written_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0)
    os.umask(mask)
    path = write_text(tmp_path / "notes.txt", "hello\n")
    assert path.read_text() == "hello\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_result_files_skip_temporaries_and_remove_those_of_dead_writers(tmp_path):
    import subprocess
    import sys

    write_csv(pd.DataFrame({"a": [1]}), tmp_path / "x.csv")
    (tmp_path / "notes.txt").write_text("not a csv")
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()  # a writer that was killed: its process is gone
    stale = tmp_path / f".y.csv.{process.pid}-1-0123abcd.tmp.csv"
    stale.write_text("a\n1")
    live = temporary_name(tmp_path / "z.csv")  # this process's: a write in progress
    live.write_text("a\n")
    assert is_temporary(stale) and is_temporary(live) and not is_temporary(tmp_path / "x.csv")
    (tmp_path / "._x.csv").write_bytes(b"\x00\x05\x16\x07")  # macOS metadata beside a copied file
    assert result_files(tmp_path) == [tmp_path / "x.csv"]
    assert not stale.exists() and live.exists()
    assert result_files(tmp_path / "absent") == []


def test_a_write_removes_the_temporaries_a_killed_writer_left_for_its_target(tmp_path):
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    stale = tmp_path / f".x.csv.{process.pid}-1-0123abcd.tmp.csv"
    other = tmp_path / f".y.csv.{process.pid}-1-0123abcd.tmp.csv"  # another target's: left to its own writer
    stale.write_text("a\n1")
    other.write_text("a\n1")
    write_csv(pd.DataFrame({"a": [2]}), tmp_path / "x.csv")
    assert not stale.exists() and other.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == [other.name, "x.csv"]


# --------------------------------------------------------------------------------------------------
# Shown tables: one number format per quantity (issue 26, item 4)
# --------------------------------------------------------------------------------------------------
def shown_cells(html_text: str) -> list[str]:
    """The text of every header and data cell of a rendered table, in order."""
    import html
    import re

    return [html.unescape(re.sub(r"<.*?>", "", cell)).strip()
            for cell in re.findall(r"<t[hd][^>]*>.*?</t[hd]>", html_text, re.S)]


def test_style_applies_one_format_per_quantity():
    """The formats the issue found mixed across the pages, each in its one form: a share "0.864865" (01)
    at three decimals, a count "8271.0" beside a missing value (02) as an integer and "—", a learning rate
    "0.000500" (02) as written, p = "4.998e-04" (04) at two significant digits, a missing schedule label
    "nan" (02) as "—", minutes at one decimal."""
    from lib.tables import style

    frame = pd.DataFrame({"images": [8271.0, np.nan], "share": [0.864865, 0.135135], "p_value": [4.998e-04, 0.6],
                          "lr": [0.0005, 0.001], "train_minutes": [11.8122, 7.0], "seeds": [3, 5],
                          "verdict": ["higher", None]},
                         index=pd.Index(["cosine", np.nan], name="schedule"))
    cells = shown_cells(style(frame).to_html())
    assert cells[cells.index("schedule") + 8:] == [
        "cosine", "8,271", "0.865", "0.00050", "0.0005", "11.8", "3", "higher",
        "—", "—", "0.135", "0.60", "0.001", "7.0", "5", "—"]
    assert not any(cell.lower() in ("nan", "none") for cell in cells)


def test_style_reads_p_values_and_labels_in_multiindex_columns_and_index():
    """04's permutation-test table pivots (gap, p_value) by seed; its target FMRs are index labels."""
    from lib.tables import style

    columns = pd.MultiIndex.from_tuples([("gap", 0), ("gap", 1), ("p_value", 0), ("p_value", 1)], names=[None, "seed"])
    frame = pd.DataFrame([[0.612, 0.575, 4.998e-04, 0.0449]], columns=columns,
                         index=pd.Index([1e-3], name="target_fmr"))
    cells = shown_cells(style(frame).to_html())
    assert cells[-5:] == ["0.001", "0.612", "0.575", "0.00050", "0.045"]


def test_style_shows_small_error_rates_with_two_significant_digits():
    """04's prolific-identity table read "0.000" for every FMR at 1e-4 and 1e-5: error rates below 0.01 now
    show two significant digits, those from 0.01 up three decimals, in plain and in pivoted (fmr, group) columns."""
    from lib.tables import style

    columns = pd.MultiIndex.from_tuples([("fmr", "Male"), ("fnmr", "Male")], names=[None, "group"])
    frame = pd.DataFrame([[0.0013671, 0.0512], [1.23e-05, 0.267], [0.0, 0.5]], columns=columns)
    cells = shown_cells(style(frame).to_html())
    assert cells[-9:] == ["0", "0.0014", "0.051", "1", "1.2e-05", "0.267", "2", "0.000", "0.500"]
    plain = shown_cells(style(pd.DataFrame({"fmr_lower": [0.00095], "fnmr": [0.11363]})).to_html())
    assert plain[-2:] == ["0.00095", "0.114"]


def test_style_keeps_an_override_and_does_not_change_the_frame():
    from lib.tables import style

    frame = pd.DataFrame({"difference": [0.01234, -0.5, np.nan]})
    cells = shown_cells(style(frame, {"difference": "{:+.3f}"}).to_html())
    assert cells[-6:][1::2] == ["+0.012", "-0.500", "—"]  # (index, value) pairs
    assert frame["difference"].iloc[0] == 0.01234


def test_setup_display_makes_every_displayed_frame_use_the_format():
    """What a notebook shows: the HTML a kernel's display formatter produces for a plain DataFrame (no
    Styler built by the notebook) follows the same format, and a long text cell is never cut short."""
    from types import SimpleNamespace

    from IPython.core.formatters import DisplayFormatter

    from lib.tables import setup_display

    shell = SimpleNamespace(display_formatter=DisplayFormatter())
    long_text = "s·cos(θ_y + m); beyond π − m: s·(cos θ_y − m·sin m)" * 2
    frame = pd.DataFrame({"target logit": [long_text], "fallback_share": [np.nan], "images": [16000]})
    before = shell.display_formatter.format(frame)[0]["text/html"]
    assert "NaN" in before  # pandas' own HTML: the convention is not there yet
    with pd.option_context("display.max_colwidth", 50):
        setup_display(shell)
        assert pd.get_option("display.max_colwidth") is None
    after = shown_cells(shell.display_formatter.format(frame)[0]["text/html"])
    assert after[-3:] == [long_text, "—", "16,000"]


def test_every_notebook_shows_its_tables_in_the_one_format():
    """Each notebook turns the convention on, and none formats a table its own way: no precision of its
    own (02 showed four decimals), no percentages beside fractions (01), no "NaN" text of its own."""
    import re

    from lib import paths

    for source in sorted((paths.ROOT / "notebooks").glob("0*.py")):
        text = source.read_text(encoding="utf-8")
        assert "tables.setup_display()" in text, source.name
        assert 'pd.set_option("display.precision"' not in text, source.name
        assert set(re.findall(r"precision=(\d+)", text)) <= {"3"}, source.name
        assert not re.search(r"\.style\.format\(\"\{:[^}]*%\}", text), source.name
        assert set(re.findall(r"na_rep=\"([^\"]*)\"", text)) <= {"", "—"}, source.name
