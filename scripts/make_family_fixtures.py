#!/usr/bin/env python3
"""Generate the parity fixtures of the BERT-family encoders (besides ALBERT).

scripts/make_fixtures.py builds the ALBERT fixtures; this script reuses its
helpers (tokenizer training, re-initialisation, reference logits and the
reference JSON writer) to build, in the same Hub layout and JSON format:

  datasets/models/<name>/{config.json, weights, tokenizer.json}
      tiny-bert         BertForMultipleChoice, gelu, model.safetensors
      tiny-roberta      RobertaForMultipleChoice, gelu_new, pytorch_model.bin;
                        pad 1 / bos 0 / eos 2, type_vocab_size 1, 514
                        positions (RoBERTa's position ids start at pad + 1)
      tiny-xlm-roberta  XLMRobertaForMultipleChoice, relu, model.safetensors,
                        the RoBERTa conventions
      tiny-distilbert   DistilBertForMultipleChoice, gelu, learned positions
      tiny-electra      ElectraForMultipleChoice, embedding_size 16 != hidden
                        32 (embeddings_project), gelu
      bert-backbone     a plain BertModel with pooler saved WITHOUT the
                        "bert." prefix: the layout of
                        sentence-transformers/all-MiniLM-L6-v2 (no head, so
                        no reference logits)
      Every parameter is re-initialised with large random values and the
      classifier is scaled and centred, as in make_fixtures.py.
  tokenizer.json
      The tiny Unigram vocabulary of the ALBERT fixtures. bert, distilbert,
      electra and bert-backbone use it as it is (template
      `[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1`); roberta and xlm-roberta get the
      same pieces with RoBERTa's special tokens (<s>=0, <pad>=1, </s>=2,
      <unk>=3, <mask>=4) and RobertaProcessing: `<s> A </s></s> B </s>`,
      token type ids all 0.
  tests/fixtures/reference/<name>.json
      As the ALBERT references (plus "model_type" and "pad_token_id" in the
      head): for every sample test question, the ids and token type ids the
      tokenizer's own post-processor gives under ALBERT's RACE truncation
      rules (scripts/race_inputs.py), and the float32 eager logits, for the
      two SETTINGS of make_fixtures.py. Cross-checked against sdpa (where the
      model supports it; ELECTRA does not) and against a padded batch.

Run after make_fixtures.py (it reads datasets/sample/test.jsonl), with the
versions pinned in scripts/requirements.txt:

    python scripts/make_family_fixtures.py

It is deterministic: running it twice produces byte-identical files.
"""

import glob
import json
import os
import shutil

import make_fixtures as mf  # sets the deterministic torch / tokenizers settings on import

import safetensors.torch
import torch
import transformers
from tokenizers import Tokenizer, processors
from transformers import (BertConfig, BertForMultipleChoice, BertModel, DistilBertConfig,
                          DistilBertForMultipleChoice, ElectraConfig, ElectraForMultipleChoice,
                          RobertaConfig, RobertaForMultipleChoice, XLMRobertaConfig,
                          XLMRobertaForMultipleChoice)

import race_inputs

torch.set_num_threads(1)

ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4
# Top-level modules of the multiple-choice heads (keys without the backbone's prefix).
HEAD_MODULES = {"classifier", "pre_classifier", "sequence_summary"}


# --------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------

def roberta_tokenizer(bert_tok):
    """The same pieces as `bert_tok` (ids 5.. unchanged), RoBERTa's special tokens in ids 0..4."""
    spec = json.loads(bert_tok.to_str())
    assert [p for p, _ in spec["model"]["vocab"][:5]] == mf.SPECIAL_TOKENS
    spec["model"]["vocab"][:5] = [[t, 0.0] for t in ROBERTA_SPECIALS]
    spec["model"]["unk_id"] = ROBERTA_SPECIALS.index("<unk>")
    template = spec["added_tokens"][0]
    spec["added_tokens"] = [dict(template, id=i, content=t) for i, t in enumerate(ROBERTA_SPECIALS)]
    spec["post_processor"] = None
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.post_processor = processors.RobertaProcessing(sep=("</s>", 2), cls=("<s>", 0))
    for i, t in enumerate(ROBERTA_SPECIALS):
        assert tok.token_to_id(t) == i, t
    assert tok.post_processor.num_special_tokens_to_add(True) == 4
    return tok


