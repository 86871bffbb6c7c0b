"""Configuration: frozen dataclasses for the task, model and training, and the sweep spec (TOML).

A spec is validated completely before any work starts; every problem becomes one line naming the key, the
value and what is allowed (`SpecError.problems`).
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Literal, get_args


Readout = Literal["linear", "mlp"]
"""Readout at the query position: a linear map, or Reddy's 3-layer MLP."""
Optimizer = Literal["adam", "adamw", "sgd"]
"""Optimizers of zipfind.optim (the one list: validation and the optimizer read it from here)."""
ContextLaw = Literal["iid", "distinct"]
"""How a bursty context's N/B slots are drawn: i.i.d. from p (the anchors' law) or without replacement."""
SaveWeights = Literal["final", "checkpoints", "none"]
"""Which trained weights a sweep keeps: the last step's, every evaluation checkpoint's, or none."""
TaskKind = Literal["classification", "tokens"]
"""The tasks of zipfind.tasks: in-context classification, or next-token prediction on documents of words."""
Lexicon = Literal["random", "english"]
"""Words of the token task: random strings over V tokens, or the top English words (wordfreq), in letters."""
Frequencies = Literal["zipf", "english"]
"""Word frequencies of the token task: Zipf(alpha) by rank, or wordfreq's English frequencies."""


@dataclass(frozen=True)
class TaskConfig:
    """The task: bursty Zipfian in-context classification (Chan et al. 2022; Reddy 2024), or its port to
    next-token prediction on documents of multi-token words (`kind = "tokens"`). Shared keys keep one meaning:
    K items (classes or words), their Zipf law, N items per sequence, B copies, p_bursty, p_novel, context law.
    """

    kind: TaskKind = "classification"  # which task (a spec-level choice, not a grid axis)
    K: int = 2048  # number of classes (tokens: words in the lexicon)
    L: int = 32  # classification: number of labels; class k has label k mod L
    N: int = 8  # context item-label pairs (tokens: words per document)
    D: int = 63  # classification: content dimensions
    eps: float = 0.1  # classification: within-class noise
    alpha: float = 0.0  # Zipf exponent of class (word) frequencies
    B: int = 1  # burstiness: copies of each class in a bursty context (0: no bursty sequences)
    p_bursty: float = 0.9  # fraction of bursty sequences
    p_novel: float = 0.0  # fraction of sequences of fresh classes with random labels (Reddy's p_C) or fresh words
    context: ContextLaw = "iid"  # bursty slots i.i.d. from p (the anchors' law) or distinct
    V: int = 16  # tokens: alphabet size (letters; a separator, BOS and padding token come on top)
    word_len: int = 3  # tokens: word length in letters (the shortest, with word_len_max)
    word_len_max: int = 0  # tokens: longest word (0: = word_len, every word word_len letters)
    lexicon: Lexicon = "random"  # tokens: random strings, or the top-K English words (wordfreq)
    frequencies: Frequencies = "zipf"  # tokens: Zipf(alpha) by rank, or wordfreq's English frequencies

    @property
    def max_word_len(self) -> int:
        return max(self.word_len, self.word_len_max)


TASK_ONLY_KEYS: dict[str, tuple[str, ...]] = {
    "classification": ("L", "D", "eps"),
    "tokens": ("V", "word_len", "word_len_max", "lexicon", "frequencies"),
}
"""[task] keys that only one kind reads; a spec of another kind may not set them (and its tables omit them)."""
STACK_KEYS: dict[str, tuple[str, ...]] = {"classification": ("N", "L", "D"), "tokens": ("N", "V", "max_word_len")}
"""Per kind, the task values that fix tensor shapes: cells stack in one chunk only where they are equal."""
THEORY_INPUTS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "classification": {},
    "tokens": {"L": lambda t: t["V"], "B": lambda t: (t["B"] - 1).clip(lower=0)},
}
"""Per kind, the theory inputs its cells stand for, as functions of the cells table (theory/tokens.md): in the
token task the continuation's label space is the alphabet (L = V), and a word repeated B times in a document is
a query with B - 1 earlier copies in its context (B = 1: no repeats, the classification task's B = 0)."""
NOT_MODELLED: dict[str, tuple[str, ...]] = {"frequencies": ("english",)}
"""Cells whose word law is not Zipf(alpha): the theory neither fits nor predicts them."""


