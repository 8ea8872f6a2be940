#!/usr/bin/env python3
"""Parity fixtures for the tasks beside RACE: transformers' logits of the tiny ALBERT
(datasets/models/tiny-albert) on the FIRST questions of each task's shared data.

For each task (DREAM, MCTest 160/500, MCScript, ReClor, CosmosQA, QuAIL; their dev split, the
file race-eval reads for `--split dev`) this script reads the release file(s) in ../shared/data
on its own, with its own parsing that follows the rules documented in src/data/tasks/mod.rs
(not race-eval's code):

  * DREAM: the turns joined by "\\n"; the answer is the index of the choice whose text equals
    `answer`; passage id = the dialogue id.
  * MCTest: the story with `\\newline` replaced by "\\n" (and MC500's few `\\tab` by "\\t"); the `one:`/`multiple:` prefix removed
    from the question, which is then stripped; gold letters from the .ans file; passage id =
    the story id (first column).
  * MCScript: the <text> trimmed; the answer marked correct="True"; passage id =
    "instance N".
  * ReClor: context, question, answers, label; passage id = id_string.
  * CosmosQA: context, question, answer0..3, label; passage id = the row's id.
  * QuAIL (dev.xml): the <text_body> trimmed, the question text and the answers trimmed; the
    answer marked correct="True"; passage id = the <text>'s id.

A question's id is "{passage_id}#{k}", k counting the questions of that passage in file order.
Inputs follow ALBERT's RACE rules (scripts/race_inputs.py: qa = question with "_" filled by
the option, else question + " " + option; the qa keeps its last max_qa_len tokens, the context
its head) at max_seq_len 512 / max_qa_len 128 (tiny-albert has 512 positions), tokenised with
datasets/models/tiny-albert/tokenizer.json. Logits: AlbertForMultipleChoice, float32, eval
(eager, cross-checked against sdpa and a padded batch, as make_fixtures.py does).

The data is licensed: the fixtures tests/fixtures/tasks/TASK.json keep no text, only the data
files' sha256 and, per question, id, label, option count, token lengths, ids_sha256 /
types_sha256 per option (sha256 of the ids written as decimals joined by ",") and the logits.

    /work/venv/bin/python scripts/make_task_fixtures.py [--shared DIR]

Default --shared: ../shared beside the checkout. Deterministic.
"""

import argparse
import csv
import json
import os
import xml.etree.ElementTree as ET

import make_fixtures as mf  # sets the deterministic torch / tokenizers settings on import

import torch
import transformers
from tokenizers import Tokenizer

import race_inputs

QUESTIONS = 12
SETTING = {"max_seq_len": 512, "max_qa_len": 128}
assert mf.SETTINGS[0] == SETTING
MODEL = "tiny-albert"
OUT = os.path.join(mf.FIXTURES, "tasks")


# --------------------------------------------------------------------------
# Readers: each yields dicts {passage_id, context, question, options, label} in file order.
# --------------------------------------------------------------------------

def read_dream(path):
    with open(path, encoding="utf-8") as f:
        dialogues = json.load(f)
    for turns, questions, did in dialogues:
        context = "\n".join(turns)
        for q in questions:
            options = list(q["choice"])
            assert options.count(q["answer"]) == 1, (did, q["answer"], options)
            yield {"passage_id": did, "context": context, "question": q["question"], "options": options,
                   "label": options.index(q["answer"])}


def mctest_question(raw):
    for prefix in ("one:", "multiple:"):
        if raw.startswith(prefix):
            return raw[len(prefix):].strip()
    return raw.strip()


def read_mctest(tsv):
    ans = tsv[: -len(".tsv")] + ".ans"
    with open(tsv, encoding="utf-8", newline="") as f:
        stories = [line.rstrip("\r\n") for line in f if line.strip()]
    with open(ans, encoding="utf-8", newline="") as f:
        golds = [line.rstrip("\r\n") for line in f if line.strip()]
    assert len(stories) == len(golds), (tsv, len(stories), len(golds))
    for line, gold in zip(stories, golds):
        cols = line.split("\t")
        assert len(cols) == 23, (tsv, cols[0], len(cols))
        letters = [g.strip() for g in gold.split("\t")]
        assert len(letters) == 4 and all(g in "ABCD" for g in letters), gold
        story = cols[2].replace("\\newline", "\n").replace("\\tab", "\t")
        for k in range(4):
            q = cols[3 + 5 * k: 8 + 5 * k]
            yield {"passage_id": cols[0], "context": story, "question": mctest_question(q[0]),
                   "options": q[1:], "label": "ABCD".index(letters[k])}


def read_mcscript(path):
    root = ET.parse(path).getroot()
    for inst in root.iter("instance"):
        context = (inst.find("text").text or "").strip()
        for q in inst.find("questions").iter("question"):
            answers = q.findall("answer")
            correct = [i for i, a in enumerate(answers) if a.get("correct") == "True"]
            assert len(correct) == 1, (inst.get("id"), q.get("id"))
            yield {"passage_id": f"instance {inst.get('id')}", "context": context, "question": q.get("text"),
                   "options": [a.get("text") for a in answers], "label": correct[0]}


def read_reclor(path):
    with open(path, encoding="utf-8") as f:
        for r in json.load(f):
            yield {"passage_id": r["id_string"], "context": r["context"], "question": r["question"],
                   "options": list(r["answers"]), "label": int(r["label"])}


