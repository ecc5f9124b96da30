"""Figures of notebook 02 (LFW verification): DET curves with operating points, genuine vs impostor
score histograms, training vs held-out accuracy, and accuracy by epoch beside the course report.

Conventions (those of :mod:`lib.verification`): a pair is declared a match when its score is *above*
the threshold; FMR (false match rate) is the share of impostor pairs declared a match, FNMR (false
non-match rate) the share of genuine pairs declared a non-match. Every band says in its legend what it
is. Functions return the ``Axes`` or ``Figure`` they drew; exporting is the caller's job
(``lib.plots.save_figure``). Histories are notebook 02's ``02_history.csv``: one row per
``(head, seed, epoch)`` with ``train_accuracy`` every epoch and ``acc_10fold`` / ``acc_fixed_0.5`` at
evaluated epochs (NaN elsewhere).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from scipy import stats
from sklearn.metrics import det_curve

from lib.verification import as_binary, as_scores, check_same_length, check_threshold, summarize_interval

__all__ = ["pair_scores_by_head", "error_rates_at", "det_plot", "score_histograms", "train_vs_heldout", "accuracy_by_epoch"]

# DET axes: these error rates get tick labels (probit scale); only those inside the data's range are used.
DET_TICKS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95)
OPERATING_POINT_MARKERS = ("o", "s", "^", "D")
BAND_ALPHA = 0.2


def _colors(names) -> dict:
    names = list(names)
    return dict(zip(names, sns.color_palette("colorblind", n_colors=max(len(names), 1))))


def error_rates_at(scores, same, threshold: float) -> tuple[float, float]:
    """(FMR, FNMR) at ``threshold``: impostor pairs with score > threshold, genuine pairs with score ≤ it."""
    scores, same = as_scores(scores), as_binary(same)
    check_same_length(scores=scores, same=same)
    if same.all() or not same.any():
        raise ValueError("need both genuine (same) and impostor pairs to compute FMR and FNMR")
    threshold = check_threshold(threshold)
    return float(np.mean(scores[~same] > threshold)), float(np.mean(scores[same] <= threshold))


def pair_scores_by_head(table: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, float]]:
    """(scores per head, ``same`` per pair, 10-fold threshold per head) from notebook 02's long table
    ``02_lfw_pair_scores.csv`` (columns ``pair, same, head, score, threshold_10fold``), pairs in
    ``pair`` order; every head must score the same pairs with the same labels."""
    missing = sorted({"pair", "same", "head", "score", "threshold_10fold"} - set(table.columns))
    if missing:
        raise ValueError(f"pair-score table lacks columns {missing} (expected 02_lfw_pair_scores.csv)")
    scores, thresholds, same = {}, {}, None
    for head, rows in table.groupby("head", sort=False):
        rows = rows.sort_values("pair")
        labels = rows["same"].astype(bool).to_numpy()
        if same is None:
            same, pairs = labels, rows["pair"].to_numpy()
        elif not (np.array_equal(rows["pair"].to_numpy(), pairs) and np.array_equal(labels, same)):
            raise ValueError(f"head {head!r} scores other pairs (or labels) than {next(iter(scores))!r}")
        scores[head] = rows["score"].to_numpy(dtype=float)
        thresholds[head] = float(rows["threshold_10fold"].iloc[0])
    return scores, same, thresholds


def _probit(rates) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return stats.norm.ppf(np.asarray(rates, dtype=float))


def det_plot(scores: Mapping[str, object], same, *, operating_points: Mapping[str, Mapping[str, float]] | None = None,
             dashed: Iterable[str] = (), ax: plt.Axes | None = None,
             title: str = "DET curves on DevTest pairs") -> plt.Axes:
    """Detection error trade-off: FNMR against FMR on normal-deviate (probit) axes, one line per model.

    ``scores`` maps a model name to its score of every pair (same order as ``same``); ``dashed`` names
    models drawn dashed (e.g. a pretrained reference encoder). ``operating_points`` maps a model to
    named thresholds, e.g. ``{"sphereface": {"fixed 0.5": 0.5, "10-fold": 0.21}}``; each is marked on
    the model's curve at its (FMR, FNMR), one marker shape per threshold name, explained in the legend.
    Lower-left is better; rates of exactly 0 cannot be drawn on these axes and are left out.
    """
    same = as_binary(same)
    ax = ax or plt.subplots(figsize=(6.2, 5.4))[1]
    colors = _colors(scores)
    dashed = set(dashed)
    operating_points = operating_points or {}
    point_names = list(dict.fromkeys(name for points in operating_points.values() for name in points))
    markers = dict(zip(point_names, OPERATING_POINT_MARKERS))
    if len(point_names) > len(OPERATING_POINT_MARKERS):
        raise ValueError(f"at most {len(OPERATING_POINT_MARKERS)} kinds of operating point, got {point_names}")
    drawn = []
    for model, model_scores in scores.items():
        model_scores = as_scores(model_scores, name=f"scores of {model}")
        check_same_length(scores=model_scores, same=same)
        fmr, fnmr, _ = det_curve(same, model_scores)
        x, y = _probit(fmr), _probit(fnmr)
        keep = np.isfinite(x) & np.isfinite(y)
        ax.plot(x[keep], y[keep], color=colors[model], ls="--" if model in dashed else "-", lw=1.6, label=model)
        drawn.append((fmr[keep], fnmr[keep]))
        for name, threshold in operating_points.get(model, {}).items():
            point = error_rates_at(model_scores, same, threshold)
            ax.plot(*_probit(point), ls="none", marker=markers[name], ms=8, mfc=colors[model], mec="black",
                    mew=0.8, zorder=5)
            drawn.append((np.array([point[0]]), np.array([point[1]])))
    rates = np.concatenate([np.concatenate(pair) for pair in drawn]) if drawn else np.array([0.01, 0.5])
    rates = rates[(rates > 0) & (rates < 1)]
    low, high = (rates.min(), rates.max()) if len(rates) else (0.01, 0.5)
    ticks = [t for t in DET_TICKS if low / 1.5 <= t <= min(high * 1.5, 0.95)] or [0.01, 0.1, 0.5]
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(_probit(ticks))
        axis.set_ticklabels([f"{t:.1%}" if t < 0.01 else f"{t:.0%}" for t in ticks])
    span = _probit([max(low / 1.6, 1e-5), min(high * 1.3, 0.99)])
    ax.set(xlim=span, ylim=span, title=title, xlabel="false match rate, FMR (probit scale)",
           ylabel="false non-match rate, FNMR (probit scale)")
    handles, labels = ax.get_legend_handles_labels()
    for name, marker in markers.items():
        handles.append(Line2D([], [], ls="none", marker=marker, ms=8, mfc="white", mec="black"))
        labels.append(f"threshold: {name}")
    ax.legend(handles, labels, fontsize=8, loc="upper right")
    return ax


def score_histograms(scores: Mapping[str, object], same, thresholds: Mapping[str, float], *,
                     fixed: float = 0.5, fitted_label: str = "10-fold", bins: int = 40, ncols: int = 3,
                     title: str = "Cosine scores of DevTest pairs: genuine vs impostor") -> plt.Figure:
    """One panel per model: histograms (density) of genuine and impostor pair scores, the fixed threshold
    ``fixed`` (dashed) and the model's fitted threshold ``thresholds[model]`` (solid, named
    ``fitted_label``), each with its FMR and FNMR in the legend. Where the genuine scores sit mostly below ``fixed``, the fixed rule
    rejects most genuine pairs: the picture of why the course's 0.5 under-reports."""
    same = as_binary(same)
    models = list(scores)
    missing = [m for m in models if m not in thresholds]
    if missing:
        raise ValueError(f"no fitted threshold for {missing}; thresholds has {sorted(thresholds)}")
    ncols = min(ncols, len(models))
    nrows = -(-len(models) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 3.3 * nrows), squeeze=False, sharex=True)
    palette = sns.color_palette("colorblind", 4)
    for ax, model in zip(axes.flat, models):
        model_scores = as_scores(scores[model], name=f"scores of {model}")
        check_same_length(scores=model_scores, same=same)
        edges = np.linspace(min(model_scores.min(), fixed) - 0.02, max(model_scores.max(), fixed) + 0.02, bins + 1)
        ax.hist(model_scores[same], bins=edges, density=True, alpha=0.55, color=palette[0], label="genuine pairs")
        ax.hist(model_scores[~same], bins=edges, density=True, alpha=0.55, color=palette[1], label="impostor pairs")
        for threshold, style, name in ((fixed, "--", f"fixed {fixed:g}"),
                                       (thresholds[model], "-", f"{fitted_label} {thresholds[model]:.2f}")):
            fmr, fnmr = error_rates_at(model_scores, same, threshold)
            ax.axvline(threshold, color="black", ls=style, lw=1.2, label=f"{name}: FMR {fmr:.0%}, FNMR {fnmr:.0%}")
        ax.set(title=model, ylabel="density")
        ax.set_ylim(top=ax.get_ylim()[1] * 1.55)  # room for the legend above the bars
        ax.legend(fontsize=7, loc="upper left")
    for ax in axes[-1]:
        ax.set_xlabel("cosine score")
    for ax in axes.flat[len(models):]:
        ax.set_axis_off()
    fig.suptitle(title)
    return fig


