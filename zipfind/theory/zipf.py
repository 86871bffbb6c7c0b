"""Zipf statistics of the in-context classification task, exact (sympy) and numeric (numpy).

Classes k = 1..K have probability p_k = k^-alpha / H_K(alpha). Each statistic exists twice, side by side: an exact
sympy expression in the module-level symbols (``EXPRESSIONS``) and a vectorised numpy function that broadcasts its
arguments and stays accurate (relative error < 1e-9) for K up to 1e6 and alpha in [0, 3]. Statistics of a context
take the engine's context law (``context``: "iid", the anchors' law, or "distinct", see zipfind.tasks.classification.sample);
the "distinct" law's query-class law comes from successive-sampling inclusion probabilities, computed exactly
(`successive_inclusion`) for K <= 65536. Derivations and the error of each large-K asymptotic: theory/zipf.md.
Longer than most modules (~560 lines) because every statistic is written twice, exactly and numerically.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import zeta as _zeta_numeric
from sympy import (
    Eq,
    Float,
    Function,
    Max,
    Min,
    Piecewise,
    Sum,
    Symbol,
    ceiling,
    exp,
    harmonic,
    zeta,
)

__all__ = [
    "alpha", "K", "k", "N", "B", "p_bursty", "f", "m", "s",
    "H_K", "p_k", "P2", "P_in", "P_in_mixed", "query_copies", "distinct_classes", "residual", "unmemorised",
    "harmonic_asymptotic_expr", "EXPRESSIONS",
    "harmonic_number", "zipf_probs", "collision_probability", "p_query_in_context", "p_query_in_context_mixed",
    "expected_query_copies", "expected_distinct_classes", "residual_mass", "unmemorised_mass",
    "harmonic_asymptotic", "harmonic_asymptotic_error", "collision_probability_limit",
    "residual_mass_asymptotic", "ClassNodes", "class_nodes", "bursty_fraction",
    "context", "CONTEXT_LAWS", "context_flag", "bursty_law", "n_slots", "query_law", "distinct_bursty",
    "successive_inclusion", "bursty_query_law", "query_class_law", "query_collision_probability",
    "with_bursty_law",
]

CONTEXT_LAWS = ("iid", "distinct")  # how a bursty context's N/B slots are drawn (zipfind.tasks.classification.sample)
MAX_K_DISTINCT = 65536  # the "distinct" law's inclusion probabilities are computed exactly up to this K

# ---------------------------------------------------------------------------------------------------------------
# Symbols (declared with their assumptions)
# ---------------------------------------------------------------------------------------------------------------
alpha = Symbol("alpha", nonnegative=True)  # Zipf exponent
K = Symbol("K", integer=True, positive=True)  # number of classes
k = Symbol("k", integer=True, positive=True)  # class rank
N = Symbol("N", positive=True)  # context items per sequence
B = Symbol("B", nonnegative=True)  # burst length (0 = no bursty sequences)
p_bursty = Symbol("p_bursty", nonnegative=True)  # fraction of bursty sequences
f = Symbol("f", nonnegative=True)  # frequency threshold of memorisation
m = Symbol("m", nonnegative=True)  # memorisation exposure r * t (events per unit frequency)
s = Symbol("s", nonnegative=True)  # generic exponent of H_K(s)
context = Symbol("context", nonnegative=True)  # context law as a number: 0 = "iid", 1 = "distinct"

# ---------------------------------------------------------------------------------------------------------------
# Exact sympy expressions
# ---------------------------------------------------------------------------------------------------------------
H_K = harmonic(K, alpha)  # normaliser H_K(alpha) = sum_k k^-alpha
p_k = k**-alpha / H_K
P2 = harmonic(K, 2 * alpha) / H_K**2  # two i.i.d. draws share a class
P_in = Sum(p_k * (1 - (1 - p_k) ** N), (k, 1, K))  # query class among N i.i.d. context items
B_eff = Max(B, 1)  # repetition count; B = 0 counts as 1
bursty_on = Piecewise((p_bursty, B >= 1), (0, True))  # B = 0 means no bursty sequences at all
P_in_mixed = bursty_on + (1 - bursty_on) * P_in  # bursty queries are always in context (either law)


n_slots = N / B_eff  # slots of a bursty context


class bursty_law(Function):
    """b_k: probability that a bursty context's query is of class k. "iid" law: p_k. "distinct" law: pi_k / n, with
    pi_k the probability that k is among n = N/B successive draws without replacement from p (no closed form;
    evaluated numerically by `successive_inclusion`, derivation in theory/zipf.md). Arguments
    (k, context, alpha, K, N, B)."""

    nargs = 6

    @classmethod
    def eval(cls, kk, ctx, a, K_, N_, B_):
        if ctx.is_zero:
            return kk**-a / harmonic(K_, a)
        return None

    def _eval_evalf(self, prec):
        kk, ctx, a, K_, N_, B_ = self.args
        if not all(v.is_number for v in self.args):
            return None
        law = bursty_query_law(float(a), int(K_), int(N_), int(B_), float(ctx))
        return Float(law[int(kk) - 1], prec)


def _distinct(n_draws):
    return Sum(1 - (1 - p_k) ** n_draws, (k, 1, K))


is_distinct = Eq(context, 1)
query_law = bursty_on * bursty_law(k, context, alpha, K, N, B) + (1 - bursty_on) * p_k  # w_k: P(query class = k)
P2_query = Sum(query_law**2, (k, 1, K))  # two queries (of two sequences) share a class
distinct_bursty = Piecewise((n_slots, is_distinct), (_distinct(n_slots), True))  # distinct classes, bursty context
distinct_classes = bursty_on * distinct_bursty + (1 - bursty_on) * _distinct(N)
query_copies = bursty_on * B_eff * Piecewise((1, is_distinct), (1 + (n_slots - 1) * P2, True)) + (
    1 - bursty_on
) * N * P2
# number of classes with p_k > f; k < (f H)^(-1/alpha) for alpha > 0, all-or-none at alpha = 0
k_star = Piecewise(
    (Piecewise((K, f < 1 / K), (0, True)), Eq(alpha, 0)),
    (Min(K, Max(0, ceiling((f * H_K) ** (-1 / alpha)) - 1)), True),
)
residual = 1 - harmonic(k_star, alpha) / H_K  # mass of classes with p_k <= f (not yet memorised)
unmemorised = Sum(p_k * exp(-m * p_k), (k, 1, K))  # mass unmemorised after exposure m, Poisson memorisation


def harmonic_asymptotic_expr(order: int = 3):
    """Large-K Euler-Maclaurin expansion of H_K(s) (s != 1): zeta(s) + K^(1-s)/(1-s) + K^-s/2 - s K^(-s-1)/12."""
    terms = [zeta(s), K ** (1 - s) / (1 - s), K**-s / 2, -s * K ** (-s - 1) / 12]
    if not 2 <= order <= 4:
        raise ValueError(f"order must be 2, 3 or 4, got {order}")
    return sum(terms[:order])


EXPRESSIONS = {
    "H_K": H_K,
    "p_k": p_k,
    "P2": P2,
    "P_in": P_in,
    "P_in_mixed": P_in_mixed,
    "query_copies": query_copies,
    "distinct_classes": distinct_classes,
    "query_law": query_law,
    "P2_query": P2_query,
    "residual": residual,
    "unmemorised": unmemorised,
}

# ---------------------------------------------------------------------------------------------------------------
# Numerics
# ---------------------------------------------------------------------------------------------------------------
_EM_HEAD = 16  # terms summed directly before the Euler-Maclaurin tail of H_K(s)
# Bernoulli numbers B_2, B_4, B_6, B_8 divided by (2j)!
_EM_COEF = (1 / 12, -1 / 720, 1 / 30240, -1 / 1209600)


def _pochhammer(x: np.ndarray, n: int) -> np.ndarray:
    out = np.ones_like(x)
    for i in range(n):
        out = out * (x + i)
    return out


def harmonic_number(K_: np.ndarray | float, s_: np.ndarray | float) -> np.ndarray:
    """H_K(s) = sum_{k<=K} k^-s, broadcast over K and s; Euler-Maclaurin tail, relative error < 1e-14."""
    K_ = np.asarray(K_, dtype=float)
    s_ = np.asarray(s_, dtype=float)
    K_, s_ = np.broadcast_arrays(K_, s_)
    ks = np.arange(1, _EM_HEAD, dtype=float)  # [h]
    head = np.sum(np.where(ks <= K_[..., None], ks ** -s_[..., None], 0.0), axis=-1)
    a = float(_EM_HEAD)
    Kc = np.maximum(K_, a)
    # integral_a^K x^-s dx = a^(1-s) * expm1(u)/u * ln(K/a), u = (1-s) ln(K/a): stable through s = 1
    lr = np.log(Kc / a)
    u = (1 - s_) * lr
    small = np.abs(u) < 1e-8
    ratio = np.where(small, 1 + u / 2, np.expm1(u) / np.where(small, 1.0, u))
    integral = a ** (1 - s_) * lr * ratio
    tail = integral + (a**-s_ + Kc**-s_) / 2
    for j, c in enumerate(_EM_COEF):
        n = 2 * j + 1  # derivative order: f^(n)(x) = (-1)^n (s)_n x^(-s-n)
        deriv = lambda x: (-1) ** n * _pochhammer(s_, n) * x ** (-s_ - n)  # noqa: E731
        tail = tail + c * (deriv(Kc) - deriv(a))
    out = np.where(K_ >= a, head + tail, head)
    return np.where(s_ == 0, np.floor(np.maximum(K_, 0.0)), out)  # exact count at s = 0


def zipf_probs(alpha_: float, K_: int) -> np.ndarray:
    """p_k for k = 1..K as a [K] array."""
    ks = np.arange(1, int(K_) + 1, dtype=float)
    w = ks**-float(alpha_)
    return w / w.sum()


@lru_cache(maxsize=8)
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


@dataclass(frozen=True)
class ClassNodes:
    """Quadrature nodes over the classes of many (alpha, K) cells: sum_k g(p_k) ~= sum_j w_j g(p_j).

    Exact summation for k <= head; beyond it, Gauss-Legendre in ln k of the midpoint integral from head + 1/2 to
    K + 1/2 plus the first Euler-Maclaurin (midpoint) correction, so a sum over 1e6 classes costs ~400 terms.
    """

    k: np.ndarray  # [n, J] class rank of each node (real beyond head)
    w: np.ndarray  # [n, J] weights (0 on padding)
    p: np.ndarray  # [n, J] p_k at each node
    shape: tuple[int, ...]  # broadcast shape of the cells
    b: np.ndarray | None = None  # [n, J] bursty query law b_k at each node (see with_bursty_law)

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Weighted sum over nodes of values [n, J] -> [*shape]."""
        return np.sum(self.w * values, axis=-1).reshape(self.shape)


