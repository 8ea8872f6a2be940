#!/usr/bin/env python3
"""Int8 reference points for race-eval's `--dtype int8`: PyTorch and ONNX Runtime on all-MiniLM-L6-v2.

race-eval's CPU int8 (src/model/quant.rs) quantises the 36 linears of the encoder (query, key,
value, attention output, intermediate, output of each of the 6 layers): weights per output
channel, symmetric, q in [-127, 127] (scale max|w| / 127, rounded half away from zero);
activations per row (token), unsigned with zero point 128 (scale max|x| / 127,
q = trunc(clamp(x / s + 128.5, 1, 255))); exact i32 accumulation. Embeddings, LayerNorm,
the attention products, the pooler and the classifier stay f32.

Model: sentence-transformers/all-MiniLM-L6-v2 as BertForMultipleChoice (float32, eager
attention) with the classifier of tests/fixtures/minilm/head.safetensors, loaded by
make_minilm_reference.load_pair (weights checked by sha256). Inputs: RACE-middle test,
max_seq_len 512, max_qa_len 128, built exactly like race-eval by scripts/race_inputs.py.

Variants (the keys of the output lines):

  f32         transformers' eager float32 (the reference of tests/fixtures/reference).
  torch_int8  torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8):
              PyTorch's stock recipe. NOTE: its defaults differ from race-eval: weights per
              TENSOR (symmetric, [-128, 127]), activations per TENSOR, asymmetric u8 with
              reduce_range (7 bits, fbgemm), and it also quantises the pooler and classifier.
  ort_int8    ONNX Runtime: the f32 model exported to ONNX (torch.onnx.export, TorchScript
              exporter, opset 17, dynamic batch / choices / sequence axes), fused by
              onnxruntime.transformers.optimizer (model_type "bert", 12 heads, hidden 384:
              EmbedLayerNormalization, Attention, BiasGelu, SkipLayerNormalization) and
              quantised by onnxruntime.quantization.quantize_dynamic (QInt8 weights,
              per_channel=True, reduce_range=False, op types --ort-op-types, default
              MatMul,Attention, restricted to the encoder's nodes: exactly race-eval's 36
              linears, as 6 QAttention (fused qkv) + 18 MatMulInteger; EmbedLayerNormalization
              and the pooler / classifier Gemms stay f32; "all": ORT's default op types on
              every node, embeddings, pooler and classifier included). Activations: per
              TENSOR, asymmetric u8 (DynamicQuantizeLinear).
              Null when onnxruntime is not importable. Files under --workdir (/tmp).
  emul_int8   race-eval's own scheme emulated in PyTorch (per-channel weights and per-row
              activations with race-eval's rounding, the integer products exact in f32
              chunks of k <= 1024, then y = b + (s_x s_w) acc): what race-eval should give up
              to f32 rounding elsewhere. --no-emul skips it.

Each option runs unpadded, on its own, as a (1, 1, L) input (make_fixtures.run_logits): the
per-tensor activation scales of torch_int8 / ort_int8 would otherwise see the padding and the
other options. The f32 logits of the first 100 questions are checked against
tests/fixtures/reference/minilm-race-m.json (ids sha256 and logits within 1e-4), and ORT's f32
(exported and optimised) against transformers on the first --check questions (1e-4, unpadded
and padded).

Accuracy (1 thread; writes one JSON line per question to --output: id, question_index, label,
lengths, f32, torch_int8, ort_int8, emul_int8 logits; prints accuracy with 95% Wilson intervals,
argmax agreement with f32, mean / max |logit - f32| of each, and a final JSON summary line):

    python scripts/int8_reference.py --output /tmp/int8ref/minilm-race-m-int8.jsonl [--limit 200]

Timing (run on a quiet machine; prints seconds per question of torch f32, torch dynamic int8,
ORT f32 optimised and ORT int8, best of --repeats):

    python scripts/int8_reference.py --time [--shape 1,4,269] [--threads 2] [--repeats 10] \
        [--race 50] [--attn sdpa]

  fixed shape: B,C,L ids from race-eval bench's generator (bench_hf.lcg_ids, vocab 30522),
      token types 1 from L/2 on, mask all ones; one (B, C, L) call per pass, seconds / B.
  --race N: end to end over the first N questions of --data with their real lengths, each
      question's options padded to that question's longest (one (1, 4, L_q) call each).

Defaults: --model ${RACE_EVAL_CACHE:-~/.cache/race-eval}/models/all-MiniLM-L6-v2, --data
../shared/data/race-m/test.jsonl (beside the checkout; never copied into the repository),
--workdir /tmp/race-eval-int8-ref. Needs onnx and onnxruntime (pip) for the ORT variants.
"""

