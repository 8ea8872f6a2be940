#!/usr/bin/env python3
"""Split real RACE-M dev into train/dev files for the fine-tuning and distillation demos.

Whole passages go to one side: the last passages of dev.jsonl (file order) that hold 200 questions
become `dev.jsonl` (for picking the step), the rest `train.jsonl`; `test.jsonl` is a copy of RACE-M
test. The data is licensed: write it outside the checkout (default /work/demo), never commit it.

    python3 scripts/make_demo_splits.py [--shared ../shared/data/race-m] [--out /work/demo]
"""

import argparse
import json
import os
import shutil

p = argparse.ArgumentParser()
p.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "../../shared/data/race-m"))
p.add_argument("--out", default="/work/demo")
p.add_argument("--dev-questions", type=int, default=200)
a = p.parse_args()

lines = open(os.path.join(a.shared, "dev.jsonl"), encoding="utf-8").read().splitlines()
passages = []  # [(example_id, [lines])] in file order
for line in lines:
    pid = json.loads(line)["example_id"]
    if not passages or passages[-1][0] != pid:
        passages.append((pid, []))
    passages[-1][1].append(line)
dev, n = [], 0
while n < a.dev_questions:
    pid, qs = passages.pop()
    dev.insert(0, (pid, qs))
    n += len(qs)
os.makedirs(a.out, exist_ok=True)
for name, part in (("train", passages), ("dev", dev)):
    with open(os.path.join(a.out, f"{name}.jsonl"), "w", encoding="utf-8") as f:
        for _, qs in part:
            f.write("".join(q + "\n" for q in qs))
    print(f"{name}.jsonl: {sum(len(q) for _, q in part)} questions, {len(part)} passages")
shutil.copy(os.path.join(a.shared, "test.jsonl"), os.path.join(a.out, "test.jsonl"))
print(f"test.jsonl: copied into {a.out}")
