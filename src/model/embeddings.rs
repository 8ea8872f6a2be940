//! Embeddings: word, position and (except DistilBERT) token-type tables of width
//! `embedding_size`, summed, then LayerNorm and dropout (transformers: `AlbertEmbeddings`,
//! `BertEmbeddings`, `RobertaEmbeddings`, DistilBERT's `Embeddings`, `ElectraEmbeddings`). A
//! projection to `hidden_size`, where the family has one, lives in the encoder.

use candle_core::{DType, Result, Tensor};
use candle_nn::{Embedding, Module, VarBuilder};

use super::config::ModelConfig;
use super::layers::{dropout, embedding, layer_norm, Norm};

pub struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Option<Embedding>,
    norm: Norm,
    dropout: f64,
    /// RoBERTa's padding index: positions count from `pad + 1` over non-pad tokens.
    position_pad: Option<u32>,
}

impl Embeddings {
    /// `vb` is the model's root; the tables live under the family's embedding prefix.
    pub fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let vb = vb.pp(cfg.family.embedding_prefix());
        let e = cfg.embedding_size;
        let token_type = if cfg.has_token_types() {
            Some(embedding(
                cfg.type_vocab_size,
                e,
                vb.pp("token_type_embeddings"),
                cfg,
            )?)
        } else {
            None
        };
        Ok(Self {
            word: embedding(cfg.vocab_size, e, vb.pp("word_embeddings"), cfg)?,
            position: embedding(
                cfg.max_position_embeddings,
                e,
                vb.pp("position_embeddings"),
                cfg,
            )?,
            token_type,
            norm: layer_norm(e, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
            dropout: cfg.hidden_dropout_prob,
            position_pad: cfg.family.offsets_positions().then_some(cfg.pad_token_id),
        })
    }

    /// Position ids: `0..len` as (1, len), broadcast over the batch; or RoBERTa's
    /// `create_position_ids_from_input_ids` as (batch, len): `pad + cumsum(id != pad)` on real
    /// tokens, `pad` on padding (computed on the host from the ids).
    fn positions(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (b, len) = input_ids.dims2()?;
        let dev = input_ids.device();
        match self.position_pad {
            None => Tensor::arange(0u32, len as u32, dev)?.unsqueeze(0),
            Some(pad) => {
                let ids = input_ids.to_dtype(DType::U32)?.to_vec2::<u32>()?;
                let pos: Vec<u32> = ids
                    .iter()
                    .flat_map(|row| {
                        let mut seen = 0u32;
                        row.iter().map(move |&id| {
                            if id == pad {
                                pad
                            } else {
                                seen += 1;
                                pad + seen
                            }
                        })
                    })
                    .collect();
                Tensor::from_vec(pos, (b, len), dev)
            }
        }
    }

    /// `input_ids`, `token_type_ids`: (batch, len) u32. Returns (batch, len, embedding_size).
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let words = self.word.forward(input_ids)?;
        let pos = self.position.forward(&self.positions(input_ids)?)?;
        let mut sum = words.broadcast_add(&pos)?;
        if let Some(types) = &self.token_type {
            sum = (sum + types.forward(token_type_ids)?)?;
        }
        dropout(&self.norm.forward(&sum)?, self.dropout, train)
    }
}
