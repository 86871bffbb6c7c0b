"""The token task (zipfind.tasks.tokens): sampler structure and law, stacking invariances, probes' closed forms,
and a hand-built induction circuit on Olsson's repeated-tokens probe."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from zipfind.config import ModelConfig, SpecError, parse_spec
from zipfind.english import english_words, zipf_exponent
from zipfind.model import forward, init_params
from zipfind.tasks import slice_batch
from zipfind.tasks import tokens as tk
from zipfind.theory import zipf as z
from zipfind.train import train_chunk

BASE = {"kind": "tokens", "K": 64, "V": 6, "word_len": 3, "N": 6}


def _table(cells, seeds=None):
    tasks = [parse_spec({"task": {**BASE, **c}}).task for c in cells]
    return tk.make_table(tasks, seeds or list(range(1, len(tasks) + 1)), "cpu")


def _docs(table, b, seed=0, kind="train"):
    return tk.sample(table, tk.draw(torch.arange(seed, seed + table.M), 1, table, b), kind)


def _words(table, docs, m):
    """Per document of model m: the letter strings of its words, read back from the token ids."""
    SEP, BOS, PAD = tk.special_tokens(table.V)
    out = []
    for row in docs.tokens[m].tolist():
        assert row[0] == BOS
        body = row[1:]
        body = body[: len(body) - body[::-1].index(SEP)] if SEP in body else body
        assert PAD not in body and all(t == PAD for t in row[1 + len(body):])
        out.append([tuple(w) for w in _split(body, SEP)])
    return out


def _split(seq, sep):
    word, words = [], []
    for t in seq:
        if t == sep:
            words.append(word)
            word = []
        else:
            word.append(t)
    assert not word, "every word ends with SEP"
    return words


def test_documents_have_n_words_each_followed_by_sep_then_padding():
    table = _table([{"word_len": 2, "word_len_max": 4, "K": 30}])
    docs = _docs(table, 200)
    lex = {tuple(w[w < table.V].tolist()) for w in table.words[0]}
    for words in _words(table, docs, 0):
        assert len(words) == table.N and all(2 <= len(w) <= 4 for w in words) and set(words) <= lex
    assert docs.tokens.shape[-1] == 1 + 6 * 5 and torch.equal(docs.target[..., :-1].clamp_min(-1),
                                                              torch.where(docs.tokens[..., 1:] == table.V + 2, -1,
                                                                          docs.tokens[..., 1:]))


@pytest.mark.parametrize("context", ["iid", "distinct"])
def test_bursty_documents_hold_each_word_a_multiple_of_b_times(context):
    table = _table([{"B": 3, "p_bursty": 1.0, "context": context, "alpha": 1.0}])
    counts = [pd.Series(ws).value_counts().to_numpy() for ws in _words(table, _docs(table, 300), 0)]
    assert all((c % 3 == 0).all() for c in counts)
    if context == "distinct":
        assert all(len(c) == 2 for c in counts)  # N/B = 2 distinct words, B copies each


def test_fresh_words_are_never_in_the_lexicon_and_uniform_outside_it():
    table = _table([{"p_novel": 1.0, "B": 1, "K": 100, "V": 4, "word_len": 4}])  # 100 of 256 strings taken
    lex = {tuple(w.tolist()) for w in table.words[0, :100]}
    seen = [w for ws in _words(table, _docs(table, 2000), 0) for w in ws]
    assert not lex & set(seen)
    counts = pd.Series(seen).value_counts()
    assert len(counts) == 256 - 100  # every outside string is reachable
    assert stats.chisquare(counts.to_numpy()).pvalue > 1e-3


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.5])
def test_iid_documents_follow_zipf_by_rank(alpha):
    table = _table([{"alpha": alpha, "p_bursty": 0.0}])
    ranks = _docs(table, 3000).words[0].reshape(-1).numpy()
    observed = np.bincount(ranks, minlength=64)
    expected = table.law.probs[0].numpy() * ranks.size
    assert stats.chisquare(observed, expected).pvalue > 1e-3


@pytest.mark.parametrize("context", ["iid", "distinct"])
def test_distinct_words_per_bursty_document_match_the_theory(context):
    """One law: the theory's expected number of distinct words, against the token sampler itself."""
    alpha, K, N, B = 1.2, 64, 6, 2
    table = _table([{"alpha": alpha, "B": B, "p_bursty": 1.0, "context": context}])
    words = _docs(table, 20000).words[0]
    distinct = 1 + (words.sort(-1).values.diff(dim=-1) != 0).sum(-1).double()
    want = float(z.expected_distinct_classes(alpha, K, N, 1.0, B, context))
    se = distinct.std().item() / math.sqrt(len(distinct))
    assert abs(distinct.mean().item() - want) <= 4 * se + 1e-12  # distinct: exactly N/B, se = 0


