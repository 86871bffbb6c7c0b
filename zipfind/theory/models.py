"""Registry of analytic onset-time models t*(alpha, B, K, N, L, p_bursty, p_novel, lr, context; theta).

Each model keeps its sympy expression (explicit t* = ..., or an implicit equation lhs(t) = rhs) and a numeric
version lambdified once with numpy (theory/compile.py), side by side. Every Zipf statistic a model uses is the
one of the engine's context law (the `context` input: "iid" or "distinct"). Implicit models are solved for all
cells at once by a bracketed Newton iteration in log time whose derivatives come from sympy. Derivations,
assumptions and expected failures: theory/M*.md. (~550 lines: the eight models' declarations are most of it.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import sympy as sp
from sympy import Eq, Max, Piecewise, Rational, S, Sum, Symbol, exp, log, oo

from ..config import NOT_MODELLED, THEORY_INPUTS, TaskConfig, TrainConfig
from . import zipf
from .compile import Compiled, compile_expr, expgap
from .zipf import B, K, N, alpha, context, k, p_bursty

__all__ = [
    "L", "p_novel", "lr", "t", "LR_REF", "x_items", "INPUT_NAMES", "DEFAULT_INPUTS", "input_values",
    "task_inputs", "modelled",
    "Param", "OnsetModel", "Prepared", "MODELS", "get_model", "predict_onset", "resolve_params", "expgap",
]

# ---------------------------------------------------------------------------------------------------------------
# Symbols and shared sub-expressions
# ---------------------------------------------------------------------------------------------------------------
L = Symbol("L", positive=True)  # number of labels
p_novel = Symbol("p_novel", nonnegative=True)  # fraction of sequences with fresh classes
lr = Symbol("lr", positive=True)  # learning rate
t = Symbol("t", positive=True)  # training step (the onset t* in implicit equations)
LR_REF = Rational(3, 1000)  # time is measured in steps at this learning rate: t = tau * LR_REF / lr

INPUT_SYMBOLS = (alpha, B, K, N, L, p_bursty, p_novel, lr, context)
INPUT_NAMES: tuple[str, ...] = tuple(str(s_) for s_ in INPUT_SYMBOLS)
# defaults of the inputs a caller may omit: the engine's own defaults (one source: zipfind.config)
DEFAULT_INPUTS: dict[str, Any] = {
    **{n: getattr(TaskConfig(), n) for n in ("K", "N", "L", "p_bursty", "p_novel", "context")},
    "lr": TrainConfig().lr,
}
IGNORED_INPUTS = ("eps",)  # accepted for convenience, used by no model yet


def task_inputs(frame: Any) -> Any:
    """A cells or onsets table with each task's inputs replaced by the theory inputs they stand for
    (zipfind.config.THEORY_INPUTS: in the token task L = V and B - 1 earlier copies); unchanged without `task`."""
    if "task" not in frame.columns:
        return frame
    out = frame.copy()
    for kind, mapping in THEORY_INPUTS.items():
        rows = (out["task"] == kind).to_numpy()
        if not rows.any():
            continue
        values = {name: f(frame[rows]) for name, f in mapping.items()}  # all from the task's own columns
        for name, v in values.items():
            if name not in out.columns:
                out[name] = np.nan
            out.loc[rows, name] = v
    return out


def modelled(frame: Any) -> np.ndarray:
    """Rows whose data law the models describe (zipfind.config.NOT_MODELLED: e.g. English word frequencies,
    which are not Zipf(alpha))."""
    keep = np.ones(len(frame), dtype=bool)
    for col, values in NOT_MODELLED.items():
        if col in frame.columns:
            keep &= ~frame[col].isin(values).to_numpy()
    return keep


def input_values(name: str, values: Any) -> np.ndarray:
    """An input as the float array the models take (the context law as 0 = "iid", 1 = "distinct")."""
    return zipf.context_flag(values) if name == "context" else np.asarray(values, dtype=float)


x_items = (2 * N + 1) / Max(B, 1)  # tokens per relevant (query-class) item; B = 0 counts as 1
tau = t * lr / LR_REF  # learning-rate-normalised time
pb_eff = zipf.bursty_on
p_kk = zipf.p_k
b_kk = zipf.bursty_law(k, context, alpha, K, N, B)  # P(query class = k | bursty context), under the context law
u_kk = p_kk * (1 - (1 - p_kk) ** N)  # P(query class = k and in context | i.i.d. context)

# Display symbols: each model is written with these, then expanded (xreplace) into the exact expression
x_s = Symbol("x", positive=True)
tau_s = Symbol("tau", positive=True)
P2_s = Symbol("P_2", nonnegative=True)  # two queries (of two sequences) share a class: sum_k w_k^2
p_ix = sp.IndexedBase("p", positive=True)  # class prior
b_ix = sp.IndexedBase("b", nonnegative=True)  # bursty query law
w_ix = sp.IndexedBase("w", positive=True)  # query law: how often class k is the query (memorisation rate)
d_ix = sp.IndexedBase("d", nonnegative=True)  # drive: P(query of class k, its class in context)
u_ix = sp.IndexedBase("u", nonnegative=True)  # the same for an i.i.d. context
g_B = Symbol("g_B", nonnegative=True)  # ICL gain over "copy a context label" in a bursty context
g_1 = Symbol("g_1", nonnegative=True)  # ... in an i.i.d. context
p_b = Symbol("p_b", nonnegative=True)  # effective bursty fraction (0 when B = 0)
DISPLAY_DEFS = {
    p_ix[k]: p_kk, b_ix[k]: b_kk, w_ix[k]: zipf.query_law, d_ix[k]: pb_eff * b_kk + (1 - pb_eff) * u_kk,
    u_ix[k]: u_kk, P2_s: zipf.P2_query, x_s: x_items, tau_s: tau, p_b: pb_eff,
    g_B: 1 - 1 / zipf.distinct_bursty, g_1: 1 - 1 / zipf._distinct(N),
}


def _expand(e):
    """Exact expression from a display form (definitions may use other display symbols: expand to a fixpoint)."""
    while True:
        new = e.xreplace(DISPLAY_DEFS)
        if new == e:
            return e
        e = new


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """A free parameter: default (prior guess, not a fit), multistart range, optimiser bounds, sign."""

    name: str
    default: float
    init: tuple[float, float]
    bounds: tuple[float, float]
    positive: bool = True
    doc: str = ""
    latex: str | None = None

    @property
    def symbol(self) -> sp.Symbol:
        return Symbol(self.name, positive=True) if self.positive else Symbol(self.name, real=True)


@dataclass(frozen=True)
class Prepared:
    """Inputs broadcast and flattened to [n] cells, class nodes, and each compiled function's hoisted parts."""

    args: tuple[np.ndarray, ...]  # INPUT_NAMES order, each [n]
    shape: tuple[int, ...]
    nodes: zipf.ClassNodes | None
    cache: dict = field(repr=False)  # compiled-function name -> precomputed input-only parts

    @property
    def n(self) -> int:
        return int(self.args[0].size)


