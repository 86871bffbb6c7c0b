"""The command line: validation battery (one clear line, exit 2, nothing written) and a 2x2 sweep end to end."""

import pytest
from typer.testing import CliRunner

from zipfind.cli import app

runner = CliRunner()

BASE = """
name = "t"
[task]
K = 128
N = 4
L = 8
D = 15
[model]
d_model = 16
[train]
steps = 12
batch = 16
eval_every = 6
n_probe = 32
"""

BAD = [  # (spec text appended or replacing, expected fragment)
    ("[grid]\nalhpa = [0.0, 1.0]", "grid.alhpa: unknown axis (did you mean 'alpha'?)"),
    ("[grid]\nalpha = [-0.5, 1.0]", "alpha: -0.5 is not allowed; the Zipf exponent must be >= 0"),
    ("[grid]\nB = [3]", "B: 3 is not allowed; B must divide N = 4"),
    ("[grid]\nB = [-1]", "B: -1 is not allowed"),
    ("[grid]\nK = [4]", "K: 4 is not allowed; need K >= max(L, N) = 8"),
    ("[grid]\np_bursty = [1.5]", "p_bursty: 1.5 is not allowed; a probability must lie in [0, 1]"),
    ("[grid]\np_novel = [-0.1]", "p_novel: -0.1 is not allowed; a probability must lie in [0, 1]"),
    ("[grid]\nsteps = [0]", "steps: 0 is not allowed; must be > 0"),
    ("[grid]\neval_every = [50]", "eval_every: 50 is not allowed; must be <= steps = 12"),
    ("[grid]\nalpha = []", "grid.alpha: [] is not allowed; an axis needs at least one value"),
    ("[grid]\nalpha = [1.0, 1.0]", "axis values must be distinct"),
    ("[grid]\nalpha = 1.0", "grid.alpha: 1.0 is not allowed; expected a list of values"),
    ("[grid]\nalpha = [\"one\"]", "grid.alpha: 'one' is not allowed; expected a number"),
    ("[grid]\nB = [1.5]", "grid.B: 1.5 is not allowed; expected an integer"),
    ("[grid]\nlr = [0.0]", "lr: 0.0 is not allowed; the learning rate must be > 0"),
    ("[grid]\nd_model = [8]", "grid.d_model: unknown axis"),
    ("[[cells]]\nalpha = 1.0\n[[cells]]\nalpha = 1.0", "duplicate of cell 0"),
    ("[[cells]]\nbeta = 1.0", "cells[0].beta: unknown key"),
    ("[grid]\nbeta1 = [1.0]", "beta1: 1.0 is not allowed; must lie in [0, 1)"),
    ("[grid]\nclip = [-1.0]", "clip: -1.0 is not allowed; must be >= 0"),
    ("[grid]\neps = [-0.1]", "eps: -0.1 is not allowed; within-class noise must be >= 0"),
    ("[grid]\nL = [2]", "need L >= N = 4"),
    ("[grid]\noptimizer = [\"adagrad\"]", "optimizer: 'adagrad' is not allowed; one of adam, adamw, sgd"),
]
BAD_REPLACE = [
    (BASE.replace("d_model = 16", "d_modle = 16"), "model.d_modle: unknown key (did you mean 'd_model'?)"),
    (BASE.replace("[model]\nd_model = 16", "[model]\nd_model = 16\nheads = 3"), "heads: 3 is not allowed; must divide d_model = 16"),
    (BASE.replace("[model]\nd_model = 16", "[model]\nd_model = 16\nreadout = \"conv\""), "readout: 'conv' is not allowed; one of linear, mlp"),
    (BASE.replace("batch = 16", "batch = \"16\""), "train.batch: '16' is not allowed; expected an integer"),
    (BASE + "\n[taks]\nK = 4", "taks: unknown top-level key (did you mean 'task'?)"),
    (BASE.replace("K = 128", "K = 128\nalpha = -1.0"), "alpha: -1.0 is not allowed"),
    ("name = \"t\"\n[task\nK = 1", "is not valid TOML"),
]


def _cases():
    cases = [(BASE + "\n" + extra, frag) for extra, frag in BAD]
    cases += BAD_REPLACE
    return cases


