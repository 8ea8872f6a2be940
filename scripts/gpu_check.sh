#!/usr/bin/env bash
# One prepared run for the lent GPU machine (issue 6). That machine has no Rust: build here.
#
# Here (CPU machine), once (about 25 minutes cold):
#   source ../shared/cuda-build/setup.sh
#   cargo build --release --features cuda --target-dir target-cuda
#   cp -r ../shared/cuda-build/smoke /tmp/smoke && chmod -R u+w /tmp/smoke && cp Cargo.lock /tmp/smoke/
#   (cd /tmp/smoke && cargo build --release --target-dir "$OLDPWD/target-cuda")
#   bash scripts/gpu_check.sh --pack      # fills .device/ (ignored by git)
# Then with the device tool: command `bash scripts/gpu_check.sh`, carry [".device"], timeout 600.
#
# Steps, each bounded by a timeout: the smoke program; CPU-vs-GPU parity on the bundled
# fixtures and on a random albert-base-v2 over real RACE-M questions (f32 and bf16); bf16
# throughput over RACE-M test's real lengths and at RACE test's size (4,934 questions);
# transformers SDPA bf16 on the same card and shapes for the ratio.
set -uo pipefail
cd "$(dirname "$0")/.."
D=.device

if [ "${1:-}" = "--pack" ]; then
  # The stripped binaries are ~115 MB, mostly embedded PTX; xz brings them to ~16 MB, under the
  # device tool's 64 MiB carry limit. The data and tokenizer come from ../shared (never committed).
  mkdir -p "$D"
  for b in race-eval cudasmoke; do
    strip -o "$D/$b" "target-cuda/release/$b" && xz -T2 -6 -f "$D/$b"
  done
  cp ../shared/data/race-m/test.jsonl "$D/race-m-test.jsonl"
  cp ../shared/tokenizer/albert-base-v2-tokenizer.json "$D/tokenizer.json"
  grep -qx '/.device/' .git/info/exclude || echo '/.device/' >> .git/info/exclude
  du -sh "$D"
  exit 0
fi

SP=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
export LD_LIBRARY_PATH=$(ls -d $SP/cu13/lib $SP/*/lib 2>/dev/null | tr '\n' :)${LD_LIBRARY_PATH:-}
PY=/opt/torch/.venv/bin/python
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
for b in race-eval cudasmoke; do
  [ -x "/tmp/$b" ] && continue
  $PY -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
    "$D/$b.xz" "/tmp/$b" && chmod +x "/tmp/$b"
done
BIN=/tmp/race-eval
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"

echo "== smoke"; timeout 120 /tmp/cudasmoke | tee "$OUT/smoke.txt" | tail -3
grep -q "RESULT: PASS" "$OUT/smoke.txt" || { echo "smoke failed: stopping"; exit 1; }

# Compares prediction files: max |Δlogit| relative to the question's largest |logit|, and the
# share of questions with the same argmax.
compare() {
  $PY - "$@" <<'PY'
import json, sys
ref, *others = sys.argv[1:]
r = [json.loads(l) for l in open(ref)]
for path in others:
    g = [json.loads(l) for l in open(path)]
    assert len(g) == len(r), (path, len(g), len(r))
    rel = max(max(abs(a - b) for a, b in zip(x["logits"], y["logits"])) / max(1e-6, max(abs(b) for b in y["logits"]))
              for x, y in zip(g, r))
    same = sum(x["pred"] == y["pred"] for x, y in zip(g, r)) / len(r)
    ok = "PASS" if rel <= 1e-2 and same >= 0.99 else "FAIL"
    print(f"{path}: max relative logit diff {rel:.2e}, same argmax {100 * same:.1f}% ({len(r)} questions) {ok}")
PY
}

echo "== parity: fixtures, cuda f32 and bf16 against cpu f32"
for m in tiny-albert groups-gelu relu-bin; do
  for dev in "cpu f32" "cuda f32" "cuda bf16"; do
    set -- $dev
    timeout 120 $BIN eval --model datasets/models/$m --data datasets/sample -q --device $1 --dtype $2 \
      --output-dir "$OUT/runs" --predictions "$OUT/$m-$1-$2.jsonl" > /dev/null || echo "FAILED $m $1 $2"
  done
  compare "$OUT/$m-cpu-f32.jsonl" "$OUT/$m-cuda-f32.jsonl" "$OUT/$m-cuda-bf16.jsonl"
done

echo "== parity: random albert-base-v2, first 300 RACE-M test questions"
timeout 180 $PY scripts/make_random_model.py --tokenizer $D/tokenizer.json --size base --out /tmp/base > /dev/null
head -n 300 $D/race-m-test.jsonl > /tmp/sub.jsonl
for dev in "cpu f32" "cuda f32" "cuda bf16"; do
  set -- $dev
  timeout 240 $BIN eval --model /tmp/base --data /tmp/sub.jsonl -q --device $1 --dtype $2 \
    --output-dir "$OUT/runs" --predictions "$OUT/base-$1-$2.jsonl" | grep wall || echo "FAILED base $1 $2"
done
compare "$OUT/base-cpu-f32.jsonl" "$OUT/base-cuda-f32.jsonl" "$OUT/base-cuda-bf16.jsonl"

echo "== throughput, bf16: RACE-M test end to end (1,436 questions, real lengths), then 4,934 x 4 x 269"
timeout 120 $BIN bench --model /tmp/base --data $D/race-m-test.jsonl --device cuda --dtype bf16 --batch 64 --json \
  | tee "$OUT/bench-data.json"
timeout 120 $BIN bench --model albert-base-v2 --device cuda --dtype bf16 --seq 269 --questions 4934 --batch 64 \
  --repeats 1 --json | tee "$OUT/bench-race-eval.json"
timeout 180 $PY scripts/bench_hf.py fixed --size base --device cuda --dtype bfloat16 --seq 269 --questions 4934 \
  --batch 64 --repeats 1 | tee "$OUT/bench-hf.json"
