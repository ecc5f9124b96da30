"""Findings in plain words whose every number, and every word that depends on a number, is read from a
saved result table (``data/results/<profile>/*.csv``) and checked again when the report is rendered.

A finding never types a number. It *quotes* one: :meth:`Findings.number` names the number, its table,
the selector of its one row (column → value) and its column, formats the value one way for the whole
series (:data:`FORMATS`), and records the quote. A word whose choice depends on the data — *higher* or
*lower*, *resolved* or *not*, *recovered* or *not* — is chosen by :meth:`Findings.choose` from a quoted
value, so it is recorded the same way. A :class:`FindingsText` displayed in a notebook carries its quotes
in the output's metadata; :func:`check_notebook` (called by ``python -m lib.notebooks render``) reads
every quote's table again and stops the render, naming the number and the table, when a table is
missing, its row is missing or ambiguous, or its value has changed since the page was executed: a page
never shows a sentence its tables no longer support. :func:`series_findings` writes the index page's
answers the same way, from the tables, at render time.

Layers: this module reads tables (and ``lib.course_reports`` for the course reports' published numbers);
the notebooks and the runner (``lib.notebooks``) use it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from lib.errors import DataError

__all__ = ["FORMATS", "FindingsError", "Quote", "Findings", "FindingsText", "check_quotes", "check_notebook",
           "METADATA_KEY"]

METADATA_KEY = "findings"


class FindingsError(DataError):
    """A quoted number whose table, row or column is missing or ambiguous, or whose value has changed."""


def _signed(value: float, digits: int) -> str:
    return f"{value:+.{digits}f}".replace("-", "−")


# One format per kind of number, for the whole series.
FORMATS = {
    "accuracy": lambda v: f"{v:.3f}",  # an accuracy, a recall, a share of pairs: 0.797
    "difference": lambda v: _signed(v, 3),  # a difference of two accuracies (head − reference): +0.053
    "points": lambda v: f"{abs(v) * 100:.1f}",  # the size of a difference in percentage points: 5.3
    "ratio": lambda v: f"{v:.2f}",  # a ratio of two rates: 2.49
    "rate": lambda v: f"{v:.2g}" if v < 0.01 else f"{v:.3f}",  # an error rate: 0.0044, 0.055
    "count": lambda v: f"{int(round(v)):,}",  # images, pairs, seeds: 13,233
    "rho": lambda v: _signed(v, 2),  # a rank correlation: −0.96
    "p": lambda v: f"{v:.2g}",  # a p-value, two significant digits: 0.014
    "text": str,  # a label or a verdict, as the table writes it
}


@dataclass(frozen=True)
class Quote:
    """One quoted value: which number, from which table, row and column, and what the page printed."""

    name: str
    table: str  # file name inside data/results/<profile>/
    where: dict  # column → value (compared as the CSV's text) selecting exactly one row
    column: str
    value: str  # the cell as the CSV holds it
    shown: str  # what the page printed (a formatted number, or the word chosen from it)


def _read(folder: Path, table: str, cache: dict, number: str) -> pd.DataFrame:
    if table not in cache:
        path = folder / table
        if not path.is_file():
            raise FindingsError(f"Findings number {number!r}: its table {table} is missing from {folder} (the "
                                "notebook that writes it has not run for this profile, or the file was removed): "
                                "re-run that notebook, then render again")
        cache[table] = pd.read_csv(path, dtype=str, keep_default_na=False)  # cells as written: no float round trip
    return cache[table]


def _cell(folder: Path, table: str, where: dict, column: str, cache: dict, number: str) -> str:
    frame = _read(folder, table, cache, number)
    missing = [name for name in [*where, column] if name not in frame.columns]
    if missing:
        raise FindingsError(f"Findings number {number!r}: table {table} has no column(s) {missing} (its columns: "
                            f"{', '.join(frame.columns)})")
    mask = pd.Series(True, index=frame.index)
    for key, wanted in where.items():
        mask &= frame[key] == _as_cell(wanted)
    rows = frame[mask]
    selector = ", ".join(f"{key}={_as_cell(value)!r}" for key, value in where.items()) or "no selector"
    if len(rows) != 1:
        problem = "no row" if len(rows) == 0 else f"{len(rows)} rows (ambiguous)"
        raise FindingsError(f"Findings number {number!r}: table {table} has {problem} where {selector}")
    return rows[column].iloc[0]


def _as_cell(value) -> str:
    """A selector value as the CSV writes it (True → "True", 0.001 → "0.001", None → "")."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


NOT_AVAILABLE = "n/a"  # an empty cell (a NaN written by pandas), e.g. the interval of a single seed


def _number(cell: str, name: str, table: str, column: str) -> float:
    if cell == "":
        return math.nan
    try:
        return float(cell)
    except ValueError:
        raise FindingsError(f"Findings number {name!r}: column {column!r} of table {table} holds {cell!r}, "
                            "not a number") from None


def _same(old: str, new: str) -> bool:
    if old == new:
        return True
    try:
        a, b = float(old), float(new)
    except ValueError:
        return False
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


class Findings:
    """Quotes values from the result tables of one folder and remembers every quote.

    ``number`` returns the formatted value, ``value`` the float (for a computation whose result is then
    worded with ``choose``), ``choose`` a word picked from a quoted value; ``has`` says whether a table
    exists, for a finding about a part of the series that a profile may legitimately skip (its absence is
    then said in words, naming the table)."""

    def __init__(self, folder: Path | str, profile: str = ""):
        self.folder, self.profile = Path(folder), profile
        self.quotes: list[Quote] = []
        self._cache: dict[str, pd.DataFrame] = {}

    def has(self, table: str) -> bool:
        return (self.folder / table).is_file()

    def table(self, table: str) -> pd.DataFrame:
        """The table's cells as text (for finding which rows exist, e.g. which heads were compared)."""
        return _read(self.folder, table, self._cache, f"rows of {table}")

    def _quote(self, name: str, table: str, where: dict, column: str, shown_of) -> tuple[str, str]:
        cell = _cell(self.folder, table, where, column, self._cache, name)
        shown = shown_of(cell)
        self.quotes.append(Quote(name, table, {k: _as_cell(v) for k, v in where.items()}, column, cell, shown))
        return cell, shown

    def value(self, name: str, table: str, where: dict, column: str) -> float:
        cell = _cell(self.folder, table, where, column, self._cache, name)
        value = _number(cell, name, table, column)
        self.quotes.append(Quote(name, table, {k: _as_cell(v) for k, v in where.items()}, column, cell,
                                 repr(value)))
        return value

    def number(self, name: str, table: str, where: dict, column: str, kind: str = "accuracy") -> str:
        if kind not in FORMATS:
            raise ValueError(f"unknown number kind {kind!r}; choose among {sorted(FORMATS)}")

        def shown(cell: str) -> str:
            if kind == "text":
                return cell
            value = _number(cell, name, table, column)
            return NOT_AVAILABLE if math.isnan(value) else FORMATS[kind](value)

        return self._quote(name, table, where, column, shown)[1]

    def interval(self, name: str, table: str, where: dict, lower: str, upper: str, kind: str = "difference") -> str:
        """``[a, b]``: two quoted bounds (``(no interval)`` where the table has none, e.g. from one seed)."""
        low = self.number(f"{name} (lower bound)", table, where, lower, kind)
        high = self.number(f"{name} (upper bound)", table, where, upper, kind)
        return "(no interval)" if NOT_AVAILABLE in (low, high) else f"[{low}, {high}]"

    def choose(self, name: str, table: str, where: dict, column: str, words, numeric: bool = True) -> str:
        """A word chosen from a quoted cell: ``words`` maps the cell's text to a word (a dict; an unknown
        value is an error naming the number), or is a function of the cell's number (of its text when
        ``numeric`` is false)."""
        def shown(cell: str) -> str:
            if callable(words):
                return words(_number(cell, name, table, column) if numeric else cell)
            if cell not in words:
                raise FindingsError(f"Findings number {name!r}: table {table}, column {column!r} holds {cell!r}, "
                                    f"which the finding has no words for ({', '.join(map(repr, words))})")
            return words[cell]

        return self._quote(name, table, where, column, shown)[1]

    def text(self, paragraphs, title: str | None = None, appendix: str | None = None) -> "FindingsText":
        """The findings as one markdown text (paragraphs or bullet lines joined by blank lines)."""
        body = "\n\n".join(p for p in paragraphs if p)
        return FindingsText(body if title is None else f"{title}\n\n{body}", list(self.quotes), self.profile)


