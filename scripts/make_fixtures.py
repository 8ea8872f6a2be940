#!/usr/bin/env python3
"""Generate the parity fixtures used by the Rust test-suite of race-eval.

The Rust crate re-implements ALBERT (AlbertForMultipleChoice) inference and the
RACE input formatting of google-research/albert `race_utils.py` with candle.
To test it without downloading real checkpoints or the RACE data set, this
script builds everything from scratch, from hand-written sample passages:

  datasets/sample/{test,dev}.jsonl
      The questions of datasets/sample/RACE/<split>/{middle,high}/*.txt (the
      original RACE layout, written by hand, NOT taken from RACE) flattened to
      one row per question, like the Hub's ehovy/race rows.
  datasets/models/<name>/tokenizer.json
      A tiny ALBERT-style Unigram tokenizer trained here (deterministically)
      on the sample text plus some generic sentences written below.
  datasets/models/<name>/{config.json, weights}
      Tiny, randomly initialised ALBERT checkpoints in the Hugging Face Hub
      layout, covering the loader's cases: safetensors / pytorch_model.bin /
      sharded safetensors with an index, keys without the "albert." prefix,
      several hidden groups / inner groups, gelu, gelu_new and relu, and a
      backbone-only AlbertForMaskedLM checkpoint (no pooler, no classifier).
      Every parameter is re-initialised with large random values (including
      LayerNorms and biases) so that wiring bugs change the logits visibly.
  tests/fixtures/reference/<name>.json
      For every sample test question: the input_ids / token_type_ids built
      exactly like race_utils.convert_single_example, and the float32 logits
      of the PyTorch (transformers) model, for two (max_seq_len, max_qa_len)
      settings, the second one forcing truncation.
  tests/fixtures/param_counts.json
      Parameter counts of the albert-{base,large,xlarge,xxlarge}-v2
      architectures (AlbertModel with pooler, AlbertForMultipleChoice).

Run with the versions pinned in scripts/requirements.txt:

    python scripts/make_fixtures.py

It is deterministic: running it twice produces byte-identical files.
scripts/make_family_fixtures.py builds the other BERT-family fixtures with
this module's helpers (import it; main() only runs as a script).
"""

import os

# Must be set before `tokenizers` is imported: single-threaded training keeps
# the Unigram trainer deterministic.
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("OMP_NUM_THREADS", "1")

import glob
import inspect
import json
import math
import shutil

import numpy as np
import safetensors.torch
import tokenizers
import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AlbertConfig, AlbertForMaskedLM, AlbertForMultipleChoice, AlbertModel

from race_inputs import qa_text  # scripts/race_inputs.py (scripts/ is on sys.path when run as a script)

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
transformers.logging.set_verbosity_error()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "datasets", "sample")
MODELS = os.path.join(ROOT, "datasets", "models")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
REFERENCE = os.path.join(FIXTURES, "reference")

SPECIAL_TOKENS = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]  # ids 0..4
VOCAB_SIZE = 800
SETTINGS = [
    {"max_seq_len": 512, "max_qa_len": 128},
    {"max_seq_len": 64, "max_qa_len": 16},  # forces context and qa truncation
]

# Generic English sentences (written for this script) mixed into the
# tokenizer training corpus so that the vocabulary is not only the samples.
EXTRA_SENTENCES = """
The weather was cold and windy, so we stayed at home and read books all afternoon.
My sister works in a hospital in the north of the city and she often comes home late.
Students who read every day usually find it easier to understand difficult texts.
The train to the airport leaves every twenty minutes from platform number four.
He bought two kilos of potatoes, a bottle of milk and some fresh bread at the market.
Scientists believe that the climate of the planet is changing faster than ever before.
Our teacher told us that the exam would be on Friday morning at nine o'clock.
Many young people want to travel around the world before they start working.
The museum is closed on Mondays, but it is open late on Thursday evenings.
If you want to learn a language, you should practise speaking it as often as possible.
The children were playing in the garden when it suddenly started to rain.
She wrote a letter to her grandfather to thank him for the birthday present.
The new library has more than 20,000 books, a small cinema and a quiet reading room.
Doctors say that sleeping for eight hours a night is important for good health.
What time does the shop open? Where is the nearest bus stop? Why are you late?
Which answer is correct? Who wrote this story? How much does the ticket cost?
According to the report, the number of visitors rose by 15 per cent last year.
The author suggests that readers should think carefully before they decide.
It is true that the village was small, but the people there were very friendly.
They walked along the river, crossed the old bridge and climbed the green hill.
Computers, mobile phones and the internet have changed the way we communicate.
The main idea of the passage is that hard work and patience lead to success.
In the morning the fishermen went out to sea, and in the evening they sold their fish.
The factory produces cars, trucks and buses for customers in many different countries.
Although the test was difficult, most of the class passed with good marks.
A famous writer once said that a good book is like a friend who never leaves you.
""".strip().split("\n")


