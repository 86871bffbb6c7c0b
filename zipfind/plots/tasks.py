"""Runs side by side: onset against the Zipf exponent, one panel per run (e.g. the classification and the token
task), each with its best fitted model's curves, and where English sits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .style import _RC, _assign_label, _categories, _fmt_steps, _legend, _new_figure, _require


def task_comparison(
    panels: Mapping[str, tuple[pd.DataFrame, Sequence[Mapping] | None]],
    *,
    x: str = "alpha",
    hue: str = "B",
    english_alpha: float | None = None,
) -> Figure:
    """Onset step (log) against ``x``, one panel per entry of ``panels`` (title -> (onsets table, fits.json records
    or None)).

    Each cell is a point coloured by ``hue`` (circles: an onset, with its interval; triangles at the budget:
    censored). With fits, the best model's (zipfind.theory.best_model) predicted onset is a line per ``hue`` level,
    the other inputs held at the panel's first cell. Cells with English word frequencies (``frequencies ==
    "english"``, which no Zipf model describes) are stars at ``english_alpha``, the exponent fitted to those
    frequencies, which a dotted vertical line marks in every panel.
    """
    from ..theory import best_model, predict_onset  # deferred: the theory package compiles its models on import
    from ..theory.models import INPUT_NAMES, modelled, task_inputs

    if not panels:
        raise ValueError("panels: empty — give at least one run")
    for title, (onsets, _) in panels.items():
        _require(onsets, [x, hue, "onset_step", "onset_lo", "onset_hi", "censored", "budget"], f"{title}'s onsets")
    levels = _categories(pd.concat([o[hue] for o, _ in panels.values()]))
    palette = dict(zip(levels, sns.color_palette("viridis", len(levels))))
    import matplotlib as mpl

    with mpl.rc_context(_RC):
        fig = _new_figure(3.6 * len(panels) + 0.4, 3.2)
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        for ax, (title, (onsets, fits)) in zip(axes, panels.items()):
            ax.set_label(f"tasks:{title}")
            zipf = modelled(onsets)
            for level in levels:
                sub = onsets[(onsets[hue] == level).to_numpy()]
                color = palette[level]
                for is_zipf, rows in ((True, sub[zipf[(onsets[hue] == level).to_numpy()]]),
                                      (False, sub[~zipf[(onsets[hue] == level).to_numpy()]])):
                    if rows.empty or (not is_zipf and english_alpha is None):
                        continue
                    xs = rows[x].to_numpy(dtype=float) if is_zipf else np.full(len(rows), english_alpha)
                    jitter = (levels.index(level) - (len(levels) - 1) / 2) * 0.02 * (np.ptp(onsets[x]) or 1)
                    cens = rows["censored"].to_numpy(dtype=bool)
                    t = rows["onset_step"].to_numpy(dtype=float)
                    lo, hi = rows["onset_lo"].to_numpy(dtype=float), rows["onset_hi"].to_numpy(dtype=float)
                    ok = ~cens
                    marker = "o" if is_zipf else "*"
                    ax.errorbar(xs[ok] + jitter, t[ok], yerr=[np.clip(t[ok] - lo[ok], 0, None),
                                                             np.clip(np.where(np.isfinite(hi[ok]), hi[ok], t[ok])
                                                                     - t[ok], 0, None)],
                                fmt=marker, ms=5 if is_zipf else 10, color=color, lw=0.8, capsize=1.5,
                                gid="onset" if is_zipf else "english-onset")
                    ax.scatter(xs[cens] + jitter, rows["budget"].to_numpy(dtype=float)[cens], marker=">",
                               s=22, facecolor="none", edgecolor=color, lw=0.9, gid="censored-cell")
            if fits and zipf.any():
                best = best_model(fits)
                grid = np.linspace(float(onsets[x].min()), float(onsets[x].max()), 101)
                for level in levels:
                    if not (onsets[hue] == level).any():
                        continue
                    cells = onsets[zipf].iloc[[0] * grid.size].assign(**{x: grid, hue: level})  # task's own units
                    mapped = task_inputs(cells)  # ... as the theory's inputs
                    inputs = {k: mapped[k].to_numpy() if k == "context" else mapped[k].to_numpy(dtype=float)
                              for k in INPUT_NAMES if k in mapped}
                    ax.plot(grid, predict_onset(best, fits, **inputs), color=palette[level], lw=1.2,
                            gid=f"fit:{best}")
                title = f"{title}\nbest fit: {best}"
            if english_alpha is not None:
                ax.axvline(english_alpha, color="0.35", ls=":", lw=1, gid="english-alpha")
            ax.axhline(float(onsets["budget"].max()), color="0.6", lw=0.8, ls="--")
            ax.set_yscale("log")
            ax.set_title(title)
            ax.set_xlabel("Zipf exponent α")
            ax.yaxis.set_major_formatter(lambda v, _: _fmt_steps(v))
        axes[0].set_ylabel("onset step")
        handles = [Line2D([], [], color=palette[lv], marker="o", lw=1.2, label=_assign_label(hue, lv))
                   for lv in levels]
        handles += [Line2D([], [], color="0.3", marker=">", ls="", mfc="none", label="censored (at budget)")]
        if english_alpha is not None:
            handles += [Line2D([], [], color="0.35", ls=":", marker="*", ms=9,
                               label=f"English frequencies, fitted α = {english_alpha:.2f}")]
        _legend(fig, handles, max_cols=4)
    return fig
