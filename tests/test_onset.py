"""Onset estimators on synthetic logistic curves with known midpoints: recovery, censoring, intervals, tables."""

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import curve_fit
from scipy.special import expit, logit

from zipfind.onset import (
    ESTIMATORS, ONSET_COLUMNS, OnsetConfig, bootstrap_onsets, censoring_time, crossing_step, default_config,
    detect_onset, logistic_onset, onsets_table, threshold_onset,
)

# the engine's schedule: log-spaced early checkpoints, then every eval_every steps up to the budget
STEPS = np.r_[2 ** np.arange(7), np.arange(100, 3001, 100)].astype(float)  # [37]
BUDGET = 3000.0
CENSOR = 2800.0  # with persistence 3, the last checkpoint whose crossing the record can confirm (2800, 2900, 3000)
CHANCE = 1 / 32  # IC accuracy at initialisation with L = 32 labels


def logistic_curve(mid, width, floor=CHANCE, ceiling=1.0, steps=STEPS):
    """Accuracy rising from floor to ceiling as a logistic in ln(step)."""
    return floor + (ceiling - floor) * expit((np.log(np.maximum(steps, 1e-300)) - np.log(mid)) / width)


def probe_draws(p, rng, n_probe=512):
    """Per-item correctness [n_ckpt, n_probe]: independent Bernoulli(p_t) draws, as for a fixed probe set."""
    return rng.random((p.size, n_probe)) < p[:, None]


def spacing_at(t, steps=STEPS):
    i = np.searchsorted(steps, t)
    return steps[min(i, steps.size - 1)] - steps[max(i - 1, 0)]


def test_crossing_interpolates_in_log_step_and_skips_transient_spikes():
    steps = np.array([100.0, 200, 300, 400, 500])
    t = crossing_step(steps, np.array([0.0, 0.2, 0.6, 0.8, 0.9]), 0.5, persistence=2)
    assert t == pytest.approx(200 * 1.5 ** 0.75, rel=1e-12)  # ln-linear between (200, 0.2) and (300, 0.6)
    steps = np.arange(1.0, 8.0) * 100
    spiky = np.array([0.0, 0.6, 0.1, 0.4, 0.7, 0.8, 0.9])  # spike at 200 does not persist
    assert crossing_step(steps, spiky, 0.5, persistence=3) == pytest.approx(400 * (5 / 4) ** (1 / 3), rel=1e-12)
    assert crossing_step(steps, spiky, 0.5, persistence=1) == pytest.approx(100 * 2 ** (5 / 6), rel=1e-12)
    assert np.isnan(crossing_step(steps, np.r_[np.zeros(5), 0.9, 0.9], 0.5, persistence=3))  # not yet persistent


@pytest.mark.parametrize("mid,width", [(700, 0.1), (1200, 0.2), (1900, 0.15), (1000, 0.05)])
def test_estimators_recover_known_midpoint_from_noisy_probes(mid, width):
    rng = np.random.default_rng(int(mid * 10 + width * 100))
    p = logistic_curve(mid, width)
    acc = probe_draws(p, rng).mean(axis=1)
    cfg = OnsetConfig()
    for name in ("logistic", "max_slope"):
        assert abs(np.log(ESTIMATORS[name](STEPS, acc, cfg) / mid)) < 0.05, name
    # with ceiling 1 the normalised curve is the sigmoid itself, so h = 0.5 crosses at the midpoint
    assert abs(threshold_onset(STEPS, acc, cfg) - mid) <= spacing_at(mid)
    # noise-free: all three sit on the midpoint (the threshold up to ln-linear interpolation)
    clean = {name: fn(STEPS, p, cfg) for name, fn in ESTIMATORS.items()}
    assert clean["logistic"] == pytest.approx(mid, rel=1e-4)
    assert clean["max_slope"] == pytest.approx(mid, rel=0.02)
    assert clean["threshold"] == pytest.approx(mid, rel=0.01)


def test_threshold_truth_when_the_curve_stops_short_of_the_ceiling():
    """Ceiling 0.75 < 1: the normalised curve tops out at (0.9 - f)/(1 - f), so h = 0.5 is crossed after the
    midpoint, at sigmoid level s* = h (1 - f)/(c - f): t_h = mid * exp(width * logit(s*))."""
    mid, width, c = 1000.0, 0.2, 0.75
    truth = mid * np.exp(width * logit(0.5 * (1 - CHANCE) / (c - CHANCE)))
    assert truth > 1.1 * mid
    p = logistic_curve(mid, width, ceiling=c)
    assert threshold_onset(STEPS, p) == pytest.approx(truth, rel=0.01)
    acc = probe_draws(p, np.random.default_rng(7)).mean(axis=1)
    assert abs(threshold_onset(STEPS, acc) - truth) <= spacing_at(truth)
    assert logistic_onset(STEPS, acc) == pytest.approx(mid, rel=0.05)  # the logistic midpoint ignores the ceiling


