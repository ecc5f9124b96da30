"""Findings whose numbers come from the saved result tables (lib.findings) and the render's check of them.

The committed real tables (data/results/real/) are read where a test needs realistic tables; a test that
changes a table works on a copy under tmp_path.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from lib import findings, notebooks, paths

REAL = paths.ROOT / "data" / "results" / "real"
REAL_TABLES = ["02_heads.csv", "02_comparisons.csv", "03_comparisons.csv", "03_frozen_comparisons.csv",
               "04_frvt_trained_ratios.csv", "04_frvt_dlib_ratios.csv", "04_frvt_dlib_rates.csv"]
needs_real = pytest.mark.skipif(not all((REAL / t).is_file() for t in REAL_TABLES),
                                reason="the committed real result tables are not in this checkout")


def _copy_real(folder: Path, tables=REAL_TABLES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for table in tables:
        shutil.copy(REAL / table, folder / table)
    return folder


def _cell(folder: Path, table: str, where: dict, column: str) -> str:
    """The cell as the csv module reads it: an independent reader of the same file."""
    with open(folder / table, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if all(row[k] == v for k, v in where.items())]
    assert len(rows) == 1, (table, where)
    return rows[0][column]


def _set_cell(folder: Path, table: str, where: dict, column: str, value) -> None:
    frame = pd.read_csv(folder / table, dtype=str, keep_default_na=False)
    mask = pd.Series(True, index=frame.index)
    for key, wanted in where.items():
        mask &= frame[key] == wanted
    assert mask.sum() == 1
    frame.loc[mask, column] = str(value)
    frame.to_csv(folder / table, index=False)


def test_number_is_formatted_from_its_row_and_column(tmp_path):
    (tmp_path / "t.csv").write_text("head,target,acc\nsoftmax,race,0.79733333\ncosface,race,0.8443\n"
                                    "cosface,gender,0.5\n")
    f = findings.Findings(tmp_path)
    assert f.number("cosface race accuracy", "t.csv", {"head": "cosface", "target": "race"}, "acc") == "0.844"
    assert f.number("a difference", "t.csv", {"head": "softmax"}, "acc", "difference") == "+0.797"
    assert [q.name for q in f.quotes] == ["cosface race accuracy", "a difference"]
    assert f.quotes[0].value == "0.8443" and f.quotes[0].table == "t.csv" and f.quotes[0].column == "acc"


@pytest.mark.parametrize("where, message", [({"head": "arcface"}, "no row"), ({"head": "cosface"}, "2 rows")])
def test_missing_or_ambiguous_row_names_the_number_and_the_table(tmp_path, where, message):
    (tmp_path / "t.csv").write_text("head,target,acc\ncosface,race,0.8\ncosface,gender,0.5\n")
    with pytest.raises(findings.FindingsError, match=rf"'the accuracy'.*t\.csv.*{message}"):
        findings.Findings(tmp_path).number("the accuracy", "t.csv", where, "acc")


def test_missing_table_names_the_number_and_the_table(tmp_path):
    with pytest.raises(findings.FindingsError, match=r"'the accuracy'.*absent\.csv is missing"):
        findings.Findings(tmp_path).number("the accuracy", "absent.csv", {"head": "x"}, "acc")


def test_missing_column_names_the_number(tmp_path):
    (tmp_path / "t.csv").write_text("head,acc\ncosface,0.8\n")
    with pytest.raises(findings.FindingsError, match=r"'the gap'.*no column.*\['gap'\]"):
        findings.Findings(tmp_path).number("the gap", "t.csv", {"head": "cosface"}, "gap")


def test_a_word_is_chosen_from_the_data_and_rechecked(tmp_path):
    (tmp_path / "t.csv").write_text("pair,verdict,low\na,lower,-0.2\n")
    f = findings.Findings(tmp_path)
    assert f.choose("verdict of a", "t.csv", {"pair": "a"}, "verdict", {"lower": "lower", "higher": "higher"}) == "lower"
    assert f.choose("a excludes 0", "t.csv", {"pair": "a"}, "low", lambda v: "yes" if v > 0 else "no") == "no"
    assert findings.check_quotes(f.quotes, tmp_path) == []
    (tmp_path / "t.csv").write_text("pair,verdict,low\na,higher,0.1\n")
    problems = findings.check_quotes(f.quotes, tmp_path)
    assert len(problems) == 2 and "'verdict of a'" in problems[0] and "'higher'" in problems[0]
    with pytest.raises(findings.FindingsError, match="no words for"):
        findings.Findings(tmp_path).choose("verdict of a", "t.csv", {"pair": "a"}, "verdict", {"lower": "lower"})


@needs_real
def test_every_quote_of_every_findings_text_is_its_table_cell():
    """Each quoted value is the cell an independent CSV reader finds at the quote's row and column."""
    texts = [fn(REAL, "real") for stem, fn in findings.NOTEBOOK_FINDINGS.items() if stem != "01_data_audit"]
    texts.append(findings.series_findings(REAL, "real", stems=list(findings.NOTEBOOK_FINDINGS)))
    for text in texts:
        assert text.quotes
        for quote in text.quotes:
            assert _cell(REAL, quote.table, quote.where, quote.column) == quote.value, quote.name
        assert findings.check_quotes(text.quotes, REAL) == []


