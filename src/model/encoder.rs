//! The encoder: projection from `embedding_size` to `hidden_size`, then `num_hidden_layers`
//! passes through shared layer groups (transformers: `AlbertTransformer`, `AlbertLayerGroup`,
//! `AlbertLayer`). Layer `i` runs every inner layer of group `int(i / (layers / groups))`.

use candle_core::{Result, Tensor};
use candle_nn::{Module, VarBuilder};

use super::activation::Activation;
use super::attention::AlbertAttention;
use super::config::AlbertConfig;
use super::layers::{layer_norm, linear, Linear, Norm};

/// One transformer block: attention, then a post-LN feed-forward.
pub struct AlbertLayer {
    attention: AlbertAttention,
    ffn: Linear,
    ffn_output: Linear,
    norm: Norm,
    activation: Activation,
}

impl AlbertLayer {
    pub fn load(vb: VarBuilder, cfg: &AlbertConfig) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            attention: AlbertAttention::load(vb.pp("attention"), cfg)?,
            ffn: linear(h, i, vb.pp("ffn"), cfg)?,
            ffn_output: linear(i, h, vb.pp("ffn_output"), cfg)?,
            norm: layer_norm(h, cfg.layer_norm_eps, vb.pp("full_layer_layer_norm"))?,
            activation: cfg.activation(),
        })
    }

    pub fn forward(&self, x: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        let attended = self.attention.forward(x, mask, train)?;
        // The reference applies no dropout to the feed-forward output (`AlbertLayer.ff_chunk`).
        let ff = self.activation.forward(&self.ffn.forward(&attended)?)?;
        let ff = self.ffn_output.forward(&ff)?;
        self.norm.forward(&(ff + attended)?)
    }
}

pub struct AlbertEncoder {
    mapping_in: Linear,
    /// `groups[g][k]`: inner layer `k` of group `g`.
    groups: Vec<Vec<AlbertLayer>>,
    group_of_layer: Vec<usize>,
}

impl AlbertEncoder {
    pub fn load(vb: VarBuilder, cfg: &AlbertConfig) -> Result<Self> {
        let mapping_in = linear(
            cfg.embedding_size,
            cfg.hidden_size,
            vb.pp("embedding_hidden_mapping_in"),
            cfg,
        )?;
        let groups = (0..cfg.num_hidden_groups)
            .map(|g| {
                let vb = vb.pp("albert_layer_groups").pp(g).pp("albert_layers");
                (0..cfg.inner_group_num)
                    .map(|k| AlbertLayer::load(vb.pp(k), cfg))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let group_of_layer = (0..cfg.num_hidden_layers)
            .map(|i| cfg.group_of_layer(i))
            .collect();
        Ok(Self {
            mapping_in,
            groups,
            group_of_layer,
        })
    }

    /// `embedded`: (batch, len, embedding_size); `mask`: additive attention mask.
    pub fn forward(&self, embedded: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        let mut hidden = self.mapping_in.forward(embedded)?;
        for &g in &self.group_of_layer {
            for layer in &self.groups[g] {
                hidden = layer.forward(&hidden, mask, train)?;
            }
        }
        Ok(hidden)
    }
}
