"""Analytic theory of induction-head onset timing: Zipf statistics, onset-time models, censored fits.

Imports without torch. Notebook API::

    from zipfind.theory import models, fit_models, predict_onset
    models.MODELS["M4"].latex
    report = fit_models(onsets_df, ["M0", "M4"], folds=5)
    predict_onset("M4", alpha=np.linspace(0, 2, 50), B=2, K=2048, N=8, params=report["M4"])
"""

from . import choose, fit, heldout, models, zipf
from .choose import best_model, theory_grid
from .fit import FitReport, ModelFit, OnsetData, fit_model, fit_models, onset_data, simulate_onsets
from .models import MODELS, OnsetModel, get_model, predict_onset, resolve_params

__all__ = [
    "zipf", "models", "fit", "MODELS", "OnsetModel", "get_model", "predict_onset", "resolve_params",
    "fit_models", "fit_model", "onset_data", "simulate_onsets", "FitReport", "ModelFit", "OnsetData",
    "choose", "best_model", "theory_grid", "heldout",
]
