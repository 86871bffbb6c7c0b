"""Circuit scores of zipfind.measures on models whose answers are known.

- A hand-built two-layer induction circuit (previous-token head in layer 1, query -> matching-label head that
  copies the label in layer 2) must score as one, and ablating each of its parts must move the scores and the IC
  accuracy to the values the ablated mechanism implies (closed forms where attention becomes uniform).
- Attention that is exactly uniform (zero query weights) gives the chance baselines in closed form; randomly
  initialised models sit in a band around them whose width follows from the size of their attention logits.
- Every measure of M stacked models equals the same measure computed model by model.

Probe layout (zipfind.tasks.classification): x_1, l_1, ..., x_N, l_N, x_q, T = 2N + 1; items at even, labels at odd positions.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from zipfind.config import ModelConfig, TaskConfig
from zipfind.tasks.classification import Batch, TaskTable, make_table, probe_draws, sample
from zipfind.tasks.classification import evaluate
from zipfind.model import Params, init_params, param_shapes

TASK = TaskConfig(K=64, L=32, N=8, D=63, eps=0.1)  # Reddy's L, N, D, eps; K is irrelevant for the IC set
D, N, L = TASK.D, TASK.N, TASK.L
T = 2 * N + 1
N_PROBE = 512
PROBE_SEED = 5

# residual-stream layout of the hand-built circuit: separate subspaces, so every map is a block copy
CONTENT = slice(0, D)  # token content (items and labels), written by emb
POS = slice(D, D + T)  # one-hot position, written by pos
PREV = slice(D + T, 2 * D + T)  # content of the previous token, written by layer 1
OUT = slice(2 * D + T, 3 * D + T)  # content of the attended label, written by layer 2
ONE = 3 * D + T  # constant 1 at every position (a bias the layer-2 query uses)
IS_ITEM = ONE + 1  # 1 at even positions (items and the query), 0 at label positions
D_MODEL = IS_ITEM + 1  # 208
CIRCUIT_CFG = ModelConfig(d_model=D_MODEL, layers=2, heads=1, readout="linear")

PREV_GAIN = 30.0  # layer-1 logit of the previous position (all others 0): leaks < T e^-30 of the mass
MATCH_GAIN = 40.0  # layer-2 logit per unit <x_q, previous item>: same class ~1, other classes ~ N(0, 1/D)
ITEM_PENALTY = 60.0  # layer-2 logit subtracted at item positions, so only label tokens are keys
READ_GAIN = 20.0  # readout logit of the attended label


def perfect_induction(labels: torch.Tensor) -> Params:
    """Weights of an exact induction circuit for one task (labels [L, D] its label vectors); M = 1.

    Layer 1: every position i attends to i - 1 (q from position i, k from position i - 1, gain PREV_GAIN) and
    copies that token's content into PREV, so label token l_j carries its item x_j. Layer 2: the query attends
    to the label token whose PREV matches its own content (gain MATCH_GAIN; item positions are pushed down by
    ITEM_PENALTY, since position 0 sees only itself and would otherwise carry x_1 in PREV), and copies that
    label's content into OUT. The readout decodes OUT through the dual basis of the label vectors
    (pinv(labels) [D, L], so label l maps to exactly e_l): the plain Gram map <label_l, out> leaves cross-talk
    of size ~1/sqrt(D) on the other 31 labels, which the ReLU'd copying score counts against the head.
    """
    shapes = param_shapes(CIRCUIT_CFG, D, T, L)
    p = {name: torch.zeros(1, *shape) for name, (shape, _) in shapes.items()}
    root_dh = math.sqrt(D_MODEL)  # forward divides logits by sqrt(d_head); one head: d_head = d_model
    eye = torch.eye(D)
    p["emb"][0, :, CONTENT] = eye
    for t in range(T):
        p["pos"][0, t, POS.start + t] = 1.0
        p["pos"][0, t, ONE] = 1.0
        p["pos"][0, t, IS_ITEM] = float(t % 2 == 0)
        p["k0"][0, POS.start + t, POS.start + t] = 1.0
        if t >= 1:
            p["q0"][0, POS.start + t, POS.start + t - 1] = PREV_GAIN * root_dh
    p["v0"][0, CONTENT, PREV] = eye
    p["o0"][0] = torch.eye(D_MODEL)
    p["q1"][0, CONTENT, CONTENT] = MATCH_GAIN * root_dh * eye
    p["k1"][0, PREV, CONTENT] = eye
    p["q1"][0, ONE, ONE] = -ITEM_PENALTY * root_dh
    p["k1"][0, IS_ITEM, ONE] = 1.0
    p["v1"][0, CONTENT, OUT] = eye
    p["o1"][0] = torch.eye(D_MODEL)
    p["out_w"][0, OUT] = READ_GAIN * torch.linalg.pinv(labels)  # [D, L]: labels @ pinv = I_L
    return p


def ic_probes(table: TaskTable) -> dict[str, Batch]:
    return {"ic": sample(table, probe_draws(PROBE_SEED, N_PROBE, table), "ic")}


def scalars(out: dict[str, torch.Tensor], m: int = 0) -> dict[str, float]:
    return {k: float(v[m]) for k, v in out.items()}


# chance baselines of uniform causal attention
PREFIX_CHANCE = 1 / T  # the query row spreads over T positions, one of them the target
PREV_CHANCE = sum(1 / (2 * j + 2) for j in range(N)) / N  # label row i = 2j + 1 spreads over i + 1 positions
COPY_CHANCE = 0.0  # the own label's share of the raises is 1/L when labels are exchangeable: rescaled to 0


@pytest.fixture(scope="module")
def circuit():
    table = make_table([TASK], [11], "cpu")
    return perfect_induction(table.labels[0]), ic_probes(table)


def test_perfect_induction_circuit_scores_as_one(circuit):
    params, probes = circuit
    out, ic_correct = evaluate(params, CIRCUIT_CFG, probes)
    s = scalars(out)
    assert s["prev_token_L1H1"] >= 0.99 and s["prev_token_score"] == s["prev_token_L1H1"]
    assert s["prefix_match_L2H1"] >= 0.95
    assert s["copying_L2H1"] >= 0.9
    assert s["induction_score"] == pytest.approx(s["prefix_match_L2H1"])
    assert s["ic_acc"] >= 0.99 and s["ic_ctx_acc"] == 1.0 and s["ic_loss"] < 0.05
    assert ic_correct.shape == (1, N_PROBE) and ic_correct.dtype == torch.bool
    assert ic_correct.float().mean().item() == pytest.approx(s["ic_acc"])
    # layer 1 is not an induction head: its OV writes nothing the readout sees; its query row attends to l_N,
    # which follows the query's class with probability 1/N in the IC set
    assert s["copying_L1H1"] == -1.0
    assert s["prefix_match_L1H1"] == pytest.approx(probes["ic"].ctx_match[0, :, -1].float().mean().item(), abs=1e-4)


def test_ablating_layer2_output_leaves_attention_but_kills_copying_and_accuracy(circuit):
    params, probes = circuit
    full = scalars(evaluate(params, CIRCUIT_CFG, probes)[0])
    s = scalars(evaluate({**params, "o1": torch.zeros_like(params["o1"])}, CIRCUIT_CFG, probes)[0])
    assert s["ic_acc"] <= 1 / N  # logits all 0: argmax is label 0, right with probability ~1/L
    ic = probes["ic"]  # so accuracy and context-label accuracy are exactly those of always answering label 0
    assert s["ic_acc"] == pytest.approx((ic.target[0] == 0).float().mean().item(), abs=1e-7)
    assert s["ic_ctx_acc"] == pytest.approx((ic.ctx_labels[0] == 0).any(-1).float().mean().item(), abs=1e-7)
    assert s["copying_L2H1"] == -1.0 and s["induction_score"] == 0.0
    assert s["prefix_match_L2H1"] == pytest.approx(full["prefix_match_L2H1"], abs=1e-6)  # QK untouched by OV


def test_ablating_layer2_query_gives_uniform_attention_and_some_context_label(circuit):
    """q1 = 0: the query row is uniform (prefix match exactly 1/T) and the output is the mean of the context
    labels plus item noise, so the model picks *some* context label: Reddy's slow phase (IC acc ~ 1/N)."""
    params, probes = circuit
    s = scalars(evaluate({**params, "q1": torch.zeros_like(params["q1"])}, CIRCUIT_CFG, probes)[0])
    assert s["prefix_match_L2H1"] == pytest.approx(PREFIX_CHANCE, abs=1e-6)
    assert s["copying_L2H1"] >= 0.9  # OV still copies labels
    assert s["ic_ctx_acc"] >= 0.9
    assert abs(s["ic_acc"] - 1 / N) <= 0.05  # binomial sd over 512 probes: 0.015