@needs_real
def test_findings_text_shows_each_number_as_its_table_holds_it():
    """The 02 text quotes sphereface's DevTest accuracy and its paired difference, as in the tables."""
    text = findings.sphereface_findings(REAL, "real").markdown
    heads = pd.read_csv(REAL / "02_heads.csv").set_index("head")
    assert f"{heads.loc['sphereface', 'acc_10fold']:.3f}" in text
    diff = pd.read_csv(REAL / "02_comparisons.csv").set_index("comparison").loc["sphereface − softmax", "mean difference"]
    assert f"{diff:+.3f}".replace("-", "−") in text


@needs_real
def test_series_findings_are_five_to_eight_sentences_per_regime():
    text = findings.series_findings(REAL, "real", stems=list(findings.NOTEBOOK_FINDINGS)).markdown
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    assert 5 <= len(paragraphs) <= 8
    assert "from scratch (notebook 03)" in text and "on frozen dlib face features (notebook 03)" in text


@needs_real
def test_verdict_and_its_consequence_follow_the_table(tmp_path):
    """A stale verdict cannot be shown: flip the from-scratch race verdict and the answer changes with it."""
    folder = _copy_real(tmp_path / "results")
    where = {"target": "race", "quantity": "accuracy", "group": "", "head_key": "cosrelu",
             "reference_key": "cosine_softmax"}
    for verdict in ("lower", "higher"):
        _set_cell(folder, "03_comparisons.csv", where, "verdict", verdict)
        frozen = _cell(folder, "03_frozen_comparisons.csv", where, "verdict")
        text = findings.cosrelu_findings(folder, "real").markdown
        answer = next(p for p in text.split("\n\n") if p.startswith("**The answer.**"))
        assert f"On race, CosReLU against the course's softmax is **{verdict}** from scratch" in answer
        assert ("the regime changes the answer" in answer.split(";")[0]) == (verdict != frozen)


def test_devtest_sentence_reads_the_tuning_table(tmp_path):
    f = findings.Findings(tmp_path)
    assert "does not show which of its settings" in findings._devtest_sentence(f)
    columns = "setting,value,current,n_trials,score,chosen\n"
    (tmp_path / findings.SETTING_CHOICE).write_text(columns)
    assert "tunes no setting" in findings._devtest_sentence(findings.Findings(tmp_path))
    (tmp_path / findings.SETTING_CHOICE).write_text(
        columns + "epochs,40,True,2,0.8,True\nalignment,center,True,2,0.80,False\nalignment,aligned,False,2,0.82,True\n")
    text = findings._devtest_sentence(findings.Findings(tmp_path))
    assert "`center` faces **lost**" in text and "(`crop`) is not among the settings tuned" in text
    assert "Chosen on the validation pairs, by the rule on the page: `epochs`." in text
    (tmp_path / findings.SETTING_CHOICE).write_text(
        columns + "epochs,40,True,2,0.8,True\nalignment,aligned,True,2,0.82,True\nalignment,center,False,2,0.80,False\n"
        "align_margin,0.0,True,2,0.82,\nalign_margin,0.1,False,0,,\n")
    text = findings._devtest_sentence(findings.Findings(tmp_path))
    assert "The face crop was chosen on the validation pairs: this run's `aligned` faces won" in text
    assert "Still undecided (trials missing), so this run's value was not chosen on the validation pairs: " \
           "`align_margin`" in text and "lost" not in text
    (tmp_path / findings.SETTING_CHOICE).write_text(columns + "alignment,center,True,1,0.80,\nalignment,aligned,False,0,,\n")
    assert "were not chosen on them" in findings._devtest_sentence(findings.Findings(tmp_path))


