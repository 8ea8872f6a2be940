"""Reference log-likelihoods and token ids for the decoder tests (tests/lm_parity.rs).

Runs SmolLM2-135M-Instruct from the Q4_1 GGUF file that scripts/fetch_smollm2.sh fetches, through
transformers (`AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`, which dequantises every
weight to float32; the tokenizer is built by transformers from the GGUF metadata), and writes
tests/fixtures/smollm2/reference.json with:

- "tokenizer": for sentences written here, the token ids of `tokenizer.encode(text,
  add_special_tokens=False)`. The GGUF says `tokenizer.ggml.add_bos_token = false` (SmolLM2 adds no
  BOS), but transformers' GGUF tokenizer conversion (4.57.1) puts a post-processor on it that
  prepends <|im_start|> (id 1) regardless; so specials are switched off here, as
  lm-evaluation-harness does with `--model_args add_bos_token=False`.
- "own": short multiple-choice items written here, formatted as lm-evaluation-harness' `race`
  task formats a document (race.yaml / preprocess_race.py, version 3.0): the context and each
  continuation " " + option tokenised as the harness' `_encode_pair` does (encode context +
  continuation, encode context, split), and per option the summed log-probability of the
  continuation's tokens and each token's log-probability, in float32 (float64 sums).
- "tasks": the natural extension, every question of a passage scored with the earlier ones
  answered in its prompt (race-eval's `harness-all`), on RACE-style sets read here from their own
  files in ../shared (when present), whole passages until 8 questions: the first dialogues of DREAM dev (dev.json: turns joined by
  "\n", 3 options, the answer given as a choice's text) and the first stories of MCTest mc160 dev
  (.tsv + .ans: `\newline` markers as newlines, the `one:`/`multiple:` prefix dropped). Recorded as
  for "race_m": ids only by hash, never the text.
- "requant" (with --requant): SmolLM2 quantised again into Q8_0, Q4_0, Q5_0, Q4_K and Q6_K
  files by tests/lm_quant_types.rs (run it first: it writes them beside the Q4_1 file), each read
  by transformers (gguf-py dequantises every type) and scoring the "own" items: per type the
  file's sha256 and per item the options' log-likelihoods. `--requant-only` updates just this part
  of the existing reference.
- "race_m": for the first N articles of RACE-M test (../shared/data/race-m/test.jsonl, when
  present), the harness prompt of the article's LAST question: only the example id, the question
  index, sha256 of the context ids and of each continuation's ids (ids written as decimals joined by
  ","), their lengths, and the log-likelihoods. Never the text (RACE is licensed).

Usage: /work/venv/bin/python scripts/lm_reference.py [--gguf FILE] [--race-m FILE] [--articles N]
       [--dream FILE] [--mctest FILE.tsv] [--questions N] [--requant | --requant-only]
Needs: torch, transformers (4.57.1 here), gguf. Deterministic (CPU, float32).
"""

import argparse
import hashlib
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
GGUF = os.path.join(
    os.environ.get("RACE_EVAL_CACHE", os.path.expanduser("~/.cache/race-eval")),
    "models",
    "SmolLM2-135M-Instruct.Q4_1.gguf",
)
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
DREAM = os.path.join(SHARED, "dream", "dev.json")
MCTEST = os.path.join(SHARED, "mctest", "mc160.dev.tsv")
RACE_M = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "race-m", "test.jsonl"))
OUT = os.path.join(ROOT, "tests", "fixtures", "smollm2", "reference.json")

# Sentences for the tokenizer check: words, digits (split one by one by SmolLM2's pre-tokenizer),
# punctuation, contractions, runs of spaces and newlines, non-ASCII text.
SENTENCES = [
    "Article: The quick brown fox jumps over the lazy dog.\n\n",
    "Question: What did Tom's sister buy in 1998 for $12.50?\nAnswer:",
    "  two leading spaces, trailing spaces   ",
    "I'm sure they'll say we've done it; isn't it?",
    "Numbers: 3.14159, 2024-05-06, 1,000,000 and 42nd.",
    "Café naïve résumé — “quoted” text… 東京 😀",
    "line one\nline two\n\n\nline five\ttabbed",
    "She said  _  .",
    "<|im_start|>user\nhello<|im_end|>",
]

