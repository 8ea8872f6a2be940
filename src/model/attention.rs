//! Self-attention with its output projection and post-LN residual, the same in every family
//! (transformers: `AlbertAttention`, `BertSelfAttention` + `BertSelfOutput`, DistilBERT's
//! `MultiHeadSelfAttention` + `sa_layer_norm`; eager path):
//! LayerNorm(x + dense(softmax(QKᵀ/√d + mask) V)).

use candle_core::{DType, Result, Tensor};
use candle_nn::{Module, VarBuilder};

use super::config::ModelConfig;
use super::family::LayerNames;
use super::layers::{dropout, layer_norm, linear, softmax_last_dim, Linear, Norm};

pub struct Attention {
    pub(super) query: Linear,
    pub(super) key: Linear,
    pub(super) value: Linear,
    pub(super) dense: Linear,
    pub(super) norm: Norm,
    heads: usize,
    head_dim: usize,
    attention_dropout: f64,
    output_dropout: f64,
}

impl Attention {
    /// `vb` is the layer's prefix; `names` the family's names below it.
    pub fn load(vb: &VarBuilder, names: &LayerNames, cfg: &ModelConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            query: linear(h, h, vb.pp(names.query), cfg)?,
            key: linear(h, h, vb.pp(names.key), cfg)?,
            value: linear(h, h, vb.pp(names.value), cfg)?,
            dense: linear(h, h, vb.pp(names.dense), cfg)?,
            norm: layer_norm(h, cfg.layer_norm_eps, vb.pp(names.attention_norm))?,
            heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
            attention_dropout: cfg.attention_probs_dropout_prob,
            output_dropout: cfg.hidden_dropout_prob,
        })
    }

    /// (batch, len, hidden) → (batch, heads, len, head_dim)
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        x.reshape((b, l, self.heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// `x`: (batch, len, hidden); `mask`: additive, broadcastable to (batch, heads, len, len).
    pub fn forward(&self, x: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        let (b, l, h) = x.dims3()?;
        let q = self.split_heads(&self.query.forward(x)?)?;
        let k = self.split_heads(&self.key.forward(x)?)?;
        let v = self.split_heads(&self.value.forward(x)?)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        // Differentiable when training (see `layers::softmax_last_dim`). In bf16 and f16 the
        // scores get the mask and the softmax in f32.
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let probs = if scores.dtype() == DType::F32 {
            softmax_last_dim(&scores.broadcast_add(mask)?)?
        } else {
            let f32 = DType::F32;
            let scores = scores.to_dtype(f32)?.broadcast_add(&mask.to_dtype(f32)?)?;
            softmax_last_dim(&scores)?.to_dtype(q.dtype())?
        };
        let probs = dropout(&probs, self.attention_dropout, train)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, h))?;
        let projected = dropout(&self.dense.forward(&context)?, self.output_dropout, train)?;
        self.norm.forward(&(x + projected)?)
    }
}
