"""Figures and tables of the fairness notebooks: per-group accuracy, disparities, curves over seeds,
confusion matrices, verification error rates and head-vs-head tests.

Every figure is meant to be read without the code: titled, axes labelled with what and in which
unit, legends naming the heads or groups, intervals drawn. Functions draw on the current
``lib.plots.setup_style()`` style (call it once in the notebook) and return the ``Axes``, ``Figure``
or ``DataFrame`` they made; exporting is the caller's job (``lib.plots.save_figure``).

Input tables are the outputs of :mod:`lib.fairness` (``group_accuracy``, ``group_accuracy_over_seeds``,
``disparity_summary``, ``disparity_over_seeds``, ``verification_error_rates``, ``per_group_roc``,
``mcnemar_by_group``), stacked with a ``head`` column where several heads are compared. Training
histories are *long* tables: one row per ``(head, seed, epoch[, group])`` with the metric in a column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from lib.fairness import MIXED, DisparitySummary, McNemarResult, VerificationErrorRates
from lib.verification import summarize_interval

__all__ = [
    "head_colors",
    "forest_plot",
    "difference_forest",
    "disparity_table",
    "style_disparity_table",
    "per_group_accuracy_by_epoch",
    "curves_with_band",
    "confusion_matrices",
    "shared_legend",
    "error_rate_plot",
    "per_group_roc_plot",
    "format_p_value",
    "significance_marker",
    "mcnemar_table",
]

DISPARITY_METRICS = ("gap", "ratio", "std", "ser")
DISPARITY_HEADERS = {
    "gap": "gap (max − min)",
    "ratio": "ratio (min / max)",
    "std": "std of groups",
    "ser": "SER (max / min error)",
}
SIGNIFICANCE_LEVELS = ((0.001, "***"), (0.01, "**"), (0.05, "*"))
NOT_SIGNIFICANT = "n.s."
BAND_ALPHA = 0.2


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------
def _require_columns(frame: pd.DataFrame, columns, what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [column for column in columns if column is not None and column not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; present: {list(frame.columns)}")


def _ordered(values, order=None, what: str = "values") -> list:
    """The distinct ``values`` in order of first appearance, or as listed in ``order``.

    As in :mod:`lib.fairness`, ``order`` must list every value present (a forgotten one is an error,
    not a silently dropped series) and may list absent ones, which are left out (e.g. ``RACES``).
    """
    present = list(pd.unique(pd.Series(values)))
    if order is None:
        return present
    order = list(order)
    unknown = [value for value in present if value not in order]
    if unknown:
        raise ValueError(
            f"{what} {unknown[:5]} are not in the given order {order}; filter the rows or extend the order"
        )
    return [value for value in order if value in present]


def _check_unique(frame: pd.DataFrame, keys: list, what: str) -> None:
    duplicated = frame.duplicated(keys, keep=False)
    if duplicated.any():
        example = frame.loc[duplicated, keys].iloc[0].to_dict()
        raise ValueError(
            f"{what} has several rows per {keys} (e.g. {example}); filter or aggregate them first "
            "(a seed column, if any, must be named with `seed=`)"
        )


def head_colors(heads: Sequence) -> dict:
    """One colour-blind-safe colour per head (or group), in the given order; the same in every figure."""
    heads = list(heads)
    palette = sns.color_palette("colorblind", n_colors=max(len(heads), 1))
    return dict(zip(heads, palette))


def _mean_std_over_seeds(frame: pd.DataFrame, keys: list, x: str, y: str, seed: str | None) -> pd.DataFrame:
    """Per ``keys + [x]``: mean, sample std (ddof=1; NaN with one seed) and count of ``y`` over seeds.

    Rows with a missing ``y`` are dropped first (epochs without evaluation when ``eval_every > 1``), so
    lines join the evaluated epochs instead of breaking.
    """
    _require_columns(frame, [*keys, x, y, seed], "history")
    _check_unique(frame, [*keys, x] + ([seed] if seed else []), "history")
    values = pd.to_numeric(frame[y], errors="raise").astype(np.float64)
    if values.isna().all():
        raise ValueError(f"history column {y!r} holds no values")
    return (
        frame.assign(**{y: values})
        .dropna(subset=[y])
        .groupby([*keys, x], sort=False, observed=True)[y]
        .agg(mean="mean", std="std", n_seeds="count")
        .reset_index()
        .sort_values([*keys, x], kind="stable")
    )


def _line_with_band(ax: plt.Axes, curve: pd.DataFrame, x: str, color, label: str) -> None:
    """Mean as a line, mean ± std as a translucent band (no band where std is undefined)."""
    xs, mean, std = curve[x].to_numpy(), curve["mean"].to_numpy(), curve["std"].to_numpy()
    ax.plot(xs, mean, color=color, label=label, marker="o" if len(xs) <= 20 else None, markersize=3)
    if np.isfinite(std).any():
        ax.fill_between(xs, mean - std, mean + std, color=color, alpha=BAND_ALPHA, linewidth=0)


def _seed_phrase(n_seeds: int) -> str:
    return "one seed, no band" if n_seeds <= 1 else f"mean ± std over {n_seeds} seeds"


def _pretty(name: str) -> str:
    return str(name).replace("_", " ")


def _sentence(text: str) -> str:
    """First letter upper-cased, the rest kept (``"LFW accuracy"`` stays as is)."""
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------------------------------
# Per-group accuracy: forest plot
# --------------------------------------------------------------------------------------------------
def forest_plot(
    table: pd.DataFrame,
    group_col: str = "group",
    estimate: str = "accuracy",
    lower: str = "lower",
    upper: str = "upper",
    by: str | None = "head",
    *,
    order=None,
    by_order=None,
    overall: Mapping | bool = True,
    interval_label: str = "95% interval",
    chance: float | None = None,
    ax: plt.Axes | None = None,
    title: str | None = None,
    xlabel: str | None = None,
) -> plt.Axes:
    """Per-group estimates with interval whiskers, one colour per head, heads dodged vertically.

    ``table``: one row per ``(by, group)``, e.g. ``group_accuracy`` or ``group_accuracy_over_seeds``
    tables stacked with a ``head`` column (``by=None`` for a single head). Groups run down the y axis in
    ``order`` (e.g. ``lib.labels.RACES``), the first at the top; heads appear in ``by_order``.

    ``overall`` draws a dashed vertical line per head at its overall accuracy: ``True`` computes it as
    the ``n``-weighted mean of the group estimates (= the accuracy on all samples when the groups
    partition them; the plain mean of the groups when there is no ``n`` column), a mapping
    ``head → value`` gives it, ``False`` draws none. Each head's points form one errorbar container.
    ``chance`` (e.g. 1/7 for seven classes) draws a grey dotted line labelled as the chance level.
    """
    _require_columns(table, [group_col, estimate, lower, upper, by], "table")
    if by is None:
        table = table.assign(_series=estimate)
        by = "_series"
    _check_unique(table, [by, group_col], "table")
    est, lo, hi = (table[column].to_numpy(dtype=np.float64) for column in (estimate, lower, upper))
    if np.any(lo > est) or np.any(hi < est):  # NaN bounds compare False: no whisker, no error
        raise ValueError(f"every row needs {lower} ≤ {estimate} ≤ {upper}; check the interval columns")
    groups = _ordered(table[group_col], order, "groups")
    heads = _ordered(table[by], by_order, "heads")
    colors = head_colors(heads)
    ax = ax or plt.subplots(figsize=(7.5, 0.5 * len(groups) * max(1, len(heads) / 2) + 1.5), layout="constrained")[1]

    offsets = np.linspace(-0.27, 0.27, len(heads)) if len(heads) > 1 else np.zeros(1)
    positions = np.arange(len(groups), dtype=np.float64)
    for head, offset in zip(heads, offsets):
        rows = table[table[by] == head].set_index(group_col).reindex(groups)
        values = rows[estimate].to_numpy(dtype=np.float64)
        whiskers = np.vstack([values - rows[lower].to_numpy(np.float64), rows[upper].to_numpy(np.float64) - values])
        ax.errorbar(values, positions + offset, xerr=whiskers, fmt="o", color=colors[head], markersize=5,
                    capsize=3, elinewidth=1.5, label=str(head))
        line_at = _overall_value(rows, estimate, head, overall)
        if line_at is not None:
            ax.axvline(line_at, color=colors[head], linestyle="--", linewidth=1,
                       label=f"{head}: overall {line_at:.3f}")

    if chance is not None:
        ax.axvline(chance, color="grey", linestyle=":", linewidth=1.5, label=f"chance ({_fraction(chance)})")
    ax.set_yticks(positions, [str(group) for group in groups])
    ax.set_ylim(len(groups) - 0.5, -0.5)  # first group on top
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(xlabel or f"{_pretty(estimate)} (dot: estimate; whiskers: {interval_label})")
    ax.set_ylabel("")
    ax.set_title(title or f"Per-group {_pretty(estimate)}" + ("" if by == "_series" else f" by {_pretty(by)}"))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    return ax


def _fraction(value: float) -> str:
    """``1/7 = 0.143`` for a chance level that is a unit fraction, else ``0.143``."""
    inverse = 1 / value if value > 0 else math.inf
    if math.isfinite(inverse) and abs(inverse - round(inverse)) < 1e-9:
        return f"1/{round(inverse)} = {value:.3f}"
    return f"{value:.3f}"


def _overall_value(rows: pd.DataFrame, estimate: str, head, overall) -> float | None:
    if overall is False or overall is None:
        return None
    if isinstance(overall, Mapping):
        return float(overall[head]) if head in overall else None
    values = rows[estimate].to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return None
    if "n" in rows.columns:
        return float(np.average(values[finite], weights=rows["n"].to_numpy(np.float64)[finite]))
    return float(values[finite].mean())


# --------------------------------------------------------------------------------------------------
# Effect sizes: head − reference differences with their intervals and verdicts
# --------------------------------------------------------------------------------------------------
VERDICT_STYLES = {  # marker face, label
    "resolved": ("black", "resolved (corrected)"),
    "not resolved": ("white", "not resolved"),
    "not compared": ("lightgrey", "not compared (collapsed head)"),
    "no verdict": ("none", "no verdict (too few seeds)"),
}


def _verdict_kind(verdict: str) -> str:
    if verdict.startswith("not compared"):
        return "not compared"
    if verdict.startswith("no interval") or verdict.startswith("no verdict"):
        return "no verdict"
    return "not resolved" if verdict == "not resolved" else "resolved"


def _term(label: str) -> str:
    """A head label as a term of a difference: ``(cosrelu = cosface)`` reads as one model."""
    return f"({label})" if " = " in str(label) else str(label)


def difference_forest(
    comparisons: pd.DataFrame,
    *,
    prefix: str | None = None,
    ax: plt.Axes | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    unit: str = "points",
) -> plt.Axes:
    """Effect sizes as a forest plot, in percentage points (``unit="points"``) or as fractions like the
    accuracies they are differences of (``unit="fraction"``, for a page whose tables show fractions: one
    unit per page): one row per comparison (top to bottom in table order), a dot at ``difference`` and whiskers from ``lower`` to ``upper``: filled where the corrected
    verdict resolves a difference, hollow where it does not, grey where a head collapsed or there are too
    few seeds for a verdict.

    ``comparisons``: rows of :func:`lib.head_comparison.compare_heads` (columns ``head, reference,
    difference, lower, upper, interval, correction, verdict``). Rows are labelled ``head − reference``,
    after the value of the ``prefix`` column if given (e.g. ``"group"``). The axis label names the interval.
    """
    _require_columns(comparisons, ["head", "reference", "difference", "lower", "upper", "interval",
                                   "correction", "verdict", prefix], "comparisons")
    if comparisons.empty:
        raise ValueError("comparisons has no rows to draw")
    rows = comparisons.reset_index(drop=True)
    names = [f"{_term(r['head'])} − {_term(r['reference'])}" for r in rows.to_dict("records")]
    if prefix is not None:
        names = [f"{r[prefix]}: {name}" if r[prefix] else name for r, name in zip(rows.to_dict("records"), names)]
    ax = ax or plt.subplots(figsize=(8, 1.2 + 0.38 * len(rows)), layout="constrained")[1]
    y = np.arange(len(rows), dtype=float)
    if unit not in ("points", "fraction"):
        raise ValueError(f"unit must be 'points' or 'fraction', got {unit!r}")
    scale = 100.0 if unit == "points" else 1.0  # accuracy fractions → percentage points, or kept
    xlabel = xlabel or ("difference (percentage points)" if unit == "points"
                        else "difference in accuracy (fraction: 0.01 = one percentage point)")
    for kind, (face, legend) in VERDICT_STYLES.items():
        mine = rows.index[[_verdict_kind(v) == kind for v in rows["verdict"]]]
        if len(mine) == 0:
            continue
        values = rows.loc[mine, "difference"].to_numpy(float) * scale
        low = rows.loc[mine, "lower"].to_numpy(float) * scale
        high = rows.loc[mine, "upper"].to_numpy(float) * scale
        whiskers = np.vstack([values - low, high - values])
        muted = kind in ("not compared", "no verdict")
        ax.errorbar(values, y[mine], xerr=np.where(np.isfinite(whiskers), whiskers, 0), fmt="o",
                    markerfacecolor=face, markeredgecolor="grey" if muted else "black",
                    color="grey" if muted else "black", ecolor="grey", capsize=3, markersize=6, label=legend)
    ax.axvline(0, color="grey", linestyle=":", linewidth=1)
    ax.set_yticks(y, names)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.grid(axis="y", visible=False)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f"{value:+g}" if value else "0"))
    correction = {"holm": "Holm", "bh": "Benjamini–Hochberg"}.get(rows["correction"].iloc[0], rows["correction"].iloc[0])
    covered, _, family = rows["interval"].iloc[0].partition("; ")
    ax.set_xlabel(f"{xlabel}\ndot: mean over seeds · whiskers: {covered}\n"
                  f"{family or f'verdict: {correction}-corrected test'}")
    ax.set_title(title or "Head − reference differences")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    return ax


# --------------------------------------------------------------------------------------------------
# Disparity summaries: tidy table and its styled view
# --------------------------------------------------------------------------------------------------
def disparity_table(per_head: Mapping, confidence: float = 0.95) -> pd.DataFrame:
    """One row per head: gap, ratio, std and SER (see :class:`lib.fairness.DisparitySummary`).

    ``per_head`` maps a head to a :class:`DisparitySummary` (or a dict/Series/one-row DataFrame of its
    fields, optionally with ``<metric>_lower``/``<metric>_upper`` bounds, e.g. from a bootstrap) —
    reported as is — or to a ``disparity_over_seeds`` DataFrame with one row per seed —
    reported as the mean over seeds with a Student-t ``confidence`` interval (``summarize_interval``).
    SER is NaN when a group made no errors; over seeds it is NaN when that happened in any seed
    (``ser_note`` says in how many), because averaging only the defined seeds would bias it down.

    Columns: ``head, n_seeds, gap, gap_lower, gap_upper, ratio, …, ser, ser_lower, ser_upper, ser_note,
    worst_group, best_group`` (bounds NaN for a single summary).
    """
    if not isinstance(per_head, Mapping) or not per_head:
        raise ValueError("per_head must be a non-empty dict head → DisparitySummary or disparity_over_seeds rows")
    rows = [_disparity_row(head, value, confidence) for head, value in per_head.items()]
    table = pd.DataFrame(rows)
    table.attrs["confidence"] = confidence
    return table


def _summary_records(value) -> pd.DataFrame:
    if isinstance(value, DisparitySummary) or is_dataclass(value):
        return pd.DataFrame([asdict(value)])
    if isinstance(value, pd.Series) or isinstance(value, Mapping):
        return pd.DataFrame([dict(value)])
    if isinstance(value, pd.DataFrame):
        return value
    raise ValueError(
        f"a disparity must be a DisparitySummary, a dict/Series of its fields or a DataFrame of seeds, "
        f"got {type(value).__name__}"
    )


def _most_frequent(values: pd.Series) -> str:
    counts = values.astype(str).value_counts(sort=True)
    if len(values) == 1:
        return counts.index[0]
    return f"{counts.index[0]} ({counts.iloc[0]} of {len(values)} seeds)"


def _disparity_row(head, value, confidence: float) -> dict:
    records = _summary_records(value)
    _require_columns(records, DISPARITY_METRICS, f"disparity of head {head!r}")
    if len(records) == 0:
        raise ValueError(f"disparity of head {head!r} has no rows")
    seeds_given = len(records) == 1 and "n_seeds" in records.columns  # one summary over several seeds
    row = {"head": head, "n_seeds": int(records["n_seeds"].iloc[0]) if seeds_given else len(records)}
    for metric in DISPARITY_METRICS:
        values = records[metric].to_numpy(dtype=np.float64)
        if len(values) == 1:  # one summary: keep intervals it brings (e.g. a bootstrap's), else none
            bounds = [records[f"{metric}_{side}"].iloc[0] if f"{metric}_{side}" in records.columns else math.nan
                      for side in ("lower", "upper")]
            row.update({metric: float(values[0]), f"{metric}_lower": float(bounds[0]),
                        f"{metric}_upper": float(bounds[1])})
            continue
        if np.isnan(values).any():
            row.update({metric: math.nan, f"{metric}_lower": math.nan, f"{metric}_upper": math.nan})
            continue
        summary = summarize_interval(values, confidence)
        row.update({metric: summary.mean, f"{metric}_lower": summary.lower, f"{metric}_upper": summary.upper})
    undefined = int(np.isnan(records["ser"].to_numpy(dtype=np.float64)).sum())
    if len(records) == 1:
        note = records["ser_note"].iloc[0] if "ser_note" in records.columns else ""
        row["ser_note"] = note or ("undefined: a group has no errors" if undefined else "")
    else:
        row["ser_note"] = (
            f"undefined in {undefined} of {len(records)} seeds (a group had no errors)" if undefined else ""
        )
    for column in ("worst_group", "best_group"):
        if column in records.columns:
            row[column] = _most_frequent(records[column])
    return row


def _with_interval(value: float, lower: float, upper: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    if np.isfinite(lower) and np.isfinite(upper):
        text += f" [{lower:.{digits}f}, {upper:.{digits}f}]"
    return text


def style_disparity_table(table: pd.DataFrame, digits: int = 3, caption: str | None = None):
    """A pandas ``Styler`` of a :func:`disparity_table` for the notebooks.

    Each cell reads ``estimate [lower, upper]`` (the bracket only when an interval exists); an
    undefined SER reads ``undefined`` (with the number of seeds concerned, over seeds). The caption
    defines the four measures.
    """
    _require_columns(table, ["head", *DISPARITY_METRICS], "table")
    confidence = table.attrs.get("confidence", 0.95)
    display = pd.DataFrame({"head": table["head"].astype(str)})
    if "n_seeds" in table.columns:
        display["seeds"] = table["n_seeds"].astype(int)
    for metric in DISPARITY_METRICS:
        bounds = [table.get(f"{metric}_{side}", pd.Series(math.nan, index=table.index)) for side in ("lower", "upper")]
        cells = [
            _with_interval(value, lower, upper, digits if metric != "ser" else max(digits - 1, 1))
            for value, lower, upper in zip(*(column.astype(float) for column in (table[metric], *bounds)))
        ]
        if metric == "ser":
            notes = table["ser_note"] if "ser_note" in table.columns else pd.Series("", index=table.index)
            cells = [
                _undefined_ser(note) if not np.isfinite(value) else cell
                for cell, value, note in zip(cells, table["ser"].astype(float), notes.fillna(""))
            ]
        display[DISPARITY_HEADERS[metric]] = cells
    for column, header in (("worst_group", "worst group"), ("best_group", "best group")):
        if column in table.columns:
            display[header] = table[column].astype(str)
    caption = caption or (
        "Disparity across groups. gap = max − min group accuracy (0 = equal); ratio = min / max accuracy "
        "(1 = equal); std = population std of the group accuracies (RFW's STD); SER = max group error / "
        "min group error (1 = equal; undefined when a group makes no errors). "
        f"Brackets: {confidence:.0%} t-interval over seeds."
    )
    return display.style.hide(axis="index").set_caption(caption).set_properties(**{"text-align": "left"})


def _undefined_ser(note: str) -> str:
    if note.startswith("undefined in "):  # "undefined in k of n seeds (...)"
        return f"undefined ({note.split(' (')[0].removeprefix('undefined in ')})"
    return "undefined"


# --------------------------------------------------------------------------------------------------
# Curves over epochs with a band over seeds
# --------------------------------------------------------------------------------------------------
def per_group_accuracy_by_epoch(
    history_long: pd.DataFrame,
    groups: Sequence | None = None,
    heads: Sequence | None = None,
    *,
    x: str = "epoch",
    y: str = "accuracy",
    group_col: str = "group",
    head_col: str = "head",
    seed: str | None = "seed",
    ncols: int = 4,
    ylabel: str = "validation accuracy",
    chance: float | None = None,
    title: str | None = None,
) -> plt.Figure:
    """Small multiples: one panel per group (in ``groups`` order) of ``y`` by ``x``, one line per head.

    ``history_long`` has one row per ``(head, seed, epoch, group)``. Lines are the mean over seeds and
    bands mean ± std (ddof=1) — the FairFace course report's seven per-race plots, with their seed
    variability. ``seed=None`` for a single run. Panels share the y axis so groups compare at a glance.
    ``chance`` draws the chance level (e.g. 1/7) as a grey dotted line in every panel.
    """
    stats = _mean_std_over_seeds(history_long, [group_col, head_col], x, y, seed)
    groups = _ordered(history_long[group_col], groups, "groups")
    heads = _ordered(history_long[head_col], heads, "heads")
    colors = head_colors(heads)
    ncols = max(1, min(ncols, len(groups)))
    nrows = math.ceil(len(groups) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols, 2.5 * nrows + 0.9), sharex=True, sharey=True,
                             squeeze=False, layout="constrained")
    for ax in axes.flat[len(groups):]:
        fig.delaxes(ax)
    for ax, group in zip(axes.flat, groups):
        for head in heads:
            curve = stats[(stats[group_col] == group) & (stats[head_col] == head)]
            if len(curve):
                _line_with_band(ax, curve, x, colors[head], str(head))
        if chance is not None:
            ax.axhline(chance, color="grey", linestyle=":", linewidth=1.5, label=f"chance ({_fraction(chance)})")
        ax.set_title(str(group), fontsize="medium")
        ax.tick_params(labelbottom=True)
    n_seeds = int(stats["n_seeds"].max())
    legend = {}  # label → handle over all panels: a head may be missing from some groups
    for ax in fig.axes:
        legend.update(zip(*reversed(ax.get_legend_handles_labels())))
    labels = [str(head) for head in heads if str(head) in legend]
    labels += [label for label in legend if label.startswith("chance (")][:1]
    fig.legend([legend[label] for label in labels], labels, loc="outside right upper", title=_pretty(head_col),
               frameon=False)
    fig.supxlabel(_pretty(x))
    fig.supylabel(ylabel)
    fig.suptitle(title or f"{_sentence(ylabel)} by {_pretty(x)}, per group ({_seed_phrase(n_seeds)})")
    return fig


def curves_with_band(
    history_long: pd.DataFrame,
    x: str = "epoch",
    y: str = "overall",
    hue: str = "head",
    *,
    seed: str | None = "seed",
    hue_order: Sequence | None = None,
    ax: plt.Axes | None = None,
    ylabel: str | None = None,
    chance: float | None = None,
    title: str | None = None,
    chance_label: str = "chance",
    floor: float | None = None,
    floor_label: str = "loss floor",
) -> plt.Axes:
    """``y`` by ``x`` (e.g. validation accuracy or training loss by epoch), one line per ``hue`` value:
    the mean over seeds with a mean ± std (ddof=1) band. ``seed=None`` for a single run. ``chance``
    draws the chance level as a grey dotted line, labelled ``chance_label (1/C = …)``; ``floor`` a lower
    bound of a loss as a grey dash-dotted line, labelled ``floor_label (…)``: two reference lines that a
    legend shared by an accuracy and a loss panel (:func:`shared_legend`) tells apart."""
    stats = _mean_std_over_seeds(history_long, [hue], x, y, seed)
    hues = _ordered(history_long[hue], hue_order, hue)
    colors = head_colors(hues)
    ax = ax or plt.subplots(figsize=(6.5, 4), layout="constrained")[1]
    for value in hues:
        _line_with_band(ax, stats[stats[hue] == value], x, colors[value], str(value))
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1.5, label=f"{chance_label} ({_fraction(chance)})")
    if floor is not None:
        ax.axhline(floor, color="grey", linestyle="-.", linewidth=1.2, label=f"{floor_label} ({floor:.3f})")
    ylabel = ylabel or _pretty(y)
    ax.set_xlabel(_pretty(x))
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"{_sentence(ylabel)} by {_pretty(x)} ({_seed_phrase(int(stats['n_seeds'].max()))})")
    ax.legend(title=_pretty(hue), frameon=False)
    return ax


def shared_legend(axes: Sequence[plt.Axes], *, on: plt.Axes | None = None, title: str | None = None):
    """One legend for a row of panels, beside ``on`` (default: the last panel): every labelled line of every
    panel once, in order, so each reference line (e.g. an accuracy panel's chance level and a loss panel's
    floor) keeps its own entry. The panels' own legends are removed."""
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels and not label.startswith("_"):
                handles.append(handle)
                labels.append(label)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    on = on or axes[-1]
    return on.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)