T_CAP = 1e12  # onsets beyond this many steps count as "never"
CLASS_HEAD = 64  # classes summed exactly before the quadrature tail: relative error < 1e-7 (zipf uses 256, < 1e-9)


@dataclass(frozen=True, eq=False)
class OnsetModel:
    """One onset-time model: sympy expression, named parameters, docs, and its numeric version (lambdified on
    first use, once)."""

    name: str
    title: str
    kind: Literal["explicit", "implicit"]
    params: tuple[Param, ...]
    display: Any  # readable form in x, tau, P_2, p[k], q[k] (see DISPLAY_DEFS)
    doc: str
    source: str
    note: str
    alpha_boundary: str
    scale_param: str | None = None  # t* proportional to this parameter (used to seed fits)

    @cached_property
    def expr(self):
        """Exact sympy form: explicit t* as an Expr; implicit Eq(lhs(t), rhs), lhs(0) = 0, concave while rising."""
        return _expand(self.display)

    # -- description ------------------------------------------------------------------------------------------
    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self.params}

    @property
    def equation(self) -> sp.Eq:
        """The exact model as one sympy equation (t* = expr for explicit models)."""
        return Eq(Symbol("t*", positive=True), self.expr, evaluate=False) if self.kind == "explicit" else self.expr

    @property
    def definitions(self) -> dict:
        """Display symbols used by this model and what they stand for."""
        return {s_: v for s_, v in DISPLAY_DEFS.items() if self.display.has(s_)}

    def _display_eq(self, star):
        if self.kind == "explicit":
            return Eq(star, self.display, evaluate=False)
        return self.display

    @property
    def latex(self) -> str:
        """LaTeX of the readable form followed by the definitions of its shorthand symbols."""
        names = {p.symbol: p.latex for p in self.params if p.latex}
        names[Symbol("t*", positive=True)] = "t^{*}"
        eq = sp.latex(self._display_eq(Symbol("t*", positive=True)), symbol_names=names)
        defs = [f"{sp.latex(a, symbol_names=names)} = {sp.latex(b, symbol_names=names)}"
                for a, b in self.definitions.items()]
        return eq + (r", \quad \text{where } " + r", \; ".join(defs) if defs else "")

    @property
    def pretty(self) -> str:
        """Unicode rendering of the readable form and its definitions."""
        lines = [sp.pretty(self._display_eq(Symbol("t*", positive=True)), use_unicode=True), "where"]
        lines += [sp.pretty(Eq(a, b, evaluate=False), use_unicode=True) for a, b in self.definitions.items()]
        if self.kind == "implicit":
            lines.append("and t* is the first root in t.")
        return "\n".join(lines if len(lines) > 2 else lines[:1])

    # -- numerics ---------------------------------------------------------------------------------------------
    @cached_property
    def numeric(self) -> dict[str, Compiled]:
        """Lambdified parts: explicit 'value' and 'd:<param>'; implicit 'lhs', 'lhs_t', 'rhs',
        'lhs:<param>', 'rhs:<param>' (derivatives by sympy)."""
        syms = [p.symbol for p in self.params]
        args = [*INPUT_SYMBOLS, *syms]
        ni = len(INPUT_SYMBOLS)
        if self.kind == "explicit":
            out = {"value": compile_expr(self.expr, args, ni)}
            for p, s_ in zip(self.params, syms):
                out[f"d:{p.name}"] = compile_expr(self.expr.diff(s_), args, ni)
            return out
        lhs, rhs = self.expr.lhs, self.expr.rhs
        if t in rhs.free_symbols:
            raise ValueError("implicit models need a right-hand side free of t")
        d1 = lhs.diff(t)
        out = {
            "lhs": compile_expr(lhs, [*args, t], ni), "lhs_t": compile_expr(d1, [*args, t], ni),
            "rhs": compile_expr(rhs, args, ni),
        }
        for p, s_ in zip(self.params, syms):
            out[f"lhs:{p.name}"] = compile_expr(lhs.diff(s_), [*args, t], ni)
            out[f"rhs:{p.name}"] = compile_expr(rhs.diff(s_), args, ni)
        return out

    def prepare(self, **inputs: Any) -> Prepared:
        """Broadcast inputs (defaults filled in), build class nodes, precompute input-only parts."""
        unknown = set(inputs) - set(INPUT_NAMES) - set(IGNORED_INPUTS)
        if unknown:
            raise ValueError(f"unknown inputs {sorted(unknown)}; allowed: {', '.join(INPUT_NAMES)}")
        missing = [n for n in ("alpha", "B") if n not in inputs]
        if missing:
            raise ValueError(f"missing inputs {missing}")
        vals = [input_values(n, inputs.get(n, DEFAULT_INPUTS.get(n))) for n in INPUT_NAMES]
        bc = np.broadcast_arrays(*vals)
        shape = bc[0].shape
        args = tuple(np.ascontiguousarray(a, dtype=float).reshape(-1) for a in bc)
        ins = dict(zip(INPUT_NAMES, args))
        num = self.numeric
        nodes = None
        if any(c.terms for c in num.values()):
            nodes = zipf.class_nodes(ins["alpha"], ins["K"], head=CLASS_HEAD)
            if self.expr.has(zipf.bursty_law):
                nodes = zipf.with_bursty_law(nodes, ins["alpha"], ins["K"], ins["N"], ins["B"], ins["context"])
        cache = {name: c.precompute(args, nodes) for name, c in num.items()}
        return Prepared(args=args, shape=shape, nodes=nodes, cache=cache)

    def _ev(self, name: str, prep: Prepared, args: Sequence) -> np.ndarray:
        out = self.numeric[name](args, prep.nodes, prep.cache[name])
        return np.broadcast_to(out, (prep.n,)).astype(float)

    def onset(self, prep: Prepared, theta: Sequence[float], grad: bool = False):
        """t* for every prepared cell, [n] (inf where the model predicts no onset); with grad=True also
        d ln t* / d theta, [n, P] (0 where t* is inf)."""
        theta = [float(v) for v in theta]
        if len(theta) != len(self.params):
            raise ValueError(f"{self.name} takes {len(self.params)} parameters, got {len(theta)}")
        args = [*prep.args, *theta]
        if self.kind == "explicit":
            out = self._ev("value", prep, args)
            t_star = np.where(np.isfinite(out) & (out > 0), out, np.inf)
            if not grad:
                return t_star
            fin = np.isfinite(t_star)
            cols = [np.where(fin, self._ev(f"d:{n}", prep, args) / np.where(fin, t_star, 1.0), 0.0)
                    for n in self.param_names]
            return t_star, np.stack(cols, axis=1) if cols else np.zeros((prep.n, 0))
        t_star = self._solve(prep, args)
        if not grad:
            return t_star
        fin = np.isfinite(t_star)
        tt = np.where(fin, t_star, 1.0)
        targs = [*args, tt]
        slope = self._ev("lhs_t", prep, targs)  # > 0 at the first root
        cols = []
        with np.errstate(all="ignore"):
            for n in self.param_names:
                dF = self._ev(f"lhs:{n}", prep, targs) - self._ev(f"rhs:{n}", prep, args)
                cols.append(np.where(fin, -dF / (tt * slope), 0.0))
        return t_star, np.stack(cols, axis=1)

    def residual(self, prep: Prepared, theta: Sequence[float], t_: np.ndarray) -> np.ndarray:
        """Implicit models: lhs(t) - rhs at times t_ [n]."""
        if self.kind != "implicit":
            raise TypeError(f"{self.name} is explicit")
        args = [*prep.args, *map(float, theta)]
        return self._ev("lhs", prep, [*args, np.asarray(t_, float)]) - self._ev("rhs", prep, args)

    def predict(self, params: Any = None, **inputs: Any) -> np.ndarray:
        """t* broadcast over the inputs; params as accepted by resolve_params (None: the defaults)."""
        theta = resolve_params(self, params)
        prep = self.prepare(**inputs)
        return self.onset(prep, [theta[n] for n in self.param_names]).reshape(prep.shape)

    def _solve(self, prep: Prepared, args: Sequence, iters: int = 100) -> np.ndarray:
        """Vectorised first root of lhs(t) = rhs, for lhs(0) = 0, concave while rising, at most one peak.

        Bracketed Newton in u = ln t on g(u) = ln lhs(e^u) - ln rhs, with g replaced by +1 wherever lhs is already
        falling: negative below the first root, positive beyond it (or beyond the peak when lhs never reaches rhs).
        A cell stops as soon as g = 0 (onset) or the tangent at the bracket's low end, an upper bound on a concave
        rising lhs, stays below rhs up to the high end (no onset)."""
        n = prep.n
        y = self._ev("rhs", prep, args)

        def ev(name, u):
            return self._ev(name, prep, [*args, np.exp(u)])

        slope0 = ev("lhs_t", np.full(n, np.log(1e-9)))  # lhs'(0+)
        ok = (y > 0) & (slope0 > 0) & np.isfinite(y)
        lo = np.log(np.where(ok, y / np.where(ok, slope0, 1.0), 1.0))  # lhs(t) <= lhs'(0) t while rising
        hi = np.full(n, np.log(T_CAP))
        # still rising (or flat) at the cap: lhs has never fallen, so lhs(cap) is its supremum
        l0c, l1c = ev("lhs", hi), ev("lhs_t", hi)
        active = ok & ~((l1c >= 0) & (l0c > 0) & (l0c < y))
        found = np.zeros(n, bool)
        l0_lo = np.zeros(n)
        l1_lo = np.zeros(n)
        u = lo.copy()
        with np.errstate(all="ignore"):
            for _ in range(iters):
                tt = np.exp(u)
                l0, l1 = ev("lhs", u), ev("lhs_t", u)
                rising = (l1 > 0) & (l0 > 0)
                g = np.where(rising, np.log(np.where(rising, l0, 1.0)) - np.log(y), 1.0)
                below = active & (g < 0)
                lo, l0_lo, l1_lo = np.where(below, u, lo), np.where(below, l0, l0_lo), np.where(below, l1, l1_lo)
                hi = np.where(active & (g > 0), u, hi)
                found |= active & (np.abs(g) < 1e-12)
                hopeless = l0_lo + l1_lo * (np.exp(hi) - np.exp(lo)) < y  # tangent bound on [lo, hi]
                active &= ~found & ~hopeless & (hi - lo > 1e-12)
                if not active.any():
                    break
                un = u - g / np.where(rising, tt * l1 / l0, np.nan)  # Newton step; slope = elasticity
                bad = ~np.isfinite(un) | (un <= lo) | (un >= hi)
                u = np.where(active, np.where(bad, 0.5 * (lo + hi), un), u)
            # a bracket that closed without |g| < 1e-12 counts if g is still tiny there
            g_end = np.log(ev("lhs", u)) - np.log(y)
            found |= ok & ~found & (np.abs(g_end) < 1e-8) & (ev("lhs_t", u) > 0)
        t_star = np.exp(u)
        return np.where(found & (t_star < T_CAP), t_star, np.inf)