def class_nodes(alpha_, K_, head: int = 256, per_efold: int = 16) -> ClassNodes:
    """Build ClassNodes for broadcast arrays alpha_, K_ (see ClassNodes)."""
    a_arr, K_arr = np.broadcast_arrays(np.asarray(alpha_, dtype=float), np.asarray(K_, dtype=float))
    shape = a_arr.shape
    a_flat = a_arr.reshape(-1)
    K_flat = np.rint(K_arr.reshape(-1))
    if np.any(K_flat < 1):
        raise ValueError("K must be >= 1")
    n = a_flat.size
    gx, gw = _gauss_legendre(per_efold)
    n_head = int(min(head, K_flat.max()))
    widths = np.where(K_flat > head, np.log((K_flat + 0.5) / (head + 0.5)), 0.0)
    panels = np.ceil(widths).astype(int)
    J = n_head + int(panels.max()) * per_efold + (4 if np.any(K_flat > head) else 0)
    ks = np.ones((n, J))
    ws = np.zeros((n, J))
    hk = np.arange(1, n_head + 1, dtype=float)
    ks[:, :n_head] = hk
    ws[:, :n_head] = (hk[None, :] <= K_flat[:, None]).astype(float)
    for i in np.flatnonzero(K_flat > head):
        lo, width, npan = np.log(head + 0.5), widths[i], panels[i]
        h = width / npan
        centers = lo + h * (np.arange(npan)[:, None] + 0.5)  # [npan, 1]
        u = (centers + 0.5 * h * gx[None, :]).reshape(-1)  # ln x at nodes
        x = np.exp(u)
        wq = (0.5 * h * gw[None, :] * np.ones((npan, 1))).reshape(-1) * x  # dx = x du
        j0 = n_head
        ks[i, j0 : j0 + x.size] = x
        ws[i, j0 : j0 + x.size] = wq
        # midpoint-rule correction -(1/24)[g'(K+1/2) - g'(head+1/2)], g' by first differences
        jc = n_head + int(panels.max()) * per_efold
        ks[i, jc : jc + 4] = [head, head + 1, K_flat[i], K_flat[i] + 1]
        ws[i, jc : jc + 4] = [-1 / 24, 1 / 24, 1 / 24, -1 / 24]
    Hn = harmonic_number(K_flat, a_flat)  # [n]
    p = ks ** -a_flat[:, None] / Hn[:, None]
    return ClassNodes(k=ks, w=ws, p=p, shape=shape)


