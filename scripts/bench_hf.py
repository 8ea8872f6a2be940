#!/usr/bin/env python3
"""The transformers (PyTorch) side of race-eval's benchmarks: the same shapes and inputs.

Fixed shape (as `race-eval bench --model albert-base-v2 --seq 512 --questions 1 --choices 4`):
    python scripts/bench_hf.py fixed --size base --seq 512 --questions 1 --threads 2

Real data, HF's usual pipeline (every sequence padded to 512), formatted as ALBERT's RACE recipe:
    python scripts/bench_hf.py data --data ../shared/data/race-m/test.jsonl \
        --tokenizer ../shared/tokenizer/albert-base-v2-tokenizer.json --size base --limit 50 --threads 2

Prints one JSON object. Random weights (speed does not depend on them); the token ids of the
fixed-shape input follow the same generator as race-eval's bench so both run the same input.
"""
import argparse
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


def fixed(args, model):
    q, c, l = args.batch, args.choices, args.seq
    ids = torch.tensor(lcg_ids(q * c * l, 30000)).reshape(q, c, l)
    types = torch.tensor([[[int(i >= l // 2) for i in range(l)]] * c] * q)
    mask = torch.ones_like(ids)
    ids, types, mask = ids.to(args.device), types.to(args.device), mask.to(args.device)
    passes = -(-args.questions // q)
    with torch.inference_mode():
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
    with torch.inference_mode():
        for r in rows:
            ctx = tok.encode(r["article"], add_special_tokens=False).ids
            ids, types = [], []
            for opt in r["options"]:
                qa = tok.encode(qa_text(r["question"], opt), add_special_tokens=False).ids[-128:]
                c = ctx[: L - 3 - len(qa)]
                seq = [cls] + c + [sep] + qa + [sep]
                n_tokens += len(seq)
                t = [0] * (len(c) + 2) + [1] * (len(qa) + 1)
                ids.append(seq + [0] * (L - len(seq)))
                types.append(t + [0] * (L - len(t)))
            ids = torch.tensor([ids])
            mask = (ids != 0).long()
            mask[:, :, 0] = 1
            dev = args.device
            model(input_ids=ids.to(dev), token_type_ids=torch.tensor([types]).to(dev), attention_mask=mask.to(dev)).logits.float().cpu().numpy()
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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = model_for(args.size, args.attn, getattr(torch, args.dtype)).to(args.device)
    out = fixed(args, model) if args.mode == "fixed" else data(args, model)
    out.update(mode=args.mode, size=args.size, threads=args.threads, attn=args.attn, dtype=args.dtype,
               torch=torch.__version__)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