def task_keys(kind: str) -> tuple[str, ...]:
    """The [task] keys of one kind, in TaskConfig order (kind first)."""
    other = {k for kk, keys in TASK_ONLY_KEYS.items() if kk != kind for k in keys}
    return tuple(f.name for f in fields(TaskConfig) if f.name not in other)


def task_values(task: TaskConfig) -> dict[str, Any]:
    """The task's values under its kind's keys (the cells table's task columns, `kind` written as `task`)."""
    d = {k: getattr(task, k) for k in task_keys(task.kind)}
    d["task"] = d.pop("kind")
    return {"task": d.pop("task"), **d}


@dataclass(frozen=True)
class ModelConfig:
    """Attention-only transformer; readout at the query position."""

    d_model: int = 64
    layers: int = 2
    heads: int = 1
    readout: Readout = "linear"
    mlp_hidden: int = 128  # width of the 3-layer MLP readout (Reddy's deep classifier)
    layernorm: bool = False


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 3000
    batch: int = 128
    lr: float = 3e-3
    optimizer: Optimizer = "adam"
    beta1: float = 0.9  # Adam beta1, or SGD momentum
    beta2: float = 0.999
    weight_decay: float = 0.0
    clip: float = 0.0  # per-model gradient-norm clip; 0 disables
    init_scale: float = 1.0  # weights ~ N(0, init_scale^2 / fan_in); may differ between stacked cells
    eval_every: int = 100
    n_probe: int = 512  # probe sequences per evaluation set
    seed: int = 0  # replicate seed of a cell
    # Steps between saves of a chunk's training state (a killed chunk resumes from its last save). It changes
    # no result, so it is not a grid axis nor a cell parameter. 500 steps of a default chunk take about a minute
    # on a GPU and a few on a CPU, and a save (parameters + Adam moments, ~3x the weights) takes well under a
    # second, so at most a few minutes are lost and saving costs < 1% of the time.
    resume_every: int = 500
    # Trained weights kept in the run directory (weights/chunk-NNNN.safetensors, stacked [M, ...] per step): the
    # final step's, every evaluation checkpoint's, or none. Set once per spec (not an axis, not a cell column).
    save: SaveWeights = "final"


@dataclass(frozen=True)
class Cell:
    """One model of a sweep: its task and training parameters and its grid coordinates."""

    index: int
    task: TaskConfig
    train: TrainConfig
    coords: tuple[tuple[str, Any], ...]

    def params(self) -> dict[str, Any]:
        """Every task and training scalar of the cell (the cells table's columns)."""
        train = {k: v for k, v in asdict(self.train).items() if k not in ONCE_KEYS}
        return {**task_values(self.task), **train}


