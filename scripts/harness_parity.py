"""lm-evaluation-harness itself against race-eval on the same local RACE questions.

1. Writes RACE-M test (../shared/data/race-m/test.jsonl, one question per line) as a local file in
   the EleutherAI/race layout that the harness' `race` task reads: one line per article with
   `article` and `problems` (the Python literal string of [{answer, options, question}, ...], as
   that dataset stores it), plus `example_id` (ignored by the harness; names the passage for
   race-eval and for the comparison). Articles in order of first appearance, questions in file
   order.
2. Writes a task YAML into the work folder that `include`s the installed harness' own
   lm_eval/tasks/race/race.yaml (its doc_to_text / doc_to_target / doc_to_choice are the harness'
   preprocess_race.py functions, imported, not copied) and only swaps the data for the local file
   (`dataset_path: json`) and asks for acc and acc_norm.
3. Converts the SmolLM2 GGUF file once into a float32 transformers folder in the work folder
   (transformers dequantises GGUF on load; the folder saves doing it on every run), and runs
   `lm_eval run --model hf ... add_bos_token=False --batch_size 1 --device cpu --log_samples`.
4. Runs `race-eval eval --protocol harness-last` on the same local file with each `--weights` mode
   asked for (default: dequantized, then dequantize-on-use), `--predictions` to a file.
5. Compares per document: the argmax of the log-likelihoods (acc) and of log-likelihood /
   len(choice) (acc_norm), and the per-option log-likelihoods (max and mean |delta|), and prints
   the wall time of every run (each timed around its whole process: start, model load, scoring).

Needs: lm_eval (0.4.13 here), torch, transformers (4.57.1), datasets. transformers 4.57.1 needs
huggingface-hub < 1.0 while datasets 5.x pulls hub 2.x: if the venv has both, put compatible
versions first on the path without touching the venv, e.g.
    pip install --target /tmp/hp-pylib --no-deps "huggingface-hub>=0.34,<1.0" "datasets>=2.16,<4.2"
    PYTHONPATH=/tmp/hp-pylib python scripts/harness_parity.py ...

Usage: /work/venv/bin/python scripts/harness_parity.py [--limit N] [--work DIR]
       [--modes dequantized,dequantize-on-use] [--skip-harness] [--race-eval target/release/race-eval]
Writes DIR/summary.json (figures only, no RACE text) and prints it. Nothing is written in the repo.
"""

import argparse
import ast
import glob
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lm_reference as ref  # noqa: E402  (the GGUF path and its sha256)

TASK = "race_local"


def harness_race_yaml():
    import lm_eval.tasks

    path = os.path.join(os.path.dirname(lm_eval.tasks.__file__), "race", "race.yaml")
    assert os.path.isfile(path), path
    return path


def write_eleuther_layout(src, dest):
    """One JSON line per article: example_id, article, problems (Python literal string)."""
    docs, order = {}, []
    for line in open(src, encoding="utf-8"):
        row = json.loads(line)
        pid = row["example_id"]
        if pid not in docs:
            docs[pid] = {"example_id": pid, "article": row["article"], "problems": []}
            order.append(pid)
        assert docs[pid]["article"] == row["article"], pid
        docs[pid]["problems"].append(
            {"answer": row["answer"], "options": row["options"], "question": row["question"]}
        )
    with open(dest, "w", encoding="utf-8") as out:
        for pid in order:
            d = dict(docs[pid])
            d["problems"] = str(d["problems"])
            assert ast.literal_eval(d["problems"]) == docs[pid]["problems"]
            out.write(json.dumps(d, ensure_ascii=False) + "\n")
    return len(order), sum(len(docs[p]["problems"]) for p in order)


def write_task_yaml(task_dir, data_file):
    os.makedirs(task_dir, exist_ok=True)
    text = (
        f"include: {harness_race_yaml()}\n"
        f"task: {TASK}\n"
        "dataset_path: json\n"
        "dataset_name: null\n"
        "dataset_kwargs:\n"
        "  data_files:\n"
        f"    test: {data_file}\n"
        "metric_list:\n"
        "  - metric: acc\n"
        "    aggregation: mean\n"
        "    higher_is_better: true\n"
        "  - metric: acc_norm\n"
        "    aggregation: mean\n"
        "    higher_is_better: true\n"
    )
    with open(os.path.join(task_dir, f"{TASK}.yaml"), "w") as f:
        f.write(text)