# ------------------------------------------------------------------------------ render-time check
@pytest.fixture
def project(tmp_path, monkeypatch):
    for name in ("PARAMS", "NOTEBOOKS", "REPORTS", "FIGURES", "RESULTS"):
        folder = tmp_path / name.lower()
        folder.mkdir()
        monkeypatch.setattr(paths, name, folder)
    (tmp_path / "params" / "tiny.yaml").write_text("common:\n  lfw_source: shared\n  fairface_source: shared\n")
    return tmp_path


def _executed_02(project: Path, text: findings.FindingsText) -> None:
    (project / "notebooks" / "02_sphereface.py").write_text("# %%\n1 + 1\n")
    out = project / "reports" / "tiny"
    out.mkdir(parents=True)
    markdown, metadata = text._repr_markdown_()
    # As IPython files a _repr_markdown_'s (data, metadata): the metadata under the MIME type.
    output = new_output("execute_result", data={"text/markdown": markdown, "text/plain": "findings"},
                        metadata={"text/markdown": metadata}, execution_count=1)
    notebook = new_notebook(cells=[new_markdown_cell("# 02 · SphereFace\n\nIntro."),
                                   new_code_cell("findings", outputs=[output])])
    nbformat.write(notebook, out / "02_sphereface.ipynb")


@needs_real
def test_render_checks_the_page_and_writes_the_index_findings(project):
    folder = _copy_real(project / "results" / "tiny", ["02_heads.csv", "02_comparisons.csv"])
    _executed_02(project, findings.sphereface_findings(folder, "tiny"))
    index = notebooks.render("tiny").read_text(encoding="utf-8")
    accuracy = pd.read_csv(folder / "02_heads.csv").set_index("head").loc["course_sphereface", "acc_10fold"]
    assert "<h2>Findings</h2>" in index and f"reaches {accuracy:.3f}" in index
    assert index.index("<h2>Findings</h2>") < index.index("<h2>Run</h2>")


@needs_real
def test_render_stops_on_a_page_that_quotes_a_stale_value(project):
    folder = _copy_real(project / "results" / "tiny", ["02_heads.csv", "02_comparisons.csv"])
    _executed_02(project, findings.sphereface_findings(folder, "tiny"))
    _set_cell(folder, "02_heads.csv", {"head": "sphereface"}, "acc_10fold", 0.5)  # the table changed after the run
    with pytest.raises(SystemExit, match=r"DevTest accuracy of sphereface.*02_heads\.csv.*stale"):
        notebooks.render("tiny")
    assert not (project / "reports" / "tiny" / "index.html").exists()


@needs_real
def test_render_stops_when_a_quoted_table_is_missing(project):
    folder = _copy_real(project / "results" / "tiny", ["02_heads.csv", "02_comparisons.csv"])
    _executed_02(project, findings.sphereface_findings(folder, "tiny"))
    (folder / "02_comparisons.csv").unlink()
    with pytest.raises(SystemExit, match=r"02: sphereface − softmax.*02_comparisons\.csv is missing"):
        notebooks.render("tiny")


