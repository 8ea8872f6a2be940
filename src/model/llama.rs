//! A Llama-architecture decoder (SmolLM2, TinyLlama, Llama 2/3 without rope scaling; Qwen2, which
//! adds biases to the query, key and value projections) read from a GGUF file, as llama.cpp runs
//! it, or from a transformers folder (`config.json` + safetensors, [`Llama::from_safetensors`]): token embedding, `block_count` pre-norm layers of RMSNorm →
//! grouped-query self-attention with rotary positions → residual, RMSNorm → SwiGLU MLP
//! (`down(silu(gate(x)) * up(x))`) → residual, a final RMSNorm and the output projection (the
//! token embedding itself when the file has no `output.weight`: tied embeddings).
//!
//! Weights stay in the file's own quantisation (Q4_0, Q4_1, Q8_0, K-quants, …). By default
//! ([`WeightMode::DequantizeOnUse`]) each linear dequantises its weight a panel of rows at a
//! time as it multiplies, in f32 (`src/model/dequant.rs`): the arithmetic transformers runs on
//! a GGUF file (what lm-evaluation-harness computes), at about the file's size in memory.
//! [`WeightMode::Dequantized`] dequantises every weight once at load (the same products, more
//! memory). [`WeightMode::Quantized`] runs candle's [`QMatMul`], which on the CPU quantises its
//! input rows to the weight type's activation format (Q8_1 for Q4_1, Q8_0 for Q8_0, Q8_K for
//! K-quants) and multiplies in integers, as llama.cpp does.
//!
//! Rotary positions: llama.cpp's converter permutes the rows of `attn_q` and `attn_k` so that
//! each head's rotated pairs are adjacent, (0,1), (2,3), …; with those weights the interleaved
//! rotation ([`candle_nn::rotary_emb::rope_i`]) gives exactly what transformers' rotate-half
//! gives on the unpermuted weights. Angles: position × `rope.freq_base`^(−2i/d), in f32 as
//! transformers computes them.
//!
//! A transformers checkpoint keeps q and k unpermuted, so it takes the rotate-half rotation
//! ([`candle_nn::rotary_emb::rope`]) instead ([`LlamaConfig::rope_interleaved`] says which).
//!
//! Scoring reuses work: [`Llama::prompt`] runs a prompt once and keeps its keys and values
//! ([`KvCache`]); [`Llama::continuation_logprobs`] runs every continuation of that prompt as one
//! batch over the cached prompt and returns the log-probability of each continuation token. The
//! output layer runs a block of vocabulary rows at a time and the log-softmax is a running
//! log-sum-exp over the blocks, so no (tokens × vocabulary) logits are held.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{CpuStorage, DType, Device, IndexOp, Layout, Module, Storage, Tensor, D};

use super::dequant;

/// How the weights are held and multiplied.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum WeightMode {
    /// In the file's quantisation, multiplied by candle's quantised kernels, which quantise the
    /// activations too (Q8_1 for Q4_1): llama.cpp's arithmetic. candle 0.11 has no fast CPU
    /// kernel for every type (Q4_1 runs at a fraction of the f32 GEMM's speed here).
    Quantized,
    /// In the file's quantisation in memory; each linear dequantises its weight to f32 a panel
    /// of rows at a time as it multiplies, in f32: transformers' arithmetic on a GGUF file
    /// (what lm-evaluation-harness computes), at about the file's size in memory.
    DequantizeOnUse,
    /// Dequantised to f32 once at load: the same products as `dequantize-on-use`, bit for bit,
    /// with 4 bytes per weight resident.
    Dequantized,
}

impl WeightMode {
    pub fn name(self) -> &'static str {
        match self {
            WeightMode::Quantized => "quantized",
            WeightMode::DequantizeOnUse => "dequantize-on-use",
            WeightMode::Dequantized => "dequantized",
        }
    }
}

/// A linear layer's weight (`(out, in)`), multiplied as its [`WeightMode`] says.
enum Linear {
    /// candle's quantised kernels ([`WeightMode::Quantized`]).
    Q(QMatMul),
    /// An f32 weight: dequantised at load, f32 or f16 in the file, or a transformers checkpoint.
    Dense(Tensor),
    /// Dequantised a panel of rows at a time as it is multiplied ([`dequant::matmul_t`]).
    OnUse(Arc<QTensor>),
    /// Blocks of output rows, each multiplied as the others and the outputs joined: the output
    /// layer, read from the file a block of rows at a time (so that its rows' log-sum-exp can
    /// run a block at a time, [`Llama::target_logprobs`]).
    Rows(Vec<Linear>),
}

/// Prompt tokens run at a time by [`Llama::prompt`].
const PROMPT_CHUNK: usize = 256;

/// Rows per block of the token embedding and output layer (a dequantised block of SmolLM2's,
/// 1024 × 576 floats, is 2.4 MB).
const HEAD_ROWS: usize = 1024;