def context_flag(context_) -> np.ndarray:
    """The context law as a number, broadcast: "iid" -> 0.0, "distinct" -> 1.0 (0/1 pass through)."""
    arr = np.asarray(context_, dtype=object)
    out = np.empty(arr.shape, dtype=float)
    for idx, v in np.ndenumerate(arr):
        if isinstance(v, str):
            if v not in CONTEXT_LAWS:
                raise ValueError(f"context: {v!r} is not allowed; one of {', '.join(CONTEXT_LAWS)}")
            out[idx] = float(CONTEXT_LAWS.index(v))
        elif float(v) in (0.0, 1.0):
            out[idx] = float(v)
        else:
            raise ValueError(f"context: {v!r} is not allowed; 'iid' (0) or 'distinct' (1)")
    return out


def _poly_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Product of polynomials in z truncated to their common degree: a, b [..., n] coefficients -> [..., n]."""
    n = a.shape[-1]
    out = np.zeros(np.broadcast_shapes(a.shape, b.shape))
    for i in range(n):
        out[..., i:] += a[..., i : i + 1] * b[..., : n - i]
    return out


def _leave_one_out(leaves: np.ndarray) -> np.ndarray:
    """prod_{j != k} leaves_j for every k, as truncated polynomials: [..., K, n] -> [..., K, n] (product tree)."""
    *lead, K_, n = leaves.shape
    size = 1 << max(K_ - 1, 0).bit_length()
    one = np.zeros((*lead, 1, n))
    one[..., 0, 0] = 1.0
    levels = [np.concatenate([leaves, np.broadcast_to(one, (*lead, size - K_, n))], axis=-2)]
    while levels[-1].shape[-2] > 1:
        x = levels[-1]
        levels.append(_poly_mul(x[..., 0::2, :], x[..., 1::2, :]))  # [..., size / 2^l, n]
    excl = np.broadcast_to(one, levels[-1].shape)  # the root's complement is empty
    for x in reversed(levels[:-1]):
        sib = np.stack([x[..., 1::2, :], x[..., 0::2, :]], axis=-2)  # each node's sibling, [..., m, 2, n]
        excl = _poly_mul(np.repeat(excl, 2, axis=-2), sib.reshape(x.shape))
    return excl[..., :K_, :]


def successive_inclusion(p, n: int, per_efold: int = 8) -> np.ndarray:
    """pi_k: probability that class k is among n successive draws without replacement from p ([K] -> [K]).

    Exponential race: successive sampling picks the n classes whose clocks T_j ~ Exp(p_j) ring first, so
    pi_k = int_0^inf p_k e^(-p_k t) P(#{j != k: T_j < t} < n) dt. The count is Poisson-binomial; its leave-one-out
    generating polynomials (degree < n) come from a product tree (non-negative terms: no cancellation), and the
    integral is Gauss-Legendre in ln t, per_efold nodes an e-fold, up to where fewer than n rings is < 1e-16.
    sum_k pi_k = n exactly. Cost O(nodes K n^2).
    """
    p = np.asarray(p, dtype=float)
    K_, n = p.size, int(n)
    if n >= K_:
        return np.ones(K_)
    if n <= 1:
        return p.copy() if n == 1 else np.zeros(K_)
    if K_ > MAX_K_DISTINCT:
        raise ValueError(f"K: {K_} is not allowed for the 'distinct' context law; at most {MAX_K_DISTINCT}")
    t_lo = 1e-6  # P(n rings by t_lo) <= t_lo^n / n!: below it every clock other than k's is silent

    def fewer_than_n(t: np.ndarray) -> np.ndarray:  # P(#rings by t < n), all classes, [len(t)]
        e = np.exp(-np.outer(t, p))  # [nt, K]
        leaves = np.zeros((t.size, K_, n))
        leaves[..., 0], leaves[..., 1] = e, -np.expm1(-np.outer(t, p))
        prod = leaves[:, 0]
        for j in range(1, K_):  # only a coarse grid: a plain running product is fine here
            prod = _poly_mul(prod, leaves[:, j])
        return prod.sum(-1)

    coarse = np.logspace(0, 16, 33) / p.max() * 1e-2
    tail = fewer_than_n(coarse) if K_ <= 4096 else None
    t_hi = coarse[np.argmax(tail < 1e-16)] if tail is not None and (tail < 1e-16).any() else coarse[-1]
    gx, gw = _gauss_legendre(per_efold)
    width = np.log(t_hi / t_lo)
    panels = int(np.ceil(width))
    h = width / panels
    u = (np.log(t_lo) + h * (np.arange(panels)[:, None] + 0.5 + 0.5 * gx[None, :])).reshape(-1)  # ln t nodes
    wt = (0.5 * h * np.broadcast_to(gw, (panels, per_efold))).reshape(-1) * np.exp(u)  # dt = t du
    t = np.exp(u)
    pi = -np.expm1(-p * t_lo)  # [K] the interval [0, t_lo], where the count is 0
    step = max(1, int(2**22 // (K_ * n)))  # nodes per block, bounding memory
    for a in range(0, t.size, step):
        tb = t[a : a + step]  # [nt]
        leaves = np.zeros((tb.size, K_, n))
        leaves[..., 0] = np.exp(-np.outer(tb, p))
        leaves[..., 1] = -np.expm1(-np.outer(tb, p))
        survive = _leave_one_out(leaves).sum(-1)  # [nt, K] P(fewer than n other rings by t)
        pi = pi + np.sum(wt[a : a + step, None] * p[None, :] * leaves[..., 0] * survive, axis=0)
    return pi


@lru_cache(maxsize=128)
def _inclusion(alpha_: float, K_: int, n: int) -> np.ndarray:
    return successive_inclusion(zipf_probs(alpha_, K_), n)


def bursty_query_law(alpha_: float, K_: int, N_: int, B_: int, context_="iid") -> np.ndarray:
    """b_k ([K]): the law of a bursty context's query class; p under "iid", pi_k / (N/B) under "distinct"."""
    n = int(N_ // max(int(B_), 1))
    if context_flag(context_) == 0 or n <= 1:
        return zipf_probs(alpha_, K_)
    return _inclusion(float(alpha_), int(K_), n) / n


def query_class_law(alpha_: float, K_: int, N_: int, p_bursty_: float, B_: int, context_="iid") -> np.ndarray:
    """w_k ([K]): the query class's law in the training stream (known classes): p_b b_k + (1 - p_b) p_k."""
    pb = float(bursty_fraction(p_bursty_, B_))
    return pb * bursty_query_law(alpha_, K_, N_, B_, context_) + (1 - pb) * zipf_probs(alpha_, K_)


def with_bursty_law(nodes: ClassNodes, alpha_, K_, N_, B_, context_) -> ClassNodes:
    """nodes with b (the bursty query law) at every node, per cell; all args broadcast to nodes.shape.

    "iid" cells: b = p. "distinct" cells: b = p rho(k) with rho_k = pi_k / (n p_k) computed exactly at the integer
    ranks and interpolated in ln k between them (clamped at the ends, for the quadrature's correction nodes)."""
    cols = np.broadcast_arrays(*(np.asarray(v, dtype=float).reshape(-1) for v in (alpha_, K_, N_, B_)),
                               context_flag(context_).reshape(-1))
    b = nodes.p.copy()
    for i, (a, Kv, Nv, Bv, flag) in enumerate(zip(*cols)):
        n = int(Nv // max(Bv, 1.0))
        if flag == 0 or n <= 1 or Bv < 1:
            continue
        rho = _inclusion(float(a), int(Kv), n) / (n * zipf_probs(a, Kv))  # [K]
        b[i] = nodes.p[i] * np.interp(np.log(nodes.k[i]), np.log(np.arange(1, int(Kv) + 1)), rho)
    return ClassNodes(k=nodes.k, w=nodes.w, p=nodes.p, shape=nodes.shape, b=b)


def query_collision_probability(alpha_, K_, N_, p_bursty_, B_, context_="iid") -> np.ndarray:
    """sum_k w_k^2: two queries (of two training sequences) share a class; P2 itself under "iid"."""
    a, Kb, Nb, pb, Bb, fl = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in
                                                  (alpha_, K_, N_, p_bursty_, B_, context_flag(context_))))
    out = np.array(collision_probability(a, Kb), dtype=float, ndmin=1).reshape(a.shape or (1,))
    for idx in np.argwhere(np.atleast_1d(fl == 1)):
        i = tuple(idx) if a.shape else ()
        w = query_class_law(a[i], Kb[i], Nb[i], pb[i], Bb[i], "distinct")
        out[tuple(idx)] = np.sum(w**2)
    return out.reshape(a.shape)


def _one_minus_pow(p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """1 - (1 - p)^n, accurate for tiny p."""
    with np.errstate(divide="ignore"):
        return -np.expm1(n * np.log1p(-np.minimum(p, 1.0)))


def bursty_fraction(p_bursty_, B_) -> np.ndarray:
    """Effective fraction of bursty sequences: p_bursty, or 0 when B = 0."""
    return np.where(np.asarray(B_, dtype=float) >= 1, np.asarray(p_bursty_, dtype=float), 0.0)


def collision_probability(alpha_, K_) -> np.ndarray:
    """P2 = H_K(2 alpha) / H_K(alpha)^2: probability that two i.i.d. draws share a class."""
    a = np.asarray(alpha_, dtype=float)
    return harmonic_number(K_, 2 * a) / harmonic_number(K_, a) ** 2


def p_query_in_context(alpha_, K_, N_) -> np.ndarray:
    """P_in = sum_k p_k (1 - (1 - p_k)^N): the query's class occurs among N i.i.d. context items."""
    a, Kb, Nb = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (alpha_, K_, N_)))
    nodes = class_nodes(a, Kb)
    n = Nb.reshape(-1, 1)
    return nodes.sum(nodes.p * _one_minus_pow(nodes.p, n))


