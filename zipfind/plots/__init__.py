"""Figures for zipfind: phase diagrams, learning curves and theory overlays.

Modules: ``style`` (names, formats, figure plumbing), ``phase`` (phase diagram), ``curves`` (learning curves),
``overlay`` (fit overlay), ``tasks`` (runs side by side against α). The numbers they draw come from upstream: seed medians from
:func:`zipfind.survival.seed_summary`, baselines from :mod:`zipfind.baselines`, held-out statistics from
:func:`zipfind.theory.heldout.prediction_stats`, the theory grid from :func:`zipfind.theory.choose.theory_grid`.

Every public function takes the package's tables (see the table contracts: onsets, metrics, predictions) and
returns a `matplotlib.figure.Figure`; nothing is shown or written to disk (the CLI and store save figures).
Figures are built on a bare `Figure` with an Agg canvas, so no pyplot state or screen is involved, and styling is
applied through a local `rc_context` (seaborn's global theme is never changed).

For programmatic inspection (tests, notebooks) the artists carry names: data axes have labels such as
``"onset"``, ``"final_ic_acc"``, ``"curves:ic_acc"``, ``"fit:M4"``, and the marks have gids such as
``"onset-annotation"``, ``"censored-cell"``, ``"theory-boundary"``, ``"fit-censored"``, ``"baseline:iw_majority"``.
"""

from .curves import learning_curves
from .overlay import fit_overlay
from .phase import phase_diagram, phase_table
from .tasks import task_comparison
from .style import AXIS_LABELS, MEASURE_LABELS, _fmt_steps, axis_label, measure_label  # noqa: F401


__all__ = [
    "AXIS_LABELS",
    "MEASURE_LABELS",
    "axis_label",
    "measure_label",
    "phase_table",
    "phase_diagram",
    "learning_curves",
    "fit_overlay",
    "task_comparison",
]
