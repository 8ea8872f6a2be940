#!/usr/bin/env python3
"""Record PyTorch's own bfloat16 drift from the float32 reference logits.

The Rust crate can run its models in bf16. Its bf16 logits cannot be held to
the float32 references' 1e-4, but they can be held to "no worse than
PyTorch": this script runs every reference's questions through the same
transformers model in float32 and in bfloat16, on exactly the same inputs,
and writes what PyTorch itself gets in bf16:

  tests/fixtures/reference/bf16/<name>.json
      For tiny-albert, groups-gelu, relu-bin, sharded, tiny-bert,
      tiny-roberta, tiny-xlm-roberta, tiny-distilbert, tiny-electra and
      minilm-sample:
        "model", "torch_version", "transformers_version",
        "settings": per setting of tests/fixtures/reference/<name>.json, its
          "max_seq_len", "max_qa_len" and "logits_bf16": the 4 bf16 logits
          (as float32) of every question, in the reference's order;
        "stats": over all options of all questions of all settings, the
          max and mean of |bf16 logit - recorded float32 logit|
          ("max_abs_drift", "mean_abs_drift"), "argmax_agreement" (the
          fraction of questions whose bf16 argmax is the argmax of the
          recorded float32 logits; torch.argmax takes the first of equal
          logits) and "questions" (their number, all settings together).

Inputs are the reference's own input_ids / token_type_ids, run unpadded one
option at a time (make_fixtures.run_logits; token type ids only where the
forward takes them), eager attention. The float32 run must reproduce the
recorded logits within make_fixtures.ATOL (1e-4) before the model goes to
torch.bfloat16 (model.to(torch.bfloat16); ids and mask unchanged).

Models: datasets/models/<name> (AutoModelForMultipleChoice) for the random
fixtures (make_fixtures.py, make_family_fixtures.py); for minilm-sample,
all-MiniLM-L6-v2 (scripts/fetch_minilm.sh) as BertForMultipleChoice with the
classifier of tests/fixtures/minilm/head.safetensors
(make_minilm_reference.load_pair; weights and head checked by sha256).

Note that the random fixtures' classifiers are scaled up (x20 to x80, then
centred, see make_fixtures.center_classifier_) so that the options of a
question differ visibly in float32; bf16's rounding of the [CLS] state is
scaled up with them, so their bf16 argmax agreement can be low. That is the
point: it is PyTorch's own figure, the bar for the Rust side.

Run after the references exist, with the versions pinned in
scripts/requirements.txt (CPU only):

    python scripts/make_bf16_reference.py [--model DIR] [NAME ...]

--model: the all-MiniLM-L6-v2 folder [default:
${RACE_EVAL_CACHE:-~/.cache/race-eval}/models/all-MiniLM-L6-v2]; NAMEs limit
the run to some references (default: all of the above). Deterministic:
running it twice produces byte-identical files.
"""

import argparse
import json
import os

import make_fixtures as mf  # sets the deterministic torch / tokenizers settings on import
import make_minilm_reference as mr

import safetensors.torch
import torch
import transformers
from transformers import AutoModelForMultipleChoice

import race_inputs

torch.set_num_threads(1)
transformers.utils.logging.disable_progress_bar()  # the sharded checkpoint's "Loading checkpoint shards"

FIXTURES = ["tiny-albert", "groups-gelu", "relu-bin", "sharded", "tiny-bert", "tiny-roberta",
            "tiny-xlm-roberta", "tiny-distilbert", "tiny-electra"]
MINILM = "minilm-sample"
NAMES = FIXTURES + [MINILM]
BF16 = os.path.join(mf.REFERENCE, "bf16")


def read_reference(name):
    with open(os.path.join(mf.REFERENCE, f"{name}.json"), encoding="utf-8") as f:
        return json.load(f)


def load_fixture(name, ref):
    path = os.path.join(mf.MODELS, name)
    m = AutoModelForMultipleChoice.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()
    assert m.config._attn_implementation == "eager"
    if "model_type" in ref:
        assert m.config.model_type == ref["model_type"], (name, m.config.model_type)
    else:  # the ALBERT references do not record it
        assert m.config.model_type == "albert", (name, m.config.model_type)
    return m


def load_minilm(model_dir, ref):
    weights = os.path.join(model_dir, "model.safetensors")
    assert os.path.exists(weights), f"{weights} is missing: run scripts/fetch_minilm.sh (or pass --model)"
    assert race_inputs.file_sha256(weights) == ref["weights_sha256"] == mr.WEIGHTS_SHA256, \
        f"{weights}: not all-MiniLM-L6-v2 (sha256)"
    head_path = os.path.join(mf.ROOT, ref["head"])
    assert race_inputs.file_sha256(head_path) == ref["head_sha256"], f"{head_path}: not the reference's head"
    eager, _ = mr.load_pair(model_dir, safetensors.torch.load_file(head_path))
    return eager