def p_query_in_context_mixed(alpha_, K_, N_, p_bursty_, B_) -> np.ndarray:
    """Probability that the query's class is in context for a mixed stream: pb + (1 - pb) P_in (pb = 0 if B = 0)."""
    pb = bursty_fraction(p_bursty_, B_)
    return pb + (1 - pb) * p_query_in_context(alpha_, K_, N_)


def expected_query_copies(alpha_, K_, N_, p_bursty_, B_, context_="iid") -> np.ndarray:
    """Expected number of context items sharing the query's class, mixed stream.

    Bursty, "iid": N/B slots drawn i.i.d., each repeated B times, the query copies a uniformly chosen slot, so
    B (1 + (N/B - 1) P2). Bursty, "distinct": exactly B. Non-bursty: N P2.
    """
    pb = bursty_fraction(p_bursty_, B_)
    Be = np.maximum(np.asarray(B_, dtype=float), 1.0)
    Nf = np.asarray(N_, dtype=float)
    P2_ = collision_probability(alpha_, K_)
    bursty = np.where(context_flag(context_) == 1, Be, Be * (1 + (Nf / Be - 1) * P2_))
    return pb * bursty + (1 - pb) * Nf * P2_


def expected_distinct_classes(alpha_, K_, N_, p_bursty_=0.0, B_=0, context_="iid") -> np.ndarray:
    """Expected number of distinct classes in one context (bursty: N/B slots, "iid" or "distinct"; non-bursty:
    N i.i.d. draws)."""
    pb = bursty_fraction(p_bursty_, B_)
    Be = np.maximum(np.asarray(B_, dtype=float), 1.0)
    a, Kb, Nb, Bb, fl = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in
                                              (alpha_, K_, N_, Be, context_flag(context_))))
    nodes = class_nodes(a, Kb)
    d_iid = nodes.sum(_one_minus_pow(nodes.p, Nb.reshape(-1, 1)))
    d_burst = np.where(fl == 1, Nb / Bb, nodes.sum(_one_minus_pow(nodes.p, (Nb / Bb).reshape(-1, 1))))
    return pb * d_burst + (1 - pb) * d_iid