import argparse
import copy
import json
import math
import os
import sys
import time

import make_fixtures as mf  # sets the deterministic torch / tokenizers settings on import
import make_minilm_reference as mr
from bench_hf import lcg_ids

import numpy as np
import safetensors.torch
import torch
from tokenizers import Tokenizer

import race_inputs

try:
    import onnxruntime as ort
except ImportError:  # the ORT variants are skipped
    ort = None

SETTING = mr.RACE_M_SETTING  # max_seq_len 512, max_qa_len 128
HEAD = os.path.join(mr.MINILM, "head.safetensors")
REFERENCE = os.path.join(mf.REFERENCE, "minilm-race-m.json")
NUM_HEADS, HIDDEN = 12, 384
INPUT_NAMES = ["input_ids", "attention_mask", "token_type_ids"]
VARIANTS = ["f32", "torch_int8", "ort_int8", "emul_int8"]


# --------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------

def load_models(model_dir):
    """(eager, sdpa) f32 BertForMultipleChoice with the fixture head (sha256 checked)."""
    weights = os.path.join(model_dir, "model.safetensors")
    assert os.path.exists(weights), f"{weights} is missing: run scripts/fetch_minilm.sh (or pass --model)"
    assert race_inputs.file_sha256(weights) == mr.WEIGHTS_SHA256, f"{weights}: not all-MiniLM-L6-v2 (sha256)"
    with open(REFERENCE, encoding="utf-8") as f:
        ref = json.load(f)
    assert race_inputs.file_sha256(HEAD) == ref["head_sha256"], f"{HEAD}: not the reference's head"
    return mr.load_pair(model_dir, safetensors.torch.load_file(HEAD)), ref


def torch_int8(model):
    """PyTorch's stock dynamic quantisation (every nn.Linear, default qconfig)."""
    q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    return q.eval()


def encoder_linears(model):
    """(parent module, attribute name) of race-eval's 36 quantised linears."""
    out = []
    for layer in model.bert.encoder.layer:
        for parent, name in ((layer.attention.self, "query"), (layer.attention.self, "key"),
                             (layer.attention.self, "value"), (layer.attention.output, "dense"),
                             (layer.intermediate, "dense"), (layer.output, "dense")):
            assert isinstance(getattr(parent, name), torch.nn.Linear)
            out.append((parent, name))
    return out


def round_half_away(x):
    """Rust's f32::round (half away from zero), exactly (via f64)."""
    x = x.double()
    return (torch.sign(x) * torch.floor(x.abs() + 0.5)).float()


class EmulInt8Linear(torch.nn.Module):
    """An nn.Linear computed with race-eval's int8 scheme (src/model/quant.rs), in f32 torch ops."""

    CHUNK = 1024  # 1024 · 127 · 127 < 2**24: every partial sum of a chunk is an exact f32 integer

    def __init__(self, linear, smooth=None, outliers=None):
        super().__init__()
        w = linear.weight.detach().float().clone()
        # SmoothQuant-style smoothing: x' = x / s per input channel, w' = w * s (exact in f32).
        self.register_buffer("inv_smooth", None if smooth is None else (1.0 / smooth).float())
        if smooth is not None:
            w = w * smooth[None, :].float()
        # Outlier input channels computed in f32: their columns leave the int8 product.
        self.outliers = None if outliers is None or len(outliers) == 0 else torch.as_tensor(outliers)
        if self.outliers is not None:
            self.register_buffer("w_out", w[:, self.outliers].clone())
            w[:, self.outliers] = 0.0
        mx = w.abs().amax(dim=1)
        s = torch.where(mx > 0, mx / 127.0, torch.ones_like(mx))
        self.register_buffer("qw", round_half_away(w / s[:, None]).clamp(-127, 127))  # (n, k), integers
        self.register_buffer("sw", s)
        self.register_buffer("bias", linear.bias.detach().float().clone())

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1]).float()
        extra = 0.0
        if self.outliers is not None:
            extra = x[:, self.outliers] @ self.w_out.T
            x = x.clone()
            x[:, self.outliers] = 0.0
        if self.inv_smooth is not None:
            x = x * self.inv_smooth[None, :]
        mx = x.abs().amax(dim=1)
        sx = torch.where(mx > 0, mx / 127.0, torch.ones_like(mx))
        inv = 1.0 / sx
        qx = torch.trunc(((x * inv[:, None]) + 128.5).clamp(1.0, 255.0)) - 128.0  # q_x - 128, integers
        acc = torch.zeros(x.shape[0], self.qw.shape[0], dtype=torch.float64)
        for k0 in range(0, x.shape[1], self.CHUNK):
            acc += (qx[:, k0:k0 + self.CHUNK] @ self.qw[:, k0:k0 + self.CHUNK].T).double()
        y = self.bias + (sx[:, None] * self.sw[None, :]) * acc.float() + extra
        return y.reshape(*shape[:-1], -1)


