#!/usr/bin/env python3
"""Make a randomly initialised AlbertForMultipleChoice model folder in the Hub's layout.

For local checks that need a model with a real vocabulary (e.g. the 30k ALBERT tokenizer in
../shared/tokenizer) or a real size (albert-base-v2 for memory and speed measurements). The
folders it writes are NOT committed: they are random weights, made on demand.

    python scripts/make_random_model.py --tokenizer ../shared/tokenizer/albert-base-v2-tokenizer.json \
        --size tiny --out /tmp/tiny-30k
    python scripts/make_random_model.py --tokenizer ../shared/tokenizer/albert-base-v2-tokenizer.json \
        --size base --out /tmp/albert-base-v2-random

Sizes: tiny (embedding 16, hidden 32, 2 layers) and the released v2 shapes base, large, xlarge,
xxlarge (random weights, transformers' default initialisation). --seed picks the weights.
"""
import argparse
import json
import os
import shutil

import torch
from transformers import AlbertConfig, AlbertForMultipleChoice

SIZES = {
    "tiny": dict(embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "xlarge": dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, intermediate_size=8192),
    "xxlarge": dict(hidden_size=4096, num_hidden_layers=12, num_attention_heads=64, intermediate_size=16384),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json to ship with the model")
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bin", action="store_true", help="save pytorch_model.bin instead of safetensors")
    args = ap.parse_args()

    vocab = len(json.load(open(args.tokenizer))["model"]["vocab"])
    kw = dict(embedding_size=128, vocab_size=vocab, max_position_embeddings=512, hidden_act="gelu_new",
              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    kw.update(SIZES[args.size])
    torch.manual_seed(args.seed)
    model = AlbertForMultipleChoice(AlbertConfig(**kw)).eval()
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=not args.bin)
    shutil.copyfile(args.tokenizer, os.path.join(args.out, "tokenizer.json"))
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {args.size}, vocab {vocab}, {n:,} parameters")


if __name__ == "__main__":
    main()
