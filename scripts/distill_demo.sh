#!/usr/bin/env bash
# The distillation demo on real RACE-M (BENCHMARKS.md, "Distillation"): a fine-tuned 6-layer MiniLM
# teacher distilled into a 3-layer student made of its layers 0, 2, 4, with a control student
# trained from the same start on the gold labels alone (alpha 0). Then both students and the
# teacher on all of RACE-M test: accuracy, argmax agreement with the teacher, and `bench` speed.
#
#   bash scripts/distill_demo.sh TEACHER_DIR DEMO_DIR
#
# TEACHER_DIR: a fine-tuned model folder (scripts/finetune_hf.py --save-dir, or race-eval train).
# DEMO_DIR: train.jsonl, dev.jsonl, test.jsonl from scripts/make_demo_splits.py (outside git).
# CONTROL=0 skips the alpha-0 control. Writes DEMO_DIR/results and DEMO_DIR/heads.
set -euo pipefail
TEACHER="$1"
DEMO="$2"
BIN="${BIN:-target/release/race-eval}"
FMT=(--max-seq-len 128 --max-qa-len 32)
RES="$DEMO/results"
mkdir -p "$RES" "$DEMO/heads"
newest() { ls -td "$RES"/*/ | head -1; }

"$BIN" eval --model "$TEACHER" --data "$DEMO" --split train "${FMT[@]}" --output-dir "$RES" -q
TEACHER_TRAIN="$(newest)"
"$BIN" eval --model "$TEACHER" --data "$DEMO" --split test "${FMT[@]}" --output-dir "$RES" -q
TEACHER_TEST="$(newest)"

RECIPE=(--lr 1e-4 --epochs 1 --warmup-steps 8 --batch-size 16 --micro-batch-size 4 --eval-every 26 "${FMT[@]}")
students=(distilled)
[ "${CONTROL:-1}" = 1 ] && students+=(control)
for name in "${students[@]}"; do
  alpha=0.5
  [ "$name" = control ] && alpha=0
  rm -rf "$DEMO/heads/$name"
  /usr/bin/time -f "$name: %e s wall" "$BIN" distill --teacher "$TEACHER_TRAIN" --student "$TEACHER" \
    --student-layers 3 --alpha "$alpha" --temperature 2 --data "$DEMO" --output "$DEMO/heads/$name" \
    "${RECIPE[@]}" -q
  "$BIN" eval --model "$DEMO/heads/$name" --data "$DEMO" --split test "${FMT[@]}" --output-dir "$RES" -q
  STUDENT_TEST="$(newest)"
  echo "== $name student vs teacher on RACE-M test"
  "$BIN" compare "$TEACHER_TEST" "$STUDENT_TEST"
done

for m in "$TEACHER" "$DEMO/heads/distilled"; do
  echo "== bench $m"
  "$BIN" bench --model "$m" --data "$DEMO" --split test --batch 8 "${FMT[@]}"
done