def test_a_falling_loss_is_read_against_ceiling_zero():
    mid, width = 1500.0, 0.15
    loss = np.log(32) * (1 - expit((np.log(STEPS) - np.log(mid)) / width))  # ln L -> 0
    cfg = default_config("ic_loss")
    assert cfg.ceiling == 0.0 and default_config("ic_acc").ceiling == 1.0
    for name, fn in ESTIMATORS.items():
        assert fn(STEPS, loss, cfg) == pytest.approx(mid, rel=0.02), name


def test_flat_barely_rising_and_post_budget_curves_are_censored():
    rng = np.random.default_rng(3)
    flat = probe_draws(np.full(STEPS.size, CHANCE), rng)
    # rises, but only to 0.2 accuracy: normalising by its own final value would call this a full rise
    barely = probe_draws(logistic_curve(600, 0.1, ceiling=0.2), rng)
    after = probe_draws(logistic_curve(2 * BUDGET, 0.2), rng)  # midpoint at twice the budget
    for items in (flat, barely, after):
        on = detect_onset(STEPS, items.mean(axis=1), BUDGET, per_item=items, seed=0)
        assert on.censored and np.isnan(on.step)
        assert on.budget == on.lo == CENSOR and on.hi == np.inf  # known only to be > the censoring time
        assert on.rise < OnsetConfig().min_rise
        assert all(np.isnan(v) for v in on.others.values())
        assert not on.disagree
    # a late but complete rise inside the budget is an onset, not a censoring
    items = probe_draws(logistic_curve(0.65 * BUDGET, 0.1), rng)
    on = detect_onset(STEPS, items.mean(axis=1), BUDGET, per_item=items, seed=0)
    assert not on.censored
    assert on.step == pytest.approx(0.65 * BUDGET, rel=0.05)
    assert on.lo <= on.step <= on.hi < BUDGET
    # the same curve with training stopped at 1500 is censored at 1300, the last step it could confirm
    cut = STEPS <= 1500
    on = detect_onset(STEPS[cut], items.mean(axis=1)[cut], 1500.0, per_item=items[cut])
    assert on.censored and on.lo == on.budget == 1300.0 and on.record_end == 1500.0


@pytest.mark.parametrize("eval_every,budget", [(100, 3000), (100, 2100), (250, 4500), (50, 1100)])  # 0.95 x budget
# falls between checkpoints
@pytest.mark.parametrize("persistence", [1, 2, 3, 4])
def test_a_rise_at_095_budget_is_never_censored_at_the_budget(eval_every, budget, persistence):
    """A clean rise at 0.95 x budget: either an onset, or censored at the last step where a crossing could still be
    confirmed (persistence - 1 checkpoints before the end), never 'no onset by the budget'."""
    steps = np.r_[2 ** np.arange(int(np.log2(eval_every)) + 1), np.arange(eval_every, budget + 1, eval_every)]
    steps = np.unique(steps).astype(float)
    rise = 0.95 * budget
    p = logistic_curve(rise, 0.01, steps=steps)  # a sharp rise at 0.95 budget
    cfg = OnsetConfig(persistence=persistence)
    on = detect_onset(steps, p, float(budget), config=cfg)
    horizon = steps[-persistence]
    assert on.budget == horizon == censoring_time(steps, persistence)
    if on.censored:
        assert on.budget < rise and on.lo == on.budget  # "no onset by 1800" for a rise at 1900 of 2000
    else:
        assert on.step <= on.budget and on.bracket_lo < rise <= on.bracket_hi
    confirmable = np.flatnonzero(steps >= rise)[0] + persistence <= steps.size  # enough checkpoints after it
    assert on.censored != confirmable


