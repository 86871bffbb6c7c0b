"""The Kaplan-Meier median against scipy, and the one seed summary on runs with their own censoring times."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from zipfind.survival import km_median, seed_summary


def scipy_km_median(time, censored):
    """Smallest time at which scipy's Kaplan-Meier survival is <= 1/2 (inf if it never is)."""
    sf = stats.ecdf(stats.CensoredData(uncensored=time[~censored], right=time[censored])).sf
    hit = sf.probabilities <= 0.5 + 1e-12
    return sf.quantiles[np.argmax(hit)] if hit.any() else np.inf


def test_km_median_equals_scipy_ecdf_on_random_censored_samples_with_unequal_censoring_times():
    rng = np.random.default_rng(0)
    n_checked = n_censored_median = 0
    for trial in range(400):
        n = int(rng.integers(1, 16))
        onset = rng.lognormal(np.log(1000), 0.6, n)
        budget = rng.choice([600.0, 1200.0, 1800.0, 2400.0], n) if trial % 2 else rng.uniform(500, 3000, n)
        if trial % 3 == 0:
            onset = np.round(onset, -2)  # ties between onsets and with censoring times
        censored = onset > budget
        if censored.all():
            continue
        time = np.where(censored, budget, onset)
        want = scipy_km_median(time, censored)
        assert km_median(time, censored) == want, (time, censored)
        n_checked += 1
        n_censored_median += np.isinf(want)
    assert n_checked > 300 and n_censored_median > 10  # both outcomes exercised
    # batched along a leading axis: the same as row by row
    time = rng.uniform(100, 1000, (50, 7))
    censored = rng.random((50, 7)) < 0.4
    np.testing.assert_array_equal(km_median(time, censored), [km_median(t, c) for t, c in zip(time, censored)])


@pytest.mark.parametrize("time,censored,median", [
    ([100, 200, 300, 400], [0, 0, 0, 1], 200.0),  # the example: the mean of the middle two would say 250
    ([100, 200, 300, 400], [0, 0, 0, 0], 200.0),  # smallest t with S(t) <= 1/2
    ([100, 200, 300], [1, 0, 0], 200.0),  # censored at 100: S = 1/2 at 200 with 2 at risk
    ([500, 200, 300], [1, 0, 1], np.inf),  # S(200) = 2/3, then censored: the median is not reached
    ([150, 150, 300, 400], [0, 1, 0, 1], 300.0),  # an event and a censoring at 150: the censored run was at risk
])
def test_km_median_by_hand(time, censored, median):
    assert km_median(np.array(time, float), np.array(censored, bool)) == median


def _onsets():
    """Three cells of four seeds with their own censoring times (a diverged seed censored at its divergence)."""
    rows = [
        # alpha 0: all learn
        (0.0, 0, 800.0, False, 2800.0), (0.0, 1, 1000.0, False, 2800.0), (0.0, 2, 1200.0, False, 2800.0),
        (0.0, 3, 1400.0, False, 2800.0),
        # alpha 1: seed 1 diverged early (censored at 600, before any onset), seed 3 never learns
        (1.0, 0, 1000.0, False, 2800.0), (1.0, 1, np.nan, True, 600.0), (1.0, 2, 2000.0, False, 2800.0),
        (1.0, 3, np.nan, True, 2800.0),
        # alpha 2: three censored
        (2.0, 0, 2500.0, False, 2800.0), (2.0, 1, np.nan, True, 2800.0), (2.0, 2, np.nan, True, 1800.0),
        (2.0, 3, np.nan, True, 2800.0),
    ]
    df = pd.DataFrame(rows, columns=["alpha", "seed", "onset_step", "censored", "budget"])
    df.insert(0, "cell", range(len(df)))
    df["onset_lo"] = np.where(df.censored, df.budget, df.onset_step - 100)
    df["onset_hi"] = np.where(df.censored, np.inf, df.onset_step + 100)
    df["estimator"], df["measure"] = "threshold", "ic_acc"
    return df


def test_seed_summary_is_the_kaplan_meier_median_with_per_run_censoring():
    s = seed_summary(_onsets(), seed=0).set_index("alpha")
    assert list(s.index) == [0.0, 1.0, 2.0]
    assert s["n_seeds"].tolist() == [4, 4, 4] and s["n_censored"].tolist() == [0, 2, 3]
    assert s.loc[0.0, "onset_step"] == 1000.0  # KM: smallest t with S <= 1/2 (not the 1100 of a mean)
    # alpha 1: censored at 600 leaves 3 at risk; S(1000) = 2/3, S(2000) = 1/3: median 2000 (scipy agrees)
    assert s.loc[1.0, "onset_step"] == 2000.0 == scipy_km_median(np.array([1000, 600, 2000, 2800.0]),
                                                                 np.array([0, 1, 0, 1], bool))
    assert s.loc[2.0, "censored"] and np.isnan(s.loc[2.0, "onset_step"]) and s.loc[2.0, "budget"] == 2800.0
    # run level: medians of the runs' own interval ends
    assert (s.loc[0.0, "onset_lo"], s.loc[0.0, "onset_hi"]) == (900.0, 1100.0)
    # alpha 1: lows [900, 600 (censored: its budget), 1900, 2800], highs [1100, inf, 2100, inf]: second smallest
    assert (s.loc[1.0, "onset_lo"], s.loc[1.0, "onset_hi"]) == (900.0, 2100.0)
    # seed level: a bootstrap over seeds, wider than the run level where seeds disagree
    assert s.loc[0.0, "seed_lo"] <= 900.0 and s.loc[0.0, "seed_hi"] >= 1200.0
    assert s.loc[0.0, "seed_lo"] >= 800.0 and s.loc[0.0, "seed_hi"] <= 1400.0
    assert s.loc[2.0, "seed_hi"] == np.inf


def test_one_seed_summarises_to_its_own_run():
    one = _onsets().query("seed == 0")
    s = seed_summary(one).set_index("alpha")
    np.testing.assert_array_equal(s["onset_step"], one["onset_step"])
    np.testing.assert_array_equal(s["onset_lo"], one["onset_lo"])
    np.testing.assert_array_equal(s["onset_hi"], one["onset_hi"])
    assert s["seed_lo"].isna().all() and s["seed_hi"].isna().all()