# --------------------------------------------------------------------------
# 1. Sample data set: RACE layout -> jsonl rows
# --------------------------------------------------------------------------

def _file_number(path):
    return int(os.path.splitext(os.path.basename(path))[0])


def read_race_split(split):
    """Passages of one split, middle before high, files in numeric order."""
    passages = []
    for level in ("middle", "high"):
        files = sorted(glob.glob(os.path.join(SAMPLE, "RACE", split, level, "*.txt")), key=_file_number)
        for path in files:
            with open(path, encoding="utf-8") as f:
                p = json.load(f)
            assert p["id"] == f"{level}{_file_number(path)}.txt", path
            n = len(p["questions"])
            assert n == len(p["options"]) == len(p["answers"]) and 2 <= n <= 4, path
            for opts, ans in zip(p["options"], p["answers"]):
                assert len(opts) == 4 and ans in "ABCD", path
            passages.append(p)
    return passages


def write_jsonl(split, passages):
    rows = []
    for p in passages:
        for q, opts, ans in zip(p["questions"], p["options"], p["answers"]):
            rows.append({"example_id": p["id"], "article": p["article"], "question": q,
                         "options": opts, "answer": ans})
    with open(os.path.join(SAMPLE, f"{split}.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return rows


# --------------------------------------------------------------------------
# 2. Tokenizer
# --------------------------------------------------------------------------

def canonical_vocab(vocab):
    """Make the trained Unigram vocabulary independent of Rust's random hash
    order. Across runs the trainer returns the same pieces, but (a) scores
    differ in the last bits (summation order), (b) pieces with equal scores
    come in any order, and (c) required characters missing from the final
    model are appended with scores min_score - k * 1e-4 in set order. So:
    round the scores to 6 decimals, order ties by piece, and give the
    appended characters their scores in sorted-character order."""
    assert [p for p, _ in vocab[: len(SPECIAL_TOKENS)]] == SPECIAL_TOKENS
    rest = sorted(((p, round(sc, 6)) for p, sc in vocab[len(SPECIAL_TOKENS):]), key=lambda x: (-x[1], x[0]))
    k = len(rest) - 1
    while k > 0 and len(rest[k][0]) == 1 and len(rest[k - 1][0]) == 1 \
            and abs(rest[k - 1][1] - rest[k][1] - 1e-4) < 1e-7:
        k -= 1
    tail = rest[k:]
    tail = list(zip(sorted(p for p, _ in tail), [sc for _, sc in tail]))
    out = [(p, 0.0) for p in SPECIAL_TOKENS] + rest[:k] + tail
    assert len(out) == len(vocab) and len({p for p, _ in out}) == len(out)
    return out


def build_tokenizer(all_passages):
    corpus = []
    for p in all_passages:
        corpus.extend(line for line in p["article"].split("\n") if line.strip())
        for q, opts in zip(p["questions"], p["options"]):
            corpus.append(q)
            corpus.extend(opts)
            corpus.extend(qa_text(q, o) for o in opts)
    corpus.extend(EXTRA_SENTENCES)

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([
        normalizers.Replace("``", '"'),
        normalizers.Replace("''", '"'),
        normalizers.NFKD(),
        normalizers.StripAccents(),
        normalizers.Lowercase(),
        # The real ALBERT tokenizer's precompiled charsmap turns newlines and tabs into spaces;
        # this stands in for it, so articles with paragraphs tokenise as they do on the Hub.
        normalizers.Replace(Regex("[\\n\\r\\t]"), " "),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        unk_token="<unk>",
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.model = models.Unigram(canonical_vocab(json.loads(tok.to_str())["model"]["vocab"]), unk_id=1, byte_fallback=False)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    spec = json.loads(tok.to_str())
    assert spec["model"]["type"] == "Unigram" and spec["model"]["unk_id"] == 1, spec["model"].get("unk_id")
    return tok


# --------------------------------------------------------------------------
# 3. Models
# --------------------------------------------------------------------------

def albert_config(vocab_size, **kw):
    return AlbertConfig(
        vocab_size=vocab_size,
        max_position_embeddings=512,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
        attn_implementation="eager",
        **kw,
    )


def tiny_albert_kw():
    return dict(embedding_size=16, hidden_size=32, num_hidden_layers=3, num_hidden_groups=1,
                inner_group_num=1, num_attention_heads=4, intermediate_size=64, hidden_act="gelu_new")


def groups_gelu_kw():
    return dict(embedding_size=24, hidden_size=32, num_hidden_layers=4, num_hidden_groups=2,
                inner_group_num=2, num_attention_heads=2, intermediate_size=48, hidden_act="gelu")


def relu_kw():
    return dict(embedding_size=32, hidden_size=32, num_hidden_layers=2, num_hidden_groups=1,
                inner_group_num=1, num_attention_heads=4, intermediate_size=64, hidden_act="relu")


@torch.no_grad()
def reinit_(model, seed, classifier_scale):
    """Re-initialise every parameter with large random values (see header)."""
    g = torch.Generator().manual_seed(seed)
    done = set()

    def normal_(t, mean, std):
        if id(t) in done:  # tied parameters keep their first initialisation
            return
        t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype) * std + mean)
        done.add(id(t))

    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Embedding):
            normal_(mod.weight, 0.0, 0.5)
        elif isinstance(mod, torch.nn.Linear):
            normal_(mod.weight, 0.0, 1.0 / math.sqrt(mod.in_features))
            if mod.bias is not None:
                normal_(mod.bias, 0.0, 0.1)
        elif isinstance(mod, torch.nn.LayerNorm):
            normal_(mod.weight, 1.0, 0.2)
            normal_(mod.bias, 0.0, 0.2)
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) not in done:  # e.g. AlbertMLMHead.bias
            assert name.endswith("bias"), name
            normal_(p, 0.0, 0.1)
    if classifier_scale is not None:
        model.classifier.weight.mul_(classifier_scale)
    assert all(id(p) in done for p in model.parameters())