def _P(name, default, init, bounds, positive=True, doc="", latex=None) -> Param:
    return Param(name, float(default), tuple(map(float, init)), tuple(map(float, bounds)), positive, doc, latex)


def _syms(*params: Param):
    return [p.symbol for p in params]


TIME_UNIT = LR_REF / lr  # steps per unit of tau


def _m0() -> OnsetModel:
    ps = (
        _P("c0", 6.5, (5.0, 8.0), (-5.0, 20.0), False, "ln t* at N=8, B=1, alpha=0, K=2048, lr=3e-3", "c_{0}"),
        _P("c_N", 1.0, (-1.0, 2.0), (-10.0, 10.0), False, "elasticity in N"),
        _P("c_B", -0.3, (-1.5, 0.5), (-10.0, 10.0), False, "elasticity in B"),
        _P("c_alpha", 1.1, (0.0, 3.0), (-10.0, 20.0), False, "slope in alpha"),
        _P("c_K", 0.0, (-1.0, 1.0), (-10.0, 10.0), False, "elasticity in K"),
    )
    c0, cN, cB, ca, cK = _syms(*ps)
    disp = TIME_UNIT * exp(c0 + cN * log(N / 8) + cB * log(Max(B, 1)) + ca * alpha + cK * log(K / 2048))
    return OnsetModel(
        name="M0", title="log-linear baseline", kind="explicit", params=ps, display=disp,
        doc="ln t* is linear in ln N, ln B, alpha and ln K (plus ln(lr_ref/lr)); no mechanism, a yardstick.",
        source="SCIENCE.md baseline", note="theory/M0_loglinear.md", scale_param="c0",
        alpha_boundary="none: t* grows as exp(c_alpha alpha); censoring where alpha > (ln budget - rest)/c_alpha",
    )


