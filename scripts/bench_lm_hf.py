"""Questions/s of transformers scoring RACE the way lm-evaluation-harness does (batch size 1:
every (context, " " + option) pair is one forward pass of context + continuation[:-1]), on the
first N harness-last documents of a RACE jsonl file, with the GGUF file dequantised to float32.
The counterpart of `race-eval eval --model FILE.gguf --protocol harness-last --limit N`.

Usage: /work/venv/bin/python scripts/bench_lm_hf.py [--gguf FILE] [--data FILE] [--limit N]
       [--threads T]
"""

import argparse
import os
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lm_reference as ref  # noqa: E402  (the harness' doc_to_text and _encode_pair)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=ref.GGUF)
    ap.add_argument("--data", default=ref.RACE_M)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d, f = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    chosen = [doc for _, doc in ref.race_m_docs(args.data)[: args.limit]]
    start = time.perf_counter()
    tokens = 0
    for doc in chosen:
        qi = len(doc["problems"]) - 1
        ctx, conts, _ = ref.scored(model, tok, doc, qi)
        tokens += sum(len(ctx) + len(c) - 1 for c in conts)
    secs = time.perf_counter() - start
    print(
        f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, "
        f"{args.threads} threads: {len(chosen)} questions in {secs:.1f} s = "
        f"{len(chosen) / secs:.3f} questions/s ({tokens / secs:.0f} tokens/s)"
    )


if __name__ == "__main__":
    main()
