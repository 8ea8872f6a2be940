"""llama.cpp (through llama-cpp-python) scoring RACE-M test the lm-evaluation-harness way, beside
race-eval: speed, and per-option log-likelihoods against `race-eval eval --weights quantized`
(llama.cpp's own arithmetic: Q4_1 weights times Q8_1-quantised activations).

For each article's last question (the harness `race` protocol, harness-last; `--protocol
harness-all` for every question) the prompt is built as the harness' preprocess_race.py builds it
(lm_reference.doc_to_text), tokenised by llama.cpp's own tokenizer from the GGUF (no BOS, as the
file says), split as the harness' `_encode_pair` does; the prompt is evaluated once and its KV
cache kept, and each option " " + option is evaluated after it (the cache trimmed back to the
prompt between options), the best llama.cpp offers a scorer. Its log-likelihood is the sum of the
log-softmax of the logits at each continuation token (float64 over float32 logits).

Then the same documents through race-eval with `--predictions`, and per document the argmax
agreement and max |delta| of the option log-likelihoods, plus both wall times (each around its
whole run: load and scoring). Documents off by more than 0.5 nats are counted (a tokenisation
difference shows as one: race-eval's tokenizer is built from the same GGUF metadata).

`--ids-only FILE`: no scoring; llama.cpp's token ids of every document of the protocol (context and
each continuation, split as `_encode_pair` splits), one sha256 (its first 16 hex digits) per document over
"context;cont1;cont2;..." (ids as decimals joined by ","), written to FILE as JSON with the data
file's sha256: tests/lm_parity.rs checks race-eval's GGUF tokenizer against it (no RACE text).

Usage: /work/venv/bin/python scripts/lm_llamacpp.py [--limit N] [--threads 2] [--work DIR]
       [--race-eval target/release/race-eval] [--weights quantized]
Needs: llama-cpp-python (`pip install llama-cpp-python` builds llama.cpp; 0.3.x here), numpy.
Prints a JSON summary (figures only, no RACE text) and writes it to WORK/summary.json.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lm_reference as ref  # noqa: E402

ROOT = ref.ROOT


def documents(path, protocol):
    out = []
    for pid, d in ref.race_m_docs(path):
        last = len(d["problems"]) - 1
        for qi in range(len(d["problems"])) if protocol == "harness-all" else [last]:
            out.append((pid, qi, d))
    return out


def encode_pair(tok, d, qi):
    """The harness' prompt for question qi and its `_encode_pair` split of each option."""
    context = ref.doc_to_text(d, qi)
    conts = [" " + o for o in d["problems"][qi]["options"]]
    n_sp = len(context) - len(context.rstrip())
    if n_sp:
        conts = [context[-n_sp:] + c for c in conts]
        context = context[:-n_sp]
    ctx = tok(context)
    out = []
    for c in conts:
        whole = tok(context + c)
        assert whole[: len(ctx)] == ctx
        out.append(whole[len(ctx):])
    return ctx, out


def log_softmax_rows(logits):
    x = logits.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=ref.GGUF)
    ap.add_argument("--race-m", default=ref.RACE_M)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--protocol", default="harness-last", choices=["harness-last", "harness-all"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="/tmp/race-eval-llamacpp")
    ap.add_argument("--race-eval", default=os.path.join(ROOT, "target", "release", "race-eval"))
    ap.add_argument("--weights", default="quantized")
    ap.add_argument("--ids-only", default=None, metavar="FILE")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    import llama_cpp

    docs = documents(args.race_m, args.protocol)
    if args.limit:
        docs = docs[: args.limit]
    if args.ids_only:
        vocab = llama_cpp.Llama(model_path=args.gguf, vocab_only=True, verbose=False)
        tok = lambda s: vocab.tokenize(s.encode("utf-8"), add_bos=False, special=False)  # noqa: E731
        out = []
        for pid, qi, d in docs:
            ctx, conts = encode_pair(tok, d, qi)
            text = ";".join(",".join(str(i) for i in ids) for ids in [ctx] + conts)
            out.append([pid, qi, ref.hashlib.sha256(text.encode("ascii")).hexdigest()[:16]])
        head = {"llama_cpp_python": llama_cpp.__version__, "gguf_sha256": ref.GGUF_SHA256,
                "data_sha256": ref.file_sha256(args.race_m), "protocol": args.protocol}
        with open(args.ids_only, "w") as f:
            f.write(json.dumps(head)[:-1] + ', "docs": [\n')
            f.write(",\n".join(json.dumps(d) for d in out) + "\n]}\n")
        print(f"{args.ids_only}: {len(out)} documents", file=sys.stderr)
        return

    start = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=args.gguf, n_ctx=8192, n_batch=512, n_threads=args.threads,
        n_threads_batch=args.threads, logits_all=True, verbose=False,
    )
    tok = lambda s: llm.tokenize(s.encode("utf-8"), add_bos=False, special=False)  # noqa: E731
    llama_ll = {}
    n_tokens = 0
    for pid, qi, d in docs:
        ctx, conts = encode_pair(tok, d, qi)
        llm.reset()
        llm.eval(ctx)
        n_tokens += len(ctx)
        lls = []
        for cont in conts:
            llm.n_tokens = len(ctx)  # drop the previous option; eval trims the cache from here
            llm.eval(cont[:-1]) if len(cont) > 1 else None
            n_tokens += len(cont) - 1
            rows = np.array(llm.scores[len(ctx) - 1 : len(ctx) - 1 + len(cont)], dtype=np.float32)
            lp = log_softmax_rows(rows)
            lls.append(float(sum(lp[i, t] for i, t in enumerate(cont))))
        llama_ll[(pid, qi)] = (lls, len(ctx))
    llama_secs = time.perf_counter() - start

    preds = os.path.join(args.work, "race-eval.jsonl")
    cmd = [args.race_eval, "eval", "--model", args.gguf, "--data", args.race_m, "--protocol",
           args.protocol, "--weights", args.weights, "--predictions", preds, "-q",
           "--output-dir", os.path.join(args.work, "results")]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    race_secs = time.perf_counter() - start

    agree = worst = 0.0
    deltas, n = [], 0
    for line in open(preds, encoding="utf-8"):
        row = json.loads(line)
        key = (row["passage_id"], row["question_index"])
        lls, _ = llama_ll[key]
        theirs = row["logits"]
        n += 1
        agree += int(np.argmax(lls) == np.argmax(theirs))
        d = max(abs(a - b) for a, b in zip(lls, theirs))
        deltas.append(d)
        worst = max(worst, d)
    summary = {
        "documents": n,
        "protocol": args.protocol,
        "threads": args.threads,
        "llama_cpp_python": llama_cpp.__version__,
        "race_eval_weights": args.weights,
        "argmax_agreement": agree / max(n, 1),
        "max_abs_delta_loglik": worst,
        "mean_abs_delta_loglik": float(np.mean(deltas)) if deltas else None,
        "docs_over_0.5_nats": int(sum(d > 0.5 for d in deltas)),
        "seconds": {"llama.cpp": round(llama_secs, 2), "race-eval": round(race_secs, 2)},
        "docs_per_second": {"llama.cpp": n / llama_secs, "race-eval": n / race_secs},
        "llama_cpp_tokens_evaluated": n_tokens,
    }
    with open(os.path.join(args.work, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
