"""Tests of zipfind.plots: the figures' contents are checked by inspecting the matplotlib objects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib import colors as mcolors
from matplotlib.contour import ContourSet
from matplotlib.figure import Figure

from zipfind import plots

BUDGET = 20_000
ALPHAS = (0.0, 0.5, 1.0, 1.5, 2.0)
BS = (1, 2, 4)


def true_onset(alpha: float, B: float) -> float:
    """Synthetic onset law: slower for skewed (large alpha) and less bursty data; censored beyond BUDGET."""
    return 800.0 * 17.0 / B * np.exp(1.2 * alpha)


def make_onsets(alphas=ALPHAS, Bs=BS, seeds=(0,), Ks=(512,), jitter=0.0, seed=0) -> pd.DataFrame:
    """An onsets table following the contract, with onsets from `true_onset` (log-normal seed jitter)."""
    rng = np.random.default_rng(seed)
    rows, cell = [], 0
    for K in Ks:
        for a in alphas:
            for B in Bs:
                for s in seeds:
                    t = true_onset(a, B) * (K / 512) ** -0.3 * np.exp(jitter * rng.standard_normal())
                    cens = bool(t > BUDGET)
                    rows.append(dict(
                        cell=cell, alpha=a, B=B, seed=s, K=K, L=32, N=8, D=63, eps=0.1, p_bursty=0.9,
                        p_novel=0.0, lr=0.01, steps=BUDGET,
                        onset_step=np.nan if cens else t, onset_lo=np.nan if cens else 0.8 * t,
                        onset_hi=np.nan if cens else 1.25 * t, censored=cens, budget=BUDGET,
                        estimator="threshold", measure="ic_acc", onset_threshold=t, onset_logistic=t,
                        onset_max_slope=t, estimators_disagree=False,
                        final_ic_acc=0.1 if cens else 0.95, final_iw_acc=min(1.0, a / 2 + 0.05),
                        final_induction_score=0.1 if cens else 0.9, induction_step=t,
                    ))
                    cell += 1
    return pd.DataFrame(rows)


def make_metrics(onsets: pd.DataFrame) -> pd.DataFrame:
    """Logistic learning curves in log-step that switch on at each cell's onset (flat if censored)."""
    rows = []
    for r in onsets.itertuples():
        steps = np.r_[0, 10, 30, 100, 300, np.arange(1000, r.budget + 1, 1000)]
        t = 3 * r.budget if r.censored else r.onset_step
        s = 1 / (1 + np.exp(-8 * (np.log(np.maximum(steps, 1)) - np.log(t))))
        for name, v in (("ic_acc", 1 / 32 + 0.94 * s), ("iw_acc", 0.5 * steps / r.budget),
                        ("ic_ctx_acc", 0.3 + 0.7 * s), ("induction_score", 0.05 + 0.9 * s),
                        ("train_loss", 3.4 - 3.2 * s)):
            rows += [dict(cell=r.cell, step=int(st), measure=name, value=float(x)) for st, x in zip(steps, v)]
    return pd.DataFrame(rows)


def data_axes(fig: Figure, label: str) -> list:
    return [ax for ax in fig.axes if ax.get_label() == label]


def texts(ax, gid: str) -> list:
    return [t for t in ax.texts if t.get_gid() == gid]


def colorbar_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def gid_collections(ax, gid: str) -> list:
    return [c for c in ax.collections if c.get_gid() == gid]


# ---------------------------------------------------------------------------------------------------------------
# phase_table: the seed summary of zipfind.survival, nothing else


