"""The phase diagram: median onset over two grid axes (censored cells hatched), final IC and IW accuracy beside
it with their baselines, and a fitted model's no-onset boundary. The seed aggregation is
:func:`zipfind.survival.seed_summary`; this module only draws it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colors as mcolors
from matplotlib import patheffects, ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from ..baselines import BASELINES, baselines_for, iw_majority
from ..survival import seed_summary
from .style import (
    _RC, _as_list, _assign_label, _categories, _fmt_steps, _fmt_value, _ink_for, _legend, _new_figure, _require,
    _varying_axes, axis_label, measure_label,
)


def phase_table(
    onsets: pd.DataFrame, *, x: str = "alpha", y: str = "B", facet: str | Sequence[str] | None = None
) -> pd.DataFrame:
    """The seed summary behind the phase diagram: :func:`zipfind.survival.seed_summary` grouped by (facet..., y,
    x), so the figure, the tables and the README give the same medians. ``facet=None`` groups by x and y only."""
    keys = [*_as_list(facet), y, x]
    _require(onsets, [*keys, "onset_step", "censored", "budget"], "the onsets table")
    return seed_summary(onsets, by=keys)


def _heatmap(ax, grid: np.ndarray, xcats: list, ycats: list, *, cmap, norm) -> mpl.collections.QuadMesh:
    """Draw `grid` [ny, nx] as a categorical heatmap: category i is centred at i + 0.5, first y row at the bottom."""
    ny, nx = grid.shape
    mesh = ax.pcolormesh(
        np.arange(nx + 1), np.arange(ny + 1), np.ma.masked_invalid(grid), cmap=cmap, norm=norm,
        edgecolors="white", linewidth=1.0,
    )
    ax.set_xlim(0, nx)
    ax.set_ylim(0, ny)
    ax.set_xticks(np.arange(nx) + 0.5, [_fmt_value(v) for v in xcats])
    ax.set_yticks(np.arange(ny) + 0.5, [_fmt_value(v) for v in ycats])
    ax.tick_params(length=0)
    for side in ("left", "bottom", "top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_facecolor("white")
    return mesh


def _grid(summary: pd.DataFrame, value: str, x: str, y: str, xcats: list, ycats: list) -> np.ndarray:
    """Pivot `summary[value]` onto a [ny, nx] array in category order (NaN where a combination is missing)."""
    out = np.full((len(ycats), len(xcats)), np.nan)
    xi = {v: i for i, v in enumerate(xcats)}
    yi = {v: i for i, v in enumerate(ycats)}
    for xv, yv, val in zip(summary[x], summary[y], summary[value]):
        out[yi[yv], xi[xv]] = val
    return out


def _axis_positions(values: np.ndarray, cats: list) -> np.ndarray:
    """Map axis values onto heatmap coordinates: category i sits at i + 0.5, linear in between and beyond."""
    c = np.asarray(cats, dtype=float)
    v = np.asarray(values, dtype=float)
    pos = np.arange(c.size) + 0.5
    out = np.interp(v, c, pos)
    left = (v - c[0]) / (c[1] - c[0]) + pos[0]
    right = (v - c[-1]) / (c[-1] - c[-2]) + pos[-1]
    return np.where(v < c[0], left, np.where(v > c[-1], right, out))


_LOG_RATIO_CAP = 4.0


def _theory_field(
    theory: pd.DataFrame, x: str, y: str, xcats: list, ycats: list
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The theory's ln(predicted onset / budget) on heatmap coordinates: (PX [n], PY [m], Z [m, n]).

    Non-finite predictions (no onset) count as far beyond the budget; the no-onset region is Z > 0. An axis with
    a single category shows the theory slice nearest to it across the whole cell; a theory with a single value
    along an axis is taken as constant along it. Returns None if the field cannot be drawn (fewer than 2x2 points).
    """
    pred = theory["predicted_onset"].to_numpy(float)
    budget = theory["budget"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log(pred / budget)
    z = np.where(np.isfinite(pred), z, np.inf)
    z = np.clip(np.nan_to_num(z, nan=_LOG_RATIO_CAP, posinf=_LOG_RATIO_CAP, neginf=-_LOG_RATIO_CAP),
                -_LOG_RATIO_CAP, _LOG_RATIO_CAP)
    t = pd.DataFrame({x: theory[x].to_numpy(float), y: theory[y].to_numpy(float), "z": z})

    def restrict(t: pd.DataFrame, col: str, cats: list) -> pd.DataFrame:
        if len(cats) == 1:
            vals = np.unique(t[col])
            nearest = vals[np.argmin(np.abs(vals - float(cats[0])))]
            return t[t[col] == nearest]
        return t

    t = restrict(restrict(t, x, xcats), y, ycats)
    Z = t.pivot_table(index=y, columns=x, values="z", aggfunc="mean")  # [m, n]
    xs, ys, Zv = Z.columns.to_numpy(float), Z.index.to_numpy(float), Z.to_numpy(float)

    def coords(vals: np.ndarray, cats: list, Zv: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
        if vals.size == 1:  # constant along this axis: stretch over the whole heatmap
            return np.array([0.0, float(len(cats))]), np.repeat(Zv, 2, axis=axis)
        if len(cats) == 1:
            return np.linspace(0.0, 1.0, vals.size), Zv
        return _axis_positions(vals, cats), Zv

    PX, Zv = coords(xs, xcats, Zv, axis=1)
    PY, Zv = coords(ys, ycats, Zv, axis=0)
    if Zv.shape[0] < 2 or Zv.shape[1] < 2:
        return None
    return PX, PY, np.ma.masked_invalid(Zv)


_THEORY_COLORS = ("#111111", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")
_THEORY_STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (3, 1)))


@dataclass(frozen=True)
class _Panel:
    """One heatmap kind of the phase diagram: which summary column, how to colour and annotate it."""

    value: str
    title: str
    cbar_label: str
    kind: Literal["onset", "accuracy"]


def phase_diagram(
    onsets: pd.DataFrame,
    *,
    x: str = "alpha",
    y: str = "B",
    facet: str | Sequence[str] | None = None,
    theory: pd.DataFrame | None = None,
    companions: bool = True,
    cmap: str = "rocket_r",
    acc_cmap: str = "mako",
) -> Figure:
    """Phase diagram of induction-head onset over two grid axes, with censored cells and a theory boundary.

    Colour is the Kaplan-Meier median onset step across seeds on a log scale (see `phase_table`); each cell with
    an onset is annotated with the median and its interval (the seed-bootstrap interval with several seeds, the
    run's own interval with one; and the count of censored seeds if some are); groups whose median is censored
    are greyed, hatched and labelled "no ICL by N steps" (N: the largest censoring time, `budget`). With
    `companions`, the final IC and IW accuracy over the same axes are drawn alongside (where ICL wins, where IWL
    wins, where both coexist), with their baselines: the IC chance 1/L and copy-a-context-label 1/N levels in
    the IC title and as lines on the accuracy colour bar, and each cell's majority-label level under its IW
    accuracy (an IW accuracy near it is no in-weights learning).

    `facet`: a column (or columns) drawn as one row of panels per value; None picks every other grid axis that
    varies (besides x, y and seed), and `()` turns faceting off (seeds and any other axis are then pooled).
    `theory`: a fine grid with float columns `x`, `y`, `predicted_onset` (inf/NaN where no onset is predicted)
    and `budget`, optionally `model` (one boundary per model) and facet columns (else the same boundary is drawn
    on every facet). The boundary of the predicted no-onset region (predicted onset > budget, or none) is drawn
    as a contour; the fine grid is mapped onto the categorical cells by linear interpolation between category
    positions.
    """
    _require(onsets, [x, y, "onset_step", "censored", "budget"], "the onsets table")
    if onsets.empty:
        raise ValueError("the onsets table is empty: nothing to plot")
    facets = _varying_axes(onsets, exclude=[x, y]) if facet is None else _as_list(facet)
    _require(onsets, facets, "the onsets table")
    if "iw_majority" not in onsets and {"alpha", "K", "L"} <= set(onsets.columns):  # an onsets table from before
        onsets = onsets.assign(iw_majority=[iw_majority(a, k, l) for a, k, l in onsets[["alpha", "K", "L"]].values])
    summary = phase_table(onsets, x=x, y=y, facet=facets)
    xcats, ycats = _categories(onsets[x]), _categories(onsets[y])
    facet_keys = (
        [()] if not facets else list(summary[facets].drop_duplicates().itertuples(index=False, name=None))
    )

    measures = onsets["measure"].dropna().unique() if "measure" in onsets else []
    onset_label = f"onset step ({measure_label(measures[0])})" if len(measures) == 1 else "onset step"
    panels = [_Panel("onset_step", "ICL onset", onset_label, "onset")]
    if companions:
        for col, title in (("final_ic_acc", "final IC accuracy"), ("final_iw_acc", "final IW accuracy")):
            if col in summary and summary[col].notna().any():
                panels.append(_Panel(col, title, "final accuracy", "accuracy"))

    finite = summary["onset_step"].to_numpy(float)
    finite = finite[np.isfinite(finite) & (finite > 0)]
    budget_max = float(summary["budget"].max())
    if finite.size:
        vmin, vmax = float(finite.min()), float(finite.max())
    else:
        vmin, vmax = budget_max / 10.0, budget_max
    if vmax <= vmin * 1.05:
        vmin, vmax = vmin / 1.5, vmax * 1.5
    onset_norm = mcolors.LogNorm(vmin=vmin, vmax=vmax)
    onset_cmap = sns.color_palette(cmap, as_cmap=True)
    acc_norm = mcolors.Normalize(vmin=0.0, vmax=1.0)
    acc_cmap_ = sns.color_palette(acc_cmap, as_cmap=True)

    ic_levels = _ic_levels(onsets)
    n_rows, n_cols = len(facet_keys), len(panels)
    nx, ny = len(xcats), len(ycats)
    cell_w, cell_h = 0.95, 0.62
    panel_w, panel_h = max(nx * cell_w, 1.6) + 0.9, max(ny * cell_h, 1.1) + 0.9
    with mpl.rc_context(_RC):
        fig = _new_figure(n_cols * panel_w + 1.4 * (1 + (n_cols > 1)), n_rows * panel_h + 0.5)
        axes = fig.subplots(n_rows, n_cols, squeeze=False)
        meshes: dict[str, list] = {"onset": [], "accuracy": []}
        legend_handles: dict[str, object] = {}
        n_seeds_max = int(summary["n_seeds"].max())
        for r, fkey in enumerate(facet_keys):
            sub = summary
            for col, val in zip(facets, fkey):
                sub = sub[sub[col] == val]
            facet_title = ", ".join(_assign_label(c, v) for c, v in zip(facets, fkey))
            for c, panel in enumerate(panels):
                ax = axes[r, c]
                ax.set_label(panel.value if panel.kind == "accuracy" else "onset")
                grid = _grid(sub, panel.value, x, y, xcats, ycats)  # [ny, nx]
                if panel.kind == "onset":
                    cens = _grid(sub.assign(_c=sub["censored"].astype(float)), "_c", x, y, xcats, ycats) == 1.0
                    shown = np.where(cens, np.nan, grid)
                    mesh = _heatmap(ax, shown, xcats, ycats, cmap=onset_cmap, norm=onset_norm)
                    _annotate_onsets(ax, sub, x, y, xcats, ycats, onset_cmap, onset_norm, legend_handles)
                else:
                    mesh = _heatmap(ax, grid, xcats, ycats, cmap=acc_cmap_, norm=acc_norm)
                    _annotate_values(ax, grid, acc_cmap_, acc_norm)
                    if panel.value == "final_iw_acc" and "iw_majority" in sub and sub["iw_majority"].notna().any():
                        _annotate_majority(ax, _grid(sub, "iw_majority", x, y, xcats, ycats), grid, acc_cmap_,
                                           acc_norm)
                meshes[panel.kind].append(mesh)
                if theory is not None:
                    _draw_theory(ax, theory, x, y, xcats, ycats, dict(zip(facets, fkey)), legend_handles,
                                 hatch=panel.kind == "onset")
                title = panel.title
                if panel.kind == "onset" and n_seeds_max > 1:
                    title += f" (median of {n_seeds_max} seeds)"
                if panel.value == "final_ic_acc" and ic_levels:
                    title += "\n" + ", ".join(f"{label} {v:.3g}" for label, v in ic_levels.values())
                if panel.value == "final_iw_acc" and "iw_majority" in sub and sub["iw_majority"].notna().any():
                    title += "\n(small: majority-label level)"
                ax.set_title(f"{facet_title}\n{title}" if facet_title else title)
                ax.set_xlabel(axis_label(x))
                ax.set_ylabel(axis_label(y) if c == 0 else "")
        onset_axes = [a for a in axes.ravel() if a.get_label() == "onset"]
        acc_axes = [a for a in axes.ravel() if a.get_label() != "onset"]
        cb = fig.colorbar(meshes["onset"][0], ax=onset_axes, location="right", fraction=0.06, pad=0.02,
                          aspect=25)
        cb.set_label(onset_label)
        cb.ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
        cb.ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _fmt_steps(v)))
        cb.ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        cb.outline.set_linewidth(0)
        if acc_axes:
            cb2 = fig.colorbar(meshes["accuracy"][0], ax=acc_axes, location="right", fraction=0.06, pad=0.02,
                               aspect=25)
            cb2.set_label("final accuracy")
            cb2.outline.set_linewidth(0)
            for (name, (_, v)), style in zip(ic_levels.items(), (":", "-.")):
                cb2.ax.axhline(v, color="white", linestyle=style, linewidth=1.4, gid=f"baseline:{name}")
        if legend_handles:
            _legend(fig, list(legend_handles.values()), max_cols=3)
    return fig


