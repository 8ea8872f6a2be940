#!/usr/bin/env bash
# Peak RSS of a whole `race-eval eval` run, f32 against bf16 (issue #22's memory goal), on one
# question of 4 options x 512 tokens (an article made by repeating our own sample passage, so
# every option fills the 512-token window).
#
#   bash scripts/bf16_memory.sh MODEL_DIR [THREADS]
#
# MODEL_DIR: a model folder, e.g. random albert-xxlarge-v2 weights made by
#   python scripts/make_random_model.py --tokenizer ../shared/tokenizer/albert-base-v2-tokenizer.json \
#       --size xxlarge --out /tmp/albert-xxlarge-random
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: bash scripts/bf16_memory.sh MODEL_DIR [THREADS]}
THREADS=${2:-2}
BIN=target/release/race-eval
WORK=$(mktemp -d)
PY=${PYTHON:-python3}
$PY - "$WORK/long.jsonl" <<'PY'
import json, sys
row = json.loads(open("datasets/sample/test.jsonl").readline())
row["article"] = " ".join([row["article"]] * 6)
row["example_id"] = "long-1"
open(sys.argv[1], "w").write(json.dumps(row) + "\n")
PY
rss() {
  /usr/bin/time -v "$BIN" eval --model "$MODEL" --data "$WORK/long.jsonl" --dtype "$1" \
    --batch-size 1 --output-dir "$WORK/runs-$1" --quiet 2> "$WORK/time-$1.txt" > /dev/null || {
    cat "$WORK/time-$1.txt" >&2; exit 1; }
  awk '/Maximum resident set size/ {printf "%.0f", $6 / 1024}' "$WORK/time-$1.txt"
}
export RAYON_NUM_THREADS=$THREADS
f32=$(rss f32)
bf16=$(rss bf16)
weights=$(find "$MODEL"/ -maxdepth 1 \( -name '*.safetensors' -o -name '*.bin' \) -printf '%s\n' | awk '{s += $1} END {printf "%.0f", s / 1048576}')
echo "peak RSS, eval of 1 question x 4 options x 512 tokens, $MODEL ($weights MiB of weights on disk):"
echo "  f32  $f32 MiB"
echo "  bf16 $bf16 MiB ($(awk -v a="$bf16" -v b="$f32" 'BEGIN {printf "%.0f", 100 * a / b}')% of f32)"
