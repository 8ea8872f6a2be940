//! Factorised embeddings: word, position and token-type tables of width `embedding_size`,
//! summed, then LayerNorm and dropout (transformers: `AlbertEmbeddings`). The projection to
//! `hidden_size` lives in the encoder, as in the reference (`embedding_hidden_mapping_in`).

use candle_core::{Result, Tensor};
use candle_nn::{Embedding, Module, VarBuilder};

use super::config::AlbertConfig;
use super::layers::{dropout, embedding, layer_norm, Norm};

pub struct AlbertEmbeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: Norm,
    dropout: f64,
}

impl AlbertEmbeddings {
    pub fn load(vb: VarBuilder, cfg: &AlbertConfig) -> Result<Self> {
        let e = cfg.embedding_size;
        Ok(Self {
            word: embedding(cfg.vocab_size, e, vb.pp("word_embeddings"), cfg)?,
            position: embedding(
                cfg.max_position_embeddings,
                e,
                vb.pp("position_embeddings"),
                cfg,
            )?,
            token_type: embedding(cfg.type_vocab_size, e, vb.pp("token_type_embeddings"), cfg)?,
            norm: layer_norm(e, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
            dropout: cfg.hidden_dropout_prob,
        })
    }

    /// `input_ids`, `token_type_ids`: (batch, len) u32. Returns (batch, len, embedding_size).
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let (_, len) = input_ids.dims2()?;
        let positions = Tensor::arange(0u32, len as u32, input_ids.device())?;
        let words = self.word.forward(input_ids)?;
        let types = self.token_type.forward(token_type_ids)?;
        let pos = self.position.forward(&positions)?.unsqueeze(0)?;
        let sum = (words + types)?.broadcast_add(&pos)?;
        dropout(&self.norm.forward(&sum)?, self.dropout, train)
    }
}