def test_plots_and_tables_give_the_same_seed_medians():
    """Four seeds per cell with jitter and per-seed censoring times: the phase table is seed_summary's table, and
    the numbers written in the heatmap are its Kaplan-Meier medians and seed-bootstrap intervals."""
    from zipfind.plots.style import _fmt_steps
    from zipfind.survival import seed_summary

    onsets = make_onsets(seeds=(0, 1, 2, 3), jitter=0.8, seed=3)
    onsets["budget"] = np.where(onsets["seed"] == 3, BUDGET / 2, BUDGET)  # one seed stopped (diverged) early
    late = onsets["onset_step"] > onsets["budget"]
    onsets.loc[late, ["onset_step", "onset_lo", "onset_hi", "censored"]] = [np.nan, np.nan, np.nan, True]
    onsets.loc[onsets["censored"], "onset_lo"] = onsets["budget"]
    onsets.loc[onsets["censored"], "onset_hi"] = np.inf
    table = seed_summary(onsets, by=["B", "alpha"])
    pd.testing.assert_frame_equal(plots.phase_table(onsets, x="alpha", y="B"), table)
    assert 0 < table["censored"].sum() < len(table) and (table["n_censored"] > 0).sum() > table["censored"].sum()
    (ax,) = data_axes(plots.phase_diagram(onsets, facet=(), companions=False), "onset")
    learned = table[~table["censored"]]
    assert sorted(t.get_text() for t in texts(ax, "onset-annotation")) == sorted(
        _fmt_steps(v) for v in learned["onset_step"])
    shown = sorted(t.get_text().split("\n")[0] for t in texts(ax, "onset-interval"))
    assert shown == sorted(f"{_fmt_steps(lo)}–{_fmt_steps(hi)}" for lo, hi in zip(learned["seed_lo"],
                                                                                   learned["seed_hi"]))
    assert len(texts(ax, "censored-label")) == table["censored"].sum()


# ---------------------------------------------------------------------------------------------------------------
# phase_diagram


def test_phase_diagram_5x3_cells_colours_annotations_and_censoring():
    onsets = make_onsets()
    fig = plots.phase_diagram(onsets)
    (ax,) = data_axes(fig, "onset")
    expected = {(a, B): true_onset(a, B) for a in ALPHAS for B in BS}
    n_cens = sum(t > BUDGET for t in expected.values())
    assert 0 < n_cens < 15

    assert ax.get_xlabel() == "Zipf exponent α"
    assert ax.get_ylabel() == "burstiness B"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.5", "1", "1.5", "2"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "2", "4"]  # B increases upwards

    # One bold annotation per uncensored cell, placed in its cell and reading its onset.
    ann = texts(ax, "onset-annotation")
    assert len(ann) == 15 - n_cens
    for t in ann:
        x, y = t.get_position()
        a, B = ALPHAS[int(x)], BS[int(y)]
        assert expected[(a, B)] <= BUDGET
        assert t.get_text() == plots._fmt_steps(expected[(a, B)])
    intervals = texts(ax, "onset-interval")
    assert len(intervals) == 15 - n_cens
    t0 = true_onset(0.0, 4)
    assert f"{plots._fmt_steps(0.8 * t0)}–{plots._fmt_steps(1.25 * t0)}" in [t.get_text() for t in intervals]

    # Censored cells: a hatched patch and a "no ICL by 20k steps" label each, in the censored positions.
    patches = [p for p in ax.patches if p.get_gid() == "censored-cell"]
    assert len(patches) == n_cens
    assert all(p.get_hatch() for p in patches)
    cens_pos = {(ALPHAS[int(p.get_x())], BS[int(p.get_y())]) for p in patches}
    assert cens_pos == {k for k, t in expected.items() if t > BUDGET}
    labels = texts(ax, "censored-label")
    assert len(labels) == n_cens
    assert all(t.get_text() == "no ICL by\n20k steps" for t in labels)

    # The mesh holds the medians (censored cells masked) on a log colour scale spanning them.
    mesh = ax.collections[0]
    arr = np.ma.asarray(mesh.get_array()).reshape(3, 5)
    for j, B in enumerate(BS):
        for i, a in enumerate(ALPHAS):
            if expected[(a, B)] > BUDGET:
                assert arr.mask[j, i]
            else:
                assert arr[j, i] == pytest.approx(expected[(a, B)])
    assert isinstance(mesh.norm, mcolors.LogNorm)
    finite = [t for t in expected.values() if t <= BUDGET]
    assert mesh.norm.vmin == pytest.approx(min(finite)) and mesh.norm.vmax == pytest.approx(max(finite))

    # Two colour bars: onset (log) and the shared final-accuracy one; companions annotated with values.
    cbars = colorbar_axes(fig)
    assert sorted(c.get_ylabel() for c in cbars) == ["final accuracy", "onset step (IC accuracy)"]
    (ic_ax,) = data_axes(fig, "final_ic_acc")
    (iw_ax,) = data_axes(fig, "final_iw_acc")
    # baselines: IC chance 1/L and copy 1/N in the title and on the colour bar; each IW cell's majority level
    assert ic_ax.get_title() == "final IC accuracy\nchance 1/L 0.0312, copy a context label 1/N 0.125"
    acc_bar = next(c for c in cbars if c.get_ylabel() == "final accuracy")
    levels = {ln.get_gid(): ln.get_ydata()[0] for ln in acc_bar.lines}
    assert levels == {"baseline:ic_chance": 1 / 32, "baseline:ic_copy": 1 / 8}
    assert iw_ax.get_title().startswith("final IW accuracy")
    p = np.arange(1, 513.0) ** -np.array(ALPHAS)[:, None]
    majority = (p[:, ::32].sum(axis=1) / p.sum(axis=1)).round(2)  # K = 512, L = 32: label 0 holds classes 0, 32, ..
    assert sorted(t.get_text() for t in texts(iw_ax, "baseline:iw_majority")) == sorted(
        f"maj {m:.2f}" for m in np.repeat(majority, len(BS)))
    assert len(texts(ic_ax, "value-annotation")) == 15
    assert sorted({t.get_text() for t in texts(iw_ax, "value-annotation")}) == ["0.05", "0.30", "0.55", "0.80",
                                                                                "1.00"]