/// GGUF tensor `name` (`shape`: rows × columns) read from `file` in blocks of [`HEAD_ROWS`]
/// rows, each its own quantised tensor: only one block's bytes are read at a time.
fn read_row_blocks(
    content: &gguf_file::Content,
    file: &mut std::fs::File,
    name: &str,
    shape: [usize; 2],
    device: &Device,
) -> Result<Vec<Arc<QTensor>>> {
    use std::io::{Read, Seek, SeekFrom};
    let info = content
        .tensor_infos
        .get(name)
        .context("no such tensor in the file")?;
    if info.shape.dims() != shape {
        bail!("shape {:?}, expected {shape:?}", info.shape.dims());
    }
    let [n, cols] = shape;
    let dt = info.ggml_dtype;
    if cols % dt.block_size() != 0 {
        bail!("a row of {cols} values is not a whole number of {dt:?} blocks");
    }
    let row_bytes = cols / dt.block_size() * dt.type_size();
    let start = content.tensor_data_offset + info.offset;
    (0..n)
        .step_by(HEAD_ROWS)
        .map(|r0| {
            let r1 = (r0 + HEAD_ROWS).min(n);
            let mut bytes = vec![0u8; (r1 - r0) * row_bytes];
            file.seek(SeekFrom::Start(start + (r0 * row_bytes) as u64))?;
            file.read_exact(&mut bytes)?;
            let storage = candle_core::quantized::QStorage::from_data(
                std::borrow::Cow::Owned(bytes),
                device,
                dt,
            )?;
            Ok(Arc::new(QTensor::new(storage, (r1 - r0, cols))?))
        })
        .collect()
}

/// `q`'s rows in blocks of `rows` rows, each its own quantised tensor (the bytes copied).
#[cfg(test)]
fn split_rows(q: &QTensor, rows: usize, device: &Device) -> Result<Vec<Arc<QTensor>>> {
    let (n, cols) = q.shape().dims2()?;
    let dt = q.dtype();
    if cols % dt.block_size() != 0 {
        bail!("a row of {cols} values is not a whole number of {dt:?} blocks");
    }
    let row_bytes = cols / dt.block_size() * dt.type_size();
    let data = q.data()?;
    if data.len() != n * row_bytes {
        bail!(
            "{dt:?} tensor of {n} x {cols}: {} bytes, expected {}",
            data.len(),
            n * row_bytes
        );
    }
    (0..n)
        .step_by(rows)
        .map(|r0| {
            let r1 = (r0 + rows).min(n);
            let bytes = std::borrow::Cow::Borrowed(&data[r0 * row_bytes..r1 * row_bytes]);
            let storage = candle_core::quantized::QStorage::from_data(bytes, device, dt)?;
            Ok(Arc::new(QTensor::new(storage, (r1 - r0, cols))?))
        })
        .collect()
}

impl Linear {
    fn new(q: Arc<QTensor>, mode: WeightMode, device: &Device) -> Result<Self> {
        Ok(match (mode, q.dtype()) {
            (_, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
            | (WeightMode::Dequantized, _) => Linear::Dense(q.dequantize(device)?),
            (WeightMode::Quantized, _) => Linear::Q(QMatMul::from_arc(q)?),
            (WeightMode::DequantizeOnUse, _) => Linear::OnUse(q),
        })
    }

    /// The blocks of an output layer (itself when it is not split).
    fn blocks(&self) -> &[Linear] {
        match self {
            Linear::Rows(b) => b,
            one => std::slice::from_ref(one),
        }
    }

    /// `x · Wᵀ` for `x` of shape `(…, in)`. f32 on the CPU takes [`dequant::matmul_t`] (f32
    /// and quantised weights alike: the same panels and GEMM calls, so the same bits); other
    /// devices take candle's matmul.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = match self {
            Linear::Q(m) => return Ok(m.forward(x)?),
            Linear::Rows(blocks) => {
                let parts = blocks
                    .iter()
                    .map(|b| b.forward(x))
                    .collect::<Result<Vec<_>>>()?;
                return Ok(Tensor::cat(&parts, D::Minus1)?);
            }
            Linear::Dense(w) => w,
            Linear::OnUse(q) if !x.device().is_cpu() => {
                let w = q.dequantize(x.device())?;
                return Ok(x.broadcast_matmul(&w.t()?)?);
            }
            Linear::OnUse(q) => {
                let data = q.data()?;
                let (n, k) = q.shape().dims2()?;
                let rows = dequant::WeightRows::Ggml {
                    data: &data,
                    dtype: q.dtype(),
                };
                return cpu_matmul_t(x, rows, n, k);
            }
        };
        if !x.device().is_cpu() || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
            return Ok(x.broadcast_matmul(&w.t()?)?);
        }
        let (n, k) = w.dims2()?;
        let w = w.contiguous()?;
        let (storage, layout) = w.storage_and_layout();
        cpu_matmul_t(
            x,
            dequant::WeightRows::F32(f32_slice(&storage, layout)?),
            n,
            k,
        )
    }
}

/// The f32 values of a contiguous CPU tensor's storage.
fn f32_slice<'s>(storage: &'s Storage, layout: &Layout) -> Result<&'s [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) => Ok(&data[start..end]),
        _ => bail!("internal: expected a contiguous f32 tensor on the CPU"),
    }
}

/// `x · Wᵀ` on the CPU in f32 for `x` of shape `(…, k)` and `W` of `n` rows of `k` values.
fn cpu_matmul_t(x: &Tensor, w: dequant::WeightRows, n: usize, k: usize) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    if dims.last() != Some(&k) {
        bail!("internal: input of shape {dims:?} for a weight of {k} columns");
    }
    let x = x.to_dtype(DType::F32)?.contiguous()?;
    let m = x.elem_count() / k.max(1);
    let mut out = vec![0f32; m * n];
    {
        let (storage, layout) = x.storage_and_layout();
        dequant::matmul_t(f32_slice(&storage, layout)?, m, k, w, n, &mut out)?;
    }
    *dims.last_mut().unwrap() = n;
    Ok(Tensor::from_vec(out, dims, x.device())?)
}