def check_layout(kind, tok, rows, inputs, ctx_ids, qa_ids):
    """The post-processor's pairs are `[CLS] ctx [SEP] qa [SEP]` (types 0.. 1..) for the BERT
    template and `<s> ctx </s></s> qa </s>` (types all 0) for RoBERTa, with ALBERT's truncation."""
    for s, qs in zip(mf.SETTINGS, inputs):
        for r, q in zip(rows, qs):
            for opt, ids, types in zip(r["options"], q["input_ids"], q["token_type_ids"]):
                qa = qa_ids(race_inputs.qa_text(r["question"], opt))[-s["max_qa_len"]:]
                n = 3 if kind == "bert" else 4
                ctx = ctx_ids(r["article"])[: s["max_seq_len"] - n - len(qa)]
                if kind == "bert":
                    cls_, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
                    want = [cls_] + ctx + [sep] + qa + [sep]
                    want_types = [0] * (len(ctx) + 2) + [1] * (len(qa) + 1)
                else:
                    want = [0] + ctx + [2, 2] + qa + [2]
                    want_types = [0] * len(want)
                assert ids == want and types == want_types, (kind, q["id"], s)


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------

def common(V, **kw):
    return dict(vocab_size=V, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                attn_implementation="eager", **kw)


def family(V):
    """name -> (model_type, class, config, seed, classifier_scale, save_pretrained kwargs, tokenizer)."""
    roberta_ids = dict(pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1,
                       max_position_embeddings=514, layer_norm_eps=1e-5)
    return {
        "tiny-bert": ("bert", BertForMultipleChoice,
                      BertConfig(**common(V, num_hidden_layers=3, hidden_act="gelu", max_position_embeddings=512,
                                          type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0)),
                      6006, 80.0, {}, "bert"),
        "tiny-roberta": ("roberta", RobertaForMultipleChoice,
                         RobertaConfig(**common(V, num_hidden_layers=2, hidden_act="gelu_new", **roberta_ids)),
                         7007, 25.0, {"safe_serialization": False}, "roberta"),
        "tiny-xlm-roberta": ("xlm-roberta", XLMRobertaForMultipleChoice,
                             XLMRobertaConfig(**common(V, num_hidden_layers=3, hidden_act="relu", **roberta_ids)),
                             8008, 50.0, {}, "roberta"),
        "tiny-distilbert": ("distilbert", DistilBertForMultipleChoice,
                            DistilBertConfig(vocab_size=V, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                             activation="gelu", sinusoidal_pos_embds=False,
                                             max_position_embeddings=512, pad_token_id=0,
                                             attn_implementation="eager"),
                            9009, 25.0, {}, "bert"),
        "tiny-electra": ("electra", ElectraForMultipleChoice,
                         ElectraConfig(**common(V, embedding_size=16, num_hidden_layers=2, hidden_act="gelu",
                                                max_position_embeddings=512, type_vocab_size=2,
                                                layer_norm_eps=1e-12, pad_token_id=0)),
                         10010, 50.0, {}, "bert"),
    }


def load_models(path, cls):
    """(eager, sdpa or None) float32 copies of a saved checkpoint."""
    if cls._supports_sdpa:
        return mf.load_pair(path, cls)
    e = cls.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()
    assert e.config._attn_implementation == "eager"
    return e, None


def key_names(path):
    files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
    if files:
        return sorted(k for f in files for k in safetensors.torch.load_file(f))
    return sorted(torch.load(os.path.join(path, "pytorch_model.bin"), weights_only=True))


# --------------------------------------------------------------------------