def test_phase_diagram_annotations_fit_inside_their_cells():
    """Legibility of a 5 alpha x 3 B diagram: every label, rendered, stays inside its own cell."""
    fig = plots.phase_diagram(make_onsets(seeds=(0, 1, 2), jitter=0.3), companions=False)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (ax,) = data_axes(fig, "onset")
    labelled = texts(ax, "onset-annotation") + texts(ax, "onset-interval") + texts(ax, "censored-label")
    assert len(labelled) >= 15
    for t in labelled:
        x, y = t.get_position()
        i, j = int(x), int(round(y - 0.5))
        cell = ax.transData.transform([[i, j], [i + 1, j + 1]])
        box = t.get_window_extent(renderer)
        assert cell[0, 0] <= box.x0 and box.x1 <= cell[1, 0], t.get_text()
        assert cell[0, 1] <= box.y0 and box.y1 <= cell[1, 1], t.get_text()


def test_phase_diagram_seed_median_and_partial_censoring_note():
    # Three seeds of one (alpha, B): onsets 1000, 3000 and one censored -> median 3000, one seed censored.
    base = make_onsets(alphas=(0.0, 2.0), Bs=(1,), seeds=(0, 1, 2))
    sel = (base["alpha"] == 0.0).to_numpy()
    base.loc[sel, "onset_step"] = [1000.0, 3000.0, np.nan]
    base.loc[sel, "onset_lo"] = [900.0, 2500.0, np.nan]
    base.loc[sel, "onset_hi"] = [1100.0, 3600.0, np.nan]
    base.loc[sel, "censored"] = [False, False, True]
    fig = plots.phase_diagram(base, companions=False)
    (ax,) = data_axes(fig, "onset")
    assert [t.get_text() for t in texts(ax, "onset-annotation")] == ["3k"]  # Kaplan-Meier: S(3000) = 1/3
    # the seed bootstrap: resampled medians are 1000, 3000 or censored
    assert [t.get_text() for t in texts(ax, "onset-interval")] == ["1k–∞\n1/3 censored"]
    assert len(texts(ax, "censored-label")) == 1  # alpha = 2, B = 1 is censored for all three seeds
    assert "median of 3 seeds" in ax.get_title()
    assert len(colorbar_axes(fig)) == 1