@dataclass
class FindingsText:
    """Markdown with the quotes behind it: displayed in a notebook, the quotes travel in the output's metadata
    (``metadata["findings"]``) so that the render can check them again."""

    markdown: str
    quotes: list[Quote] = field(default_factory=list)
    profile: str = ""

    def metadata(self) -> dict:
        return {METADATA_KEY: {"profile": self.profile, "quotes": [asdict(q) for q in self.quotes]}}

    def _repr_markdown_(self):
        return self.markdown, self.metadata()

    def __str__(self) -> str:
        return self.markdown


def check_quotes(quotes, folder: Path | str) -> list[str]:
    """The problems of ``quotes`` (:class:`Quote` or their dicts) against the tables in ``folder`` now: a
    missing table, row or column, an ambiguous row, or a value that changed. Empty when all still hold."""
    folder, cache, problems = Path(folder), {}, []
    for quote in quotes:
        quote = quote if isinstance(quote, Quote) else Quote(**quote)
        try:
            cell = _cell(folder, quote.table, quote.where, quote.column, cache, quote.name)
        except FindingsError as error:
            problems.append(str(error))
            continue
        if not _same(quote.value, cell):
            problems.append(f"Findings number {quote.name!r}: table {quote.table} now holds {cell!r} in column "
                            f"{quote.column!r}, the page quotes {quote.value!r} (shown as {quote.shown!r}): the page "
                            "is stale; re-run its notebook")
    return problems


def notebook_quotes(notebook) -> list[dict]:
    """Every quote recorded in an executed notebook's Findings outputs."""
    quotes = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            metadata = output.get("metadata", {})
            # IPython files a _repr_markdown_'s metadata under its MIME type; display(..., metadata=) at the top.
            for recorded in [metadata.get(METADATA_KEY), *(v.get(METADATA_KEY) for v in metadata.values()
                                                            if isinstance(v, dict))]:
                if recorded:
                    quotes += recorded.get("quotes", [])
    return quotes


def check_notebook(notebook, folder: Path | str, page: str) -> None:
    """Raise :class:`FindingsError` listing every quote of ``notebook`` its tables no longer support."""
    problems = check_quotes(notebook_quotes(notebook), folder)
    if problems:
        raise FindingsError(f"{page}: {len(problems)} Findings number(s) no longer match their tables in {folder}:\n  "
                            + "\n  ".join(problems))


# --------------------------------------------------------------------------------------------------
# The findings of each notebook and of the series, composed from the tables
# --------------------------------------------------------------------------------------------------
SYNTHETIC_NOTE = ("This profile's faces are synthetic (generated by `lib.synthetic`): the numbers test the "
                  "pipeline against what was planted in the data and say nothing about real faces or the course "
                  "reports.")

VERDICT_WORDS = {"higher": "**higher**", "lower": "**lower**", "wider": "**wider**", "narrower": "**narrower**",
                 "not resolved": "not resolved"}


def _verdict_word(cell: str) -> str:
    return VERDICT_WORDS.get(cell, cell)  # "no verdict (…)", "not compared: …" are shown as the table says them


def _ci(f: Findings, name: str, table: str, where: dict, kind: str) -> str:
    return f.interval(name, table, where, "lower", "upper", kind)


class _Comparison:
    """One row of a comparison table of notebook 03 (``03_comparisons.csv`` or ``03_frozen_comparisons.csv``),
    quoted: labels, values, difference with interval and verdict."""

    def __init__(self, f: Findings, table: str, target: str, quantity: str, head: str, reference: str, group=""):
        self.where = {"target": target, "quantity": quantity, "group": group, "head_key": head,
                      "reference_key": reference}
        name = f"{table}: {target} {quantity}{' ' + group if group else ''}, {head} − {reference}"
        self.name, self.table, self.f = name, table, f
        self.head = f.number(f"{name}: head label", table, self.where, "head", "text")
        self.reference = f.number(f"{name}: reference label", table, self.where, "reference", "text")
        self.verdict_cell = f.number(f"{name}: verdict", table, self.where, "verdict", "text")
        self.verdict = _verdict_word(self.verdict_cell)

    def values(self) -> str:
        f = self.f
        return (f"`{self.head}` {f.number(self.name + ': head value', self.table, self.where, 'head_value')} vs "
                f"`{self.reference}` {f.number(self.name + ': reference value', self.table, self.where, 'reference_value')}")

    def difference(self) -> str:
        f = self.f
        return (f"{f.number(self.name + ': difference', self.table, self.where, 'difference', 'difference')} "
                f"{_ci(f, self.name, self.table, self.where, 'difference')}")


def _pairs(f: Findings, table: str, target: str) -> list[tuple[str, str]]:
    rows = f.table(table)
    rows = rows[(rows["target"] == target) & (rows["quantity"] == "accuracy")]
    return list(zip(rows["head_key"], rows["reference_key"]))


def _targets(f: Findings, table: str) -> list[str]:
    return list(dict.fromkeys(f.table(table)["target"]))


def _interval_words(f: Findings, table: str, where: dict) -> str:
    interval = f.number(f"{table}: what the intervals cover", table, where, "interval", "text")
    correction = f.choose(f"{table}: correction", table, where, "correction",
                          {"holm": "Holm's correction", "bh": "Benjamini–Hochberg's correction"})
    words = f"{interval}, verdicts after {correction} at the 5 % level"
    if table == "03_frozen_comparisons.csv" and "image" not in interval:
        words += ("; on frozen features a seed changes only the head's initialisation and batch order, so this "
                  "interval leaves out the sampling of the validation images and is far narrower than it")
    return words


def _margin_line(f: Findings, table: str, target: str, head: str, reference: str) -> str:
    accuracy = _Comparison(f, table, target, "accuracy", head, reference)
    gap = _Comparison(f, table, target, "gap", head, reference)
    return (f"{accuracy.values()}: accuracy {accuracy.difference()}, {accuracy.verdict}; race gap "
            f"{gap.difference()}, {gap.verdict}")


def _direction(f: Findings, table: str, target: str, head: str, reference: str) -> str:
    """higher / lower / not resolved / …: the verdict on accuracy, as the table says it."""
    return _Comparison(f, table, target, "accuracy", head, reference).verdict_cell


MARGIN_HEADS = ("cosrelu", "cosface", "arcface")
COURSE_SOFTMAX = "cosine_softmax"  # the course report's "softmax": normalized, unscaled
LINEAR_PROBE = "softmax"  # the frozen regime's plain linear probe


