"""The stacked engine: per-model gradients, optimizer equivalence, batch invariance, determinism, isolation."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from zipfind.config import ModelConfig, parse_spec
from zipfind.tasks.classification import draw, make_table, sample
from zipfind.model import forward, init_params
from zipfind.optim import StackedOptimizer
from zipfind.train import checkpoint_steps, train_chunk

TINY = {"task": {"K": 128, "N": 4, "L": 8, "D": 15}, "model": {"d_model": 16},
        "train": {"steps": 12, "batch": 16, "eval_every": 6, "n_probe": 32}}


def _spec(grid=None, cells=None, **over):
    raw = {k: dict(v) for k, v in TINY.items()}
    for sec, vals in over.items():
        raw[sec].update(vals)
    if grid:
        raw["grid"] = grid
    if cells:
        raw["cells"] = cells
    return parse_spec(raw)


@pytest.mark.parametrize("cfg", [ModelConfig(d_model=16, heads=2),
                                 ModelConfig(d_model=16, layers=3, layernorm=True, readout="mlp", mlp_hidden=8)])
def test_stacked_gradients_equal_per_model(cfg):
    tasks = [parse_spec({"task": {"K": 64, "N": 4, "L": 8, "D": 15, "alpha": a, "B": b}}).task
             for a, b in [(0.0, 1), (1.0, 2), (2.0, 4)]]
    table = make_table(tasks, [1, 2, 3], "cpu")
    params = init_params(cfg, 15, 9, 8, [4, 5, 6], [1.0, 0.5, 2.0], "cpu")
    batch = sample(table, draw(torch.arange(3), 1, table, 8))

    def loss_of(p, tokens, target):
        logits = forward(p, tokens, cfg).logits
        return F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(len(tokens), -1).mean(1)

    stacked = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    grads = torch.autograd.grad(loss_of(stacked, batch.tokens, batch.target).sum(), list(stacked.values()))
    for m in range(3):
        alone = {k: v[m : m + 1].clone().requires_grad_(True) for k, v in params.items()}
        ref = torch.autograd.grad(loss_of(alone, batch.tokens[m : m + 1], batch.target[m : m + 1]).sum(),
                                  list(alone.values()))
        for g, r in zip(grads, ref):
            torch.testing.assert_close(g[m : m + 1], r, rtol=1e-5, atol=1e-6)


def test_full_attention_rows_agree_with_query_only_path():
    cfg = ModelConfig(d_model=16, heads=2)
    table = make_table([parse_spec({"task": {"K": 64, "N": 4, "L": 8, "D": 15}}).task], [1], "cpu")
    params = init_params(cfg, 15, 9, 8, [4], [1.0], "cpu")
    batch = sample(table, draw(torch.tensor([0]), 1, table, 8))
    fast, full = forward(params, batch.tokens, cfg), forward(params, batch.tokens, cfg, internals=True)
    torch.testing.assert_close(fast.logits, full.logits)
    assert full.attn.shape == (1, 2, 2, 8, 9, 9)
    assert torch.allclose(full.attn.sum(-1), torch.ones(())) and (full.attn.triu(1) == 0).all()


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
def test_optimizer_matches_torch_per_model(kind):
    M = 3
    gen = torch.Generator().manual_seed(0)
    P = torch.randn(M, 5, 4, generator=gen)
    lr, wd, clip = torch.tensor([1e-2, 3e-3, 1e-1]), torch.tensor([0.0, 0.1, 0.01]), torch.tensor([0.0, 0.5, 1.0])
    params = {"w": P.clone()}
    opt = StackedOptimizer(params, kind, lr, torch.full((M,), 0.9), torch.full((M,), 0.999), wd, clip)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[kind]
    refs = [P[m].clone().requires_grad_(True) for m in range(M)]
    extra = {"momentum": 0.9} if kind == "sgd" else {}
    ropts = [cls([refs[m]], lr=lr[m].item(), weight_decay=wd[m].item(), **extra) for m in range(M)]
    for _ in range(20):
        G = torch.randn(M, 5, 4, generator=gen)
        opt.step([G.clone()], torch.ones(M, dtype=torch.bool))
        for m in range(M):
            refs[m].grad = G[m].clone()
            if clip[m] > 0:
                torch.nn.utils.clip_grad_norm_([refs[m]], clip[m].item())
            ropts[m].step()
    for m in range(M):
        torch.testing.assert_close(params["w"][m], refs[m].detach(), rtol=1e-5, atol=1e-5)


def test_inactive_models_are_frozen_and_nan_gradients_do_not_leak():
    M = 3
    params = {"w": torch.ones(M, 4)}
    opt = StackedOptimizer(params, "adam", torch.full((M,), 0.1), torch.full((M,), 0.9), torch.full((M,), 0.999),
                           torch.zeros(M), torch.zeros(M))
    g = torch.ones(M, 4)
    g[1] = float("nan")
    opt.step([g], torch.tensor([True, True, False]))
    assert torch.allclose(params["w"][0], torch.full((4,), 0.9))
    assert torch.equal(params["w"][1:], torch.ones(2, 4))  # NaN gradient: frozen; inactive: frozen


def test_checkpoint_schedule():
    assert checkpoint_steps(1000, 100) == [0, 1, 2, 4, 8, 16, 32, 64] + list(range(100, 1001, 100))
    assert checkpoint_steps(250, 100) == [0, 1, 2, 4, 8, 16, 32, 64, 100, 200, 250]


def _cell_frame(res, cell):
    m = res.metrics
    return m[m.cell == cell].drop(columns="cell").sort_values(["step", "measure"]).reset_index(drop=True)


def test_batch_invariance_and_determinism():
    """A cell trained among others with different alpha/B/lr gives the metrics it gets alone, to 1e-5."""
    spec = _spec(cells=[{"alpha": 0.0, "B": 1, "lr": 3e-3}, {"alpha": 1.0, "B": 2, "lr": 1e-2},
                        {"alpha": 2.0, "B": 4, "lr": 1e-3}, {"alpha": 0.5, "B": 0, "lr": 3e-3, "p_novel": 0.3},
                        {"alpha": 1.0, "B": 2, "lr": 1e-2, "K": 64}])
    cells = spec.expand()
    together = train_chunk(cells, spec.model, spec.seed)
    again = train_chunk(cells, spec.model, spec.seed)
    pd.testing.assert_frame_equal(together.metrics, again.metrics)  # bitwise deterministic on CPU
    for cell in (cells[1], cells[4]):
        alone = train_chunk([cell], spec.model, spec.seed)
        a, b = _cell_frame(together, cell.index), _cell_frame(alone, cell.index)
        assert list(a.measure) == list(b.measure)
        np.testing.assert_allclose(a.value, b.value, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(together.ic_correct[cell.index], alone.ic_correct[cell.index])


def test_a_diverging_model_is_flagged_and_isolated():
    good = [{"alpha": 0.0, "B": 1}, {"alpha": 1.0, "B": 2}]
    spec_with = _spec(cells=good + [{"alpha": 0.5, "B": 1, "lr": 1e6}])
    spec_without = _spec(cells=good)
    res_with = train_chunk(spec_with.expand(), spec_with.model, spec_with.seed)
    res_without = train_chunk(spec_without.expand(), spec_without.model, spec_without.seed)
    assert res_with.diverged_at[2] is not None and res_with.diverged_at[0] is None
    d = res_with.metrics.query("cell == 2 and measure == 'diverged'")
    assert d.value.iloc[-1] == 1.0 and d.value.iloc[0] == 0.0
    for c in (0, 1):
        a, b = _cell_frame(res_with, c), _cell_frame(res_without, c)
        pd.testing.assert_frame_equal(a, b)


def test_metrics_table_is_tidy():
    spec = _spec(grid={"alpha": [0.0, 1.0]})
    res = train_chunk(spec.expand(), spec.model, spec.seed)
    m = res.metrics
    assert list(m.columns) == ["cell", "step", "measure", "value"]
    steps = sorted(m.step.unique())
    assert steps == checkpoint_steps(12, 6)
    for name in ["ic_acc", "ic2_acc", "iw_acc", "ic_loss", "ic_ctx_acc", "induction_score", "prev_token_score",
                 "prefix_match_L2H1", "prev_token_L1H1", "copying_L2H1", "diverged"]:
        assert len(m[m.measure == name]) == 2 * len(steps), name
    assert len(m[m.measure == "train_loss"]) == 2 * (len(steps) - 1)  # no training loss before step 1
    assert res.ic_correct[0].shape == (len(steps), 32)
    ic = m[(m.cell == 0) & (m.measure == "ic_acc")].value.to_numpy()
    np.testing.assert_allclose(ic, res.ic_correct[0].mean(1), rtol=1e-6)


def test_blocked_passes_change_no_result():
    """Passing the stack through forward/backward in blocks of models (the CPU cache path) is exact."""
    from zipfind.train import setup_chunk, train_step

    spec = _spec(cells=[{"alpha": a, "B": b, "lr": lr} for a, b, lr in
                        [(0.0, 1, 3e-3), (1.0, 2, 1e-2), (2.0, 4, 1e-3), (0.5, 1, 1e6), (1.5, 2, 3e-3)]])
    cells = spec.expand()
    whole, blocked = (setup_chunk(cells, spec.model, spec.seed) for _ in range(2))
    whole.block, blocked.block = len(cells), 2
    for step in range(1, 6):
        torch.testing.assert_close(train_step(whole, step), train_step(blocked, step), equal_nan=True)
    for k in whole.params:
        torch.testing.assert_close(whole.params[k], blocked.params[k], rtol=1e-5, atol=1e-6, equal_nan=True)
    assert torch.equal(whole.active, blocked.active) and not whole.active[3]  # the lr = 1e6 model diverged


@pytest.mark.parametrize("kind", ["classification", "tokens"])
def test_compiled_loss_step_equals_the_eager_step(kind):
    """`train_step` with the task's loss under torch.compile (what `zipfind bench --compile` times) takes the
    eager steps: losses and weights to 1e-5 over 4 steps."""
    from zipfind.train import setup_chunk, train_step

    task = {"kind": "tokens", "K": 64, "V": 6, "word_len": 3, "N": 6} if kind == "tokens" else {"K": 64}
    spec = parse_spec({"name": "c", "task": task, "model": {"d_model": 16, "heads": 2},
                       "train": {"batch": 8, "steps": 4, "eval_every": 2, "lr": 1e-2},
                       "grid": {"alpha": [0.0, 1.0, 2.0]}})
    cells = spec.expand()
    eager, comp = (setup_chunk(cells, spec.model, spec.seed) for _ in range(2))
    loss_fn = torch.compile(comp.task.loss)
    for step in range(1, 5):
        torch.testing.assert_close(train_step(comp, step, loss_fn), train_step(eager, step), rtol=1e-5, atol=1e-5)
    for k in eager.params:
        torch.testing.assert_close(comp.params[k], eager.params[k], rtol=1e-5, atol=1e-5)