def test_open_ended_intervals_from_the_bootstrap():
    """zipfind.onset reports onset_hi = inf when bootstrap resamples find no onset; lo = budget, hi = inf when
    censored. With one seed the heatmap shows that run's open interval; with two, the run-level interval is the
    median of the runs' ends and the heatmap shows the seed bootstrap; the curve's span stops at the budget."""
    onsets = make_onsets(alphas=(0.0, 2.0), Bs=(4,), seeds=(0, 1))
    onsets.loc[onsets["alpha"] == 0.0, ["onset_step", "onset_lo", "onset_hi"]] = [[4000, 3000, 9000],
                                                                                  [5000, 4500, np.inf]]
    onsets.loc[onsets["censored"], ["onset_lo", "onset_hi"]] = [BUDGET, np.inf]
    tab = plots.phase_table(onsets, x="alpha", y="B")
    assert tab["onset_step"].tolist()[0] == 4000  # Kaplan-Meier median of two: the smaller
    assert tab["onset_lo"].tolist()[0] == 3000 and tab["onset_hi"].tolist()[0] == 9000
    assert (tab["seed_lo"].tolist()[0], tab["seed_hi"].tolist()[0]) == (4000, 5000)
    assert tab["onset_lo"].tolist()[1] == BUDGET and bool(tab["censored"].tolist()[1])
    (ax,) = data_axes(plots.phase_diagram(onsets, companions=False), "onset")
    assert [t.get_text() for t in texts(ax, "onset-annotation")] == ["4k"]
    assert [t.get_text() for t in texts(ax, "onset-interval")] == ["4k–5k"]
    (ax,) = data_axes(plots.phase_diagram(onsets[onsets["seed"] == 1], companions=False), "onset")
    assert [t.get_text() for t in texts(ax, "onset-annotation")] == ["5k"]
    assert [t.get_text() for t in texts(ax, "onset-interval")] == ["4.5k–∞"]
    fig = plots.learning_curves(make_metrics(onsets), onsets, where={"alpha": 0.0, "seed": 1})
    (span,) = [p for ax in fig.axes for p in ax.patches if p.get_gid() == "onset-interval"]
    assert (span.get_x(), span.get_x() + span.get_width()) == pytest.approx((4500, BUDGET))


def test_phase_diagram_facets_over_third_axis():
    onsets = make_onsets(Ks=(256, 1024))
    fig = plots.phase_diagram(onsets)  # K varies: faceted automatically
    onset_axes = data_axes(fig, "onset")
    assert len(onset_axes) == 2
    assert [ax.get_title().splitlines()[0] for ax in onset_axes] == ["K = 256", "K = 1024"]
    assert len(data_axes(fig, "final_ic_acc")) == 2 and len(data_axes(fig, "final_iw_acc")) == 2
    assert len(colorbar_axes(fig)) == 2
    for ax, K in zip(onset_axes, (256, 1024)):
        n_on = sum(true_onset(a, B) * (K / 512) ** -0.3 <= BUDGET for a in ALPHAS for B in BS)
        assert len(texts(ax, "onset-annotation")) == n_on
        assert len(texts(ax, "censored-label")) == 15 - n_on
    # Turning faceting off pools the K values per (alpha, B) cell.
    pooled = plots.phase_diagram(onsets, facet=(), companions=False)
    (ax,) = data_axes(pooled, "onset")
    assert "median of 2 seeds" in ax.get_title()


@pytest.mark.parametrize(("alphas", "Bs"), [((1.0,), BS), (ALPHAS, (2,)), ((0.0,), (4,))])
def test_phase_diagram_single_alpha_or_single_B(alphas, Bs):
    onsets = make_onsets(alphas=alphas, Bs=Bs)
    fig = plots.phase_diagram(onsets)
    (ax,) = data_axes(fig, "onset")
    assert ax.get_xlim() == (0.0, float(len(alphas))) and ax.get_ylim() == (0.0, float(len(Bs)))
    n_on = sum(true_onset(a, B) <= BUDGET for a in alphas for B in Bs)
    assert len(texts(ax, "onset-annotation")) == n_on
    assert len(texts(ax, "censored-label")) == len(alphas) * len(Bs) - n_on
    assert np.ma.asarray(ax.collections[0].get_array()).size == len(alphas) * len(Bs)
    assert "onset step (IC accuracy)" in [c.get_ylabel() for c in colorbar_axes(fig)]