def test_onsets_table_budget_is_the_censoring_time():
    """Through the table: the Tobit fit reads `budget`, so it must be the last confirmable step, not `steps`."""
    steps = np.r_[0, STEPS]
    rows = [{"cell": 0, "step": int(t), "measure": "ic_acc", "value": float(v)}
            for t, v in zip(steps, logistic_curve(0.97 * BUDGET, 0.01, steps=steps))]
    cells = pd.DataFrame({"cell": [0], "alpha": [1.0], "K": 2048, "L": 32, "N": 8, "steps": int(BUDGET)})
    table = onsets_table(pd.DataFrame(rows), cells)
    row = table.iloc[0]
    assert row["censored"] and row["budget"] == CENSOR and row["record_end"] == BUDGET
    from zipfind.theory.fit import onset_data

    data, _ = onset_data(table.assign(B=1))
    assert data.censored.tolist() == [True] and data.budget.tolist() == [CENSOR]  # what the Tobit term reads


def test_a_sharp_rise_between_two_checkpoints_has_an_interval_containing_both():
    """Accuracy jumps from chance to 0.95 between checkpoints 1200 and 1300: the probe bootstrap alone is a few
    steps wide (every resample crosses in the same gap), the onset interval spans the whole gap."""
    p = np.where(STEPS >= 1300, 0.95, CHANCE)
    items = probe_draws(p, np.random.default_rng(4))
    on = detect_onset(STEPS, items.mean(axis=1), BUDGET, per_item=items, seed=0)
    assert (on.bracket_lo, on.bracket_hi) == (1200.0, 1300.0)
    assert on.lo <= 1200.0 and on.hi >= 1300.0
    assert 1200.0 < on.probe_lo <= on.step <= on.probe_hi < 1300.0 and on.probe_hi - on.probe_lo < 20
    # without per-probe data the interval is the bracket itself
    on = detect_onset(STEPS, p, BUDGET)
    assert (on.lo, on.hi) == (1200.0, 1300.0) and np.isnan(on.probe_lo)


def test_bootstrap_interval_covers_the_noise_free_onset():
    """100 seeded runs with per-probe Bernoulli draws: the probe interval covers the onset of the noise-free curve
    in >= 90 % of them and is narrow (an interval that always covers because it is huge would fail); the onset
    interval contains it and spans whole checkpoint gaps, at most two in most runs."""
    cfg = OnsetConfig(n_boot=200, ci=0.95)
    covered, log_widths, gaps = 0, [], []
    for trial in range(100):
        rng = np.random.default_rng(1000 + trial)
        p = logistic_curve(rng.uniform(700, 1800), rng.uniform(0.08, 0.25))
        truth = threshold_onset(STEPS, p, cfg)
        items = probe_draws(p, rng)
        on = detect_onset(STEPS, items.mean(axis=1), BUDGET, per_item=items, config=cfg, seed=trial)
        covered += on.probe_lo <= truth <= on.probe_hi
        log_widths.append(np.log(on.probe_hi / on.probe_lo))
        assert on.lo <= on.probe_lo <= on.step <= on.probe_hi <= on.hi
        assert on.lo in STEPS and on.hi in STEPS  # checkpoint ends
        gaps.append(np.sum((STEPS > on.lo) & (STEPS <= on.hi)))
    assert covered >= 90
    assert np.median(log_widths) < 0.1
    assert np.median(gaps) <= 2 and min(gaps) >= 1


def test_vectorised_bootstrap_equals_a_plain_resampling_loop():
    rng = np.random.default_rng(11)
    steps = np.r_[STEPS, 3100, 3200, 3300]  # [40]
    items = probe_draws(logistic_curve(1100, 0.15, steps=steps), rng)  # [40, 512]
    cfg = OnsetConfig(n_boot=50)
    fast = bootstrap_onsets(steps, items, "threshold", cfg, seed=5)
    idx = np.random.default_rng(5).integers(0, items.shape[1], size=(cfg.n_boot, items.shape[1]))
    loop = np.array([threshold_onset(steps, items[:, i].mean(axis=1), cfg) for i in idx])
    np.testing.assert_allclose(fast, loop, rtol=1e-10)
    assert np.std(np.log(fast)) > 0  # resamples differ


def test_batched_logistic_fit_matches_scipy_curve_fit():
    rng = np.random.default_rng(21)
    p = logistic_curve(1300, 0.2)
    curves = np.stack([probe_draws(p, rng).mean(axis=1) for _ in range(4)])  # [4, 37]
    batched = logistic_onset(STEPS, curves)  # [4], one Levenberg-Marquardt over the batch

    def four_parameter(x, a, b, mu, w):
        return a + b * expit((x - mu) / w)

    for r, acc in enumerate(curves):
        z = (acc - acc[:3].mean()) / (1 - acc[:3].mean())  # the same normalisation: floor = first 3, ceiling 1
        (_, _, mu, _), _ = curve_fit(four_parameter, np.log(STEPS), z, p0=[0.0, 1.0, np.log(1000), 0.3])
        assert batched[r] == pytest.approx(np.exp(mu), rel=1e-4)


