"""Names, formats and figure plumbing shared by zipfind's figures: science labels of axes and measures, compact
step counts, a bare Agg figure with a local rc style, legends, and selecting cells of a table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..columns import OUTPUT_COLUMNS

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


_MAX_AUTO_LEVELS = 12


def _varying_axes(table: pd.DataFrame, exclude: Sequence[str]) -> list[str]:
    """Cell-describing columns that take more than one value (candidate facets), in table order.

    Known grid axes (`AXIS_LABELS`) qualify whenever they vary. Another column qualifies if it is not an output
    of the pipeline and takes 2..12 distinct values, fewer than the rows (a per-cell output that slipped through
    takes one value per row and is skipped)."""
    out = []
    for col in table.columns:
        if col in OUTPUT_COLUMNS or col in exclude or col.startswith(("onset_", "final_")):
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



def _ink_for(rgba: Sequence[float]) -> str:
    """Black or white text, whichever reads better on a cell of colour `rgba` (relative luminance)."""
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3])
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.33 else "white"


def _categories(values: pd.Series) -> list:
    return sorted(values.dropna().unique().tolist())

