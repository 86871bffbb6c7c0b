"""zipfind.theory.zipf: sympy and numpy twins agree, match Monte Carlo of the sampler, are exact at alpha = 0,
stay accurate for K up to 1e6, and the large-K asymptotics respect their stated errors."""

import subprocess
import sys

import numpy as np
import pytest
import sympy as sp
from scipy.special import zeta

from zipfind.theory import zipf as z


# -- a small numpy simulation of the task's sampler (independent of zipfind.data) --------------------------------
def sample_stream(rng, alpha, K, N, B, p_bursty, n):
    """Contexts [n, N] and queries [n] of class indices 0..K-1, mixed bursty / i.i.d. as in SCIENCE.md."""
    p = z.zipf_probs(alpha, K)
    ctx = rng.choice(K, size=(n, N), p=p)
    query = rng.choice(K, size=n, p=p)
    if B >= 1:
        bursty = rng.random(n) < p_bursty
        slots = rng.choice(K, size=(n, N // B), p=p)  # N/B classes drawn i.i.d., each repeated B times
        pick = slots[np.arange(n), rng.integers(0, N // B, size=n)]  # query copies a uniformly chosen slot
        ctx = np.where(bursty[:, None], np.repeat(slots, B, axis=1), ctx)
        query = np.where(bursty, pick, query)
    return ctx, query, p


CASES = [  # alpha, K, N, B, p_bursty
    (0.0, 40, 8, 2, 0.9),
    (0.8, 200, 8, 4, 0.5),
    (1.3, 1000, 6, 3, 0.9),
    (2.2, 30, 8, 0, 0.9),
]


def within(est, se, exact, k=3.0):
    return abs(est - exact) <= k * se, f"MC {est:.6g} +- {se:.2g} vs {exact:.6g}"


@pytest.mark.parametrize("alpha,K,N,B,pb", CASES)
def test_statistics_match_monte_carlo(alpha, K, N, B, pb):
    rng = np.random.default_rng(1234)
    n = 40_000
    ctx, query, p = sample_stream(rng, alpha, K, N, B, pb, n)

    # p_k for the two most frequent classes and the rarest
    for kk in (0, 1, K - 1):
        freq = np.mean(query == kk)
        ok, msg = within(freq, np.sqrt(p[kk] * (1 - p[kk]) / n), float(z.zipf_probs(alpha, K)[kk]))
        assert ok, msg
    # collision probability of two independent draws
    a, b = rng.choice(K, size=(2, n), p=p)
    hit = np.mean(a == b)
    ok, msg = within(hit, np.sqrt(hit * (1 - hit) / n), float(z.collision_probability(alpha, K)))
    assert ok, msg
    # query class among N i.i.d. context items
    ictx, iq, _ = sample_stream(rng, alpha, K, N, 0, 0.0, n)
    hit = np.mean(np.any(ictx == iq[:, None], axis=1))
    ok, msg = within(hit, np.sqrt(hit * (1 - hit) / n) + 1e-12, float(z.p_query_in_context(alpha, K, N)))
    assert ok, msg
    # mixed stream: query class in context
    hit = np.mean(np.any(ctx == query[:, None], axis=1))
    ok, msg = within(hit, np.sqrt(hit * (1 - hit) / n) + 1e-12, float(z.p_query_in_context_mixed(alpha, K, N, pb, B)))
    assert ok, msg
    # expected copies of the query class in context
    copies = np.sum(ctx == query[:, None], axis=1)
    ok, msg = within(copies.mean(), copies.std() / np.sqrt(n), float(z.expected_query_copies(alpha, K, N, pb, B)))
    assert ok, msg
    # expected distinct classes per context
    srt = np.sort(ctx, axis=1)
    distinct = 1 + np.sum(srt[:, 1:] != srt[:, :-1], axis=1)
    ok, msg = within(distinct.mean(), distinct.std() / np.sqrt(n), float(z.expected_distinct_classes(alpha, K, N, pb, B)))
    assert ok, msg
    # residual mass at a threshold between p_2 and p_3: queries whose class has p <= f
    f = 0.5 * (p[1] + p[2]) if alpha > 0 else 2.0 / K
    hit = np.mean(p[query] <= f)
    ok, msg = within(hit, np.sqrt(hit * (1 - hit) / n) + 1e-12, float(z.residual_mass(alpha, K, f)))
    assert ok, msg
    # unmemorised mass: class k memorised once a Poisson(m p_k) count of events is >= 1
    m = 3.0 * K
    unmem = rng.poisson(m * p[query]) == 0
    hit = np.mean(unmem)
    ok, msg = within(hit, np.sqrt(hit * (1 - hit) / n) + 1e-12, float(z.unmemorised_mass(alpha, K, m)))
    assert ok, msg


def test_sympy_expressions_exact_at_alpha_zero():
    K, N, B, pb, f, m = z.K, z.N, z.B, z.p_bursty, z.f, z.m
    on = sp.Piecewise((pb, B >= 1), (0, True))
    Be = sp.Max(B, 1)
    uniform = {
        "H_K": K,
        "p_k": 1 / K,
        "P2": 1 / K,
        "P_in": 1 - (1 - 1 / K) ** N,
        "P_in_mixed": on + (1 - on) * (1 - (1 - 1 / K) ** N),
        "query_copies": on * Be * (1 + (N / Be - 1) / K) + (1 - on) * N / K,
        "distinct_classes": on * K * (1 - (1 - 1 / K) ** (N / Be)) + (1 - on) * K * (1 - (1 - 1 / K) ** N),
        "residual": sp.Piecewise((0, f < 1 / K), (1, True)),
        "unmemorised": sp.exp(-m / K),
    }
    for name, closed in uniform.items():
        expr = z.EXPRESSIONS[name].subs(z.alpha, 0).doit()
        diff = sp.simplify(expr - closed)
        if name == "residual":  # compare branch by branch
            diff = sp.simplify(diff.subs(f, 1 / (2 * K))) + sp.simplify(diff.subs(f, 2 / K))
        assert diff == 0, (name, expr)


@pytest.mark.parametrize("K", [7, 2048, 10**6])
def test_numeric_exact_at_alpha_zero(K):
    N, B, pb = 8, 2, 0.9
    q = -np.expm1(N * np.log1p(-1 / K))  # 1 - (1 - 1/K)^N without cancellation
    assert z.harmonic_number(K, 0.0) == K
    np.testing.assert_allclose(z.collision_probability(0.0, K), 1 / K, rtol=1e-14)
    np.testing.assert_allclose(z.p_query_in_context(0.0, K, N), q, rtol=1e-11)
    np.testing.assert_allclose(z.p_query_in_context_mixed(0.0, K, N, pb, B), pb + (1 - pb) * q, rtol=1e-11)
    np.testing.assert_allclose(z.expected_query_copies(0.0, K, N, pb, B),
                               pb * B * (1 + (N / B - 1) / K) + (1 - pb) * N / K, rtol=1e-13)
    np.testing.assert_allclose(z.expected_distinct_classes(0.0, K, N, pb, B),
                               pb * K * -np.expm1(N / B * np.log1p(-1 / K)) + (1 - pb) * K * q, rtol=1e-11)
    assert z.residual_mass(0.0, K, 0.5 / K) == 0.0 and z.residual_mass(0.0, K, 2.0 / K) == 1.0
    np.testing.assert_allclose(z.unmemorised_mass(0.0, K, 3.0 * K), np.exp(-3.0), rtol=1e-11)


def test_sympy_equals_numeric_at_random_points():
    rng = np.random.default_rng(7)
    for _ in range(6):
        a = float(rng.uniform(0, 3))
        Kv = int(rng.integers(2, 25))
        Nv = int(rng.integers(2, 12))
        Bv = int(rng.choice([0, 1, 2, 3]))
        pbv = float(rng.uniform(0, 1))
        fv = float(rng.uniform(0.01, 0.3))
        mv = float(rng.uniform(1, 100))
        subs = {z.alpha: a, z.K: Kv, z.N: Nv, z.B: Bv, z.p_bursty: pbv, z.f: fv, z.m: mv}
        num = {
            "H_K": z.harmonic_number(Kv, a),
            "P2": z.collision_probability(a, Kv),
            "P_in": z.p_query_in_context(a, Kv, Nv),
            "P_in_mixed": z.p_query_in_context_mixed(a, Kv, Nv, pbv, Bv),
            "query_copies": z.expected_query_copies(a, Kv, Nv, pbv, Bv),
            "distinct_classes": z.expected_distinct_classes(a, Kv, Nv, pbv, Bv),
            "residual": z.residual_mass(a, Kv, fv),
            "unmemorised": z.unmemorised_mass(a, Kv, mv),
        }
        for name, value in num.items():
            exact = float(z.EXPRESSIONS[name].subs(subs).doit().evalf(30))
            np.testing.assert_allclose(value, exact, rtol=1e-11, atol=1e-14, err_msg=name)


def _brute(alpha, K, g):
    H = 0.0
    for s in range(0, K, 250_000):
        H += np.sum(np.arange(s + 1, min(K, s + 250_000) + 1, dtype=float) ** -alpha)
    tot = 0.0
    for s in range(0, K, 250_000):
        ks = np.arange(s + 1, min(K, s + 250_000) + 1, dtype=float)
        tot += np.sum(g(ks**-alpha / H))
    return tot, H


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
def test_large_K_accuracy(alpha):
    K, N, m = 10**6, 8, 5e4
    for fn, g in [
        (lambda: z.p_query_in_context(alpha, K, N), lambda p: p * -np.expm1(N * np.log1p(-p))),
        (lambda: z.expected_distinct_classes(alpha, K, N), lambda p: -np.expm1(N * np.log1p(-p))),
        (lambda: z.unmemorised_mass(alpha, K, m), lambda p: p * np.exp(-m * p)),
    ]:
        exact, H = _brute(alpha, K, g)
        np.testing.assert_allclose(fn(), exact, rtol=1e-9)
    np.testing.assert_allclose(z.harmonic_number(K, alpha), H, rtol=1e-13)


def test_harmonic_asymptotic_within_stated_error():
    for K in (100, 10**4, 10**6):
        for s in (0.0, 0.3, 0.5, 0.999, 1.0, 1.5, 2.0, 4.0, 6.0):
            H = z.harmonic_number(K, s)
            for order in (2, 3, 4):
                err = abs(H - z.harmonic_asymptotic(K, s, order))
                assert err <= z.harmonic_asymptotic_error(K, s, order) + 1e-14 * H, (K, s, order, err)
    # the sympy form is the same expansion
    e = z.harmonic_asymptotic_expr(4).subs({z.K: 1000, z.s: sp.Rational(3, 2)})
    np.testing.assert_allclose(float(e.evalf(30)), z.harmonic_asymptotic(1000, 1.5, 4), rtol=1e-13)


def test_collision_and_residual_limits():
    for alpha in (1.5, 2.0, 3.0):
        for K in (10**4, 10**6):
            rel = z.collision_probability(alpha, K) / z.collision_probability_limit(alpha) - 1
            lead = 2 * K ** (1 - alpha) / ((alpha - 1) * zeta(alpha))  # stated leading relative error
            assert 0.9 * lead <= rel <= 1.1 * lead, (alpha, K, rel, lead)
        for f in (1e-3, 1e-5, 1e-7):
            k_star = (f * zeta(alpha)) ** (-1 / alpha)
            rel = abs(z.residual_mass(alpha, 10**6, f) / z.residual_mass_asymptotic(alpha, f) - 1)
            assert rel <= alpha / k_star + (k_star / 1e6) ** (alpha - 1), (alpha, f, rel)
    assert np.isnan(z.collision_probability_limit(0.8))


def test_residual_mass_is_a_step_function_of_memorised_classes():
    # classes with p_k > f are memorised: residual = 1 - H_{k*}/H_K with k* counted exactly, ties included
    alpha, K = 1.0, 10
    p = z.zipf_probs(alpha, K)
    for j in range(K):
        assert z.residual_mass(alpha, K, p[j]) == pytest.approx(p[j:].sum(), rel=1e-12)  # p_j itself counts as <= f


def test_theory_imports_without_torch():
    code = "import zipfind.theory, sys; assert 'torch' not in sys.modules, 'torch imported'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