def _repetition_factor(P, d_eff, power):
    return ((1 - P) ** 2 + d_eff * P**2) ** (-power / 2)


def _m1() -> OnsetModel:
    ps = (
        _P("A", 80.0, (10.0, 500.0), (1e-3, 1e7), doc="steps per context token at x=1, lr=3e-3"),
        _P("gamma", 1.0, (0.5, 1.5), (0.05, 5.0), doc="power of the sparse-attention dilution"),
        _P("d_eff", 1.0, (0.1, 10.0), (1e-4, 1e5), doc="effective dimension of Zucchet's repetition term"),
        _P("delta", 1.0, (0.5, 2.0), (0.01, 10.0), doc="power of the repetition term"),
    )
    A_, g_, d_, dl_ = _syms(*ps)
    disp = TIME_UNIT * A_ * x_s**g_ * _repetition_factor(P2_s, d_, dl_)
    return OnsetModel(
        name="M1", title="sparse-attention power law", kind="explicit", params=ps, display=disp,
        doc="Plateau to learn to attend to one relevant token among x = (2N+1)/B scales as x^gamma; cross-sample "
        "repetition of the query class (P2) shortens it by [(1-P2)^2 + d_eff P2^2]^(-delta/2).",
        source="Zucchet, D'Angelo, Lampinen, Chan 2025 (arXiv 2505.17863)", note="theory/M1_sparse_attention.md",
        scale_param="A",
        alpha_boundary="none: t* is bounded in alpha (by x^gamma times at most (1 + 1/d_eff)^(delta/2))",
    )


