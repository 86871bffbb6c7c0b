"""The task sampler against its definition: Zipf frequencies, bursty structure, evaluation sets, fractions."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from zipfind.config import TaskConfig
from zipfind.law import zipf_probs
from zipfind.tasks.classification import Draws, draw, make_table, probe_draws, sample


def _batch(tasks, b=512, seed=0, steps=1):
    table = make_table(tasks, [seed + i for i in range(len(tasks))], "cpu")
    seeds = torch.tensor([seed * 100 + i for i in range(len(tasks))])
    return table, [sample(table, draw(seeds, t, table, b)) for t in range(1, steps + 1)]


def test_zipf_probs_closed_form():
    p = zipf_probs(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([10, 10, 5]), 10).numpy()
    assert np.allclose(p[0], 0.1)
    h = sum(1 / k for k in range(1, 11))
    assert np.allclose(p[1], [1 / k / h for k in range(1, 11)])
    assert np.allclose(p[2, 5:], 0) and np.isclose(p[2].sum(), 1)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.0])
def test_iid_class_frequencies_match_zipf(alpha):
    """Non-bursty sequences: every item i.i.d. from p_k ∝ k^-alpha (chi-square at a fixed seed)."""
    K = 64
    task = TaskConfig(K=K, L=32, alpha=alpha, p_bursty=0.0)
    table, batches = _batch([task], b=512, steps=4)
    cls = torch.cat([b.classes.flatten() for b in batches]).numpy()
    counts = np.bincount(cls, minlength=K)
    expected = zipf_probs(torch.tensor([alpha]), torch.tensor([K]), K)[0].numpy() * len(cls)
    keep = expected >= 5  # pool the sparse tail into one bin
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    obs, exp = (obs, exp) if exp[-1] > 0 else (obs[:-1], exp[:-1])
    assert stats.chisquare(obs, exp).pvalue > 1e-3


@pytest.mark.parametrize("context", ["iid", "distinct"])
@pytest.mark.parametrize("B", [1, 2, 4, 8])
def test_bursty_sequences_hold_n_over_b_slots_b_times(B, context):
    """N/B slots, each tiled B times; "distinct" slots hold distinct classes, "iid" slots may share one."""
    task = TaskConfig(K=512, alpha=1.5, B=B, p_bursty=1.0, context=context)
    _, (batch,) = _batch([task], b=256)
    cls = batch.classes[0].numpy()  # [b, N+1]
    shared = 0
    for row in cls:
        ctx, q = row[:-1], row[-1]
        values, counts = np.unique(ctx, return_counts=True)
        assert all(c % B == 0 for c in counts) and counts.sum() == 8
        if context == "distinct":
            assert len(values) == 8 // B and set(counts) == {B}
        shared += len(values) < 8 // B
        assert q in values
    if context == "iid" and B == 4:  # two i.i.d. slots share a class with probability P2 = sum_k p_k^2
        P2 = float((zipf_probs(torch.tensor([1.5]), torch.tensor([512]), 512) ** 2).sum())
        assert stats.binomtest(shared, len(cls), P2).pvalue > 1e-3
    elif context == "iid" and B < 8:
        assert shared > 0.2 * len(cls)


@pytest.mark.parametrize("B", [1, 4])
def test_iid_law_query_class_follows_p(B):
    """Under the anchors' law the query's class is a uniformly chosen i.i.d. slot: its marginal is p itself
    (chi-square); under "distinct" it is flatter (the top class far less often than p_1)."""
    K, alpha = 64, 2.0
    p = zipf_probs(torch.tensor([alpha]), torch.tensor([K]), K)[0].numpy()
    tasks = [TaskConfig(K=K, L=32, alpha=alpha, B=B, p_bursty=1.0, context=c) for c in ("iid", "distinct")]
    _, batches = _batch(tasks, b=2048, steps=2)
    q = [torch.cat([b.classes[m, :, -1] for b in batches]).numpy() for m in range(2)]
    n = len(q[0])
    counts = np.bincount(q[0], minlength=K)
    exp = p * n
    keep = exp >= 5
    obs_, exp_ = np.append(counts[keep], counts[~keep].sum()), np.append(exp[keep], exp[~keep].sum())
    assert stats.chisquare(obs_, exp_).pvalue > 1e-3
    top_distinct = (q[1] == 0).mean()
    assert top_distinct < p[0] - 0.1 if B == 1 else top_distinct < p[0] - 0.03


def test_zipf_tail_is_resolved():
    """Inverse-CDF sampling resolves the Zipf tail: chi-square over ranks 256..K at alpha = 2.5, K = 2048
    (items of non-bursty sequences; ~1e-4 of the mass lies beyond rank 256, ~2e-5 beyond rank 750)."""
    K, alpha, n_seq = 2048, 2.5, 400_000
    task = TaskConfig(K=K, L=32, D=1, alpha=alpha, p_bursty=0.0)
    table, batches = _batch([task], b=n_seq, steps=3)
    cls = torch.cat([b.classes.flatten() for b in batches]).numpy()
    p = table.probs[0].numpy()
    lo = 255  # 0-based index of rank 256
    counts = np.bincount(cls, minlength=K)[lo:]
    exp = p[lo:] * cls.size
    assert counts.sum() > 300
    assert _pooled_chisquare(counts, exp) > 1e-3
    assert abs(counts.sum() - exp.sum()) < 4 * np.sqrt(exp.sum())  # the tail's total mass too


def test_bursty_contexts_hold_classes_with_the_successive_sampling_inclusion_law():
    """Under the "distinct" law a bursty context (B = 2, N = 8) holds 4 distinct classes drawn from p without replacement: class k is in it
    with the inclusion probability pi_k = sum over ordered 4-tuples containing k of p_a p_b/(1-p_a) ...; chi-square
    of the sampler's counts per Zipf rank against n * pi (exact, by enumerating the 32^4 tuples)."""
    K = 32
    task = TaskConfig(K=K, L=32, alpha=1.0, B=2, p_bursty=1.0, context="distinct")
    table, batches = _batch([task], b=4096, steps=2)
    present = np.zeros(K)
    n = 0
    for b in batches:
        cls = np.sort(b.classes[0, :, :-1].numpy(), axis=1)  # [b, N]
        first = np.ones_like(cls, dtype=bool)
        first[:, 1:] = cls[:, 1:] != cls[:, :-1]  # each distinct class once per context
        assert (first.sum(axis=1) == 4).all()
        present += np.bincount(cls[first], minlength=K)
        n += cls.shape[0]
    p = table.probs[0].numpy()
    a, b_, c, d = np.ix_(*[np.arange(K)] * 4)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = (p[a] * p[b_] / (1 - p[a]) * p[c] / (1 - p[a] - p[b_]) * p[d] / (1 - p[a] - p[b_] - p[c]))
    distinct = (a != b_) & (a != c) & (a != d) & (b_ != c) & (b_ != d) & (c != d)
    w = np.where(distinct, w, 0.0)  # [K, K, K, K] probability of each ordered draw
    assert w.sum() == pytest.approx(1.0)
    pi = np.array([w[(a == k) | (b_ == k) | (c == k) | (d == k)].sum() for k in range(K)])  # [K]
    assert pi.sum() == pytest.approx(4.0)
    assert stats.chisquare(present, n * pi).pvalue > 1e-3
    # and it tells apart a law that is close: four draws with replacement, renormalised to four classes
    with_repl = 1 - (1 - p) ** 4
    assert stats.chisquare(present, n * 4 * with_repl / with_repl.sum()).pvalue < 1e-3


