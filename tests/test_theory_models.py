"""zipfind.theory.models: each model's sympy expression equals its numeric twin, implicit models are solved
correctly (vectorised == per-cell loop), gradients match finite differences, limits and the reference picture."""

from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import brentq

from zipfind.theory import MODELS, predict_onset
from zipfind.theory import models as mm

REPO = Path(__file__).resolve().parents[1]


def _random_point(rng, model, K_max=20):
    inputs = {
        "alpha": float(rng.uniform(0, 3)), "B": int(rng.choice([0, 1, 2, 4])), "K": int(rng.integers(3, K_max)),
        "N": int(rng.integers(2, 16)), "L": int(rng.integers(2, 40)), "p_bursty": float(rng.uniform(0, 1)),
        "p_novel": float(rng.uniform(0, 0.3)), "lr": float(rng.uniform(1e-3, 1e-2)),
        "context": int(rng.integers(0, 2)),  # 0 = "iid", 1 = "distinct"
    }
    theta = {}
    for p in model.params:
        lo, hi = p.init
        theta[p.name] = float(np.exp(rng.uniform(np.log(lo), np.log(hi))) if p.positive else rng.uniform(lo, hi))
    return inputs, theta


def _subs(model, inputs, theta):
    d = {sym: sp.Float(inputs[name], 30) if isinstance(inputs[name], float) else sp.Integer(inputs[name])
         for sym, name in zip(mm.INPUT_SYMBOLS, mm.INPUT_NAMES)}
    d.update({p.symbol: sp.Float(theta[p.name], 30) for p in model.params})
    return d


@pytest.mark.parametrize("name", [n for n, m in MODELS.items() if m.kind == "explicit"])
def test_explicit_sympy_equals_numeric(name):
    model = MODELS[name]
    rng = np.random.default_rng(11)
    for _ in range(5):
        inputs, theta = _random_point(rng, model)
        exact = model.expr.subs(_subs(model, inputs, theta)).evalf(30)
        num = float(model.predict(theta, **inputs))
        if exact.is_infinite:
            assert num == np.inf
        else:
            np.testing.assert_allclose(num, float(exact), rtol=1e-10)


@pytest.mark.parametrize("name", [n for n, m in MODELS.items() if m.kind == "implicit"])
def test_implicit_sympy_residual_equals_numeric_and_root(name):
    model = MODELS[name]
    rng = np.random.default_rng(12)
    for _ in range(3):
        inputs, theta = _random_point(rng, model, K_max=12)
        prep = model.prepare(**inputs)
        th = [theta[n] for n in model.param_names]
        eq = model.expr.subs(_subs(model, inputs, theta))
        for tv in (37.0, 800.0, 2.0e4):
            exact = float((eq.lhs - eq.rhs).subs(mm.t, sp.Float(tv, 30)).doit().evalf(30))
            num = float(model.residual(prep, th, np.array([tv]))[0])
            np.testing.assert_allclose(num, exact, rtol=1e-10, atol=1e-10 * abs(float(eq.rhs)))
        t_star = model.onset(prep, th)[0]
        if np.isfinite(t_star):  # the solved onset satisfies the exact equation
            at = float((eq.lhs - eq.rhs).subs(mm.t, sp.Float(t_star, 30)).doit().evalf(30))
            assert abs(at) < 1e-8 * abs(float(eq.rhs))


def _grid():
    a, b = np.meshgrid(np.linspace(0, 2, 7), [0, 2, 4], indexing="ij")
    return {"alpha": a.ravel(), "B": b.ravel(), "K": 2048, "N": 8, "L": 32, "p_bursty": 0.9}


def _first_root_loop(model, inputs, theta):
    """Oracle: one cell at a time, scan a log grid for the first sign change of lhs - rhs, then brentq."""
    out = []
    grid = np.logspace(-2, 12, 1401)
    for i in range(len(inputs["alpha"])):
        cell = {k: (v[i] if np.ndim(v) else v) for k, v in inputs.items()}
        prep = model.prepare(**{k: np.array([v]) for k, v in cell.items()})
        f = lambda tv: float(model.residual(prep, theta, np.array([tv]))[0])  # noqa: E731
        scan = model.prepare(**{k: np.full(grid.size, v) for k, v in cell.items()})
        vals = model.residual(scan, theta, grid)  # the same cell at every grid time
        idx = np.flatnonzero((vals[:-1] < 0) & (vals[1:] >= 0))
        out.append(brentq(f, grid[idx[0]], grid[idx[0] + 1], xtol=1e-12, rtol=1e-13) if idx.size else np.inf)
    return np.array(out)


