"""Figures for zipfind: phase diagrams, learning curves and theory overlays.

Every public function takes the package's tables (see the table contracts: onsets, metrics, predictions) and
returns a `matplotlib.figure.Figure`; nothing is shown or written to disk (the CLI and store save figures).
Figures are built on a bare `Figure` with an Agg canvas, so no pyplot state or screen is involved, and styling is
applied through a local `rc_context` (seaborn's global theme is never changed).

For programmatic inspection (tests, notebooks) the artists carry names: data axes have labels such as
``"onset"``, ``"final_ic_acc"``, ``"curves:ic_acc"``, ``"fit:M4"``, and the marks have gids such as
``"onset-annotation"``, ``"censored-cell"``, ``"theory-boundary"``, ``"fit-censored"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colors as mcolors
from matplotlib import patheffects, ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

__all__ = [
    "AXIS_LABELS",
    "MEASURE_LABELS",
    "axis_label",
    "measure_label",
    "phase_table",
    "phase_diagram",
    "learning_curves",
    "fit_overlay",
]

# ----------------------------------------------------------------------------------------------------------------
# Names

AXIS_LABELS: dict[str, str] = {
    "alpha": "Zipf exponent α",
    "B": "burstiness B",
    "K": "classes K",
    "L": "labels L",
    "N": "context pairs N",
    "D": "item dimension D",
    "eps": "within-class noise ε",
    "p_bursty": "bursty fraction p_B",
    "p_novel": "novel-class fraction p_C",
    "lr": "learning rate",
    "steps": "training steps",
    "seed": "seed",
}
"""Science names of the grid axes (cells-table columns), used for axis labels and facet titles."""

_AXIS_SYMBOLS: dict[str, str] = {"alpha": "α", "eps": "ε", "p_bursty": "p_B", "p_novel": "p_C"}

MEASURE_LABELS: dict[str, str] = {
    "train_loss": "training loss",
    "ic_acc": "IC accuracy",
    "ic_loss": "IC loss",
    "ic2_acc": "IC2 accuracy (swapped labels)",
    "ic2_loss": "IC2 loss",
    "iw_acc": "IW accuracy",
    "iw_loss": "IW loss",
    "ic_ctx_acc": "context-label accuracy",
    "induction_score": "induction score",
    "prev_token_score": "previous-token score",
}
"""Science names of the metrics-table measures."""

_BOUNDED_PREFIXES = ("prefix_match_", "prev_token_", "copying_")


def axis_label(name: str) -> str:
    """Science name of a grid axis, e.g. ``"alpha"`` -> ``"Zipf exponent α"``; unknown names pass through."""
    return AXIS_LABELS.get(name, name)


def measure_label(name: str) -> str:
    """Science name of a measure, e.g. ``"ic_acc"`` -> ``"IC accuracy"``; per-head names pass through."""
    return MEASURE_LABELS.get(name, name)


def _is_bounded(measure: str) -> bool:
    """Accuracies and scores live in [0, 1] (copying in [-1, 1]); losses do not."""
    return measure.endswith(("_acc", "_score")) or measure.startswith(_BOUNDED_PREFIXES)


def _fmt_steps(v: float, digits: int = 2) -> str:
    """Compact step count to `digits` significant figures: 2140 -> '2.1k', 150000 -> '150k', 1.25e6 -> '1.2M'."""
    if not np.isfinite(v):
        return "∞"
    r = float(f"{v:.{digits}g}")
    for unit, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(r) >= unit:
            return f"{r / unit:g}{suffix}"
    return f"{r:g}"


def _fmt_value(v: object) -> str:
    """Axis value for tick labels and titles: 1.0 -> '1', 0.25 -> '0.25', 'x' -> 'x'."""
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def _assign_label(col: str, value: object) -> str:
    return f"{_AXIS_SYMBOLS.get(col, col)} = {_fmt_value(value)}"


# ----------------------------------------------------------------------------------------------------------------
# Figure plumbing

_RC = {
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "hatch.linewidth": 0.6,
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
}


def _new_figure(width: float, height: float) -> Figure:
    """A bare Figure with an Agg canvas (renders and saves without pyplot or a screen)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _legend(fig: Figure, handles: list, max_cols: int = 6) -> None:
    """A legend under the panels, with as many columns as the figure's width holds (about 3 inches each)."""
    width = fig.get_figwidth()
    ncols = max(1, min(len(handles), max_cols, int(width // 3.0)))
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols)


# Output columns of the onsets table (everything else describes the cell and may be a grid axis).
_ONSET_OUTPUTS = frozenset(
    {
        "cell",
        "seed",
        "onset_step",
        "onset_lo",
        "onset_hi",
        "censored",
        "budget",
        "estimator",
        "measure",
        "onset_threshold",
        "onset_logistic",
        "onset_max_slope",
        "estimators_disagree",
        "final_ic_acc",
        "final_iw_acc",
        "final_induction_score",
        "induction_step",
        "observed_onset",
        "predicted_onset",
        "heldout_predicted_onset",
        "fold",
        "model",
    }
)
_MAX_AUTO_LEVELS = 12


def _varying_axes(table: pd.DataFrame, exclude: Sequence[str]) -> list[str]:
    """Cell-describing columns that take more than one value (candidate facets), in table order.

    Known grid axes (`AXIS_LABELS`) qualify whenever they vary. Another column qualifies if it is not an output
    of the pipeline and takes 2..12 distinct values, fewer than the rows (a per-cell output that slipped through
    takes one value per row and is skipped)."""
    out = []
    for col in table.columns:
        if col in _ONSET_OUTPUTS or col in exclude or col.startswith(("onset_", "final_")):
            continue
        n = table[col].nunique(dropna=True)
        if n > 1 and (col in AXIS_LABELS or (n <= _MAX_AUTO_LEVELS and n < len(table))):
            out.append(col)
    return out


def _as_list(cols: str | Sequence[str] | None) -> list[str]:
    if cols is None:
        return []
    if isinstance(cols, str):
        return [cols] if cols else []
    return list(cols)


def _require(table: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {list(table.columns)}")


def _select(table: pd.DataFrame, where: Mapping[str, object] | None) -> pd.DataFrame:
    """Rows of `table` matching every `column -> value` (or list of values) in `where`; floats match to 1e-9."""
    if not where:
        return table
    keep = np.ones(len(table), dtype=bool)
    for col, want in where.items():
        _require(table, [col], "the onsets table")
        values = list(want) if isinstance(want, (list, tuple, set, np.ndarray)) else [want]
        col_values = table[col].to_numpy()
        hit = np.zeros(len(table), dtype=bool)
        for v in values:
            if isinstance(v, (int, float, np.number)) and np.issubdtype(col_values.dtype, np.number):
                hit |= np.isclose(col_values.astype(float), float(v), rtol=0.0, atol=1e-9)
            else:
                hit |= col_values == v
        if not hit.any():
            allowed = ", ".join(_fmt_value(u) for u in sorted(table[col].unique()))
            raise ValueError(f"where: {col} = {want!r} matches no cell; {col} takes {allowed}")
        keep &= hit
    if not keep.any():
        raise ValueError(f"where: {dict(where)} matches no cell (each condition matches some, not all together)")
    return table[keep]


# ----------------------------------------------------------------------------------------------------------------
# Phase table: the per-(facet, y, x) summary behind the phase diagram


def _censored_median(onset: np.ndarray, censored: np.ndarray) -> float:
    """`zipfind.onset.censored_median` of the seeds' onsets (censored as +inf), NaN-free; NaN if none."""
    from .onset import censored_median

    v = np.where(censored, np.inf, onset)
    v = v[~np.isnan(v)]
    return float(censored_median(v)) if v.size else np.nan


def phase_table(
    onsets: pd.DataFrame, *, x: str = "alpha", y: str = "B", facet: str | Sequence[str] | None = None
) -> pd.DataFrame:
    """Summarise the onsets table over seeds: one row per (facet..., y, x) group.

    Columns: the group keys, `n_seeds`, `n_censored`, `median_onset` (censoring-aware median, see
    `_censored_median`; inf when more than half of the seeds are censored), `censored` (bool, that case),
    `onset_lo` / `onset_hi` (the envelope of the per-seed intervals of the uncensored seeds, falling back to
    their onset steps where a seed has no interval; `onset_hi` is inf when some bootstrap interval is open
    above, as `zipfind.onset` reports when resamples find no onset within the budget), `budget` (largest budget
    in the group), and the medians of `final_ic_acc`, `final_iw_acc` and `final_induction_score` where those
    columns exist. `facet=None` groups by x and y only.
    """
    facets = _as_list(facet)
    keys = [*facets, y, x]
    _require(onsets, [*keys, "onset_step", "censored", "budget"], "the onsets table")
    rows = []
    for key, g in onsets.groupby(keys, sort=True, dropna=False):
        cens = g["censored"].to_numpy(bool)
        step = g["onset_step"].to_numpy(float)
        lo = g["onset_lo"].to_numpy(float) if "onset_lo" in g else np.full(len(g), np.nan)
        hi = g["onset_hi"].to_numpy(float) if "onset_hi" in g else np.full(len(g), np.nan)
        lo = np.where(np.isnan(lo), step, lo)[~cens]  # no interval (no per-item data): the onset itself
        hi = np.where(np.isnan(hi), step, hi)[~cens]  # inf (open above) is kept
        med = _censored_median(step, cens)
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row.update(
            n_seeds=len(g),
            n_censored=int(cens.sum()),
            median_onset=med,
            censored=bool(np.isinf(med)),
            onset_lo=float(np.nanmin(lo)) if lo.size and not np.isnan(lo).all() else np.nan,
            onset_hi=float(np.nanmax(hi)) if hi.size and not np.isnan(hi).all() else np.nan,
            budget=float(g["budget"].max()),
        )
        for col in ("final_ic_acc", "final_iw_acc", "final_induction_score"):
            if col in g:
                row[col] = float(g[col].median())
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------------
# Phase diagram


def _ink_for(rgba: Sequence[float]) -> str:
    """Black or white text, whichever reads better on a cell of colour `rgba` (relative luminance)."""
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3])
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.33 else "white"


def _categories(values: pd.Series) -> list:
    return sorted(values.dropna().unique().tolist())


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

    Colour is the censoring-aware median onset step across seeds on a log scale (see `phase_table`); each cell
    with an onset is annotated with the median and its interval (envelope of the seeds' intervals, and the count
    of censored seeds if some are); groups with more than half of their seeds censored are greyed, hatched and
    labelled "no ICL by N steps" (N from the `budget` column). With `companions`, the final IC and IW accuracy
    over the same axes are drawn alongside (where ICL wins, where IWL wins, where both coexist).

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
    summary = phase_table(onsets, x=x, y=y, facet=facets)
    xcats, ycats = _categories(onsets[x]), _categories(onsets[y])
    facet_keys = (
        [()] if not facets else list(summary[facets].drop_duplicates().itertuples(index=False, name=None))
    )

    measures = onsets["measure"].dropna().unique() if "measure" in onsets else []
    onset_label = f"onset step ({measure_label(measures[0])})" if len(measures) == 1 else "onset step"
    panels = [_Panel("median_onset", "ICL onset", onset_label, "onset")]
    if companions:
        for col, title in (("final_ic_acc", "final IC accuracy"), ("final_iw_acc", "final IW accuracy")):
            if col in summary and summary[col].notna().any():
                panels.append(_Panel(col, title, "final accuracy", "accuracy"))

    finite = summary["median_onset"].to_numpy(float)
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
                meshes[panel.kind].append(mesh)
                if theory is not None:
                    _draw_theory(ax, theory, x, y, xcats, ycats, dict(zip(facets, fkey)), legend_handles,
                                 hatch=panel.kind == "onset")
                title = panel.title
                if panel.kind == "onset" and n_seeds_max > 1:
                    title += f" (median of {n_seeds_max} seeds)"
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
        if legend_handles:
            _legend(fig, list(legend_handles.values()), max_cols=3)
    return fig


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
        if not np.isfinite(row.median_onset):
            continue
        lines = [_fmt_steps(row.median_onset)]
        if np.isfinite(row.onset_lo) and not np.isnan(row.onset_hi) and row.onset_hi > row.onset_lo:
            lines.append(f"{_fmt_steps(row.onset_lo)}–{_fmt_steps(row.onset_hi)}")
        if row.n_censored:
            lines.append(f"{row.n_censored}/{row.n_seeds} censored")
        ink = _ink_for(cmap(norm(row.median_onset)))
        ax.text(i + 0.5, j + 0.52, lines[0], ha="center", va="bottom" if len(lines) > 1 else "center",
                fontsize=8.5, fontweight="bold", color=ink, gid="onset-annotation", zorder=3)
        if len(lines) > 1:
            ax.text(i + 0.5, j + 0.48, "\n".join(lines[1:]), ha="center", va="top", fontsize=6.5, color=ink,
                    gid="onset-interval", zorder=3, linespacing=1.1)


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


# ----------------------------------------------------------------------------------------------------------------
# Learning curves

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


def learning_curves(
    metrics: pd.DataFrame,
    onsets: pd.DataFrame,
    *,
    where: Mapping[str, object] | None = None,
    hue: str | None = None,
    measures: Sequence[str] = ("ic_acc", "iw_acc", "ic_ctx_acc", "induction_score"),
    logx: bool = True,
    max_panels: int = 48,
) -> Figure:
    """Training curves of the chosen measures against step, with the detected onset and its interval marked.

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
    measures = list(measures)
    if not measures:
        raise ValueError("measures: empty — name at least one measure of the metrics table")
    present = set(metrics["measure"].unique())
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
    for k, (ax, row) in enumerate(zip(axes.ravel(), chosen.itertuples(index=False))):
        row_s = pd.Series(row._asdict())
        ax.set_label(f"curves:cell{int(row.cell)}")
        cm = by_cell.get(row.cell)
        for q, name in enumerate(measures):
            d = cm[cm["measure"] == name] if cm is not None else None
            if d is None or d.empty:
                continue
            ax.plot(d["step"], d["value"], color=_MEASURE_COLORS.get(name, palette[q]), linewidth=1.5,
                    label=measure_label(name), gid=f"curve:{name}")
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
    for ax in axes.ravel()[n:]:
        ax.remove()
    handles = [Line2D([], [], color=palette[v], linewidth=1.5, label=_assign_label(hue, v)) for v in levels]
    handles += [Line2D([], [], color="0.3", marker="o", linestyle="-", markersize=4, label="onset and interval"),
                Line2D([], [], color="0.3", marker=">", linestyle="none", markersize=5,
                       label="no onset by the budget")]
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


# ----------------------------------------------------------------------------------------------------------------
# Theory overlay


def _overlay_stats(p: pd.DataFrame) -> dict[str, float]:
    """Held-out median |ln predicted - ln observed| over cells with an onset, and how often the held-out
    prediction gets censoring right (predicted onset beyond the budget or none <=> censored)."""
    cens = p["censored"].to_numpy(bool)
    obs = p["observed_onset"].to_numpy(float)
    out: dict[str, float] = {"n": float(len(p)), "n_censored": float(cens.sum())}
    if "heldout_predicted_onset" in p:
        h = p["heldout_predicted_onset"].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.abs(np.log(h[~cens]) - np.log(obs[~cens]))
        err = np.where(np.isnan(err), np.inf, err)
        out["heldout_median_abs_log_err"] = float(np.median(err)) if err.size else np.nan
        said_none = ~np.isfinite(h) | (h > p["budget"].to_numpy(float))
        out["heldout_censor_accuracy"] = float(np.mean(said_none == cens)) if len(p) else np.nan
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


def theory_grid(onsets: pd.DataFrame, model: str, params: object, *, x: str = "alpha", y: str = "B",
                n: int = 81) -> pd.DataFrame:
    """A fine (x, y) grid of a fitted model's predicted onset, for the boundary on `phase_diagram`.

    One grid per combination of the other model inputs (K, N, L, p_bursty, p_novel, lr) that vary in the onsets
    table (they become facet columns); inputs that do not vary are held at their value. `params` is anything
    `zipfind.theory.predict_onset` accepts (e.g. the fits.json records).
    """
    from .theory import predict_onset

    _require(onsets, [x, y, "budget"], "the onsets table")
    xs = np.linspace(onsets[x].min(), onsets[x].max(), n)
    ys = np.linspace(onsets[y].min(), onsets[y].max(), n)
    gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))
    inputs = [k for k in ("K", "N", "L", "p_bursty", "p_novel", "lr", "alpha", "B") if k in onsets and k not in (x, y)]
    varying = [k for k in inputs if onsets[k].nunique() > 1]
    grids = []
    combos = onsets[inputs].drop_duplicates(varying) if varying else onsets[inputs].iloc[:1]
    for combo in combos.itertuples(index=False):
        fixed = {k: float(v) for k, v in zip(inputs, combo)}
        pred = predict_onset(model, params, **{x: gx, y: gy}, **fixed)
        grids.append(pd.DataFrame({x: gx, y: gy, "predicted_onset": pred, **{k: fixed[k] for k in varying}}))
    out = pd.concat(grids, ignore_index=True)
    return out.assign(budget=float(onsets["budget"].max()), model=model)