def _shown_interval(row) -> tuple[float, float]:
    """The interval written in a cell: the seed-bootstrap one where there are several seeds, else the run's own
    (probe bootstrap widened to the checkpoint brackets)."""
    if row.n_seeds > 1 and np.isfinite(row.seed_lo):
        return row.seed_lo, row.seed_hi
    return row.onset_lo, row.onset_hi


def _annotate_onsets(ax, sub, x, y, xcats, ycats, cmap, norm, legend_handles) -> None:
    """Label each onset cell with median and interval; hatch and label the censored ones."""
    xi = {v: i for i, v in enumerate(xcats)}
    yi = {v: i for i, v in enumerate(ycats)}
    for row in sub.itertuples(index=False):
        i, j = xi[getattr(row, x)], yi[getattr(row, y)]
        if row.censored:
            ax.add_patch(Rectangle((i + 0.02, j + 0.02), 0.96, 0.96, facecolor="#d9d9d9", edgecolor="#8c8c8c",
                                   hatch="///", linewidth=0.0, gid="censored-cell", zorder=2))
            ax.text(i + 0.5, j + 0.5, f"no ICL by\n{_fmt_steps(row.budget, 3)} steps", ha="center", va="center",
                    fontsize=7, color="#404040", gid="censored-label", zorder=6,
                    bbox=dict(boxstyle="round,pad=0.15", facecolor="#d9d9d9", edgecolor="none", alpha=0.85))
            legend_handles.setdefault(
                "censored",
                Patch(facecolor="#d9d9d9", edgecolor="#8c8c8c", hatch="///",
                      label="no ICL by the budget (most seeds censored)"),
            )
            continue
        if not np.isfinite(row.onset_step):
            continue
        lines = [_fmt_steps(row.onset_step)]
        lo, hi = _shown_interval(row)
        if np.isfinite(lo) and not np.isnan(hi) and hi > lo:
            lines.append(f"{_fmt_steps(lo)}–{_fmt_steps(hi)}")
        if row.n_censored:
            lines.append(f"{row.n_censored}/{row.n_seeds} censored")
        ink = _ink_for(cmap(norm(row.onset_step)))
        ax.text(i + 0.5, j + 0.52, lines[0], ha="center", va="bottom" if len(lines) > 1 else "center",
                fontsize=8.5, fontweight="bold", color=ink, gid="onset-annotation", zorder=3)
        if len(lines) > 1:
            ax.text(i + 0.5, j + 0.48, "\n".join(lines[1:]), ha="center", va="top", fontsize=6.5, color=ink,
                    gid="onset-interval", zorder=3, linespacing=1.1)


