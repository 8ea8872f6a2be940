#!/usr/bin/env python3
"""Full fine-tuning of a BERT-family model on RACE in transformers: the PyTorch
counterpart of `race-eval train` (full mode), for comparing accuracies.

The recipe is race-eval's (src/train/): AdamW as torch (betas 0.9/0.999,
eps 1e-6, weight decay 0.01 on every tensor except biases and LayerNorm /
layer_norm weights), a linear warmup from 0 then linear decay to 0 at the last
step (get_linear_schedule_with_warmup; warmup defaults to 1/12 of the steps),
--batch-size questions per optimizer step as gradients of micro-batches of
--micro-batch-size questions (each micro-batch's mean loss weighted by its
share of the batch), global gradient-norm clipping at 1.0, and a fresh
permutation of the training questions every epoch drawn from --seed with
race-eval's SplitMix64 (so step k trains on the same questions as race-eval
train with the same seed and data file). Every --eval-every steps and at the
last one it scores the dev file and keeps the best weights (strictly better
dev accuracy wins), then scores the test file with them and prints the
accuracy with a 95% Wilson interval. Dropout masks come from torch's seeded
generator, so runs are not bit-identical to race-eval's.

Inputs are built as in scripts/make_family_fixtures.py (scripts/race_inputs.py:
ALBERT's RACE truncation, the tokenizer.json's own post-processor for the pair
layout), tokenised as the batches need them. Any AutoModelForMultipleChoice
folder with a tokenizer.json works (albert, bert, roberta, xlm-roberta,
distilbert, electra); a backbone-only checkpoint gets transformers' fresh head.

    python scripts/finetune_hf.py --model DIR --train train.jsonl --dev dev.jsonl \\
        --test test.jsonl --output summary.json [--save-dir DIR] [--steps 12000] \\
        [--lr 1e-5] [--batch-size 32] [--micro-batch-size 4] [--device cuda]

Quick check (a few seconds on CPU):

    python scripts/finetune_hf.py --model datasets/models/tiny-bert \\
        --train datasets/sample/dev.jsonl --dev datasets/sample/dev.jsonl \\
        --test datasets/sample/test.jsonl --steps 3 --batch-size 4 \\
        --micro-batch-size 2 --eval-every 2 --threads 1 --output /tmp/ft.json
"""

import argparse
import collections
import inspect
import json
import math
import os
import platform
import shutil
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModelForMultipleChoice, get_linear_schedule_with_warmup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import race_inputs  # noqa: E402

transformers.logging.set_verbosity_error()

MASK64 = (1 << 64) - 1
Z95 = 1.959963984540054

# Dropout knobs of race-eval train (--hidden-dropout, --attention-dropout, --classifier-dropout)
# as each family's config.json names them.
DROPOUT_KEYS = {
    "albert": ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout_prob"),
    "bert": ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"),
    "roberta": ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"),
    "xlm-roberta": ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"),
    "distilbert": ("dropout", "attention_dropout", "seq_classif_dropout"),
    # ElectraForMultipleChoice's dropout before the classifier is its sequence summary's last one.
    "electra": ("hidden_dropout_prob", "attention_probs_dropout_prob", "summary_last_dropout"),
}


# --------------------------------------------------------------------------
# race-eval's data order (src/model/seeded_dropout.rs, src/train/trainer.rs)
# --------------------------------------------------------------------------

class SplitMix64:
    def __init__(self, state):
        self.state = state & MASK64

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n):
        return self.next_u64() % n


def derive_seed(parts):
    rng = SplitMix64(0x5EED)
    acc = 0
    for p in parts:
        rng.state ^= (p + acc) & MASK64
        acc = rng.next_u64()
    return acc