def test_english_lexicon_is_wordfreqs_top_words_spelled_in_letters():
    spec = parse_spec({"task": {"kind": "tokens", "lexicon": "english", "V": 26, "K": 200, "word_len": 2,
                                "word_len_max": 7, "frequencies": "english"}})
    table = tk.make_table([spec.task], [0], "cpu")
    names, freqs = english_words(200, 2, 7)
    spelled = ["".join(chr(ord("a") + c) for c in w.tolist() if c < 26) for w in table.words[0]]
    assert spelled == list(names) and names[:3] == ("the", "to", "and")
    np.testing.assert_allclose(table.law.probs[0].numpy(), freqs / freqs.sum())
    assert 0.7 < zipf_exponent(freqs) < 1.3  # English is close to Zipf's alpha = 1


def test_spec_errors_name_the_key_and_the_other_kind():
    with pytest.raises(SpecError) as e:
        parse_spec({"task": {**BASE, "L": 8}})
    assert e.value.problems[0].startswith("task.L: only for [task] kind = 'classification'")
    with pytest.raises(SpecError) as e:
        parse_spec({"task": {**BASE, "K": 200, "V": 3, "word_len": 4}})
    assert e.value.problems == ["K: 200 is not allowed; 81 strings of 4-4 letters over V = 3 cannot hold K words "
                                "and as many novel ones; need K <= 40"]


TOK_SPEC = {"task": {**BASE, "p_novel": 0.1}, "model": {"d_model": 16, "heads": 2},
            "train": {"steps": 12, "batch": 8, "eval_every": 6, "n_probe": 16},
            "cells": [{"alpha": 0.0, "B": 1}, {"alpha": 1.0, "B": 2, "lr": 1e-2}, {"alpha": 2.0, "B": 3, "K": 40},
                      {"alpha": 0.5, "B": 0, "p_novel": 0.0, "context": "distinct"}]}