@dataclass(frozen=True)
class Spec:
    name: str
    seed: int
    task: TaskConfig
    model: ModelConfig
    train: TrainConfig
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    cells: tuple[dict[str, Any], ...] = ()  # explicit cells, in addition to the grid
    axes: tuple[str, ...] = field(default=())  # grid axes (and keys of explicit cells), in order

    def expand(self) -> list[Cell]:
        """The product grid then the explicit cells, numbered 0..n-1."""
        out: list[dict[str, Any]] = []
        if self.grid:
            names = [k for k, _ in self.grid]
            for combo in itertools.product(*(v for _, v in self.grid)):
                out.append(dict(zip(names, combo)))
        out.extend(dict(c) for c in self.cells)
        if not out:
            out.append({})
        result = []
        for i, over in enumerate(out):
            t = {k: v for k, v in over.items() if k in TASK_KEYS}
            r = {k: v for k, v in over.items() if k in TRAIN_KEYS}
            coords = tuple((a, over.get(a, _default(self, a))) for a in self.axes)
            result.append(Cell(i, replace(self.task, **t), replace(self.train, **r), coords))
        return result

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec with every default written out (TOML-serialisable)."""
        task = {k: getattr(self.task, k) for k in task_keys(self.task.kind)}
        d: dict[str, Any] = {"name": self.name, "seed": self.seed, "task": task,
                             "model": asdict(self.model), "train": asdict(self.train)}
        if self.grid:
            d["grid"] = {k: list(v) for k, v in self.grid}
        if self.cells:
            d["cells"] = [dict(c) for c in self.cells]
        return d


TASK_KEYS = {f.name: f.type for f in fields(TaskConfig)}
MODEL_KEYS = {f.name: f.type for f in fields(ModelConfig)}
TRAIN_KEYS = {f.name: f.type for f in fields(TrainConfig)}
RUN_ONLY_KEYS = {"resume_every"}  # [train] keys that change how a run goes, not its results (a resume may change them)
ONCE_KEYS: dict[str, str] = {  # [train] keys set once per spec: no axis, no cell column (with the reason)
    "resume_every": "it changes no result", "save": "one run directory keeps one kind of weights"}
SPEC_ONLY_KEYS = {"kind"}  # [task] keys set once for the whole spec: a chunk holds one task
AXIS_KEYS = {**{k: v for k, v in TASK_KEYS.items() if k not in SPEC_ONLY_KEYS},
             **{k: v for k, v in TRAIN_KEYS.items() if k not in ONCE_KEYS}}
SECTIONS = {"task": TASK_KEYS, "model": MODEL_KEYS, "train": TRAIN_KEYS}
TOP_KEYS = {"name", "seed", "task", "model", "train", "grid", "cells"}
CHOICES: dict[str, tuple[str, ...]] = {"readout": get_args(Readout), "optimizer": get_args(Optimizer),
                                       "context": get_args(ContextLaw), "kind": get_args(TaskKind),
                                       "lexicon": get_args(Lexicon), "frequencies": get_args(Frequencies),
                                       "save": get_args(SaveWeights)}


def _default(spec: Spec, key: str) -> Any:
    return getattr(spec.task, key) if key in TASK_KEYS else getattr(spec.train, key)


class SpecError(ValueError):
    """A spec that cannot run; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _did_you_mean(key: str, allowed) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_ok(value: Any, typ: str) -> bool:
    if typ == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if typ == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ == "bool":
        return isinstance(value, bool)
    return isinstance(value, str)


def _coerce(value: Any, typ: str) -> Any:
    return float(value) if typ == "float" else value


def _check_scalar(where: str, key: str, value: Any, typ: str, problems: list[str]) -> bool:
    tname = typ.split("[")[0]
    base = "str" if tname == "Literal" or key in CHOICES else tname
    if not _type_ok(value, base):
        want = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}[base]
        problems.append(f"{where}{key}: {value!r} is not allowed; expected {want}")
        return False
    return True


def _check_values(task: TaskConfig, train: TrainConfig, model: ModelConfig, where: str) -> list[str]:
    """Range checks on one resolved cell (or the base config)."""
    p: list[str] = []

    reported: set[str] = set()

    def bad(key, value, allowed):  # one line per key: its first violated rule
        if key not in reported:
            reported.add(key)
            p.append(f"{where}{key}: {value!r} is not allowed; {allowed}")

    if task.alpha < 0 or not math.isfinite(task.alpha):
        bad("alpha", task.alpha, "the Zipf exponent must be >= 0")
    if task.N < 1:
        bad("N", task.N, "need at least 1 context pair")
    if task.B < 0:
        bad("B", task.B, "burstiness must be 0 (no bursty sequences) or a divisor of N")
    elif task.B > 0 and task.N % task.B:
        divisors = [d for d in range(1, task.N + 1) if task.N % d == 0]
        bad("B", task.B, f"B must divide N = {task.N}: one of 0, {', '.join(map(str, divisors))}")
    for k in ("p_bursty", "p_novel"):
        v = getattr(task, k)
        if not 0.0 <= v <= 1.0:
            bad(k, v, "a probability must lie in [0, 1]")
    if task.kind == "tokens":
        _check_tokens(task, bad)
    else:
        _check_classification(task, bad)
    if train.steps <= 0:
        bad("steps", train.steps, "must be > 0")
    if train.batch <= 0:
        bad("batch", train.batch, "must be > 0")
    if train.eval_every <= 0:
        bad("eval_every", train.eval_every, "must be > 0")
    elif train.eval_every > train.steps > 0:
        bad("eval_every", train.eval_every, f"must be <= steps = {train.steps}")
    if train.n_probe <= 0:
        bad("n_probe", train.n_probe, "must be > 0")
    if not train.lr > 0:
        bad("lr", train.lr, "the learning rate must be > 0")
    for k in ("beta1", "beta2"):
        v = getattr(train, k)
        if not 0.0 <= v < 1.0:
            bad(k, v, "must lie in [0, 1)")
    for k in ("weight_decay", "clip"):
        if getattr(train, k) < 0:
            bad(k, getattr(train, k), "must be >= 0")
    if not train.init_scale > 0:
        bad("init_scale", train.init_scale, "must be > 0")
    for k, c in CHOICES.items():
        v = getattr(next(c for c in (task, train, model) if hasattr(c, k)), k)
        if v not in c:
            bad(k, v, f"one of {', '.join(c)}")
    for k in ("d_model", "layers", "heads", "mlp_hidden"):
        if getattr(model, k) < 1:
            bad(k, getattr(model, k), "must be >= 1")
    if model.heads >= 1 and model.d_model % model.heads:
        bad("heads", model.heads, f"must divide d_model = {model.d_model}")
    return p