def _m2() -> OnsetModel:
    ps = (
        _P("A", 35.0, (5.0, 300.0), (1e-3, 1e7), doc="steps per unit of x ln(1 + C x), lr=3e-3"),
        _P("C", 1.0, (0.1, 10.0), (1e-4, 1e4), doc="inverse initial overlap per item"),
        _P("d_eff", 1.0, (0.1, 10.0), (1e-4, 1e5), doc="effective dimension of the repetition term"),
    )
    A_, C_, d_ = _syms(*ps)
    disp = TIME_UNIT * A_ * x_s * log(1 + C_ * x_s) * _repetition_factor(P2_s, d_, S.One)
    return OnsetModel(
        name="M2", title="escape time with a log factor", kind="explicit", params=ps, display=disp,
        doc="Saxe-style escape of a product of weights from a small initial overlap u0 ~ 1/(C x) with signal "
        "~ 1/x: t* ~ x ln(1 + C x), shortened by cross-sample repetition as in M1 (delta = 1).",
        source="Saxe, McClelland, Ganguli 2014; Zucchet et al. 2025", note="theory/M2_escape_time.md",
        scale_param="A", alpha_boundary="none: bounded in alpha, like M1",
    )


def _m3() -> OnsetModel:
    ps = (
        _P("A", 55.0, (5.0, 500.0), (1e-3, 1e7), doc="steps of the attention stages at x = 1"),
        _P("gamma", 1.0, (0.5, 1.5), (0.05, 5.0), doc="power of the attention stages in x"),
        _P("C", 20.0, (1.0, 200.0), (1e-4, 1e6), doc="readout escape scale"),
    )
    A_, g_, C_ = _syms(*ps)
    disp = TIME_UNIT * Piecewise((A_ * x_s**g_ + C_ / (1 / N - 1 / L), L > N), (oo, True))
    return OnsetModel(
        name="M3", title="nested-logit cascade", kind="explicit", params=ps, display=disp,
        doc="Three nested logits learned in sequence: attention stages take A x^gamma, the readout escapes with "
        "initial drive 1/N - 1/L, taking C/(1/N - 1/L); the plateau diverges as L -> N (no onset for L <= N).",
        source="Reddy 2024 (arXiv 2312.03002), phenomenological model", note="theory/M3_nested_logit.md",
        alpha_boundary="none: independent of alpha", scale_param=None,
    )


