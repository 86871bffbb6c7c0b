"""Learning curves: measures against training step, the detected onset and its interval marked, and each
accuracy's baselines (:mod:`zipfind.baselines`) drawn as horizontal lines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..baselines import BASELINES, baselines_for
from .style import (
    _RC, _assign_label, _categories, _fmt_steps, _is_bounded, _legend, _new_figure, _require, _select,
    _varying_axes, measure_label,
)

_STYLE = {b.name: b.style for b in BASELINES}


def _draw_baselines(ax, name: str, rows: pd.DataFrame, color) -> list[str]:
    """Horizontal lines at the baselines of measure `name` for the cells in `rows` (one line per distinct level);
    returns the baseline names drawn."""
    drawn = []
    for row in rows.to_dict("records"):
        for base, level in baselines_for(name, row).items():
            ax.axhline(level, color=color, linestyle=_STYLE[base], linewidth=0.9, alpha=0.8, zorder=1,
                       gid=f"baseline:{base}")
            drawn.append(base)
    return list(dict.fromkeys(drawn))


def _baseline_handles(names: Sequence[str]) -> list[Line2D]:
    return [Line2D([], [], color="0.4", linestyle=b.style, linewidth=0.9, label=b.label)
            for b in BASELINES if b.name in names]


_MEASURE_COLORS = {
    "ic_acc": "#d62728",
    "iw_acc": "#1f77b4",
    "ic_ctx_acc": "#ff7f0e",
    "induction_score": "#2ca02c",
    "ic2_acc": "#9467bd",
    "prev_token_score": "#8c564b",
}


def _cell_title(row: pd.Series, axes_: Sequence[str]) -> str:
    """The cell's coordinates along the axes that vary in the selection (its main ones if none vary)."""
    cols = list(axes_) or [c for c in ("alpha", "B", "K", "seed") if c in row.index]
    return ", ".join(_assign_label(c, row[c]) for c in cols) or f"cell {int(row['cell'])}"


DEFAULT_MEASURES = ("ic_acc", "iw_acc", "ic_ctx_acc", "induction_score")
"""Measures drawn when none are named (those the run has: the token task has no ic_ctx_acc)."""


def learning_curves(
    metrics: pd.DataFrame,
    onsets: pd.DataFrame,
    *,
    where: Mapping[str, object] | None = None,
    hue: str | None = None,
    measures: Sequence[str] | None = None,
    logx: bool = True,
    max_panels: int = 48,
) -> Figure:
    """Training curves of the chosen measures (default: DEFAULT_MEASURES) against step, with the detected onset
    and its interval marked.

    `where` selects cells by the onsets table's columns (`{"B": 2, "alpha": [0.5, 1.0]}`). Without `hue`, one
    panel per cell shows every measure; the onset is a dashed vertical line with its interval shaded, and a
    censored cell says "no onset by N steps". With `hue` (a grid axis, e.g. "alpha"), one panel per measure
    overlays all selected cells coloured by that axis (seeds share a colour); onsets are drawn as a rug of
    points with interval bars near the top of each panel, censored cells as right-pointing triangles at the
    budget. On a log step axis, step 0 is left out.
    """
    _require(metrics, ["cell", "step", "measure", "value"], "the metrics table")
    _require(onsets, ["cell", "onset_step", "censored", "budget"], "the onsets table")
    chosen = _select(onsets, where).sort_values("cell")
    present = set(metrics["measure"].unique())
    measures = [m for m in DEFAULT_MEASURES if m in present] if measures is None else list(measures)
    if not measures:
        raise ValueError("measures: empty — name at least one measure of the metrics table")
    absent = [m for m in measures if m not in present]
    if absent:
        raise ValueError(f"measures: {absent} not in the metrics table; it has {sorted(present)}")
    m = metrics[metrics["cell"].isin(chosen["cell"]) & metrics["measure"].isin(measures)]
    if logx:
        m = m[m["step"] > 0]
    m = m.sort_values(["cell", "measure", "step"])
    if m.empty:
        raise ValueError("the metrics table has no rows for the selected cells and measures")
    bounded = all(_is_bounded(name) for name in measures)
    axes_ = [c for c in _varying_axes(chosen, exclude=[]) if c != "seed"]
    if "seed" in chosen and chosen["seed"].nunique() > 1:
        axes_.append("seed")

    with mpl.rc_context(_RC):
        if hue is None:
            fig = _curves_per_cell(m, chosen, measures, axes_, logx, bounded, max_panels)
        else:
            _require(chosen, [hue], "the onsets table")
            fig = _curves_by_hue(m, chosen, measures, hue, logx, bounded)
    return fig