def _k_star(alpha_: np.ndarray, K_: np.ndarray, f_: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Number of classes with p_k > f (integer valued float array)."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        y = (f_ * H) ** (-1.0 / np.where(alpha_ > 0, alpha_, 1.0))
        kc = np.clip(np.ceil(np.where(np.isfinite(y), y, K_ + 1.0)) - 1, 0, K_)
        # guard against round-off at exact ties: enforce p_kc > f >= p_{kc+1}
        p_at = lambda kk: np.where(kk >= 1, np.maximum(kk, 1.0) ** -alpha_ / H, np.inf)  # noqa: E731
        kc = np.where((kc >= 1) & (p_at(kc) <= f_), kc - 1, kc)
        kc = np.where((kc < K_) & (p_at(kc + 1) > f_), kc + 1, kc)
    uniform = np.where(1.0 / K_ > f_, K_, 0.0)
    return np.where(alpha_ > 0, kc, uniform)


def residual_mass(alpha_, K_, f_) -> np.ndarray:
    """Mass of classes with p_k <= f: what is left once every class more frequent than f is memorised."""
    a, Kb, fb = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (alpha_, K_, f_)))
    H = harmonic_number(Kb, a)
    ks = _k_star(a, Kb, fb, H)
    return 1.0 - harmonic_number(ks, a) / H


