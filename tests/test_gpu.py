"""Device-dependent checks, run by sims/gpu_check.sh on a CUDA machine (skipped without one)."""

import numpy as np
import pytest
import torch

from zipfind.bench import make_loop
from zipfind.config import parse_spec
from zipfind.train import setup_chunk, train_chunk, train_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TINY = {"task": {"K": 256, "N": 8, "L": 32, "D": 63}, "model": {"d_model": 64},
        "train": {"steps": 20, "batch": 64, "eval_every": 10, "n_probe": 64}}


def _spec(cells):
    return parse_spec({**TINY, "cells": cells})


def test_training_step_never_synchronises_with_the_host():
    spec = _spec([{"alpha": a, "B": b} for a in (0.0, 1.0, 2.0) for b in (1, 2, 4)]
                 + [{"alpha": 0.5, "B": 2, "p_novel": 0.3}])  # fresh classes for some models only
    ch = setup_chunk(spec.expand(), spec.model, spec.seed, "cuda")
    train_step(ch, 1)  # warm-up outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(2, 6):
            train_step(ch, step)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_batch_invariance_on_cuda():
    spec = _spec([{"alpha": 0.0, "B": 1, "lr": 3e-3}, {"alpha": 1.0, "B": 2, "lr": 1e-2},
                  {"alpha": 2.0, "B": 4, "lr": 1e-3}, {"alpha": 0.5, "B": 0, "p_novel": 0.3}])
    cells = spec.expand()
    together = train_chunk(cells, spec.model, spec.seed, "cuda")
    alone = train_chunk([cells[1]], spec.model, spec.seed, "cuda")
    a = together.metrics[together.metrics.cell == 1].sort_values(["step", "measure"])
    b = alone.metrics.sort_values(["step", "measure"])
    assert list(a.measure) == list(b.measure)
    np.testing.assert_allclose(a.value, b.value, rtol=1e-4, atol=1e-4)


def test_loop_baseline_matches_stacked_on_cuda():
    spec = _spec([{"alpha": 0.0, "B": 1}, {"alpha": 1.5, "B": 2}])
    cells = spec.expand()
    ch = setup_chunk(cells, spec.model, spec.seed, "cuda")
    loop = make_loop(cells, spec.model, spec.seed, ch)
    for step in range(1, 6):
        torch.testing.assert_close(train_step(ch, step), torch.stack(loop.step()), rtol=1e-3, atol=1e-4)


def test_a_diverging_model_is_isolated_on_cuda():
    good = [{"alpha": 0.0, "B": 1}, {"alpha": 1.0, "B": 2}]
    with_bad = train_chunk(_spec(good + [{"alpha": 0.5, "lr": 1e6}]).expand(), parse_spec(TINY).model, 0, "cuda")
    without = train_chunk(_spec(good).expand(), parse_spec(TINY).model, 0, "cuda")
    assert with_bad.diverged_at[2] is not None
    for c in (0, 1):
        a = with_bad.metrics[with_bad.metrics.cell == c].sort_values(["step", "measure"])
        b = without.metrics[without.metrics.cell == c].sort_values(["step", "measure"])
        np.testing.assert_allclose(a.value, b.value, rtol=1e-4, atol=1e-4)
