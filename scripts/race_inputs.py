"""RACE multiple-choice inputs for any tokenizer.json, shared by the fixture and training scripts.

google-research/albert `race_utils.convert_single_example`, generalised from ALBERT's
`[CLS] context [SEP] qa [SEP]` to whatever pair layout the tokenizer's own post-processor
produces (BERT's template, RoBERTa's `<s> A </s></s> B </s>`, ...):

  * qa text: the question with `_` replaced by the option, else question + " " + option;
  * the qa tokens keep their LAST max_qa_len tokens;
  * the article keeps its FIRST max_seq_len - n_special - len(qa) tokens, where n_special is
    tokenizer.post_processor.num_special_tokens_to_add(True) (3 for BERT/ALBERT, 4 for RoBERTa);
  * then the post-processor lays out the pair (article first, qa second) and gives the ids and
    token type ids. Nothing is padded.

For ALBERT/BERT templates this is exactly race_utils' `[CLS] ctx [SEP] qa [SEP]` with type ids
0 up to the first [SEP] and 1 after. Only needs the `tokenizers` package (no torch), so
scripts that import it stay light. Not a script of its own.
"""

import copy
import hashlib
import json


def qa_text(question, option):
    """race_utils.RaceProcessor.read_examples."""
    if "_" in question:
        return question.replace("_", option)
    return " ".join([question, option])


def read_jsonl(path, limit=None):
    """Rows of a RACE jsonl file (example_id, article, question, options, answer)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
                if limit is not None and len(rows) == limit:
                    break
    return rows


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def ids_sha256(ids):
    """sha256 hex of the ids written as decimal numbers joined by "," (e.g. "2,54,3")."""
    return hashlib.sha256(",".join(str(i) for i in ids).encode("ascii")).hexdigest()


def check_tokenizer(tok):
    """The tokenizer must neither truncate nor pad on its own (sentence-transformers folders ship
    max_length 128 truncation and fixed padding: call tok.no_truncation(); tok.no_padding())."""
    assert tok.truncation is None, f"disable the tokenizer's truncation first: {tok.truncation}"
    assert tok.padding is None, f"disable the tokenizer's padding first: {tok.padding}"
    assert tok.post_processor is not None, "the tokenizer has no post_processor"


class ArticleCache:
    """Encodings of articles (without special tokens), computed once per article text."""

    def __init__(self, tok):
        check_tokenizer(tok)
        self.tok = tok
        self.cache = {}

    def get(self, article):
        enc = self.cache.get(article)
        if enc is None:
            enc = self.cache[article] = self.tok.encode(article, add_special_tokens=False)
        return enc

    def lengths(self):
        return {a: len(e.ids) for a, e in self.cache.items()}


def encode_question(tok, ctx_enc, question, options, max_seq_len, max_qa_len):
    """(input_ids, token_type_ids): one list per option, unpadded. `ctx_enc` is the article's
    Encoding without special tokens (it is copied, not changed)."""
    check_tokenizer(tok)
    n_special = tok.post_processor.num_special_tokens_to_add(True)
    all_ids, all_types = [], []
    for opt in options:
        qa = tok.encode(qa_text(question, opt), add_special_tokens=False)
        qa.truncate(max_qa_len, direction="left")  # keeps the LAST max_qa_len tokens
        keep = max_seq_len - n_special - len(qa.ids)
        assert keep >= 0, (max_seq_len, max_qa_len, n_special)
        ctx = copy.deepcopy(ctx_enc)
        if len(ctx.ids) > keep:
            ctx.truncate(keep, direction="right")  # keeps the FIRST `keep` tokens
        assert len(ctx.ids) == min(keep, len(ctx_enc.ids))
        enc = tok.post_process(ctx, qa, add_special_tokens=True)
        assert len(enc.ids) == len(ctx.ids) + len(qa.ids) + n_special <= max_seq_len
        all_ids.append(list(enc.ids))
        all_types.append(list(enc.type_ids))
    return all_ids, all_types


def question_indices(rows):
    """Index of each question within its passage (example_id), in file order."""
    seen = {}
    out = []
    for r in rows:
        i = seen.get(r["example_id"], 0)
        seen[r["example_id"]] = i + 1
        out.append(i)
    return out


def label_of(row):
    return ord(row["answer"]) - ord("A")


def build_inputs(tok, rows, settings, articles=None):
    """Per setting, the list of question dicts {id, question_index, label, input_ids,
    token_type_ids} (the reference JSON's layout, without logits)."""
    articles = articles or ArticleCache(tok)
    qidx = question_indices(rows)
    out = []
    for s in settings:
        qs = []
        for r, i in zip(rows, qidx):
            ids, types = encode_question(tok, articles.get(r["article"]), r["question"], r["options"],
                                         s["max_seq_len"], s["max_qa_len"])
            qs.append({"id": r["example_id"], "question_index": i, "label": label_of(r),
                       "input_ids": ids, "token_type_ids": types})
        out.append(qs)
    return out, articles
