#!/usr/bin/env bash
# Runs race-eval's bench and transformers (scripts/bench_hf.py) on the same shapes and inputs,
# side by side, and prints the ratio table for BENCHMARKS.md.
#
#   bash scripts/bench_compare.sh [THREADS] [DATA_LIMIT]
#
# Needs: a release build (cargo build --release), a Python with torch + transformers
# (PYTHON=..., default .venv/bin/python; see scripts/requirements.txt), and for the real-data
# rows ../shared/data/race-m/test.jsonl with ../shared/tokenizer/albert-base-v2-tokenizer.json.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
LIMIT=${2:-100}
PY=${PYTHON:-.venv/bin/python}
BIN=target/release/race-eval
DATA=../shared/data/race-m/test.jsonl
TOK=../shared/tokenizer/albert-base-v2-tokenizer.json
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS

ours_fixed=$($BIN bench --model albert-base-v2 --seq 512 --questions 1 --choices 4 --repeats 3 --threads "$THREADS" --json)
hf_fixed=$($PY scripts/bench_hf.py fixed --size base --seq 512 --questions 1 --repeats 3 --threads "$THREADS")
echo "$ours_fixed" > /tmp/bench_ours_fixed.json; echo "$hf_fixed" > /tmp/bench_hf_fixed.json

if [ -f "$DATA" ]; then
  ours_data=$($BIN bench --model albert-base-v2 --tokenizer "$TOK" --data "$DATA" --limit "$LIMIT" --batch 8 --threads "$THREADS" --json)
  hf_data=$($PY scripts/bench_hf.py data --size base --data "$DATA" --tokenizer "$TOK" --limit "$LIMIT" --threads "$THREADS")
else
  ours_data='{}'; hf_data='{}'
  echo "($DATA not found: real-data rows skipped)" >&2
fi

$PY - "$ours_fixed" "$hf_fixed" "$ours_data" "$hf_data" "$THREADS" "$LIMIT" <<'PY'
import json, sys
of, hf, od, hd = (json.loads(a) for a in sys.argv[1:5])
threads, limit = sys.argv[5], sys.argv[6]
r = of["results"][0]
print(f"| benchmark ({threads} threads, f32) | race-eval | transformers ({hf['attn']}, torch {hf['torch']}) | speed-up |")
print("|---|---|---|---|")
print(f"| albert-base-v2, 1x4x512, s/question | {r['seconds_per_question']:.3f} | {hf['seconds_per_question']:.3f} | {hf['seconds_per_question']/r['seconds_per_question']:.2f}x |")
if od:
    print(f"| RACE-M test, first {limit} questions, questions/s end to end (race-eval: read-ahead tokenising, length-sorted batches of 8, padding packed away; transformers: every sequence padded to 512, batch 1) | {od['questions_per_s']:.3f} | {hd['questions_per_s']:.3f} | {od['questions_per_s']/hd['questions_per_s']:.2f}x |")
print()
print(f"race-eval fixed shape: {r['gflop_per_s']:.1f} GFLOP/s (nominal: the model's full FLOPs over the time; the [CLS]-only last layer skips 7% of them), {r['percent_of_sgemm_peak']:.0f}% of the sgemm peak it measured ({of['sgemm_peak_gflops']:.1f} GFLOP/s), peak RSS {r['peak_rss_mb']:.0f} MiB")
if od:
    print(f"real data: {od['real_tokens']} real tokens; {od['padded_tokens']} with padding to each batch's longest (what a padded GPU batch runs); {od['tokens_if_padded_to_512']} padded to 512; race-eval peak RSS {od['peak_rss_mb']:.0f} MiB")
PY