def test_notebook_02_verdict_comes_from_the_verdict_column_when_the_table_has_one(tmp_path):
    heads = "head,seeds,acc_10fold,ci_low,ci_high,acc_fixed_0.5\nsoftmax,3,0.79,0.77,0.82,0.64\ncosface,3,0.84,0.81,0.87,0.58\n"
    (tmp_path / "02_heads.csv").write_text(heads)
    (tmp_path / "02_comparisons.csv").write_text(
        "comparison,seeds,mean difference,95% CI low,95% CI high,excludes 0\ncosface − softmax,3,0.05,0.01,0.09,True\n")
    assert "cosface − softmax +0.050 [+0.010, +0.090], **higher** (its interval excludes 0)" in \
        findings.sphereface_findings(tmp_path).markdown
    # A corrected table: its verdict decides, even where the uncorrected interval excludes 0.
    (tmp_path / "02_comparisons.csv").write_text(
        "comparison,seeds,mean difference,95% CI low,95% CI high,p_value,p_adjusted,interval,verdict\n"
        "cosface − softmax,3,0.05,0.01,0.09,0.03,0.09,95% over seeds and pairs; Holm,not resolved\n")
    text = findings.sphereface_findings(tmp_path).markdown
    assert "cosface − softmax +0.050 [+0.010, +0.090], not resolved" in text
    assert "Intervals: 95% over seeds and pairs; Holm." in text and "not corrected" not in text


def test_gap_answer_says_what_the_verdicts_add_up_to():
    assert "no margin head changes the gap" in findings._gap_answer(["not resolved"] * 3, "from scratch")
    assert "every resolved one narrower" in findings._gap_answer(["narrower", "not resolved"], "frozen")
    assert "in both directions" in findings._gap_answer(["narrower", "wider", "wider"], "frozen")
    assert findings._gap_answer([], "frozen") == ""


@needs_real
def test_dlib_audit_findings_per_comparator_when_the_tables_name_one(tmp_path):
    """A dlib audit saved with a comparator column (two comparators): one paragraph per comparator, dlib's
    own (Euclidean) first, each number from its comparator's rows."""
    folder = _copy_real(tmp_path / "results")
    for table in ("04_frvt_dlib_rates.csv", "04_frvt_dlib_ratios.csv"):
        cosine = pd.read_csv(folder / table, dtype=str, keep_default_na=False)
        euclidean = cosine.copy()
        euclidean["fmr" if "fmr" in cosine.columns else "estimate"] = "0.5"
        pd.concat([cosine.assign(comparator="cosine"), euclidean.assign(comparator="euclidean")]).to_csv(
            folder / table, index=False)
    text = findings.fairness_findings(folder, "real").markdown
    euclid, cos = text.index("Euclidean distance of the raw descriptors"), text.index("cosine of the L2-normalized")
    assert euclid < cos
    assert "Male: FMR 0.5" in text[euclid:cos] and "Male: FMR 0.5" not in text[cos:]
    assert "FMR ratio Female/Male: 0.50" in text[euclid:cos]


def test_an_empty_cell_is_shown_as_no_interval(tmp_path):
    """One seed: the table leaves the interval empty, and the finding says there is none."""
    (tmp_path / "t.csv").write_text("pair,difference,lower,upper\na,0.02,,\n")
    f = findings.Findings(tmp_path)
    assert f.interval("a", "t.csv", {"pair": "a"}, "lower", "upper") == "(no interval)"
    assert f.number("a", "t.csv", {"pair": "a"}, "difference", "difference") == "+0.020"
    assert findings.check_quotes(f.quotes, tmp_path) == []


def _write(folder: Path, table: str, text: str) -> None:
    (folder / table).write_text(text.strip() + "\n", encoding="utf-8")