def test_labels_and_tokens():
    task = TaskConfig(K=256, L=32, alpha=0.5, B=2, eps=0.0)
    table, (batch,) = _batch([task], b=64)
    cls = batch.classes[0]
    assert torch.equal(batch.target[0], cls[:, -1] % 32)
    assert torch.equal(batch.ctx_labels[0], cls[:, :-1] % 32)
    # eps = 0: items are exactly their class means; label tokens are the label vectors
    assert torch.allclose(batch.tokens[0, :, 0], table.means[0][cls[:, 0]])
    assert torch.allclose(batch.tokens[0, :, 1], table.labels[0][cls[:, 0] % 32])
    assert torch.allclose(batch.tokens[0, :, -1], table.means[0][cls[:, -1]])


def test_item_noise_has_the_stated_variance():
    eps = 0.5
    task = TaskConfig(K=64, eps=eps, D=63)
    table, (batch,) = _batch([task], b=2048)
    cls = batch.classes[0, :, 0]
    resid = batch.tokens[0, :, 0] * math.sqrt(1 + eps**2) - table.means[0][cls]  # = eps * eta
    assert abs(resid.var().item() * 63 / eps**2 - 1) < 0.02


def test_bursty_and_novel_fractions():
    p_b, p_n = 0.7, 0.2
    task = TaskConfig(K=2048, alpha=0.0, B=4, p_bursty=p_b, p_novel=p_n)
    _, batches = _batch([task], b=1024, steps=2)
    cls = torch.cat([b.classes[0] for b in batches]).numpy()
    novel = (cls < 0).all(1)
    assert ((cls < 0).any(1) == novel).all()
    n = len(cls)
    assert stats.binomtest(novel.sum(), n, p_n).pvalue > 1e-3
    # among known-class sequences, bursty ones have 2 classes x 4 copies (i.i.d. ones almost never do at K=2048)
    known = cls[~novel]
    bursty = np.array([sorted(np.unique(r[:-1], return_counts=True)[1]) == [4, 4] for r in known])
    assert stats.binomtest(bursty.sum(), len(known), p_b).pvalue > 1e-3