/// The architecture's hyperparameters, from the GGUF metadata (`{arch}.*` keys).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub architecture: String,
    pub n_layer: usize,
    pub hidden: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    /// Width of one head (`n_head × head_dim` need not be `hidden` in a transformers config).
    pub head_dim: usize,
    pub ffn: usize,
    pub rms_eps: f64,
    pub rope_theta: f32,
    /// `{arch}.context_length`: the longest sequence the model was trained on.
    pub context_length: usize,
    pub vocab_size: usize,
    /// The weight type of most tensors (e.g. `Q4_1`), for records.
    pub weight_type: String,
    /// Rotated pairs adjacent (llama.cpp's permuted q and k weights in GGUF files) rather than
    /// half a head apart (transformers' rotate-half on its own checkpoints).
    pub rope_interleaved: bool,
    /// The output layer is the token embedding.
    pub tied_embeddings: bool,
}

/// `config.json` keys read for a transformers Llama or Qwen2 checkpoint.
#[derive(Debug, serde::Deserialize)]
struct HfConfig {
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    intermediate_size: usize,
    rms_norm_eps: f64,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    max_position_embeddings: usize,
    vocab_size: usize,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    mlp_bias: Option<bool>,
    #[serde(default)]
    use_sliding_window: Option<bool>,
    #[serde(default)]
    torch_dtype: Option<String>,
    #[serde(default)]
    dtype: Option<String>,
}

/// The decoder families read from transformers folders, by `config.json`'s `model_type` (or
/// its `architectures`): `llama` or `qwen2`; `None` for anything else.
pub fn hf_family(config: &serde_json::Value) -> Option<&'static str> {
    let by_type = match config.get("model_type").and_then(|v| v.as_str()) {
        Some("llama") => Some("llama"),
        Some("qwen2") => Some("qwen2"),
        _ => None,
    };
    by_type.or_else(|| {
        let archs = config.get("architectures")?.as_array()?;
        archs.iter().find_map(|a| match a.as_str()? {
            "LlamaForCausalLM" => Some("llama"),
            "Qwen2ForCausalLM" => Some("qwen2"),
            _ => None,
        })
    })
}

fn meta<'a>(c: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value> {
    c.metadata
        .get(key)
        .with_context(|| format!("the GGUF metadata has no `{key}`"))
}

fn meta_usize(c: &gguf_file::Content, key: &str) -> Result<usize> {
    let v = meta(c, key)?;
    let n = match v {
        gguf_file::Value::U8(x) => *x as u64,
        gguf_file::Value::U16(x) => *x as u64,
        gguf_file::Value::U32(x) => *x as u64,
        gguf_file::Value::U64(x) => *x,
        gguf_file::Value::I32(x) if *x >= 0 => *x as u64,
        gguf_file::Value::I64(x) if *x >= 0 => *x as u64,
        other => bail!("GGUF metadata `{key}`: expected a count, found {other:?}"),
    };
    Ok(n as usize)
}

impl LlamaConfig {
    pub fn from_gguf(c: &gguf_file::Content) -> Result<Self> {
        let arch = meta(c, "general.architecture")?
            .to_string()
            .map_err(anyhow::Error::msg)?
            .clone();
        if arch != "llama" {
            bail!(
                "GGUF architecture `{arch}`: only `llama` (Llama, SmolLM2, TinyLlama) is supported"
            );
        }
        let k = |s: &str| format!("{arch}.{s}");
        for unsupported in ["rope.scaling.type", "expert_count"] {
            if let Some(v) = c.metadata.get(&k(unsupported)) {
                let none = matches!(v, gguf_file::Value::String(s) if s == "none")
                    || matches!(v, gguf_file::Value::U32(0));
                if !none {
                    bail!("GGUF `{}` = {v:?} is not supported", k(unsupported));
                }
            }
        }
        let hidden = meta_usize(c, &k("embedding_length"))?;
        let n_head = meta_usize(c, &k("attention.head_count"))?;
        let n_kv_head = match c.metadata.get(&k("attention.head_count_kv")) {
            Some(_) => meta_usize(c, &k("attention.head_count_kv"))?,
            None => n_head,
        };
        if n_head == 0 || hidden % n_head != 0 || n_kv_head == 0 || n_head % n_kv_head != 0 {
            bail!("GGUF: {n_head} heads and {n_kv_head} key/value heads do not divide a width of {hidden}");
        }
        let head_dim = hidden / n_head;
        if c.metadata.contains_key(&k("rope.dimension_count")) {
            let d = meta_usize(c, &k("rope.dimension_count"))?;
            if d != head_dim {
                bail!("GGUF `{}` = {d}: partial rotary embeddings (head size {head_dim}) are not supported", k("rope.dimension_count"));
            }
        }
        let rope_theta = match c.metadata.get(&k("rope.freq_base")) {
            Some(v) => v.to_f32().map_err(anyhow::Error::msg)?,
            None => 10_000.0,
        };
        let rms_eps = meta(c, &k("attention.layer_norm_rms_epsilon"))?
            .to_f32()
            .map_err(anyhow::Error::msg)? as f64;
        let embd = c
            .tensor_infos
            .get("token_embd.weight")
            .context("the GGUF file has no `token_embd.weight`")?;
        let vocab_size = embd.shape.dims()[0];
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for t in c.tensor_infos.values() {
            *counts.entry(format!("{:?}", t.ggml_dtype)).or_default() += 1;
        }
        let weight_type = counts
            .into_iter()
            .filter(|(t, _)| t != "F32")
            .max_by_key(|(_, n)| *n)
            .map(|(t, _)| t)
            .unwrap_or_else(|| "F32".into());
        Ok(Self {
            architecture: arch.clone(),
            n_layer: meta_usize(c, &k("block_count"))?,
            hidden,
            n_head,
            n_kv_head,
            head_dim,
            ffn: meta_usize(c, &k("feed_forward_length"))?,
            rms_eps,
            rope_theta,
            context_length: meta_usize(c, &k("context_length"))?,
            vocab_size,
            weight_type,
            rope_interleaved: true,
            tied_embeddings: !c.tensor_infos.contains_key("output.weight"),
        })
    }