def _band_over_seeds(frame: pd.DataFrame, column: str, confidence: float = 0.95) -> pd.DataFrame:
    """Per epoch: mean over seeds and a Student-t interval (NaN bounds with one seed)."""
    rows = []
    for epoch, values in frame.dropna(subset=[column]).groupby("epoch")[column]:
        summary = summarize_interval(values.to_numpy(), confidence)
        rows.append({"epoch": epoch, "mean": summary.mean, "low": summary.lower, "high": summary.upper,
                     "n": summary.n})
    return pd.DataFrame(rows, columns=["epoch", "mean", "low", "high", "n"])


def _require(history: pd.DataFrame, columns) -> None:
    missing = sorted(set(columns) - set(history.columns))
    if missing:
        raise ValueError(f"history lacks columns {missing} (expected notebook 02's history table)")


def train_vs_heldout(history: pd.DataFrame, ax: plt.Axes | None = None,
                     title: str = "Over-fitting: training accuracy vs held-out pair accuracy", *,
                     train_column: str = "train_accuracy", heldout_column: str = "acc_10fold",
                     train_label: str = "training images (classification)",
                     heldout_label: str = "DevTest pairs (10-fold verification)") -> plt.Axes:
    """Per head, by epoch: ``train_column`` (solid; by default accuracy on the training images) and
    ``heldout_column`` (dashed, markers; by default 10-fold verification accuracy on held-out pairs).
    A widening gap between the two is over-fitting. With several seeds: lines are means, bands 95 %
    Student-t intervals over seeds (said in the legend); with one seed there is no band."""
    _require(history, ["head", "seed", "epoch", train_column, heldout_column])
    ax = ax or plt.subplots(figsize=(7.5, 4.5))[1]
    heads = list(dict.fromkeys(history["head"]))
    colors = _colors(heads)
    n_seeds = history["seed"].nunique()
    for head in heads:
        rows = history[history["head"] == head]
        for column, style, marker in ((train_column, "-", None), (heldout_column, "--", "o")):
            curve = _band_over_seeds(rows.dropna(subset=[column]), column)
            ax.plot(curve["epoch"], curve["mean"], color=colors[head], ls=style, marker=marker, ms=3)
            if n_seeds > 1:
                ax.fill_between(curve["epoch"], curve["low"], curve["high"], color=colors[head], alpha=BAND_ALPHA, lw=0)
    handles = [Line2D([], [], color=colors[h], lw=2) for h in heads]
    labels = list(heads)
    handles += [Line2D([], [], color="grey", ls="-"), Line2D([], [], color="grey", ls="--", marker="o", ms=3)]
    labels += [train_label, heldout_label]
    if n_seeds > 1:
        handles.append(plt.Rectangle((0, 0), 1, 1, color="grey", alpha=BAND_ALPHA))
        labels.append(f"band: 95% t-interval over {n_seeds} seeds")
    ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set(title=title, xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02))
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    return ax