def theory_grid(alpha_star: float, *, alphas=np.linspace(-0.2, 2.2, 121), Bs=np.linspace(0.5, 5.0, 46),
                inf_beyond: bool = False) -> pd.DataFrame:
    """Predicted onset = budget * exp(alpha - alpha_star): no-onset region alpha > alpha_star, any B."""
    A, B = np.meshgrid(alphas, Bs)
    pred = BUDGET * np.exp(A - alpha_star)
    if inf_beyond:
        pred = np.where(A > alpha_star, np.inf, 0.5 * BUDGET)
    return pd.DataFrame(dict(alpha=A.ravel(), B=B.ravel(), predicted_onset=pred.ravel(), budget=BUDGET))


def boundary_vertices(ax) -> np.ndarray:
    sets = [c for c in ax.collections if isinstance(c, ContourSet) and c.get_gid() == "theory-boundary"]
    assert len(sets) == 1
    verts = np.concatenate([p.vertices for p in sets[0].get_paths() if len(p.vertices)])
    assert len(verts) >= 2
    return verts


@pytest.mark.parametrize(
    ("alphas", "alpha_star", "x_pos", "inf_beyond"),
    [
        (ALPHAS, 1.25, 3.0, False),  # midway between the categories 1 (x=2.5) and 1.5 (x=3.5)
        ((0.0, 0.5, 2.0), 1.25, 2.0, False),  # uneven categories: interpolated between 0.5 (1.5) and 2 (2.5)
        (ALPHAS, 0.8, 2.1, True),  # no-onset region predicted as inf
    ],
)
def test_theory_boundary_lands_between_categories(alphas, alpha_star, x_pos, inf_beyond):
    fig = plots.phase_diagram(make_onsets(alphas=alphas), theory=theory_grid(alpha_star, inf_beyond=inf_beyond))
    (ax,) = data_axes(fig, "onset")
    verts = boundary_vertices(ax)
    tol = 0.05 if inf_beyond else 0.01
    assert np.all(np.abs(verts[:, 0] - x_pos) < tol)
    assert verts[:, 1].min() <= 0.01 and verts[:, 1].max() >= 2.99  # spans all B rows
    # The predicted no-onset side is hatched on the onset panel and named in the figure legend.
    assert len(gid_collections(ax, "theory-no-onset-region")) == 1
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "predicted no-onset boundary" in legend_texts
    # The same boundary is drawn on the companion panels.
    assert np.allclose(boundary_vertices(data_axes(fig, "final_ic_acc")[0])[:, 0], x_pos, atol=tol)


def test_theory_boundary_per_model_and_single_alpha():
    # Two models: two boundaries, each named by its model.
    t = pd.concat([theory_grid(0.75).assign(model="M1"), theory_grid(1.75).assign(model="M4")])
    fig = plots.phase_diagram(make_onsets(), theory=t, companions=False)
    (ax,) = data_axes(fig, "onset")
    sets = [c for c in ax.collections if isinstance(c, ContourSet) and c.get_gid() == "theory-boundary"]
    xs = sorted(float(np.mean(np.concatenate([p.vertices for p in c.get_paths()])[:, 0])) for c in sets)
    assert xs == pytest.approx([2.0, 4.0], abs=0.01)
    legend_texts = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {"predicted no-onset boundary (M1)", "predicted no-onset boundary (M4)"} <= legend_texts

    # One alpha category: the theory slice at that alpha, boundary in B at B* = 1.5 -> y between 1 and 2.
    Bs = np.linspace(0.5, 4.5, 81)
    A, B = np.meshgrid(np.linspace(0.0, 2.0, 21), Bs)
    pred = BUDGET * (1.5 / B) ** 2 * np.exp(A - 1.0)
    theory = pd.DataFrame(dict(alpha=A.ravel(), B=B.ravel(), predicted_onset=pred.ravel(), budget=BUDGET))
    fig = plots.phase_diagram(make_onsets(alphas=(1.0,)), theory=theory, companions=False)
    verts = boundary_vertices(data_axes(fig, "onset")[0])
    assert np.allclose(verts[:, 1], 1.0, atol=0.01)
    assert verts[:, 0].min() == pytest.approx(0.0) and verts[:, 0].max() == pytest.approx(1.0)