def _ylabel(measures: Sequence[str], bounded: bool) -> str:
    if len(measures) == 1:
        return measure_label(measures[0])
    return "accuracy / score" if bounded else "value"


def _curves_per_cell(m, chosen, measures, axes_, logx, bounded, max_panels) -> Figure:
    n = len(chosen)
    if n > max_panels:
        raise ValueError(f"where: selects {n} cells, more than max_panels={max_panels} panels; narrow it or "
                         "pass hue= to overlay cells")
    ncols = min(n, 4)
    nrows = int(np.ceil(n / ncols))
    fig = _new_figure(3.0 * ncols + 0.4, 2.3 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=bounded)
    palette = sns.color_palette("colorblind", len(measures))
    by_cell = dict(tuple(m.groupby("cell")))
    drawn: list[str] = []
    for k, (ax, row) in enumerate(zip(axes.ravel(), chosen.itertuples(index=False))):
        row_s = pd.Series(row._asdict())
        ax.set_label(f"curves:cell{int(row.cell)}")
        cm = by_cell.get(row.cell)
        for q, name in enumerate(measures):
            d = cm[cm["measure"] == name] if cm is not None else None
            if d is None or d.empty:
                continue
            color = _MEASURE_COLORS.get(name, palette[q])
            ax.plot(d["step"], d["value"], color=color, linewidth=1.5, label=measure_label(name),
                    gid=f"curve:{name}")
            drawn += _draw_baselines(ax, name, pd.DataFrame([row._asdict()]), color)
        _mark_onset_span(ax, row)
        ax.set_title(_cell_title(row_s, axes_))
        if logx:
            ax.set_xscale("log")
        if bounded:
            ax.set_ylim(-0.02, 1.04)
        ax.grid(True, alpha=0.25, linewidth=0.6)
        if k % ncols == 0:
            ax.set_ylabel(_ylabel(measures, bounded))
        if k >= n - ncols:
            ax.set_xlabel("training step")
            ax.xaxis.set_tick_params(labelbottom=True)
    for ax in axes.ravel()[n:]:
        ax.remove()
    handles = [Line2D([], [], color=_MEASURE_COLORS.get(nm, palette[q]), linewidth=1.5, label=measure_label(nm))
               for q, nm in enumerate(measures)]
    handles += [Line2D([], [], color="black", linestyle="--", linewidth=1.0, label="detected onset"),
                Patch(facecolor="0.5", alpha=0.2, label="onset interval")]
    handles += _baseline_handles(drawn)
    _legend(fig, handles)
    return fig


def _mark_onset_span(ax, row) -> None:
    """Dashed line at the onset, shaded interval; or a note that the cell never showed an onset."""
    if bool(row.censored) or not np.isfinite(row.onset_step):
        ax.axvline(row.budget, color="0.4", linestyle=":", linewidth=1.0, gid="budget-line")
        ax.text(0.03, 0.96, f"no onset by {_fmt_steps(row.budget, 3)} steps", transform=ax.transAxes,
                ha="left", va="top", fontsize=7.5, color="0.3", gid="censored-note")
        return
    lo, hi = getattr(row, "onset_lo", np.nan), getattr(row, "onset_hi", np.nan)
    if np.isfinite(lo) and not np.isnan(hi) and hi > lo:  # an interval open above is drawn up to the budget
        ax.axvspan(lo, min(hi, row.budget), color="0.5", alpha=0.2, linewidth=0, gid="onset-interval")
    ax.axvline(row.onset_step, color="black", linestyle="--", linewidth=1.0, gid="onset-line")


