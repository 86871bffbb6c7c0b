"""The columns of zipfind's tables, each named and described once; every module that reads them imports them here.

onsets.parquet (:func:`zipfind.onset.onsets_table`): the cells-table columns (``cell``, every task and training
scalar), then :data:`ONSET_COLUMNS`. The seed summary (:func:`zipfind.survival.seed_summary`, drawn by the phase
diagram): the grouping columns, then :data:`SUMMARY_COLUMNS`. The predictions table of a fit
(:func:`zipfind.theory.fit.fit_models`): ``model``, the cells-table columns, then :data:`PREDICTION_COLUMNS`.
"""

from __future__ import annotations

ONSET_DOCS: dict[str, str] = {
    "onset_step": "onset of the run (the chosen estimator's step); NaN when censored",
    "onset_lo": "lower end of the onset interval: the probe-bootstrap interval widened to the checkpoint brackets "
                "of the crossing (never narrower than [bracket_lo, bracket_hi]); the censoring time when censored",
    "onset_hi": "upper end of that interval; inf when censored or when resamples find no onset by the censoring time",
    "censored": "no onset confirmed by `budget` (right-censored: the onset, if any, is later)",
    "budget": "censoring time: the last step at which a crossing could still be confirmed (the checkpoint "
              "persistence - 1 before the end of the run's record)",
    "estimator": "estimator of onset_step (threshold, logistic or max_slope)",
    "measure": "the measure whose rise is the onset (ic_acc by default)",
    "onset_threshold": "threshold estimator's onset (NaN where it finds none by the censoring time)",
    "onset_logistic": "logistic-midpoint estimator's onset (NaN where none)",
    "onset_max_slope": "maximum-slope estimator's onset (NaN where none)",
    "estimators_disagree": "the estimators' onsets differ by more than disagree_tol in ln(step), or only some find one",
    "final_ic_acc": "IC accuracy at the last finite checkpoint",
    "final_iw_acc": "IW accuracy at the last finite checkpoint",
    "final_induction_score": "induction score at the last finite checkpoint",
    "induction_step": "first persistent crossing of induction_threshold by the raw induction score (NaN if none)",
    "onset_probe_lo": "lower end of the 95% percentile interval from resampling probe sequences alone (NaN without "
                      "per-probe data)",
    "onset_probe_hi": "upper end of the probe-bootstrap interval (inf when upper resamples find no onset)",
    "bracket_lo": "the checkpoint before the onset: the crossing happened after it",
    "bracket_hi": "the checkpoint at or after the onset: the crossing happened by it",
    "record_end": "the run's last usable checkpoint (its steps, or its first diverged or non-finite checkpoint)",
    "iw_majority": "IW accuracy of always answering the most frequent label (zipfind.baselines.iw_majority)",
    "final_iw_above_majority": "final IW accuracy rescaled to 0 at iw_majority and 1 at perfect",
}
"""Every column :func:`zipfind.onset.onsets_table` adds after the cells-table columns, with its meaning."""

ONSET_COLUMNS: tuple[str, ...] = tuple(ONSET_DOCS)
"""Columns :func:`zipfind.onset.onsets_table` adds after the cells-table columns (the ``onsets`` contract)."""

FINAL_COLUMNS: tuple[str, ...] = ("final_ic_acc", "final_iw_acc", "final_induction_score", "iw_majority",
                                  "final_iw_above_majority")
"""Per-run accuracies and levels that a seed summary reports as the median over seeds."""

SUMMARY_DOCS: dict[str, str] = {
    "onset_step": "Kaplan-Meier median onset over the seeds (each censored at its own budget); NaN when censored",
    "onset_lo": "run-level interval: Kaplan-Meier median of the seeds' onset_lo (censored seeds at their budget)",
    "onset_hi": "Kaplan-Meier median of the seeds' onset_hi (inf for censored seeds and open intervals)",
    "seed_lo": "seed-level interval: 2.5% point of the median over seed-bootstrap resamples (NaN for one seed)",
    "seed_hi": "97.5% point of that seed bootstrap (inf where resamples have a censored median)",
    "censored": "the Kaplan-Meier survival never falls to 1/2: the median onset is later than `budget`",
    "n_seeds": "runs in the group",
    "n_censored": "censored runs in the group",
    "budget": "largest censoring time in the group (the median is known to exceed it when censored)",
    "estimator": "estimator of the runs' onsets",
    "measure": "measure of the runs' onsets",
    **{c: f"median over seeds of {c}" for c in FINAL_COLUMNS},
}
"""Columns of :func:`zipfind.survival.seed_summary` after the grouping columns."""

SUMMARY_COLUMNS: tuple[str, ...] = tuple(SUMMARY_DOCS)

PREDICTION_COLUMNS: tuple[str, ...] = ("model", "observed_onset", "censored", "budget", "predicted_onset",
                                       "heldout_predicted_onset", "fold")
"""Columns of a fit's predictions table besides the cells-table columns."""

OUTPUT_COLUMNS: frozenset[str] = frozenset({"cell", "seed", *ONSET_COLUMNS, *SUMMARY_COLUMNS, *PREDICTION_COLUMNS})
"""Every column that is a result or an identity rather than a grid coordinate (never a facet of a figure)."""