def sphereface_findings(folder, profile: str = "", *, synthetic: bool = False) -> FindingsText:
    """Notebook 02: do angular margins improve face verification over softmax, trained from scratch on LFW
    View 1, and what did the course loss's bugs cost?"""
    f = Findings(folder, profile)
    heads, comparisons = "02_heads.csv", "02_comparisons.csv"
    head_names = list(f.table(heads)["head"])
    trained = [h for h in head_names if not h.endswith("(pretrained)")]
    best = max(trained, key=lambda h: float(f.table(heads).set_index("head").loc[h, "acc_10fold"]))
    paragraphs = [
        "**The question.** Does an angular-margin loss (SphereFace's A-Softmax, CosFace) make a small CNN trained "
        "from scratch verify faces better than a plain softmax, and what did the course report's buggy loss cost? "
        "Regime: the course network, trained on LFW View 1 DevTrain people only, scored on the identity-disjoint "
        "View 1 DevTest pairs with the 10-fold threshold (accuracies are fractions of pairs; tables `02_heads.csv`, "
        "`02_comparisons.csv`; figures `02_det`, `02_accuracy_by_epoch`)."]
    seeds = f.number(f"02: seeds of {best}", heads, {"head": best}, "seeds", "count")
    answer = (f"**The answer.** The most accurate trained head is `{best}`, "
              f"{f.number(f'02: DevTest accuracy of {best}', heads, {'head': best}, 'acc_10fold')} "
              f"{f.interval(f'02: DevTest accuracy of {best}', heads, {'head': best}, 'ci_low', 'ci_high', 'accuracy')} "
              f"(mean over {seeds} seed{'' if str(seeds) == '1' else 's'}; 95 % interval over the seeds and the pairs).")
    lines = []
    for row in f.table(comparisons)["comparison"]:
        where = {"comparison": row}
        lines.append(f"{row} {f.number(f'02: {row}', comparisons, where, 'mean difference', 'difference')} "
                     f"{f.interval(f'02: {row}', comparisons, where, '95% CI low', '95% CI high')}, "
                     f"{_verdict_02(f, comparisons, row)}")
    if lines:
        answer += " Paired differences (same seeds, same pairs): " + "; ".join(lines) + "."
        if "interval" in f.table(comparisons).columns:
            first = {"comparison": f.table(comparisons)["comparison"].iloc[0]}
            answer += f" Intervals: {f.number('02: what the intervals cover', comparisons, first, 'interval', 'text')}."
    paragraphs.append(answer)
    if "course_sphereface" in head_names:
        from lib.course_reports import SPHEREFACE_FIXED_THRESHOLD_ACCURACY as course

        course_points = ", ".join(f"{value:.3f} after {epochs} epochs" for epochs, value in course.items())
        where = {"head": "course_sphereface"}
        paragraphs.append(
            f"**The course loss.** With its bugs reproduced, `course_sphereface` reaches "
            f"{f.number('02: course loss, 10-fold', heads, where, 'acc_10fold')} with the 10-fold threshold and "
            f"{f.number('02: course loss, fixed 0.5', heads, where, 'acc_fixed_0.5')} at the course's fixed cosine "
            f"0.5 (the course report, on the same DevTest pairs at 0.5: {course_points}).")
    for name in [h for h in head_names if h.endswith("(pretrained)")]:
        where = {"head": name}
        above = (f.value(f"02: {name} (lower bound)", heads, where, "ci_low")
                 > f.value(f"02: DevTest accuracy of {best} (upper bound)", heads, {"head": best}, "ci_high"))
        paragraphs.append(
            f"**The ceiling.** A pretrained face encoder, {name}, scores "
            f"{f.number(f'02: {name}', heads, where, 'acc_10fold')} "
            f"{f.interval(f'02: {name}', heads, where, 'ci_low', 'ci_high', 'accuracy')} on the same pairs "
            "(interval over the pairs only): "
            + ("above every head trained here (the intervals do not overlap)." if above else
               "its interval overlaps the best trained head's."))
    paragraphs.append(_devtest_sentence(f))
    caveats = ("**What it does not show.** View 1 is small (the data section counts its images and pairs), so this "
               "ranks losses for a small network on little data, not at the paper's scale (CASIA-WebFace, View 2); "
               "the intervals contain seed and pair sampling, not the choice of the setting.")
    if "p_adjusted" not in f.table(comparisons).columns:
        caveats += (" The paired differences are not corrected for testing several comparisons at once "
                    "(`02_comparisons.csv` has no adjusted p-value).")
    paragraphs.append(caveats)
    if synthetic:
        chance = f.choose(f"02: {best} above chance", heads, {"head": best}, "ci_low",
                          lambda low: "recovered (the interval's lower end is above 0.5)" if low > 0.5
                          else "**not recovered** (the interval reaches 0.5)")
        paragraphs.append(f"**Planted answer.** {SYNTHETIC_NOTE} Planted: the generated identities can be told "
                          f"apart, so a working pipeline verifies pairs above chance (0.5); {chance}.")
    return f.text(paragraphs)


SETTING_CHOICE = "02_setting_choice.csv"


def _verdict_02(f: Findings, table: str, comparison: str) -> str:
    """Notebook 02's verdict on one paired difference: its ``verdict`` column where the table has one (corrected
    for the comparisons of the table), else whether the uncorrected interval excludes 0 (older tables)."""
    where = {"comparison": comparison}
    if "verdict" in f.table(table).columns:
        return f.choose(f"02: {comparison}: verdict", table, where, "verdict",
                        lambda cell: _verdict_word(cell), numeric=False)
    low = f.value(f"02: {comparison} (lower bound)", table, where, "95% CI low")
    high = f.value(f"02: {comparison} (upper bound)", table, where, "95% CI high")
    return ("**higher** (its interval excludes 0)" if low > 0 else "**lower** (its interval excludes 0)" if high < 0
            else "not resolved (its interval includes 0)")


def _devtest_sentence(f: Findings) -> str:
    """Whether the face crop (alignment) of notebook 02's final runs was chosen on the validation pairs, read
    from the tuning table notebook 02 saves (``02_setting_choice.csv``)."""
    if not f.has(SETTING_CHOICE):
        return ("**DevTest and the setting.** This run saved no tuning table (`02_setting_choice.csv`), so it does "
                "not show which of its settings, the face crop included, were chosen on the validation pairs rather "
                "than on DevTest; the profile's setting note on the page says how they were chosen.")
    choice = f.table(SETTING_CHOICE)
    tuned = list(dict.fromkeys(choice["setting"]))
    if not tuned:
        return ("**DevTest and the setting.** This profile tunes no setting (its tuning grid is empty, "
                "`02_setting_choice.csv`): the settings are the profile's values as given, none chosen on this "
                "run's DevTest or validation pairs.")
    outcome = {setting: f.choose(f"02: {setting} of this run on the validation pairs", SETTING_CHOICE,
                                 {"setting": setting, "current": "True"}, "chosen",
                                 {"True": "won", "False": "lost", "": "undecided"}) for setting in tuned}
    won = [setting for setting, result in outcome.items() if result == "won"]
    lost = [setting for setting, result in outcome.items() if result == "lost"]
    undecided = [setting for setting, result in outcome.items() if result == "undecided"]

    def names(settings):
        return ", ".join(f"`{setting}`" for setting in settings)

    text = "**DevTest and the setting.** "
    if "alignment" in tuned:
        value = f.number("02: this run's alignment", SETTING_CHOICE, {"setting": "alignment", "current": "True"},
                         "value", "text")
        text += {"won": f"The face crop was chosen on the validation pairs: this run's `{value}` faces won there. ",
                 "lost": f"This run's `{value}` faces **lost** on the validation pairs: re-run with the winner. ",
                 "undecided": f"The choice between centre crops and aligned faces still lacks trials on the "
                              f"validation pairs: this run's `{value}` faces were not chosen on them. "}[outcome["alignment"]]
        if value == "center" and "crop" not in tuned:
            text += ("The centre crop's size (`crop`) is not among the settings tuned on the validation pairs; the "
                     "profile's setting note says how it was chosen. ")
    else:
        text += "The face crop is not among the settings tuned on the validation pairs. "
    if won:
        text += f"Chosen on the validation pairs, by the rule on the page: {names(won)}. "
    if lost:
        text += f"**Not this run's choice** (another value won on the validation pairs): {names(lost)}. "
    if undecided:
        text += (f"Still undecided (trials missing), so this run's value was not chosen on the validation pairs: "
                 f"{names(undecided)}. ")
    return text + "(`02_setting_choice.csv`)"