def test_estimators_disagree_on_a_two_stage_rise_but_not_on_a_logistic():
    assert not detect_onset(STEPS, logistic_curve(1200, 0.15), BUDGET).disagree
    x = np.log(STEPS)

    def two_stage(m1, a1, m2, w2):  # a partial first rise, then the rest
        return CHANCE + (1 - CHANCE) * (a1 * expit((x - np.log(m1)) / 0.1) + (1 - a1) * expit((x - np.log(m2)) / w2))

    on = detect_onset(STEPS, two_stage(300, 0.4, 1500, 0.2), BUDGET)
    vals = np.array(list(on.others.values()))
    assert np.all(np.isfinite(vals))
    spread = np.log(vals.max() / vals.min())
    assert spread > OnsetConfig().disagree_tol and on.disagree
    assert not detect_onset(STEPS, two_stage(300, 0.4, 1500, 0.2), BUDGET,
                            config=OnsetConfig(disagree_tol=spread + 0.01)).disagree
    # here the best single logistic puts its midpoint past the last checkpoint: one estimator sees no onset
    on = detect_onset(STEPS, two_stage(300, 0.45, 2000, 0.1), BUDGET, config=OnsetConfig(disagree_tol=10.0))
    assert np.isnan(on.others["logistic"]) and np.isfinite(on.others["threshold"]) and on.disagree


def _synthetic_run():
    """Four cells (alpha x seed): two rise (ICL and induction score together), one stays flat, and one that would
    rise at 2000 diverges at 1200 (the engine then freezes it and sets its ``diverged`` measure)."""
    steps = np.r_[0, STEPS]  # the engine records step 0 too
    extra = np.arange(50, 3001, 100.0)  # train_loss logged at more steps than the probes
    cells = pd.DataFrame({"cell": [0, 1, 2, 3], "alpha": [0.0, 1.0, 0.0, 1.0], "B": 2, "seed": [0, 0, 1, 1],
                          "K": 512, "L": 32, "N": 8, "steps": int(BUDGET)})
    truth = {0: 800.0, 1: None, 2: 1500.0, 3: None}
    rng = np.random.default_rng(5)
    rows, per_item = [], {}
    for cell, mid in truth.items():
        p = logistic_curve(mid, 0.12, steps=steps) if mid else np.full(steps.size, CHANCE)
        diverged = (steps >= 1200) if cell == 3 else np.zeros(steps.size, dtype=bool)
        if cell == 3:
            p = logistic_curve(2000, 0.12, steps=np.minimum(steps, 1200))  # frozen after 1200
        items = probe_draws(p, rng, n_probe=256)
        ind = expit((np.log(np.maximum(steps, 1)) - np.log(0.9 * mid)) / 0.1) if mid else np.full(steps.size, 0.05)
        iw = np.linspace(0.1, 0.3, steps.size)
        for m, v in (("ic_acc", items.mean(1)), ("induction_score", ind), ("iw_acc", iw), ("diverged", diverged)):
            rows += [{"cell": cell, "step": int(s), "measure": m, "value": float(x)} for s, x in zip(steps, v)]
        rows += [{"cell": cell, "step": int(s), "measure": "train_loss", "value": 3.0} for s in extra]
        all_steps = np.unique(np.r_[steps, extra])
        full = np.zeros((all_steps.size, items.shape[1]), dtype=bool)  # rows for every step of the cell
        full[np.searchsorted(all_steps, steps)] = items
        per_item[cell] = full
    return pd.DataFrame(rows), cells, per_item, truth


