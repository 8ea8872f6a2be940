"""Tiny random decoder LMs in the Hub's transformers layout, and their reference log-likelihoods,
for tests/lm_safetensors.rs.

Writes (deterministic; < 1 MB in all):

- datasets/models/tiny-llama/: LlamaForCausalLM, tied embeddings, grouped-query attention (4 query
  heads, 2 key/value heads), head_dim 16 with hidden 32 (so n_head x head_dim != hidden),
  rope_theta 10000, one model.safetensors; its tokenizer prepends <s> (as Llama's does).
- datasets/models/tiny-qwen2/: Qwen2ForCausalLM, untied lm_head, q/k/v biases, 4 query heads and
  1 key/value head, rope_theta 1e6, rms eps 1e-6, saved in shards with
  model.safetensors.index.json; its tokenizer adds no special token (as Qwen2's).
- tests/fixtures/lm/reference.json: per model, for the items of scripts/lm_reference.py (text
  written there, not RACE) formatted as lm-evaluation-harness' race task formats every question
  (race.yaml / preprocess_race.py v3.0, the earlier questions answered in the context), the
  context and continuation ids as the harness' `_encode_pair` makes them with the tokenizer's
  default special tokens (the harness' default for hf models), and per option each token's
  log-probability and their sum, computed by transformers in float32 (each option one forward
  pass of context + continuation[:-1], as the harness runs it).

Every weight is random (norm weights and biases too, so a missed bias or norm shows). The
tokenizer is a byte-level BPE of 384 tokens trained here on the items' own text.

Usage: /work/venv/bin/python scripts/make_lm_fixtures.py  (torch, transformers 4.57.1, tokenizers)
"""

import json
import os
import sys

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lm_reference as ref  # noqa: E402  (OWN items, the harness' doc_to_text)

ROOT = ref.ROOT
MODELS = os.path.join(ROOT, "datasets", "models")
OUT = os.path.join(ROOT, "tests", "fixtures", "lm", "reference.json")
VOCAB = 384


def corpus():
    for doc in ref.OWN:
        yield doc["article"]
        for p in doc["problems"]:
            yield p["question"]
            yield from p["options"]
    yield from ref.SENTENCES


def make_tokenizer(bos):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        min_frequency=1,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus()), trainer=trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.25 * torch.randn(p.shape, generator=g))


def encode_pair(tok, context, continuation):
    """lm-evaluation-harness' `_encode_pair` for a causal model, default special tokens."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok.encode(context + continuation)
    ctx = tok.encode(context)
    return ctx, whole[len(ctx) :]


def references(folder):
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    items = []
    for di, doc in enumerate(ref.OWN):
        for qi in range(len(doc["problems"])):
            context = ref.doc_to_text(doc, qi)
            conts = [" " + o for o in doc["problems"][qi]["options"]]
            pairs = [encode_pair(tok, context, c) for c in conts]
            ctx = pairs[0][0]
            assert all(p[0] == ctx for p in pairs)
            per_token = ref.option_logprobs(model, ctx, [p[1] for p in pairs])
            items.append(
                {
                    "doc": di,
                    "question_index": qi,
                    "context": context,
                    "options": doc["problems"][qi]["options"],
                    "context_ids": ctx,
                    "continuation_ids": [p[1] for p in pairs],
                    "token_logprobs": per_token,
                    "logprobs": [sum(t) for t in per_token],
                }
            )
    return {
        "architecture": model.config.architectures[0],
        "tokenizer": [{"text": s, "ids": tok.encode(s)} for s in ref.SENTENCES],
        "items": items,
    }


def save(model, tok, name, **kw):
    folder = os.path.join(MODELS, name)
    os.makedirs(folder, exist_ok=True)
    for f in os.listdir(folder):
        os.remove(os.path.join(folder, f))
    model.save_pretrained(folder, safe_serialization=True, **kw)
    tok.save_pretrained(folder)
    return folder


def main():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    llama_tok = make_tokenizer(bos=True)
    qwen_tok = make_tokenizer(bos=False)
    assert len(llama_tok) == VOCAB, len(llama_tok)

    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=512,
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            tie_word_embeddings=True,
            bos_token_id=llama_tok.bos_token_id,
            eos_token_id=llama_tok.eos_token_id,
        )
    )
    randomise(llama, 1)
    llama.tie_weights()
    qwen = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            max_position_embeddings=512,
            rms_norm_eps=1e-6,
            rope_theta=1000000.0,
            tie_word_embeddings=False,
            use_sliding_window=False,
            bos_token_id=None,
            eos_token_id=qwen_tok.eos_token_id,
        )
    )
    randomise(qwen, 2)
    out = {"transformers": __import__("transformers").__version__, "torch": torch.__version__, "models": {}}
    for name, model, tok, kw in [
        ("tiny-llama", llama, llama_tok, {}),
        ("tiny-qwen2", qwen, qwen_tok, {"max_shard_size": "60KB"}),
    ]:
        folder = save(model, tok, name, **kw)
        out["models"][name] = references(folder)
        print(folder, sorted(os.listdir(folder)), file=sys.stderr)
    out["docs"] = ref.OWN
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(OUT, file=sys.stderr)


if __name__ == "__main__":
    main()