def _ic_levels(onsets: pd.DataFrame) -> dict[str, tuple[str, float]]:
    """IC accuracy baselines of the cells' task (zipfind.baselines) common to every cell, name -> (label, level);
    left out where they vary (e.g. with L or N)."""
    labels = {b.name: b.label for b in BASELINES}
    levels = [baselines_for("ic_acc", row) for row in onsets.to_dict("records")]
    if not levels:
        return {}
    return {n: (labels[n], v) for n, v in levels[0].items() if all(lv.get(n) == v for lv in levels)}


def _annotate_majority(ax, majority: np.ndarray, acc: np.ndarray, cmap, norm) -> None:
    """Under each IW accuracy [ny, nx], the cell's majority-label level (what always answering one label scores)."""
    for j, i in zip(*np.nonzero(np.isfinite(majority) & np.isfinite(acc))):
        ax.text(i + 0.5, j + 0.2, f"maj {majority[j, i]:.2f}", ha="center", va="center", fontsize=6,
                color=_ink_for(cmap(norm(acc[j, i]))), gid="baseline:iw_majority", zorder=3)


def _annotate_values(ax, grid: np.ndarray, cmap, norm) -> None:
    """Write each accuracy cell's value in it."""
    for j, i in zip(*np.nonzero(np.isfinite(grid))):
        v = grid[j, i]
        ax.text(i + 0.5, j + 0.5, f"{v:.2f}", ha="center", va="center", fontsize=8, color=_ink_for(cmap(norm(v))),
                gid="value-annotation", zorder=3)