def convert_gguf(gguf, folder):
    if os.path.isfile(os.path.join(folder, "config.json")):
        return
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, f = os.path.split(os.path.abspath(gguf))
    tmp = folder + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    AutoTokenizer.from_pretrained(d, gguf_file=f).save_pretrained(tmp)
    AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).save_pretrained(tmp)
    os.replace(tmp, folder)


def digits_tokenizer(src, dest):
    """A copy of the converted folder whose tokenizer.json pre-tokenises as SmolLM2's own
    tokenizer.json (on the Hub) and llama.cpp's `smollm` pre-tokenizer do: every digit isolated,
    then GPT-2's byte-level split. transformers' GGUF conversion (4.57.1) keeps only the
    byte-level step, which splits a run of spaces before a digit differently ("There are  6").
    The weights are linked, not copied."""
    if os.path.isfile(os.path.join(dest, "tokenizer.json")):
        return
    tmp = dest + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name in os.listdir(src):
        if name == "tokenizer.json":
            continue
        os.symlink(os.path.join(src, name), os.path.join(tmp, name))
    tok = json.load(open(os.path.join(src, "tokenizer.json"), encoding="utf-8"))
    assert tok["pre_tokenizer"]["type"] == "ByteLevel", tok["pre_tokenizer"]
    tok["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        ],
    }
    with open(os.path.join(tmp, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    os.replace(tmp, dest)


def timed(cmd, env=None, log=None):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    start = time.perf_counter()
    with open(log, "w") if log else open(os.devnull, "w") as out:
        p = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    secs = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"exit {p.returncode}: {' '.join(cmd)} (log: {log})")
    return secs


def argmax(xs):
    best = 0
    for i, x in enumerate(xs):
        if x > xs[best]:
            best = i
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--race-m", default=ref.RACE_M)
    ap.add_argument("--gguf", default=ref.GGUF)
    ap.add_argument("--limit", type=int, default=None, help="first N documents (articles) only")
    ap.add_argument("--work", default="/tmp/race-eval-harness-parity")
    ap.add_argument("--modes", default="dequantized,dequantize-on-use")
    ap.add_argument("--skip-harness", action="store_true", help="reuse the last harness samples")
    ap.add_argument("--race-eval", default=os.path.join(ROOT, "target", "release", "race-eval"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--tokenizer", choices=["gguf", "digits"], default="gguf",
        help="the harness' tokenizer: transformers' conversion of the GGUF (gguf), or that with "
        "SmolLM2's own Digits + ByteLevel pre-tokenizer (digits), as the Hub's tokenizer.json has",
    )
    args = ap.parse_args()

    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    data_file = os.path.join(work, "data", "test.jsonl")
    os.makedirs(os.path.dirname(data_file), exist_ok=True)
    n_docs, n_questions = write_eleuther_layout(args.race_m, data_file)
    print(f"{data_file}: {n_docs} articles, {n_questions} questions", file=sys.stderr)
    task_dir = os.path.join(work, "tasks")
    write_task_yaml(task_dir, data_file)
    hf_dir = os.path.join(work, "smollm2-f32")
    convert_gguf(args.gguf, hf_dir)
    if args.tokenizer == "digits":
        digits_tokenizer(hf_dir, hf_dir + "-digits")
        hf_dir += "-digits"

    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["OMP_NUM_THREADS"] = str(args.threads)
    limit = ["--limit", str(args.limit)] if args.limit else []
    times = {}
    out_dir = os.path.join(work, "harness")
    if not args.skip_harness:
        shutil.rmtree(out_dir, ignore_errors=True)
        times["lm-evaluation-harness"] = timed(
            [
                os.path.join(os.path.dirname(sys.executable), "lm_eval"),
                "run",
                "--model", "hf",
                "--model_args", f"pretrained={hf_dir},dtype=float32,add_bos_token=False",
                "--tasks", TASK,
                "--include_path", task_dir,
                "--device", "cpu",
                "--batch_size", "1",
                "--log_samples",
                "--output_path", out_dir,
            ]
            + limit,
            env=env,
            log=os.path.join(work, "harness.log"),
        )
    samples = sorted(glob.glob(os.path.join(out_dir, "**", f"samples_{TASK}_*.jsonl"), recursive=True))
    assert samples, f"no harness samples under {out_dir}"
    harness = {}
    for line in open(samples[-1], encoding="utf-8"):
        s = json.loads(line)
        lls = [float(r[0]) for r in s["filtered_resps"]]
        choices = [p for p in ast.literal_eval(s["doc"]["problems"])[-1]["options"]]
        harness[s["doc"]["example_id"]] = {
            "lls": lls,
            "pred": argmax(lls),
            "pred_norm": argmax([ll / len(c) for ll, c in zip(lls, choices)]),
            "acc": s["acc"],
            "acc_norm": s["acc_norm"],
        }
    results_json = sorted(glob.glob(os.path.join(out_dir, "**", "results_*.json"), recursive=True))
    harness_scores = json.load(open(results_json[-1]))["results"][TASK]

    summary = {
        "documents": len(harness),
        "limit": args.limit,
        "harness": {
            "lm_eval": __import__("lm_eval").__version__ if hasattr(__import__("lm_eval"), "__version__") else "",
            "acc": harness_scores.get("acc,none"),
            "acc_norm": harness_scores.get("acc_norm,none"),
        },
        "race_eval": {},
    }
    for mode in [m for m in args.modes.split(",") if m]:
        preds = os.path.join(work, f"predictions-{mode}.jsonl")
        if os.path.exists(preds):
            os.remove(preds)
        times[f"race-eval {mode}"] = timed(
            [
                args.race_eval, "eval",
                "--model", args.gguf,
                "--data", data_file,
                "--protocol", "harness-last",
                "--weights", mode,
                "--predictions", preds,
                "--output-dir", os.path.join(work, "results"),
                "-q",
            ]
            + limit,
            env=env,
            log=os.path.join(work, f"race-eval-{mode}.log"),
        )
        ours = {}
        for line in open(preds, encoding="utf-8"):
            p = json.loads(line)
            ours[p["passage_id"]] = p
        common = sorted(set(ours) & set(harness))
        assert len(common) == len(harness) == len(ours), (len(common), len(harness), len(ours))
        agree = sum(ours[k]["pred"] == harness[k]["pred"] for k in common)
        agree_norm = sum(ours[k]["pred_norm"] == harness[k]["pred_norm"] for k in common)
        deltas = [abs(a - b) for k in common for a, b in zip(ours[k]["logits"], harness[k]["lls"])]
        worst = max(common, key=lambda k: max(abs(a - b) for a, b in zip(ours[k]["logits"], harness[k]["lls"])))
        n = len(common)
        summary["race_eval"][mode] = {
            "acc": sum(ours[k]["pred"] == ours[k]["label"] for k in common) / n,
            "acc_norm": sum(ours[k]["pred_norm"] == ours[k]["label"] for k in common) / n,
            "pred_agree": f"{agree}/{n}",
            "pred_norm_agree": f"{agree_norm}/{n}",
            "max_abs_delta_loglik": max(deltas),
            "mean_abs_delta_loglik": sum(deltas) / len(deltas),
            "worst_document": worst,
            "disagreeing": [k for k in common if ours[k]["pred"] != harness[k]["pred"]],
            "disagreeing_norm": [k for k in common if ours[k]["pred_norm"] != harness[k]["pred_norm"]],
        }
    summary["wall_secs"] = {k: round(v, 1) for k, v in times.items()}
    summary["docs_per_sec"] = {k: round(len(harness) / v, 3) for k, v in times.items()}
    with open(os.path.join(work, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
