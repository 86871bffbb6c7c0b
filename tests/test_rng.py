"""zipfind.rng: the counter-based draws every model's data come from (Philox4x32-10 in tensor ops)."""

import numpy as np
import pytest
import torch
from scipy import stats

from zipfind import rng

SEEDS = torch.tensor([0, 1, 2**40 + 17, 2**62 + 5])  # 63-bit data seeds, both key words in use

# Random123's published known-answer vectors (its tests/kat_vectors): counter, key -> output
KAT = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
       ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
       ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ctr,key,out", KAT)
def test_philox_matches_the_reference_known_answers(ctr, key, out, device):
    t = lambda v: torch.tensor(v, dtype=torch.long, device=device)  # noqa: E731
    assert [int(x) for x in rng.philox(*map(t, ctr), *map(t, key))] == list(out)


@pytest.mark.parametrize("kind", ["u64", "normal"])
def test_compiled_kernel_equals_the_eager_one(kind):
    """Uniforms bit for bit; normals to float32 rounding of log, sqrt, cos, sin."""
    make = {"u64": lambda **k: rng.uniform(SEEDS, 3, 1, (37, 5), **k),
            "normal": lambda **k: rng.normal(SEEDS, 3, 1, (37, 5), **k)}[kind]
    a, b = make(), make(compiled=False)
    assert a.shape == b.shape == (4, 37, 5)
    if kind == "normal":
        torch.testing.assert_close(a, b, rtol=0, atol=4e-6)
    else:
        assert torch.equal(a, b)


def test_a_models_draws_do_not_depend_on_its_chunk_or_the_call():
    """Model m's values are a function of (seed, step, stream, index) only: the same alone (M = 1), in any stack,
    in any order, on every repeat; another step, stream or seed gives other values."""
    full = rng.normal(SEEDS, 5, 0, (64, 9))
    alone = rng.normal(SEEDS[2:3], 5, 0, (64, 9))
    shuffled = rng.normal(SEEDS[[3, 2, 0]], 5, 0, (64, 9))
    assert torch.equal(full[2], alone[0]) and torch.equal(full[2], shuffled[1])
    assert torch.equal(full, rng.normal(SEEDS, 5, 0, (64, 9)))
    u = rng.uniform(SEEDS, 5, 0, (1000,))
    for other in (rng.uniform(SEEDS, 6, 0, (1000,)), rng.uniform(SEEDS, 5, 1, (1000,)),
                  rng.uniform(SEEDS + 1, 5, 0, (1000,))):
        assert (u != other).float().mean() > 0.999
    assert torch.equal(rng.uniform(SEEDS, 2**40 + 5, 0, (10,)), rng.uniform(SEEDS, 2**40 + 5, 0, (10,)))
    assert not torch.equal(rng.uniform(SEEDS, 2**40 + 5, 0, (10,)), rng.uniform(SEEDS, 5, 0, (10,)))


def test_philox_words_are_uniform_32_bit_words():
    c0, k = torch.arange(12_500)[None, :], SEEDS[:, None] & 0xFFFFFFFF
    w = torch.cat(rng.philox(c0, torch.tensor(0), torch.tensor(1), torch.tensor(0), k, k), 1).numpy()
    assert w.min() >= 0 and w.max() < 2**32
    ones = np.stack([(w >> b) & 1 for b in range(32)]).mean((1, 2))  # each bit set half the time
    assert np.all(np.abs(ones - 0.5) < 4 * 0.5 / np.sqrt(w.size))


def test_uniforms_pass_ks_and_pair_chisquare():
    """KS against U(0, 1) per model, and a chi-square of successive pairs on a 10 x 10 grid (fixed seeds)."""
    u = rng.uniform(SEEDS, 11, 2, (200_000,)).numpy()
    assert u.min() > 0 and u.max() < 1
    for row in u:
        assert stats.kstest(row, "uniform").pvalue > 1e-3
        cells = (np.floor(row[0::2] * 10) * 10 + np.floor(row[1::2] * 10)).astype(int)
        assert stats.chisquare(np.bincount(cells, minlength=100)).pvalue > 1e-3


def test_normals_pass_ks_and_are_uncorrelated_across_models_and_steps():
    z = rng.normal(SEEDS, 1, 0, (200_000,)).double().numpy()
    z2 = rng.normal(SEEDS, 2, 0, (200_000,)).double().numpy()
    for row in z:
        assert stats.kstest(row, "norm").pvalue > 1e-3
    bound = 4 / np.sqrt(z.shape[1])
    assert abs(np.corrcoef(z[0], z[1])[0, 1]) < bound  # models
    assert abs(np.corrcoef(z[0], z2[0])[0, 1]) < bound  # steps
    assert abs(np.corrcoef(z[0, :-1], z[0, 1:])[0, 1]) < bound  # neighbours in one draw
    assert np.abs(z).max() <= 5.8  # the Box-Muller grid's cut (see zipfind.rng._draw)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_give_the_same_draws():
    """The same integer arithmetic: uniforms bit for bit; normals to float32 rounding."""
    assert torch.equal(rng.uniform(SEEDS, 4, 1, (3000,)), rng.uniform(SEEDS.cuda(), 4, 1, (3000,)).cpu())
    torch.testing.assert_close(rng.normal(SEEDS, 4, 1, (3000,)), rng.normal(SEEDS.cuda(), 4, 1, (3000,)).cpu(),
                               rtol=0, atol=4e-6)


@pytest.mark.parametrize("word", [0, 0xFFFFFFFF])
def test_extreme_words_stay_inside_the_open_interval(monkeypatch, word):
    """All-zero and all-one words map to the grid's end points, exactly representable and strictly in (0, 1)."""
    monkeypatch.setattr(rng, "philox", lambda c0, *a: (torch.full_like(c0 * a[-1], word),) * 4)
    u = rng.uniform(SEEDS, 1, 0, (8,), compiled=False)
    assert ((u > 0) & (u < 1)).all()
    assert torch.equal(u, torch.full_like(u, 2.0**-53 if word == 0 else 1 - 2.0**-53))
    z = rng.normal(SEEDS, 1, 0, (8,), compiled=False)  # float32 uniforms at 2^-24 or 1 - 2^-24
    assert torch.isfinite(z).all() and z.abs().max() <= 5.8