def make_model(cls, config, seed, classifier_scale=None):
    torch.manual_seed(seed)
    model = cls(config)
    reinit_(model, seed, classifier_scale)
    return model.eval()


@torch.no_grad()
def center_classifier_(model, inputs):
    """Shift classifier.bias so that the mean logit over the sample is ~0.

    With ~400-token contexts the option tokens move the [CLS] state only a
    little, so the classifier is scaled up (classifier_scale) to make the
    options of a question differ by O(0.3-2); this removes the large common
    offset that the scaling also produces, keeping |logits| moderate."""
    allv = torch.cat([run_logits(model, q["input_ids"], q["token_type_ids"]) for qs in inputs for q in qs])
    model.classifier.bias.sub_(allv.mean())


def save_hub_dir(name, model, tok, **save_kw):
    out = os.path.join(MODELS, name)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    model.save_pretrained(out, **save_kw)
    tok.save(os.path.join(out, "tokenizer.json"))
    return out


# --------------------------------------------------------------------------
# 4. Reference inputs and logits
# --------------------------------------------------------------------------

def encode_question(tok, ctx_ids, question, options, max_seq_len, max_qa_len):
    """race_utils.convert_single_example, without padding."""
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    all_ids, all_types = [], []
    for opt in options:
        qa = tok.encode(qa_text(question, opt), add_special_tokens=False).ids
        qa = qa[-max_qa_len:]
        ctx = list(ctx_ids)
        if len(ctx) + len(qa) > max_seq_len - 3:
            ctx = ctx[: max_seq_len - 3 - len(qa)]
        all_ids.append([cls_id] + ctx + [sep_id] + qa + [sep_id])
        all_types.append([0] * (len(ctx) + 2) + [1] * (len(qa) + 1))
    return all_ids, all_types


def build_inputs(tok, rows):
    """Per setting, the list of question dicts (without logits)."""
    ctx_cache = {}
    q_index = {}
    out = []
    for s in SETTINGS:
        qs = []
        for r in rows:
            art = r["article"]
            if art not in ctx_cache:
                ctx_cache[art] = tok.encode(art, add_special_tokens=False).ids
            key = (r["example_id"], s["max_seq_len"])
            i = q_index.get(key, 0)
            q_index[key] = i + 1
            ids, types = encode_question(tok, ctx_cache[art], r["question"], r["options"], s["max_seq_len"], s["max_qa_len"])
            qs.append({"id": r["example_id"], "question_index": i, "label": ord(r["answer"]) - ord("A"),
                       "input_ids": ids, "token_type_ids": types})
        out.append(qs)
    return out, ctx_cache