    /// From a transformers `config.json` (`model_type` `llama` or `qwen2`).
    pub fn from_hf_json(json: &serde_json::Value) -> Result<Self> {
        let family = hf_family(json).context(
            "config.json: not a Llama or Qwen2 decoder (model_type `llama`/`qwen2`, or LlamaForCausalLM/Qwen2ForCausalLM)",
        )?;
        let c: HfConfig = serde_json::from_value(json.clone()).context("config.json")?;
        if let Some(act) = c.hidden_act.as_deref() {
            if act != "silu" {
                bail!("config.json: hidden_act `{act}` is not supported (only silu)");
            }
        }
        if c.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            bail!("config.json: rope_scaling is not supported");
        }
        if c.mlp_bias == Some(true) {
            bail!("config.json: mlp_bias is not supported");
        }
        if c.use_sliding_window == Some(true) {
            bail!("config.json: use_sliding_window is not supported");
        }
        if family == "llama" && c.attention_bias == Some(true) {
            bail!("config.json: attention_bias is not supported for llama");
        }
        let n_kv_head = c.num_key_value_heads.unwrap_or(c.num_attention_heads);
        if c.num_attention_heads == 0
            || n_kv_head == 0
            || !c.num_attention_heads.is_multiple_of(n_kv_head)
        {
            bail!(
                "config.json: {} heads and {n_kv_head} key/value heads",
                c.num_attention_heads
            );
        }
        let head_dim = match c.head_dim {
            Some(d) => d,
            None if c.hidden_size.is_multiple_of(c.num_attention_heads) => {
                c.hidden_size / c.num_attention_heads
            }
            None => bail!(
                "config.json: {} heads do not divide a width of {}",
                c.num_attention_heads,
                c.hidden_size
            ),
        };
        if !head_dim.is_multiple_of(2) {
            bail!("config.json: an odd head size ({head_dim}) cannot be rotated");
        }
        Ok(Self {
            architecture: family.to_string(),
            n_layer: c.num_hidden_layers,
            hidden: c.hidden_size,
            n_head: c.num_attention_heads,
            n_kv_head,
            head_dim,
            ffn: c.intermediate_size,
            rms_eps: c.rms_norm_eps,
            rope_theta: c.rope_theta.unwrap_or(10_000.0) as f32,
            context_length: c.max_position_embeddings,
            vocab_size: c.vocab_size,
            weight_type: c
                .dtype
                .or(c.torch_dtype)
                .unwrap_or_else(|| "float32".into()),
            rope_interleaved: false,
            // transformers' LlamaConfig and Qwen2Config default to untied.
            tied_embeddings: c.tie_word_embeddings.unwrap_or(false),
        })
    }
}

struct Layer {
    attn_norm: Tensor,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    /// Query, key and value biases (Qwen2).
    bias: Option<[Tensor; 3]>,
    ffn_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// The keys and values of a run prompt, per layer: `(1, n_kv_head, len, head_dim)` each.
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
    /// The prompt's last hidden state after the final norm, `(hidden,)`: it predicts the first
    /// token of every continuation.
    last: Tensor,
}

impl KvCache {
    /// Tokens in the cached prompt.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The token embedding: quantised in blocks of [`HEAD_ROWS`] rows (rows dequantised as they are
/// looked up), or an f32 table.
enum Embedding {
    Blocks(Vec<Arc<QTensor>>),
    Dense(Tensor),
}

/// A Llama decoder loaded from a GGUF file or a transformers folder.
pub struct Llama {
    pub config: LlamaConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: Tensor,
    /// The output layer in blocks of [`HEAD_ROWS`] vocabulary rows.
    head: Linear,
    /// cos and sin of every position's angles, `(context_length, head_dim / 2)`.
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

impl Llama {
    /// Reads a GGUF file (`general.architecture = llama`).
    pub fn from_gguf(path: &Path, mode: WeightMode, device: &Device) -> Result<Self> {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut content = gguf_file::Content::read(&mut file)
            .with_context(|| format!("{}: not a GGUF file", path.display()))?;
        let config =
            LlamaConfig::from_gguf(&content).with_context(|| format!("{}", path.display()))?;
        // The metadata (the tokenizer's vocabulary and merges: tens of MB as GGUF values) is
        // not needed to read the tensors.
        content.metadata = Default::default();
        let mut read = |name: &str| -> Result<QTensor> {
            content
                .tensor(&mut file, name, device)
                .with_context(|| format!("{}: tensor `{name}`", path.display()))
        };
        let mut vector = |name: &str, n: usize| -> Result<Tensor> {
            let t = read(name)?.dequantize(device)?;
            if t.dims() != [n] {
                bail!(
                    "{}: `{name}` has shape {:?}, expected [{n}]",
                    path.display(),
                    t.dims()
                );
            }
            Ok(t)
        };
        let norm = vector("output_norm.weight", config.hidden)?;
        let mut layers_norms = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            layers_norms.push((
                vector(&format!("blk.{i}.attn_norm.weight"), config.hidden)?,
                vector(&format!("blk.{i}.ffn_norm.weight"), config.hidden)?,
            ));
        }
        let matmul = |q: QTensor, name: &str, out: usize, inp: usize| -> Result<Linear> {
            // GGUF dims are (out, in) in candle's order.
            if q.shape().dims() != [out, inp] {
                bail!(
                    "{}: `{name}` has shape {:?}, expected [{out}, {inp}]",
                    path.display(),
                    q.shape().dims()
                );
            }
            Linear::new(Arc::new(q), mode, device)
        };
        let (h, kv) = (config.hidden, config.n_kv_head * config.head_dim);
        let mut layers = Vec::with_capacity(config.n_layer);
        for (i, (attn_norm, ffn_norm)) in layers_norms.into_iter().enumerate() {
            let mut w = |suffix: &str, out: usize, inp: usize| -> Result<Linear> {
                let name = format!("blk.{i}.{suffix}.weight");
                let q = content
                    .tensor(&mut file, &name, device)
                    .with_context(|| format!("{}: tensor `{name}`", path.display()))?;
                matmul(q, &name, out, inp)
            };
            layers.push(Layer {
                attn_norm,
                wq: w("attn_q", h, h)?,
                wk: w("attn_k", kv, h)?,
                wv: w("attn_v", kv, h)?,
                wo: w("attn_output", h, h)?,
                bias: None,
                ffn_norm,
                gate: w("ffn_gate", config.ffn, h)?,
                up: w("ffn_up", config.ffn, h)?,
                down: w("ffn_down", h, config.ffn)?,
            });
        }
        // The embedding is read from the file in blocks of rows (the output layer too when
        // untied), so that no copy of the whole table is ever held beside the blocks.
        let mut blocks = |name: &str| -> Result<Vec<Arc<QTensor>>> {
            read_row_blocks(&content, &mut file, name, [config.vocab_size, h], device)
                .with_context(|| format!("{}: tensor `{name}`", path.display()))
        };
        let embed_blocks = blocks("token_embd.weight")?;
        let head_blocks = if content.tensor_infos.contains_key("output.weight") {
            blocks("output.weight")?
        } else {
            embed_blocks.clone()
        };
        let head = Linear::Rows(
            head_blocks
                .into_iter()
                .map(|b| Linear::new(b, mode, device))
                .collect::<Result<_>>()?,
        );
        let (cos, sin) = rope_tables(&config, device)?;
        Ok(Self {
            config,
            embed: Embedding::Blocks(embed_blocks),
            layers,
            norm,
            head,
            cos,
            sin,
            device: device.clone(),
        })
    }