def test_token_task_batch_invariance_and_determinism():
    spec = parse_spec(TOK_SPEC)
    cells = spec.expand()
    together = train_chunk(cells, spec.model, spec.seed)
    pd.testing.assert_frame_equal(together.metrics, train_chunk(cells, spec.model, spec.seed).metrics)
    for cell in (cells[1], cells[2]):
        alone = train_chunk([cell], spec.model, spec.seed)
        a = together.metrics[together.metrics.cell == cell.index].sort_values(["step", "measure"])
        b = alone.metrics.sort_values(["step", "measure"])
        assert list(a.measure) == list(b.measure)
        np.testing.assert_allclose(a.value, b.value, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(together.ic_correct[cell.index], alone.ic_correct[cell.index], atol=1e-6)
    measures = set(together.metrics.measure)
    assert {"ic_acc", "iw_acc", "icl_score", "induction_score", "prefix_match_L2H2", "rep_loss"} <= measures


def test_stacked_token_gradients_equal_per_model():
    spec = parse_spec(TOK_SPEC)
    cfg = spec.model
    table = _table([{"alpha": 0.0}, {"alpha": 1.0, "B": 2}, {"alpha": 2.0, "K": 40}])
    s = tk.shape(spec.task)
    params = init_params(cfg, s.n_in, s.T, s.n_out, [4, 5, 6], [1.0, 0.5, 2.0], "cpu")
    docs = _docs(table, 8)
    stacked = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    grads = torch.autograd.grad(tk.batch_loss(stacked, cfg, docs).sum(), list(stacked.values()))
    for m in range(3):
        alone = {k: v[m : m + 1].clone().requires_grad_(True) for k, v in params.items()}
        one = slice_batch(docs, slice(m, m + 1))
        ref = torch.autograd.grad(tk.batch_loss(alone, cfg, one).sum(), list(alone.values()))
        for g, r in zip(grads, ref):
            torch.testing.assert_close(g[m : m + 1], r, rtol=1e-5, atol=1e-6)


def test_uniform_predictor_and_uniform_attention_give_the_closed_form_chance_levels():
    """Zero readout: every loss is ln(V + 3) and icl_score 0; zero queries: attention is uniform over the causal
    prefix, so the previous-token score is the mean of 1 / (p + 1) and prefix matching the mean share of targets."""
    cfg = ModelConfig(d_model=16, heads=1)
    table = _table([{}])
    s = tk.shape(parse_spec({"task": BASE}).task)
    params = init_params(cfg, s.n_in, s.T, s.n_out, [3], [1.0], "cpu")
    for k in ("out_w", "out_b", "q0", "q1"):
        params[k].zero_()
    probes = tk.make_probes(table, 0, 64)
    out, per_doc = tk.evaluate(params, cfg, probes)
    for k in ("ic_loss", "iw_loss", "val_loss", "rep_loss"):
        assert out[k].item() == pytest.approx(math.log(table.V + 3), rel=1e-6)
    assert out["icl_score"].item() == pytest.approx(0.0, abs=1e-6)
    n = (table.T - 1) // 2
    assert out["prev_token_L1H1"].item() == pytest.approx(np.mean([1 / (p + 1) for p in range(1, 2 * n + 1)]),
                                                          rel=1e-5)
    tok = probes["rep"].tokens[0].numpy()
    share = [np.sum(tok[i, :p] == tok[i, p]) / (p + 1) for i in range(len(tok)) for p in range(n + 1, 2 * n + 1)]
    assert out["prefix_match_L2H1"].item() == pytest.approx(np.mean(share), rel=1e-5)
    assert per_doc.shape == (1, 64) and out["ic_acc"].item() == pytest.approx(per_doc.mean().item())


def _induction_circuit(V: int, T: int, c: float = 40.0) -> tuple[ModelConfig, dict]:
    """A 2-layer attention-only model built by hand: L1 moves each token into a 'previous token' subspace of the
    next position; L2 attends from token x to positions whose previous token is x and copies their token out."""
    nv = V + 3
    tok, pos, prev, outs = 0, nv, nv + T, 2 * nv + T  # subspace offsets
    d = 3 * nv + T
    cfg = ModelConfig(d_model=d, heads=1, layers=2)
    p = {k: torch.zeros(1, *shape) for k, (shape, _) in
         __import__("zipfind.model", fromlist=["x"]).param_shapes(cfg, nv, T, nv).items()}
    p["emb"][0, :, tok:tok + nv] = torch.eye(nv)
    p["pos"][0, :, pos:pos + T] = torch.eye(T)
    s = c * math.sqrt(d)
    for i in range(T - 1):  # L1: query at position i+1 matches key at position i
        p["q0"][0, pos + i + 1, pos + i + 1] = s
        p["k0"][0, pos + i, pos + i + 1] = 1.0
    p["v0"][0, tok:tok + nv, prev:prev + nv] = torch.eye(nv)
    p["o0"][0, prev:prev + nv, prev:prev + nv] = torch.eye(nv)
    p["q1"][0, tok:tok + nv, tok:tok + nv] = s * torch.eye(nv)  # L2: current token ...
    p["k1"][0, prev:prev + nv, tok:tok + nv] = torch.eye(nv)  # ... against each position's previous token
    p["v1"][0, tok:tok + nv, outs:outs + nv] = torch.eye(nv)
    p["o1"][0, outs:outs + nv, outs:outs + nv] = torch.eye(nv)
    p["out_w"][0, outs:outs + nv] = 10 * torch.eye(nv)
    return cfg, p


def test_hand_built_induction_circuit_scores_one_on_repeated_tokens():
    table = _table([{"V": 12, "K": 64}])
    cfg, params = _induction_circuit(table.V, table.T)
    out, _ = tk.evaluate(params, cfg, tk.make_probes(table, 0, 64))
    assert out["prev_token_L1H1"].item() > 0.97
    assert out["prefix_match_L2H1"].item() > 0.97 and out["copying_L2H1"].item() > 0.97
    assert out["induction_score"].item() > 0.97
    assert out["prefix_match_L1H1"].item() < 0.3 and out["copying_L1H1"].item() < 0
    # in-context copying, nothing in the weights; a one-token lookup is ambiguous where fresh words share letters
    assert out["ic_acc"].item() > 0.6 and out["iw_acc"].item() < 0.3


def test_forward_on_token_ids_equals_one_hot_vectors():
    cfg = ModelConfig(d_model=16, heads=2)
    table = _table([{}, {"alpha": 1.0}])
    s = tk.shape(parse_spec({"task": BASE}).task)
    params = init_params(cfg, s.n_in, s.T, s.n_out, [1, 2], [1.0, 1.0], "cpu")
    docs = _docs(table, 4)
    ids = forward(params, docs.tokens, cfg, every_position=True).logits
    hot = forward(params, torch.nn.functional.one_hot(docs.tokens, s.n_in).float(), cfg, every_position=True).logits
    torch.testing.assert_close(ids, hot, rtol=1e-5, atol=1e-6)
    last = forward(params, docs.tokens, cfg).logits
    torch.testing.assert_close(last, ids[:, :, -1], rtol=1e-5, atol=1e-6)


def test_token_sweep_end_to_end_through_the_cli(tmp_path):
    """A token sweep writes the same onsets columns as a classification sweep, plus `task`; the figures and the
    theory take it (the alphabet V standing for the label space L)."""
    import tomllib

    from typer.testing import CliRunner

    import zipfind
    from zipfind.cli import app
    from zipfind.columns import ONSET_COLUMNS
    from zipfind.config import dump_toml
    from zipfind.theory.models import task_inputs

    raw = {**TOK_SPEC, "name": "tok", "grid": {"alpha": [0.0, 2.0], "B": [2, 3]}}
    raw.pop("cells")
    spec_path = tmp_path / "tok.toml"
    spec_path.write_text(dump_toml(raw))
    assert tomllib.loads(spec_path.read_text())["task"]["kind"] == "tokens"
    runner = CliRunner()
    res = runner.invoke(app, ["sweep", str(spec_path), "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    run = zipfind.load(tmp_path / "run")
    assert list(run.onsets.columns[-len(ONSET_COLUMNS):]) == list(ONSET_COLUMNS)
    assert (run.onsets["task"] == "tokens").all() and "L" not in run.onsets and "V" in run.onsets
    mapped = task_inputs(run.onsets)
    assert (mapped["L"] == run.onsets["V"]).all() and (mapped["B"] == run.onsets["B"] - 1).all()
    for args in (["plot", "phase-diagram"], ["plot", "curves", "--measures", "ic_acc,icl_score"]):
        res = runner.invoke(app, [*args, str(tmp_path / "run"), "-o", str(tmp_path / f"{args[1]}.png")])
        assert res.exit_code == 0, res.output
        assert (tmp_path / f"{args[1]}.png").stat().st_size > 10_000


def test_task_comparison_draws_a_panel_per_run_with_fitted_curves_and_english():
    from zipfind.plots.tasks import task_comparison

    def table(task, frequencies=None):
        rows = []
        for i, (a, b) in enumerate([(a, b) for a in (0.0, 1.0, 2.0) for b in (2, 4)]):
            rows.append({"cell": i, "task": task, "alpha": a, "B": b, "K": 256, "N": 8, "V": 8, "L": 32,
                         "onset_step": 300.0 * (1 + a) / b if a < 2 else np.nan, "onset_lo": 250.0,
                         "onset_hi": 400.0, "censored": a >= 2, "budget": 2800.0, "frequencies": "zipf"})
        rows.append({**rows[0], "cell": 6, "frequencies": "english", "onset_step": 500.0})
        return pd.DataFrame(rows)

    value = lambda v: {"value": v, "lo": None, "hi": None, "fixed": False}  # noqa: E731
    fits = [{"model": "M0", "params": {"c0": value(6.0), "c_N": value(1.0), "c_B": value(-1.0),
                                       "c_alpha": value(0.5), "c_K": value(0.0), "sigma": value(0.2)},
             "heldout_grouped_median_abs_log_err": 0.1}]
    fig = task_comparison({"classification": (table("classification"), None), "tokens": (table("tokens"), fits)},
                          english_alpha=1.05)
    axes = {ax.get_label(): ax for ax in fig.axes if ax.get_label().startswith("tasks:")}
    assert set(axes) == {"tasks:classification", "tasks:tokens"}
    gids = {a.get_gid() for a in axes["tasks:tokens"].get_children()}
    assert {"english-alpha", "censored-cell", "english-onset", "fit:M0"} <= gids
    assert "fit:M0" not in {a.get_gid() for a in axes["tasks:classification"].get_children()}
    curve = next(a for a in axes["tasks:tokens"].get_lines() if a.get_gid() == "fit:M0")
    assert np.all(np.diff(curve.get_ydata()) > 0)  # c_alpha > 0: later onsets at larger alpha


def test_spec_refuses_lexicons_that_leave_no_fresh_word_or_exceed_exact_draws():
    """Every word length keeps a string outside the lexicon (else a "fresh" word could be a lexicon word), and
    word codes stay within the 2^52 integers a float64 uniform indexes exactly (else fresh words are not uniform)."""
    with pytest.raises(SpecError) as e:
        parse_spec({"task": {**BASE, "V": 4, "word_len": 2, "word_len_max": 4, "K": 100}})
    assert e.value.problems == ["K: 100 is not allowed; the 16 strings of 2 letters could all be lexicon words, "
                                "leaving no fresh word of that length; need K < 16 or a longer word_len"]
    with pytest.raises(SpecError) as e:
        parse_spec({"task": {**BASE, "V": 64, "word_len": 10, "K": 8}})
    assert e.value.problems[0].startswith("word_len: 10 is not allowed; (V + 1)^length must stay <= 2^52")
    table = _table([{"V": 4, "word_len": 2, "word_len_max": 4, "K": 15, "p_novel": 1.0}])
    lex = {tuple(w[w < 4].tolist()) for w in table.words[0, :15]}
    assert not lex & {w for ws in _words(table, _docs(table, 500), 0) for w in ws}


def test_masked_means_ignore_non_finite_values_outside_the_mask():
    x = torch.tensor([[1.0, float("nan"), 3.0, float("inf")]])
    mask = torch.tensor([[True, False, True, False]])
    assert tk._masked_mean(x, mask, 1).item() == 2.0
    assert math.isnan(tk._masked_mean(x, torch.zeros_like(mask), 1).item())
