"""One model's heads: its attention on a probe sequence at a few training steps, and every head's circuit scores
over training, with the onset marked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .style import _RC, _fmt_steps, _legend, _new_figure


def attention_figure(patterns: Mapping[int, np.ndarray], labels: Sequence[str], targets: Mapping[int, Sequence[int]],
                     *, title: str = "", onset: float | None = None) -> Figure:
    """Attention of every head (rows: layer and head) on one sequence at each step (columns).

    patterns: step -> [layers, H, T, T] attention of that sequence; labels: a name per position (both axes);
    targets: query position -> the key positions a perfect induction head attends to, outlined in red.
    """
    steps = list(patterns)
    layers, H, T, _ = np.asarray(patterns[steps[0]]).shape
    rows = [(l, h) for l in range(layers) for h in range(H)]
    size = min(4.0, 0.14 * T + 1.2)
    with mpl.rc_context(_RC):
        fig = _new_figure(size * len(steps) + 0.8, size * len(rows) + 0.6)
        axes = fig.subplots(len(rows), len(steps), squeeze=False)
        qs = [q for q, ks in targets.items() for _ in ks]
        ks = [k for ks_ in targets.values() for k in ks_]
        for j, step in enumerate(steps):
            a = np.asarray(patterns[step])
            for i, (l, h) in enumerate(rows):
                ax = axes[i, j]
                ax.set_label(f"attention:L{l + 1}H{h + 1}@{step}")
                ax.imshow(a[l, h], cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
                ax.scatter(ks, qs, marker="s", s=(40 / T) ** 2 * 30, facecolor="none", edgecolor="#d62728",
                           lw=0.8, gid="induction-target")
                ticks = np.arange(T)
                ax.set_xticks(ticks, labels, fontsize=5, rotation=90)
                ax.set_yticks(ticks, labels, fontsize=5)
                when = "" if onset is None or not np.isfinite(onset) else (
                    " (before onset)" if step < onset else " (after onset)")
                ax.set_title(f"L{l + 1}H{h + 1}, step {_fmt_steps(step)}{when}", fontsize=8)
                if j == 0:
                    ax.set_ylabel("query")
                if i == len(rows) - 1:
                    ax.set_xlabel("key")
        if title:
            fig.suptitle(title, fontsize=9)
        _legend(fig, [Line2D([], [], marker="s", ls="", mfc="none", mec="#d62728",
                             label="induction target (after an earlier occurrence)")])
    return fig


def heads_figure(metrics: pd.DataFrame, cell: int, *, onset: float | None = None, censored: bool = False,
                 title: str = "") -> Figure:
    """Every head's previous-token, prefix-matching and copying score against step (one panel each), the onset
    marked; metrics is a run's long metrics table."""
    m = metrics[(metrics["cell"] == cell) & (metrics["step"] > 0)]
    kinds = (("prev_token", "previous-token"), ("prefix_match", "prefix-matching"), ("copying", "copying"))
    heads = sorted({name.rsplit("_", 1)[1] for name in m["measure"] if name.startswith("prefix_match_")})
    if not heads:
        raise ValueError(f"cell {cell} has no per-head scores in the metrics table")
    palette = dict(zip(heads, sns.color_palette("colorblind", len(heads))))
    with mpl.rc_context(_RC):
        fig = _new_figure(3.4 * len(kinds) + 0.4, 3.0)
        axes = fig.subplots(1, len(kinds), sharex=True, squeeze=False)[0]
        for ax, (kind, name) in zip(axes, kinds):
            ax.set_label(f"heads:{kind}")
            for head in heads:
                s = m[m["measure"] == f"{kind}_{head}"].sort_values("step")
                ax.plot(s["step"], s["value"], color=palette[head], lw=1.2, label=head)
            if onset is not None and np.isfinite(onset):
                ax.axvline(onset, color="k", ls="--", lw=1, gid="onset")
            ax.set_xscale("log")
            ax.set_title(f"{name} score")
            ax.set_xlabel("training step")
        if censored:
            axes[0].text(0.02, 0.95, "no onset (censored)", transform=axes[0].transAxes, va="top", fontsize=8)
        if title:
            fig.suptitle(title, fontsize=9)
        handles = [Line2D([], [], color=palette[h], lw=1.2, label=h) for h in heads]
        handles += [Line2D([], [], color="k", ls="--", lw=1, label="onset")]
        _legend(fig, handles, max_cols=6)
    return fig
