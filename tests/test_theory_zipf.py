"""zipfind.theory.zipf: sympy and numpy twins agree, match Monte Carlo of the sampler, are exact at alpha = 0,
stay accurate for K up to 1e6, and the large-K asymptotics respect their stated errors."""

import subprocess
import sys

import numpy as np
import pytest
import sympy as sp
from scipy.special import zeta

from zipfind.theory import zipf as z


# -- Monte Carlo of the engine's own sampler (zipfind.tasks.classification.sample) ------------------------------------------------
LAW_CELLS = [(a, B, c) for c in ("iid", "distinct") for a in (0.0, 1.0, 2.0) for B in (1, 2, 4)]
MC_K, MC_N, MC_PB, MC_SEQ = 256, 8, 0.7, 8192


@pytest.fixture(scope="module")
def engine_stream():
    """Classes [M, n, N+1] (query last) of training sequences drawn by zipfind.tasks.classification.sample for every LAW_CELLS
    cell stacked in one table, plus one non-bursty cell per alpha (p_bursty = 0)."""
    torch = pytest.importorskip("torch")
    from zipfind.config import TaskConfig
    from zipfind.tasks.classification import draw, make_table, sample

    cells = LAW_CELLS + [(a, 1, "iid") for a in (0.0, 1.0, 2.0)]
    tasks = [TaskConfig(K=MC_K, L=32, N=MC_N, D=1, alpha=a, B=B, context=c,
                        p_bursty=MC_PB if i < len(LAW_CELLS) else 0.0) for i, (a, B, c) in enumerate(cells)]
    table = make_table(tasks, list(range(len(tasks))), "cpu")
    seeds = torch.arange(100, 100 + len(tasks))
    classes = torch.cat([sample(table, draw(seeds, t, table, MC_SEQ)).classes for t in (1, 2)], 1).numpy()
    return cells, classes


def within(est, se, exact, k=4.0):
    return abs(est - exact) <= k * se + 1e-12, f"MC {est:.6g} +- {se:.2g} vs {exact:.6g}"


def _mean_check(x, exact):
    sd = np.sqrt(exact * (1 - exact)) if x.dtype == bool else x.std()  # Bernoulli: the exact law's spread
    ok, msg = within(x.mean(), sd / np.sqrt(x.size), exact)
    assert ok, msg


@pytest.mark.parametrize("i", range(len(LAW_CELLS)), ids=[f"a{a}-B{B}-{c}" for a, B, c in LAW_CELLS])
def test_context_statistics_match_the_engines_sampler(engine_stream, i):
    """Each context statistic a model uses, for both laws: query class in context, copies of the query class,
    distinct classes per context, the query-class law (chi-square) and query-query collisions."""
    from scipy import stats

    cells, classes = engine_stream
    alpha, B, law = cells[i]
    cls = classes[i]  # [n, N+1]
    ctx, q = cls[:, :-1], cls[:, -1]
    args = (alpha, MC_K, MC_N, MC_PB, B)
    _mean_check(np.any(ctx == q[:, None], axis=1), float(z.p_query_in_context_mixed(*args)))
    _mean_check(np.sum(ctx == q[:, None], axis=1), float(z.expected_query_copies(*args, law)))
    srt = np.sort(ctx, axis=1)
    _mean_check(1 + np.sum(srt[:, 1:] != srt[:, :-1], axis=1), float(z.expected_distinct_classes(*args, law)))
    w = z.query_class_law(alpha, MC_K, MC_N, MC_PB, B, law)
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-9)
    counts, exp = np.bincount(q, minlength=MC_K), w * q.size
    keep = exp >= 5
    obs_, exp_ = counts[keep], exp[keep]
    if (~keep).any():  # the sparse tail pooled into one bin
        obs_, exp_ = np.append(obs_, counts[~keep].sum()), np.append(exp_, exp[~keep].sum())
    assert stats.chisquare(obs_, exp_ * obs_.sum() / exp_.sum()).pvalue > 1e-4
    _mean_check(q[0::2] == q[1::2], float(z.query_collision_probability(*args, law)))