def _m4() -> OnsetModel:
    ps = (
        _P("A", 60.0, (10.0, 500.0), (1e-2, 1e7), doc="drive needed per context token (steps at full drive)"),
        _P("r", 1.5, (0.1, 10.0), (1e-5, 1e4), doc="memorisation rate per unit class frequency per step"),
    )
    A_, r_ = _syms(*ps)
    lhs = (1 - p_novel) / r_ * Sum(d_ix[k] / w_ix[k] * (1 - exp(-r_ * w_ix[k] * tau_s)), (k, 1, K)) + p_novel * tau_s
    return OnsetModel(
        name="M4", title="competition with memorisation", kind="implicit", params=ps, display=Eq(lhs, A_ * x_s),
        doc="Class k is memorised at Poisson rate r w_k (w_k: how often k is the query); the induction circuit is "
        "driven by queries whose class is in context and not yet memorised, (1-p_novel) sum_k d_k exp(-r w_k tau) "
        "+ p_novel; onset when the accumulated drive reaches A x. No root (drive exhausted first): no onset.",
        source="this package (after Nguyen & Reddy 2025, Chan et al. 2022, Hutter 2021)",
        note="theory/M4_competition.md",
        alpha_boundary="budget-dependent: for alpha > 1, t* ~ (zeta(alpha)/r) (r A x / (p_b Gamma(1 - 1/alpha)))^alpha "
        "grows geometrically in alpha; defaults cross 3000 steps at alpha 0.45 / 1.10 / 1.39 for B = 1 / 2 / 4. "
        "No onset at all (any alpha) when p_novel = 0 and r A x >= sum_k d_k / w_k",
    )


