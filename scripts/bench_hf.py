#!/usr/bin/env python3
"""The transformers (PyTorch) side of race-eval's benchmarks: the same shapes and inputs.

Fixed shape (as `race-eval bench --model albert-base-v2 --seq 512 --questions 1 --choices 4`):
    python scripts/bench_hf.py fixed --size base --seq 512 --questions 1 --threads 2

Real data, HF's usual pipeline (every sequence padded to 512), formatted as ALBERT's RACE recipe:
    python scripts/bench_hf.py data --data ../shared/data/race-m/test.jsonl \
        --tokenizer ../shared/tokenizer/albert-base-v2-tokenizer.json --size base --limit 50 --threads 2

PyTorch's bf16 as a user runs it on a CPU: --autocast (torch.autocast("cpu", dtype=torch.bfloat16)
around the forward pass, f32 weights). The best a PyTorch user does on real data: --sorted-batch N
(questions sorted by length, batches of N padded to their own longest, not to 512):
    python scripts/bench_hf.py data ... --sorted-batch 8 --autocast

Prints one JSON object. Random weights (speed does not depend on them); the token ids of the
fixed-shape input follow the same generator as race-eval's bench so both run the same input.
"""
import argparse
import contextlib
import json
import time

import torch
from transformers import AlbertConfig, AlbertForMultipleChoice

SIZES = {
    "base": (768, 12, 12, 3072),
    "large": (1024, 24, 16, 4096),
    "xlarge": (2048, 24, 16, 8192),
    "xxlarge": (4096, 12, 64, 16384),
}


def model_for(size, attn, dtype):
    h, layers, heads, inter = SIZES[size]
    cfg = AlbertConfig(vocab_size=30000, embedding_size=128, hidden_size=h, num_hidden_layers=layers,
                       num_attention_heads=heads, intermediate_size=inter, hidden_act="gelu_new",
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                       attn_implementation=attn)
    torch.manual_seed(0)
    return AlbertForMultipleChoice(cfg).eval().to(dtype)


def lcg_ids(n, vocab):
    """race-eval bench's input generator (src/bench.rs BenchModel::inputs)."""
    state = 0x9E3779B97F4A7C15
    out = []
    for _ in range(n):
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out.append(5 + (state >> 33) % (vocab - 5))
    return out


def autocast(args):
    if args.autocast:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fixed(args, model):
    q, c, l = args.batch, args.choices, args.seq
    ids = torch.tensor(lcg_ids(q * c * l, 30000)).reshape(q, c, l)
    types = torch.tensor([[[int(i >= l // 2) for i in range(l)]] * c] * q)
    mask = torch.ones_like(ids)
    ids, types, mask = ids.to(args.device), types.to(args.device), mask.to(args.device)
    passes = -(-args.questions // q)
    with torch.inference_mode(), autocast(args):
        model(input_ids=ids, token_type_ids=types, attention_mask=mask)
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            for _ in range(passes):
                model(input_ids=ids, token_type_ids=types, attention_mask=mask).logits.float().cpu().numpy()
            best = min(best, (time.perf_counter() - t) / (passes * q))
    return {"seconds_per_question": best, "questions_per_s": 1 / best, "shape": [q, c, l]}


def qa_text(question, option):
    return question.replace("_", option) if "_" in question else question + " " + option


def data(args, model):
    from tokenizers import Tokenizer
    started = time.perf_counter()
    tok = Tokenizer.from_file(args.tokenizer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    rows = [json.loads(line) for line in open(args.data)][: args.limit]
    L = 512
    n_tokens = 0
    encoded = []
    for r in rows:
        ctx = tok.encode(r["article"], add_special_tokens=False).ids
        seqs = []
        for opt in r["options"]:
            qa = tok.encode(qa_text(r["question"], opt), add_special_tokens=False).ids[-128:]
            c = ctx[: L - 3 - len(qa)]
            seq = [cls] + c + [sep] + qa + [sep]
            n_tokens += len(seq)
            seqs.append((seq, [0] * (len(c) + 2) + [1] * (len(qa) + 1)))
        encoded.append(seqs)
    if args.sorted_batch:
        # Longest first, batches of N questions padded to their own longest sequence.
        order = sorted(range(len(encoded)), key=lambda i: -max(len(s) for s, _ in encoded[i]))
        batches = [order[i:i + args.sorted_batch] for i in range(0, len(order), args.sorted_batch)]
    else:
        batches = [[i] for i in range(len(encoded))]
    dev = args.device
    with torch.inference_mode(), autocast(args):
        for b in batches:
            width = L if not args.sorted_batch else max(len(s) for i in b for s, _ in encoded[i])
            ids = torch.tensor([[s + [0] * (width - len(s)) for s, _ in encoded[i]] for i in b])
            types = torch.tensor([[t + [0] * (width - len(t)) for _, t in encoded[i]] for i in b])
            mask = torch.tensor([[[1] * len(s) + [0] * (width - len(s)) for s, _ in encoded[i]] for i in b])
            model(input_ids=ids.to(dev), token_type_ids=types.to(dev), attention_mask=mask.to(dev)).logits.float().cpu().numpy()
    wall = time.perf_counter() - started
    return {"questions": len(rows), "real_tokens": n_tokens, "wall_s": wall, "questions_per_s": len(rows) / wall}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["fixed", "data"])
    ap.add_argument("--size", choices=sorted(SIZES), default="base")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--questions", type=int, default=1)
    ap.add_argument("--choices", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data")
    ap.add_argument("--tokenizer")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--autocast", action="store_true", help="bf16 CPU autocast around the forward pass")
    ap.add_argument("--sorted-batch", type=int, default=0,
                    help="data: length-sorted batches of N questions padded to their own longest")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = model_for(args.size, args.attn, getattr(torch, args.dtype)).to(args.device)
    out = fixed(args, model) if args.mode == "fixed" else data(args, model)
    out.update(mode=args.mode, size=args.size, threads=args.threads, attn=args.attn, dtype=args.dtype,
               autocast=args.autocast, sorted_batch=args.sorted_batch, torch=torch.__version__)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