def cosrelu_findings(folder, profile: str = "", *, synthetic: bool = False) -> FindingsText:
    """Notebook 03: does a margin change accuracy and the race gap against the course's softmax, from scratch
    and on frozen face-encoder features?"""
    f = Findings(folder, profile)
    scratch, frozen = "03_comparisons.csv", "03_frozen_comparisons.csv"
    paragraphs = [
        "**The question.** The course report asked whether a margin (CosReLU, i.e. CosFace with a clamp; here also "
        "CosFace and ArcFace) beats its \"softmax\" on FairFace. That softmax is `cosine_softmax`: normalized "
        "embeddings and weights with no scale; `normsoftmax` adds the scale (s = 30), and on frozen features "
        "`softmax` is a plain linear probe. Each comparison below is head − reference on the same validation "
        "images, paired by seed: overall accuracy and the race gap (best − worst race group's accuracy); for race "
        "classification a group's accuracy is the recall of its label, for gender classification it is how well "
        "people of that group are served (figures `03_accuracy_and_loss`, `03_per_race_final`)."]
    from lib.course_reports import COSRELU_VS_SOFTMAX

    if not synthetic:
        paragraphs.append(f"**The course report's answer**: CosReLU {COSRELU_VS_SOFTMAX['cosrelu']:.3f} vs softmax "
                          f"{COSRELU_VS_SOFTMAX['cosine_softmax']:.3f}, one run each, an ImageNet-pretrained ResNet-18 "
                          "fine-tuned at 224 px: a difference no single pair of runs can resolve.")
    regimes = [("From scratch", "a ResNet-18 from random weights on small images (this page's header)", scratch,
                [("cosrelu", COURSE_SOFTMAX), ("normsoftmax", COURSE_SOFTMAX), ("cosface", "normsoftmax"),
                 ("cosrelu", "normsoftmax"), ("arcface", "normsoftmax")])]
    if f.has(frozen):
        regimes.append(("On frozen dlib face embeddings", "only the head is trained, on a pretrained face "
                        "representation", frozen, [("cosrelu", COURSE_SOFTMAX), ("arcface", COURSE_SOFTMAX),
                                                   ("cosrelu", LINEAR_PROBE), ("arcface", LINEAR_PROBE),
                                                   ("normsoftmax", LINEAR_PROBE)]))
    directions = {}
    for title, how, table, wanted in regimes:
        lines = []
        for target in _targets(f, table):
            present = _pairs(f, table, target)
            for head, reference in wanted:
                if (head, reference) not in present:
                    continue
                lines.append(f"*{target}*: {_margin_line(f, table, target, head, reference)}")
                if (head, reference) == ("cosrelu", COURSE_SOFTMAX):
                    directions[(title, target)] = _direction(f, table, target, head, reference)
        if not lines:  # e.g. a profile that trains one head: nothing to compare in this regime
            paragraphs.append(f"**{title}** ({how}): no head pair of this answer was trained (`{table}` holds "
                              f"{len(f.table(table))} comparisons).")
            continue
        first = f.table(table).iloc[0]
        where0 = {k: first[k] for k in ("target", "quantity", "group", "head_key", "reference_key")}
        paragraphs.append(f"**{title}** ({how}; `{table}`; {_interval_words(f, table, where0)}):\n\n"
                          + "\n".join(f"* {line}." for line in lines))
    if len(regimes) == 1:
        paragraphs.append("**Frozen features.** Not in this profile's results (`03_frozen_comparisons.csv` is "
                          "absent: the pretrained encoder did not run), so only the from-scratch regime is answered.")
    summary = []
    for target in dict.fromkeys(t for _, t in directions):
        scratch_dir = directions.get(("From scratch", target))
        frozen_dir = directions.get(("On frozen dlib face embeddings", target))
        if scratch_dir and frozen_dir and not {scratch_dir, frozen_dir} <= set(VERDICT_WORDS):
            summary.append(f"on {target}, at least one regime gives no verdict for CosReLU against the course's "
                           "softmax (a collapsed head or too few seeds; see the lines above)")
        elif scratch_dir and frozen_dir:
            same = scratch_dir == frozen_dir
            summary.append(f"on {target}, CosReLU against the course's softmax is {_verdict_word(scratch_dir)} from "
                           f"scratch and {_verdict_word(frozen_dir)} on frozen features"
                           + ("" if same else ": **the regime changes the answer**"))
    if summary:
        answer = "; ".join(summary)
        paragraphs.append("**The answer.** " + answer[0].upper() + answer[1:] + ". Against the scaled softmax "
                          "(`normsoftmax`, or the linear probe on frozen features) the margins are compared in the "
                          "lines above: a margin that beats the unscaled course softmax but not a scaled one owes "
                          "its gain to the scale, not to the margin.")
    plateau = _plateau_paragraph(f)
    if plateau:
        paragraphs.append(plateau)
    paragraphs.append(
        "**What it does not show.** Both regimes are far from the course report's (an ImageNet-pretrained "
        "ResNet-18 fine-tuned at 224 px): from scratch the networks are small-image and random-init; frozen, only "
        "a head is trained on dlib's 128-d descriptors, whose training data's demographics are unknown. The "
        "intervals cover what the table's `interval` column names, and no more; the labels are perceived race and "
        "gender. Notebook 04 asks whether any group is served worse.")
    if synthetic and f.has("03_planted_order.csv"):
        paragraphs.append(_planted_paragraph(f, "03_planted_order.csv", "race"))
    return f.text(paragraphs)


PLATEAU, LONGER_RUN = "03_plateau.csv", "03_longer_run.csv"


