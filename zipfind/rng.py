"""Counter-based random numbers: a model's draws are a pure function of (its seed, step, stream, index, size).

Philox4x32-10 (Salmon, Moraes, Dror & Shaw 2011, "Parallel random numbers: as easy as 1, 2, 3"), written in
int64 tensor ops so that one call fills the draws of all M stacked models on any device: the key is a model's
63-bit data seed (two 32-bit words), the 128-bit counter is (block index, stream, step low word, step high word).
No generator state exists: a model's data never depends on its chunk-mates, its chunk size, or whether the run
was resumed, and resuming needs only the step number.

Every 32-bit word is held in an int64 and every product is split so that no intermediate exceeds 2^49, so the
integer arithmetic is exact and identical on CPU and CUDA (the known-answer vectors of the Random123 reference
hold on both). Uniforms are exact conversions of those words, so they agree bit for bit across devices;
normals pass through log, sqrt and cos/sin (Box-Muller), whose last-ulp rounding may differ between devices.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

_MASK = 0xFFFFFFFF
_M0, _M1 = 0xD2511F53, 0xCD9E8D57  # Philox4x32 multipliers
_W0, _W1 = 0x9E3779B9, 0xBB67AE85  # key schedule (Weyl) increments
ROUNDS = 10
DATA_STREAM = "philox4x32-10"
"""The name of this data stream, recorded in every run's manifest (a run is never resumed under another)."""


def _mulhilo(x: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """High and low 32-bit words of m * x for 32-bit m and x [...] int64, exactly (no intermediate >= 2^49)."""
    p_lo = x * (m & 0xFFFF)  # < 2^48
    p_hi = x * (m >> 16)  # < 2^48; m * x = p_hi * 2^16 + p_lo
    mid = p_lo + ((p_hi & 0xFFFF) << 16)
    return (p_hi >> 16) + (mid >> 32), mid & _MASK


def philox(c0: Tensor, c1: Tensor, c2: Tensor, c3: Tensor, k0: Tensor, k1: Tensor,
           rounds: int = ROUNDS) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Philox4x32: four counter words and two key words (int64 in [0, 2^32), broadcastable) -> four words."""
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + _W0) & _MASK, (k1 + _W1) & _MASK
        hi0, lo0 = _mulhilo(c0, _M0)
        hi1, lo1 = _mulhilo(c2, _M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def _counter(device: torch.device, step: int, stream: int) -> Tensor:
    """Counter words (stream, step lo, step hi) [3] made on the device by fills (a copy from the host would
    synchronise a CUDA stream every step)."""
    c = torch.empty(3, dtype=torch.long, device=device)
    for i, v in enumerate((stream, step & _MASK, (step >> 32) & _MASK)):
        c[i] = v
    return c


def _draw(kind: str, k0: Tensor, k1: Tensor, c: Tensor, nb: int) -> tuple[Tensor, ...]:
    """Per lane of counter blocks 0..nb-1, [M, nb] each: two float64 uniforms ("u64", from lanes 0-1 and 2-3)
    or four float32 normals ("normal").

    Uniforms are the midpoints of a 2^52-point grid (26 bits of each of two words): every value is exact, and 0
    and 1 never occur. Normals are Box-Muller pairs of float32 uniforms on a 2^23-point grid (one word each), so
    |z| <= 5.77 (the tail beyond it, probability 8e-9, is cut by the grid). Returning the lanes as separate
    outputs lets the compiler compute each block once.
    """
    c0 = torch.arange(nb, dtype=torch.long, device=k0.device)[None, :]  # [1, nb] block index
    w = philox(c0, c[0], c[1], c[2], k0[:, None], k1[:, None])  # 4 x [M, nb]
    if kind == "u64":
        return tuple(((((hi >> 6) << 26) + (lo >> 6)).to(torch.float64) + 0.5) * 2.0**-52
                     for hi, lo in (w[:2], w[2:]))
    u = [((x >> 9).to(torch.float32) + 0.5) * 2.0**-23 for x in w]
    out = []
    for a, b in (u[:2], u[2:]):
        r, theta = torch.sqrt(-2.0 * torch.log(a)), (2.0 * math.pi) * b
        out += [r * torch.cos(theta), r * torch.sin(theta)]
    return tuple(out)


_draw_compiled = torch.compile(_draw, dynamic=True)
"""`_draw` fused by torch.compile (one C++ or Triton loop instead of ~250 passes over memory; compiled on first
use, about 20 s per kind on a 2-core CPU, then cached on disk by torch)."""
_BUILT: set[tuple[str, str]] = set()  # (kind, device type) whose compiled kernel ran
_EAGER: set[tuple[str, str]] = set()  # (kind, device type) whose compiled kernel could not be built


def _generate(kind: str, seeds: Tensor, step: int, stream: int, n: int, compiled: bool) -> Tensor:
    """The first n values of `_draw(kind)`'s lanes, lane-major (value l * nb + j is lane l of block j, so a
    value's counter depends on n), for each model: [M, n]."""
    M, dev = seeds.shape[0], seeds.device
    nb = max(2, -(-n // (2 if kind == "u64" else 4)))  # at least 2: torch.compile specialises sizes 0 and 1
    k0, k1, c = seeds & _MASK, (seeds >> 32) & _MASK, _counter(dev, step, stream)
    key = (kind, dev.type)
    if compiled and key not in _EAGER:
        pad = max(0, 2 - M)  # M of at least 2 too, so one dynamic-shape graph serves every call
        try:  # one fixed global state (no autograd, no autocast), so grad or autocast modes add no graphs
            with torch.no_grad(), torch.autocast(dev.type, enabled=False):
                out = _draw_compiled(kind, F.pad(k0, (0, pad)), F.pad(k1, (0, pad)), c, nb)
            _BUILT.add(key)
            return torch.cat(out, 1)[:M, :n]
        except Exception as e:  # no working compiler (torch raises several kinds); later failures are errors
            if key in _BUILT:
                raise
            _EAGER.add(key)
            warnings.warn(f"rng: the compiled {kind} kernel is unavailable on {dev.type} ({type(e).__name__}); "
                          "using the eager one (the same integers and uniforms, normals to float32 rounding)")
    return torch.cat(_draw(kind, k0, k1, c, nb), 1)[:, :n]


def uniform(seeds: Tensor, step: int, stream: int, shape: tuple[int, ...], compiled: bool = True) -> Tensor:
    """float64 uniforms in (0, 1) for every model, [M, *shape] (a 52-bit grid; see _draw).

    Value j (row-major in shape) of model m depends only on (seeds[m], step, stream, j, prod(shape)): never on
    the other models. `compiled=False` forces the eager kernel (the same values)."""
    return _generate("u64", seeds, step, stream, math.prod(shape), compiled).view(-1, *shape)


def normal(seeds: Tensor, step: int, stream: int, shape: tuple[int, ...], compiled: bool = True) -> Tensor:
    """Standard normals [M, *shape] float32 (Box-Muller; see _draw). `compiled=False` forces the eager kernel
    (the same values up to float32 rounding of log, sqrt, cos and sin)."""
    return _generate("normal", seeds, step, stream, math.prod(shape), compiled).view(-1, *shape)