# Items written here (not RACE text), in the harness' document shape: an article and its problems.
OWN = [
    {
        "article": "Maria grew tomatoes in a small garden behind her house. Every morning she watered "
        "them before school. In August the plants were taller than her little brother, and she gave "
        "a basket of tomatoes to each of her neighbours.",
        "problems": [
            {
                "question": "When did Maria water the plants?",
                "options": ["In the evening", "Every morning", "Only on Sundays", "Never"],
                "answer": "B",
            },
            {
                "question": "Maria gave the tomatoes to  _  .",
                "options": ["her teacher", "a shop", "her neighbours", "her brother only"],
                "answer": "C",
            },
            {
                "question": "What can we learn from the passage?",
                "options": [
                    "Maria's garden was large.",
                    "The plants grew very tall.",
                    "Maria did not like tomatoes.",
                    "Her brother watered the garden.",
                ],
                "answer": "B",
            },
        ],
    },
    {
        "article": "The train to the coast leaves at 7:45. Tickets cost 12 dollars for adults and half "
        "of that for children.",
        "problems": [
            {
                "question": "How much is a child's ticket?",
                "options": ["6 dollars", "12 dollars", "24 dollars", "7 dollars"],
                "answer": "A",
            },
        ],
    },
]


def sha256_ids(ids):
    return hashlib.sha256(",".join(str(i) for i in ids).encode("ascii")).hexdigest()


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def answer_text(problem):
    return problem["options"]["ABCD".index(problem["answer"])]


def doc_to_text(doc, upto):
    """The harness' doc_to_text for the document made of problems[: upto + 1] (version 3.0)."""
    text = "Article: " + doc["article"] + "\n\n"
    for problem in doc["problems"][:upto]:
        if problem["question"][-6:] == "  _  .":
            text += problem["question"][:-5] + answer_text(problem) + "\n"
        else:
            text += "Question: " + problem["question"] + "\n" + "Answer: " + answer_text(problem) + "\n"
    text += doc["problems"][upto]["question"]
    return text


def encode_pair(tok, context, continuation):
    """lm-evaluation-harness' `_encode_pair` for a causal model."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok.encode(context + continuation, add_special_tokens=False)
    ctx = tok.encode(context, add_special_tokens=False)
    return ctx, whole[len(ctx):]


@torch.no_grad()
def option_logprobs(model, ctx, conts):
    """Per option: the log-probabilities of its tokens given ctx (float32 log_softmax)."""
    out = []
    for cont in conts:
        ids = torch.tensor([ctx + cont[:-1]])
        logits = model(ids).logits[0].float()
        lp = torch.log_softmax(logits, dim=-1)
        rows = lp[len(ctx) - 1 :]
        out.append([float(rows[i, t]) for i, t in enumerate(cont)])
    return out


def scored(model, tok, doc, upto):
    context = doc_to_text(doc, upto)
    conts = [" " + o for o in doc["problems"][upto]["options"]]
    pairs = [encode_pair(tok, context, c) for c in conts]
    ctx = pairs[0][0]
    assert all(p[0] == ctx for p in pairs), "context ids depend on the continuation"
    per_token = option_logprobs(model, ctx, [p[1] for p in pairs])
    return ctx, [p[1] for p in pairs], per_token


def race_m_docs(path):
    """RACE-M as harness documents (one per article, questions in file order): (id, doc)."""
    docs, order = {}, []
    for line in open(path, encoding="utf-8"):
        row = json.loads(line)
        pid = row["example_id"]
        if pid not in docs:
            docs[pid] = {"article": row["article"], "problems": []}
            order.append(pid)
        docs[pid]["problems"].append(
            {"question": row["question"], "options": row["options"], "answer": row["answer"]}
        )
    return [(pid, docs[pid]) for pid in order]


def dream_docs(path):
    """DREAM's dialogues as harness documents: (id, doc) in file order."""
    out = []
    for turns, questions, did in json.load(open(path, encoding="utf-8")):
        problems = []
        for q in questions:
            letter = "ABCD"[q["choice"].index(q["answer"])]
            problems.append({"question": q["question"], "options": q["choice"], "answer": letter})
        out.append((did, {"article": "\n".join(turns), "problems": problems}))
    return out


def mctest_docs(tsv):
    """MCTest's stories (the .tsv and its .ans) as harness documents."""
    ans = tsv[: -len(".tsv")] + ".ans"
    stories = [l for l in open(tsv, encoding="utf-8").read().split("\n") if l.strip()]
    golds = [l for l in open(ans, encoding="utf-8").read().split("\n") if l.strip()]
    out = []
    for line, gold in zip(stories, golds):
        f = line.split("\t")
        story = f[2].replace("\\newline", "\n").replace("\\tab", "\t")
        letters = [g.strip() for g in gold.split("\t")]
        problems = []
        for k in range(4):
            q = f[3 + 5 * k]
            for prefix in ("one:", "multiple:"):
                if q.startswith(prefix):
                    q = q[len(prefix):]
            problems.append({"question": q.strip(), "options": f[4 + 5 * k : 8 + 5 * k], "answer": letters[k]})
        out.append((f[0], {"article": story, "problems": problems}))
    return out