def test_laws_differ_where_the_issue_measured_them():
    """The two laws are far apart at alpha = 2 (P(query = top class) 0.61 vs 0.12 at B = 1): the statistics must
    say which law they describe."""
    w_iid = z.bursty_query_law(2.0, 2048, 8, 1, "iid")
    w_dist = z.bursty_query_law(2.0, 2048, 8, 1, "distinct")
    assert w_iid[0] == pytest.approx(0.6079, abs=1e-3) and w_dist[0] == pytest.approx(0.125, abs=1e-3)
    assert z.expected_distinct_classes(2.0, 2048, 8, 1.0, 4, "distinct") == 2.0
    assert z.expected_distinct_classes(2.0, 2048, 8, 1.0, 4, "iid") == pytest.approx(1.60, abs=0.01)


def test_successive_inclusion_is_exact():
    """pi_k against enumeration of every ordered draw (K = 6, n = 3), and sum_k pi_k = n at K = 2048."""
    import itertools

    p = z.zipf_probs(1.3, 6)
    pi = np.zeros(6)
    for seq in itertools.permutations(range(6), 3):
        pr, rem = 1.0, 1.0
        for c in seq:
            pr, rem = pr * p[c] / rem, rem - p[c]
        pi[list(seq)] += pr
    np.testing.assert_allclose(z.successive_inclusion(p, 3), pi, atol=1e-11)
    for alpha in (0.0, 1.0, 2.5):
        np.testing.assert_allclose(z.successive_inclusion(z.zipf_probs(alpha, 2048), 8).sum(), 8, rtol=1e-9)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.0])
def test_iid_statistics_match_the_engines_sampler(engine_stream, alpha):
    """Non-bursty engine sequences: p_k, P2, P_in for N i.i.d. items, residual and unmemorised mass."""
    cells, classes = engine_stream
    cls = classes[len(LAW_CELLS) + (0.0, 1.0, 2.0).index(alpha)]
    ctx, q = cls[:, :-1], cls[:, -1]
    K, N = MC_K, MC_N
    p = z.zipf_probs(alpha, K)
    for kk in (0, 1, K - 1):
        _mean_check(q == kk, float(p[kk]))
    _mean_check(ctx[:, 0] == ctx[:, 1], float(z.collision_probability(alpha, K)))
    _mean_check(np.any(ctx == q[:, None], axis=1), float(z.p_query_in_context(alpha, K, N)))
    f = 0.5 * (p[1] + p[2]) if alpha > 0 else 2.0 / K
    _mean_check(p[q] <= f, float(z.residual_mass(alpha, K, f)))
    m = 3.0 * K  # class k unmemorised while a Poisson(m p_k) count is 0
    _mean_check(np.random.default_rng(0).poisson(m * p[q]) == 0, float(z.unmemorised_mass(alpha, K, m)))


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
        expr = z.EXPRESSIONS[name].subs({z.alpha: 0, z.context: 0}).doit()
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
        law = str(rng.choice(["iid", "distinct"]))
        subs = {z.alpha: a, z.K: Kv, z.N: Nv, z.B: Bv, z.p_bursty: pbv, z.f: fv, z.m: mv,
                z.context: float(z.context_flag(law))}
        num = {
            "H_K": z.harmonic_number(Kv, a),
            "P2": z.collision_probability(a, Kv),
            "P_in": z.p_query_in_context(a, Kv, Nv),
            "P_in_mixed": z.p_query_in_context_mixed(a, Kv, Nv, pbv, Bv),
            "query_copies": z.expected_query_copies(a, Kv, Nv, pbv, Bv, law),
            "distinct_classes": z.expected_distinct_classes(a, Kv, Nv, pbv, Bv, law),
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