def main():
    splits = {s: mf.read_race_split(s) for s in ("test", "dev")}
    tok = mf.build_tokenizer(splits["test"] + splits["dev"])
    with open(os.path.join(mf.MODELS, "tiny-albert", "tokenizer.json"), encoding="utf-8") as f:
        assert json.loads(tok.to_str()) == json.load(f), "run make_fixtures.py first: the tokenizer differs"
    V = tok.get_vocab_size()
    toks = {"bert": tok, "roberta": roberta_tokenizer(tok)}
    rows = race_inputs.read_jsonl(os.path.join(mf.SAMPLE, "test.jsonl"))

    inputs = {}
    for kind, t in toks.items():
        inputs[kind], _ = race_inputs.build_inputs(t, rows, mf.SETTINGS)
        check_layout(kind, t, rows, inputs[kind],
                     lambda a: tok.encode(a, add_special_tokens=False).ids,
                     lambda a: tok.encode(a, add_special_tokens=False).ids)
    # For the BERT template the post-processor route is race_utils' own layout: the ALBERT
    # fixtures' ids (make_fixtures.encode_question) exactly.
    albert_inputs, _ = mf.build_inputs(tok, rows)
    assert inputs["bert"] == albert_inputs
    with open(os.path.join(mf.REFERENCE, "tiny-albert.json"), encoding="utf-8") as f:
        albert_ref = json.load(f)
    for s, qs in zip(albert_ref["settings"], inputs["bert"]):
        assert [{k: q[k] for k in qs[0]} for q in s["questions"]] == qs
    assert any(len(ids) == 512 for q in inputs["roberta"][0] for ids in q["input_ids"])

    reports = []
    diffs = {}
    for name, (model_type, cls, config, seed, scale, save_kw, kind) in family(V).items():
        mf.MAX_DIFF.update(sdpa=0.0, padded=0.0)
        model = mf.make_model(cls, config, seed=seed, classifier_scale=scale)
        assert model.config.model_type == model_type
        mf.center_classifier_(model, inputs[kind])
        path = mf.save_hub_dir(name, model, toks[kind], **save_kw)
        weights = "pytorch_model.bin" if save_kw.get("safe_serialization") is False else "model.safetensors"
        assert sorted(os.listdir(path)) == sorted(["config.json", "tokenizer.json", weights]), os.listdir(path)
        prefix = cls.base_model_prefix + "."
        keys = key_names(path)
        assert all(k.startswith(prefix) or k.split(".")[0] in HEAD_MODULES for k in keys), keys
        e, s = load_models(path, cls)
        mf.assert_same_weights(model, e)
        settings, mean_std, preds = mf.compute_reference(e, s, inputs[kind])
        mf.write_reference(name, settings, extra_head={"model_type": model_type,
                                                       "pad_token_id": config.pad_token_id})
        diffs[name] = dict(mf.MAX_DIFF, sdpa=mf.MAX_DIFF["sdpa"] if s is not None else None)
        reports.append((name, mean_std, preds.tolist(), len(keys)))

    # bert-backbone: BertModel with pooler, keys without "bert." (all-MiniLM-L6-v2's layout)
    bb = mf.make_model(BertModel, BertConfig(**common(V, num_hidden_layers=2, hidden_act="gelu",
                                                      max_position_embeddings=512, type_vocab_size=2,
                                                      layer_norm_eps=1e-12, pad_token_id=0)), seed=11011)
    path = mf.save_hub_dir("bert-backbone", bb, tok)
    keys = key_names(path)
    assert not any(k.startswith("bert.") for k in keys)
    assert "pooler.dense.weight" in keys and "embeddings.word_embeddings.weight" in keys
    assert "encoder.layer.0.attention.self.query.weight" in keys and not any("classifier" in k for k in keys)
    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["architectures"] == ["BertModel"]

    for d in ("bert-backbone", *family(V)):
        for f in glob.glob(os.path.join(mf.MODELS, d, "*")):
            os.chmod(f, 0o644)
    for name in family(V):
        os.chmod(os.path.join(mf.REFERENCE, f"{name}.json"), 0o644)

    for name, mean_std, preds, n in reports:
        d = diffs[name]
        sd = f"{d['sdpa']:.2e}" if d["sdpa"] is not None else "n/a (no sdpa)"
        print(f"{name}: {n} tensors, mean per-question logit std {mean_std:.3f}, "
              f"max |eager - sdpa| {sd}, max |unpadded - padded| {d['padded']:.2e}, "
              f"predictions {''.join('ABCD'[p] for p in preds)}")
    print(f"bert-backbone: {len(keys)} tensors, e.g. {keys[0]}, {keys[-1]}")
    print(f"versions: torch {torch.__version__}, transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
