"""The token task: next-token prediction on bursty Zipfian documents of multi-token words, batched over M models.

A direct port of the classification task, so the theory's inputs keep their meaning (theory/tokens.md):
- **Lexicon**: K words, word k (0-based Zipf rank) a fixed string of letters 0..V-1: random strings of
  word_len..max_word_len letters (each model's own, from its task seed; V small, so a word's first letters do not
  identify it and its continuation must be read from the weights or the context), or wordfreq's top English
  words spelled in a-z (V = 26). Frequencies: Zipf(alpha) by rank (zipfind.law, the classification task's law),
  or wordfreq's English frequencies.
- **Documents**: BOS, then N words each followed by SEP, padded with PAD to T = 1 + N (max_word_len + 1). With
  probability p_bursty (B > 0) the N words fill N/B slots drawn under the context law (zipfind.law.slots),
  B copies each, shuffled; otherwise N i.i.d. words. With probability p_novel the document is made of fresh
  words (never in the lexicon) in the bursty layout with B' = max(B, 1).
- **Loss**: next-token cross-entropy at every position whose next token is not padding.

Probe sets (one fixed draw each, shared by all models) and their measures:
- ``ic``: N/2 fresh words, each twice, shuffled: accuracy and loss on the non-first letters of second
  occurrences (pure in-context; per-document accuracy, averaged, is ``ic_acc``).
- ``iw``: N i.i.d. lexicon words: accuracy and loss on the non-first letters of first occurrences (pure
  in-weights); ``iw_acc_common`` (ranks < K/16) and ``iw_acc_rare`` (ranks >= K/2) split it by frequency.
- ``doc``: documents of the training law: ``val_loss``, and Olsson's ``icl_score``: the loss on the last word's
  tokens minus the loss on the second word's (negative: later tokens are easier, the context helps).
- ``rep``: Olsson's repeated random tokens, BOS r_1..r_n r_1..r_n: ``rep_acc``/``rep_loss`` on r_2..r_n of the
  second copy, and per head: previous-token (attention from each token to the one before it), prefix-matching
  (attention from each second-half token to the tokens that follow earlier occurrences of it; ideal mass 1)
  and copying (zipfind.measures.copy_scores at the first half, raising its own token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import rng
from ..config import Cell, ModelConfig, TaskConfig
from ..english import english_words, spell
from ..law import ZipfLaw, bursty_layout, derive_seed, make_law, slots, without, zipf_probs
from ..measures import copy_scores, head_scores
from ..model import Params, forward
from .base import Shape, Task

Kind = Literal["train", "ic", "iw", "doc", "rep"]
PROBE_KINDS: tuple[Kind, ...] = ("ic", "iw", "doc", "rep")
COMMON_FRACTION, RARE_FRACTION = 1 / 16, 1 / 2  # iw_acc_common: ranks < K/16; iw_acc_rare: ranks >= K/2


def special_tokens(V: int) -> tuple[int, int, int]:
    """(SEP, BOS, PAD) ids after the V letters; the vocabulary has V + 3 tokens."""
    return V, V + 1, V + 2


def shape(t: TaskConfig) -> Shape:
    return Shape(n_in=t.V + 3, T=1 + t.N * (t.max_word_len + 1), n_out=t.V + 3)


@dataclass(frozen=True)
class TokenTable:
    """Stacked lexicons, word laws and document parameters of M models, on the training device."""

    words: Tensor  # [M, K_max, Lmax] letters of every word (PAD beyond its length and beyond K)
    lengths: Tensor  # [M, K_max] letters per word (1 beyond K, never drawn)
    codes: Tensor  # [M, n_len, K_max] sorted base-V codes of the words of each length; 2^62 pads
    n_of_len: Tensor  # [M, n_len] words of each length word_len..Lmax
    law: ZipfLaw
    B: Tensor  # [M] long
    p_bursty: Tensor  # [M]
    p_novel: Tensor  # [M]
    needs_novel: bool  # some model has p_novel > 0 (host-side, so sampling never syncs)
    N: int
    V: int
    Lmin: int
    Lmax: int

    @property
    def M(self) -> int:
        return self.words.shape[0]

    @property
    def T(self) -> int:
        return 1 + self.N * (self.Lmax + 1)


SENTINEL = 2**62


def _random_lexicon(t: TaskConfig, seed: int) -> list[tuple[int, ...]]:
    """K distinct random strings, lengths uniform on word_len..max_word_len, letters uniform (CPU, own seed)."""
    g = torch.Generator().manual_seed(seed)
    words: dict[tuple[int, ...], None] = {}
    while len(words) < t.K:
        n = 2 * (t.K - len(words))
        lens = torch.randint(t.word_len, t.max_word_len + 1, (n,), generator=g).tolist()
        letters = torch.randint(0, t.V, (n, t.max_word_len), generator=g).tolist()
        for ln, row in zip(lens, letters):
            words.setdefault(tuple(row[:ln]), None)
            if len(words) == t.K:
                break
    return list(words)


def lexicon(t: TaskConfig, seed: int) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """One model's words (letter tuples, by rank) and word probabilities [K] (float64)."""
    if t.lexicon == "english":
        names, freqs = english_words(t.K, t.word_len, t.max_word_len)
        words = [tuple(spell(w)) for w in names]
    else:
        words, freqs = _random_lexicon(t, seed), None
    if t.frequencies == "english":
        p = np.asarray(freqs, dtype=np.float64)
        return words, p / p.sum()
    p = zipf_probs(torch.tensor([t.alpha]), torch.tensor([t.K]), t.K)[0].numpy()
    return words, p


