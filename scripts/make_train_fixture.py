#!/usr/bin/env python3
"""Reference for `race-eval train`: two optimizer steps of ALBERT's RACE recipe in torch.

Loads datasets/models/tiny-albert with every dropout at 0, builds a fixed batch of token ids
(two micro-batches of two questions x 4 options, some rows padded), and runs, per step:
gradient accumulation over the micro-batches (each mean loss scaled by its share of the batch),
torch.nn.utils.clip_grad_norm_, torch.optim.AdamW with the recipe's parameter groups (no weight
decay for biases and LayerNorm weights) and a linear schedule (transformers'
get_linear_schedule_with_warmup). Writes tests/fixtures/train/:

  steps.json          inputs, labels, hyperparameters, per-step loss, grad norm and lr
  step1.safetensors   every weight after step 1 (canonical names)
  step2.safetensors   every weight after step 2

    /work/venv/bin/python scripts/make_train_fixture.py
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import AlbertConfig, AlbertForMultipleChoice, get_linear_schedule_with_warmup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "datasets", "models", "tiny-albert")
OUT = os.path.join(ROOT, "tests", "fixtures", "train")

HP = dict(lr=3e-4, warmup_steps=0, total_steps=4, weight_decay=0.01, beta1=0.9, beta2=0.999, eps=1e-6,
          max_grad_norm=0.5, micro_batches=2, questions_per_micro=2, choices=4, seq_len=14, seed=7)


def no_decay(name):
    return "bias" in name or "LayerNorm" in name or "layer_norm" in name


def make_batch(gen, vocab, cls=2, sep=3):
    n, c, l = HP["questions_per_micro"], HP["choices"], HP["seq_len"]
    ids = torch.randint(5, vocab, (n, c, l), generator=gen)
    types = torch.zeros(n, c, l, dtype=torch.long)
    mask = torch.ones(n, c, l, dtype=torch.long)
    for q in range(n):
        for o in range(c):
            length = l - int(torch.randint(0, 4, (1,), generator=gen))
            split = length // 2
            ids[q, o, 0] = cls
            ids[q, o, split] = sep
            ids[q, o, length - 1] = sep
            types[q, o, split + 1:length] = 1
            ids[q, o, length:] = 0
            mask[q, o, length:] = 0
    labels = torch.randint(0, c, (n,), generator=gen)
    return ids, types, mask, labels


def main():
    cfg = AlbertConfig.from_pretrained(MODEL)
    cfg.hidden_dropout_prob = 0.0
    cfg.attention_probs_dropout_prob = 0.0
    cfg.classifier_dropout_prob = 0.0
    model = AlbertForMultipleChoice.from_pretrained(MODEL, config=cfg, attn_implementation="eager")
    model.train()
    gen = torch.Generator().manual_seed(HP["seed"])
    micro = [make_batch(gen, cfg.vocab_size) for _ in range(HP["micro_batches"])]

    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if not no_decay(n)], "weight_decay": HP["weight_decay"]},
        {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"])
    sched = get_linear_schedule_with_warmup(opt, HP["warmup_steps"], HP["total_steps"])

    steps = []
    os.makedirs(OUT, exist_ok=True)
    for step in range(2):
        opt.zero_grad()
        total = 0.0
        for ids, types, mask, labels in micro:
            out = model(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels)
            weight = 1.0 / HP["micro_batches"]
            (out.loss * weight).backward()
            total += weight * out.loss.item()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), HP["max_grad_norm"]).item()
        lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        steps.append(dict(loss=total, grad_norm=norm, lr=lr))
        weights = {n: p.detach().clone().contiguous() for n, p in model.named_parameters()}
        save_file(weights, os.path.join(OUT, f"step{step + 1}.safetensors"))
        print(f"step {step + 1}: loss {total:.6f} grad norm {norm:.4f} lr {lr:.2e}")
    assert steps[0]["grad_norm"] > HP["max_grad_norm"], "clipping should be active in the fixture"

    record = dict(
        model="datasets/models/tiny-albert",
        hyperparameters=HP,
        micro_batches=[dict(input_ids=ids.tolist(), token_type_ids=t.tolist(), attention_mask=m.tolist(),
                            labels=y.tolist()) for ids, t, m, y in micro],
        steps=steps,
        torch_version=torch.__version__,
    )
    with open(os.path.join(OUT, "steps.json"), "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