def _plateau_paragraph(f: Findings) -> str | None:
    """Were the from-scratch runs trained to a plateau? The (target, head) combinations still gaining more than
    0.01 over their last quarter of epochs (``03_plateau.csv``) and what twice the epochs did to the one run
    trained again (``03_longer_run.csv``)."""
    if not f.has(PLATEAU) or f.table(PLATEAU).empty:
        return None
    rows = f.table(PLATEAU)
    epochs = "/".join(dict.fromkeys(rows["epochs"]))
    learning = rows[rows["still learning"] == "True"]
    largest = max(rows.to_dict("records"), key=lambda r: float(r["last-quarter gain"]) if r["last-quarter gain"]
                  else float("-inf"))  # a run of one epoch has no gain

    def gain(row) -> str:
        where = {"target": row["target"], "head": row["head"]}
        return f.number(f"{PLATEAU}: {row['target']} {row['head']} last-quarter gain", PLATEAU, where,
                        "last-quarter gain", "difference")

    text = f"**Trained long enough?** (from scratch; `{PLATEAU}`) "
    if not (rows["last-quarter gain"] != "").any():
        text += f"With {epochs} epoch(s) there is no earlier epoch to measure a gain from: no plateau is shown."
    elif len(learning):
        text += (f"{len(learning)} of {len(rows)} (target, head) combinations gained more than 0.01 in mean validation "
                 f"accuracy over the last quarter of their {epochs} epochs: "
                 + ", ".join(f"{r['target']} `{r['head']}` ({gain(r)})" for r in learning.to_dict("records"))
                 + "; the comparisons involving them compare heads that were still learning when training stopped.")
    else:
        text += (f"Every (target, head) combination gained at most 0.01 in mean validation accuracy over the last "
                 f"quarter of its {epochs} epochs (the most: {largest['target']} `{largest['head']}`, {gain(largest)}).")
    if f.has(LONGER_RUN):
        longer = f.table(LONGER_RUN)
        overall = longer[longer["group"] == "overall"]
        if len(overall) == 1:
            r = overall.iloc[0]
            where = {"group": "overall"}
            name = f"{LONGER_RUN}: {r['target']} {r['head']} seed {r['seed']}"
            text += (f" Trained again with twice the epochs (`{LONGER_RUN}`, figure `03_longer_run`), {r['target']} "
                     f"`{r['head']}` seed {r['seed']} reaches "
                     f"{f.number(name + ' longer accuracy', LONGER_RUN, where, 'longer accuracy')} after "
                     f"{r['longer epochs']} epochs against {f.number(name + ' accuracy', LONGER_RUN, where, 'accuracy')} "
                     f"after {r['epochs']} ({f.number(name + ' difference', LONGER_RUN, where, 'difference', 'difference')}): "
                     + f.choose(name + " beyond 0.01", LONGER_RUN, where, "beyond threshold",
                                {"True": "**more training changes its accuracy by more than 0.01**, so the comparisons "
                                         "that rest on this head are not settled at this profile's epochs.",
                                 "False": "more training would not change it by more than 0.01."}, numeric=False))
        elif longer.empty:
            text += " No run was trained again with twice the epochs for this profile."
    return text


def _planted_paragraph(f: Findings, table: str, target: str, note: bool = True) -> str:
    rows = f.table(table)
    lines = []
    for regime, head in rows.loc[rows["target"] == target, ["regime", "head"]].itertuples(index=False):
        where = {"target": target, "regime": regime, "head": head}
        rho = f.number(f"{table}: {regime} {head} ρ", table, where, "spearman_rho", "rho")
        hit = f.choose(f"{table}: {regime} {head} recovered", table, where, "spearman_rho",
                       lambda r: "recovered" if r <= -0.5 else "**not recovered**")
        lines.append(f"`{head}` ({regime}) ρ = {rho}, {hit}")
    return (f"**Planted answer.** {SYNTHETIC_NOTE + ' ' if note else ''}Planted: groups A (easiest) to G (hardest), so {target} "
            "recall should fall with the planted difficulty (Spearman's ρ near −1; *recovered* when ρ ≤ −0.5; "
            f"`{table}`): " + "; ".join(lines) + ".")


def fairness_findings(folder, profile: str = "", *, synthetic: bool = False) -> FindingsText:
    """Notebook 04: is any group served worse, and does a margin change that, in each regime; and on LFW."""
    f = Findings(folder, profile)
    scratch, frozen = "03_comparisons.csv", "03_frozen_comparisons.csv"
    groups = "04_group_accuracy.csv"
    group_word = "planted group" if synthetic else "race"
    paragraphs = [
        f"**The question.** Is gender read equally well for people of every {group_word}, and does a margin head "
        "change how unequal it is — from scratch and on frozen face features? And on LFW face verification, at "
        "one threshold for everyone, does either gender get more false matches or false non-matches?"]
    regimes = [("from scratch", scratch)] + ([("frozen dlib features", frozen)] if f.has(frozen) else [])
    for regime, table in regimes:
        if "gender" not in _targets(f, table):
            continue
        lines, verdicts = [], []
        present = _pairs(f, table, "gender")
        for head, reference in [("cosrelu", COURSE_SOFTMAX), ("arcface", COURSE_SOFTMAX), ("cosface", "normsoftmax"),
                                ("cosrelu", "normsoftmax"), ("arcface", "normsoftmax"), ("cosrelu", LINEAR_PROBE),
                                ("arcface", LINEAR_PROBE)]:
            if (head, reference) in present:
                gap = _Comparison(f, table, "gender", "gap", head, reference)
                lines.append(f"`{gap.head}` − `{gap.reference}` gap {gap.difference()}, {gap.verdict}")
                verdicts.append(gap.verdict_cell)
        worst = ""
        if f.has(groups):
            worst = " " + _worst_groups(f, groups, regime)
        first = f.table(table).iloc[0]
        where0 = {k: first[k] for k in ("target", "quantity", "group", "head_key", "reference_key")}
        figure = "04_gender_by_race" if table == scratch else "04_frozen_gender_by_race"
        paragraphs.append(f"**Gender accuracy across {group_word}s, {regime}** (`{table}`, "
                          f"{_interval_words(f, table, where0)}; figure `{figure}`).{worst} Does a margin "
                          f"change the gap (best − worst group, head − reference)? " + "; ".join(lines) + ". "
                          + _gap_answer(verdicts, regime))
    if len(regimes) == 1:
        paragraphs.append("**Frozen features.** Not in this profile's results (`03_frozen_comparisons.csv` absent).")
    paragraphs += _lfw_paragraphs(f, synthetic)
    paragraphs.append(
        "**What it does not show.** A gap's size alone is no proof of a disparity (noise spreads groups apart); the "
        "verdicts say which differences the data resolve under the intervals named. The FairFace labels are "
        "perceived; LFW's gender labels are third-party, binary, per image, and women are a minority of LFW's "
        "people (counted in the LFW section), so their rates rest on fewer identities.")
    if synthetic and f.has("03_planted_order.csv"):
        paragraphs.append(_planted_paragraph(f, "03_planted_order.csv", "race"))
    return f.text(paragraphs)


def _gap_answer(verdicts: list[str], regime: str) -> str:
    """What the quoted gap verdicts of one regime add up to, in words."""
    narrower, wider = verdicts.count("narrower"), verdicts.count("wider")
    if not verdicts:
        return ""
    if narrower + wider == 0:
        return (f"**{regime.capitalize()}, no margin head changes the gap resolvably** (none of the "
                f"{len(verdicts)} comparisons).")
    direction = ("in both directions, so whether a margin narrows the gap depends on the head and the reference"
                 if narrower and wider else "every resolved one narrower" if narrower else "every resolved one wider")
    return (f"**{regime.capitalize()}, {narrower + wider} of the {len(verdicts)} comparisons are resolved**: "
            f"{narrower} narrower, {wider} wider — {direction}.")


def _worst_groups(f: Findings, table: str, regime: str) -> str:
    rows = f.table(table)
    rows = rows[(rows["regime"] == regime) & (rows["target"] == "gender")]
    parts = []
    for head in dict.fromkeys(rows["head"]):
        where = {"regime": regime, "target": "gender", "head": head}
        parts.append(f"`{head}` {f.number(f'{table}: {regime} {head} worst group', table, where, 'worst group', 'text')} "
                     f"{f.number(f'{table}: {regime} {head} worst accuracy', table, where, 'min accuracy')} vs "
                     f"{f.number(f'{table}: {regime} {head} best group', table, where, 'best group', 'text')} "
                     f"{f.number(f'{table}: {regime} {head} best accuracy', table, where, 'max accuracy')}")
    return ("Worst vs best group per head (mean over seeds; `" + table + "`): " + "; ".join(parts) + ".") if parts else ""


def _ratio(f: Findings, table: str, where: dict, name: str) -> str:
    return f"{f.number(name, table, where, 'estimate', 'ratio')} {f.interval(name, table, where, 'lower', 'upper', 'ratio')}"


