#!/usr/bin/env bash
# bf16 on the CPU, side by side in one run (issue #22): race-eval f32 and bf16 against PyTorch f32
# and PyTorch bf16 autocast, at the albert-base-v2 shape (1x4x512, random weights, the same input
# ids) and end to end on real RACE-M (PyTorch at its best: length-sorted batches of 8 padded to
# their own longest; race-eval: its default eval pipeline, batches of 8).
#
#   bash scripts/bench_bf16.sh [THREADS] [DATA_LIMIT] [REPEATS]
#
# Needs a release build, PYTHON with torch + transformers (default .venv/bin/python), and for the
# real-data rows ../shared/data/race-m/test.jsonl with ../shared/tokenizer/albert-base-v2-tokenizer.json.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
LIMIT=${2:-40}
REPEATS=${3:-3}
PY=${PYTHON:-.venv/bin/python}
BIN=target/release/race-eval
DATA=../shared/data/race-m/test.jsonl
TOK=../shared/tokenizer/albert-base-v2-tokenizer.json
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
OUT=$(mktemp -d)

ours() { $BIN bench --model albert-base-v2 --seq 512 --questions 1 --choices 4 --repeats "$REPEATS" --threads "$THREADS" --json --dtype "$1"; }
torch_fixed() { $PY scripts/bench_hf.py fixed --size base --seq 512 --questions 1 --repeats "$REPEATS" --threads "$THREADS" "$@"; }
# Interleaved: f32 and bf16 of both, twice over, so drift in machine load hits all alike.
for round in 1 2; do
  ours f32 > "$OUT/ours_f32_$round.json"
  ours bf16 > "$OUT/ours_bf16_$round.json"
  torch_fixed > "$OUT/torch_f32_$round.json"
  torch_fixed --autocast > "$OUT/torch_bf16_$round.json"
done
if [ -f "$DATA" ]; then
  for d in f32 bf16; do
    $BIN bench --model albert-base-v2 --tokenizer "$TOK" --data "$DATA" --limit "$LIMIT" --batch 8 \
      --threads "$THREADS" --json --dtype "$d" > "$OUT/ours_data_$d.json"
  done
  $PY scripts/bench_hf.py data --size base --data "$DATA" --tokenizer "$TOK" --limit "$LIMIT" \
    --threads "$THREADS" --sorted-batch 8 > "$OUT/torch_data_f32.json"
  $PY scripts/bench_hf.py data --size base --data "$DATA" --tokenizer "$TOK" --limit "$LIMIT" \
    --threads "$THREADS" --sorted-batch 8 --autocast > "$OUT/torch_data_bf16.json"
else
  echo "($DATA not found: real-data rows skipped)" >&2
fi

$PY - "$OUT" "$THREADS" "$LIMIT" <<'PY'
import json, os, sys
out, threads, limit = sys.argv[1:4]
def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None
def spq(name):
    v = load(name)
    return v["results"][0]["seconds_per_question"] if "results" in v else v["seconds_per_question"]
best = lambda k: min(spq(f"{k}_{r}.json") for r in (1, 2))
of, ob, tf, tb = best("ours_f32"), best("ours_bf16"), best("torch_f32"), best("torch_bf16")
print(f"| albert-base-v2 1x4x512, s/question ({threads} threads, best of 2 interleaved rounds) | f32 | bf16 |")
print("|---|---|---|")
print(f"| race-eval | {of:.3f} | {ob:.3f} |")
print(f"| PyTorch (bf16: CPU autocast) | {tf:.3f} | {tb:.3f} |")
print(f"race-eval bf16 = {of/ob:.2f}x race-eval f32, {tb/ob:.2f}x PyTorch bf16 autocast, {tf/ob:.2f}x PyTorch f32")
od_f, od_b, td_f, td_b = (load(n) for n in ("ours_data_f32.json", "ours_data_bf16.json", "torch_data_f32.json", "torch_data_bf16.json"))
if od_f:
    qps = lambda v: v["results"][0]["questions_per_s"] if "results" in v else v["questions_per_s"]
    print()
    print(f"| RACE-M test, first {limit} questions, questions/s end to end | f32 | bf16 |")
    print("|---|---|---|")
    print(f"| race-eval (batches of 8) | {qps(od_f):.3f} | {qps(od_b):.3f} |")
    print(f"| PyTorch (length-sorted batches of 8, padded to their longest; bf16: autocast) | {qps(td_f):.3f} | {qps(td_b):.3f} |")
    print(f"race-eval bf16 = {qps(od_b)/qps(od_f):.2f}x race-eval f32, {qps(od_b)/qps(td_b):.2f}x PyTorch bf16 autocast")
PY
