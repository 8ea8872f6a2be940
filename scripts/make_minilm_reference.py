#!/usr/bin/env python3
"""Reference logits of a real BERT checkpoint: sentence-transformers/all-MiniLM-L6-v2.

all-MiniLM-L6-v2 is a plain BertModel (6 layers, hidden 384, pooler, keys
without the "bert." prefix, WordPiece tokenizer). Loaded here as
BertForMultipleChoice (float32, eager attention), its classifier is missing,
so this script draws one from a fixed seed and writes:

  tests/fixtures/minilm/head.safetensors
      The classifier: exactly `classifier.weight` [1, 384] (normal, std
      HEAD_STD, from torch.Generator().manual_seed(20261204)) and
      `classifier.bias` [1] (zero), float32.
  tests/fixtures/reference/minilm-sample.json
      datasets/sample/test.jsonl in the format of the other references (ids,
      token type ids and logits for both SETTINGS of make_fixtures.py).
  tests/fixtures/reference/minilm-race-m.json
      The FIRST 100 questions of RACE-middle's test.jsonl at max_seq_len 512,
      max_qa_len 128. RACE's text is licensed and must not be committed, so
      per question only: id, question_index, label, lengths (tokens per
      option), ids_sha256 / types_sha256 (sha256 of the ids written as
      decimals joined by ",", per option) and the logits; the head records
      the data file's sha256.

Inputs follow ALBERT's RACE rules through the tokenizer's own post-processor
(scripts/race_inputs.py). The folder's tokenizer.json ships with max_length
128 truncation and fixed padding (sentence-transformers settings): both are
disabled. Logits are cross-checked against sdpa and a padded batch.

Fetch the model first, then run (once, by a developer; outputs are committed):

    scripts/fetch_minilm.sh
    python scripts/make_minilm_reference.py [--model DIR] [--race-m FILE]

Defaults: --model ${RACE_EVAL_CACHE:-~/.cache/race-eval}/models/all-MiniLM-L6-v2,
--race-m ../shared/data/race-m/test.jsonl (beside the checkout). Deterministic.
"""

import argparse
import math
import os

import make_fixtures as mf  # sets the deterministic torch / tokenizers settings on import

import safetensors.torch
import torch
from tokenizers import Tokenizer
from transformers import BertForMultipleChoice

import race_inputs

torch.set_num_threads(1)