def test_phase_diagram_rejects_missing_columns():
    with pytest.raises(ValueError, match="lacks column"):
        plots.phase_diagram(make_onsets().drop(columns=["budget"]))
    with pytest.raises(ValueError, match="theory table lacks"):
        plots.phase_diagram(make_onsets(), theory=theory_grid(1.0).drop(columns=["budget"]))


# ---------------------------------------------------------------------------------------------------------------
# learning_curves


def test_learning_curves_one_panel_per_cell_marks_onsets():
    onsets = make_onsets(Bs=(2,))
    metrics = make_metrics(onsets)
    fig = plots.learning_curves(metrics, onsets, where={"B": 2})
    panels = [ax for ax in fig.axes if ax.get_label().startswith("curves:cell")]
    assert len(panels) == 5
    for ax, row in zip(panels, onsets.itertuples()):
        assert ax.get_title() == f"α = {row.alpha:g}"
        assert ax.get_xscale() == "log"
        curves = [ln for ln in ax.lines if (ln.get_gid() or "").startswith("curve:")]
        assert [ln.get_gid() for ln in curves] == ["curve:ic_acc", "curve:iw_acc", "curve:ic_ctx_acc",
                                                   "curve:induction_score"]
        assert min(np.min(ln.get_xdata()) for ln in curves) == 10  # step 0 left out on the log axis
        # every accuracy's baselines, at their closed forms (L = 32, N = 8, K = 512)
        p = np.arange(1, 513.0) ** -row.alpha
        levels = {ln.get_gid(): ln.get_ydata()[0] for ln in ax.lines if (ln.get_gid() or "").startswith("baseline:")}
        assert levels == pytest.approx({"baseline:ic_chance": 1 / 32, "baseline:ic_copy": 1 / 8,
                                        "baseline:ctx_chance": 8 / 32,
                                        "baseline:iw_majority": p[::32].sum() / p.sum()}, rel=1e-12)
        onset_lines = [ln for ln in ax.lines if ln.get_gid() == "onset-line"]
        spans = [p for p in ax.patches if p.get_gid() == "onset-interval"]
        notes = texts(ax, "censored-note")
        if row.censored:
            assert not onset_lines and not spans
            assert [t.get_text() for t in notes] == ["no onset by 20k steps"]
        else:
            assert len(onset_lines) == 1 and onset_lines[0].get_xdata()[0] == pytest.approx(row.onset_step)
            (span,) = spans
            x0, x1 = span.get_x(), span.get_x() + span.get_width()
            assert (x0, x1) == pytest.approx((row.onset_lo, row.onset_hi))
            assert not notes
    assert panels[0].get_ylabel() == "accuracy / score"
    assert panels[-1].get_xlabel() == "training step"
    assert "IC accuracy" in [t.get_text() for t in fig.legends[0].get_texts()]

    linear = plots.learning_curves(metrics, onsets, where={"alpha": 0.0, "B": 2}, measures=("ic_acc",),
                                   logx=False)
    (ax,) = [a for a in linear.axes if a.get_label().startswith("curves:cell")]
    assert ax.get_xscale() == "linear" and ax.lines[0].get_xdata()[0] == 0
    assert ax.get_ylabel() == "IC accuracy"