def emul_int8(model, calib=None, how="plain", alpha=0.5, ratio=8.0, max_outliers=8):
    """race-eval's scheme; `how`: plain, smooth (SmoothQuant factors from the calibration maxima
    `calib`, one (k,) tensor per linear, migration strength `alpha`) or outlier (input channels
    whose calibrated max exceeds `ratio` x the median channel's, at most `max_outliers`, in f32)."""
    m = copy.deepcopy(model)
    for idx, (parent, name) in enumerate(encoder_linears(m)):
        lin = getattr(parent, name)
        smooth = outliers = None
        if how == "smooth":
            xmax = calib[idx].clamp(min=1e-5)
            wmax = lin.weight.detach().abs().amax(dim=0).clamp(min=1e-5)
            smooth = (xmax.pow(alpha) / wmax.pow(1 - alpha)).clamp(min=1e-5)
        elif how == "outlier":
            xmax = calib[idx]
            order = torch.argsort(xmax, descending=True)[:max_outliers]
            outliers = [int(j) for j in order if xmax[j] > ratio * xmax.median()]
        setattr(parent, name, EmulInt8Linear(lin, smooth=smooth, outliers=outliers))
    return m.eval()


@torch.no_grad()
def calibrate(model, qs):
    """Per input channel max |x| of each of the 36 linears over the questions `qs` (f32 model)."""
    linears = [getattr(p, n) for p, n in encoder_linears(model)]
    maxima = [torch.zeros(l.in_features) for l in linears]

    def hook(i):
        def f(_mod, inp):
            x = inp[0].detach().reshape(-1, inp[0].shape[-1]).abs().amax(dim=0)
            maxima[i] = torch.maximum(maxima[i], x)
        return f
    handles = [l.register_forward_pre_hook(hook(i)) for i, l in enumerate(linears)]
    try:
        for q in qs:
            mf.run_logits(model, q["input_ids"], q["token_type_ids"])
    finally:
        for h in handles:
            h.remove()
    return maxima