HEAD_SEED = 20261204
# The pooled outputs of the options of a question are close (only the qa tokens differ): with
# std 10 the options' logits differ by ~0.5 (per-question std); the common offset stays < ~15.
HEAD_STD = 10.0
RACE_M_QUESTIONS = 100
RACE_M_SETTING = {"max_seq_len": 512, "max_qa_len": 128}
assert mf.SETTINGS[0] == RACE_M_SETTING
MINILM = os.path.join(mf.FIXTURES, "minilm")
BASE = "sentence-transformers/all-MiniLM-L6-v2"
# shared/ lies beside every checkout (read-only; never copied into the repository).
SHARED_RACE_M = os.path.normpath(os.path.join(mf.ROOT, "..", "shared", "data", "race-m", "test.jsonl"))
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def default_model_dir():
    cache = os.environ.get("RACE_EVAL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "race-eval")
    return os.path.join(cache, "models", "all-MiniLM-L6-v2")


def make_head(hidden):
    g = torch.Generator().manual_seed(HEAD_SEED)
    return {"classifier.weight": torch.randn((1, hidden), generator=g, dtype=torch.float32) * HEAD_STD,
            "classifier.bias": torch.zeros(1, dtype=torch.float32)}


def load_pair(model_dir, head):
    """(eager, sdpa) BertForMultipleChoice copies with `head` as their classifier."""
    out = []
    for attn in ("eager", "sdpa"):
        m, info = BertForMultipleChoice.from_pretrained(model_dir, attn_implementation=attn, dtype=torch.float32,
                                                        output_loading_info=True)
        assert sorted(info["missing_keys"]) == ["classifier.bias", "classifier.weight"], info
        assert not info["unexpected_keys"] and not info["mismatched_keys"], info
        assert m.config._attn_implementation == attn
        missing, unexpected = m.load_state_dict(head, strict=False)
        assert not unexpected and all(k.startswith("bert.") for k in missing), (missing, unexpected)
        out.append(m.eval())
    mf.assert_same_weights(*out)
    return out


def wilson95(k, n):
    z = 1.959963984540054
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def summary(name, settings):
    for s in settings:
        qs = s["questions"]
        L = torch.tensor([q["logits"] for q in qs])
        right = sum(int(L[i].argmax()) == q["label"] for i, q in enumerate(qs))
        lo, hi = wilson95(right, len(qs))
        print(f"{name} ({s['max_seq_len']}/{s['max_qa_len']}): accuracy {right}/{len(qs)} = {100 * right / len(qs):.1f}% "
              f"(95% Wilson {100 * lo:.1f}-{100 * hi:.1f}%), mean per-question logit std {L.std(dim=1).mean():.3f}, "
              f"max |logit| {L.abs().max():.2f}")


def hashed(q):
    """A reference question without its ids (RACE text must not be committed)."""
    return {"id": q["id"], "question_index": q["question_index"], "label": q["label"],
            "lengths": [len(i) for i in q["input_ids"]],
            "ids_sha256": [race_inputs.ids_sha256(i) for i in q["input_ids"]],
            "types_sha256": [race_inputs.ids_sha256(t) for t in q["token_type_ids"]],
            "logits": q["logits"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=default_model_dir(), help="all-MiniLM-L6-v2 folder (scripts/fetch_minilm.sh)")
    ap.add_argument("--race-m", default=SHARED_RACE_M, help="RACE-middle test.jsonl [default: %(default)s]")
    args = ap.parse_args()

    weights = os.path.join(args.model, "model.safetensors")
    assert race_inputs.file_sha256(weights) == WEIGHTS_SHA256, f"{weights}: not all-MiniLM-L6-v2 (sha256)"
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()

    head = make_head(384)
    os.makedirs(MINILM, exist_ok=True)
    head_path = os.path.join(MINILM, "head.safetensors")
    safetensors.torch.save_file(head, head_path, metadata={"format": "pt"})
    back = safetensors.torch.load_file(head_path)
    assert sorted(back) == ["classifier.bias", "classifier.weight"]
    assert back["classifier.weight"].shape == (1, 384) and back["classifier.bias"].shape == (1,)
    assert all(t.dtype == torch.float32 for t in back.values())
    eager, sdpa = load_pair(args.model, back)
    head_info = {"model_type": "bert", "pad_token_id": eager.config.pad_token_id, "base_model": BASE,
                 "weights_sha256": WEIGHTS_SHA256, "head": "tests/fixtures/minilm/head.safetensors",
                 "head_sha256": race_inputs.file_sha256(head_path)}

    # (a) the sample, ids recorded, both settings
    rows = race_inputs.read_jsonl(os.path.join(mf.SAMPLE, "test.jsonl"))
    inputs, _ = race_inputs.build_inputs(tok, rows, mf.SETTINGS)
    assert any(len(ids) == 512 for q in inputs[0] for ids in q["input_ids"])
    settings, _, _ = mf.compute_reference(eager, sdpa, inputs)
    mf.write_reference("minilm-sample", settings, extra_head=head_info)
    summary("minilm-sample", settings)

    # (b) the first 100 RACE-middle test questions, hashed ids only
    rows = race_inputs.read_jsonl(args.race_m, limit=RACE_M_QUESTIONS)
    assert len(rows) == RACE_M_QUESTIONS
    inputs, _ = race_inputs.build_inputs(tok, rows, [RACE_M_SETTING])
    race_settings, _, _ = mf.compute_reference(eager, sdpa, inputs)
    race_settings = [dict(s, questions=[hashed(q) for q in s["questions"]]) for s in race_settings]
    mf.write_reference("minilm-race-m", race_settings, extra_head=dict(
        head_info, data="shared/data/race-m/test.jsonl (RACE-M test split), the first 100 questions",
        data_sha256=race_inputs.file_sha256(args.race_m), questions=RACE_M_QUESTIONS))
    summary("minilm-race-m", race_settings)

    for f in (head_path, *(os.path.join(mf.REFERENCE, f"minilm-{n}.json") for n in ("sample", "race-m"))):
        os.chmod(f, 0o644)
    print(f"max |eager - sdpa| = {mf.MAX_DIFF['sdpa']:.2e}, max |unpadded - padded batch| = {mf.MAX_DIFF['padded']:.2e}")


if __name__ == "__main__":
    main()