# --------------------------------------------------------------------------------------------------
# Confusion matrices
# --------------------------------------------------------------------------------------------------
def _row_normalized(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the share of a true class predicted as each class); empty rows NaN."""
    totals = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, matrix / totals, np.nan)


def confusion_matrices(
    conf: Mapping,
    *,
    ncols: int | None = None,
    annot: bool | None = None,
    title: str | None = None,
    cmap: str = "Blues",
) -> plt.Figure:
    """Row-normalized confusion-matrix heatmaps, one per head, sharing one 0–1 colour scale.

    ``conf`` maps a head to ``(matrix, labels)``: ``matrix[i, j]`` = number of samples of true class
    ``labels[i]`` predicted as ``labels[j]`` (e.g. ``sklearn.metrics.confusion_matrix(..., labels=labels)``).
    Cell (i, j) shows ``matrix[i, j] / Σ_j matrix[i, j]``, so the diagonal is each class's recall;
    a class without samples is a blank row. Panel titles give the overall accuracy ``trace / total``.

    Laid out for reading on a report page: no wider than :data:`lib.plots.PAGE_WIDTH_INCHES` (so it is not
    scaled down), cell numbers and class names at :data:`lib.plots.MIN_FONT_PT` points; when every head has
    the same classes, class names are written once per row and column of panels (left column, bottom
    panel of each column), so no rotated name runs into the title of the panel below.
    """
    from lib.plots import MIN_FONT_PT, PAGE_WIDTH_INCHES

    if not isinstance(conf, Mapping) or not conf:
        raise ValueError("conf must be a non-empty dict head → (matrix, labels)")
    checked = {head: _check_confusion(head, value) for head, value in conf.items()}
    size = max(len(labels) for _, labels in checked.values())
    ncols = max(1, min(ncols or (2 if size > 4 else 3), len(checked)))
    nrows = math.ceil(len(checked) / ncols)
    shared = len({tuple(labels) for _, labels in checked.values()}) == 1
    name_chars = max(len(label) for _, labels in checked.values() for label in labels)
    name_width = 0.3 + name_chars * MIN_FONT_PT * 0.6 / 72  # inches taken by the longest class name
    label_columns = 1 if shared else ncols
    cell = min(0.6, (PAGE_WIDTH_INCHES - 1.2 - label_columns * (name_width + 0.3)) / (ncols * size))
    width = min(PAGE_WIDTH_INCHES, ncols * cell * size + label_columns * (name_width + 0.3) + 1.2)
    height = nrows * (cell * size + 0.7) + (1 if shared else nrows) * name_width * 0.75 + 0.6
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, layout="constrained")
    for ax in axes.flat[len(checked):]:
        fig.delaxes(ax)
    for index, (ax, (head, (matrix, labels))) in enumerate(zip(axes.flat, checked.items())):
        shares = _row_normalized(matrix)
        sns.heatmap(shares, ax=ax, vmin=0.0, vmax=1.0, cmap=cmap, cbar=False, square=True,
                    annot=len(labels) <= 10 if annot is None else annot, fmt=".2f",
                    annot_kws={"fontsize": MIN_FONT_PT}, xticklabels=labels, yticklabels=labels)
        total = matrix.sum()
        accuracy = f"accuracy {np.trace(matrix) / total:.3f}, n = {int(total)}" if total > 0 else "no samples"
        ax.set_title(f"{head}\n({accuracy})", fontsize=MIN_FONT_PT + 1)
        ax.tick_params(labelsize=MIN_FONT_PT)
        ax.tick_params(axis="x", rotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
        ax.tick_params(axis="y", rotation=0)
        names_left = not shared or index % ncols == 0
        names_below = not shared or index + ncols >= len(checked)
        ax.set_ylabel("true class" if names_left else "", fontsize=MIN_FONT_PT)
        ax.set_xlabel("predicted class" if names_below else "", fontsize=MIN_FONT_PT)
        if not names_left:
            ax.tick_params(axis="y", labelleft=False)
        if not names_below:
            ax.tick_params(axis="x", labelbottom=False)
    used = list(axes.flat[: len(checked)])
    colorbar = fig.colorbar(used[0].collections[0], ax=used, shrink=0.6, label="share of the true class's samples")
    colorbar.ax.tick_params(labelsize=MIN_FONT_PT)
    fig.suptitle(title or "Confusion matrices (each row: one true class, normalized to 1)", fontsize=MIN_FONT_PT + 2)
    return fig


def _check_confusion(head, value) -> tuple[np.ndarray, list[str]]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"conf[{head!r}] must be a (matrix, labels) pair, got {type(value).__name__}")
    matrix, labels = value
    matrix = np.asarray(matrix, dtype=np.float64)
    labels = [str(label) for label in labels]
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"conf[{head!r}] matrix must be square, got shape {matrix.shape}")
    if matrix.shape[0] != len(labels):
        raise ValueError(f"conf[{head!r}] has a {matrix.shape[0]}×{matrix.shape[0]} matrix but {len(labels)} labels")
    if not np.all(np.isfinite(matrix)) or np.any(matrix < 0):
        raise ValueError(f"conf[{head!r}] matrix must hold non-negative counts")
    return matrix, labels


# --------------------------------------------------------------------------------------------------
# Verification: per-group error rates and ROC curves
# --------------------------------------------------------------------------------------------------
RATE_COLUMNS = ("group", "fmr", "fmr_lower", "fmr_upper", "fnmr", "fnmr_lower", "fnmr_upper")


def error_rate_plot(
    rates: VerificationErrorRates | pd.DataFrame,
    *,
    threshold: float | None = None,
    include_mixed: bool = True,
    log_fmr: bool | str = "auto",
    interval_label: str = "95% Wilson interval",
    title: str | None = None,
) -> plt.Figure:
    """FMR and FNMR per group at one global threshold, side by side, with Wilson interval whiskers.

    ``rates``: a :class:`lib.fairness.VerificationErrorRates` (its threshold and max/min ratios go into
    the title) or its ``table`` with ``threshold=`` given. ``log_fmr="auto"`` puts FMR on a log axis when
    every upper bound is ≤ 0.1 — operating points such as FAR 1e-3 vanish against 0 on a linear axis.
    On a log axis a group with no false matches is drawn as an open marker at the axis's left edge
    (whisker up to its Wilson upper bound) and labelled "0 errors". A dashed line marks the rate over
    all pairs of the table (needs the count columns). The ``mixed`` row (pairs across groups) is
    drawn last and has no FNMR when it holds no genuine pairs.
    """
    if isinstance(rates, VerificationErrorRates):
        table, threshold = rates.table, rates.threshold
        ratios = {"fmr": (rates.fmr_ratio, rates.fmr_ratio_note), "fnmr": (rates.fnmr_ratio, rates.fnmr_ratio_note)}
    else:
        table, ratios = rates, None
        if threshold is None:
            raise ValueError("pass threshold= with a bare error-rate table (the title must state it)")
    _require_columns(table, RATE_COLUMNS, "error-rate table")
    all_pairs = table  # the dashed "all pairs" rate counts mixed pairs even when their row is hidden
    if not include_mixed:
        table = table[table["group"] != MIXED]
    if len(table) == 0:
        raise ValueError("the error-rate table has no rows to plot")
    groups = [str(group) for group in table["group"]]
    fig, axes = plt.subplots(1, 2, sharey=True, figsize=(10, 0.42 * len(groups) + 2.0), layout="constrained")
    if log_fmr == "auto":
        upper = table["fmr_upper"].to_numpy(np.float64)
        log_fmr = bool(np.isfinite(upper).any() and np.nanmax(upper) <= 0.1 and np.nanmax(upper) > 0)
    panels = (("fmr", "false match rate (FMR)", "FMR: impostor pairs accepted", "n_impostor", "false_matches",
               log_fmr),
              ("fnmr", "false non-match rate (FNMR)", "FNMR: genuine pairs rejected", "n_genuine",
               "false_non_matches", False))
    colors = sns.color_palette("colorblind", 2)
    for ax, color, (rate, name, panel_title, n_col, k_col, log) in zip(axes, colors, panels):
        _rate_panel(ax, table, rate, log, color)
        if {n_col, k_col} <= set(all_pairs.columns) and all_pairs[n_col].sum() > 0:
            pooled = all_pairs[k_col].sum() / all_pairs[n_col].sum()
            if not log or pooled > 0:
                ax.axvline(pooled, color="grey", linestyle="--", linewidth=1)
                panel_title += f"\n(dashed: all pairs, {pooled:.2g})"
        ax.set_xlabel(f"{name}{', log scale' if log else ''}\n(dot: estimate; whiskers: {interval_label})")
        ax.set_title(panel_title, fontsize="medium")
    tick_labels = [f"{group}\n(across groups)" if group == MIXED else group for group in groups]
    axes[0].set_yticks(np.arange(len(groups)), tick_labels)
    axes[0].set_ylim(len(groups) - 0.5, -0.5)
    heading = title or f"Per-group error rates at one global threshold t = {threshold:.4g}"
    if ratios is not None:
        heading += "\n" + "; ".join(
            f"{rate.upper()} max/min = " + (f"{value:.2f}" if np.isfinite(value) else (note or "undefined"))
            for rate, (value, note) in ratios.items()
        )
    fig.suptitle(heading)
    return fig


def _rate_panel(ax: plt.Axes, table: pd.DataFrame, rate: str, log: bool, color) -> None:
    """One errorbar container of ``rate`` per group row; on a log axis zeros sit at the left edge."""
    value = table[rate].to_numpy(np.float64)
    lower = table[f"{rate}_lower"].to_numpy(np.float64)
    upper = table[f"{rate}_upper"].to_numpy(np.float64)
    positions = np.arange(len(table), dtype=np.float64)
    shown = np.isfinite(value)
    zero = np.zeros_like(shown)
    if log:
        positive = np.concatenate([value[value > 0], lower[lower > 0], upper[upper > 0]])
        floor = 10 ** math.floor(math.log10(positive.min() / 2)) if len(positive) else 1e-6
        zero = shown & (value == 0)
        ax.set_xscale("log")
        lower = np.where(lower > 0, lower, floor)
        value = np.where(zero, floor, value)
    whiskers = np.vstack([value - lower, upper - value])[:, shown]
    ax.errorbar(value[shown], positions[shown], xerr=whiskers, fmt="o", color=color, markersize=5, capsize=3)
    if zero.any():  # open markers over the filled ones: "no error observed", not a measured rate
        ax.plot(value[zero], positions[zero], linestyle="none", marker="o", markerfacecolor="white",
                markeredgecolor=color, markersize=6, zorder=4, clip_on=False)
        for y in positions[zero]:
            ax.annotate("0 errors", (value[zero][0], y), xytext=(6, 4), textcoords="offset points", fontsize="x-small")
        ax.set_xlim(left=floor)
    ax.grid(axis="y", visible=False)


def per_group_roc_plot(
    long_table: pd.DataFrame,
    *,
    group_col: str = "group",
    order=None,
    style: str | None = None,
    fars: Sequence[float] = (),
    ax: plt.Axes | None = None,
    title: str | None = None,
) -> plt.Axes:
    """Per-group ROC curves (TAR against FAR on a log axis), one colour per group.

    ``long_table``: ``lib.fairness.per_group_roc`` output (columns ``group, fpr, tpr``), optionally
    stacked with a column named by ``style`` (e.g. ``"head"``) drawn as line styles. Points with FAR 0
    cannot sit on a log axis and are left out; the axis starts at the smallest positive FAR, the
    resolution set by the number of impostor pairs. ``fars`` adds dotted vertical lines at those FARs.
    A dotted grey curve is chance (TAR = FAR).
    """
    _require_columns(long_table, [group_col, "fpr", "tpr", style], "ROC table")
    positive = long_table[long_table["fpr"] > 0]
    if len(positive) == 0:
        raise ValueError("no ROC point with FAR > 0; nothing to draw on a log FAR axis")
    groups = _ordered(long_table[group_col], order, "groups")
    colors = head_colors(groups)
    styles = _ordered(long_table[style]) if style else [None]
    dashes = dict(zip(styles, ["-", "--", "-.", ":"] * (len(styles) // 4 + 1)))
    ax = ax or plt.subplots(figsize=(6.5, 4.5), layout="constrained")[1]
    for style_value in styles:
        rows = positive if style is None else positive[positive[style] == style_value]
        for group in groups:
            curve = rows[rows[group_col] == group]
            if len(curve) == 0:
                continue
            label = str(group) if style is None else f"{group} · {style_value}"
            ax.plot(curve["fpr"], curve["tpr"], color=colors[group], linestyle=dashes[style_value], label=label,
                    linewidth=1.5)
    left = float(positive["fpr"].min())
    grid = np.logspace(np.log10(left), 0, 50)
    ax.plot(grid, grid, color="grey", linestyle=":", linewidth=1, label="chance")
    for far in fars:
        if left <= far <= 1:
            ax.axvline(far, color="black", linestyle=":", linewidth=0.8)
            ax.annotate(f"FAR {far:g}", (far, 0.02), xytext=(3, 0), textcoords="offset points", fontsize="x-small")
    ax.set_xscale("log")
    ax.set_xlim(left, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false accept rate (FAR = FMR, log scale)")
    ax.set_ylabel("true accept rate (TAR = 1 − FNMR)")
    ax.set_title(title or "ROC per group")
    ax.legend(loc="lower right", frameon=False, fontsize="small")
    return ax


# --------------------------------------------------------------------------------------------------
# Head A vs head B: McNemar table
# --------------------------------------------------------------------------------------------------
def format_p_value(p: float) -> str:
    """``0.042``, ``0.001``, ``3.2e-05``: three decimals, scientific below 0.001; ``—`` for NaN."""
    if p is None or not np.isfinite(p):
        return "—"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def significance_marker(p: float) -> str:
    """``***`` p < 0.001, ``**`` p < 0.01, ``*`` p < 0.05, else ``n.s.`` (``—`` for NaN)."""
    if p is None or not np.isfinite(p):
        return "—"
    for level, marker in SIGNIFICANCE_LEVELS:
        if p < level:
            return marker
    return NOT_SIGNIFICANT


def mcnemar_table(
    result: pd.DataFrame | McNemarResult,
    *,
    head_a: str = "A",
    head_b: str = "B",
    overall: McNemarResult | None = None,
    digits: int = 3,
) -> pd.DataFrame:
    """Display table of exact McNemar tests of head A against head B.

    ``result``: ``lib.fairness.mcnemar_by_group`` output (Holm-adjusted across groups) or a single
    :class:`McNemarResult`. ``overall`` (``mcnemar_exact`` on all samples) adds a first row "all
    samples", not part of the Holm family. Significance markers use the Holm-adjusted p of the group
    rows and the unadjusted p of a single/overall test (``***`` < 0.001, ``**`` < 0.01, ``*`` < 0.05).
    Columns: ``group, n, accuracy <A>, accuracy <B>, only <A> right, only <B> right, p (exact),
    p (Holm), significance``; p-values are strings (see :func:`format_p_value`).
    """
    if isinstance(result, McNemarResult):
        overall, frame = result, None
    else:
        _require_columns(result, ["group", "n", "accuracy_a", "accuracy_b", "only_a", "only_b", "p_value", "p_holm"],
                         "McNemar table")
        frame = result
    rows = []
    if overall is not None:
        accuracy_a = accuracy_b = math.nan
        if frame is not None and int(frame["n"].sum()) == overall.n:  # groups partition the samples
            accuracy_a = float(np.average(frame["accuracy_a"], weights=frame["n"]))
            accuracy_b = float(np.average(frame["accuracy_b"], weights=frame["n"]))
        rows.append(("all samples", overall.n, accuracy_a, accuracy_b, overall.only_a, overall.only_b,
                     overall.p_value, math.nan, significance_marker(overall.p_value)))
    if frame is not None:
        for row in frame.itertuples(index=False):  # one row per group, a handful
            rows.append((str(row.group), int(row.n), row.accuracy_a, row.accuracy_b, int(row.only_a),
                         int(row.only_b), row.p_value, row.p_holm, significance_marker(row.p_holm)))
    columns = ["group", "n", f"accuracy {head_a}", f"accuracy {head_b}", f"only {head_a} right",
               f"only {head_b} right", "p (exact)", "p (Holm)", "significance"]
    table = pd.DataFrame(rows, columns=columns)
    for column in (f"accuracy {head_a}", f"accuracy {head_b}"):
        table[column] = table[column].astype(np.float64).round(digits)
    for column in ("p (exact)", "p (Holm)"):
        table[column] = [format_p_value(p) for p in table[column].astype(np.float64)]
    table.attrs["note"] = (
        "Exact McNemar test on the samples only one head gets right. Significance from the Holm-adjusted p "
        "across groups (the 'all samples' row: unadjusted p): *** p < 0.001, ** p < 0.01, * p < 0.05, "
        "n.s. otherwise."
    )
    return table