def test_learning_curves_overlaid_by_hue():
    onsets = make_onsets(Bs=(2,), seeds=(0, 1), jitter=0.1)
    metrics = make_metrics(onsets)
    measures = ("ic_acc", "induction_score", "train_loss")
    fig = plots.learning_curves(metrics, onsets, hue="alpha", measures=measures)
    panels = [ax for ax in fig.axes if ax.get_label().startswith("curves:")]
    assert [ax.get_label() for ax in panels] == [f"curves:{m}" for m in measures]
    assert [ax.get_title() for ax in panels] == ["IC accuracy", "induction score", "training loss"]
    n_on = int((~onsets["censored"]).sum())
    for ax in panels:
        assert len(ax.lines) >= len(onsets)  # one curve per cell (seeds share the alpha colour)
        pts = np.concatenate([c.get_offsets() for c in gid_collections(ax, "onset-point")])
        assert sorted(pts[:, 0]) == pytest.approx(sorted(onsets["onset_step"].dropna()))
        cen = np.concatenate([c.get_offsets() for c in gid_collections(ax, "censored-point")])
        assert len(cen) == len(onsets) - n_on and np.all(cen[:, 0] == BUDGET)
        # One rug row per alpha level: points of the same alpha share a height, levels do not.
        heights = {float(c.get_offsets()[0, 1]) for c in gid_collections(ax, "onset-point")
                   + gid_collections(ax, "censored-point")}
        assert len(heights) == onsets["alpha"].nunique()
    # Bounded measures make room above 1 for the onset rug; the loss panel does not.
    assert panels[0].get_ylim()[1] > 1.2 and max(panels[0].get_yticks()) == 1.0
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_texts[:5] == ["α = 0", "α = 0.5", "α = 1", "α = 1.5", "α = 2"]
    # the IC panel's baselines are common to every alpha; an IW panel gets one majority level per alpha
    ic_levels = {ln.get_ydata()[0] for ln in panels[0].lines if (ln.get_gid() or "").startswith("baseline:")}
    assert ic_levels == {1 / 32, 1 / 8}
    iw = plots.learning_curves(metrics, onsets, hue="alpha", measures=("iw_acc",))
    (ax,) = [a for a in iw.axes if a.get_label() == "curves:iw_acc"]
    majority = sorted(ln.get_ydata()[0] for ln in ax.lines if ln.get_gid() == "baseline:iw_majority")
    p = np.arange(1, 513.0) ** -np.array(ALPHAS)[:, None]
    assert majority == pytest.approx(sorted(p[:, ::32].sum(axis=1) / p.sum(axis=1)), rel=1e-12)


def test_learning_curves_bad_selection_says_what_is_allowed():
    onsets = make_onsets(Bs=(2,))
    metrics = make_metrics(onsets)
    with pytest.raises(ValueError, match="B takes 2"):
        plots.learning_curves(metrics, onsets, where={"B": 3})
    with pytest.raises(ValueError, match="measures"):
        plots.learning_curves(metrics, onsets, measures=("ic_acc", "bogus"))


# ---------------------------------------------------------------------------------------------------------------
# fit_overlay


def make_predictions() -> pd.DataFrame:
    """Two models on 6 cells (2 censored). M4 predicts no onset (inf) for the censored cells; the held-out
    log errors of the uncensored cells are 0.1, 0.2, 0.3, 0.4 (M4) so their median is 0.25."""
    obs = np.array([1000.0, 2000.0, 4000.0, 8000.0, np.nan, np.nan])
    cens = np.isnan(obs)
    rows = []
    for model, pred, held in (
        ("M0", [1100.0, 1500.0, 5000.0, 7000.0, 15000.0, 30000.0],
         [25000.0, 1400.0, 6000.0, 6000.0, 14000.0, 35000.0]),
        ("M4", [1000.0, 2000.0, 4000.0, 8000.0, np.inf, np.inf],
         list(np.r_[obs[:4] * np.exp([0.1, -0.2, 0.3, -0.4]), np.inf, 12000.0])),
    ):
        for c in range(6):
            rows.append(dict(model=model, cell=c, alpha=[0.0, 0.5, 1.0, 1.5, 2.0, 2.0][c], B=2,
                             observed_onset=obs[c], censored=bool(cens[c]), budget=BUDGET,
                             predicted_onset=pred[c], heldout_predicted_onset=held[c], fold=c % 3))
    return pd.DataFrame(rows)