def takes_token_types(model):
    """Whether the model's forward has a token_type_ids argument (DistilBERT's has not)."""
    return "token_type_ids" in inspect.signature(model.forward).parameters


@torch.no_grad()
def run_logits(model, ids, types):
    """Logits of the 4 options. The options have different lengths and the
    reference uses no padding, so each option goes through the model on its
    own as a (1, 1, L_j) multiple-choice input; the rows of a (1, 4, L) batch
    are independent, so this equals an unpadded (1, 4, L) call."""
    out = []
    for i, t in zip(ids, types):
        input_ids = torch.tensor([[i]], dtype=torch.long)  # (1, 1, L_j)
        kw = {"token_type_ids": torch.tensor([[t]], dtype=torch.long)} if takes_token_types(model) else {}
        mask = torch.ones_like(input_ids)
        out.append(model(input_ids=input_ids, attention_mask=mask, **kw).logits[0, 0])
    return torch.stack(out)


@torch.no_grad()
def run_logits_padded(model, ids, types, pad_id=0):
    """Cross-check: one right-padded (1, 4, max L) call with a 0/1 mask."""
    L = max(len(i) for i in ids)
    input_ids = torch.tensor([[i + [pad_id] * (L - len(i)) for i in ids]], dtype=torch.long)
    kw = {}
    if takes_token_types(model):
        kw["token_type_ids"] = torch.tensor([[t + [0] * (L - len(t)) for t in types]], dtype=torch.long)
    mask = torch.tensor([[[1] * len(i) + [0] * (L - len(i)) for i in ids]], dtype=torch.long)
    return model(input_ids=input_ids, attention_mask=mask, **kw).logits[0]


ATOL = 1e-4
MAX_DIFF = {"sdpa": 0.0, "padded": 0.0}


def compute_reference(model_eager, model_sdpa, inputs):
    """Eager logits of every question, cross-checked against sdpa (unless model_sdpa is None)
    and against a batch padded with the config's pad_token_id."""
    pad_id = model_eager.config.pad_token_id
    settings = []
    all_logits = []
    for s, qs in zip(SETTINGS, inputs):
        out_qs = []
        for q in qs:
            le = run_logits(model_eager, q["input_ids"], q["token_type_ids"])
            ls = run_logits(model_sdpa, q["input_ids"], q["token_type_ids"]) if model_sdpa is not None else None
            assert le.dtype == torch.float32
            lp = run_logits_padded(model_eager, q["input_ids"], q["token_type_ids"], pad_id=pad_id)
            # Float32 rounding, amplified by the large random weights and the
            # scaled classifier, gives |eager - sdpa| up to ~3e-5 (and
            # |unpadded - padded| up to ~1.5e-5); options differ by ~0.3-2.
            for other, what in ((ls, "sdpa"), (lp, "padded")):
                if other is None:
                    continue
                d = (le - other).abs().max().item()
                MAX_DIFF[what] = max(MAX_DIFF[what], d)
                assert d < ATOL, (what, le, other)
            all_logits.append(le)
            out_qs.append(dict(q, logits=[float(x) for x in le]))
        settings.append(dict(s, questions=out_qs))
    L = torch.stack(all_logits)
    mean_std = L.std(dim=1).mean().item()
    preds = L.argmax(dim=1)
    assert mean_std > 0.1, f"logits of the options are too similar: mean std {mean_std}"
    for s, qs in zip(SETTINGS, inputs):  # also per setting
        k = len(qs)
        per = L[:k].std(dim=1).mean().item()
        assert per > 0.1, (s, per)
        L = L[k:]
    assert len(set(preds.tolist())) > 1, "all predictions are the same option"
    return settings, mean_std, preds