def unmemorised_mass(alpha_, K_, m_) -> np.ndarray:
    """sum_k p_k exp(-m p_k): unmemorised mass when class k is memorised at Poisson rate m p_k (m = r t)."""
    a, Kb, mb = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (alpha_, K_, m_)))
    nodes = class_nodes(a, Kb)
    return nodes.sum(nodes.p * np.exp(-mb.reshape(-1, 1) * nodes.p))


# ---------------------------------------------------------------------------------------------------------------
# Large-K asymptotics
# ---------------------------------------------------------------------------------------------------------------
# Stieltjes constants gamma_0..gamma_5: zeta(s) = 1/(s-1) + sum_n (-1)^n gamma_n (s-1)^n / n!
_STIELTJES = (
    0.5772156649015329, -0.0728158454836767, -0.0096903631928723, 0.0020538344203033, 0.0023253700654673,
    0.0007933238173010,
)


def _zeta_minus_pole(s_: np.ndarray) -> np.ndarray:
    """zeta(s) - 1/(s-1), analytic at s = 1 (Stieltjes series within 0.05 of the pole)."""
    d = s_ - 1
    near = np.abs(d) < 0.05
    with np.errstate(divide="ignore", invalid="ignore"):
        far = _zeta_numeric(np.where(near, 2.0, s_)) - 1 / np.where(near, 1.0, d)
    series = np.zeros_like(d)
    fact = 1.0
    for n, g in enumerate(_STIELTJES):
        fact = fact * max(n, 1)
        series = series + (-1) ** n * g * d**n / fact
    return np.where(near, series, far)