@needs_real
def test_lfw_findings_quote_the_paired_tests_the_norms_and_the_prolific_people(tmp_path):
    """Issue 24's audit in the Findings: two heads' ratios tested on the same people, whether dlib's comparator
    changes the answer (and why: the norms), and what the most prolific people do to the FNMR ratio. Every
    number below is typed into the tables here, not computed by the code under test."""
    folder = _copy_real(tmp_path / "results")
    _write(folder, "04_frvt_trained_ratio_tests.csv", """
head,reference,target_fmr,rate,ratio,head_ratio,reference_ratio,ratio_of_ratios,lower,upper,p_value,p_adjusted,replicates,interval,correction,verdict
cosface,softmax,0.001,fmr,Female/Male,2.49,5.17,0.4816,0.3301,0.7012,0.002,0.004,1000,95% paired identity bootstrap (same people for both heads),holm over 2 tests,lower
""")
    _write(folder, "04_frvt_dlib_comparator_test.csv", """
comparison,target_fmr,rate,ratio,euclidean_ratio,cosine_ratio,ratio_of_ratios,lower,upper,p_value,replicates,replicates without a finite ratio,p_adjusted
euclidean / cosine,0.001,fmr,Female/Male,1.3677,3.7645,0.3633,0.2470,0.5085,0.002,1000,0,0.012
euclidean / cosine,0.001,fnmr,Female/Male,2.2214,0.8770,2.5329,1.5489,3.5710,0.002,1000,0,0.012
""")
    _write(folder, "04_frvt_dlib_norms.csv", """
group,images,mean,sd,p5,p25,median,p75,p95
Male,10263,1.4048,0.0594,1.30,1.36,1.40,1.44,1.50
Female,2961,1.4882,0.0691,1.37,1.43,1.48,1.53,1.60
all,13233,1.4235,0.0708,1.31,1.37,1.41,1.46,1.54
""")
    _write(folder, "04_frvt_dlib_prolific.csv", """
comparator,operating_point,threshold,variant,group,n_genuine,fnmr,n_impostor,fmr
euclidean,overall FMR 0.001,0.54,all pairs,Male,232444,0.0512,52427009,0.00137
euclidean,overall FMR 0.001,0.54,all pairs,ratio Female/Male,,2.2214,,1.3677
euclidean,overall FMR 0.001,0.54,genuine pairs capped at 45 per identity,ratio Female/Male,,1.5171,,1.3677
cosine,overall FMR 0.001,0.93,all pairs,ratio Female/Male,,0.8770,,3.7645
""")
    text = findings.fairness_findings(folder, "real")
    markdown = text.markdown
    assert ("`cosface` against `softmax`, ratio of the two ratios 0.48 [0.33, 0.70], Holm-adjusted p = 0.004: "
            "`cosface`'s ratio is the lower") in markdown
    assert "no paired test between heads" not in markdown
    assert ("the FMR ratio Female/Male is 1.37 with the Euclidean distance and 3.76 with the cosine; the ratio of "
            "the two is 0.36 [0.25, 0.51]") in markdown
    assert "**which comparator is audited changes the demographic answer**" in markdown
    assert "Female descriptors are longer on average than Male ones (mean norm 1.49 against 1.40" in markdown
    assert "rest on the Euclidean distance" in markdown
    assert "is 2.22 on all pairs and 1.52 with genuine pairs capped at 45 per identity" in markdown
    assert findings.check_quotes(text.quotes, folder) == []
    index = findings.series_findings(folder, "real", stems=list(findings.NOTEBOOK_FINDINGS)).markdown
    assert "the two differ by a factor 0.36 [0.25, 0.51]" in index and "comparator audited changes the answer" in index
    # not resolved at the 5 % level: the words follow the Holm-adjusted p-value
    _set_cell(folder, "04_frvt_dlib_comparator_test.csv", {"rate": "fmr"}, "p_adjusted", "0.2")
    markdown = findings.fairness_findings(folder, "real").markdown
    assert "the data do not resolve a difference between the comparators" in markdown
    assert "changes the demographic answer" not in markdown


@needs_real
def test_ratio_words_say_which_group_gets_more_errors(tmp_path):
    """An interval above 1 names the numerator group, below 1 the denominator, and one that includes 1 neither."""
    folder = _copy_real(tmp_path / "results")
    for lower, upper, words in [("1.2", "2.0", "above 1: the Female group gets more false matches"),
                                ("0.3", "0.8", "below 1: the Male group gets more false matches"),
                                ("0.8", "1.3", "includes 1")]:
        _set_cell(folder, "04_frvt_dlib_ratios.csv", {"target_fmr": "0.001", "rate": "fmr"}, "lower", lower)
        _set_cell(folder, "04_frvt_dlib_ratios.csv", {"target_fmr": "0.001", "rate": "fmr"}, "upper", upper)
        markdown = findings.fairness_findings(folder, "real").markdown
        said = words if words == "includes 1" else f"lies {words}"
        assert f"[{float(lower):.2f}, {float(upper):.2f}] — its interval {said} at" in markdown or \
            f"[{float(lower):.2f}, {float(upper):.2f}] — its interval {said}." in markdown