def _m5() -> OnsetModel:
    ps = (
        _P("A", 80.0, (5.0, 500.0), (1e-3, 1e7), doc="steps at unit drive"),
        _P("lam", 1.0, (0.01, 10.0), (1e-6, 1e4), doc="weight of the shared (cross-sample) drive", latex=r"\lambda"),
    )
    A_, lam_ = _syms(*ps)
    disp = TIME_UNIT * A_ / (1 / x_s + lam_ * P2_s)
    return OnsetModel(
        name="M5", title="coopetition", kind="explicit", params=ps, display=disp,
        doc="ICL is driven by in-context repetition (1/x = B/(2N+1)) plus a sub-circuit shared with a "
        "context-constrained IWL strategy whose drive grows with cross-sample repetition P2; rates add.",
        source="Singh et al. 2024/2025 (strategy coopetition)", note="theory/M5_coopetition.md", scale_param="A",
        alpha_boundary="none: skew speeds ICL (t* decreases with P2)",
    )


def _m6() -> OnsetModel:
    ps = (
        _P("A", 60.0, (10.0, 500.0), (1e-2, 1e7), doc="drive needed per context token"),
        _P("r", 1.5, (0.1, 10.0), (1e-5, 1e4), doc="memorisation rate per unit class frequency per step"),
        _P("lam", 2e-5, (1e-5, 1e-2), (1e-8, 1.0), doc="leak rate of the partial circuit", latex=r"\lambda"),
    )
    A_, r_, lam_ = _syms(*ps)
    lhs = (1 - p_novel) * Sum(d_ix[k] * expgap(r_ * w_ix[k], lam_, tau_s), (k, 1, K)) + p_novel * (
        1 - exp(-lam_ * tau_s)
    ) / lam_
    return OnsetModel(
        name="M6", title="leaky competition (transient drive)", kind="implicit", params=ps, display=Eq(lhs, A_ * x_s),
        doc="M4 with a leak: the partial induction circuit I obeys dI/dtau = drive - lam I (weight decay / the IWL "
        "readout undoing it); onset when I reaches A x. I rises then falls, so a drive that fades too fast never "
        "gets there: a censoring boundary in alpha that more training does not move.",
        source="this package (motivated by transient ICL, Singh et al. 2023, arXiv 2311.08360)",
        note="theory/M6_leaky_competition.md",
        alpha_boundary="budget-independent: no onset ever where max_tau I(tau) < A x, roughly where M4's onset "
        "exceeds ~1/lam; defaults: alpha > 0.74 / 1.42 / 1.71 for B = 1 / 2 / 4",
    )