def hashed(pid, qi, ctx, conts, per_token):
    return {
        "example_id": pid,
        "question_index": qi,
        "context_len": len(ctx),
        "context_sha256": sha256_ids(ctx),
        "continuation_lens": [len(c) for c in conts],
        "continuation_sha256": [sha256_ids(c) for c in conts],
        "logprobs": [sum(t) for t in per_token],
    }


REQUANT = ["Q8_0", "Q4_0", "Q5_0", "Q4_K", "Q6_K"]


def requant(gguf, tok):
    """The own items scored by transformers on each requantised file present."""
    d = os.path.dirname(os.path.abspath(gguf))
    out = {}
    for kind in REQUANT:
        f = f"SmolLM2-135M-Instruct.requant-{kind}.gguf"
        if not os.path.exists(os.path.join(d, f)):
            sys.exit(f"{f} is missing: run `cargo test --release --test lm_quant_types` first")
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
        lps = []
        for doc in OWN:
            for qi in range(len(doc["problems"])):
                _, _, per_token = scored(model, tok, doc, qi)
                lps.append([sum(t) for t in per_token])
        out[kind] = {"sha256": file_sha256(os.path.join(d, f)), "logprobs": lps}
        print(kind, [round(x, 4) for x in lps[0]], file=sys.stderr)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=GGUF)
    ap.add_argument("--race-m", default=RACE_M)
    ap.add_argument("--articles", type=int, default=6)
    ap.add_argument("--requant", action="store_true", help="also score the requantised files")
    ap.add_argument("--requant-only", action="store_true", help="update only the requant part")
    ap.add_argument("--dream", default=DREAM)
    ap.add_argument("--mctest", default=MCTEST)
    ap.add_argument("--questions", type=int, default=8, help="RACE-style tasks: whole passages until this many questions")
    args = ap.parse_args()
    assert file_sha256(args.gguf) == GGUF_SHA256, f"{args.gguf}: not the fetched SmolLM2 Q4_1 file"
    torch.manual_seed(0)
    torch.set_num_threads(2)
    d, f = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    if args.requant_only:
        ref = json.load(open(OUT, encoding="utf-8"))
        ref["requant"] = requant(args.gguf, tok)
        with open(OUT, "w", encoding="utf-8") as out:
            json.dump(ref, out, ensure_ascii=False, indent=1)
            out.write("\n")
        return
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()

    ref = {
        "gguf_sha256": GGUF_SHA256,
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "tokenizer": [{"text": s, "ids": tok.encode(s, add_special_tokens=False)} for s in SENTENCES],
        "own": [],
        "race_m": [],
    }
    for di, doc in enumerate(OWN):
        for qi in range(len(doc["problems"])):
            ctx, conts, per_token = scored(model, tok, doc, qi)
            ref["own"].append(
                {
                    "doc": di,
                    "question_index": qi,
                    "context": doc_to_text(doc, qi),
                    "options": doc["problems"][qi]["options"],
                    "context_ids": ctx,
                    "continuation_ids": conts,
                    "token_logprobs": per_token,
                    "logprobs": [sum(t) for t in per_token],
                }
            )
    ref["tasks"] = {}
    for task, path, reader in (("dream", args.dream, dream_docs), ("mctest160", args.mctest, mctest_docs)):
        if not os.path.exists(path):
            continue
        cases = []
        for pid, doc in reader(path):
            if len(cases) >= args.questions:
                break
            for qi in range(len(doc["problems"])):
                ctx, conts, per_token = scored(model, tok, doc, qi)
                cases.append(hashed(pid, qi, ctx, conts, per_token))
                print(task, pid, qi, len(ctx), [round(sum(t), 4) for t in per_token], file=sys.stderr)
        ref["tasks"][task] = {"file": os.path.relpath(path, SHARED), "sha256": file_sha256(path), "cases": cases}
    if os.path.exists(args.race_m):
        ref["race_m_sha256"] = file_sha256(args.race_m)
        for pid, doc in race_m_docs(args.race_m)[: args.articles]:
            qi = len(doc["problems"]) - 1
            ctx, conts, per_token = scored(model, tok, doc, qi)
            ref["race_m"].append(hashed(pid, qi, ctx, conts, per_token))
            print(pid, len(ctx), [round(sum(t), 4) for t in per_token], file=sys.stderr)
    if args.requant:
        ref["requant"] = requant(args.gguf, tok)
    with open(OUT, "w", encoding="utf-8") as out:
        json.dump(ref, out, ensure_ascii=False, indent=1)
        out.write("\n")
    print(OUT, file=sys.stderr)


if __name__ == "__main__":
    main()