class DataOrder:
    """Question indices of optimizer step `step`: a fresh permutation every epoch, from the seed."""

    def __init__(self, seed, n):
        self.seed, self.n, self.perms = seed, n, {}

    def perm(self, epoch):
        if epoch not in self.perms:
            rng = SplitMix64(derive_seed([self.seed, 0xDA7A, epoch]))
            perm = list(range(self.n))
            for i in range(self.n - 1, 0, -1):
                j = rng.below(i + 1)
                perm[i], perm[j] = perm[j], perm[i]
            self.perms = {epoch: perm}  # one epoch at a time is enough going forward
        return self.perms[epoch]

    def batch(self, step, batch_size):
        return [self.perm(p // self.n)[p % self.n] for p in range(step * batch_size, (step + 1) * batch_size)]


def no_weight_decay(name):
    """race-eval's (and ALBERT's recipe's) exclude_from_weight_decay = ["LayerNorm", "layer_norm", "bias"]."""
    return "LayerNorm" in name or "layer_norm" in name or name.endswith("bias")


def wilson95(k, n):
    if n == 0:
        return None
    p = k / n
    denom = 1 + Z95 * Z95 / n
    centre = (p + Z95 * Z95 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 * Z95 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------

class Split:
    """The questions of one jsonl file, tokenised on demand (articles cached, LRU)."""

    def __init__(self, path, tok, setting, cache_size=512):
        self.path = path
        self.rows = race_inputs.read_jsonl(path)
        if not self.rows:
            raise SystemExit(f"{path}: no questions")
        self.labels = [race_inputs.label_of(r) for r in self.rows]
        self.tok, self.setting = tok, setting
        self.cache = collections.OrderedDict()
        self.cache_size = cache_size
        n_opts = {len(r["options"]) for r in self.rows}
        if len(n_opts) != 1:
            raise SystemExit(f"{path}: questions have different numbers of options {sorted(n_opts)}")
        self.n_options = n_opts.pop()

    def __len__(self):
        return len(self.rows)

    def article(self, text):
        enc = self.cache.get(text)
        if enc is None:
            enc = self.tok.encode(text, add_special_tokens=False)
            self.cache[text] = enc
            if len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        else:
            self.cache.move_to_end(text)
        return enc

    def features(self, i):
        r = self.rows[i]
        return race_inputs.encode_question(self.tok, self.article(r["article"]), r["question"], r["options"],
                                           self.setting["max_seq_len"], self.setting["max_qa_len"])


def batch_tensors(feats, pad_id, use_types, device):
    """(B, C, L) ids / mask (and token types) right-padded to the longest option of the batch."""
    L = max(len(i) for ids, _ in feats for i in ids)
    B, C = len(feats), len(feats[0][0])
    ids = np.full((B, C, L), pad_id, dtype=np.int64)
    types = np.zeros((B, C, L), dtype=np.int64)
    mask = np.zeros((B, C, L), dtype=np.int64)
    for b, (fi, ft) in enumerate(feats):
        for c, (i, t) in enumerate(zip(fi, ft)):
            ids[b, c, :len(i)] = i
            types[b, c, :len(t)] = t
            mask[b, c, :len(i)] = 1
    kw = {"input_ids": torch.from_numpy(ids).to(device), "attention_mask": torch.from_numpy(mask).to(device)}
    if use_types:
        kw["token_type_ids"] = torch.from_numpy(types).to(device)
    return kw, int(mask.sum())


@torch.no_grad()
def accuracy(model, split, batch_size, pad_id, use_types, device, chunk=64):
    """(correct, total, per-question logits in file order) without dropout. Within chunks of
    `chunk` batches the questions are sorted by length, so that batches pad little."""
    was_training = model.training
    model.eval()
    logits = [None] * len(split)
    for c in range(0, len(split), batch_size * chunk):
        feats = {i: split.features(i) for i in range(c, min(len(split), c + batch_size * chunk))}
        order = sorted(feats, key=lambda i: max(len(x) for x in feats[i][0]))
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            kw, _ = batch_tensors([feats[i] for i in idx], pad_id, use_types, device)
            out = model(**kw).logits.float().cpu()
            for i, row in zip(idx, out):
                logits[i] = row.tolist()
    model.train(was_training)
    correct = sum(int(np.argmax(lg)) == y for lg, y in zip(logits, split.labels))
    return correct, len(split), logits


# --------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Full fine-tuning of a BERT-family model on RACE (transformers), "
                                             "race-eval train's recipe.")
    ap.add_argument("--model", required=True, help="model folder (config.json, tokenizer.json, weights)")
    ap.add_argument("--train", required=True, help="RACE jsonl to train on")
    ap.add_argument("--dev", required=True, help="RACE jsonl to select the best step on")
    ap.add_argument("--test", required=True, help="RACE jsonl scored with the best weights")
    ap.add_argument("--output", required=True, help="JSON summary to write")
    ap.add_argument("--save-dir", help="also save the best model (save_pretrained + tokenizer.json) here")
    ap.add_argument("--lr", type=float, default=1e-5, help="peak learning rate [%(default)s]")
    ap.add_argument("--steps", "--total-steps", dest="steps", type=int, default=12000,
                    help="optimizer steps [%(default)s]")
    ap.add_argument("--warmup-steps", type=int, help="linear warmup steps [default: 1/12 of --steps]")
    ap.add_argument("--batch-size", type=int, default=32, help="questions per optimizer step [%(default)s]")
    ap.add_argument("--micro-batch-size", type=int, default=4,
                    help="questions per forward/backward pass; gradients accumulate up to --batch-size [%(default)s]")
    ap.add_argument("--max-grad-norm", type=float, default=1.0, help="global gradient-norm clipping, 0: off [%(default)s]")
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.999)
    ap.add_argument("--adam-eps", type=float, default=1e-6)
    ap.add_argument("--hidden-dropout", type=float, help="override the config's hidden dropout")
    ap.add_argument("--attention-dropout", type=float, help="override the config's attention dropout")
    ap.add_argument("--classifier-dropout", type=float, help="override the config's dropout before the classifier")
    ap.add_argument("--seed", type=int, default=12345, help="data order, dropout, new head weights [%(default)s]")
    ap.add_argument("--eval-every", type=int, default=1000, help="score --dev every K steps and at the end [%(default)s]")
    ap.add_argument("--eval-batch-size", type=int, default=8, help="questions per batch when scoring [%(default)s]")
    ap.add_argument("--max-seq-len", type=int, default=512)
    ap.add_argument("--max-qa-len", type=int, default=128)
    ap.add_argument("--threads", type=int, help="CPU threads [default: torch's, all cores]")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N [%(default)s]")
    ap.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa",
                    help="attention implementation; eager where the model has no sdpa (ELECTRA) [%(default)s]")
    ap.add_argument("--log-every", type=int, default=10, help="print the loss every K steps [%(default)s]")
    a = ap.parse_args(argv)
    if a.steps < 1 or a.batch_size < 1 or a.micro_batch_size < 1 or a.eval_every < 1:
        ap.error("--steps, --batch-size, --micro-batch-size and --eval-every must be at least 1")
    if a.warmup_steps is None:
        a.warmup_steps = a.steps // 12
    return a


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # transformers' fresh head (if any) and dropout
    device = torch.device(args.device)
    setting = {"max_seq_len": args.max_seq_len, "max_qa_len": args.max_qa_len}

    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()

    cfg = AutoConfig.from_pretrained(args.model)
    overrides = {}
    keys = DROPOUT_KEYS.get(cfg.model_type)
    for value, key_i in ((args.hidden_dropout, 0), (args.attention_dropout, 1), (args.classifier_dropout, 2)):
        if value is not None:
            if keys is None:
                raise SystemExit(f"dropout overrides are not mapped for model_type {cfg.model_type}")
            overrides[keys[key_i]] = value
    attn = args.attn
    if attn == "sdpa" and not AutoModelForMultipleChoice._model_mapping[type(cfg)]._supports_sdpa:
        attn = "eager"
    model, info = AutoModelForMultipleChoice.from_pretrained(
        args.model, dtype=torch.float32, attn_implementation=attn, output_loading_info=True, **overrides)
    assert model.config._attn_implementation == attn
    model.to(device).train()
    if info["missing_keys"]:
        print(f"initialised (not in the checkpoint): {', '.join(sorted(info['missing_keys']))}")
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is not None and cfg.model_type in ("roberta", "xlm-roberta"):
        positions -= pad_id + 1  # RoBERTa's positions start at pad + 1
    if positions is not None and args.max_seq_len > positions:
        raise SystemExit(f"--max-seq-len {args.max_seq_len} exceeds the model's {positions} positions")
    use_types = "token_type_ids" in inspect.signature(model.forward).parameters  # not DistilBERT

    train, dev, test = (Split(p, tok, setting) for p in (args.train, args.dev, args.test))
    print(f"{cfg.model_type} model {args.model}: {sum(p.numel() for p in model.parameters()):,} parameters, {attn} attention; "
          f"train {len(train)}, dev {len(dev)}, test {len(test)} questions")

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if not no_weight_decay(n)], "weight_decay": args.weight_decay},
              {"params": [p for n, p in named if no_weight_decay(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(args.beta1, args.beta2), eps=args.adam_eps,
                            amsgrad=False, foreach=False)
    sched = get_linear_schedule_with_warmup(opt, args.warmup_steps, args.steps)
    params = [p for _, p in named]

    order = DataOrder(args.seed, len(train))
    micro = [min(args.micro_batch_size, args.batch_size - s) for s in range(0, args.batch_size, args.micro_batch_size)]
    loss_log, dev_history = [], []
    best, best_state = None, None
    t0 = time.time()
    tokens = 0
    for step in range(args.steps):
        lr = sched.get_last_lr()[0]
        batch = order.batch(step, args.batch_size)
        opt.zero_grad(set_to_none=True)
        loss_value = 0.0
        start = 0
        for size in micro:
            idx = batch[start:start + size]
            start += size
            kw, n_tok = batch_tensors([train.features(i) for i in idx], pad_id, use_types, device)
            tokens += n_tok
            labels = torch.tensor([train.labels[i] for i in idx], device=device)
            logits = model(**kw).logits.float()
            loss = torch.nn.functional.cross_entropy(logits, labels)
            if not torch.isfinite(loss):
                raise SystemExit(f"training stopped at step {step + 1} (lr {lr:.3e}): the loss is {loss.item()}")
            weight = size / args.batch_size
            (loss * weight).backward()
            loss_value += weight * loss.item()
        if args.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm).item()
        else:
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None])).item()
        if not math.isfinite(norm):
            raise SystemExit(f"training stopped at step {step + 1} (lr {lr:.3e}): the gradient norm is {norm}")
        opt.step()
        sched.step()
        done = step + 1
        loss_log.append({"step": done, "loss": loss_value, "lr": lr, "grad_norm": norm})
        if done % args.log_every == 0 or done == 1 or done == args.steps:
            el = time.time() - t0
            print(f"step {done}/{args.steps}: loss {loss_value:.4f} lr {lr:.3e} grad norm {norm:.3f} "
                  f"({done / el:.2f} steps/s, {tokens / el:.0f} tokens/s)", flush=True)
        if done % args.eval_every == 0 or done == args.steps:
            k, n, _ = accuracy(model, dev, args.eval_batch_size, pad_id, use_types, device)
            point = {"step": done, "accuracy": k / n}
            dev_history.append(point)
            print(f"step {done}: loss {loss_value:.4f}, dev accuracy {100 * k / n:.2f}% ({k}/{n})", flush=True)
            if best is None or point["accuracy"] > best["accuracy"]:
                best = point
                best_state = {n_: t.detach().to("cpu", copy=True) for n_, t in model.state_dict().items()}
    train_s = time.time() - t0

    model.load_state_dict(best_state)
    k, n, test_logits = accuracy(model, test, args.eval_batch_size, pad_id, use_types, device)
    lo, hi = wilson95(k, n)
    print(f"best dev accuracy {100 * best['accuracy']:.2f}% at step {best['step']}")
    print(f"test accuracy {100 * k / n:.2f}% ({k}/{n}), 95% Wilson interval {100 * lo:.2f}-{100 * hi:.2f}%")
    if args.save_dir:
        model.save_pretrained(args.save_dir)
        shutil.copyfile(os.path.join(args.model, "tokenizer.json"), os.path.join(args.save_dir, "tokenizer.json"))

    hp = {k_: getattr(args, k_) for k_ in ("lr", "steps", "warmup_steps", "batch_size", "micro_batch_size",
                                           "max_grad_norm", "weight_decay", "beta1", "beta2", "adam_eps",
                                           "hidden_dropout", "attention_dropout", "classifier_dropout",
                                           "seed", "eval_every", "max_seq_len", "max_qa_len")}
    summary = {
        "script": "scripts/finetune_hf.py",
        "model": args.model, "model_type": cfg.model_type,
        "initialised": sorted(info["missing_keys"]),
        "train": {"path": args.train, "sha256": race_inputs.file_sha256(args.train), "questions": len(train)},
        "dev": {"path": args.dev, "sha256": race_inputs.file_sha256(args.dev), "questions": len(dev)},
        "test": {"path": args.test, "sha256": race_inputs.file_sha256(args.test), "questions": len(test)},
        "hyperparameters": hp,
        "device": str(device), "threads": torch.get_num_threads(), "attn_implementation": attn,
        "train_seconds": round(train_s, 3), "train_tokens": tokens,
        "loss_log": loss_log, "dev_history": dev_history, "best": best,
        "test_result": {"correct": k, "total": n, "accuracy": k / n, "wilson95": {"lo": lo, "hi": hi}},
        "test_predictions": [int(np.argmax(lg)) for lg in test_logits],
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(summary, indent=1) + "\n")
    print(f"summary: {args.output}")


if __name__ == "__main__":
    main()
