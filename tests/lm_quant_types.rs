//! GGUF weight types other than Q4_1 on real weights: SmolLM2-135M-Instruct's Q4_1 file
//! (`scripts/fetch_smollm2.sh`) dequantised and quantised again here by candle into Q8_0, Q4_0,
//! Q5_0, Q4_K and Q6_K files (a K-quant needs rows of 256, so tensors whose rows are 576 wide fall
//! back to Q8_0, as llama.cpp's quantiser falls back; the norms stay F32). The files are written
//! deterministically (same bytes on every machine, checked by sha256) into the cache beside the
//! Q4_1 file, and `scripts/lm_reference.py --requant` has transformers read the same files
//! (dequantising each type with gguf-py) and score the reference's own items.
//!
//! Asserted per type: f32 arithmetic (`dequantize-on-use`) within the dequantised tolerance of
//! tests/lm_parity.rs (2e-3 nats), and llama.cpp's arithmetic (`quantized`: candle's kernel for
//! the type, activations quantised to Q8_0/Q8_1/Q8_K) within [`QUANT_TOL`], both printed.
//! Measured here: f32 max |Δ| 6.6e-5 (Q6_K) to 1.0e-4 (Q4_K), so every type's
//! dequantisation is gguf-py's; quantized 0.59 (Q5_0) to 0.74 nats (Q4_K), the 8-bit activations'
//! error that tests/lm_parity.rs describes for Q4_1 (0.54). In the K-quant files only the 30
//! `ffn_down` matrices (rows of 1,536) are Q4_K/Q6_K; SmolLM2's other rows are 576 wide.
//! SKIPPED without the Q4_1 file.

use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;
use race_eval::features::harness::{self, LmDoc};
use race_eval::model::llama::{Llama, WeightMode};
use serde::Deserialize;

/// The quantised arithmetic's largest |Δ| against transformers (f32 on the dequantised file),
/// measured: see the test's output.
const QUANT_TOL: f64 = 0.8;

const TYPES: &[(&str, GgmlDType)] = &[
    ("Q8_0", GgmlDType::Q8_0),
    ("Q4_0", GgmlDType::Q4_0),
    ("Q5_0", GgmlDType::Q5_0),
    ("Q4_K", GgmlDType::Q4K),
    ("Q6_K", GgmlDType::Q6K),
];

#[derive(Deserialize)]
struct Reference {
    own: Vec<OwnCase>,
    #[serde(default)]
    requant: std::collections::BTreeMap<String, Requant>,
}

#[derive(Deserialize)]
struct OwnCase {
    context: String,
    options: Vec<String>,
}

#[derive(Deserialize)]
struct Requant {
    sha256: String,
    /// Per own item, per option.
    logprobs: Vec<Vec<f64>>,
}

fn cache_models() -> PathBuf {
    std::env::var_os("RACE_EVAL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/race-eval")))
        .unwrap_or_default()
        .join("models")
}

/// `SmolLM2-135M-Instruct.requant-<KIND>.gguf` beside the Q4_1 file, written when missing.
fn requantized(q41: &Path, kind: &str, dtype: GgmlDType) -> PathBuf {
    let dest = cache_models().join(format!("SmolLM2-135M-Instruct.requant-{kind}.gguf"));
    if dest.is_file() {
        return dest;
    }
    let mut f = std::fs::File::open(q41).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for name in names {
        let q = content.tensor(&mut f, name, &Device::Cpu).unwrap();
        let dims = q.shape().dims().to_vec();
        let t = if dims.len() == 2 {
            let w = q.dequantize(&Device::Cpu).unwrap();
            let to = if dims[1].is_multiple_of(dtype.block_size()) {
                dtype
            } else {
                GgmlDType::Q8_0
            };
            QTensor::quantize(&w, to).unwrap()
        } else {
            q
        };
        tensors.push((name.clone(), t));
    }
    let mut keys: Vec<&String> = content.metadata.keys().collect();
    keys.sort();
    let metadata: Vec<(&str, &gguf_file::Value)> = keys
        .iter()
        .map(|k| (k.as_str(), &content.metadata[*k]))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let tmp = dest.with_extension("partial");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
    gguf_file::write(&mut out, &metadata, &refs).unwrap();
    drop(out);
    std::fs::rename(&tmp, &dest).unwrap();
    dest
}

#[test]
fn other_gguf_types_match_transformers_on_the_same_files() {
    let q41 = cache_models().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if !q41.is_file() {
        println!("SKIPPED: run scripts/fetch_smollm2.sh to fetch SmolLM2-135M-Instruct.Q4_1.gguf");
        return;
    }
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2/reference.json"),
    )
    .unwrap();
    let r: Reference = serde_json::from_str(&text).unwrap();
    let tok = race_eval::features::gguf_tokenizer::from_gguf(&q41).unwrap();
    let docs: Vec<_> = r
        .own
        .iter()
        .map(|c| {
            harness::encode_doc(
                &tok,
                &LmDoc {
                    question: 0,
                    context: c.context.clone(),
                    continuations: c.options.iter().map(|o| format!(" {o}")).collect(),
                },
            )
            .unwrap()
        })
        .collect();
    // Every file first, so that one run of this test leaves all of them for the reference script.
    let paths: Vec<PathBuf> = TYPES
        .iter()
        .map(|&(kind, dtype)| requantized(&q41, kind, dtype))
        .collect();
    for (&(kind, _), path) in TYPES.iter().zip(&paths) {
        let sha = race_eval::hash::sha256_files(std::slice::from_ref(path)).unwrap();
        let reference = r.requant.get(kind).unwrap_or_else(|| {
            panic!("the reference has no {kind}: run scripts/lm_reference.py --requant (after this test wrote {})", path.display())
        });
        assert_eq!(
            sha,
            reference.sha256,
            "{kind}: {} is not the file the reference scored (delete it to have it written again)",
            path.display()
        );
        let mut worst = [0f64; 2];
        for (slot, mode) in [WeightMode::DequantizeOnUse, WeightMode::Quantized]
            .into_iter()
            .enumerate()
        {
            let model = Llama::from_gguf(path, mode, &Device::Cpu).unwrap();
            for (ids, want) in docs.iter().zip(&reference.logprobs) {
                let cache = model.prompt(&ids.context).unwrap();
                let got = model
                    .continuation_logprobs(&cache, &ids.continuations)
                    .unwrap();
                for (t, w) in got.iter().zip(want) {
                    let sum: f64 = t.iter().map(|&v| v as f64).sum();
                    worst[slot] = worst[slot].max((sum - w).abs());
                }
            }
        }
        println!(
            "{kind}: f32 max |Δ| {:.2e}; quantized max |Δ| {:.3}",
            worst[0], worst[1]
        );
        assert!(worst[0] < 2e-3, "{kind}: {}", worst[0]);
        assert!(worst[1] < QUANT_TOL, "{kind}: {}", worst[1]);
    }
}
