"""The README's and theory/'s numbers about the reference runs, printed from the run directories that
sims/references.sh makes (onsets, fits, validation, the token task's probes and curves).

usage: python sims/reference_numbers.py [RUNS_DIR (default runs/references)] [OLD_REFERENCE_DIR]
With OLD_REFERENCE_DIR (a copy of an earlier sims/reference/), also how far each sweep's onsets moved from it.
"""
import json
import sys

import numpy as np
import pandas as pd

import zipfind

R = sys.argv[1] if len(sys.argv) > 1 else "runs/references"
OLD = sys.argv[2] if len(sys.argv) > 2 else None

def cmp(name, new, old):
    if OLD is None:
        return
    a = pd.read_parquet(new).set_index("cell"); b = pd.read_parquet(old).set_index("cell")
    both = (~a.censored) & (~b.censored)
    r = np.abs(np.log(a.onset_step[both] / b.onset_step[both]))
    flips = int((a.censored != b.censored).sum())
    print(f"[{name}] old vs new stream: {both.sum()} cells uncensored in both, median |ln new/old| {r.median():.3f}, "
          f"max {r.max():.3f}; censoring flips {flips} of {len(a)}; censored new {int(a.censored.sum())} old {int(b.censored.sum())}")

def fits(path):
    for f in json.load(open(path)):
        ax = f.get("extrapolation_by_axis") or {}
        f = {k: (float("nan") if v is None else v) for k, v in f.items()}
        print(f"  {f['model']}: AIC {f['aic']:.1f} grouped {f['heldout_grouped_median_abs_log_err']:.3f} "
              f"({f['heldout_grouped_censor_accuracy']:.2f}) cellfold {f['heldout_median_abs_log_err']:.3f} "
              f"lovo {f['extrapolation_median_abs_log_err']:.3f} ({f['extrapolation_censor_accuracy']:.2f}) "
              + " ".join(f"{k} {v['median_abs_log_err'] or float('nan'):.2f}" for k, v in ax.items())
              + " | " + " ".join(f"{k}={v['value']:.3g}" for k, v in f["params"].items() if not v["fixed"]))

def onsets(run, cols=("alpha", "B", "seed")):
    o = zipfind.load(run).onsets
    c = [x for x in cols if x in o and o[x].nunique() > 1]
    print(o[["cell", *c, "onset_step", "censored", "budget", "final_ic_acc", "final_iw_acc", "induction_step"]].round(3).to_string(index=False))
    return o

def final(m, measure):
    m = m[m.measure == measure]
    return m[m.step == m.step.max()].set_index("cell").value

def at(m, cell, measure, step):
    s = m[(m.cell == cell) & (m.measure == measure)].sort_values("step")
    return float(np.interp(step, s.step, s.value))

print("== quick"); cmp("quick", f"{R}/quick/onsets.parquet", f"{OLD}/onsets.parquet"); onsets(f"{R}/quick"); fits(f"{R}/quick/fits/fits.json")
print("== reference_engine"); cmp("ref", f"{R}/reference_engine/onsets.parquet", f"{OLD}/reference_engine_onsets.parquet")
fits(f"{R}/reference_engine/fits/fits.json")
print("== validation"); cmp("val", f"{R}/validation/onsets.parquet", f"{OLD}/validation_onsets.parquet")
o = zipfind.load(f"{R}/validation").onsets
print(o[["cell", "K", "p_bursty", "lr", "N", "L", "eps", "p_novel", "alpha", "onset_step", "censored"]].round(4).to_string(index=False))
p = pd.read_parquet(f"{R}/validation/fits/validation_predictions.parquet")  # per-axis errors: zipfind validate
print(p[p.model == "M7"].round(3).to_string(index=False))
print("== tokens_quick"); cmp("tok", f"{R}/tokens_quick/onsets.parquet", f"{OLD}/tokens_quick_onsets.parquet")
run = zipfind.load(f"{R}/tokens_quick"); o = onsets(f"{R}/tokens_quick"); m = run.metrics
fits(f"{R}/tokens_quick/fits/fits.json")
learn = o[~o.censored]
lr = np.abs(np.log(learn.onset_step / learn.induction_step)).dropna()
print(f"IC onset vs induction crossing: n {len(lr)} median |ln| {lr.median():.3f} max {lr.max():.3f} at alpha {learn.loc[lr.idxmax(), 'alpha']}")
l2 = sorted({x for x in m.measure.unique() if x.startswith("prefix_match_L2")})
for _, r in learn[learn.alpha <= 0.5].iterrows():
    t = r.onset_step
    icl = at(m, r.cell, "icl_score", t + 200) - at(m, r.cell, "icl_score", t - 200)
    pm = max(at(m, r.cell, h, t + 200) - at(m, r.cell, h, t - 200) for h in l2)
    lo = at(m, r.cell, "train_loss", t + 200) - at(m, r.cell, "train_loss", t - 200)
    lb = at(m, r.cell, "train_loss", t - 200) - at(m, r.cell, "train_loss", t - 600)
    print(f"  cell {r.cell} a {r.alpha} B {r.B} s {r.seed} onset {t:.0f}: icl change {icl:.2f} best L2 prefix rise {pm:.2f}; loss drop around {-lo:.2f} before {-lb:.2f}")