    /// Reads a transformers checkpoint: `config` from its `config.json`, the weights from
    /// `files` (safetensors; names `model.*` and `lm_head.weight`, or without the `model.`
    /// prefix), every weight converted to f32.
    pub fn from_safetensors(
        config: LlamaConfig,
        files: &[std::path::PathBuf],
        device: &Device,
    ) -> Result<Self> {
        // SAFETY: the files are mapped read-only and not modified while mapped (as candle's
        // own loaders assume).
        let st = unsafe { candle_core::safetensors::MmapedSafetensors::multi(files)? };
        let prefix = if st.get("model.embed_tokens.weight").is_ok() {
            "model."
        } else {
            ""
        };
        let get = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = st
                .load(name, device)
                .with_context(|| format!("checkpoint tensor `{name}`"))?
                .to_dtype(DType::F32)?;
            if t.dims() != shape {
                bail!("`{name}` has shape {:?}, expected {shape:?}", t.dims());
            }
            Ok(t)
        };
        let c = &config;
        let (h, q_dim, kv) = (c.hidden, c.n_head * c.head_dim, c.n_kv_head * c.head_dim);
        let lin = Linear::Dense;
        let mut layers = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let p = format!("{prefix}layers.{i}.");
            let bias = if c.architecture == "qwen2" {
                Some([
                    get(&format!("{p}self_attn.q_proj.bias"), &[q_dim])?,
                    get(&format!("{p}self_attn.k_proj.bias"), &[kv])?,
                    get(&format!("{p}self_attn.v_proj.bias"), &[kv])?,
                ])
            } else {
                None
            };
            layers.push(Layer {
                attn_norm: get(&format!("{p}input_layernorm.weight"), &[h])?,
                wq: lin(get(&format!("{p}self_attn.q_proj.weight"), &[q_dim, h])?),
                wk: lin(get(&format!("{p}self_attn.k_proj.weight"), &[kv, h])?),
                wv: lin(get(&format!("{p}self_attn.v_proj.weight"), &[kv, h])?),
                wo: lin(get(&format!("{p}self_attn.o_proj.weight"), &[h, q_dim])?),
                bias,
                ffn_norm: get(&format!("{p}post_attention_layernorm.weight"), &[h])?,
                gate: lin(get(&format!("{p}mlp.gate_proj.weight"), &[c.ffn, h])?),
                up: lin(get(&format!("{p}mlp.up_proj.weight"), &[c.ffn, h])?),
                down: lin(get(&format!("{p}mlp.down_proj.weight"), &[h, c.ffn])?),
            });
        }
        let embed = get(&format!("{prefix}embed_tokens.weight"), &[c.vocab_size, h])?;
        let head = if c.tied_embeddings {
            embed.clone()
        } else {
            get("lm_head.weight", &[c.vocab_size, h])?
        };
        let head = Linear::Rows(
            (0..c.vocab_size)
                .step_by(HEAD_ROWS)
                .map(|r0| {
                    let n = HEAD_ROWS.min(c.vocab_size - r0);
                    Ok(lin(head.narrow(0, r0, n)?))
                })
                .collect::<Result<_>>()?,
        );
        let norm = get(&format!("{prefix}norm.weight"), &[h])?;
        let (cos, sin) = rope_tables(&config, device)?;
        Ok(Self {
            config,
            embed: Embedding::Dense(embed),
            layers,
            norm,
            head,
            cos,
            sin,
            device: device.clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The embedding rows of `ids` (`(batch, len)` → `(batch, len, hidden)`), read from the
    /// blocks that hold them.
    fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let flat: Vec<u32> = ids.flatten_all()?.to_vec1()?;
        let blocks = match &self.embed {
            Embedding::Dense(t) => {
                if let Some(&id) = flat
                    .iter()
                    .find(|&&id| id as usize >= self.config.vocab_size)
                {
                    bail!("token id {id} is outside the vocabulary");
                }
                return Ok(t.embedding(&ids.flatten_all()?)?.reshape((
                    b,
                    l,
                    self.config.hidden,
                ))?);
            }
            Embedding::Blocks(blocks) => blocks,
        };
        let mut rows = Vec::with_capacity(flat.len());
        for &id in &flat {
            let (blk, at) = (id as usize / HEAD_ROWS, id as usize % HEAD_ROWS);
            let block = blocks
                .get(blk)
                .with_context(|| format!("token id {id} is outside the vocabulary"))?;
            let local = Tensor::new(&[at as u32], &self.device)?;
            rows.push(block.embedding(&local)?);
        }
        Ok(Tensor::cat(&rows, 0)?.reshape((b, l, self.config.hidden))?)
    }

    /// Runs `ids` (`(batch, len)`) at positions `past.len ..`, every sequence attending to the
    /// shared cached prefix `past` and causally to itself. Returns the final-norm hidden states
    /// `(batch, len, hidden)` and each layer's new keys and values.
    fn forward(
        &self,
        ids: &Tensor,
        past: Option<&KvCache>,
    ) -> Result<(Tensor, Vec<(Tensor, Tensor)>)> {
        let (b, l) = ids.dims2()?;
        let c = &self.config;
        let p = past.map_or(0, |k| k.len);
        if p + l > c.context_length {
            bail!(
                "a sequence of {} tokens is longer than the model's context ({} tokens)",
                p + l,
                c.context_length
            );
        }
        let cos = self.cos.narrow(0, p, l)?;
        let sin = self.sin.narrow(0, p, l)?;
        let groups = c.n_head / c.n_kv_head;
        let mask = attention_mask(p, l, groups, &self.device)?;
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let mut x = self.embedding(ids)?;
        let mut new_kv = Vec::with_capacity(self.layers.len());
        let rope = |t: &Tensor| {
            if c.rope_interleaved {
                candle_nn::rotary_emb::rope_i(t, &cos, &sin)
            } else {
                candle_nn::rotary_emb::rope(t, &cos, &sin)
            }
        };
        for (li, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, c.rms_eps as f32)?;
            let (mut q, mut k, mut v) = (
                layer.wq.forward(&h)?,
                layer.wk.forward(&h)?,
                layer.wv.forward(&h)?,
            );
            if let Some([bq, bk, bv]) = &layer.bias {
                q = q.broadcast_add(bq)?;
                k = k.broadcast_add(bk)?;
                v = v.broadcast_add(bv)?;
            }
            let q = q
                .reshape((b, l, c.n_head, c.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let k = k
                .reshape((b, l, c.n_kv_head, c.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let v = v
                .reshape((b, l, c.n_kv_head, c.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let q = rope(&q)?;
            let k = rope(&k)?;
            let (k_all, v_all) = match past {
                Some(cache) => {
                    let (pk, pv) = &cache.layers[li];
                    let shape = (b, c.n_kv_head, p, c.head_dim);
                    (
                        Tensor::cat(&[&pk.broadcast_as(shape)?, &k], 2)?,
                        Tensor::cat(&[&pv.broadcast_as(shape)?, &v], 2)?,
                    )
                }
                None => (k.clone(), v.clone()),
            };
            // Grouped-query attention without copying keys and values: the `groups` query
            // heads of one key/value head become `groups * l` rows against it.
            let q = q.reshape((b, c.n_kv_head, groups * l, c.head_dim))?;
            // One statement per step: each intermediate (heads × queries × keys floats, the
            // largest tensors of a long prompt) is freed as the next is made.
            let mut scores = q.matmul(&k_all.contiguous()?.t()?)?;
            scores = (scores * scale)?;
            scores = scores.broadcast_add(&mask)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            drop(scores);
            let attn = probs
                .matmul(&v_all.contiguous()?)?
                .reshape((b, c.n_head, l, c.head_dim))?
                .transpose(1, 2)?
                .reshape((b, l, c.n_head * c.head_dim))?;
            x = (x + layer.wo.forward(&attn)?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, c.rms_eps as f32)?;
            let act = (candle_nn::ops::silu(&layer.gate.forward(&h)?)? * layer.up.forward(&h)?)?;
            x = (x + layer.down.forward(&act)?)?;
            new_kv.push((k, v));
        }
        let x = candle_nn::ops::rms_norm(&x, &self.norm, c.rms_eps as f32)?;
        Ok((x, new_kv))
    }

    /// Runs a prompt once; its cache serves every continuation.
    pub fn prompt(&self, ids: &[u32]) -> Result<KvCache> {
        self.prompt_chunked(ids, PROMPT_CHUNK)
    }

    /// [`Llama::prompt`] run `chunk` tokens at a time, each chunk attending to the keys and
    /// values of the ones before it: the attention scores then take `chunk × len` floats per
    /// head instead of `len²`, which bounds the memory a long prompt needs.
    pub fn prompt_chunked(&self, ids: &[u32], chunk: usize) -> Result<KvCache> {
        if ids.is_empty() {
            bail!("an empty prompt cannot be scored (no token predicts the continuation)");
        }
        self.extend(None, ids, chunk)
    }

    /// The cache of prompt `ids`, reusing `previous` (the cache of the prompt `previous_ids`)
    /// for the tokens the two share at their start: only the rest runs. Scoring every
    /// question of an article (`harness-all`), each prompt extends the one before it by that
    /// question's answer and the next question, so nearly all of it is shared. At least the
    /// last token always runs (its hidden state predicts the continuations). The same
    /// numbers as [`Llama::prompt`] up to float summation order (a different chunking).
    pub fn prompt_reusing(
        &self,
        previous: Option<(&[u32], KvCache)>,
        ids: &[u32],
    ) -> Result<(KvCache, usize)> {
        if ids.is_empty() {
            bail!("an empty prompt cannot be scored (no token predicts the continuation)");
        }
        let Some((prev_ids, cache)) = previous else {
            return Ok((self.prompt(ids)?, ids.len()));
        };
        if prev_ids.len() != cache.len {
            bail!(
                "internal: a cache of {} tokens for a prompt of {}",
                cache.len,
                prev_ids.len()
            );
        }
        let shared = prev_ids
            .iter()
            .zip(ids)
            .take_while(|(a, b)| a == b)
            .count()
            .min(ids.len() - 1);
        if shared == 0 {
            return Ok((self.prompt(ids)?, ids.len()));
        }
        let kept = KvCache {
            layers: cache
                .layers
                .into_iter()
                .map(|(k, v)| Ok((k.narrow(2, 0, shared)?, v.narrow(2, 0, shared)?)))
                .collect::<Result<_>>()?,
            len: shared,
            last: cache.last,
        };
        let run = ids.len() - shared;
        Ok((self.extend(Some(kept), &ids[shared..], PROMPT_CHUNK)?, run))
    }

    /// `cache` (if any) followed by `ids`, run `chunk` tokens at a time.
    fn extend(&self, mut cache: Option<KvCache>, ids: &[u32], chunk: usize) -> Result<KvCache> {
        for part in ids.chunks(chunk.max(1)) {
            let t = Tensor::new(part, &self.device)?.unsqueeze(0)?;
            let (x, kv) = self.forward(&t, cache.as_ref())?;
            let last = x.i((0, part.len() - 1))?;
            cache = Some(match cache {
                None => KvCache {
                    layers: kv,
                    len: part.len(),
                    last,
                },
                // Each layer's old keys and values are dropped as soon as they are joined, so
                // the cache is not held twice over.
                Some(old) => KvCache {
                    layers: old
                        .layers
                        .into_iter()
                        .zip(kv)
                        .map(|((pk, pv), (k, v))| {
                            Ok((Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?))
                        })
                        .collect::<Result<_>>()?,
                    len: old.len + part.len(),
                    last,
                },
            });
        }
        cache.context("internal: no prompt chunk ran")
    }

    /// Log-probabilities (natural log) of every token of every continuation given the cached
    /// prompt: `out[o][t]` = log p(cont[o][t] | prompt, cont[o][..t]). Continuations run as one
    /// batch, right-padded (padding only ever follows a sequence's real tokens, so the causal
    /// mask keeps it out of them).
    pub fn continuation_logprobs(
        &self,
        cache: &KvCache,
        conts: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>> {
        if let Some(i) = conts.iter().position(|c| c.is_empty()) {
            bail!("continuation {i} has no tokens");
        }
        // Rows whose next-token distributions are needed: the prompt's last row, then each
        // continuation's rows but its last.
        let inner = conts.iter().map(|c| c.len() - 1).max().unwrap_or(0);
        let mut rows = vec![cache.last.unsqueeze(0)?];
        if inner > 0 {
            let mut flat = Vec::with_capacity(conts.len() * inner);
            for c in conts {
                flat.extend_from_slice(&c[..c.len() - 1]);
                flat.resize(flat.len() + inner - (c.len() - 1), 0);
            }
            let ids = Tensor::from_vec(flat, (conts.len(), inner), &self.device)?;
            let (x, _) = self.forward(&ids, Some(cache))?;
            for (o, c) in conts.iter().enumerate() {
                if c.len() > 1 {
                    rows.push(x.i((o, ..c.len() - 1))?);
                }
            }
        }
        let rows = Tensor::cat(&rows, 0)?.contiguous()?;
        // Pick each target: row 0 predicts every first token; continuation o's row t predicts
        // its token t + 1.
        let mut targets = Vec::new();
        let mut next = 1usize;
        for c in conts {
            targets.push((0, c[0]));
            for &tok in &c[1..] {
                targets.push((next, tok));
                next += 1;
            }
        }
        let picked = self.target_logprobs(&rows, &targets)?;
        let mut out = Vec::with_capacity(conts.len());
        let mut at = 0;
        for c in conts {
            out.push(picked[at..at + c.len()].to_vec());
            at += c.len();
        }
        Ok(out)
    }

    /// Log-probabilities of `cont` given `prompt`, run as one sequence (no cache): the plain
    /// computation [`Llama::continuation_logprobs`] must agree with.
    pub fn sequence_logprobs(&self, prompt: &[u32], cont: &[u32]) -> Result<Vec<f32>> {
        if prompt.is_empty() || cont.is_empty() {
            bail!("prompt and continuation need a token each");
        }
        let all: Vec<u32> = prompt
            .iter()
            .chain(&cont[..cont.len() - 1])
            .copied()
            .collect();
        let t = Tensor::new(all.as_slice(), &self.device)?.unsqueeze(0)?;
        let (x, _) = self.forward(&t, None)?;
        let rows = x.i((0, prompt.len() - 1..))?.contiguous()?;
        let targets: Vec<(usize, u32)> = cont.iter().copied().enumerate().collect();
        self.target_logprobs(&rows, &targets)
    }

    /// log p(token | row) for each `(row, token)` of `targets`, given final-norm hidden states
    /// `rows` (`(n, hidden)`): the output layer runs one block of vocabulary rows at a time and
    /// each row's log-sum-exp is accumulated over the blocks (in f64), so at most `n ×`
    /// [`HEAD_ROWS`] logits exist at once.
    fn target_logprobs(&self, rows: &Tensor, targets: &[(usize, u32)]) -> Result<Vec<f32>> {
        let n = rows.dim(0)?;
        let mut max = vec![f64::NEG_INFINITY; n];
        let mut sum = vec![0f64; n];
        let mut picked = vec![f64::NAN; targets.len()];
        let mut offset = 0usize;
        for block in self.head.blocks() {
            let logits = block.forward(rows)?.to_dtype(DType::F32)?;
            let width = logits.dim(1)?;
            let logits: Vec<f32> = logits.flatten_all()?.to_vec1()?;
            for (r, row) in logits.chunks_exact(width).enumerate() {
                let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
                if m > max[r] {
                    sum[r] *= (max[r] - m).exp();
                    max[r] = m;
                }
                let mr = max[r];
                sum[r] += row.iter().map(|&v| (v as f64 - mr).exp()).sum::<f64>();
            }
            for (i, &(r, tok)) in targets.iter().enumerate() {
                let t = tok as usize;
                if (offset..offset + width).contains(&t) {
                    picked[i] = logits[r * width + t - offset] as f64;
                }
            }
            offset += width;
        }
        targets
            .iter()
            .zip(picked)
            .map(|(&(r, tok), v)| {
                if v.is_nan() && tok as usize >= offset {
                    bail!("token id {tok} is outside the vocabulary ({offset} rows)");
                }
                Ok((v - (max[r] + sum[r].ln())) as f32)
            })
            .collect()
    }
}

/// cos and sin of position × θ^(−2i/d) for every position, in f32 as transformers computes them.
fn rope_tables(c: &LlamaConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = c.head_dim / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| 1.0 / c.rope_theta.powf((2 * i) as f32 / c.head_dim as f32))
        .collect();
    let mut cos = Vec::with_capacity(c.context_length * half);
    let mut sin = Vec::with_capacity(c.context_length * half);
    for p in 0..c.context_length {
        for &f in &inv {
            let a = p as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    Ok((
        Tensor::from_vec(cos, (c.context_length, half), device)?,
        Tensor::from_vec(sin, (c.context_length, half), device)?,
    ))
}

/// Additive mask `(groups * l, past + l)`: row `g * l + i` (query `i` of group member `g`) sees
/// the whole past and its own sequence up to `i`.
fn attention_mask(past: usize, l: usize, groups: usize, device: &Device) -> Result<Tensor> {
    let t = past + l;
    let mut m = vec![0f32; groups * l * t];
    for g in 0..groups {
        for i in 0..l {
            let row = &mut m[(g * l + i) * t..(g * l + i + 1) * t];
            for v in &mut row[past + i + 1..] {
                *v = f32::NEG_INFINITY;
            }
        }
    }
    Ok(Tensor::from_vec(m, (groups * l, t), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_sees_past_and_own_prefix() {
        let m: Vec<Vec<f32>> = attention_mask(2, 3, 2, &Device::Cpu)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(m.len(), 6);
        for g in 0..2 {
            for i in 0..3 {
                let row = &m[g * 3 + i];
                for (j, v) in row.iter().enumerate() {
                    assert_eq!(v.is_finite(), j < 2 + i + 1, "row {g},{i} col {j}");
                }
            }
        }
    }

    #[test]
    fn row_blocks_dequantize_to_the_whole() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (10, 64), &dev).unwrap();
        for dt in [GgmlDType::Q8_0, GgmlDType::Q4_1] {
            let q = QTensor::quantize(&w, dt).unwrap();
            let blocks = split_rows(&q, 4, &dev).unwrap();
            let rows: Vec<usize> = blocks.iter().map(|b| b.shape().dims()[0]).collect();
            assert_eq!(rows, vec![4, 4, 2]);
            let parts: Vec<Tensor> = blocks.iter().map(|b| b.dequantize(&dev).unwrap()).collect();
            let joined: Vec<Vec<f32>> = Tensor::cat(&parts, 0).unwrap().to_vec2().unwrap();
            let whole: Vec<Vec<f32>> = q.dequantize(&dev).unwrap().to_vec2().unwrap();
            assert_eq!(joined, whole);
            // And the blocked product is the whole product, row block by row block.
            let x = Tensor::randn(0f32, 1.0, (3, 64), &dev).unwrap();
            let a = Linear::Rows(blocks.into_iter().map(Linear::OnUse).collect())
                .forward(&x)
                .unwrap();
            let b = Linear::OnUse(Arc::new(q)).forward(&x).unwrap();
            let d = (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d < 1e-4, "{d}");
        }
    }

    #[test]
    fn rope_table_angles() {
        let c = LlamaConfig {
            architecture: "llama".into(),
            n_layer: 1,
            hidden: 8,
            n_head: 2,
            n_kv_head: 1,
            head_dim: 4,
            ffn: 8,
            rms_eps: 1e-5,
            rope_theta: 100.0,
            context_length: 3,
            vocab_size: 4,
            weight_type: "F32".into(),
            rope_interleaved: true,
            tied_embeddings: true,
        };
        let (cos, sin) = rope_tables(&c, &Device::Cpu).unwrap();
        let cos: Vec<Vec<f32>> = cos.to_vec2().unwrap();
        let sin: Vec<Vec<f32>> = sin.to_vec2().unwrap();
        // θ^(-2i/d) with d = 4: 1 and 1/10.
        assert!((cos[2][0] - 2f32.cos()).abs() < 1e-6);
        assert!((sin[2][1] - 0.2f32.sin()).abs() < 1e-6);
        assert_eq!(cos[0], vec![1.0, 1.0]);
    }
}