def test_onsets_table_rows_columns_and_values():
    metrics, cells, per_item, truth = _synthetic_run()
    table = onsets_table(metrics, cells, per_item, seed=1)
    assert list(table.columns) == list(cells.columns) + list(ONSET_COLUMNS)
    assert table["cell"].tolist() == [0, 1, 2, 3] and table["alpha"].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert table["censored"].dtype == bool and table["censored"].tolist() == [False, True, False, True]
    assert table["record_end"].tolist() == [BUDGET, BUDGET, BUDGET, 1200.0]  # the diverged record ends at 1200
    assert table["budget"].tolist() == [CENSOR, CENSOR, CENSOR, 1000.0]  # the last confirmable steps
    # baselines: K = 512, L = 32 at alpha 0 and 1 (classes 0, 32, ..., 480 carry label 0)
    p1 = np.arange(1, 513) ** -1.0 / np.sum(np.arange(1, 513) ** -1.0)
    assert table["iw_majority"].tolist() == pytest.approx([1 / 32, p1[::32].sum(), 1 / 32, p1[::32].sum()])
    assert table["final_iw_above_majority"].tolist() == pytest.approx(
        ((0.3 - table["iw_majority"]) / (1 - table["iw_majority"])).tolist())
    assert (table["estimator"] == "threshold").all() and (table["measure"] == "ic_acc").all()
    for _, row in table.iterrows():
        mid = truth[row["cell"]]
        if mid is None:
            assert np.isnan(row["onset_step"]) and np.isnan(row["induction_step"])
            assert row["onset_lo"] == row["budget"] and row["onset_hi"] == np.inf
            assert np.isnan(row[["onset_threshold", "onset_logistic", "onset_max_slope"]].astype(float)).all()
            continue
        assert abs(row["onset_step"] - mid) <= spacing_at(mid)
        assert row["onset_threshold"] == row["onset_step"]
        assert row["onset_logistic"] == pytest.approx(mid, rel=0.05)
        assert row["onset_max_slope"] == pytest.approx(mid, rel=0.05)
        assert row["onset_lo"] <= row["onset_probe_lo"] <= row["onset_step"] <= row["onset_probe_hi"] <= row["onset_hi"]
        assert row["onset_lo"] <= row["bracket_lo"] < row["onset_step"] <= row["bracket_hi"] <= row["onset_hi"]
        assert row["onset_hi"] <= row["budget"]
        assert not row["estimators_disagree"]
        # the induction score crosses 0.5 (raw scale) at 0.9 * mid: head formation just precedes ICL
        assert abs(row["induction_step"] - 0.9 * mid) <= spacing_at(0.9 * mid)
        assert row["final_iw_acc"] == pytest.approx(0.3)
        assert row["final_ic_acc"] == pytest.approx(metrics.query(f"cell == {row['cell']} and measure == "
                                                                  "'ic_acc' and step == 3000")["value"].item())
    # a row does not depend on which other cells are in the table
    alone = onsets_table(metrics[metrics.cell == 2], cells[cells.cell == 2], per_item, seed=1)
    pd.testing.assert_frame_equal(alone.reset_index(drop=True), table[table.cell == 2].reset_index(drop=True))
    # other measures and estimators; no per-item data for them, so the interval is the checkpoint bracket
    ind = onsets_table(metrics, cells, per_item, measure="induction_score", estimator="logistic")
    assert ind.loc[0, "onset_step"] == pytest.approx(0.9 * truth[0], rel=0.05) and np.isnan(ind.loc[0, "onset_probe_lo"])
    assert (ind.loc[0, "onset_lo"], ind.loc[0, "onset_hi"]) == (700.0, 800.0)  # 0.9 * 800 = 720
    with pytest.raises(ValueError, match="ic_los"):
        onsets_table(metrics, cells, measure="ic_los")


def test_config_rejects_nonsense():
    for bad in ({"threshold": 1.5}, {"persistence": 0}, {"ci": 1.0}, {"floor": 1.0}):
        with pytest.raises(ValueError):
            OnsetConfig(**bad)
    with pytest.raises(ValueError, match="estimator"):
        detect_onset(STEPS, logistic_curve(1000, 0.1), BUDGET, estimator="median")
    with pytest.raises(ValueError, match="per_item"):
        detect_onset(STEPS, logistic_curve(1000, 0.1), BUDGET, per_item=np.ones((STEPS.size, 8)))


def test_the_icl_score_falls_and_its_onset_is_where_it_passes_half_a_nat():
    """Olsson's ICL score falls from 0 as in-context learning forms: its default ceiling is -1 nat, so the default
    threshold (0.5 of the way) is -0.5 nat; a rising reading would never find it."""
    from zipfind.estimators import default_config
    from zipfind.onset import detect_onset

    steps = np.arange(0, 3001, 100, dtype=float)
    score = -0.8 * expit((steps - 1200) / 80)  # passes -0.4 at 1200 and -0.5 at about 1241
    on = detect_onset(steps, score, 2800, config=default_config("icl_score"))
    assert not on.censored and 1200 < on.step <= 1300
    assert detect_onset(steps, score, 2800, config=default_config("ic_acc")).censored