def test_ablating_previous_token_head_leaves_layer2_uniform_over_labels(circuit):
    """o0 = 0: label tokens carry no item, so layer 2 sees only the item-position penalty and spreads its mass
    evenly over the N label tokens: prefix match exactly 1/N, IC accuracy ~ 1/N."""
    params, probes = circuit
    s = scalars(evaluate({**params, "o0": torch.zeros_like(params["o0"])}, CIRCUIT_CFG, probes)[0])
    assert s["prev_token_L1H1"] >= 0.99  # the attention pattern is still there; only its output is gone
    assert s["prefix_match_L2H1"] == pytest.approx(1 / N, abs=1e-6)
    assert s["ic_ctx_acc"] >= 0.9
    assert abs(s["ic_acc"] - 1 / N) <= 0.05


def test_uniform_attention_gives_closed_form_baselines():
    cfg = ModelConfig(d_model=64, layers=2, heads=2)
    table = make_table([TASK], [3], "cpu")
    params = init_params(cfg, D, T, L, [1], [1.0], "cpu")
    params = {k: torch.zeros_like(v) if k in ("q0", "q1") else v for k, v in params.items()}
    s = scalars(evaluate(params, cfg, ic_probes(table))[0])
    for tag in ("L1H1", "L1H2", "L2H1", "L2H2"):
        assert s[f"prev_token_{tag}"] == pytest.approx(PREV_CHANCE, abs=1e-6)
        assert s[f"prefix_match_{tag}"] == pytest.approx(PREFIX_CHANCE, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_model_scores_near_chance(seed):
    """At init (d_model = 64, weights N(0, 1/fan_in)) the residual vectors have |h|^2 ~ 2 (emb + pos; ~2.4 after
    layer 1, whose output is an average of values), so an attention logit q.k / sqrt(d) has sd ~ |h|^2 / d ~ 0.03
    (measured 0.025-0.040 on the query row) and each attention weight is (1/n)(1 + O(sd)). A 10% relative band is
    ~3 sd for a single weight, before averaging over label rows and probes (seeds 0..4 deviate by at most 2%)."""
    cfg = ModelConfig()
    table = make_table([TASK], [100 + seed], "cpu")
    params = init_params(cfg, D, T, L, [seed], [1.0], "cpu")
    s = scalars(evaluate(params, cfg, ic_probes(table))[0])
    assert s["prefix_match_L2H1"] == pytest.approx(PREFIX_CHANCE, rel=0.1)
    assert s["prev_token_L1H1"] == pytest.approx(PREV_CHANCE, rel=0.1)
    # copying at init: see test_random_models_copy_at_chance_on_average (one seed's share is too noisy to pin)
    # no head copies beyond chance: the induction score is 0, or chance prefix matching when noise puts the
    # copying share a hair above 1/L
    assert s["induction_score"] in (0.0, s["prefix_match_L2H1"]) and s["induction_score"] <= 1.1 * PREFIX_CHANCE
    assert s["ic_acc"] < 1 / N


def _slice(params: Params, m: int) -> Params:
    return {k: v[m : m + 1].clone() for k, v in params.items()}


N_STACK = 128  # probe sequences per set in the stacking checks (equality must hold for any batch)


def _stack_check(cfg: ModelConfig, tasks: list[TaskConfig], seeds: list[int], params: Params) -> None:
    """evaluate() on the M stacked models equals evaluate() on each alone (its own one-model task table)."""
    kinds = ("ic", "ic2", "iw")
    table = make_table(tasks, seeds, "cpu")
    draws = probe_draws(PROBE_SEED, N_STACK, table)
    out, ic_correct = evaluate(params, cfg, {k: sample(table, draws, k) for k in kinds})
    for m, (task, seed) in enumerate(zip(tasks, seeds)):
        one = make_table([task], [seed], "cpu")
        d1 = probe_draws(PROBE_SEED, N_STACK, one)
        out1, ic1 = evaluate(_slice(params, m), cfg, {k: sample(one, d1, k) for k in kinds})
        assert out1.keys() == out.keys()
        for k in out:
            a, b = out[k][m : m + 1].double(), out1[k].double()
            assert ((a - b).abs() <= 1e-5 * (1 + b.abs())).all(), f"model {m}: {k}: stacked {a} vs alone {b}"
        assert torch.equal(ic_correct[m : m + 1], ic1)


def _share(copying: torch.Tensor) -> torch.Tensor:
    """Undo the copying score's rescaling: the attended label's share of the raises (1/L at chance)."""
    c = 1.0 / L
    return torch.where(copying >= 0, c + copying * (1 - c), (copying + 1) * c)


def test_random_models_copy_at_chance_on_average():
    """A random readout makes the L label logits exchangeable, so over initialisations the attended label's share
    of the raises has mean exactly 1/L (copying score 0 = COPY_CHANCE): 32 stacked random models, mean within
    3 standard errors of 1/L, and the standard error small enough (< 0.1/L) for that to mean something."""
    cfg = ModelConfig()
    table = make_table([TASK] * 32, [100] * 32, "cpu")  # one task, 32 initialisations
    params = init_params(cfg, D, T, L, list(range(32)), [1.0] * 32, "cpu")
    share = _share(evaluate(params, cfg, ic_probes(table))[0]["copying_L2H1"]).double()  # [32]
    se = share.std() / math.sqrt(share.numel())
    assert abs(float(share.mean()) - 1 / L) < 3 * float(se)
    assert float(se) < 0.1 / L and float(share.std()) > 0
    assert _share(torch.tensor([COPY_CHANCE])).item() == pytest.approx(1 / L)


def test_stacked_measures_equal_one_model_at_a_time_with_circuit():
    """The hand-built circuit stacked with two random models of the same shape (different init scales)."""
    tasks = [TASK, replace(TASK, alpha=1.0, B=2, K=128), replace(TASK, alpha=0.5, B=4, eps=0.3)]
    seeds = [11, 12, 13]
    table = make_table(tasks, seeds, "cpu")
    rand = init_params(CIRCUIT_CFG, D, T, L, [21, 22], [1.0, 3.0], "cpu")
    hand = perfect_induction(table.labels[0])
    params = {k: torch.cat([hand[k], rand[k]]) for k in hand}
    _stack_check(CIRCUIT_CFG, tasks, seeds, params)


def test_stacked_measures_equal_one_model_at_a_time_mlp_layernorm():
    """Two heads, LayerNorm (per-model gains perturbed) and the MLP readout, three different tasks."""
    cfg = ModelConfig(d_model=32, layers=2, heads=2, readout="mlp", mlp_hidden=32, layernorm=True)
    tasks = [replace(TASK, alpha=0.0, B=1), replace(TASK, alpha=1.5, B=2, K=256), replace(TASK, alpha=0.8, B=8)]
    seeds = [31, 32, 33]
    params = init_params(cfg, D, T, L, [41, 42, 43], [1.0, 2.0, 0.5], "cpu")
    g = torch.Generator().manual_seed(7)
    for k in params:
        if k.startswith("ln"):
            params[k] = params[k] + 0.3 * torch.randn(params[k].shape, generator=g)
    _stack_check(cfg, tasks, seeds, params)


def test_prefix_match_averages_only_over_sequences_with_a_target(circuit):
    """Relabel half the queries as a class absent from the context (tokens, hence attention, unchanged): the
    score averages over the sequences that keep a target, so a perfect head still scores ~1, not ~1/2."""
    params, probes = circuit
    ic = probes["ic"]
    classes = ic.classes.clone()
    classes[:, ::2, -1] = -1000  # [M, b, N+1]: no context item has this class
    cut = Batch(tokens=ic.tokens, target=ic.target, ctx_labels=ic.ctx_labels, classes=classes)
    full = scalars(evaluate(params, CIRCUIT_CFG, probes)[0])
    s = scalars(evaluate(params, CIRCUIT_CFG, {"ic": cut})[0])
    assert s["prefix_match_L2H1"] >= 0.95
    assert s["prefix_match_L2H1"] == pytest.approx(full["prefix_match_L2H1"], abs=0.01)


def test_copying_ignores_a_label_independent_logit_offset(circuit):
    """Let layer 2 also write a constant that the readout turns into +c on every label logit: the copying score
    (mean-subtracted before the ReLU, as Olsson's) and the predictions must not change."""
    params, probes = circuit
    full, correct = evaluate(params, CIRCUIT_CFG, probes)
    shifted = {k: v.clone() for k, v in params.items()}
    shifted["v1"][0, ONE, IS_ITEM] = 1.0  # every token has ONE = 1, so the head adds 1 to IS_ITEM at the query
    shifted["out_w"][0, IS_ITEM] = 5.0 * READ_GAIN  # -> +5 READ_GAIN on every logit (the raise of the own label: 1)
    s, correct2 = evaluate(shifted, CIRCUIT_CFG, probes)
    assert float(s["copying_L2H1"][0]) == pytest.approx(float(full["copying_L2H1"][0]), abs=1e-5)
    assert torch.equal(correct, correct2)


def test_prev_token_score_counts_layer1_heads_only(circuit):
    """Move the previous-token pattern to layer 2 and make layer 1 uniform: the model-level score is layer 1's
    (the head the induction circuit needs comes first), i.e. the uniform baseline, although L2H1 scores ~1."""
    params, probes = circuit
    moved = {**params, "q1": params["q0"], "k1": params["k0"], "q0": torch.zeros_like(params["q0"])}
    s = scalars(evaluate(moved, CIRCUIT_CFG, probes)[0])
    assert s["prev_token_L2H1"] >= 0.99
    assert s["prev_token_L1H1"] == pytest.approx(PREV_CHANCE, abs=1e-6)
    assert s["prev_token_score"] == s["prev_token_L1H1"]


def _reference_scores(params: Params, cfg: ModelConfig, batch: Batch, attn, resid, m: int) -> dict[str, float]:
    """The circuit scores of model m written out from their definitions, head by head, in float64 numpy."""
    import numpy as np

    P = {k: v[m].double().numpy() for k, v in params.items()}
    A, R = attn[m].double().numpy(), resid[m].double().numpy()  # [layers, H, b, T, T], [layers, b, T, d]
    match = batch.ctx_match[m].numpy()  # [b, N]
    has = match.any(-1)  # [b]
    labels = batch.ctx_labels[m].numpy()  # [b, N]
    H, dh = cfg.heads, cfg.d_model // cfg.heads

    def ln(x, w, b):
        x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
        return x * w + b

    def read(h):
        if cfg.readout == "linear":
            return h @ P["out_w"] + P["out_b"]
        z = np.maximum(h @ P["r1_w"] + P["r1_b"], 0)
        z = np.maximum(z @ P["r2_w"] + P["r2_b"], 0)
        return z @ P["r3_w"] + P["r3_b"]

    out = {}
    for l in range(cfg.layers):
        for h in range(H):
            tag = f"L{l + 1}H{h + 1}"
            a = A[l, h]  # [b, T, T]
            out[f"prev_token_{tag}"] = np.mean([a[:, 2 * j + 1, 2 * j].mean() for j in range(N)])
            mass = sum(a[:, T - 1, 2 * j + 1] * match[:, j] for j in range(N))  # [b]
            out[f"prefix_match_{tag}"] = mass[has].mean()
            cols = slice(h * dh, (h + 1) * dh)
            shares = []
            for j in range(N):
                x = R[l, :, 2 * j + 1]  # [b, d] residual entering layer l at label token j
                if cfg.layernorm:
                    x = ln(x, P[f"ln{l}_w"], P[f"ln{l}_b"])
                o = x @ P[f"v{l}"][:, cols] @ P[f"o{l}"][cols, :]  # [b, d] this head's output
                logit = read(o) - read(np.zeros(cfg.d_model))  # [b, L]
                raise_ = np.maximum(logit - logit.mean(-1, keepdims=True), 0)
                own = raise_[np.arange(len(x)), labels[:, j]]
                shares.append(own / np.maximum(raise_.sum(-1), 1e-12))
            share, chance = np.mean(shares), 1 / logit.shape[-1]
            out[f"copying_{tag}"] = ((share - chance) / (1 - chance) if share >= chance else share / chance - 1)
    return out


def test_scores_match_a_head_by_head_reference():
    """Random two-head models with LayerNorm and the MLP readout (the batched code's hardest path), on IC probes
    where a quarter of the queries have no target: every per-head score equals the definition, model by model."""
    from zipfind.model import forward

    cfg = ModelConfig(d_model=32, layers=2, heads=2, readout="mlp", mlp_hidden=32, layernorm=True)
    table = make_table([TASK, replace(TASK, alpha=1.0)], [51, 52], "cpu")
    ic = sample(table, probe_draws(PROBE_SEED, 64, table), "ic")
    classes = ic.classes.clone()
    classes[:, ::4, -1] = -1000
    ic = Batch(tokens=ic.tokens, target=ic.target, ctx_labels=ic.ctx_labels, classes=classes)
    params = init_params(cfg, D, T, L, [61, 62], [2.0, 3.0], "cpu")  # large init: patterns far from uniform
    g = torch.Generator().manual_seed(8)
    for k in params:
        if k.startswith("ln"):
            params[k] = params[k] + 0.3 * torch.randn(params[k].shape, generator=g)
    out, _ = evaluate(params, cfg, {"ic": ic})
    with torch.no_grad():
        res = forward(params, ic.tokens, cfg, internals=True)
    for m in range(2):
        ref = _reference_scores(params, cfg, ic, res.attn, res.resid, m)
        for k, v in ref.items():
            assert float(out[k][m]) == pytest.approx(v, abs=1e-5), (m, k)
        prev1 = [ref[f"prev_token_L1H{h + 1}"] for h in range(2)]
        assert float(out["prev_token_score"][m]) == pytest.approx(max(prev1), abs=1e-5)
        cand = [ref[f"prefix_match_L2H{h + 1}"] if ref[f"copying_L2H{h + 1}"] > 0 else 0.0 for h in range(2)]
        assert float(out["induction_score"][m]) == pytest.approx(max(cand), abs=1e-5)
