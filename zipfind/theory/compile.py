"""Compiling sympy onset-model expressions into vectorised numpy over many cells and over the classes of each.

A model's expression may hold sums over classes k = 1..K whose summands are functions of p_k (written with
k^-alpha / H_K(alpha)) and of the bursty query law b_k (`zipf.bursty_law`); every such sum is evaluated on
`zipf.ClassNodes`. Sub-expressions that depend on the data inputs only are hoisted out and evaluated once per set
of cells (`_Compiled.precompute`), so a fit re-evaluates only what its parameters touch. Also here: `expgap`, a
special function the models use, with its stable numeric twin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp
from sympy import Dummy, Eq, Function, Piecewise, Sum, exp, harmonic

from . import zipf
from .zipf import K, alpha, k

__all__ = ["expgap", "expgap_db", "Compiled", "compile_expr"]


class expgap(Function):
    """(exp(-a t) - exp(-b t)) / (b - a): leaky integral of a decaying drive; symmetric in a, b, continuous at a = b."""

    nargs = 3

    def fdiff(self, argindex=1):
        a, b, tt = self.args
        if argindex == 1:
            return expgap_db(b, a, tt)
        if argindex == 2:
            return expgap_db(a, b, tt)
        if argindex == 3:
            return exp(-a * tt) - b * expgap(a, b, tt)
        raise sp.ArgumentIndexError(self, argindex)

    def _eval_rewrite_as_exp(self, a, b, tt, **kwargs):
        return Piecewise((tt * exp(-a * tt), Eq(a, b)), ((exp(-a * tt) - exp(-b * tt)) / (b - a), True))

    def _eval_evalf(self, prec):
        a, b, tt = self.args
        if (a - b).is_zero:
            return (tt * exp(-a * tt)).evalf(prec)
        return ((exp(-a * tt) - exp(-b * tt)) / (b - a)).evalf(prec)


class expgap_db(Function):
    """d expgap(a, b, t) / db = (t exp(-b t) - expgap(a, b, t)) / (b - a), continuous at a = b (-t^2 exp(-a t)/2)."""

    nargs = 3

    def _eval_evalf(self, prec):
        a, b, tt = self.args
        if (a - b).is_zero:
            return (-(tt**2) * exp(-a * tt) / 2).evalf(prec)
        return ((tt * exp(-b * tt) - (exp(-a * tt) - exp(-b * tt)) / (b - a)) / (b - a)).evalf(prec)


def _expgap_numeric(a, b, tt):
    """Stable numpy expgap: exp(-min(a,b) t) * t * (1 - exp(-|b-a| t)) / (|b-a| t)."""
    a, b, tt = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float), np.asarray(tt, float))
    z = np.abs(b - a) * tt
    small = z < 1e-8
    phi = np.where(small, 1 - z / 2, -np.expm1(-z) / np.where(small, 1.0, z))
    return np.exp(-np.minimum(a, b) * tt) * tt * phi


def _expgap_db_numeric(a, b, tt):
    """Stable numpy expgap_db, written around exp(-min(a, b) t) with series near a = b."""
    a, b, tt = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float), np.asarray(tt, float))
    z = np.abs(b - a) * tt
    small = z < 1e-3
    zs = np.where(small, 1.0, z)
    em = np.exp(-z)
    # b >= a: t^2 e^{-a t} psi(z), psi = -(1 - (1 + z) e^{-z}) / z^2
    psi = np.where(small, -(0.5 - z / 3 + z**2 / 8 - z**3 / 30), -(-np.expm1(-z) - z * em) / zs**2)
    # b < a: -t^2 e^{-b t} chi(z), chi = (z - 1 + e^{-z}) / z^2
    chi = np.where(small, 0.5 - z / 6 + z**2 / 24 - z**3 / 120, (z + np.expm1(-z)) / zs**2)
    return np.where(b >= a, tt**2 * np.exp(-a * tt) * psi, -(tt**2) * np.exp(-b * tt) * chi)


_NUMERIC_MODULES = [
    {"harmonic": zipf.harmonic_number, "expgap": _expgap_numeric, "expgap_db": _expgap_db_numeric},
    "numpy",
]


@dataclass(frozen=True)
class _Part:
    """An expression lambdified in (args, [p_k], hoisted...); hoisted sub-expressions depend on inputs only and
    are evaluated once per Prepared."""

    fn: Callable
    hoisted: tuple[Callable, ...]  # each lambdified in (inputs, [p_k])


@dataclass(frozen=True)
class Compiled:
    """outer(args, S_1..S_m) with S_j = sum_k term_j(args, p_k, b_k), every part lambdified once."""

    outer: _Part
    terms: tuple[_Part, ...]

    def precompute(self, inputs: Sequence[np.ndarray], nodes: zipf.ClassNodes | None) -> tuple:
        """Input-only sub-expressions: [n] arrays for the outer part, [n, J] for the class summands."""
        with np.errstate(all="ignore"):
            outer = tuple(np.broadcast_to(h(*inputs), inputs[0].shape) for h in self.outer.hoisted)
            cols = [np.asarray(a)[..., None] for a in inputs]  # [n, 1]
            terms = tuple(
                tuple(np.broadcast_to(h(*cols, *_per_class(nodes)), nodes.p.shape) for h in term.hoisted)
                for term in self.terms
            )
        return outer, terms

    def __call__(self, args: Sequence, nodes: zipf.ClassNodes | None, cache: tuple) -> np.ndarray:
        outer_cache, term_cache = cache
        sums = []
        with np.errstate(all="ignore"):
            if self.terms:
                cols = [np.asarray(a)[..., None] for a in args]  # [n, 1]
                for term, hoisted in zip(self.terms, term_cache):
                    vals = term.fn(*cols, *_per_class(nodes), *hoisted)  # [n, J]
                    sums.append(nodes.sum(np.broadcast_to(vals, nodes.p.shape)).reshape(-1))
            return np.asarray(self.outer.fn(*args, *sums, *outer_cache), dtype=float)


def _per_class(nodes: zipf.ClassNodes) -> tuple[np.ndarray, np.ndarray]:
    """(p_k, b_k) at every node, [n, J] each; b = p (the "iid" law) when the nodes carry no bursty law."""
    return nodes.p, nodes.p if nodes.b is None else nodes.b


def _hoist(e: sp.Basic, varying: set, found: dict) -> sp.Basic:
    """Replace maximal non-atomic sub-expressions free of the varying symbols by dummies (found: expr -> dummy)."""
    if e.is_Atom:
        return e
    if isinstance(e, sp.Expr) and not (e.free_symbols & varying) and e.free_symbols:
        return found.setdefault(e, Dummy(f"h{len(found)}"))
    return e.func(*[_hoist(a, varying, found) for a in e.args])


def _part(expr: sp.Expr, args: Sequence[sp.Symbol], n_inputs: int, extra: Sequence[sp.Symbol], per_class: bool) -> _Part:
    """Lambdify expr in (args, extra, hoisted) with input-only sub-expressions hoisted out. extra is [p_k, b_k] for a
    class summand (per_class: they count as inputs) or the class-sum symbols for an outer expression."""
    found: dict = {}
    varying = set(args[n_inputs:]) | (set() if per_class else set(extra))
    body = _hoist(expr, varying, found)
    inputs = [*args[:n_inputs], *(extra if per_class else [])]
    hoisted = tuple(sp.lambdify(inputs, h, modules=_NUMERIC_MODULES) for h in found)
    fn = sp.lambdify([*args, *extra, *found.values()], body, modules=_NUMERIC_MODULES)
    return _Part(fn=fn, hoisted=hoisted)


def compile_expr(expr: sp.Expr, args: Sequence[sp.Symbol], n_inputs: int) -> Compiled:
    """Lambdify expr, replacing every Sum over classes k = 1..K by a node sum of its summand written in p_k and
    b_k. args[:n_inputs] are data inputs; the rest (parameters, t) vary during a fit."""
    sums = sorted(expr.atoms(Sum), key=sp.default_sort_key)
    S = [Dummy(f"S{j}") for j in range(len(sums))]
    P, Bq, H = Dummy("p"), Dummy("b"), Dummy("H")
    terms = []
    for sm in sums:
        (kk, lo, hi) = sm.limits[0]
        if len(sm.limits) != 1 or kk != k or lo != 1 or hi != K:
            raise ValueError(f"only sums over k = 1..K are supported, got {sm.limits}")
        term = sm.function.replace(lambda e: isinstance(e, zipf.bursty_law), lambda *_: Bq)
        term = term.xreplace({harmonic(K, alpha): H}).subs(k**-alpha, P * H)
        if k in term.free_symbols or H in term.free_symbols:
            raise ValueError(f"summand does not reduce to a function of p_k and b_k: {term}")
        terms.append(_part(term, args, n_inputs, [P, Bq], per_class=True))
    outer = _part(expr.xreplace(dict(zip(sums, S))), args, n_inputs, S, per_class=False)
    return Compiled(outer=outer, terms=tuple(terms))