def _check_classification(task: TaskConfig, bad) -> None:
    if task.L < 2:
        bad("L", task.L, "need at least 2 labels")
    if task.K < max(task.L, task.N):
        bad("K", task.K, f"need K >= max(L, N) = {max(task.L, task.N)}: every label needs a class, and a "
                         "context of N distinct classes must exist")
    if task.L < task.N:
        bad("L", task.L, f"need L >= N = {task.N} so novel contexts get distinct labels")
    if task.D < 1:
        bad("D", task.D, "content dimensions must be >= 1")
    if task.eps < 0:
        bad("eps", task.eps, "within-class noise must be >= 0")


MAX_WORD_LEN = 12  # longest word of the token task: token strings are coded as integers below V^12 < 2^63


def _check_tokens(task: TaskConfig, bad) -> None:
    if task.N < 3:
        bad("N", task.N, "a document needs at least 3 words (Olsson's ICL score compares the second with the last)")
    if task.K < task.N:
        bad("K", task.K, f"need K >= N = {task.N}: a document of N distinct words must exist")
    if task.word_len < 2:
        bad("word_len", task.word_len, "words need at least 2 letters (the IC and IW measures score the letters "
                                       "after a word's first)")
    if task.word_len_max and task.word_len_max < task.word_len:
        bad("word_len_max", task.word_len_max, f"must be 0 (= word_len) or >= word_len = {task.word_len}")
    length_key = "word_len_max" if task.word_len_max else "word_len"
    if task.max_word_len > MAX_WORD_LEN:
        bad(length_key, task.max_word_len, f"words may have at most {MAX_WORD_LEN} letters")
    elif task.V >= 1 and (task.V + 1) ** task.max_word_len > 2**52:
        bad(length_key, task.max_word_len, f"(V + 1)^length must stay <= 2^52 (words are coded as integers that "
                                           f"float64 uniforms index exactly); with V = {task.V} at most "
                                           f"{int(52 / math.log2(task.V + 1))} letters")
    if task.frequencies == "english" and task.lexicon != "english":
        bad("frequencies", task.frequencies, "English frequencies need lexicon = 'english'")
    if task.frequencies == "english" and task.alpha != 0:
        bad("alpha", task.alpha, "with frequencies = 'english' the word law is wordfreq's, not Zipf(alpha); "
                                 "leave alpha at 0")
    if task.lexicon == "english":
        from .english import ALPHABET, MissingExtra, english_words
        if task.V != len(ALPHABET):
            bad("V", task.V, f"the English lexicon is spelled in {len(ALPHABET)} letters: V = {len(ALPHABET)}")
        elif 2 <= task.word_len <= task.max_word_len <= MAX_WORD_LEN:
            try:
                words = english_words(task.K, task.word_len, task.max_word_len)[0]
            except MissingExtra as e:
                bad("lexicon", task.lexicon, str(e).split("; ", 1)[1])
            else:
                if len(words) < task.K:
                    bad("K", task.K, f"wordfreq has only {len(words)} English words of {task.word_len}-"
                                     f"{task.max_word_len} letters; use K <= {len(words)} or a wider word_len range")
    elif not 2 <= task.V <= 256:
        bad("V", task.V, "the alphabet needs 2 to 256 tokens")
    elif 2 <= task.word_len <= task.max_word_len <= MAX_WORD_LEN:
        strings = sum(task.V**n for n in range(task.word_len, task.max_word_len + 1))
        if strings < 2 * task.K:
            bad("K", task.K, f"{strings} strings of {task.word_len}-{task.max_word_len} letters over V = "
                             f"{task.V} cannot hold K words and as many novel ones; need K <= {strings // 2}")
        elif task.V**task.word_len <= task.K:
            bad("K", task.K, f"the {task.V**task.word_len} strings of {task.word_len} letters could all be lexicon "
                             f"words, leaving no fresh word of that length; need K < {task.V**task.word_len} or "
                             "a longer word_len")


