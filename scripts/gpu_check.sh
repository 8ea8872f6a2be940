#!/usr/bin/env bash
# One prepared run for the lent GPU machine (issue 6). It has no Rust: build here first.
#
# Here (CPU machine), once:
#   source ../shared/cuda-build/setup.sh
#   cargo build --release --features cuda --target-dir target-cuda
#   (cd ../shared/cuda-build/smoke && cargo build --release --target-dir /tmp/smoke-target)
#   mkdir -p .device && cp target-cuda/release/race-eval /tmp/smoke-target/release/cudasmoke .device/
#   echo /.device/ >> .git/info/exclude
# Then with the device tool: run command `bash scripts/gpu_check.sh`, carry [".device"].
#
# Steps, each bounded: the smoke program; CPU-vs-GPU parity on the bundled fixtures and on a
# random albert-base-v2; bf16 throughput over RACE-test-sized input; transformers SDPA bf16 on the
# same card for the ratio.
set -uo pipefail
SP=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
export LD_LIBRARY_PATH=$(ls -d $SP/cu13/lib $SP/*/lib 2>/dev/null | tr '\n' :)${LD_LIBRARY_PATH:-}
PY=/opt/torch/.venv/bin/python
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
BIN=.device/race-eval
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"

echo "== smoke"; timeout 120 .device/cudasmoke | tee "$OUT/smoke.txt" | tail -3
grep -q "RESULT: PASS" "$OUT/smoke.txt" || { echo "smoke failed: stopping"; exit 1; }

echo "== parity: fixtures, cuda f32 and bf16 against cpu f32"
for m in tiny-albert groups-gelu relu-bin; do
  for dev in "cpu f32" "cuda f32" "cuda bf16"; do
    set -- $dev
    timeout 120 $BIN eval --model datasets/models/$m --data datasets/sample -q --device $1 --dtype $2 \
      --predictions "$OUT/$m-$1-$2.jsonl" > /dev/null || echo "FAILED $m $1 $2"
  done
done
$PY - "$OUT" <<'PY'
import json, sys, glob
out = sys.argv[1]
for m in ["tiny-albert", "groups-gelu", "relu-bin"]:
    ref = [json.loads(l) for l in open(f"{out}/{m}-cpu-f32.jsonl")]
    for dt in ["f32", "bf16"]:
        got = [json.loads(l) for l in open(f"{out}/{m}-cuda-{dt}.jsonl")]
        rel = max(abs(a - b) / max(1e-6, abs(b)) for r, g in zip(ref, got) for a, b in zip(g["logits"], r["logits"]))
        same = sum(r["pred"] == g["pred"] for r, g in zip(ref, got)) / len(ref)
        print(f"{m} cuda {dt}: max rel logit diff {rel:.2e}, same argmax {100*same:.1f}%")
PY

echo "== throughput: albert-base-v2 bf16, 4934 questions x 4 x 269 tokens (RACE test size, mean length)"
timeout 300 $BIN bench --model albert-base-v2 --device cuda --dtype bf16 --seq 269 --questions 4934 --batch 64 --repeats 1 --json | tee "$OUT/bench-race-eval.json"
timeout 300 $PY scripts/bench_hf.py fixed --size base --device cuda --dtype bfloat16 --seq 269 --questions 4934 --batch 64 --repeats 1 | tee "$OUT/bench-hf.json"