@pytest.mark.parametrize("name", ["M4", "M6", "M7"])
def test_vectorised_solver_equals_per_cell_loop(name):
    model = MODELS[name]
    inputs = _grid()
    theta = list(model.defaults.values())
    vec = model.predict(model.defaults, **inputs)
    loop = _first_root_loop(model, inputs, theta)
    assert np.array_equal(np.isfinite(vec), np.isfinite(loop))
    fin = np.isfinite(vec)
    assert fin.sum() >= 10 and (~fin).sum() >= 3  # the grid has onsets and no-onsets
    np.testing.assert_allclose(vec[fin], loop[fin], rtol=1e-8)


@pytest.mark.parametrize("name", list(MODELS))
def test_gradient_matches_finite_differences(name):
    model = MODELS[name]
    prep = model.prepare(**_grid())
    th = np.array([p.default for p in model.params])
    t0, grad = model.onset(prep, th, grad=True)
    fin = np.isfinite(t0)
    for j, p in enumerate(model.params):
        h = 1e-6 * max(abs(th[j]), 1e-3)
        up, dn = th.copy(), th.copy()
        up[j] += h
        dn[j] -= h
        with np.errstate(invalid="ignore"):
            fd = (np.log(model.onset(prep, up)) - np.log(model.onset(prep, dn))) / (2 * h)
        np.testing.assert_allclose(grad[fin, j], fd[fin], rtol=1e-5, atol=1e-7 / max(abs(th[j]), 1e-3),
                                   err_msg=p.name)


def test_predict_onset_vectorises():
    alpha = np.linspace(0, 2, 50)
    for name in MODELS:
        out = predict_onset(name, alpha=alpha, B=2, K=2048, N=8)
        assert out.shape == (50,)
        grid = predict_onset(name, alpha=alpha[:, None], B=np.array([1, 2, 4]))
        assert grid.shape == (50, 3)
        loop = np.array([[predict_onset(name, alpha=a, B=b) for b in (1, 2, 4)] for a in alpha[::7]])
        np.testing.assert_allclose(grid[::7], loop, rtol=1e-9)
        assert np.all((grid > 0) | np.isnan(grid))


def test_m4_uniform_closed_form_and_no_root_threshold():
    m = MODELS["M4"]
    A, r, K, N, B, pb, lr = 60.0, 1.5, 2048, 8, 2, 0.9, 3e-3
    q = pb + (1 - pb) * -np.expm1(N * np.log1p(-1 / K))
    x = (2 * N + 1) / B
    t_exact = -(K / r) * np.log1p(-r * A * x / (K * q))  # alpha = 0: K q (1 - e^{-r t/K}) / r = A x
    np.testing.assert_allclose(m.predict({"A": A, "r": r}, alpha=0.0, B=B, K=K, N=N, p_bursty=pb, lr=lr),
                               t_exact, rtol=1e-10)
    # no root once the whole drive, sum_k q_k / r, cannot reach A x -- whatever alpha is
    for alpha in (0.0, 1.0, 2.0):
        import zipfind.theory.zipf as z
        nodes = z.class_nodes(np.array([alpha]), np.array([K]))
        q_k = pb + (1 - pb) * -np.expm1(N * np.log1p(-nodes.p))
        A_c = float(nodes.sum(q_k)[0]) / (r * x)
        assert np.isfinite(m.predict({"A": 0.999 * A_c, "r": r}, alpha=alpha, B=B, K=K, N=N, p_bursty=pb))
        assert m.predict({"A": 1.001 * A_c, "r": r}, alpha=alpha, B=B, K=K, N=N, p_bursty=pb) == np.inf
        # p_novel > 0 keeps a constant drive: the onset always exists
        assert np.isfinite(m.predict({"A": 1.001 * A_c, "r": r}, alpha=alpha, B=B, K=K, N=N, p_bursty=pb,
                                     p_novel=0.05))