@needs_real
def test_03_findings_of_a_profile_that_trains_one_head_say_nothing_was_compared(tmp_path):
    """A profile with one head writes an empty comparisons table: the Findings say so instead of failing."""
    folder = _copy_real(tmp_path / "results", ["03_comparisons.csv"])
    header = (folder / "03_comparisons.csv").read_text(encoding="utf-8").splitlines()[0]
    (folder / "03_comparisons.csv").write_text(header + "\n", encoding="utf-8")
    markdown = findings.cosrelu_findings(folder, "real").markdown
    assert "**From scratch** (" in markdown and "no head pair of this answer was trained" in markdown
    assert "holds 0 comparisons" in markdown


PLATEAU_HEADER = ("target,head,seeds,epochs,from epoch,accuracy then,accuracy at the end,last-quarter gain,"
                  "largest gain of a seed,still learning")
LONGER_HEADER = "target,head,seed,group,epochs,accuracy,longer epochs,longer accuracy,difference,beyond threshold"


@needs_real
def test_03_findings_say_whether_the_runs_reached_a_plateau(tmp_path):
    """Issue 25's plateau bar in the Findings: the combinations still gaining over the last quarter, and what
    twice the epochs did, worded from the tables (typed in here)."""
    folder = _copy_real(tmp_path / "results", ["03_comparisons.csv", "03_frozen_comparisons.csv"])
    _write(folder, "03_plateau.csv", PLATEAU_HEADER + """
race,cosine_softmax,3,12,9,0.472,0.485,0.0132,0.0168,True
race,normsoftmax,3,12,9,0.488,0.480,-0.0080,0.0010,False
gender,cosface,3,12,9,0.801,0.806,0.0050,0.0090,False
""")
    _write(folder, "03_longer_run.csv", LONGER_HEADER + """
race,cosine_softmax,0,overall,12,0.488,24,0.5012,0.0132,True
race,cosine_softmax,0,White,12,0.61,24,0.62,0.01,False
""")
    text = findings.cosrelu_findings(folder, "real")
    markdown = text.markdown
    assert ("1 of 3 (target, head) combinations gained more than 0.01 in mean validation accuracy over the last "
            "quarter of their 12 epochs: race `cosine_softmax` (+0.013)") in markdown
    assert ("race `cosine_softmax` seed 0 reaches 0.501 after 24 epochs against 0.488 after 12 (+0.013): "
            "**more training changes its accuracy by more than 0.01**") in markdown
    assert findings.check_quotes(text.quotes, folder) == []
    # every combination on its plateau, and twice the epochs within 0.01
    _set_cell(folder, "03_plateau.csv", {"target": "race", "head": "cosine_softmax"}, "still learning", "False")
    _set_cell(folder, "03_plateau.csv", {"target": "race", "head": "cosine_softmax"}, "last-quarter gain", "0.0061")
    _set_cell(folder, "03_longer_run.csv", {"group": "overall"}, "beyond threshold", "False")
    markdown = findings.cosrelu_findings(folder, "real").markdown
    assert ("Every (target, head) combination gained at most 0.01 in mean validation accuracy over the last quarter "
            "of its 12 epochs (the most: race `cosine_softmax`, +0.006)") in markdown
    assert "more training would not change it by more than 0.01" in markdown
    # one epoch: no gain to measure, said as such (not "gained at most 0.01 ... n/a")
    _write(folder, "03_plateau.csv", PLATEAU_HEADER + "\nrace,cosine_softmax,2,1,,,0.3,,,False\n")
    assert "With 1 epoch(s) there is no earlier epoch" in findings.cosrelu_findings(folder, "real").markdown
    # a profile without a longer run writes the table empty: no earlier run's numbers are quoted
    _write(folder, "03_longer_run.csv", LONGER_HEADER)
    assert "No run was trained again with twice the epochs" in findings.cosrelu_findings(folder, "real").markdown