def make_table(tasks: Sequence[TaskConfig], seeds: Sequence[int], device: torch.device | str) -> TokenTable:
    """Each model's lexicon (from its own task seed, on the CPU, so every device agrees) and word law."""
    t0 = tasks[0]
    N, V, Lmin, Lmax = t0.N, t0.V, min(t.word_len for t in tasks), t0.max_word_len
    assert all((t.N, t.V, t.max_word_len) == (N, V, Lmax) for t in tasks), "stacked tasks must share N, V, Lmax"
    _, _, PAD = special_tokens(V)
    M, K_max, n_len = len(tasks), max(t.K for t in tasks), Lmax - Lmin + 1
    words = torch.full((M, K_max, Lmax), PAD, dtype=torch.long)
    lengths = torch.ones(M, K_max, dtype=torch.long)
    codes = torch.full((M, n_len, K_max), SENTINEL, dtype=torch.long)
    n_of_len = torch.zeros(M, n_len, dtype=torch.long)
    probs = torch.zeros(M, K_max, dtype=torch.float64)
    powers = [V**j for j in range(Lmax)]
    for m, (t, s) in enumerate(zip(tasks, seeds)):
        ws, p = lexicon(t, s)
        probs[m, : t.K] = torch.from_numpy(p)
        by_len: dict[int, list[int]] = {}
        for k, w in enumerate(ws):
            words[m, k, : len(w)] = torch.tensor(w)
            lengths[m, k] = len(w)
            by_len.setdefault(len(w), []).append(sum(c * pw for c, pw in zip(w, powers)))
        for ln, cs in by_len.items():
            if len(cs) >= V**ln:  # validation rules it out (zipfind.config._check_tokens); fresh words need room
                raise ValueError(f"every {ln}-letter string is a lexicon word: no fresh word of that length")
            codes[m, ln - Lmin, : len(cs)] = torch.tensor(sorted(cs))
            n_of_len[m, ln - Lmin] = len(cs)
    col = lambda name, dt=torch.float32: torch.tensor([getattr(t, name) for t in tasks], dtype=dt, device=device)
    K = col("K", torch.long)
    return TokenTable(words=words.to(device), lengths=lengths.to(device), codes=codes.to(device),
                      n_of_len=n_of_len.to(device), law=make_law(probs.to(device), K, [t.context for t in tasks]),
                      B=col("B", torch.long), p_bursty=col("p_bursty"), p_novel=col("p_novel"),
                      needs_novel=any(t.p_novel > 0 for t in tasks), N=N, V=V,
                      Lmin=Lmin, Lmax=Lmax)


# -- sampling ------------------------------------------------------------------------------------------------------

def n_uniforms(N: int) -> int:
    """Uniforms per document: bursty, novel, N slot items, N shuffle keys, N i.i.d. words, N fresh lengths,
    N fresh strings (every model draws all of them, so its stream never depends on its chunk-mates)."""
    return 2 + 5 * N


def draw(seeds: Tensor, step: int, table: TokenTable, b: int) -> Tensor:
    """Step `step`'s uniforms of every model, [M, b, n] float64, model m's from its data seed seeds[m] only
    (zipfind.rng: one counter-based call for the whole stack)."""
    return rng.uniform(seeds, step, 0, (b, n_uniforms(table.N)))