class LogitsPooled(torch.nn.Module):
    """BertForMultipleChoice's forward (eval mode: no dropout) returning the logits and the
    pooled [CLS] states (batch, choices, hidden) the classifier reads."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        b, c, l = input_ids.shape
        out = getattr(self.model, self.model.base_model_prefix)(input_ids=input_ids.reshape(b * c, l), attention_mask=attention_mask.reshape(b * c, l),
                              token_type_ids=token_type_ids.reshape(b * c, l))
        pooled = out.pooler_output
        return self.model.classifier(pooled).reshape(b, c), pooled.reshape(b, c, -1)


@torch.no_grad()
def run_pooled(model, ids, types):
    """(logits (4,), pooled [CLS] states (4, hidden)), each option unpadded on its own."""
    logits, pooled = [], []
    for i, t in zip(ids, types):
        out = model.bert(input_ids=torch.tensor([i]), attention_mask=torch.ones(1, len(i), dtype=torch.long),
                         token_type_ids=torch.tensor([t]))
        pooled.append(out.pooler_output[0])
        logits.append(model.classifier(out.pooler_output)[0, 0])
    return torch.stack(logits), torch.stack(pooled)


def pooled_error(p, f):
    """Per option: relative L2 error |p - f| / |f| and cosine(p, f) of pooled states (4, hidden)."""
    p, f = p.double(), f.double()
    rel = (p - f).norm(dim=1) / f.norm(dim=1)
    cos = torch.nn.functional.cosine_similarity(p, f, dim=1)
    return [float(x) for x in rel], [float(x) for x in cos]


def build_onnx(model, workdir, op_types):
    """f32.onnx (export), f32-opt.onnx (optimizer), int8.onnx (quantize_dynamic) under workdir;
    returns their paths and a few notes."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    os.makedirs(workdir, exist_ok=True)
    paths = {k: os.path.join(workdir, f"{k}.onnx") for k in ("f32", "f32-opt", "int8")}
    # Export at a small shape with one padded option, so that the mask path is traced.
    ids = torch.tensor([lcg_ids(4 * 16, model.config.vocab_size)]).reshape(1, 4, 16)
    mask = torch.ones_like(ids)
    mask[0, 1, 12:] = 0
    types = (torch.arange(16) >= 8).long().expand(1, 4, 16).contiguous()
    dyn = {n: {0: "batch", 1: "choices", 2: "sequence"} for n in INPUT_NAMES}
    dyn["logits"] = {0: "batch", 1: "choices"}
    dyn["pooled"] = {0: "batch", 1: "choices"}
    t0 = time.perf_counter()
    with torch.no_grad():
        # The wrapper must be in eval mode: the exporter restores the wrapper's training flag
        # afterwards, recursively, which would leave `model` in training mode (dropout on).
        torch.onnx.export(LogitsPooled(model).eval(), (ids, mask, types), paths["f32"], input_names=INPUT_NAMES,
                          output_names=["logits", "pooled"], dynamic_axes=dyn, opset_version=17, dynamo=False,
                          do_constant_folding=True)
    assert not model.training
    t1 = time.perf_counter()
    cfg = model.config
    opt = optimizer.optimize_model(paths["f32"], model_type="bert", num_heads=cfg.num_attention_heads,
                                   hidden_size=cfg.hidden_size)
    fused = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
    opt.save_model_to_file(paths["f32-opt"])
    t2 = time.perf_counter()
    nodes = None
    if op_types is not None:
        # Only the encoder's linears (race-eval's 36, as 6 fused qkv Attention + 18 MatMul): the
        # quantiser turns the pooler's and classifier's Gemms into MatMuls and would take them too.
        nodes = [n.name for n in opt.model.graph.node if n.op_type in op_types
                 and (n.op_type == "Attention" or "/encoder/" in n.name)
                 # ALBERT: the embedding projection stays f32 (as in race-eval), and where the
                 # optimiser left a layer's attention unfused, its score products too.
                 and "embedding_hidden_mapping_in" not in n.name
                 and not n.name.endswith(("/attention/MatMul", "/attention/MatMul_1"))]
        if op_types == ["MatMul", "Attention"] and cfg.model_type == "bert":
            assert len(nodes) == 4 * cfg.num_hidden_layers, nodes
    quantize_dynamic(paths["f32-opt"], paths["int8"], op_types_to_quantize=op_types, nodes_to_quantize=nodes,
                     per_channel=True,
                     reduce_range=False, weight_type=QuantType.QInt8,
                     # ONNX shape inference cannot type the outputs of the fused contrib ops
                     # (Attention, SkipLayerNormalization, ...): without this, quantize_dynamic fails
                     # with "Unable to find data type for weight_name=...".
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    t3 = time.perf_counter()
    ops = {}
    for n in onnx.load(paths["int8"], load_external_data=False).graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return paths, {"fused": fused, "int8_ops": dict(sorted(ops.items())),
                   "seconds": {"export": t1 - t0, "optimise": t2 - t1, "quantise": t3 - t2}}


def ort_session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------
# running one question
# --------------------------------------------------------------------------

def padded(ids, types, pad_id=0):
    """(1, 4, max L) int64 arrays: ids, mask, token types, right-padded."""
    L = max(len(i) for i in ids)
    a = np.array([[i + [pad_id] * (L - len(i)) for i in ids]], dtype=np.int64)
    m = np.array([[[1] * len(i) + [0] * (L - len(i)) for i in ids]], dtype=np.int64)
    t = np.array([[t + [0] * (L - len(t)) for t in types]], dtype=np.int64)
    return a, m, t


def ort_logits(sess, ids, types):
    """Unpadded: each option on its own as (1, 1, L_j)."""
    return ort_pooled(sess, ids, types)[0]


def ort_pooled(sess, ids, types):
    """(logits (4,), pooled (4, hidden)), each option unpadded on its own as (1, 1, L_j)."""
    logits, pooled = [], []
    for i, t in zip(ids, types):
        a = np.array([[i]], dtype=np.int64)
        feed = {"input_ids": a, "attention_mask": np.ones_like(a), "token_type_ids": np.array([[t]], dtype=np.int64)}
        lo, po = sess.run(["logits", "pooled"], feed)
        logits.append(lo[0, 0])
        pooled.append(po[0, 0])
    return torch.tensor(np.array(logits, dtype=np.float32)), torch.tensor(np.array(pooled, dtype=np.float32))


def ort_logits_padded(sess, ids, types):
    a, m, t = padded(ids, types)
    return torch.from_numpy(sess.run(["logits"], {"input_ids": a, "attention_mask": m, "token_type_ids": t})[0][0])


@torch.inference_mode()
def torch_logits_padded(model, ids, types):
    a, m, t = (torch.from_numpy(x) for x in padded(ids, types))
    return model(input_ids=a, attention_mask=m, token_type_ids=t).logits[0]


# --------------------------------------------------------------------------
# accuracy mode
# --------------------------------------------------------------------------

def read_questions(args, tok):
    rows = race_inputs.read_jsonl(args.data, limit=args.limit)
    (qs,), _ = race_inputs.build_inputs(tok, rows, [SETTING])
    return qs


def check_reference(q, ref_q, logits):
    assert (q["id"], q["question_index"], q["label"]) == (ref_q["id"], ref_q["question_index"], ref_q["label"])
    assert [race_inputs.ids_sha256(i) for i in q["input_ids"]] == ref_q["ids_sha256"], q["id"]
    assert [race_inputs.ids_sha256(t) for t in q["token_type_ids"]] == ref_q["types_sha256"], q["id"]
    d = (logits.double() - torch.tensor(ref_q["logits"], dtype=torch.float64)).abs().max().item()
    assert d < mf.ATOL, (q["id"], logits.tolist(), ref_q["logits"])
    return d


def stats(rows, name):
    have = [r for r in rows if r.get(name) is not None]
    if not have:
        return None
    L = torch.tensor([r[name] for r in have], dtype=torch.float64)
    F = torch.tensor([r["f32"] for r in have], dtype=torch.float64)
    labels = torch.tensor([r["label"] for r in have])
    right = int((L.argmax(dim=1) == labels).sum())
    lo, hi = mr.wilson95(right, len(have))
    d = (L - F).abs()
    # The part of the drift that can change the argmax: logits centred per question.
    dc = ((L - L.mean(dim=1, keepdim=True)) - (F - F.mean(dim=1, keepdim=True))).abs()
    return {"questions": len(have), "correct": right, "accuracy": right / len(have), "wilson95": [lo, hi],
            "argmax_agreement_f32": (L.argmax(dim=1) == F.argmax(dim=1)).double().mean().item(),
            "disagreements": int((L.argmax(dim=1) != F.argmax(dim=1)).sum()),
            "mean_abs_drift": d.mean().item(), "max_abs_drift": d.max().item(),
            "mean_abs_drift_centred": dc.mean().item(), "max_abs_drift_centred": dc.max().item(),
            "mean_logit_std": L.std(dim=1).mean().item()}


def accuracy(args):
    torch.set_num_threads(1)
    (eager, _sdpa), ref = load_models(args.model)
    del _sdpa
    assert race_inputs.file_sha256(args.data) == ref["data_sha256"], f"{args.data}: not the reference's RACE-M test"
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    qs = read_questions(args, tok)
    ref_qs = ref["settings"][0]["questions"]
    print(f"{len(qs)} questions of {args.data}, max_seq_len {SETTING['max_seq_len']}, "
          f"max_qa_len {SETTING['max_qa_len']}", file=sys.stderr)

    models = {"f32": eager}
    if not args.no_torch_int8:
        models["torch_int8"] = torch_int8(eager)
    if not args.no_emul:
        models["emul_int8"] = emul_int8(eager)
    extra = [v for v in args.emul.split(",") if v]
    if extra:
        crows = race_inputs.read_jsonl(args.calib_data, limit=args.calibrate)
        (cqs,), _ = race_inputs.build_inputs(tok, crows, [SETTING])
        t = time.perf_counter()
        maxima = calibrate(eager, cqs)
        print(f"calibrated on {len(cqs)} questions of {args.calib_data} in {time.perf_counter() - t:.0f} s",
              file=sys.stderr)
        for i, mx in enumerate(maxima):
            top = torch.topk(mx, 4)
            print(f"  linear {i:2d}: median channel max {mx.median():.2f}, top {[round(float(v), 1) for v in top.values]}"
                  f" at {top.indices.tolist()}", file=sys.stderr)
        for how in extra:
            models[f"emul_{how}"] = emul_int8(eager, maxima, how, alpha=args.alpha, ratio=args.outlier_ratio,
                                              max_outliers=args.max_outliers)
    sess, notes = None, {}
    if ort is None:
        print("onnxruntime is not importable: ort_int8 skipped", file=sys.stderr)
    else:
        op_types = None if args.ort_op_types == "all" else args.ort_op_types.split(",")
        paths, notes = build_onnx(eager, args.workdir, op_types)
        print(f"ONNX: {paths} fused {notes['fused']} int8 ops {notes['int8_ops']}", file=sys.stderr)
        # ORT f32 must be transformers' f32 before its int8 means anything.
        worst = {}
        for key in ("f32", "f32-opt"):
            s = ort_session(paths[key], 1)
            for q in qs[:args.check]:
                le = mf.run_logits(eager, q["input_ids"], q["token_type_ids"])
                for how, lo in (("unpadded", ort_logits(s, q["input_ids"], q["token_type_ids"])),
                                ("padded", ort_logits_padded(s, q["input_ids"], q["token_type_ids"]))):
                    d = (le - lo).abs().max().item()
                    worst[f"{key} {how}"] = max(worst.get(f"{key} {how}", 0.0), d)
                    assert d < mf.ATOL, (key, how, q["id"], le.tolist(), lo.tolist())
        notes["ort_f32_max_abs_diff"] = worst
        print(f"ORT f32 vs transformers f32 on {min(args.check, len(qs))} questions: max |diff| {worst}", file=sys.stderr)
        sess = ort_session(paths["int8"], 1)

    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    variants = list(dict.fromkeys(["f32", "torch_int8", "ort_int8", *models]))
    rows, ref_worst, started = [], 0.0, time.perf_counter()
    with open(args.output, "w", encoding="utf-8") as f:
        for n, q in enumerate(qs):
            ids, types = q["input_ids"], q["token_type_ids"]
            out = {"id": q["id"], "question_index": q["question_index"], "label": q["label"],
                   "lengths": [len(i) for i in ids]}
            pooled = {}
            for name, m in models.items():
                if name == "torch_int8":  # its pooler and classifier are quantised too
                    out[name] = [float(x) for x in mf.run_logits(m, ids, types)]
                    continue
                lo, pooled[name] = run_pooled(m, ids, types)
                out[name] = [float(x) for x in lo]
            if sess is not None:
                lo, pooled["ort_int8"] = ort_pooled(sess, ids, types)
                out["ort_int8"] = [float(x) for x in lo]
            else:
                out["ort_int8"] = None
            out["pooled_rel_err"], out["pooled_cos"] = {}, {}
            for name, p in pooled.items():
                if name != "f32":
                    out["pooled_rel_err"][name], out["pooled_cos"][name] = pooled_error(p, pooled["f32"])
            if n < len(ref_qs):
                ref_worst = max(ref_worst, check_reference(q, ref_qs[n], torch.tensor(out["f32"])))
            rows.append(out)
            f.write(json.dumps({k: out.get(k) for k in ["id", "question_index", "label", "lengths", *variants,
                                                         "pooled_rel_err", "pooled_cos"]
                                if k in out}, separators=(",", ":")) + "\n")
            if (n + 1) % args.progress == 0:
                print(f"  {n + 1}/{len(qs)} questions, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    elapsed = time.perf_counter() - started

    summary = {"questions": len(rows), "seconds": elapsed, "output": os.path.abspath(args.output),
               "f32_vs_reference_max_abs_diff": ref_worst, "reference_questions_checked": min(len(rows), len(ref_qs)),
               "torch_version": torch.__version__, "onnxruntime_version": ort.__version__ if ort else None,
               "ort_op_types": args.ort_op_types, **notes, "variants": {}}
    print(f"\n{len(rows)} questions in {elapsed:.0f} s (1 thread); f32 matches the committed reference "
          f"(first {summary['reference_questions_checked']}) within {ref_worst:.1e}")
    for name in variants:
        s = stats(rows, name)
        if s is None:
            continue
        rel = [e for r in rows for e in r["pooled_rel_err"].get(name, [])]
        cos = [c for r in rows for c in r["pooled_cos"].get(name, [])]
        if rel:
            s["pooled_rel_err_mean"] = sum(rel) / len(rel)
            s["pooled_rel_err_max"] = max(rel)
            s["pooled_cos_mean"] = sum(cos) / len(cos)
            s["pooled_cos_min"] = min(cos)
        summary["variants"][name] = s
        line = (f"{name:11s} accuracy {s['correct']}/{s['questions']} = {100 * s['accuracy']:.2f}% "
                f"(95% Wilson {100 * s['wilson95'][0]:.1f}-{100 * s['wilson95'][1]:.1f}%), "
                f"mean per-question logit std {s['mean_logit_std']:.3f}")
        if name != "f32":
            line += (f"; argmax agreement with f32 {100 * s['argmax_agreement_f32']:.2f}% "
                     f"({s['disagreements']} differ); |logit - f32| mean {s['mean_abs_drift']:.4f} "
                     f"max {s['max_abs_drift']:.4f} (centred per question: mean "
                     f"{s['mean_abs_drift_centred']:.4f} max {s['max_abs_drift_centred']:.4f})")
            if "pooled_rel_err_mean" in s:
                line += (f"; pooled [CLS] vs f32: relative error mean {s['pooled_rel_err_mean']:.5f} "
                         f"max {s['pooled_rel_err_max']:.5f}, cosine mean {s['pooled_cos_mean']:.6f} "
                         f"min {s['pooled_cos_min']:.6f}")
        print(line)
    print(json.dumps(summary))


# --------------------------------------------------------------------------
# timing mode
# --------------------------------------------------------------------------

def best_of(fn, repeats):
    fn()  # warm-up
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def timing(args):
    torch.set_num_threads(args.threads)
    B, C, L = (int(x) for x in args.shape.split(","))
    if args.arch == "albert-base":
        # race-eval bench's albert-base-v2 shape with random weights (scripts/bench_hf.py).
        from bench_hf import model_for
        eager = model_for("base", "eager", torch.float32)
        sdpa = model_for("base", "sdpa", torch.float32)
        assert args.race == 0, "--race needs the MiniLM"
    else:
        (eager, sdpa), _ = load_models(args.model)
    f32 = sdpa if args.attn == "sdpa" else eager
    runners = {"torch_f32": f32, "torch_int8": torch_int8(f32)}
    runners = {k: v for k, v in runners.items() if k in args.time_variants.split(",")}
    sessions = {}
    if ort is None:
        print("onnxruntime is not importable: ORT skipped", file=sys.stderr)
    else:
        op_types = None if args.ort_op_types == "all" else args.ort_op_types.split(",")
        paths, notes = build_onnx(eager, args.workdir, op_types)
        print(f"ONNX: fused {notes['fused']} int8 ops {notes['int8_ops']}", file=sys.stderr)
        sessions = {k: ort_session(paths[f], args.threads) for k, f in (("ort_f32_opt", "f32-opt"), ("ort_int8", "int8"))
                    if k in args.time_variants.split(",")}

    ids = np.array(lcg_ids(B * C * L, eager.config.vocab_size), dtype=np.int64).reshape(B, C, L)
    types = np.broadcast_to((np.arange(L) >= L // 2).astype(np.int64), (B, C, L)).copy()
    mask = np.ones_like(ids)
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    tfeed = {k: torch.from_numpy(v) for k, v in feed.items()}
    result = {"shape": [B, C, L], "threads": args.threads, "repeats": args.repeats, "attn": args.attn,
              "torch_version": torch.__version__, "onnxruntime_version": ort.__version__ if ort else None,
              "fixed_seconds_per_question": {}}

    def torch_fixed(m):
        def go():
            with torch.inference_mode():
                m(**tfeed).logits.numpy()
        return go

    def ort_fixed(s):
        return lambda: s.run(["logits"], feed)

    fns = {**{k: torch_fixed(m) for k, m in runners.items()}, **{k: ort_fixed(s) for k, s in sessions.items()}}
    print(f"fixed shape {B},{C},{L}, {args.threads} thread(s), best of {args.repeats}:")
    for name, fn in fns.items():
        sec = best_of(fn, args.repeats) / B
        result["fixed_seconds_per_question"][name] = sec
        print(f"  {name:12s} {sec * 1e3:9.2f} ms/question  ({1 / sec:.2f} questions/s)")

    if args.race:
        tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        rows = race_inputs.read_jsonl(args.data, limit=args.race)
        (qs,), _ = race_inputs.build_inputs(tok, rows, [SETTING])
        batches = [padded(q["input_ids"], q["token_type_ids"]) for q in qs]
        real = sum(len(i) for q in qs for i in q["input_ids"])
        padded_tokens = sum(a.size for a, _, _ in batches)
        tb = [{"input_ids": torch.from_numpy(a), "attention_mask": torch.from_numpy(m),
               "token_type_ids": torch.from_numpy(t)} for a, m, t in batches]
        ob = [{"input_ids": a, "attention_mask": m, "token_type_ids": t} for a, m, t in batches]

        def torch_race(m):
            def go():
                with torch.inference_mode():
                    for b in tb:
                        m(**b).logits.numpy()
            return go

        def ort_race(s):
            def go():
                for b in ob:
                    s.run(["logits"], b)
            return go

        fns = {**{k: torch_race(m) for k, m in runners.items()}, **{k: ort_race(s) for k, s in sessions.items()}}
        result["race"] = {"questions": len(qs), "real_tokens": real, "padded_tokens": padded_tokens,
                          "mean_padded_len": padded_tokens / (4 * len(qs)), "seconds_per_question": {}}
        print(f"RACE-M, first {len(qs)} questions, options padded to the question's longest "
              f"(mean {padded_tokens / (4 * len(qs)):.1f} tokens, {100 * real / padded_tokens:.1f}% real), "
              f"best of {args.repeats}:")
        for name, fn in fns.items():
            sec = best_of(fn, args.repeats) / len(qs)
            result["race"]["seconds_per_question"][name] = sec
            print(f"  {name:12s} {sec * 1e3:9.2f} ms/question  ({1 / sec:.2f} questions/s)")
    print(json.dumps(result))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=mr.default_model_dir(), help="all-MiniLM-L6-v2 folder [default: %(default)s]")
    ap.add_argument("--data", default=mr.SHARED_RACE_M, help="RACE-middle test.jsonl [default: %(default)s]")
    ap.add_argument("--workdir", default="/tmp/race-eval-int8-ref", help="ONNX files [default: %(default)s]")
    ap.add_argument("--ort-op-types", default="MatMul,Attention",
                    help="op types ORT quantises, or 'all' for ORT's default set [default: %(default)s]")
    ap.add_argument("--output", help="accuracy mode: JSON lines, one per question")
    ap.add_argument("--limit", type=int, help="accuracy mode: the first N questions only")
    ap.add_argument("--check", type=int, default=20, help="questions on which ORT f32 is checked [default: 20]")
    ap.add_argument("--no-emul", action="store_true", help="skip emul_int8")
    ap.add_argument("--no-torch-int8", action="store_true", help="skip torch_int8")
    ap.add_argument("--emul", default="", help="extra emulated variants, comma-separated: smooth (SmoothQuant "
                    "factors), outlier (outlier input channels in f32), both calibrated on --calibrate questions")
    ap.add_argument("--calib-data", default=os.path.join(os.path.dirname(mr.SHARED_RACE_M), "dev.jsonl"),
                    help="calibration questions for --emul [default: %(default)s]")
    ap.add_argument("--calibrate", type=int, default=256, help="calibration questions [default: 256]")
    ap.add_argument("--alpha", type=float, default=0.5, help="SmoothQuant migration strength [default: 0.5]")
    ap.add_argument("--outlier-ratio", type=float, default=8.0,
                    help="outlier: channel max above this x the median channel max [default: 8]")
    ap.add_argument("--max-outliers", type=int, default=8, help="outlier: at most N channels per linear [default: 8]")
    ap.add_argument("--progress", type=int, default=100, help="progress line every N questions")
    ap.add_argument("--time", action="store_true", help="timing mode instead of accuracy")
    ap.add_argument("--shape", default="1,4,269", help="timing: fixed B,C,L [default: %(default)s]")
    ap.add_argument("--threads", type=int, default=1, help="timing: torch and ORT intra-op threads [default: 1]")
    ap.add_argument("--repeats", type=int, default=10, help="timing: best of N [default: 10]")
    ap.add_argument("--race", type=int, default=0, help="timing: also end to end over the first N questions")
    ap.add_argument("--arch", choices=["minilm", "albert-base"], default="minilm",
                    help="timing: the real MiniLM, or albert-base-v2's shape with random weights (as race-eval "
                    "bench --model albert-base-v2) [default: %(default)s]")
    ap.add_argument("--time-variants", default="torch_f32,torch_int8,ort_f32_opt,ort_int8",
                    help="timing: which to time [default: %(default)s]")
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa",
                    help="timing: transformers attention of torch_f32 / torch_int8 [default: sdpa]")
    args = ap.parse_args()
    if args.time:
        timing(args)
    else:
        if not args.output:
            ap.error("--output is required (accuracy mode)")
        out = os.path.abspath(args.output)
        assert not out.startswith(mf.ROOT + os.sep) or out.startswith(os.path.join(mf.ROOT, "results") + os.sep), \
            "write --output outside the repository (or under results/)"
        accuracy(args)


if __name__ == "__main__":
    main()
