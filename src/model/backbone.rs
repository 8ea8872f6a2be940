//! The encoder stack without a head (transformers: `AlbertModel`, `BertModel`, `RobertaModel`,
//! `DistilBertModel`, `ElectraModel`): embeddings, then the encoder. The pooler, which only some
//! families have, belongs to the multiple-choice head ([`super::multiple_choice`]).

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::ModelConfig;
use super::embeddings::Embeddings;
use super::encoder::Encoder;

pub struct Backbone {
    embeddings: Embeddings,
    encoder: Encoder,
    dtype: DType,
}

impl Backbone {
    /// `vb` is the model's root (names carry the family's prefix).
    pub fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        Ok(Self {
            embeddings: Embeddings::load(vb.clone(), cfg)?,
            encoder: Encoder::load(vb.clone(), cfg)?,
            dtype: vb.dtype(),
        })
    }

    /// Packs the encoder's linears in bf16 (see [`Encoder::pack_bf16`]).
    pub fn pack_bf16(
        &mut self,
        kernel: super::bf16::Kernel,
        deferred: &std::collections::HashMap<String, super::weights::Deferred>,
    ) -> Result<()> {
        self.encoder.pack_bf16(kernel, deferred)
    }

    /// Quantises the encoder's linears to int8 (see [`Encoder::quantize`]).
    pub fn quantize(&mut self, kernel: super::quant::Kernel) -> Result<()> {
        self.encoder.quantize(kernel)
    }

    /// Starts int8 calibration (see [`Encoder::start_calibration`]).
    pub fn start_calibration(&self) {
        self.encoder.start_calibration()
    }

    /// Ends int8 calibration: the linears are requantised with smoothing factors.
    pub fn finish_calibration(&mut self) -> Result<()> {
        self.encoder.finish_calibration()
    }

    /// Turns a (batch, len) 0/1 attention mask into the additive (batch, 1, 1, len) mask the
    /// reference builds: `(1 - mask) * finfo(dtype).min`.
    pub fn additive_mask(&self, attention_mask: &Tensor) -> Result<Tensor> {
        let (b, l) = attention_mask.dims2()?;
        let min = match self.dtype {
            DType::F16 => -65504.0,
            DType::BF16 => -3.3895314e38,
            _ => f32::MIN as f64,
        };
        let keep = attention_mask.to_dtype(DType::F32)?;
        ((keep.affine(-1.0, 1.0)? * min)?.to_dtype(self.dtype)?).reshape((b, 1, 1, l))
    }

    /// Last hidden states (batch, len, hidden).
    pub fn sequence_output(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        self.encode(input_ids, token_type_ids, attention_mask, train, false)
    }

    /// The last hidden state of the first ([CLS]) token (batch, hidden). On the CPU inference
    /// path the last layer computes only these rows.
    pub fn cls_output(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        self.encode(input_ids, token_type_ids, attention_mask, train, true)
    }

    fn encode(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
        cls_only: bool,
    ) -> Result<Tensor> {
        let mask = self.additive_mask(attention_mask)?;
        let embedded = self.embeddings.forward(input_ids, token_type_ids, train)?;
        if cls_only {
            self.encoder.forward_cls(&embedded, &mask, train)
        } else {
            self.encoder.forward(&embedded, &mask, train)
        }
    }
}