def probe_uniforms(seed: int, n: int, table: TokenTable, width: int | None = None) -> Tensor:
    """One fixed probe set of uniforms shared by every model (drawn on the CPU, so the same on any device);
    [M, n, width]."""
    u = rng.uniform(torch.tensor([seed]), 0, 0, (n, width or n_uniforms(table.N)))
    return u.to(table.words.device).expand(table.M, n, -1)


def fresh_words(table: TokenTable, u_len: Tensor, u_code: Tensor) -> tuple[Tensor, Tensor]:
    """Fresh words, never in the model's lexicon: u_len, u_code [M, b, n] -> letters [M, b, n, Lmax], lengths.

    A fresh word's length is a uniformly chosen lexicon word's; its string is uniform over the strings of that
    length outside the lexicon: r uniform on [0, V^l - n_l) is mapped past the sorted lexicon codes c_i
    (code = r + #{i : c_i - i <= r}), exactly, without rejection.
    """
    M, b, n = u_len.shape
    V, Lmin, Lmax = table.V, table.Lmin, table.Lmax
    pick = torch.minimum((u_len * table.law.K[:, None, None]).long(), (table.law.K - 1)[:, None, None])
    length = table.lengths.gather(1, pick.view(M, -1)).view(M, b, n)  # [M, b, n]
    code = torch.zeros(M, b * n, dtype=torch.long, device=u_len.device)
    i = torch.arange(table.codes.shape[-1], device=u_len.device)
    for j, ln in enumerate(range(Lmin, Lmax + 1)):
        free = (V**ln - table.n_of_len[:, j]).to(torch.float64)[:, None]  # [M, 1] strings outside the lexicon
        r = torch.minimum((u_code.reshape(M, -1) * free).long(), free.long() - 1)  # [M, b*n]
        g = table.codes[:, j] - torch.where(table.codes[:, j] < SENTINEL, i, torch.zeros_like(i))  # non-decreasing
        c = r + torch.searchsorted(g, r, right=True)
        code = torch.where(length.view(M, -1) == ln, c, code)
    powers = torch.tensor([V**j for j in range(Lmax)], device=u_len.device)
    letters = (code.view(M, b, n, 1) // powers) % V  # [M, b, n, Lmax]
    _, _, PAD = special_tokens(V)
    letters = torch.where(torch.arange(Lmax, device=u_len.device) < length[..., None], letters, PAD)
    return letters, length


@dataclass(frozen=True)
class Docs:
    """Documents of M models and, per position p, what its target (the token at p + 1) is."""

    tokens: Tensor  # [M, b, T] token ids
    target: Tensor  # [M, b, T] next token, -1 where there is none (padding, the last position)
    inner: Tensor  # [M, b, T] bool: the target is a word's letter after its first
    repeat: Tensor  # [M, b, T] bool: the target's word occurred earlier in the document
    slot: Tensor  # [M, b, T] word slot 0..N-1 of the target (-1: none)
    rank: Tensor  # [M, b, T] lexicon rank of the target's word (-1: fresh word or none)
    rel_rank: Tensor  # [M, b, T] rank / K (float; -1: fresh word or none)
    words: Tensor  # [M, b, N] word of each slot: lexicon rank, or -1 - (code) for a fresh word
    V: int  # letters (token ids 0..V-1; then SEP, BOS, PAD)


def assemble(table: TokenTable, letters: Tensor, length: Tensor, key: Tensor) -> Docs:
    """Lay out words as documents: letters [M, b, N, Lmax], length [M, b, N], key [M, b, N] word identity
    (>= 0 lexicon rank, < 0 fresh) -> BOS w_1 SEP w_2 SEP ... PAD."""
    M, b, N, Lmax = letters.shape
    T, dev = table.T, letters.device
    SEP, BOS, PAD = special_tokens(table.V)
    j = torch.arange(Lmax + 1, device=dev)  # position in a word's block (its letters, then SEP)
    block = torch.cat([letters, torch.full_like(letters[..., :1], PAD)], -1)  # [M, b, N, Lmax+1]
    block = torch.where(j == length[..., None], SEP, block)
    valid = j <= length[..., None]  # [M, b, N, Lmax+1]
    start = 1 + torch.cumsum(length + 1, -1) - (length + 1)  # [M, b, N] position of each word's first letter
    pos = torch.where(valid, start[..., None] + j, T)  # [M, b, N, Lmax+1]; T: a dump slot
    tpos = torch.where(valid, pos - 1, T)  # the position whose target each block position is
    seen = (key[..., :, None] == key[..., None, :]).tril(-1).any(-1)  # [M, b, N] word occurred earlier
    n_idx = torch.arange(N, device=dev).expand(M, b, N)
    attrs = {  # what a block position is, assigned to the position before it (whose target it is)
        "inner": (j >= 1) & (j < length[..., None]),
        "repeat": seen[..., None].expand_as(block),
        "slot": n_idx[..., None].expand_as(block),
        "rank": torch.where(key >= 0, key, -1)[..., None].expand_as(block),
        "rel_rank": torch.where(key >= 0, key / table.law.K.view(M, 1, 1), -1.0)[..., None].expand_as(block),
    }
    flat = lambda x: x.reshape(M, b, -1)  # noqa: E731
    tokens = torch.full((M, b, T + 1), PAD, dtype=torch.long, device=dev)
    tokens.scatter_(2, flat(pos), flat(block))
    tokens[..., 0] = BOS
    tokens = tokens[..., :T]
    out = {}
    for name, a in attrs.items():
        fill = False if a.dtype == torch.bool else -1
        buf = torch.full((M, b, T + 1), fill, dtype=a.dtype, device=dev)
        out[name] = buf.scatter_(2, flat(tpos), flat(a))[..., :T]
    nxt = torch.cat([tokens[..., 1:], torch.full_like(tokens[..., :1], PAD)], -1)
    target = torch.where(nxt == PAD, -1, nxt)
    return Docs(tokens=tokens, target=target, words=key, V=table.V, **out)


def sample(table: TokenTable, u: Tensor, kind: Kind = "train") -> Docs:
    """Documents of one kind from uniforms u [M, b, n_uniforms(N)] (see the module docstring)."""
    M, b, _ = u.shape
    N, dev = table.N, u.device
    u_bursty, u_novel = u[..., 0], u[..., 1]
    u_slot, u_perm, u_iid, u_len, u_code = u[..., 2:].split(N, -1)
    one = torch.ones(M, dtype=torch.long, device=dev)
    Bp = 2 * one if kind == "ic" else torch.maximum(table.B, one)  # [M] copies per slot
    ctx_slot, _ = bursty_layout(Bp, N, u_perm)  # [M, b, N]
    if kind == "ic":
        is_bursty = is_novel = torch.ones(M, b, dtype=torch.bool, device=dev)
    elif kind == "iw":
        is_bursty = is_novel = torch.zeros(M, b, dtype=torch.bool, device=dev)
    else:
        is_bursty = (u_bursty < table.p_bursty[:, None]) & (table.B[:, None] > 0)
        is_novel = u_novel < table.p_novel[:, None]
    bursty_ids = slots(table.law, u_slot).gather(2, ctx_slot)  # [M, b, N]
    ids = torch.where(is_bursty[..., None], bursty_ids, without(table.law, u_iid, None))  # lexicon ranks
    letters = table.words.flatten(0, 1)[(ids + torch.arange(M, device=dev).view(M, 1, 1) * table.words.shape[1])]
    length = table.lengths.gather(1, ids.view(M, -1)).view(M, b, N)
    key = ids
    if kind == "ic" or (kind != "iw" and table.needs_novel):  # fresh words only where some document can hold them
        f_letters, f_len = fresh_words(table, u_len, u_code)  # [M, b, N(slots), Lmax]
        f_letters = f_letters.gather(2, ctx_slot[..., None].expand_as(f_letters))
        f_len = f_len.gather(2, ctx_slot)
        powers = torch.tensor([(table.V + 1) ** j for j in range(table.Lmax)], device=dev)
        f_key = -1 - ((f_letters + 1) * (torch.arange(table.Lmax, device=dev) < f_len[..., None]) * powers).sum(-1)
        nov = is_novel[..., None]
        letters = torch.where(nov[..., None], f_letters, letters)
        length, key = torch.where(nov, f_len, length), torch.where(nov, f_key, key)
    return assemble(table, letters, length, key)


def repeated_tokens(table: TokenTable, u: Tensor) -> Docs:
    """Olsson's probe: BOS r_1..r_n r_1..r_n (PAD after), n = (T - 1) // 2, letters r = floor(V u), u [M, b, n]."""
    M, b, n = u.shape
    T, dev = table.T, u.device
    _, BOS, PAD = special_tokens(table.V)
    r = torch.minimum((u * table.V).long(), torch.tensor(table.V - 1, device=dev))
    tokens = torch.full((M, b, T), PAD, dtype=torch.long, device=dev)
    tokens[..., 0] = BOS
    tokens[..., 1 : n + 1] = r
    tokens[..., n + 1 : 2 * n + 1] = r
    nxt = torch.cat([tokens[..., 1:], torch.full_like(tokens[..., :1], PAD)], -1)
    pos = torch.arange(T, device=dev)
    second = ((pos > n) & (pos < 2 * n)).expand(M, b, T)  # targets r_2..r_n of the second copy (induction can
    # predict them; r_1 follows r_n only in the repeat itself)
    none = torch.full((M, b, T), -1, dtype=torch.long, device=dev)
    return Docs(tokens=tokens, target=torch.where(nxt == PAD, -1, nxt), inner=second, repeat=second,
                slot=none, rank=none, rel_rank=none.double(), words=none[..., :0], V=table.V)


# -- loss and measures ---------------------------------------------------------------------------------------------

def token_losses(params: Params, model: ModelConfig, docs: Docs, **kw) -> tuple[Tensor, Tensor, object]:
    """Per-position cross-entropy [M, b, T] (0 where there is no target), predictions, and the forward's output."""
    out = forward(params, docs.tokens, model, every_position=True, **kw)
    M, b, T, n_out = out.logits.shape
    ce = F.cross_entropy(out.logits.reshape(-1, n_out), docs.target.clamp_min(0).reshape(-1), reduction="none")
    ce = torch.where(docs.target >= 0, ce.view(M, b, T), 0.0)
    return ce, out.logits.argmax(-1), out


def batch_loss(params: Params, model: ModelConfig, docs: Docs) -> Tensor:
    """Each model's mean next-token cross-entropy over the positions that have a target: [M]."""
    ce, _, _ = token_losses(params, model, docs)
    return ce.sum((1, 2)) / (docs.target >= 0).sum((1, 2)).clamp_min(1)


def _masked_mean(x: Tensor, mask: Tensor, dims) -> Tensor:
    """Mean of x over mask along dims; NaN where the mask is empty."""
    n = mask.sum(dims)
    total = torch.where(mask, x, 0.0).sum(dims)  # masked-out entries never enter, even if NaN
    return torch.where(n > 0, total / n.clamp_min(1), torch.full_like(n, float("nan"), dtype=x.dtype))


def rep_scores(params: Params, cfg: ModelConfig, docs: Docs, attn: Tensor, resid: Tensor) -> dict[str, Tensor]:
    """Per-head previous-token, prefix-matching and copying scores on the repeated-tokens probe."""
    M, layers, H, b, T, _ = attn.shape
    n = (T - 1) // 2
    p = torch.arange(1, 2 * n + 1, device=attn.device)
    prev = attn[..., p, p - 1].mean((-1, -2))  # [M, layers, H]
    tok = docs.tokens[0]  # [b, T] (the probe is the same for every model)
    after = torch.cat([torch.full_like(tok[:, :1], -1), tok[:, :-1]], 1)  # token before each key position
    rows = torch.arange(n + 1, 2 * n + 1, device=attn.device)  # second-copy query positions
    keys = torch.arange(T, device=attn.device)
    target = (after[:, None, :] == tok[:, rows, None]) & (keys <= rows[:, None])  # [b, n, T]
    prefix = (attn[..., rows, :] * target).sum(-1).mean((-1, -2))  # [M, layers, H]
    src = torch.arange(1, n + 1, device=attn.device)
    copy = copy_scores(params, cfg, resid[..., src, :], docs.tokens[..., src])
    return head_scores(prev, prefix, copy)


@torch.no_grad()
def evaluate(params: Params, cfg: ModelConfig, probes: Mapping[str, Docs]) -> tuple[dict[str, Tensor], Tensor]:
    """Every measure [M] on the probe sets; also per-document IC accuracy [M, n_probe] (its mean is ic_acc)."""
    out: dict[str, Tensor] = {}
    ic = probes["ic"]
    ce, pred, _ = token_losses(params, cfg, ic)
    mask = ic.inner & ic.repeat & (ic.target >= 0)
    correct = (pred == ic.target).float()
    per_doc = _masked_mean(correct, mask, 2)  # [M, b]
    out["ic_acc"] = per_doc.mean(1)
    out["ic_loss"] = _masked_mean(ce, mask, 2).mean(1)

    iw = probes["iw"]
    ce, pred, _ = token_losses(params, cfg, iw)
    mask = iw.inner & ~iw.repeat & (iw.rank >= 0)
    correct = (pred == iw.target).float()
    out["iw_acc"], out["iw_loss"] = _masked_mean(correct, mask, (1, 2)), _masked_mean(ce, mask, (1, 2))
    out["iw_acc_common"] = _masked_mean(correct, mask & (iw.rel_rank < COMMON_FRACTION), (1, 2))
    out["iw_acc_rare"] = _masked_mean(correct, mask & (iw.rel_rank >= RARE_FRACTION), (1, 2))

    doc = probes["doc"]
    ce, _, _ = token_losses(params, cfg, doc)
    has = doc.target >= 0
    out["val_loss"] = _masked_mean(ce, has, (1, 2))
    N = doc.words.shape[-1]
    out["icl_score"] = _masked_mean(ce, has & (doc.slot == N - 1), (1, 2)) - _masked_mean(ce, has & (doc.slot == 1),
                                                                                           (1, 2))
    rep = probes["rep"]
    ce, pred, res = token_losses(params, cfg, rep, internals=True)
    mask = rep.repeat & (rep.target >= 0)
    out["rep_acc"] = _masked_mean((pred == rep.target).float(), mask, (1, 2))
    out["rep_loss"] = _masked_mean(ce, mask, (1, 2))
    out.update(rep_scores(params, cfg, rep, res.attn, res.resid))
    return out, per_doc


def make_probes(table: TokenTable, spec_seed: int, n: int) -> dict[str, Docs]:
    """The ic, iw, doc and rep probe sets (one fixed draw per kind from the spec seed)."""
    out = {k: sample(table, probe_uniforms(derive_seed(spec_seed, "probe", "tokens", k), n, table), k)
           for k in ("ic", "iw", "doc")}
    u = probe_uniforms(derive_seed(spec_seed, "probe", "tokens", "rep"), n, table, (table.T - 1) // 2)
    out["rep"] = repeated_tokens(table, u)
    return out


def train_batch(seeds: Tensor, step: int, table: TokenTable, b: int) -> Docs:
    return sample(table, draw(seeds, step, table, b))


def model_bytes(cell: Cell, model: ModelConfig) -> int:
    """Estimated peak bytes of one training model: an upper bound by tensor count with a 1.5x allowance
    (parameters and Adam state; activations and logits of a batch; the four probe sets' forwards; the lexicon)."""
    t, r = cell.task, cell.train
    s = shape(t)
    T, d, Lyr, V = s.T, model.d_model, model.layers, s.n_out
    n_params = V * d + T * d + Lyr * 4 * d * d + d * V
    act = r.batch * T * (d * (6 * Lyr + 2) + 3 * V + 8) + r.batch * model.heads * T * T * Lyr * 3
    probes = 4 * r.n_probe * T * (d * (Lyr + 2) + 2 * V + 8) + r.n_probe * model.heads * T * T * Lyr
    table = t.K * (t.max_word_len + 6)
    return int(1.5 * 4 * (4 * n_params + act + probes + table))


def view(docs: Docs, i: int) -> tuple[list[str], dict[int, list[int]]]:
    """Labels of document i (letters a, b, ...; SEP "_", BOS "^", PAD ".") and, at every position whose target is
    scored in context (a later letter of a repeated word, or the second copy of the repeated-tokens probe), its
    induction targets: the positions right after earlier occurrences of the current token."""
    tok = docs.tokens[0, i].tolist()
    SEP, BOS, PAD = special_tokens(docs.V)
    labels = [{SEP: "_", BOS: "^", PAD: "."}.get(t, chr(ord("a") + t) if t < 26 else str(t)) for t in tok]
    scored = (docs.repeat & docs.inner & (docs.target >= 0))[0, i].tolist()
    return labels, {p: [q for q in range(1, p + 1) if tok[q - 1] == tok[p]] for p, s_ in enumerate(scored) if s_}


TASK = Task(name="tokens", shape=shape, make_table=make_table, train_batch=train_batch,
            probes=make_probes, loss=batch_loss, evaluate=evaluate, model_bytes=model_bytes, view=view)
