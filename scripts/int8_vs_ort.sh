#!/usr/bin/env bash
# int8 speed, race-eval against ONNX Runtime's dynamic int8, side by side in one run (issue #22):
# albert-base-v2's shape 1x4x512 (random weights) and all-MiniLM-L6-v2 4x4x269, 2 threads,
# A and B interleaved PAIRS times; prints each time and race-eval's speed-up (ORT s/q / ours).
#   bash scripts/int8_vs_ort.sh [PAIRS] [REPEATS]
# Needs target/release/race-eval, the MiniLM (scripts/fetch_minilm.sh) and onnxruntime.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-2}
REPEATS=${2:-3}
PY=${PYTHON:-python}
BIN=target/release/race-eval
ort() {  # arch shape -> s/q
  (cd scripts && $PY int8_reference.py --time --arch "$1" --shape "$2" --threads 2 --repeats "$REPEATS" \
     --time-variants ort_int8 --workdir "/tmp/race-eval-int8-$1" 2>/dev/null | tail -1 |
     $PY -c 'import json,sys; print(json.load(sys.stdin)["fixed_seconds_per_question"]["ort_int8"])')
}
ours() {  # model seq questions -> s/q
  $BIN bench --model "$1" --seq "$2" --choices 4 --questions "$3" --batch "$3" --dtype int8 --threads 2 \
    --repeats "$REPEATS" --json 2>/dev/null |
    $PY -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["seconds_per_question"])'
}
for case in "albert-base 1,4,512 albert-base-v2 512 1" "minilm 4,4,269 all-MiniLM-L6-v2 269 4"; do
  set -- $case
  for i in $(seq "$PAIRS"); do
    o=$(ort "$1" "$2"); r=$(ours "$3" "$4" "$5")
    $PY -c "print(f'$1 $2 pair $i: ORT int8 {$o:.4f} s/q, race-eval int8 {$r:.4f} s/q, race-eval speed-up {$o/$r:.2f}x')"
  done
done