def harmonic_asymptotic(K_, s_, order: int = 3) -> np.ndarray:
    """Large-K expansion of H_K(s): zeta(s) + K^(1-s)/(1-s) [+ K^-s/2 [- s K^(-s-1)/12]], finite through s = 1.

    At s = 1 the first two terms combine to ln K + gamma. The error is bounded by harmonic_asymptotic_error.
    """
    if not 2 <= order <= 4:
        raise ValueError(f"order must be 2, 3 or 4, got {order}")
    K_ = np.asarray(K_, dtype=float)
    s_ = np.asarray(s_, dtype=float)
    lk = np.log(K_)
    u = (1 - s_) * lk
    small = np.abs(u) < 1e-8
    # zeta(s) + K^(1-s)/(1-s) = [zeta(s) - 1/(s-1)] + (K^(1-s) - 1)/(1-s)
    out = _zeta_minus_pole(s_) + lk * np.where(small, 1 + u / 2, np.expm1(u) / np.where(small, 1.0, u))
    if order >= 3:
        out = out + K_**-s_ / 2
    if order >= 4:
        out = out - s_ * K_ ** (-s_ - 1) / 12
    return out


def harmonic_asymptotic_error(K_, s_, order: int = 3) -> np.ndarray:
    """Bound on |H_K(s) - harmonic_asymptotic(K, s, order)|: the first omitted Euler-Maclaurin term.

    x^-s is completely monotone for s >= 0, so the remainder is bounded by the first omitted term.
    """
    K_ = np.asarray(K_, dtype=float)
    s_ = np.asarray(s_, dtype=float)
    if order == 2:
        return K_**-s_ / 2
    if order == 3:
        return s_ * K_ ** (-s_ - 1) / 12
    if order == 4:
        return s_ * (s_ + 1) * (s_ + 2) * K_ ** (-s_ - 3) / 720
    raise ValueError(f"order must be 2, 3 or 4, got {order}")


