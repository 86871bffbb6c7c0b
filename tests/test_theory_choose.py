"""Choosing the model to draw (held-out error, then AIC) and its prediction grid for the phase diagram."""

import numpy as np
import pandas as pd
import pytest

from zipfind.theory import MODELS, best_model, predict_onset, theory_grid


def test_best_model_is_the_lowest_heldout_error_then_aic():
    recs = [{"model": "M0", "heldout_median_abs_log_err": 0.4, "aic": 10.0},
            {"model": "M4", "heldout_median_abs_log_err": 0.2, "aic": 50.0},
            {"model": "M5", "heldout_median_abs_log_err": 0.2, "aic": 40.0},
            {"model": "M6", "heldout_median_abs_log_err": None, "aic": 1.0}]  # fits.json writes non-finite as null
    assert best_model(recs) == "M5"
    assert best_model(recs[:1] + recs[3:]) == "M0"
    assert best_model(recs[3:]) == "M6"
    with pytest.raises(ValueError, match="no fitted models"):
        best_model([])


def test_theory_grid_predicts_on_a_fine_grid_per_varying_input():
    onsets = pd.DataFrame({"alpha": [0.0, 2.0, 0.0, 2.0], "B": [1, 4, 1, 4], "K": [512, 512, 2048, 2048],
                           "N": 8, "L": 32, "budget": [2800.0, 2800.0, 1800.0, 2800.0]})
    g = theory_grid(onsets, "M4", None, n=5)
    assert len(g) == 2 * 25 and set(g["K"]) == {512.0, 2048.0} and (g["budget"] == 2800.0).all()
    assert sorted(set(g["alpha"])) == [0.0, 0.5, 1.0, 1.5, 2.0] and sorted(set(g["B"])) == [1.0, 1.75, 2.5, 3.25, 4.0]
    sel = g[g["K"] == 512.0]
    np.testing.assert_allclose(sel["predicted_onset"], predict_onset("M4", MODELS["M4"].defaults,
                                                                     alpha=sel["alpha"].to_numpy(),
                                                                     B=sel["B"].to_numpy(), K=512.0, N=8.0,
                                                                     L=32.0))