def test_b_zero_means_no_bursty_sequences():
    task = TaskConfig(K=2048, alpha=0.0, B=0, p_bursty=0.9)
    _, (batch,) = _batch([task], b=512)
    assert batch.ctx_match.any(-1).float().mean() < 0.02  # query class almost never in an i.i.d. context


def test_evaluation_sets():
    tasks = [TaskConfig(K=128, alpha=a, B=b) for a, b in [(0.0, 1), (2.0, 4), (1.0, 0)]]
    table = make_table(tasks, [1, 2, 3], "cpu")
    ic = sample(table, probe_draws(7, 256, table), "ic")
    ic2 = sample(table, probe_draws(7, 256, table), "ic2")
    iw = sample(table, probe_draws(7, 256, table), "iw")
    # IC: fresh classes, N distinct, one copy of the query's class, distinct random labels
    assert (ic.classes < 0).all() and (ic.ctx_match.sum(-1) == 1).all()
    assert all(len(set(r.tolist())) == 8 for r in ic.ctx_labels.flatten(0, 1))
    assert torch.equal(ic.target, (ic.ctx_labels * ic.ctx_match).sum(-1))
    # the IC set is the same draw for every model (fresh content identical)
    assert torch.equal(ic.tokens[0, :, 0::2], ic.tokens[1, :, 0::2])
    # IC2: known classes, N distinct, labels shifted by one
    assert (ic2.classes >= 0).all() and (ic2.ctx_match.sum(-1) == 1).all()
    assert torch.equal(ic2.target, (ic2.classes[..., -1] + 1) % 32)
    # IW: the query class never in the context
    assert not iw.ctx_match.any()
    assert torch.equal(iw.target, iw.classes[..., -1] % 32)


def _pooled_chisquare(counts: np.ndarray, expected: np.ndarray, min_expected: float = 5.0) -> float:
    """p-value of a chi-square over consecutive ranks pooled until each bin expects >= min_expected."""
    obs, exp, o, e = [], [], 0.0, 0.0
    for ci, ei in zip(counts, expected):
        o, e = o + ci, e + ei
        if e >= min_expected:
            obs.append(o), exp.append(e)
            o = e = 0.0
    obs[-1] += o
    exp[-1] += e
    return stats.chisquare(obs, np.array(exp) * sum(obs) / sum(exp)).pvalue