def test_m4_drive_is_the_integral_of_the_residual_drive_and_m6_solves_its_ode():
    r, lam, tau, s, pk, qk = sp.symbols("r lambda tau s p q", positive=True)
    rate = qk * pk * sp.exp(-r * pk * s)  # drive of one class: in context, query of class k, not yet memorised
    m4_term = qk * (1 - sp.exp(-r * pk * tau)) / r
    assert sp.simplify(sp.integrate(rate, (s, 0, tau)) - m4_term) == 0
    m6_term = qk * pk * mm.expgap(r * pk, lam, tau)
    ode = sp.diff(m6_term, tau) - (rate.subs(s, tau) - lam * m6_term)  # dI/dtau = drive - lam I
    assert sp.simplify(ode.rewrite(sp.exp)) == 0
    assert sp.simplify(m6_term.rewrite(sp.exp).subs(tau, 0)) == 0
    # and as lam -> 0 the leaky model becomes M4
    t4 = predict_onset("M4", alpha=np.array([0.0, 0.8]), B=2)
    t6 = predict_onset("M6", {**MODELS["M4"].defaults, "lam": 1e-12}, alpha=np.array([0.0, 0.8]), B=2)
    np.testing.assert_allclose(t6, t4, rtol=1e-6)


def test_limits_of_the_explicit_models():
    # M3: the readout plateau diverges as L -> N and there is no onset for L <= N
    t = predict_onset("M3", alpha=0.5, B=2, N=8, L=np.array([8.5, 9, 16, 64, 8, 4]))
    assert np.all(np.diff(t[:4]) < 0) and np.all(np.isinf(t[4:]))
    # M1, M2, M3, M5: the time scale is x = (2N+1)/B and 1/lr; B = 0 counts as B = 1
    for name in ("M1", "M2", "M3", "M5"):
        t0, t1 = predict_onset(name, alpha=0.5, B=np.array([0, 1]))
        assert t0 == t1
        np.testing.assert_allclose(predict_onset(name, alpha=0.5, B=2, lr=6e-3),
                                   predict_onset(name, alpha=0.5, B=2, lr=3e-3) / 2, rtol=1e-12)
    # M5: skew (P2) speeds ICL up; M0 slows it down exponentially
    assert np.all(np.diff(predict_onset("M5", alpha=np.linspace(0.5, 2, 7), B=2)) < 0)
    np.testing.assert_allclose(np.diff(np.log(predict_onset("M0", alpha=np.linspace(0, 2, 5), B=2))), 0.5 * 1.1)


def test_defaults_reproduce_the_prototype_picture():
    """Hand-set defaults (not fits) of M4, M6 and M7 against the prototype (K=2048, N=8, L=32, p_bursty=0.9, B=2,
    budget 3000): onset ~500-900 for alpha <= 0.5, ~1100-2800 at alpha = 1, none by 3000 for alpha >= 1.5."""
    for name in ("M4", "M6", "M7"):
        t = predict_onset(name, alpha=np.array([0.0, 0.5, 1.0, 1.5, 2.0]), B=2)
        assert np.all((t[:2] > 500) & (t[:2] < 900)) and 1100 < t[2] < 2800 and np.all(t[3:] > 3000), (name, t)
    # only M6 has a budget-independent boundary
    assert np.isinf(predict_onset("M6", alpha=1.5, B=2)) and np.isfinite(predict_onset("M4", alpha=1.5, B=2))


def test_registry_docs_notes_and_latex():
    assert {"M0", "M1", "M2", "M3", "M4", "M5"} <= set(MODELS)
    for m in MODELS.values():
        assert (REPO / m.note).is_file(), m.note
        assert m.doc and m.source and m.alpha_boundary
        assert "=" in m.latex and "t" in m.latex
        assert all(p.default > 0 for p in m.params if p.positive)
    with pytest.raises(KeyError, match="registered"):
        mm.get_model("M99")
    with pytest.raises(ValueError, match="unknown inputs"):
        predict_onset("M4", alpha=0.5, B=2, beta=1)
    fitted = [{"model": "M4", "params": {"A": {"value": 50.0}, "r": {"value": 2.0}, "sigma": {"value": 0.2}}}]
    np.testing.assert_allclose(predict_onset("M4", fitted, alpha=0.3, B=2),
                               predict_onset("M4", {"A": 50.0, "r": 2.0}, alpha=0.3, B=2))