COMPARATOR_WORDS = {"euclidean": "the Euclidean distance of the raw descriptors, dlib's own comparator",
                    "cosine": "the cosine of the L2-normalized descriptors, as for the trained heads"}


def _comparators(f: Findings, table: str) -> list[str | None]:
    """The comparators a dlib audit table holds (dlib's own first), or ``[None]`` for a table from before the
    audit named its comparator (it scored by cosine)."""
    rows = f.table(table)
    if "comparator" not in rows.columns:
        return [None]
    present = list(dict.fromkeys(rows["comparator"]))
    return sorted(present, key=lambda c: (c != "euclidean", present.index(c)))


def _dlib_paragraph(f: Findings, rates_table: str, ratios_table: str, comparator: str | None) -> str:
    """dlib's audit at overall FMR 0.001 (else its first target): FMR and FNMR per group and the FMR ratio."""
    rates, ratio_rows = f.table(rates_table), f.table(ratios_table)
    chosen = {"comparator": comparator} if comparator else {}
    if comparator:
        rates, ratio_rows = rates[rates["comparator"] == comparator], ratio_rows[ratio_rows["comparator"] == comparator]
    targets = list(dict.fromkeys(rates["target_fmr"]))
    target = next((t for t in targets if float(t) == 0.001), targets[0])
    groups = [g for g in dict.fromkeys(rates["group"]) if g not in ("overall", "cross-group", "unknown")]
    label = f" ({comparator})" if comparator else ""
    parts = []
    for group in groups:
        where = {**chosen, "target_fmr": target, "group": group}
        parts.append(f"{group}: FMR {f.number(f'{rates_table}{label}: {group} FMR at {target}', rates_table, where, 'fmr', 'rate')}, "
                     f"FNMR {f.number(f'{rates_table}{label}: {group} FNMR at {target}', rates_table, where, 'fnmr', 'rate')}")
    text = (f"**LFW verification, dlib's pretrained encoder, scored by "
            f"{COMPARATOR_WORDS.get(comparator, comparator) if comparator else 'the cosine of normalized descriptors'}** "
            f"(all of LFW, one threshold at overall FMR {target}; `{rates_table}`): " + "; ".join(parts) + ".")
    for rate, errors in (("fmr", "false matches"), ("fnmr", "false non-matches")):
        rows = ratio_rows[(ratio_rows["rate"] == rate) & (ratio_rows["target_fmr"].astype(float) == float(target))]
        if len(rows) != 1:
            continue
        ratio = rows["ratio"].iloc[0]
        where = {**chosen, "target_fmr": rows["target_fmr"].iloc[0], "rate": rate}
        name = f"{ratios_table}{label}: {rate.upper()} {ratio} at {target}"
        numerator, denominator = ratio.split("/") if "/" in ratio else ("the first group", "the second group")
        low = f.value(f"{name} (lower bound, for the words)", ratios_table, where, "lower")
        high = f.value(f"{name} (upper bound, for the words)", ratios_table, where, "upper")
        text += (f" {rate.upper()} ratio {ratio}: {_ratio(f, ratios_table, where, name)}"
                 + (f" — its interval lies above 1: the {numerator} group gets more {errors} at the same threshold." if low > 1
                    else f" — its interval lies below 1: the {denominator} group gets more {errors} at the same threshold."
                    if high < 1 else " — its interval includes 1."))
    return text


RATIO_TESTS = "04_frvt_trained_ratio_tests.csv"
COMPARATOR_TEST = "04_frvt_dlib_comparator_test.csv"
DLIB_NORMS = "04_frvt_dlib_norms.csv"


def _ratio_test_clauses(f: Findings, target: str) -> list[str]:
    """The paired identity-bootstrap tests of two heads' FMR ratios at overall FMR ``target`` (the table of
    :func:`lib.frvt.compare_head_ratios`), one clause each; none when the table is absent."""
    if not f.has(RATIO_TESTS):
        return []
    rows = f.table(RATIO_TESTS)
    rows = rows[(rows["rate"] == "fmr") & (rows["target_fmr"].astype(float) == float(target))]
    clauses = []
    for row in rows.to_dict("records"):
        where = {"head": row["head"], "reference": row["reference"], "target_fmr": row["target_fmr"], "rate": "fmr"}
        name = f"{RATIO_TESTS}: {row['head']} vs {row['reference']} FMR ratio at {target}"
        pair = f"`{row['head']}` against `{row['reference']}`"
        if row["p_value"] == "":
            clauses.append(f"{pair}: untestable (no bootstrap replicate with both ratios finite)")
            continue
        clauses.append(f"{pair}, ratio of the two ratios {f.number(name, RATIO_TESTS, where, 'ratio_of_ratios', 'ratio')} "
                       f"{f.interval(name, RATIO_TESTS, where, 'lower', 'upper', 'ratio')}, Holm-adjusted "
                       f"p = {f.number(name + ' (Holm p)', RATIO_TESTS, where, 'p_adjusted', 'p')}: "
                       + f.choose(name + " verdict", RATIO_TESTS, where, "verdict",
                                  {"lower": f"`{row['head']}`'s ratio is the lower",
                                   "higher": f"`{row['head']}`'s ratio is the higher",
                                   "not resolved": "not resolved"}))
    return clauses


def _comparator_clause(f: Findings, target: str = "0.001") -> str:
    """For the index: the paired test of the two comparators' ratios in one clause, and which one counts."""
    if not f.has(COMPARATOR_TEST):
        return ""
    rows = f.table(COMPARATOR_TEST)
    rows = rows[(rows["rate"] == "fmr") & (rows["target_fmr"].astype(float) == float(target))]
    if len(rows) != 1:
        return ""
    where = {"target_fmr": rows["target_fmr"].iloc[0], "rate": "fmr"}
    name = f"{COMPARATOR_TEST}: FMR ratio at {target} (index)"
    return (f"; the two differ by a factor {f.number(name, COMPARATOR_TEST, where, 'ratio_of_ratios', 'ratio')} "
            f"{f.interval(name, COMPARATOR_TEST, where, 'lower', 'upper', 'ratio')} (paired, Holm-adjusted p = "
            f"{f.number(name + ' (Holm p)', COMPARATOR_TEST, where, 'p_adjusted', 'p')})"
            + f.choose(name + " (resolved?)", COMPARATOR_TEST, where, "p_adjusted",
                       lambda p: ", so the comparator audited changes the answer" if p < 0.05 else
                       ", a difference the data do not resolve")
            + "; the audit's conclusion rests on the Euclidean distance, the comparator dlib's users run")