def collision_probability_limit(alpha_) -> np.ndarray:
    """K -> infinity limit of P2 for alpha > 1: zeta(2 alpha) / zeta(alpha)^2 (NaN for alpha <= 1, where P2 -> 0).

    Relative error at finite K is about K^(1-alpha) (2 / ((alpha - 1) zeta(alpha))); see theory/zipf.md.
    """
    a = np.asarray(alpha_, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = _zeta_numeric(2 * np.where(a > 1, a, 2.0)) / _zeta_numeric(np.where(a > 1, a, 2.0)) ** 2
    return np.where(a > 1, out, np.nan)


def residual_mass_asymptotic(alpha_, f_) -> np.ndarray:
    """K -> infinity, small-f power law for alpha > 1: (f zeta)^(1 - 1/alpha) / ((alpha - 1) zeta), zeta = zeta(alpha).

    With f = 1/n this is Hutter's n^-(1 - 1/alpha) memorisation error. Relative error O(1/k*), k* = (f zeta)^(-1/alpha).
    """
    a = np.asarray(alpha_, dtype=float)
    fb = np.asarray(f_, dtype=float)
    safe = np.where(a > 1, a, 2.0)
    z = _zeta_numeric(safe)
    out = (fb * z) ** (1 - 1 / safe) / ((safe - 1) * z)
    return np.where(a > 1, out, np.nan)


