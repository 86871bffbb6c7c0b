"""The theory overlay: predicted against observed onset, log-log, one panel per fitted model, with the held-out
statistics of :func:`zipfind.theory.heldout.prediction_stats` (the numbers fits.json reports)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .style import _RC, _assign_label, _categories, _fmt_steps, _legend, _new_figure, _require, measure_label


def _overlay_stats(p: pd.DataFrame) -> dict[str, float]:
    """Cell counts and, with held-out predictions, their median |ln error| and censor accuracy."""
    from ..theory.fit import prediction_stats  # deferred: the theory package compiles its models on import

    out: dict[str, float] = {"n": float(len(p)), "n_censored": float(p["censored"].astype(bool).sum())}
    if "heldout_predicted_onset" in p:
        med, acc = prediction_stats(p["heldout_predicted_onset"], p["observed_onset"], p["censored"], p["budget"])
        out["heldout_median_abs_log_err"], out["heldout_censor_accuracy"] = med, acc
    return out


def fit_overlay(
    predictions: pd.DataFrame,
    *,
    models: Sequence[str] | None = None,
    hue: str | None = None,
    fits: Sequence[Mapping] | None = None,
    measure: str | None = None,
) -> Figure:
    """Predicted vs observed onset, log-log, one panel per fitted model.

    Filled markers are the in-sample fit, open markers the out-of-fold (held-out) prediction of the same cell.
    Circles are cells with an onset; censored cells sit at their budget as right-pointing triangles (their true
    onset lies to the right). Predictions of no onset (inf) sit in a band at the top. The dashed diagonal is
    identity, dotted lines mark the budget. Each panel states the held-out median |Δ ln t| and censor accuracy
    computed from `predictions`, and, if `fits` (records of fits.json) are given, the model's AIC and k.
    `hue`: colour points by a grid axis (e.g. "alpha").
    """
    _require(predictions, ["model", "cell", "observed_onset", "censored", "budget", "predicted_onset"],
             "the predictions table")
    all_models = list(dict.fromkeys(predictions["model"]))
    if models is None:
        models = all_models
    else:
        unknown = [mm for mm in models if mm not in all_models]
        if unknown:
            raise ValueError(f"models: {unknown} not in the predictions table; it has {all_models}")
        models = list(models)
    if not models:
        raise ValueError("the predictions table is empty: nothing to plot")
    fit_by_model = {rec["model"]: rec for rec in (fits or ())}
    has_heldout = "heldout_predicted_onset" in predictions

    p_all = predictions[predictions["model"].isin(models)]
    cols = ["observed_onset", "budget", "predicted_onset"] + (["heldout_predicted_onset"] if has_heldout else [])
    vals = p_all[cols].to_numpy(float).ravel()
    vals = vals[np.isfinite(vals) & (vals > 0)]
    lo, hi = float(vals.min()) / 1.6, float(vals.max()) * 1.6
    y_inf = hi * 2.2  # where "no onset predicted" points sit
    budgets = np.unique(p_all["budget"].to_numpy(float))

    if hue is not None:
        _require(predictions, [hue], "the predictions table")
        levels = _categories(p_all[hue])
        palette = dict(zip(levels, sns.color_palette("viridis" if len(levels) > 3 else "colorblind",
                                                      len(levels))))
    else:
        levels, palette = [None], {None: sns.color_palette("colorblind")[0]}

    ncols = min(len(models), 3)
    nrows = int(np.ceil(len(models) / ncols))
    xlabel = "observed onset step" + (f" ({measure_label(measure)})" if measure else "")
    with mpl.rc_context(_RC):
        fig = _new_figure(3.5 * ncols + 0.4, 3.4 * nrows + 0.7)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for k, (ax, model) in enumerate(zip(axes.ravel(), models)):
            ax.set_label(f"fit:{model}")
            p = p_all[p_all["model"] == model]
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, y_inf * 1.5)
            ax.plot([lo, hi], [lo, hi], color="0.35", linestyle="--", linewidth=0.9, gid="identity", zorder=1)
            ax.axhspan(hi, y_inf * 1.5, color="0.93", zorder=0, linewidth=0)
            ax.text(lo * 1.15, y_inf, "no onset\npredicted", fontsize=6.5, color="0.35", va="center", ha="left")
            for b in budgets:
                ax.axvline(b, color="0.55", linestyle=":", linewidth=0.9, gid="budget-line", zorder=1)
                ax.axhline(b, color="0.55", linestyle=":", linewidth=0.9, zorder=1)
            for level in levels:
                q = p if level is None else p[p[hue] == level]
                _scatter_fit(ax, q, palette[level], y_inf, hi, has_heldout)
            stats = _overlay_stats(p)
            lines = [f"{int(stats['n'])} cells, {int(stats['n_censored'])} censored"]
            if has_heldout:
                lines.append(f"held-out median |Δ ln t| = {stats['heldout_median_abs_log_err']:.2f}")
                lines.append(f"held-out censor accuracy = {stats['heldout_censor_accuracy']:.2f}")
            ax.text(0.97, 0.03, "\n".join(lines), transform=ax.transAxes, ha="right", va="bottom", fontsize=7,
                    color="0.2", gid="fit-stats", zorder=6,
                    bbox=dict(boxstyle="round,pad=0.25", facecolor="white", edgecolor="none", alpha=0.8))
            for axis in (ax.xaxis, ax.yaxis):  # no tick labels inside the "no onset predicted" band
                axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _fmt_steps(v) if v <= hi else ""))
                axis.set_minor_formatter(ticker.NullFormatter())
            title = str(model)
            rec = fit_by_model.get(model)
            if rec is not None:
                extras = [f"k = {rec['k']}" if "k" in rec else "", f"AIC = {rec['aic']:.1f}" if "aic" in rec else ""]
                title += "  (" + ", ".join(e for e in extras if e) + ")" if any(extras) else ""
            ax.set_title(title)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("predicted onset step" if k % ncols == 0 else "")
            ax.grid(True, which="major", alpha=0.25, linewidth=0.6)
        for ax in axes.ravel()[len(models):]:
            ax.remove()
        handles = [
            Line2D([], [], marker="o", color="0.3", linestyle="none", markersize=5, label="onset, in-sample fit"),
            Line2D([], [], marker=">", color="0.3", linestyle="none", markersize=6, label="censored (at budget)"),
        ]
        if has_heldout:
            handles[1:1] = [Line2D([], [], marker="o", markerfacecolor="none", color="0.3", linestyle="none",
                                   markersize=5, label="onset, held-out prediction")]
            handles.append(Line2D([], [], marker=">", markerfacecolor="none", color="0.3", linestyle="none",
                                  markersize=6, label="censored, held-out"))
        if hue is not None:
            handles += [Line2D([], [], marker="s", color=palette[v], linestyle="none", markersize=6,
                               label=_assign_label(hue, v)) for v in levels]
        _legend(fig, handles, max_cols=4)
    return fig


def _scatter_fit(ax, p: pd.DataFrame, color, y_inf: float, hi: float, has_heldout: bool) -> None:
    """The four kinds of point of one colour group: (onset | censored) x (in-sample | held-out)."""
    cens = p["censored"].to_numpy(bool)
    x = np.where(cens, p["budget"].to_numpy(float), p["observed_onset"].to_numpy(float))

    def place(pred: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(pred) & (pred > 0), np.minimum(pred, hi), y_inf)

    kinds = [("predicted_onset", True)] + ([("heldout_predicted_onset", False)] if has_heldout else [])
    for col, filled in kinds:
        y = place(p[col].to_numpy(float))
        tag = "fit" if filled else "heldout"
        face = color if filled else "none"
        for mask, marker, size, name in ((~cens, "o", 22, "observed"), (cens, ">", 34, "censored")):
            if mask.any():
                ax.scatter(x[mask], y[mask], s=size, marker=marker, facecolors=face, edgecolors=color,
                           linewidths=1.0, alpha=0.9 if filled else 1.0, gid=f"{tag}-{name}", zorder=3)