def _comparator_paragraph(f: Findings, target: str = "0.001") -> str | None:
    """Whether dlib's demographic answer depends on the comparator audited (the paired test of
    :func:`lib.frvt.compare_comparator_ratios`), why (the descriptors' norms per group) and which comparator the
    page's conclusions rest on."""
    if not f.has(COMPARATOR_TEST):
        return None
    rows = f.table(COMPARATOR_TEST)
    rows = rows[(rows["rate"] == "fmr") & (rows["target_fmr"].astype(float) == float(target))]
    if len(rows) != 1 or "euclidean_ratio" not in rows.columns:
        return None
    where = {"target_fmr": rows["target_fmr"].iloc[0], "rate": "fmr"}
    ratio = rows["ratio"].iloc[0]
    name = f"{COMPARATOR_TEST}: FMR {ratio} at {target}"
    text = (f"**Does the comparator change dlib's answer?** At overall FMR {target} the FMR ratio {ratio} is "
            f"{f.number(name + ' (Euclidean)', COMPARATOR_TEST, where, 'euclidean_ratio', 'ratio')} with the Euclidean "
            f"distance and {f.number(name + ' (cosine)', COMPARATOR_TEST, where, 'cosine_ratio', 'ratio')} with the "
            f"cosine; the ratio of the two is {f.number(name, COMPARATOR_TEST, where, 'ratio_of_ratios', 'ratio')} "
            f"{f.interval(name, COMPARATOR_TEST, where, 'lower', 'upper', 'ratio')} (the same people resampled for "
            f"both, Holm-adjusted p = {f.number(name + ' (Holm p)', COMPARATOR_TEST, where, 'p_adjusted', 'p')}; "
            f"`{COMPARATOR_TEST}`)"
            + f.choose(name + " (resolved?)", COMPARATOR_TEST, where, "p_adjusted",
                       lambda p: ": **which comparator is audited changes the demographic answer**." if p < 0.05
                       else ": the data do not resolve a difference between the comparators."))
    if f.has(DLIB_NORMS):
        norms = f.table(DLIB_NORMS)
        groups = [g for g in norms["group"] if g != "all"]
        if len(groups) == 2:
            means = {g: f.value(f"{DLIB_NORMS}: mean norm of {g}", DLIB_NORMS, {"group": g}, "mean") for g in groups}
            longer, shorter = sorted(groups, key=means.get, reverse=True)
            text += (f" {longer} descriptors are longer on average than {shorter} ones (mean norm "
                     f"{f.number(f'{DLIB_NORMS}: {longer} mean norm', DLIB_NORMS, {'group': longer}, 'mean', 'ratio')} "
                     f"against {f.number(f'{DLIB_NORMS}: {shorter} mean norm', DLIB_NORMS, {'group': shorter}, 'mean', 'ratio')}; "
                     f"`{DLIB_NORMS}`), so at the same angle {longer.lower()} pairs lie farther apart: a distance threshold "
                     f"lets fewer of their impostor pairs through and rejects more of their genuine pairs than the "
                     f"cosine does.")
    return text + (" The conclusions about dlib rest on the Euclidean distance, the comparator its users run; the "
                   "cosine rows only connect it with the trained heads.")


DLIB_PROLIFIC = "04_frvt_dlib_prolific.csv"


def _prolific_sentence(f: Findings, target: str) -> str:
    """How much dlib's FNMR ratio (dlib's own comparator) owes to the people with the most genuine pairs: the
    ratio on all pairs beside the ratio with each person's genuine pairs capped (point estimates)."""
    if not f.has(DLIB_PROLIFIC):
        return ""
    rows = f.table(DLIB_PROLIFIC)
    rows = rows[(rows["comparator"] == "euclidean") & rows["group"].str.startswith("ratio ")
                & (rows["operating_point"] == f"overall FMR {target}")]
    variants = list(rows["variant"])
    capped = next((v for v in variants if v.startswith("genuine pairs capped")), None)
    if "all pairs" not in variants or capped is None:
        return ""
    group = rows["group"].iloc[0]
    base = {"comparator": "euclidean", "operating_point": f"overall FMR {target}", "group": group}
    name = f"{DLIB_PROLIFIC}: Euclidean FNMR {group} at {target}"
    return (f" **The most prolific people.** All-vs-all genuine pairs grow with the square of a person's image "
            f"count, so a few people dominate a group's FNMR: dlib's FNMR {group} (Euclidean) is "
            f"{f.number(name + ', all pairs', DLIB_PROLIFIC, {**base, 'variant': 'all pairs'}, 'fnmr', 'ratio')} on all "
            f"pairs and {f.number(name + ', capped', DLIB_PROLIFIC, {**base, 'variant': capped}, 'fnmr', 'ratio')} with "
            f"{capped} (point estimates; `{DLIB_PROLIFIC}`, the people behind it in "
            f"`04_frvt_dlib_top_identities.csv`).")


def _lfw_paragraphs(f: Findings, synthetic: bool) -> list[str]:
    paragraphs = []
    trained, dlib_ratios, dlib_rates = "04_frvt_trained_ratios.csv", "04_frvt_dlib_ratios.csv", "04_frvt_dlib_rates.csv"
    if f.has(trained):
        rows = f.table(trained)
        fmr = rows[rows["rate"] == "fmr"]
        target = min(fmr["target_fmr"], key=float)
        ratio = fmr["ratio"].iloc[0]
        parts = []
        for head in dict.fromkeys(fmr["head"]):
            where = {"head": head, "target_fmr": target, "rate": "fmr"}
            parts.append(f"`{head}` {_ratio(f, trained, where, f'{trained}: {head} FMR {ratio} at {target}')}")
        paragraphs.append(
            f"**LFW verification, trained heads** (DevTest, every pair; one threshold per model at overall FMR "
            f"{target}; `{trained}`, identity-bootstrap 95 % intervals; DET curves in figure "
            f"`04_lfw_*_det_trained`): the false-match-rate ratio {ratio} is "
            + "; ".join(parts) + ". " + (
                "Do two heads' ratios differ? The same people resampled for both heads (paired identity bootstrap, "
                f"`{RATIO_TESTS}`): " + "; ".join(tests) + "." if (tests := _ratio_test_clauses(f, target)) else
                "Intervals that do not overlap suggest a difference between heads; no paired test between heads "
                f"was run for this profile (`{RATIO_TESTS}` absent)."))
    if f.has(dlib_ratios) and f.has(dlib_rates):
        for comparator in _comparators(f, dlib_rates):
            paragraphs.append(_dlib_paragraph(f, dlib_rates, dlib_ratios, comparator))
        paragraphs += [text for text in (_comparator_paragraph(f), _prolific_sentence(f, "0.001").strip()) if text]
    return paragraphs


def data_audit_findings(folder, profile: str = "", *, synthetic: bool = False) -> FindingsText:
    """Notebook 01: what in the data limits what the later notebooks can claim."""
    f = Findings(folder, profile)
    t = "01_audit.csv"

    def n(quantity: str, kind: str = "count") -> str:
        return f.number(f"01: {quantity}", t, {"quantity": quantity}, "value", kind)

    paragraphs = [
        "**The question.** Can the later notebooks trust these data: are the splits and protocols clean, and how "
        "large are the groups the fairness analysis compares? (`01_audit.csv`)",
        f"**FairFace.** {n('FairFace images')} images; the smallest race group's share of the validation split is "
        f"{n('smallest validation race share', 'accuracy')} ({n('smallest validation race group', 'text')}), the "
        f"largest {n('largest validation race share', 'accuracy')} ({n('largest validation race group', 'text')}), "
        "so per-group accuracies rest on different numbers of images. "
        f"Sets of byte-identical images spanning train and validation: "
        f"{n('byte-identical sets across train and validation')}; sets whose copies carry conflicting labels: "
        f"{n('byte-identical sets with conflicting labels')} (table and figure `01_fairface_duplicates`).",
        f"**LFW.** View 1's DevTrain and DevTest share {n('View 1 DevTrain/DevTest shared identities')} identities; "
        f"the DevTrain people share {n('View 1 DevTrain people in View 2')} identities with View 2's pairs"
        + f.choose("01: View 1 DevTrain people in View 2 (any?)", t, {"quantity": "View 1 DevTrain people in View 2"},
                   "value", lambda shared: ", so models trained on DevTrain are scored on View 1 DevTest, not View 2"
                   if shared > 0 else ", so View 2 would also be a clean test set for them")
        + " (section *View 1 vs View 2*).",
        "**What it does not show.** The audit counts; it does not say whether a duplicate or a group's size changes "
        "a result: notebooks 03 and 04 give intervals that cover the seeds (and, where the table says so, the "
        "sampling of images), not the group sizes directly.",
    ]
    if synthetic:
        checks = []
        for found, planted in [("byte-identical sets across train and validation",
                                "planted byte-identical sets across train and validation"),
                               ("byte-identical sets with conflicting labels",
                                "planted byte-identical sets with conflicting labels")]:
            planted_count = f.value(f"01: {planted}", t, {"quantity": planted}, "value")
            checks.append(f"{n(planted)} {found} planted, "
                          + f.choose(f"01: {found} (recovered?)", t, {"quantity": found}, "value",
                                     lambda v, p=planted_count: "all found" if v == p else f"**{v:.0f} found**"))
        paragraphs.append(f"**Planted answer.** {SYNTHETIC_NOTE} " + "; ".join(checks) + ". Its groups (`Group A` "
                          "easiest … `Group G` hardest) carry the planted difficulty that notebooks 03 and 04 check.")
    return f.text(paragraphs)