piv = o.pivot_table(index=["alpha", "seed"], columns="B", values="onset_step", aggfunc="first")
cen = o.pivot_table(index=["alpha", "seed"], columns="B", values="censored", aggfunc="first")
both = (~cen[2].astype(bool)) & (~cen[4].astype(bool))
fac = piv[2][both] / piv[4][both]
print(f"B4 vs B2: pairs both learn {both.sum()}, B4 earlier {(fac > 1).sum()}, median factor {fac.median():.2f}; "
      f"B4 learns where B2 censored {int(((~cen[4].astype(bool)) & cen[2].astype(bool)).sum())}; B1 learns {int((~cen[1].astype(bool)).sum())}")
for name in ("final_ic_acc", "final_iw_acc"):
    print(name, o.groupby("alpha")[name].agg(["min", "max"]).round(2).to_dict("index"))
sel = o[(o.alpha == 1.0) & (o.B == 4)].cell
for meas in ("ic_acc", "iw_acc_common", "iw_acc_rare"):
    print(f"alpha 1 B 4 final {meas}:", final(m, meas)[sel].round(2).tolist())
print("== one layer"); cmp("1L", f"{R}/tokens_one_layer/onsets.parquet", f"{OLD}/tokens_one_layer_onsets.parquet")
r1 = zipfind.load(f"{R}/tokens_one_layer"); o1 = r1.onsets; m1 = r1.metrics
pm1 = [x for x in m1.measure.unique() if x.startswith("prefix_match_")]
best1 = pd.concat([final(m1, h) for h in pm1], axis=1).max(axis=1)
print(f"censored {int(o1.censored.sum())}/{len(o1)}; best final prefix {best1.min():.2f}-{best1.max():.2f}; final IC {o1.final_ic_acc.min():.2f}-{o1.final_ic_acc.max():.2f}")
key = ["alpha", "B", "seed"]
two = o.merge(o1[key], on=key)
pm2 = [x for x in m.measure.unique() if x.startswith("prefix_match_")]
best2 = pd.concat([final(m, h) for h in pm2], axis=1).max(axis=1)
two["best_pm"] = best2[two.cell].values
print(f"two layers on those cells: learn {int((~two.censored).sum())}/{len(two)}; best prefix learners {two[~two.censored].best_pm.min():.2f}-{two[~two.censored].best_pm.max():.2f}; censored ones {two[two.censored].best_pm.round(2).tolist()}; IC {two.final_ic_acc.min():.2f}-{two.final_ic_acc.max():.2f}")
print("== english"); cmp("en", f"{R}/tokens_english/onsets.parquet", f"{OLD}/tokens_english_onsets.parquet")
re_ = zipfind.load(f"{R}/tokens_english"); oe = re_.onsets; me = re_.metrics
oe["icl"] = final(me, "icl_score")[oe.cell].values
print(oe[["cell", "alpha", "B", "frequencies", "seed", "censored", "final_ic_acc", "final_iw_acc", "icl"]].round(2).to_string(index=False))
print("== extra tokens")
for _, r in learn[learn.alpha >= 1].iterrows():
    t = r.onset_step
    lo = at(m, r.cell, "train_loss", t + 200) - at(m, r.cell, "train_loss", t - 200)
    print(f"  cell {r.cell} a {r.alpha} B {r.B} s {r.seed} onset {t:.0f}: loss drop around {-lo:.2f}")
for h in sorted(x for x in m.measure.unique() if x.startswith(("prefix_match_", "prev_token_L1"))):
    print(f"  cell 4 {h}: " + " ".join(f"{s}:{at(m, 4, h, s):.2f}" for s in (100, 200, 300, 400)))
pairs = o[~o.censored].groupby(["alpha", "B"]).onset_step.apply(list)
fl = [abs(np.log(v[0] / v[1])) / 2 for v in pairs if len(v) == 2]
print(f"seed floor: median {np.median(fl):.3f} over {len(fl)} pairs")