CELL_LIMIT = 100_000  # a spec with more cells is refused unless the caller lifts the limit (`zipfind sweep --yes`)


def parse_spec(raw: dict[str, Any], name: str = "spec", cell_limit: int | None = CELL_LIMIT) -> Spec:
    """Validate a spec dict (as read from TOML) and resolve it; raises SpecError listing every problem.

    The number of cells is counted before the grid is expanded, so a huge grid is refused at once (above
    cell_limit; None: no limit)."""
    problems: list[str] = []
    for k in raw:
        if k not in TOP_KEYS:
            problems.append(f"{k}: unknown top-level key{_did_you_mean(k, TOP_KEYS)}; allowed: "
                            + ", ".join(sorted(TOP_KEYS)))
    kind = raw.get("task", {}).get("kind", "classification") if isinstance(raw.get("task"), dict) else None
    foreign = {k: kk for kk, keys in TASK_ONLY_KEYS.items() if kk != kind for k in keys} if kind in TASK_ONLY_KEYS \
        else {}

    def not_this_kind(where: str, k: str) -> bool:  # a key of another task kind: one line, naming both kinds
        if k in foreign:
            problems.append(f"{where}{k}: only for [task] kind = {foreign[k]!r}; this spec's kind is {kind!r} "
                            f"(its task keys: {', '.join(task_keys(kind))})")
        return k in foreign

    sections: dict[str, dict[str, Any]] = {}
    for sec, keys in SECTIONS.items():
        body = raw.get(sec, {})
        if not isinstance(body, dict):
            problems.append(f"[{sec}]: {body!r} is not allowed; expected a table")
            body = {}
        good = {}
        for k, v in body.items():
            if k not in keys:
                problems.append(f"{sec}.{k}: unknown key{_did_you_mean(k, keys)}; allowed: "
                                + ", ".join(task_keys(kind) if sec == "task" and kind in TASK_ONLY_KEYS else keys))
            elif sec == "task" and not_this_kind("task.", k):
                continue
            elif _check_scalar(f"{sec}.", k, v, keys[k], problems):
                good[k] = _coerce(v, keys[k])
        sections[sec] = good
    spec_name = raw.get("name", name)
    if not isinstance(spec_name, str) or not spec_name:
        problems.append(f"name: {spec_name!r} is not allowed; expected a non-empty string")
    seed = raw.get("seed", 0)
    if not (isinstance(seed, int) and not isinstance(seed, bool)):
        problems.append(f"seed: {seed!r} is not allowed; expected an integer")
        seed = 0

    grid: list[tuple[str, tuple[Any, ...]]] = []
    graw = raw.get("grid", {})
    if not isinstance(graw, dict):
        problems.append(f"[grid]: {graw!r} is not allowed; expected a table of axis = [values]")
        graw = {}
    for k, vals in graw.items():
        if k in ONCE_KEYS:
            problems.append(f"grid.{k}: not an axis; {ONCE_KEYS[k]}, so set it once under [train]")
            continue
        if k in SPEC_ONLY_KEYS:
            problems.append(f"grid.{k}: not an axis; one spec trains one task, so set it once under [task]")
            continue
        if not_this_kind("grid.", k):
            continue
        if k not in AXIS_KEYS:
            problems.append(f"grid.{k}: unknown axis{_did_you_mean(k, AXIS_KEYS)}; "
                            "any [task] or [train] scalar may be an axis")
            continue
        if not isinstance(vals, list):
            problems.append(f"grid.{k}: {vals!r} is not allowed; expected a list of values")
            continue
        if not vals:
            problems.append(f"grid.{k}: [] is not allowed; an axis needs at least one value")
            continue
        okvals = [_coerce(v, AXIS_KEYS[k]) for v in vals if _check_scalar("grid.", k, v, AXIS_KEYS[k], problems)]
        if len(set(okvals)) != len(okvals):
            problems.append(f"grid.{k}: {vals!r} is not allowed; axis values must be distinct")
        grid.append((k, tuple(okvals)))

    cells: list[dict[str, Any]] = []
    craw = raw.get("cells", [])
    if not isinstance(craw, list):
        problems.append(f"[[cells]]: {craw!r} is not allowed; expected an array of tables")
        craw = []
    for i, c in enumerate(craw):
        if not isinstance(c, dict):
            problems.append(f"cells[{i}]: {c!r} is not allowed; expected a table")
            continue
        good = {}
        for k, v in c.items():
            if k in ONCE_KEYS:
                problems.append(f"cells[{i}].{k}: not a cell key; {ONCE_KEYS[k]}, so set it once under [train]")
            elif k in SPEC_ONLY_KEYS:
                problems.append(f"cells[{i}].{k}: not a cell key; one spec trains one task, so set it under [task]")
            elif not_this_kind(f"cells[{i}].", k):
                continue
            elif k not in AXIS_KEYS:
                problems.append(f"cells[{i}].{k}: unknown key{_did_you_mean(k, AXIS_KEYS)}")
            elif _check_scalar(f"cells[{i}].", k, v, AXIS_KEYS[k], problems):
                good[k] = _coerce(v, AXIS_KEYS[k])
        cells.append(good)

    n_cells = math.prod(len(v) for _, v in grid) * (1 if grid else 0) + len(cells) or 1
    if cell_limit is not None and n_cells > cell_limit:
        problems.append(f"grid: {n_cells:,} cells is over the limit of {cell_limit:,}; shrink the grid, or pass "
                        "--yes to plan and run it anyway")
    if problems:
        raise SpecError(problems)
    axes = tuple(dict.fromkeys([k for k, _ in grid] + [k for c in cells for k in c]))
    spec = Spec(name=spec_name, seed=seed, task=TaskConfig(**sections["task"]),
                model=ModelConfig(**sections["model"]), train=TrainConfig(**sections["train"]),
                grid=tuple(grid), cells=tuple(cells), axes=axes)
    if spec.train.resume_every <= 0:  # one value for the whole spec, so checked once, not per cell
        problems.append(f"train.resume_every: {spec.train.resume_every!r} is not allowed; must be > 0 "
                        "(steps between saves of the training state)")
    seen: dict[tuple, int] = {}
    for cell in spec.expand():
        where = "" if not cell.coords else "cell " + ", ".join(f"{k}={v}" for k, v in cell.coords) + ": "
        problems.extend(_check_values(cell.task, cell.train, spec.model, where))
        ident = tuple(sorted(cell.params().items()))
        if ident in seen:
            problems.append(f"{where.rstrip(': ') or 'cell'}: duplicate of cell {seen[ident]}; "
                            "every cell must differ in some parameter")
        seen[ident] = cell.index
    if problems:
        raise SpecError(list(dict.fromkeys(problems)))
    return spec


def load_spec(path: str | Path, cell_limit: int | None = CELL_LIMIT) -> Spec:
    """Read and validate a TOML spec file (see parse_spec for cell_limit)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError([f"spec: {str(path)!r} does not exist; give the path of a TOML spec file"])
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SpecError([f"spec: {str(path)!r} is not valid TOML ({e})"]) from None
    return parse_spec(raw, name=path.stem, cell_limit=cell_limit)


def dump_toml(d: dict[str, Any]) -> str:
    """Write a resolved spec dict as TOML (scalars, lists of scalars, tables, arrays of tables)."""

    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, float):
            return repr(v) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return str(v)

    lines = [f"{k} = {val(v)}" for k, v in d.items() if not isinstance(v, (dict, list)) or
             (isinstance(v, list) and not (v and isinstance(v[0], dict)))]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {val(vv)}" for kk, vv in v.items()]
    for k, v in d.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                lines += ["", f"[[{k}]]"] + [f"{kk} = {val(vv)}" for kk, vv in item.items()]
    return "\n".join(lines) + "\n"