def test_fit_overlay_markers_identity_and_heldout_stats():
    preds = make_predictions()
    fig = plots.fit_overlay(preds, fits=[{"model": "M4", "aic": 12.34, "k": 3}], measure="ic_acc")
    panels = [ax for ax in fig.axes if ax.get_label().startswith("fit:")]
    assert [ax.get_label() for ax in panels] == ["fit:M0", "fit:M4"]
    m0, m4 = panels
    assert m4.get_title() == "M4  (k = 3, AIC = 12.3)" and m0.get_title() == "M0"
    for ax in panels:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert ax.get_xlabel() == "observed onset step (IC accuracy)"
        (ident,) = [ln for ln in ax.lines if ln.get_gid() == "identity"]
        assert np.allclose(ident.get_xdata(), ident.get_ydata())
        (obs,) = gid_collections(ax, "fit-observed")
        (held,) = gid_collections(ax, "heldout-observed")
        (cen,) = gid_collections(ax, "fit-censored")
        assert len(obs.get_offsets()) == 4 and len(held.get_offsets()) == 4 and len(cen.get_offsets()) == 2
        assert np.all(cen.get_offsets()[:, 0] == BUDGET)  # censored cells sit at their budget
        assert np.allclose(obs.get_offsets()[:, 0], [1000, 2000, 4000, 8000])
        # Held-out markers are hollow, in-sample ones filled.
        assert held.get_facecolors().size == 0 or np.all(held.get_facecolors()[:, 3] == 0)
        assert np.all(obs.get_facecolors()[:, 3] > 0)
    assert m0.get_ylabel() == "predicted onset step"
    # M4's "no onset" predictions sit above every finite value, in the band at the top.
    (cen4,) = gid_collections(m4, "fit-censored")
    finite_top = np.nanmax(np.r_[preds["budget"], preds["heldout_predicted_onset"].replace(np.inf, np.nan)])
    assert np.all(cen4.get_offsets()[:, 1] > finite_top)
    assert np.allclose(gid_collections(m4, "fit-observed")[0].get_offsets()[:, 1], [1000, 2000, 4000, 8000])
    # Held-out stats recomputed from the table: median |dln t| 0.25; censor accuracy 5/6 (12000 < budget).
    (stats,) = texts(m4, "fit-stats")
    assert stats.get_text() == ("6 cells, 2 censored\nheld-out median |Δ ln t| = 0.25\n"
                                "held-out censor accuracy = 0.83")
    (stats0,) = texts(m0, "fit-stats")
    # M0 held-out: 25000 for an onset at 1000 and 14000 for a censored cell are wrong about censoring (4/6);
    # log errors ln 25, ln(10/7), ln 1.5, ln(4/3) have median (ln(10/7) + ln 1.5) / 2 = 0.38.
    assert stats0.get_text().endswith("|Δ ln t| = 0.38\nheld-out censor accuracy = 0.67")

    only = plots.fit_overlay(preds, models=["M4"], hue="alpha")
    assert [ax.get_label() for ax in only.axes if ax.get_label().startswith("fit:")] == ["fit:M4"]
    assert "α = 0.5" in [t.get_text() for t in only.legends[0].get_texts()]
    with pytest.raises(ValueError, match="models"):
        plots.fit_overlay(preds, models=["M9"])


def test_theory_boundary_follows_the_facet():
    """A theory table with the facet column draws each facet's own boundary; one without it, the same on all."""
    onsets = make_onsets(Ks=(256, 1024))
    theory = pd.concat([theory_grid(0.75).assign(K=256), theory_grid(1.75).assign(K=1024)])
    fig = plots.phase_diagram(onsets, theory=theory, companions=False)
    xs = [float(np.mean(boundary_vertices(ax)[:, 0])) for ax in data_axes(fig, "onset")]
    assert xs == pytest.approx([2.0, 4.0], abs=0.01)
    shared = plots.phase_diagram(onsets, theory=theory_grid(1.25), companions=False)
    xs = [float(np.mean(boundary_vertices(ax)[:, 0])) for ax in data_axes(shared, "onset")]
    assert xs == pytest.approx([3.0, 3.0], abs=0.01)


@pytest.mark.parametrize(
    ("steps", "digits", "text"),
    [(850, 2, "850"), (2140, 2, "2.1k"), (12345, 2, "12k"), (99_999, 2, "100k"), (150_000, 2, "150k"),
     (999_999, 2, "1M"), (1_250_000, 3, "1.25M"), (20_000, 3, "20k"), (np.inf, 2, "∞")],
)
def test_step_labels_are_compact(steps, digits, text):
    assert plots._fmt_steps(steps, digits) == text