NOTEBOOK_FINDINGS = {"01_data_audit": data_audit_findings, "02_sphereface": sphereface_findings,
                     "03_cosrelu_vs_softmax": cosrelu_findings, "04_fairness": fairness_findings}


def series_findings(folder, profile: str = "", *, stems=(), synthetic: bool = False) -> FindingsText:
    """The index page's answers, 5–8 sentences, for the notebooks in ``stems`` that were executed: every
    number quoted from the tables in ``folder`` (a required table that is missing stops the render)."""
    f = Findings(folder, profile)
    sentences = []
    if synthetic:
        sentences.append(SYNTHETIC_NOTE)
    if "02_sphereface" in stems:
        heads, comparisons = "02_heads.csv", "02_comparisons.csv"
        rows = f.table(comparisons)
        parts = []
        for name in [c for c in rows["comparison"] if c.endswith("− softmax") and c.split(" ")[0] in
                     ("sphereface", "cosface")]:
            where = {"comparison": name}
            shown = _verdict_02(f, comparisons, name)
            parts.append(f"{name} {f.number(f'02: {name}', comparisons, where, 'mean difference', 'difference')} "
                         f"{f.interval(f'02: {name}', comparisons, where, '95% CI low', '95% CI high')} ({shown})")
        course = (f"; the course report's loss, its bugs reproduced, reaches "
                  f"{f.number('02: course loss, 10-fold', heads, {'head': 'course_sphereface'}, 'acc_10fold')}"
                  if (f.table(heads)["head"] == "course_sphereface").any() else "")
        if parts:
            sentences.append("**Face verification, trained from scratch (notebook 02, LFW View 1 DevTest):** "
                             "angular margin minus plain softmax, in accuracy of pairs: " + "; ".join(parts) + course
                             + ".")
    if "03_cosrelu_vs_softmax" in stems:
        scratch, frozen = "03_comparisons.csv", "03_frozen_comparisons.csv"
        for regime, table in [("from scratch", scratch)] + ([("on frozen dlib face features", frozen)]
                                                            if f.has(frozen) else []):
            parts = []
            for target in _targets(f, table):
                if ("cosrelu", COURSE_SOFTMAX) in _pairs(f, table, target):
                    c = _Comparison(f, table, target, "accuracy", "cosrelu", COURSE_SOFTMAX)
                    parts.append(f"{target} {c.difference()} ({c.verdict})")
            probe = ""
            if table == frozen and ("cosrelu", LINEAR_PROBE) in _pairs(f, table, "race"):
                c = _Comparison(f, table, "race", "accuracy", "cosrelu", LINEAR_PROBE)
                course = _Comparison(f, table, "race", "accuracy", "cosrelu", COURSE_SOFTMAX)
                probe = (f"; against a plain linear probe on the same features it is {c.difference()} on race "
                         f"({c.verdict})")
                if course.verdict_cell == "higher" and c.verdict_cell == "lower":
                    probe += (", so on these features the margin beats the course's unscaled softmax but not a "
                              "plain linear classifier")
            if parts:
                first = f.table(table).iloc[0]
                where0 = {k: first[k] for k in ("target", "quantity", "group", "head_key", "reference_key")}
                sentences.append(f"**FairFace classification {regime} (notebook 03):** CosReLU (= CosFace) minus "
                                 "the course report's unscaled softmax, in accuracy: " + "; ".join(parts) + probe
                                 + f" ({_interval_words(f, table, where0)}).")
    if "04_fairness" in stems:
        scratch, frozen = "03_comparisons.csv", "03_frozen_comparisons.csv"
        parts = []
        for regime, table in [("from scratch", scratch)] + ([("on frozen features", frozen)] if f.has(frozen) else []):
            if "gender" in _targets(f, table) and ("cosrelu", COURSE_SOFTMAX) in _pairs(f, table, "gender"):
                c = _Comparison(f, table, "gender", "gap", "cosrelu", COURSE_SOFTMAX)
                parts.append(f"{regime} {c.difference()} ({c.verdict})")
        if parts:
            sentences.append("**Fairness (notebook 04):** the gap in gender accuracy between the best- and the "
                             "worst-served race group, CosReLU minus the course's softmax: " + "; ".join(parts) + ".")
        trained = "04_frvt_trained_ratios.csv"
        if f.has(trained):
            rows = f.table(trained)
            fmr = rows[rows["rate"] == "fmr"]
            target = min(fmr["target_fmr"], key=float)
            ratio = fmr["ratio"].iloc[0]
            parts = [f"`{h}` {_ratio(f, trained, {'head': h, 'target_fmr': target, 'rate': 'fmr'}, f'{trained}: {h} FMR {ratio} at {target}')}"
                     for h in ("softmax", "cosface") if ((fmr["head"] == h) & (fmr["target_fmr"] == target)).any()]
            if parts:
                tests = _ratio_test_clauses(f, target)
                sentences.append(f"On LFW at one threshold per model (overall false-match rate {target}), the "
                                 f"{ratio} false-match-rate ratio is " + " vs ".join(parts)
                                 + " (identity-bootstrap 95 % intervals of each head)"
                                 + ("; tested on the same resampled people, " + "; ".join(tests) if tests else "")
                                 + ".")
        ratios = "04_frvt_dlib_ratios.csv"
        if f.has(ratios):
            parts = []
            for comparator in _comparators(f, ratios):
                rows = f.table(ratios)
                rows = rows[rows["comparator"] == comparator] if comparator else rows
                fmr = rows[(rows["rate"] == "fmr") & (rows["target_fmr"].astype(float) == 0.001)]
                if len(fmr) == 1:
                    where = {**({"comparator": comparator} if comparator else {}), "target_fmr": fmr["target_fmr"].iloc[0],
                             "rate": "fmr"}
                    name = f"{ratios}: {comparator or 'cosine'} FMR ratio at 0.001"
                    parts.append(_ratio(f, ratios, where, name)
                                 + (f" by {COMPARATOR_WORDS.get(comparator, comparator).split(',')[0]}" if comparator else ""))
            if parts:
                sentences.append(f"dlib's pretrained encoder, audited on all of LFW at overall FMR 0.001, gives a "
                                 f"{fmr['ratio'].iloc[0]} false-match-rate ratio of " + "; ".join(parts)
                                 + _comparator_clause(f) + ".")
    if synthetic and "03_cosrelu_vs_softmax" in stems and f.has("03_planted_order.csv"):
        sentences.append(_planted_paragraph(f, "03_planted_order.csv", "race", note=False))
    if len(sentences) > (1 if synthetic else 0):
        sentences.append("Every number is read from the result tables when this page is rendered; each notebook's "
                         "*Findings* section says under which regime, how sure (what its intervals cover) and what "
                         "it does not show.")
    return f.text(sentences)
