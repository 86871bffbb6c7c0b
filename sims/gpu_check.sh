#!/usr/bin/env bash
# One prepared GPU check: device tests, `zipfind bench --json` on the classification and token configs, and GPU
# sweeps (both tasks' phase diagrams).
# usage: bash sims/gpu_check.sh OUTDIR   (run from the repository root on a CUDA machine)
set -uo pipefail
out=${1:?usage: bash sims/gpu_check.sh OUTDIR}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log="$out/gpu_check.log"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  echo "== device tests"; python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py
  echo "== bench"; python3 -m zipfind bench --device cuda --models "${BENCH_MODELS:-1,8,32,128,256}" --json \
      --config sims/quick.toml --config sims/bench_small.toml --config sims/bench_tokens.toml > "$out/bench.json"
  python3 - "$out/bench.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1])):
    print(f"{r['config']:12s} M={r['M']:4d} stacked {r['stacked_model_steps_per_s']:10.0f}/s  loop "
          f"{r['loop_model_steps_per_s']:8.0f}/s  ratio {r['ratio']:6.1f}x  vs vmap {r['ratio_vs_vmap']:5.1f}x  "
          f"{r['achieved_gflops']:8.0f} GFLOP/s "
          f"({100 * r['peak_fraction']:.1f}% of {r['peak_gflops']:.0f})  data {100 * r['data_share']:.1f}%  "
          f"{r['peak_mem_per_model_mb']:.2f} MB/model")
PY
  for spec in ${SWEEPS:-sims/phase_diagram.toml sims/tokens_phase_diagram.toml sims/reference_engine.toml \
               sims/validation.toml sims/quick.toml}; do
    name=$(basename "$spec" .toml)
    echo "== sweep $spec"; /usr/bin/time -f "wall %e s" python3 -m zipfind sweep "$spec" --device cuda \
        --out "$out/run_$name" || echo "sweep $spec failed"
    tar -C "$out" -czf "$out/run_$name.tgz" "run_$name" && rm -rf "$out/run_$name"
  done
} 2>&1 | tee "$log"
