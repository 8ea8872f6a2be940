#!/usr/bin/env python3
"""bf16 drift on real weights: race-eval's `--dtype bf16` against PyTorch's CPU autocast (issue #22).

Model: all-MiniLM-L6-v2 as BertForMultipleChoice with the seeded classifier of
tests/fixtures/minilm/head.safetensors (make_minilm_reference.load_pair, sha256 checked), eager
attention. Inputs: RACE-M test (or --limit N questions), built exactly as race-eval builds them
(scripts/race_inputs.py, max_seq_len 512, max_qa_len 128), each option unpadded on its own.

PyTorch: f32, and bf16 as a PyTorch user runs it on a CPU: torch.autocast("cpu", torch.bfloat16)
around the same forward pass (f32 weights; linears and matmuls in bf16, the rest as autocast
decides). race-eval: the predictions.jsonl of `race-eval eval --dtype f32` and `--dtype bf16` on
the same file (pass both). Each side's drift is measured from its own f32 logits:
mean |bf16 logit - f32 logit| and argmax agreement with f32.

    race-eval eval --model MINILM --head tests/fixtures/minilm/head.safetensors \
        --data ../shared/data/race-m/test.jsonl --dtype f32 --output-dir /tmp/d32
    race-eval eval ... --dtype bf16 --output-dir /tmp/d16
    python scripts/bf16_drift.py --model MINILM --data ../shared/data/race-m/test.jsonl \
        --ours-f32 /tmp/d32/*/predictions.jsonl --ours-bf16 /tmp/d16/*/predictions.jsonl

Prints one JSON object.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import make_fixtures as mf  # noqa: E402  (deterministic torch settings on import)
import make_minilm_reference as mr  # noqa: E402
import race_inputs  # noqa: E402
import safetensors.torch  # noqa: E402
import torch  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

HEAD = os.path.join(mf.ROOT, "tests/fixtures/minilm/head.safetensors")
SETTING = {"max_seq_len": 512, "max_qa_len": 128}


def drift(pairs):
    """pairs: [(f32 logits, bf16 logits)] per question."""
    n = sum(len(f) for f, _ in pairs)
    mean = sum(abs(a - b) for f, b16 in pairs for a, b in zip(f, b16)) / n
    argmax = lambda v: max(range(len(v)), key=lambda i: (v[i], -i))
    agree = sum(argmax(f) == argmax(b) for f, b in pairs) / len(pairs)
    return {"questions": len(pairs), "mean_abs_drift": mean, "argmax_agreement": agree}


def read_ours(path):
    return {(r["passage_id"], r["question_index"]): r["logits"] for r in map(json.loads, open(path))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the all-MiniLM-L6-v2 folder (scripts/fetch_minilm.sh)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--ours-f32", required=True)
    ap.add_argument("--ours-bf16", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    weights = os.path.join(args.model, "model.safetensors")
    assert race_inputs.file_sha256(weights) == mr.WEIGHTS_SHA256, f"{weights}: not all-MiniLM-L6-v2"
    eager, _ = mr.load_pair(args.model, safetensors.torch.load_file(HEAD))
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    rows = race_inputs.read_jsonl(args.data, limit=args.limit)
    (qs,), _ = race_inputs.build_inputs(tok, rows, [SETTING])
    ours32, ours16 = read_ours(args.ours_f32), read_ours(args.ours_bf16)
    torch_pairs, our_pairs = [], []
    with torch.inference_mode():
        for q in qs:
            ids, types = q["input_ids"], q["token_type_ids"]
            f32 = mf.run_logits(eager, ids, types).tolist()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                b16 = mf.run_logits(eager, ids, types).float().tolist()
            torch_pairs.append((f32, b16))
            key = (q["id"], q["question_index"])
            if key not in ours32 or key not in ours16:
                sys.exit(f"{key}: not in race-eval's predictions (same --data and --limit?)")
            our_pairs.append((ours32[key], ours16[key]))
            # race-eval's f32 is transformers' f32 (parity tests: 1e-4); check it here too.
            d = max(abs(a - b) for a, b in zip(f32, ours32[key]))
            assert d < 1e-3, (key, f32, ours32[key])
    out = {"pytorch_autocast": drift(torch_pairs), "race_eval_bf16": drift(our_pairs),
           "torch": torch.__version__}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