def write_reference(name, settings, extra_head=None):
    """JSON with one question per line (valid JSON, diff-friendly); `extra_head` adds keys to
    the head, after "model"."""
    head = {"model": name, **(extra_head or {}),
            "transformers_version": transformers.__version__, "torch_version": torch.__version__}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f" {json.dumps(k)}: {json.dumps(v)},")
    lines.append(' "settings": [')
    for si, s in enumerate(settings):
        lines.append(f'  {{"max_seq_len": {s["max_seq_len"]}, "max_qa_len": {s["max_qa_len"]}, "questions": [')
        qs = s["questions"]
        for qi, q in enumerate(qs):
            lines.append("   " + json.dumps(q, separators=(",", ":")) + ("," if qi + 1 < len(qs) else ""))
        lines.append("  ]}" + ("," if si + 1 < len(settings) else ""))
    lines.append(" ]")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text)["settings"][0]["questions"][0]["id"] == settings[0]["questions"][0]["id"]
    os.makedirs(REFERENCE, exist_ok=True)
    with open(os.path.join(REFERENCE, f"{name}.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def load_pair(path, cls=AlbertForMultipleChoice):
    """(eager, sdpa) copies of a saved `cls` checkpoint, float32, eval."""
    e = cls.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()
    s = cls.from_pretrained(path, attn_implementation="sdpa", dtype=torch.float32).eval()
    assert e.config._attn_implementation == "eager" and s.config._attn_implementation == "sdpa"
    return e, s


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# --------------------------------------------------------------------------
# 5. Parameter counts
# --------------------------------------------------------------------------

ALBERT_V2 = {
    "albert-base-v2": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "albert-large-v2": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "albert-xlarge-v2": dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, intermediate_size=8192),
    "albert-xxlarge-v2": dict(hidden_size=4096, num_hidden_layers=12, num_attention_heads=64, intermediate_size=16384),
}


def param_counts():
    out = {}
    for name, kw in ALBERT_V2.items():
        cfg = AlbertConfig(vocab_size=30000, embedding_size=128, max_position_embeddings=512, type_vocab_size=2,
                           num_hidden_groups=1, inner_group_num=1, **kw)
        with torch.device("meta"):
            base = AlbertModel(cfg, add_pooling_layer=True)
            mc = AlbertForMultipleChoice(cfg)
        out[name] = dict(kw, embedding_size=128, vocab_size=30000,
                         albert_model=sum(p.numel() for p in base.parameters()),
                         albert_for_multiple_choice=sum(p.numel() for p in mc.parameters()))
    return out


# --------------------------------------------------------------------------

def main():
    splits = {s: read_race_split(s) for s in ("test", "dev")}
    rows = {s: write_jsonl(s, p) for s, p in splits.items()}
    for s, ps in splits.items():
        for level in ("middle", "high"):
            lp = [p for p in ps if p["id"].startswith(level)]
            print(f"sample {s}/{level}: {len(lp)} passages, {sum(len(p['questions']) for p in lp)} questions")

    tok = build_tokenizer(splits["test"] + splits["dev"])
    V = tok.get_vocab_size()
    print(f"tokenizer: Unigram, vocab size {V}")

    inputs, ctx_cache = build_inputs(tok, rows["test"])
    longest = max(len(v) for v in ctx_cache.values())
    assert longest > 512, f"no sample article exceeds 512 tokens (longest {longest})"
    print(f"longest test article: {longest} tokens")
    assert any(len(ids) == 512 for q in inputs[0] for ids in q["input_ids"])

    reports = []

    def reference(name, path, expect=None):
        e, s = load_pair(path)
        if expect is not None:
            assert_same_weights(expect, e)
        settings, mean_std, preds = compute_reference(e, s, inputs)
        write_reference(name, settings)
        reports.append((name, mean_std, preds.tolist()))
        return settings

    # tiny-albert (README default)
    tiny = make_model(AlbertForMultipleChoice, albert_config(V, **tiny_albert_kw()), seed=1001, classifier_scale=36.0)
    center_classifier_(tiny, inputs)
    path = save_hub_dir("tiny-albert", tiny, tok)
    tiny_settings = reference("tiny-albert", path, expect=tiny)

    # groups-gelu: 2 hidden groups x 2 inner layers, exact gelu
    gg = make_model(AlbertForMultipleChoice, albert_config(V, **groups_gelu_kw()), seed=2002, classifier_scale=50.0)
    center_classifier_(gg, inputs)
    path = save_hub_dir("groups-gelu", gg, tok)
    reference("groups-gelu", path, expect=gg)

    # relu-bin: pytorch_model.bin
    rb = make_model(AlbertForMultipleChoice, albert_config(V, **relu_kw()), seed=3003, classifier_scale=40.0)
    center_classifier_(rb, inputs)
    path = save_hub_dir("relu-bin", rb, tok, safe_serialization=False)
    assert os.path.exists(os.path.join(path, "pytorch_model.bin"))
    reference("relu-bin", path, expect=rb)

    # sharded: groups-gelu architecture, another seed, sharded safetensors
    sh = make_model(AlbertForMultipleChoice, albert_config(V, **groups_gelu_kw()), seed=4004, classifier_scale=20.0)
    center_classifier_(sh, inputs)
    path = save_hub_dir("sharded", sh, tok, max_shard_size="40KB")
    assert os.path.exists(os.path.join(path, "model.safetensors.index.json"))
    assert len(glob.glob(os.path.join(path, "model-*-of-*.safetensors"))) > 1
    reference("sharded", path, expect=sh)

    # no-prefix: tiny-albert weights with "albert." stripped (classifier.* kept)
    out = os.path.join(MODELS, "no-prefix")
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    shutil.copyfile(os.path.join(MODELS, "tiny-albert", "config.json"), os.path.join(out, "config.json"))
    tok.save(os.path.join(out, "tokenizer.json"))
    src = safetensors.torch.load_file(os.path.join(MODELS, "tiny-albert", "model.safetensors"))
    stripped = {k[len("albert."):] if k.startswith("albert.") else k: v for k, v in sorted(src.items())}
    assert len(stripped) == len(src) and not any(k.startswith("albert.") for k in stripped)
    assert "classifier.weight" in stripped and "pooler.weight" in stripped
    safetensors.torch.save_file(stripped, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    # Reload by re-adding the prefix by hand (transformers itself would not
    # map classifier.* correctly for such a checkpoint).
    back = safetensors.torch.load_file(os.path.join(out, "model.safetensors"))
    readded = {(k if k.startswith("classifier.") else "albert." + k): v for k, v in back.items()}
    np_e = AlbertForMultipleChoice(albert_config(V, **tiny_albert_kw())).eval()
    missing, unexpected = np_e.load_state_dict(readded, strict=False)
    assert not unexpected and all("position_ids" in m or "token_type_ids" in m for m in missing), (missing, unexpected)
    np_s = AlbertForMultipleChoice(AlbertConfig.from_pretrained(out, attn_implementation="sdpa")).eval()
    np_s.load_state_dict(readded, strict=False)
    assert_same_weights(tiny, np_e)
    settings, mean_std, preds = compute_reference(np_e, np_s, inputs)
    for a, b in zip(settings, tiny_settings):
        assert [q["logits"] for q in a["questions"]] == [q["logits"] for q in b["questions"]]
    write_reference("no-prefix", settings)
    reports.append(("no-prefix", mean_std, preds.tolist()))

    # mlm-backbone: AlbertForMaskedLM (no pooler, predictions.* head)
    mlm = make_model(AlbertForMaskedLM, albert_config(V, **tiny_albert_kw()), seed=5005)
    path = save_hub_dir("mlm-backbone", mlm, tok)
    keys = safetensors.torch.load_file(os.path.join(path, "model.safetensors")).keys()
    assert any(k.startswith("predictions.") for k in keys)
    assert not any("pooler" in k or k.startswith("classifier") for k in keys)

    # save_pretrained writes some files with mode 0600; make them all 0644
    for f in glob.glob(os.path.join(MODELS, "*", "*")):
        os.chmod(f, 0o644)

    # parameter counts
    pc = param_counts()
    with open(os.path.join(FIXTURES, "param_counts.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(pc, indent=2) + "\n")

    print(f"max |eager - sdpa| = {MAX_DIFF['sdpa']:.2e}, max |unpadded - padded batch| = {MAX_DIFF['padded']:.2e}")
    for name, mean_std, preds in reports:
        print(f"{name}: mean per-question logit std {mean_std:.3f}, predictions {''.join('ABCD'[p] for p in preds)}")
    for name, c in pc.items():
        print(f"{name}: AlbertModel {c['albert_model']:,}  AlbertForMultipleChoice {c['albert_for_multiple_choice']:,}")
    print(f"versions: torch {torch.__version__}, transformers {transformers.__version__}, "
          f"tokenizers {tokenizers.__version__}, safetensors {safetensors.__version__}, numpy {np.__version__}")


if __name__ == "__main__":
    main()
