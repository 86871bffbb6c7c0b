#!/usr/bin/env bash
# One prepared GPU check: device tests (CUDA engine, counter-based draws equal the CPU's, compiled steps equal
# eager ones), `zipfind bench --json` on the classification and token configs (eager and --compile), and GPU
# sweeps (the 1,000-cell phase diagram first, then both tasks' phase diagrams and the reference sweeps).
# usage: bash sims/gpu_check.sh OUTDIR   (run from the repository root on a CUDA machine)
set -uo pipefail
out=${1:?usage: bash sims/gpu_check.sh OUTDIR}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log="$out/gpu_check.log"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  echo "== device tests"; python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_rng.py \
      "tests/test_engine.py::test_compiled_loss_step_equals_the_eager_step"
  echo "== bench"; python3 -m zipfind bench --device cuda --models "${BENCH_MODELS:-1,32,256,1024}" --json \
      --config sims/quick.toml --config sims/bench_small.toml --config sims/bench_tokens.toml > "$out/bench.json"
  python3 -m zipfind bench --device cuda --models 256,1024 --json --compile --no-loop --config sims/quick.toml \
      > "$out/bench_compile.json" || echo "compiled bench failed"
  python3 - "$out/bench.json" "$out/bench_compile.json" <<'PY'
import json, sys
for r in [r for f in sys.argv[1:] for r in json.load(open(f))]:
    print(f"{r['config']:12s} M={r['M']:4d} stacked {r['stacked_model_steps_per_s']:10.0f}/s  loop "
          f"{r['loop_model_steps_per_s']:8.0f}/s  ratio {r['ratio']:6.1f}x  vs vmap {r['ratio_vs_vmap']:5.1f}x  "
          f"compile {r['compile']}  "
          f"{r['achieved_gflops']:8.0f} GFLOP/s "
          f"({100 * r['peak_fraction']:.1f}% of {r['peak_gflops']:.0f})  data {100 * r['data_share']:.1f}%  "
          f"{r['peak_mem_per_model_mb']:.2f} MB/model")
PY
  for spec in ${SWEEPS:-sims/phase_diagram_1k.toml sims/phase_diagram.toml sims/tokens_phase_diagram.toml sims/reference_engine.toml \
               sims/validation.toml sims/quick.toml}; do
    name=$(basename "$spec" .toml)
    echo "== sweep $spec"; /usr/bin/time -f "wall %e s" python3 -m zipfind sweep "$spec" --device cuda \
        --out "$out/run_$name" || echo "sweep $spec failed"
    tar -C "$out" -czf "$out/run_$name.tgz" "run_$name" && rm -rf "$out/run_$name"
  done
} 2>&1 | tee "$log"