@pytest.mark.parametrize("text,fragment", _cases())
def test_bad_spec_gets_one_clear_line_and_exit_2(tmp_path, text, fragment):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    out = tmp_path / "run"
    res = runner.invoke(app, ["sweep", str(spec), "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 2, res.output
    assert fragment in res.output
    assert "Traceback" not in res.output
    assert all(line.startswith("error: ") for line in res.output.strip().splitlines())
    assert not out.exists()  # nothing written


@pytest.mark.parametrize("key,section", [("optimizer", "train"), ("readout", "model"), ("context", "task")])
def test_choice_keys_accept_exactly_the_listed_values(key, section):
    """The one list of choices (zipfind.config.CHOICES, from the Literal types the optimizer and model read)
    decides validation: each listed value parses, a near miss is refused with the whole list in the message."""
    import tomllib
    from typing import get_args

    from zipfind import optim
    from zipfind.config import (CHOICES, ContextLaw, Frequencies, Lexicon, Optimizer, Readout, SaveWeights,
                                SpecError, TaskKind, parse_spec)

    assert CHOICES == {"readout": get_args(Readout), "optimizer": get_args(Optimizer), "context": get_args(ContextLaw),
                       "kind": get_args(TaskKind), "lexicon": get_args(Lexicon), "frequencies": get_args(Frequencies),
                       "save": get_args(SaveWeights)}
    assert optim.OptimizerName is Optimizer
    base = tomllib.loads(BASE)
    for value in CHOICES[key]:
        spec = parse_spec({**base, section: {**base[section], key: value}})
        assert getattr(getattr(spec, section), key) == value
    with pytest.raises(SpecError) as err:
        parse_spec({**base, section: {**base[section], key: CHOICES[key][0].upper()}})
    assert err.value.problems == [f"{key}: {CHOICES[key][0].upper()!r} is not allowed; one of "
                                  f"{', '.join(CHOICES[key])}"]


@pytest.mark.parametrize("args,fragment", [
    (["status", "/nonexistent/run"], "does not exist"),
    (["onsets", "/nonexistent/run"], "does not exist"),
    (["sweep", "/nonexistent/spec.toml"], "does not exist"),
    (["sweep", "SPEC", "--device", "tpu"], "--device: 'tpu' is not allowed"),
    (["sweep", "SPEC", "--executor", "dask"], "--executor: 'dask' is not allowed; one of local, ray"),
    (["sweep", "SPEC", "--max-models", "0"], "--max-models: 0 is not allowed"),
])
def test_bad_arguments(tmp_path, args, fragment):
    spec = tmp_path / "s.toml"
    spec.write_text(BASE)
    res = runner.invoke(app, [str(spec) if a == "SPEC" else a for a in args])
    assert res.exit_code == 2 and fragment in res.output and "Traceback" not in res.output


def test_sweep_status_onsets_on_a_2x2_grid(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(BASE + "\n[grid]\nalpha = [0.0, 1.0]\nB = [1, 2]\n")
    out = tmp_path / "run"
    res = runner.invoke(app, ["sweep", str(spec), "--out", str(out), "--device", "cpu", "--max-models", "3"])
    assert res.exit_code == 0, res.output
    assert "4 cells in 2 chunks" in res.output
    assert (out / "onsets.parquet").is_file() and len(list((out / "metrics").glob("chunk-*.parquet"))) == 2
    res = runner.invoke(app, ["status", str(out)])
    assert res.exit_code == 0 and "4 / 4" in res.output
    res = runner.invoke(app, ["onsets", str(out), "--measure", "induction_score", "--estimator", "max_slope"])
    assert res.exit_code == 0, res.output
    import zipfind

    o = zipfind.load(out).onsets
    assert (o.measure == "induction_score").all() and (o.estimator == "max_slope").all()
    res = runner.invoke(app, ["onsets", str(out), "--measure", "nope"])
    assert res.exit_code == 2 and "--measure: 'nope' is not allowed" in res.output
    res = runner.invoke(app, ["sweep", str(spec), "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0 and "0 trained, 2 already done" in res.output


def test_train_writes_one_metrics_table(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(BASE + "\n[grid]\nalpha = [0.0, 1.0]\n")
    res = runner.invoke(app, ["train", str(spec), "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    import pandas as pd

    m = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert set(m.cell) == {0, 1} and list(m.columns) == ["cell", "step", "measure", "value"]