def test_zipf_tail_ranks_follow_p_given_a_tail_uniform():
    """The engine's float64 uniform -> inverse-CDF path, fed the engine's own uniforms conditioned on the Zipf tail
    (mapped beyond the mass of ranks 1..255), draws ranks 256..K with probability p_k / tail mass, rank by rank.
    A uniform on a float32 grid (spacing 6e-8 near 1, while p_k ~ 4e-9 at k = 2048) fails this."""
    K, alpha, N, n = 2048, 2.5, 8, 100_000
    task = TaskConfig(K=K, L=32, N=N, D=1, alpha=alpha, p_bursty=0.0)
    table = make_table([task], [0], "cpu")
    p = table.probs[0].numpy()
    tail = p[255:].sum()
    z = draw(torch.tensor([0]), 1, table, n)
    at = 3 + 2 * N  # where the i.i.d. uniforms start (see sample)
    u = z.u.clone()
    u[..., at : at + N + 1] = 1 - u[..., at : at + N + 1] * tail  # the top `tail` of (0, 1): ranks >= 256
    cls = sample(table, Draws(item=z.item, u=u, novel=None, lab=None)).classes.flatten().numpy()
    assert cls.min() >= 255
    counts = np.bincount(cls, minlength=K)[255:]
    assert _pooled_chisquare(counts, p[255:] / tail * cls.size) > 1e-3


@pytest.mark.parametrize("context", ["iid", "distinct"])
def test_chunk_mates_do_not_change_a_models_stream(context):
    a = TaskConfig(K=256, alpha=1.0, B=2, context=context)
    mate = TaskConfig(K=1024, alpha=0.0, B=4, p_novel=0.5, context="distinct" if context == "iid" else "iid")
    t1 = make_table([a], [5], "cpu")
    t2 = make_table([mate, a], [9, 5], "cpu")
    z1 = draw(torch.tensor([3]), 7, t1, 32)
    z2 = draw(torch.tensor([4, 3]), 7, t2, 32)
    b1, b2 = sample(t1, z1), sample(t2, z2)
    assert torch.equal(b1.classes[0], b2.classes[1])
    assert torch.allclose(b1.tokens[0], b2.tokens[1])


def test_sampling_without_replacement_has_the_successive_sampling_law():
    """Ordered pairs (c1, c2) of distinct classes: P = p_c1 * p_c2 / (1 - p_c1) (chi-square at a fixed seed)."""
    from zipfind.law import distinct

    K = 5
    table = make_table([TaskConfig(K=K, L=4, N=4, D=3, alpha=1.0)], [0], "cpu")
    u = torch.rand(1, 40000, 3, generator=torch.Generator().manual_seed(0))
    draws = distinct(table.law, u)[0].numpy()  # [40000, 3]
    assert (draws[:, 0] != draws[:, 1]).all() and (draws[:, 1] != draws[:, 2]).all() and (draws[:, 0] != draws[:, 2]).all()
    p = table.probs[0].numpy()
    pairs = draws[:, 0] * K + draws[:, 1]
    obs = np.bincount(pairs, minlength=K * K)
    exp = np.array([p[a] * p[b] / (1 - p[a]) if a != b else 0.0 for a in range(K) for b in range(K)]) * len(draws)
    keep = exp > 0
    assert obs[~keep].sum() == 0
    assert stats.chisquare(obs[keep], exp[keep]).pvalue > 1e-3
    # the third draw, given the first two: p_c / (1 - p_a - p_b)
    sel = (draws[:, 0] == 0) & (draws[:, 1] == 1)
    third = np.bincount(draws[sel, 2], minlength=K)[2:]
    assert stats.chisquare(third, p[2:] / p[2:].sum() * sel.sum()).pvalue > 1e-3
