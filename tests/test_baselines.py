"""Each accuracy baseline against its closed form, and against what the task's own sampler gives."""

import numpy as np
import pytest
import torch
from scipy import special, stats

from zipfind.baselines import (
    BASELINES, baselines_for, ctx_chance, ic_chance, ic_copy, iw_above_majority, iw_majority,
)
from zipfind.config import TaskConfig
from zipfind.tasks.classification import make_table, probe_draws, sample


def hurwitz_majority(alpha: float, K: int, L: int) -> float:
    """Label 0 holds classes 0, L, 2L, ... (ranks 1, L+1, ...): sum_j (jL+1)^-a / H_{K,a} by Hurwitz zeta, for
    K a multiple of L and a > 1 (the sums converge)."""
    J = K // L
    head = L**-alpha * (special.zeta(alpha, 1 / L) - special.zeta(alpha, J + 1 / L))
    return head / (special.zeta(alpha, 1) - special.zeta(alpha, K + 1))


@pytest.mark.parametrize("alpha", [1.5, 2.0, 3.0])
@pytest.mark.parametrize("K,L", [(2048, 32), (512, 32), (256, 64)])
def test_iw_majority_closed_form(alpha, K, L):
    assert iw_majority(alpha, K, L) == pytest.approx(hurwitz_majority(alpha, K, L), rel=1e-10)


def test_iw_majority_limits_and_the_issue_number():
    assert iw_majority(0.0, 2048, 32) == pytest.approx(1 / 32)  # uniform classes: every label holds K/L of them
    assert iw_majority(0.0, 2050, 32) == pytest.approx(65 / 2050)  # labels 0 and 1 hold one class more
    assert iw_majority(2.0, 2048, 32) == pytest.approx(0.6090, abs=5e-4)  # the "0.61 at alpha = 2" of the panels
    assert iw_majority(40.0, 2048, 32) == pytest.approx(1.0)
    assert iw_above_majority([0.6090, 1.0, 0.3], iw_majority(2.0, 2048, 32)).tolist() == pytest.approx(
        [0.0, 1.0, (0.3 - 0.609) / 0.391], abs=2e-3)


def test_ic_levels_closed_forms_and_registry():
    assert (ic_chance(32), ic_copy(8), ctx_chance(8, 32)) == (1 / 32, 1 / 8, 1 / 4)
    row = {"alpha": 1.0, "K": 2048, "L": 32, "N": 8}
    assert baselines_for("ic_acc", row) == {"ic_chance": 1 / 32, "ic_copy": 1 / 8}
    assert baselines_for("final_iw_acc", row) == {"iw_majority": iw_majority(1.0, 2048, 32)}
    assert baselines_for("ic_ctx_acc", row) == {"ctx_chance": 0.25}
    assert baselines_for("induction_score", row) == {} and baselines_for("iw_acc", {"L": 32}) == {}
    assert len({b.name for b in BASELINES}) == len(BASELINES)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.0])
def test_baselines_are_what_the_sampler_gives(alpha):
    """On the probe sets of zipfind.tasks.classification: answering label 0 on IW scores iw_majority (binomial test); on IC the
    query's label is one of N distinct context labels (copying one at random: 1/N) and a random label lies in the
    context with probability N/L."""
    task = TaskConfig(K=256, L=32, N=8, alpha=alpha)
    table = make_table([task], [0], "cpu")
    n = 4096
    iw = sample(table, probe_draws(1, n, table), "iw")
    hits = int((iw.target == 0).sum())
    assert stats.binomtest(hits, n, iw_majority(alpha, 256, 32)).pvalue > 1e-3
    if alpha > 0:  # label 0 (class 0) is then the majority
        assert np.bincount(iw.target.flatten().numpy(), minlength=32).argmax() == 0
    ic = sample(table, probe_draws(2, n, table), "ic")
    labels = ic.ctx_labels[0]  # [n, N]
    assert all(len(set(r)) == 8 for r in labels.tolist())
    assert bool((labels == ic.target[0][:, None]).sum(-1).eq(1).all())  # the query's label: exactly one of N
    random_label = torch.randint(0, 32, (n,), generator=torch.Generator().manual_seed(3))
    in_ctx = int((labels == random_label[:, None]).any(-1).sum())
    assert stats.binomtest(in_ctx, n, ctx_chance(8, 32)).pvalue > 1e-3
    assert stats.binomtest(int((random_label == ic.target[0]).sum()), n, ic_chance(32)).pvalue > 1e-3