def bf16_logits(model, ref):
    """Per setting, the (questions, 4) float32 logits of the bf16 model; checks float32 first."""
    worst = 0.0
    for s in ref["settings"]:
        for q in s["questions"]:
            le = mf.run_logits(model, q["input_ids"], q["token_type_ids"])
            assert le.dtype == torch.float32
            d = (le.double() - torch.tensor(q["logits"], dtype=torch.float64)).abs().max().item()
            worst = max(worst, d)
            assert d < mf.ATOL, (ref["model"], q["id"], q["question_index"], le.tolist(), q["logits"])
    model.to(torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    out = []
    for s in ref["settings"]:
        rows = []
        for q in s["questions"]:
            lb = mf.run_logits(model, q["input_ids"], q["token_type_ids"])
            assert lb.dtype == torch.bfloat16 and lb.shape == (len(q["input_ids"]),)
            rows.append(lb.float())
        out.append(torch.stack(rows))
    return out, worst


def drift_stats(ref, logits):
    bf = torch.cat(logits).double()
    f32 = torch.tensor([q["logits"] for s in ref["settings"] for q in s["questions"]], dtype=torch.float64)
    assert bf.shape == f32.shape
    d = (bf - f32).abs()
    agree = (bf.argmax(dim=1) == f32.argmax(dim=1)).double().mean().item()
    stats = {"max_abs_drift": d.max().item(), "mean_abs_drift": d.mean().item(),
             "argmax_agreement": agree, "questions": f32.shape[0]}
    # Not written: bf16 logits equal within a question (argmax then takes the first).
    ties = sum(len(set(r.tolist())) < len(r) for r in bf)
    return stats, ties


def write_bf16(name, ref, logits, stats):
    """Compact JSON: one question's 4 logits per line."""
    head = {"model": name, "torch_version": torch.__version__, "transformers_version": transformers.__version__}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f" {json.dumps(k)}: {json.dumps(v)},")
    lines.append(' "settings": [')
    for si, (s, L) in enumerate(zip(ref["settings"], logits)):
        lines.append(f'  {{"max_seq_len": {s["max_seq_len"]}, "max_qa_len": {s["max_qa_len"]}, "logits_bf16": [')
        for qi, row in enumerate(L.tolist()):
            lines.append("   " + json.dumps(row, separators=(",", ":")) + ("," if qi + 1 < len(L) else ""))
        lines.append("  ]}" + ("," if si + 1 < len(logits) else ""))
    lines.append(" ],")
    lines.append(' "stats": ' + json.dumps(stats))
    lines.append("}")
    text = "\n".join(lines) + "\n"
    back = json.loads(text)
    assert [len(s["logits_bf16"]) for s in back["settings"]] == [len(s["questions"]) for s in ref["settings"]]
    assert torch.equal(torch.tensor(back["settings"][0]["logits_bf16"]), logits[0])
    os.makedirs(BF16, exist_ok=True)
    path = os.path.join(BF16, f"{name}.json")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=mr.default_model_dir(),
                    help="all-MiniLM-L6-v2 folder (scripts/fetch_minilm.sh) [default: %(default)s]")
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"references to run [default: all: {' '.join(NAMES)}]")
    args = ap.parse_args()
    names = args.names or NAMES
    unknown = [n for n in names if n not in NAMES]
    assert not unknown, f"unknown references {unknown}; known: {NAMES}"

    print(f"{'model':<18} {'questions':>9} {'max |drift|':>12} {'mean |drift|':>13} {'argmax agree':>13} "
          f"{'ties':>4} {'max |f32 - ref|':>16}")
    for name in names:
        ref = read_reference(name)
        assert ref["model"] == name
        model = load_minilm(args.model, ref) if name == MINILM else load_fixture(name, ref)
        logits, worst = bf16_logits(model, ref)
        stats, ties = drift_stats(ref, logits)
        write_bf16(name, ref, logits, stats)
        print(f"{name:<18} {stats['questions']:>9} {stats['max_abs_drift']:>12.4f} {stats['mean_abs_drift']:>13.4f} "
              f"{stats['argmax_agreement']:>13.3f} {ties:>4} {worst:>16.2e}", flush=True)


if __name__ == "__main__":
    main()