def _curves_by_hue(m, chosen, measures, hue, logx, bounded) -> Figure:
    levels = _categories(chosen[hue])
    palette = dict(zip(levels, sns.color_palette("viridis" if len(levels) > 3 else "colorblind", len(levels))))
    d = m.merge(chosen[["cell", hue]], on="cell")
    drawn: list[str] = []
    n = len(measures)
    ncols = min(n, 4)
    nrows = int(np.ceil(n / ncols))
    fig = _new_figure(3.2 * ncols + 0.4, 2.6 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
    for k, (ax, name) in enumerate(zip(axes.ravel(), measures)):
        ax.set_label(f"curves:{name}")
        sns.lineplot(data=d[d["measure"] == name], x="step", y="value", hue=hue, units="cell", estimator=None,
                     palette=palette, hue_order=levels, linewidth=1.3, ax=ax, legend=False)
        ax.set_title(measure_label(name))
        if logx:
            ax.set_xscale("log")
        ax.grid(True, alpha=0.25, linewidth=0.6)
        ax.set_ylabel(measure_label(name) if not bounded else ("accuracy / score" if k % ncols == 0 else ""))
        ax.set_xlabel("training step" if k >= n - ncols else "")
        if k >= n - ncols:
            ax.xaxis.set_tick_params(labelbottom=True)
        _onset_rug(ax, chosen, hue, levels, palette, _is_bounded(name))
        for v in levels:
            drawn += _draw_baselines(ax, name, chosen[chosen[hue] == v].drop_duplicates(
                [c for c in ("alpha", "K", "L", "N") if c in chosen]), palette[v])
    for ax in axes.ravel()[n:]:
        ax.remove()
    handles = [Line2D([], [], color=palette[v], linewidth=1.5, label=_assign_label(hue, v)) for v in levels]
    handles += [Line2D([], [], color="0.3", marker="o", linestyle="-", markersize=4, label="onset and interval"),
                Line2D([], [], color="0.3", marker=">", linestyle="none", markersize=5,
                       label="no onset by the budget")]
    handles += _baseline_handles(drawn)
    _legend(fig, handles)
    return fig


_RUG_STEP = 0.065  # height of one rug row, in data units of a [0, 1] measure


def _onset_rug(ax, chosen, hue, levels, palette, bounded: bool) -> None:
    """Onsets as points with interval bars, one row per hue level; censored cells as '>' at the budget.

    For a [0, 1] measure the rows sit in a strip above 1 (the y limit is raised to make room); otherwise they
    sit near the top of the panel, in axes fraction."""
    if bounded:
        trans = ax.transData
        ys = 1.0 + _RUG_STEP * (np.arange(len(levels)) + 1)
        ax.set_ylim(-0.02, ys[-1] + _RUG_STEP)
        ax.set_yticks(np.linspace(0.0, 1.0, 6))
        ax.axhline(1.0 + 0.5 * _RUG_STEP, color="0.85", linewidth=0.6, zorder=0)
    else:
        trans = ax.get_xaxis_transform()  # x in data, y in axes fraction
        ys = 0.97 - 0.05 * np.arange(len(levels))
    for yq, level in zip(ys, levels):
        sel = chosen[chosen[hue] == level]
        ok = sel[~sel["censored"].astype(bool) & np.isfinite(sel["onset_step"].astype(float))]
        cen = sel[sel["censored"].astype(bool)]
        color = palette[level]
        if len(ok):
            if {"onset_lo", "onset_hi"} <= set(ok.columns):
                lo = ok["onset_lo"].to_numpy(float)
                hi = np.minimum(ok["onset_hi"].to_numpy(float), ok["budget"].to_numpy(float))  # open above: budget
                has = np.isfinite(lo) & np.isfinite(hi)
                ax.hlines(np.full(int(has.sum()), yq), lo[has], hi[has], colors=[color], linewidth=1.2,
                          transform=trans, gid="onset-interval")
            ax.scatter(ok["onset_step"], np.full(len(ok), yq), s=14, color=color, edgecolor="white",
                       linewidth=0.4, transform=trans, zorder=5, gid="onset-point")
        if len(cen):
            ax.scatter(cen["budget"], np.full(len(cen), yq), s=22, marker=">", color=color, transform=trans,
                       zorder=5, gid="censored-point", clip_on=False)