def read_cosmosqa(path):
    with open(path, encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            yield {"passage_id": r["id"], "context": r["context"], "question": r["question"],
                   "options": [r[f"answer{k}"] for k in range(4)], "label": int(r["label"])}


def read_quail_xml(path):
    root = ET.parse(path).getroot()
    for text in root.iter("text"):
        body = "".join(text.find("text_body").itertext()).strip()
        for q in text.find("questions").iter("q"):
            answers = q.findall("a")
            correct = [i for i, a in enumerate(answers) if a.get("correct") == "True"]
            assert len(correct) == 1, (text.get("id"), q.get("id"))
            yield {"passage_id": text.get("id"), "context": body, "question": (q.text or "").strip(),
                   "options": ["".join(a.itertext()).strip() for a in answers], "label": correct[0]}


# (task, split, files under shared/data (the first is read), reader)
TASKS = [
    ("dream", "dev", ["dream/dev.json"], read_dream),
    ("mctest160", "dev", ["mctest/mc160.dev.tsv", "mctest/mc160.dev.ans"], read_mctest),
    ("mctest500", "dev", ["mctest/mc500.dev.tsv", "mctest/mc500.dev.ans"], read_mctest),
    ("mcscript", "dev", ["mcscript/dev-data.xml"], read_mcscript),
    ("reclor", "dev", ["reclor/val.json"], read_reclor),
    ("cosmosqa", "dev", ["cosmosqa/valid.csv"], read_cosmosqa),
    ("quail", "dev", ["quail/dev.xml"], read_quail_xml),
]


def first_questions(rows, n):
    """The first n rows with their question ids ("{passage_id}#{k}")."""
    seen, out = {}, []
    for r in rows:
        k = seen.get(r["passage_id"], 0)
        seen[r["passage_id"]] = k + 1
        out.append(dict(r, question_index=k, id=f"{r['passage_id']}#{k}"))
        if len(out) == n:
            break
    return out


def write_fixture(task, head, questions):
    lines = ["{"]
    for k, v in head.items():
        lines.append(f" {json.dumps(k)}: {json.dumps(v)},")
    lines.append(' "questions": [')
    for i, q in enumerate(questions):
        lines.append("  " + json.dumps(q, separators=(",", ":")) + ("," if i + 1 < len(questions) else ""))
    lines.append(" ]")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text)["questions"][0]["id"] == questions[0]["id"]
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, f"{task}.json")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", default=os.path.normpath(os.path.join(mf.ROOT, "..", "shared")),
                    help="the shared folder (data/ inside) [default: %(default)s]")
    args = ap.parse_args()

    model_dir = os.path.join(mf.MODELS, MODEL)
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    assert config["max_position_embeddings"] >= SETTING["max_seq_len"], config["max_position_embeddings"]
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    eager, sdpa = mf.load_pair(model_dir)
    weights_sha = race_inputs.file_sha256(os.path.join(model_dir, "model.safetensors"))

    for task, split, files, reader in TASKS:
        paths = [os.path.join(args.shared, "data", f) for f in files]
        qs = first_questions(reader(paths[0]), QUESTIONS)
        assert len(qs) == QUESTIONS, (task, len(qs))
        articles = race_inputs.ArticleCache(tok)
        inputs = []
        for q in qs:
            ids, types = race_inputs.encode_question(tok, articles.get(q["context"]), q["question"], q["options"],
                                                     SETTING["max_seq_len"], SETTING["max_qa_len"])
            inputs.append({"id": q["id"], "label": q["label"], "input_ids": ids, "token_type_ids": types})
        (setting,), _, _ = mf.compute_reference(eager, sdpa, [inputs])
        out = []
        for q, r in zip(qs, setting["questions"]):
            out.append({"id": q["id"], "label": q["label"], "options": len(q["options"]),
                        "lengths": [len(i) for i in r["input_ids"]],
                        "ids_sha256": [race_inputs.ids_sha256(i) for i in r["input_ids"]],
                        "types_sha256": [race_inputs.ids_sha256(t) for t in r["token_type_ids"]],
                        "logits": r["logits"]})
        head = {"task": task, "split": split, "model": f"datasets/models/{MODEL}",
                "weights_sha256": weights_sha,
                "data": [{"file": f"shared/data/{f}", "sha256": race_inputs.file_sha256(p)}
                         for f, p in zip(files, paths)],
                "questions_taken": f"the first {QUESTIONS} questions in file order",
                "max_seq_len": SETTING["max_seq_len"], "max_qa_len": SETTING["max_qa_len"],
                "transformers_version": transformers.__version__, "torch_version": torch.__version__}
        path = write_fixture(task, head, out)
        n_trunc = sum(1 for q in out for n in q["lengths"] if n == SETTING["max_seq_len"])
        print(f"{task}: {len(out)} questions, {os.path.getsize(path)} bytes, "
              f"{n_trunc} option input(s) at max_seq_len, lengths {min(min(q['lengths']) for q in out)}-"
              f"{max(max(q['lengths']) for q in out)}")
    print(f"max |eager - sdpa| = {mf.MAX_DIFF['sdpa']:.2e}, max |unpadded - padded batch| = {mf.MAX_DIFF['padded']:.2e}")


if __name__ == "__main__":
    main()