def accuracy_by_epoch(history: pd.DataFrame, *, course_points: pd.Series | None = None, show_fixed: bool = True,
                      n_folds: int = 10, ax: plt.Axes | None = None,
                      title: str = "DevTest verification accuracy by epoch", column: str = "acc_10fold",
                      fixed_column: str = "acc_fixed_0.5",
                      course_label: str = "course report, fixed 0.5") -> plt.Axes:
    """Per head, by epoch: the 10-fold accuracy (solid) and, with ``show_fixed``, the accuracy at the
    fixed cosine 0.5 (dotted); ``course_points`` (epochs trained -> accuracy, e.g.
    ``lib.course_reports.SPHEREFACE_FIXED_THRESHOLD_ACCURACY``) as black crosses. The x-axis covers this
    run's epochs only: course points after its last epoch are listed with their values in the legend.

    The band around each 10-fold line: with several seeds a 95 % Student-t interval over the seeds;
    with one seed and a history column ``<column>_std`` (the standard deviation over the ``n_folds``
    folds) a 95 % t-interval over the folds; otherwise none. The legend says which. ``column`` and
    ``fixed_column`` name the history's accuracy columns (e.g. ``val_acc_10fold`` for validation pairs).
    """
    _require(history, ["head", "seed", "epoch", column] + ([fixed_column] if show_fixed else []))
    std_column = f"{column}_std"
    ax = ax or plt.subplots(figsize=(7.5, 4.5))[1]
    heads = list(dict.fromkeys(history["head"]))
    colors = _colors(heads)
    n_seeds = history["seed"].nunique()
    band = "seeds" if n_seeds > 1 else "folds" if std_column in history.columns else None
    for head in heads:
        rows = history[history["head"] == head].dropna(subset=[column])
        curve = _band_over_seeds(rows, column)
        ax.plot(curve["epoch"], curve["mean"], color=colors[head], marker="o", ms=3, label=head)
        if band == "seeds":
            ax.fill_between(curve["epoch"], curve["low"], curve["high"], color=colors[head], alpha=BAND_ALPHA, lw=0)
        elif band == "folds":
            rows = rows.sort_values("epoch")
            half = stats.t.ppf(0.975, n_folds - 1) * rows[std_column].to_numpy() / np.sqrt(n_folds)
            ax.fill_between(rows["epoch"], rows[column] - half, rows[column] + half,
                            color=colors[head], alpha=BAND_ALPHA, lw=0)
        if show_fixed:
            fixed = _band_over_seeds(history[history["head"] == head].dropna(subset=[fixed_column]), fixed_column)
            ax.plot(fixed["epoch"], fixed["mean"], color=colors[head], ls=":", lw=1.2)
    ax.axhline(0.5, color="grey", lw=0.8, alpha=0.6, label="chance (half the pairs match)")
    handles, labels = ax.get_legend_handles_labels()
    if show_fixed:
        handles.append(Line2D([], [], color="grey", ls=":"))
        labels.append("dotted: same head at fixed cosine 0.5")
    last_epoch = int(history["epoch"].max())
    if course_points is not None:
        # The axis covers this run's epochs; the course's points beyond them are listed, not drawn far right.
        inside = course_points[course_points.index <= last_epoch]
        beyond = course_points[course_points.index > last_epoch]
        if len(inside):
            ax.plot(inside.index, inside.to_numpy(), ls="none", marker="X", ms=8, color="black")
            handles.append(Line2D([], [], ls="none", marker="X", ms=8, color="black"))
            labels.append(course_label)
        if len(beyond):
            handles.append(Line2D([], [], ls="none"))
            labels.append(f"{course_label}, beyond this run's {last_epoch} epochs:\n"
                          + ", ".join(f"{value:.3f} at {epoch}" for epoch, value in beyond.items()))
    if band is not None:
        handles.append(plt.Rectangle((0, 0), 1, 1, color="grey", alpha=BAND_ALPHA))
        labels.append(f"band: 95% t-interval over {n_seeds} seeds" if band == "seeds"
                      else f"band: 95% t-interval over the {n_folds} folds")
    ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set(title=title, xlabel="epochs trained", ylabel="verification accuracy")
    ax.set_xlim(max(0, int(history["epoch"].min()) - 1), last_epoch + 1)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    return ax