def _m7() -> OnsetModel:
    ps = (
        _P("A", 200.0, (30.0, 1000.0), (1e-2, 1e7), doc="drive needed at x = 1 (steps at full drive and gain)"),
        _P("r", 1.5, (0.1, 10.0), (1e-5, 1e4), doc="memorisation rate per unit class frequency per step"),
        _P("gamma", 0.2, (0.05, 1.0), (1e-3, 5.0), doc="power of the search difficulty x in the threshold"),
    )
    A_, r_, g_ = _syms(*ps)
    memo = lambda drive: Sum(drive / w_ix[k] * (1 - exp(-r_ * w_ix[k] * tau_s)), (k, 1, K))  # noqa: E731
    lhs = (1 - p_novel) / r_ * (p_b * g_B * memo(b_ix[k]) + (1 - p_b) * g_1 * memo(u_ix[k])) + (
        p_novel * g_B * tau_s
    )
    return OnsetModel(
        name="M7", title="gain-weighted competition", kind="implicit", params=ps, display=Eq(lhs, A_ * x_s**g_),
        doc="M4 with the drive weighted by what ICL gains over copying a random context label, g = 1 - 1/(distinct "
        "classes in context): bursts make the query easy to find (threshold A x^gamma) but leave fewer distinct "
        "labels to choose from, so the gain falls as B -> N. Memorisation exhausts the drive as in M4.",
        source="this package (suggested by the phase-diagram sweep: B = 4 onsets later than B = 1, 2; Reddy 2024)",
        note="theory/M7_gain_competition.md",
        alpha_boundary="budget-dependent as M4, steeper (skew also shrinks the distinct classes per context, the "
        "gain); defaults cross 3000 steps at alpha 1.19 / 1.19 / 1.07 for B = 1 / 2 / 4; no onset at all when "
        "p_novel = 0 and r A x^gamma >= p_b g_B K + (1 - p_b) g_1 n_1",
    )


MODELS: dict[str, OnsetModel] = {m.name: m for m in (_m0(), _m1(), _m2(), _m3(), _m4(), _m5(), _m6(), _m7())}


def get_model(name: str) -> OnsetModel:
    """Look a model up by name (KeyError lists the registered names)."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(MODELS)}") from None


def resolve_params(model: OnsetModel, params: Any = None) -> dict[str, float]:
    """Parameter values from None (defaults), {name: value}, {name: {"value": v}}, a fits.json record or list
    of records, a fit result (``values()`` returning {name: value}) or a FitReport holding the model."""
    if params is None:
        return model.defaults
    if hasattr(params, "fits") and hasattr(params, "__getitem__"):  # a FitReport
        params = params[model.name]
    if hasattr(params, "values") and callable(params.values) and not isinstance(params, Mapping):
        params = params.values()
    if isinstance(params, Sequence) and not isinstance(params, (str, bytes)):
        recs = [r for r in params if isinstance(r, Mapping) and r.get("model") == model.name]
        if not recs:
            raise KeyError(f"no record for model {model.name} among the fits")
        params = recs[0]
    if isinstance(params, Mapping) and "params" in params and isinstance(params["params"], Mapping):
        if params.get("model", model.name) != model.name:
            raise ValueError(f"record is for model {params['model']}, not {model.name}")
        params = params["params"]
    out = {}
    for name in model.param_names:
        if name not in params:
            raise KeyError(f"parameter {name!r} of {model.name} missing; got {sorted(params)}")
        v = params[name]
        out[name] = float(v["value"] if isinstance(v, Mapping) else v)
    return out


def predict_onset(model: str | OnsetModel, params: Any = None, **inputs: Any) -> np.ndarray:
    """Predicted onset step t*, broadcast over keyword inputs (alpha and B required; K=2048, N=8, L=32,
    p_bursty=0.9, p_novel=0, lr=3e-3 by default); inf where the model predicts no onset."""
    m = model if isinstance(model, OnsetModel) else get_model(model)
    return m.predict(params, **inputs)