def _draw_theory(ax, theory, x, y, xcats, ycats, facet_values, legend_handles, *, hatch: bool) -> None:
    """Contour(s) of the predicted no-onset boundary; with one model and `hatch`, dot its no-onset side."""
    _require(theory, [x, y, "predicted_onset", "budget"], "the theory table")
    for col in (x, y):
        if len(_categories(theory[col])) == 0:
            raise ValueError(f"the theory table has no values of {col}")
    t = theory
    for col, val in facet_values.items():
        if col in t.columns:
            t = t[np.isclose(t[col].astype(float), float(val))] if np.issubdtype(t[col].dtype, np.number) \
                else t[t[col] == val]
    groups = list(t.groupby("model", sort=False)) if "model" in t.columns else [(None, t)]
    for k, (model, tm) in enumerate(groups):
        field = _theory_field(tm, x, y, xcats, ycats)
        if field is None:
            continue
        PX, PY, Z = field
        color, style = _THEORY_COLORS[k % len(_THEORY_COLORS)], _THEORY_STYLES[k % len(_THEORY_STYLES)]
        label = "predicted no-onset boundary" + (f" ({model})" if model is not None else "")
        if Z.min() < 0.0 < Z.max():
            cs = ax.contour(PX, PY, Z, levels=[0.0], colors=[color], linestyles=[style], linewidths=1.8, zorder=5)
            cs.set_path_effects([patheffects.withStroke(linewidth=3.6, foreground="white")])
            cs.set_gid("theory-boundary")
            cs.set_label(label)
        if hatch and len(groups) == 1 and Z.max() > 0.0:
            cf = ax.contourf(PX, PY, Z, levels=[0.0, _LOG_RATIO_CAP + 1.0], colors="none", hatches=[".."],
                             zorder=4)
            cf.set_edgecolor("0.3")
            cf.set_linewidth(0.0)
            cf.set_hatch_linewidth(0.35)
            cf.set_gid("theory-no-onset-region")
            legend_handles.setdefault("theory-region", Patch(facecolor="none", edgecolor="0.3", hatch="..",
                                                             linewidth=0.0, label="predicted no-onset region"))
        legend_handles.setdefault(f"theory-{model}", Line2D([], [], color=color, linestyle=style, linewidth=1.8,
                                                             label=label))

