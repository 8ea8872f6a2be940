#!/usr/bin/env python3
"""Reference for `race-eval distill`: one optimizer step of the distillation loss in torch.

Two students, as `distill --student-layers` makes them:
  bert:   a random 4-layer BERT teacher (written to tests/fixtures/distill/bert4/), student with
          2 layers initialised from teacher layers 0 and 2 (every other layer);
  albert: datasets/models/tiny-albert (3 passes through its shared layer), student with 2 passes.
Each student gets a fixed batch (two micro-batches of two questions x 4 options, some rows
padded), soft targets (teacher probabilities, one of them exactly 0), and one step of
    alpha * T^2 * kl_div(log_softmax(z / T), p, reduction="batchmean") + (1 - alpha) * CE(z, y)
with every dropout at 0, gradient accumulation (each micro-batch's loss times its share),
clip_grad_norm_, and torch.optim.AdamW with the recipe's groups (no decay on biases and
LayerNorm). Writes tests/fixtures/distill/:

  steps.json                 per student: inputs, soft targets, hyperparameters, loss, grad norm
  {bert,albert}_step1.safetensors   every student weight after the step (canonical names)

    /work/venv/bin/python scripts/make_distill_fixture.py
"""
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import (AlbertConfig, AlbertForMultipleChoice, BertConfig,
                          BertForMultipleChoice)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "distill")
HP = dict(lr=3e-4, weight_decay=0.01, beta1=0.9, beta2=0.999, eps=1e-6, max_grad_norm=1.0,
          alpha=0.7, temperature=3.0, micro_batches=2, questions_per_micro=2, choices=4, seq_len=14,
          seed=11)


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
    soft = torch.softmax(2.0 * torch.randn(n, c, generator=gen), dim=-1)
    return ids, types, mask, labels, soft


def no_dropout(cfg):
    cfg.hidden_dropout_prob = 0.0
    cfg.attention_probs_dropout_prob = 0.0
    if hasattr(cfg, "classifier_dropout_prob"):
        cfg.classifier_dropout_prob = 0.0
    cfg.classifier_dropout = 0.0
    return cfg


def bert_student():
    torch.manual_seed(HP["seed"])
    tiny = BertConfig.from_pretrained(os.path.join(ROOT, "datasets", "models", "tiny-bert"))
    tiny.num_hidden_layers = 4
    tiny.max_position_embeddings = 64
    teacher = BertForMultipleChoice(tiny)
    folder = os.path.join(OUT, "bert4")
    teacher.save_pretrained(folder, safe_serialization=True)
    cfg = no_dropout(BertConfig.from_pretrained(folder))
    cfg.num_hidden_layers = 2
    student = BertForMultipleChoice(cfg)
    layer_map = [0, 2]
    state = {}
    for name, t in teacher.state_dict().items():
        parts = name.split(".")
        if "layer" in parts:
            k = parts.index("layer")
            i = int(parts[k + 1])
            for j, src in enumerate(layer_map):
                if src == i:
                    state[".".join(parts[:k + 1] + [str(j)] + parts[k + 2:])] = t
        else:
            state[name] = t
    missing, unexpected = student.load_state_dict(state, strict=True)
    assert not missing and not unexpected
    return student, "tests/fixtures/distill/bert4", 2, layer_map, cfg.vocab_size


def albert_student():
    path = os.path.join(ROOT, "datasets", "models", "tiny-albert")
    cfg = no_dropout(AlbertConfig.from_pretrained(path))
    cfg.num_hidden_layers = 2
    student = AlbertForMultipleChoice.from_pretrained(path, config=cfg, attn_implementation="eager")
    return student, "datasets/models/tiny-albert", 2, None, cfg.vocab_size


def one_step(name, student, vocab):
    student.train()
    gen = torch.Generator().manual_seed(HP["seed"])
    micro = [make_batch(gen, vocab) for _ in range(HP["micro_batches"])]
    # One teacher probability exactly zero: 0 ln 0 counts as 0.
    micro[0][4][0] = torch.tensor([0.0, 0.25, 0.5, 0.25])
    named = list(student.named_parameters())
    groups = [
        {"params": [p for n, p in named if not no_decay(n)], "weight_decay": HP["weight_decay"]},
        {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"])
    a, t = HP["alpha"], HP["temperature"]
    total = 0.0
    for ids, types, mask, labels, soft in micro:
        z = student(input_ids=ids, token_type_ids=types, attention_mask=mask).logits
        kl = F.kl_div(F.log_softmax(z / t, dim=-1), soft, reduction="batchmean")
        loss = a * t * t * kl + (1 - a) * F.cross_entropy(z, labels)
        weight = 1.0 / HP["micro_batches"]
        (loss * weight).backward()
        total += weight * loss.item()
    norm = torch.nn.utils.clip_grad_norm_(student.parameters(), HP["max_grad_norm"]).item()
    opt.step()
    weights = {n: p.detach().clone().contiguous() for n, p in student.named_parameters()}
    save_file(weights, os.path.join(OUT, f"{name}_step1.safetensors"))
    print(f"{name}: loss {total:.6f} grad norm {norm:.4f}")
    return micro, total, norm


def main():
    os.makedirs(OUT, exist_ok=True)
    record = dict(hyperparameters=HP, students={}, torch_version=torch.__version__)
    for name, make in (("bert", bert_student), ("albert", albert_student)):
        student, model, layers, layer_map, vocab = make()
        micro, loss, norm = one_step(name, student, vocab)
        record["students"][name] = dict(
            model=model, student_layers=layers, layer_map=layer_map, loss=loss, grad_norm=norm,
            micro_batches=[dict(input_ids=i.tolist(), token_type_ids=ty.tolist(), attention_mask=m.tolist(),
                                labels=y.tolist(), soft_targets=s.tolist()) for i, ty, m, y, s in micro])
    with open(os.path.join(OUT, "steps.json"), "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
