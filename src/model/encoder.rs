//! The encoder: an optional projection from `embedding_size` to `hidden_size`, then
//! `num_hidden_layers` passes through the layers. Every family runs the same [`Layer`] recipe
//! (post-LN attention, then a post-LN feed-forward); they differ in names ([`Family`]) and in
//! sharing: ALBERT's layer `i` runs every inner layer of group `int(i / (layers / groups))`
//! (transformers: `AlbertTransformer`, `AlbertLayerGroup`), the others have one group per layer
//! (`BertEncoder`, DistilBERT's `Transformer`). Both backends, candle's ops here and
//! [`cpu_encoder`], run the layer list this file builds.
//!
//! [`Family`]: super::family::Family

use std::collections::{BTreeSet, HashMap};

use candle_core::{Result, Tensor};
use candle_nn::{Module, VarBuilder};

use super::activation::Activation;
use super::attention::Attention;
use super::bf16::{self, Bf16Linear};
use super::config::ModelConfig;
use super::cpu_encoder::{self, Bf16Layer, LayerTensors, QuantLayer};
use super::family::LayerNames;
use super::layers::{dropout, layer_norm, linear, Linear, Norm};
use super::quant::{Kernel, QuantLinear};
use super::weights::Deferred;

/// The canonical names of the encoder layers' linear weights (what int8 and bf16 pack): the
/// tensors a bf16 load leaves in the checkpoint file until they are packed.
pub fn linear_weight_names(cfg: &ModelConfig) -> BTreeSet<String> {
    let names = cfg.family.layer_names();
    let linears = [
        names.query,
        names.key,
        names.value,
        names.dense,
        names.ffn,
        names.ffn_output,
    ];
    let mut out = BTreeSet::new();
    for g in 0..cfg.num_hidden_groups {
        for k in 0..cfg.inner_group_num {
            let prefix = cfg.family.layer_prefix(g, k);
            out.extend(linears.iter().map(|l| format!("{prefix}.{l}.weight")));
        }
    }
    out
}

/// One transformer block: attention, then a post-LN feed-forward.
pub struct Layer {
    attention: Attention,
    ffn: Linear,
    ffn_output: Linear,
    norm: Norm,
    activation: Activation,
    /// Dropout on the feed-forward output: the BERT family has it (`BertOutput`), ALBERT not
    /// (`AlbertLayer.ff_chunk`).
    ffn_dropout: f64,
    /// The linears in int8 (`--dtype int8`), for the CPU inference path.
    quant: Option<QuantLayer>,
    /// The linears in bf16 (`--dtype bf16` on the CPU), for the CPU inference path.
    bf16: Option<Bf16Layer>,
    /// The layer's name prefix and its tensor names (to find its deferred weights).
    prefix: String,
    names: LayerNames,
}

impl Layer {
    /// `vb` is the layer's prefix ([`super::family::Family::layer_prefix`]).
    pub fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let names = cfg.family.layer_names();
        Ok(Self {
            attention: Attention::load(&vb, &names, cfg)?,
            ffn: linear(h, i, vb.pp(names.ffn), cfg)?,
            ffn_output: linear(i, h, vb.pp(names.ffn_output), cfg)?,
            norm: layer_norm(h, cfg.layer_norm_eps, vb.pp(names.output_norm))?,
            activation: cfg.activation(),
            ffn_dropout: match cfg.family {
                super::family::Family::Albert => 0.0,
                _ => cfg.hidden_dropout_prob,
            },
            quant: None,
            bf16: None,
            prefix: vb.prefix(),
            names,
        })
    }

    /// The six linears, in the order of [`QuantLayer`] and [`Bf16Layer`], with their names.
    fn linears_mut(&mut self) -> [(&mut Linear, &'static str); 6] {
        let n = self.names;
        let a = &mut self.attention;
        [
            (&mut a.query, n.query),
            (&mut a.key, n.key),
            (&mut a.value, n.value),
            (&mut a.dense, n.dense),
            (&mut self.ffn, n.ffn),
            (&mut self.ffn_output, n.ffn_output),
        ]
    }

    /// Quantises the six linears per output channel for `kernel`. Their f32 weights stay
    /// until [`Self::smooth`] has requantised from them (calibration), which drops them.
    fn quantize(&mut self, kernel: Kernel) -> Result<()> {
        let mut q = Vec::with_capacity(6);
        for (l, _) in self.linears_mut() {
            let (n, k) = l.weight().dims2()?;
            let w = l.weight().flatten_all()?.to_vec1::<f32>()?;
            q.push(QuantLinear::new(&w, n, k));
        }
        let [query, key, value, dense, ffn, ffn_output] =
            <[QuantLinear; 6]>::try_from(q).map_err(|_| candle_core::Error::msg("six linears"))?;
        self.quant = Some(QuantLayer {
            kernel,
            query,
            key,
            value,
            dense,
            ffn,
            ffn_output,
        });
        Ok(())
    }

    /// Packs the six linears in bf16 for `kernel`: from the checkpoint file for the weights
    /// left there (`deferred`, by canonical name), else from the loaded weight, which is then
    /// dropped. Only the packed copy is kept.
    fn pack_bf16(
        &mut self,
        kernel: bf16::Kernel,
        deferred: &HashMap<String, Deferred>,
    ) -> Result<()> {
        let prefix = self.prefix.clone();
        let mut packed = Vec::with_capacity(6);
        for (l, name) in self.linears_mut() {
            let full = format!("{prefix}.{name}.weight");
            let p = match deferred.get(&full) {
                Some(d) => {
                    let (n, k) = (d.shape[0], d.shape[1]);
                    let file = d
                        .open()
                        .map_err(|e| candle_core::Error::msg(format!("{e:#}")))?;
                    Bf16Linear::from_row_blocks(n, k, |first, dst| {
                        d.read_rows(&file, &full, first, dst)
                    })
                    .map_err(|e| candle_core::Error::msg(format!("{e:#}")))?
                }
                None => {
                    let (n, k) = l.weight().dims2()?;
                    let w = l
                        .weight()
                        .to_dtype(candle_core::DType::F32)?
                        .flatten_all()?
                        .to_vec1::<f32>()?;
                    Bf16Linear::new(&w, n, k)
                }
            };
            packed.push(p);
            l.release_weight()?;
        }
        let [query, key, value, dense, ffn, ffn_output] = <[Bf16Linear; 6]>::try_from(packed)
            .map_err(|_| candle_core::Error::msg("six linears"))?;
        self.bf16 = Some(Bf16Layer {
            kernel,
            query,
            key,
            value,
            dense,
            ffn,
            ffn_output,
        });
        Ok(())
    }

    /// Every int8 linear records its input's per channel maxima from now on.
    fn observe(&self) {
        if let Some(q) = &self.quant {
            q.linears().iter().for_each(|l| l.observe());
        }
    }

    /// Requantises the int8 linears with SmoothQuant factors from the maxima recorded since
    /// [`Self::observe`] (a linear that saw no input keeps its quantisation), then drops their
    /// f32 weights: the int8 copy is the only one kept.
    fn smooth(&mut self) -> Result<()> {
        fn q(l: &Linear, old: &QuantLinear) -> Result<Option<QuantLinear>> {
            let Some(x_max) = old.observed() else {
                return Ok(None);
            };
            if x_max.iter().all(|&v| v == 0.0) {
                return Ok(None);
            }
            let (n, k) = l.weight().dims2()?;
            let w = l.weight().flatten_all()?.to_vec1::<f32>()?;
            Ok(Some(QuantLinear::smoothed(&w, n, k, Some(&x_max))))
        }
        let Some(quant) = self.quant.as_mut() else {
            return Ok(());
        };
        let a = &self.attention;
        // Q, K and V read the same input: one set of factors from the maxima of all three
        // weights, so that the input is quantised once for the three (the CPU encoder records
        // the maxima on whichever of them quantised it).
        let seen: Vec<Vec<f32>> = [&quant.query, &quant.key, &quant.value]
            .iter()
            .filter_map(|l| l.observed())
            .collect();
        if let Some(first) = seen.first() {
            let x_max: Vec<f32> = (0..first.len())
                .map(|c| seen.iter().map(|m| m[c]).fold(0f32, f32::max))
                .collect();
            if x_max.iter().any(|&v| v != 0.0) {
                let mut ws = Vec::with_capacity(3);
                for l in [&a.query, &a.key, &a.value] {
                    let (n, k) = l.weight().dims2()?;
                    ws.push((l.weight().flatten_all()?.to_vec1::<f32>()?, n, k));
                }
                let k = ws[0].2;
                if ws.iter().all(|w| w.2 == k) && x_max.len() == k {
                    let refs: Vec<(&[f32], usize)> =
                        ws.iter().map(|(w, n, _)| (&w[..], *n)).collect();
                    let [q, k, v] = <[QuantLinear; 3]>::try_from(QuantLinear::smoothed_together(
                        &refs, k, &x_max,
                    ))
                    .map_err(|_| candle_core::Error::msg("three linears"))?;
                    (quant.query, quant.key, quant.value) = (q, k, v);
                }
            }
        }
        let pairs = [
            (&a.dense, &mut quant.dense),
            (&self.ffn, &mut quant.ffn),
            (&self.ffn_output, &mut quant.ffn_output),
        ];
        for (l, slot) in pairs {
            if let Some(new) = q(l, slot)? {
                *slot = new;
            }
        }
        for (l, _) in self.linears_mut() {
            l.release_weight()?;
        }
        Ok(())
    }

    /// The layer's tensors for [`cpu_encoder`].
    fn tensors(&self) -> LayerTensors<'_> {
        fn lin(l: &Linear) -> (&Tensor, &Tensor) {
            (l.weight(), l.bias())
        }
        let a = &self.attention;
        LayerTensors {
            query: lin(&a.query),
            key: lin(&a.key),
            value: lin(&a.value),
            dense: lin(&a.dense),
            attention_norm: (a.norm.weight(), a.norm.bias()),
            ffn: lin(&self.ffn),
            ffn_output: lin(&self.ffn_output),
            output_norm: (self.norm.weight(), self.norm.bias()),
            activation: self.activation,
            eps: self.norm.eps() as f32,
            quant: self.quant.as_ref(),
            bf16: self.bf16.as_ref(),
        }
    }

    pub fn forward(&self, x: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        let attended = self.attention.forward(x, mask, train)?;
        let ff = self.activation.forward(&self.ffn.forward(&attended)?)?;
        let ff = dropout(&self.ffn_output.forward(&ff)?, self.ffn_dropout, train)?;
        self.norm.forward(&(ff + attended)?)
    }
}

/// Which implementation runs the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// [`cpu_encoder`] for f32 inference on the CPU, candle's ops otherwise.
    Auto,
    /// candle's ops (differentiable; any device and dtype). Chosen explicitly only by the
    /// tests that hold the CPU encoder against it.
    #[cfg_attr(not(test), allow(dead_code))]
    Generic,
}

pub struct Encoder {
    projection: Option<Linear>,
    /// `groups[g][k]`: inner layer `k` of group `g`.
    groups: Vec<Vec<Layer>>,
    group_of_layer: Vec<usize>,
    heads: usize,
}

impl Encoder {
    /// `vb` is the model's root: the family names every weight from there.
    pub fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let family = cfg.family;
        let projection = match family.projection().filter(|_| cfg.has_projection()) {
            Some(path) => Some(linear(
                cfg.embedding_size,
                cfg.hidden_size,
                vb.pp(path),
                cfg,
            )?),
            None => None,
        };
        let groups = (0..cfg.num_hidden_groups)
            .map(|g| {
                (0..cfg.inner_group_num)
                    .map(|k| Layer::load(vb.pp(family.layer_prefix(g, k)), cfg))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let group_of_layer = (0..cfg.num_hidden_layers)
            .map(|i| cfg.group_of_layer(i))
            .collect();
        Ok(Self {
            projection,
            groups,
            group_of_layer,
            heads: cfg.num_attention_heads,
        })
    }

    /// Quantises every layer's linears to int8 for the CPU inference path (f32 weights on the
    /// CPU only). The embeddings, projection, LayerNorms, attention products and head stay f32.
    pub fn quantize(&mut self, kernel: Kernel) -> Result<()> {
        for layer in self.groups.iter_mut().flatten() {
            if layer.ffn.weight().dtype() != candle_core::DType::F32
                || !layer.ffn.weight().device().is_cpu()
            {
                candle_core::bail!("int8 quantisation needs f32 weights on the CPU");
            }
            layer.quantize(kernel)?;
        }
        Ok(())
    }

    /// Packs every layer's linears in bf16 for the CPU inference path (see
    /// [`Layer::pack_bf16`]). The embeddings, projection, LayerNorms, attention products and
    /// head stay f32, so the model's other tensors must be f32 on the CPU.
    pub fn pack_bf16(
        &mut self,
        kernel: bf16::Kernel,
        deferred: &HashMap<String, Deferred>,
    ) -> Result<()> {
        for layer in self.groups.iter_mut().flatten() {
            let norm = layer.norm.weight();
            if norm.dtype() != candle_core::DType::F32 || !norm.device().is_cpu() {
                candle_core::bail!("bf16 packing needs a model loaded in f32 on the CPU");
            }
            layer.pack_bf16(kernel, deferred)?;
        }
        Ok(())
    }

    /// Starts int8 calibration: the quantised linears record their inputs' per channel maxima
    /// until [`Self::finish_calibration`].
    pub fn start_calibration(&self) {
        self.groups.iter().flatten().for_each(Layer::observe);
    }

    /// Requantises the int8 linears with SmoothQuant factors from the maxima recorded since
    /// [`Self::start_calibration`] (see [`super::quant`]).
    pub fn finish_calibration(&mut self) -> Result<()> {
        self.groups.iter_mut().flatten().try_for_each(Layer::smooth)
    }

    /// `embedded`: (batch, len, embedding_size); `mask`: additive attention mask (batch, 1, 1,
    /// len). Returns the last hidden states (batch, len, hidden).
    pub fn forward(&self, embedded: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        self.run(embedded, mask, train, Path::Auto, false)
    }

    /// Like [`Self::forward`], but returns only the [CLS] (first) row of each sequence:
    /// (batch, hidden). On the CPU inference path the last layer then skips the other rows.
    pub fn forward_cls(&self, embedded: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        self.run(embedded, mask, train, Path::Auto, true)
    }

    /// The encoder through a chosen path (tests compare them).
    pub fn run(
        &self,
        embedded: &Tensor,
        mask: &Tensor,
        train: bool,
        path: Path,
        cls_only: bool,
    ) -> Result<Tensor> {
        let hidden = match &self.projection {
            Some(p) => p.forward(embedded)?,
            None => embedded.clone(),
        };
        let fast = match path {
            Path::Auto => !train && cpu_encoder::eligible(&hidden) && cpu_encoder::eligible(mask),
            Path::Generic => false,
        };
        if fast {
            let layers: Vec<LayerTensors> = self
                .group_of_layer
                .iter()
                .flat_map(|&g| self.groups[g].iter().map(Layer::tensors))
                .collect();
            return cpu_encoder::forward(&layers, &hidden, mask, self.heads, cls_only);
        }
        let mut hidden = hidden;
        for &g in &self.group_of_layer {
            for layer in &self.groups[g] {
                hidden = layer.forward(&hidden, mask, train)?;
            }
        }
        if cls_only {
            hidden.narrow(1, 0, 1)?.squeeze(1)
        } else {
            Ok(hidden)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Shape};
    use candle_nn::{var_builder::SimpleBackend, Init};

    use crate::model::kernels::tests::max_abs_diff;

    /// Every tensor random as plain tensors, LayerNorm's too so that their wiring shows:
    /// matrices with variance 1/fan_in so that attention is neither uniform nor one-hot,
    /// LayerNorm weights 1 ± 0.3, biases ± 0.15. Uniform draws from a fixed seed per tensor
    /// name, so the test sees the same weights every run.
    struct Random;

    /// `n` values uniform in [-1, 1) from a splitmix64 stream seeded by `name`.
    fn uniform(name: &str, n: usize) -> Vec<f32> {
        let mut state = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        (0..n)
            .map(|_| {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    impl SimpleBackend for Random {
        fn get(&self, s: Shape, name: &str, init: Init, dt: DType, dev: &Device) -> Result<Tensor> {
            let u = Tensor::from_vec(uniform(name, s.elem_count()), s.clone(), dev)?;
            let t = match (init, s.dims()) {
                (Init::Const(c), _) if c != 0.0 => u.affine(0.3, c)?,
                // Uniform on [-a, a] has variance a²/3.
                (_, &[_, fan_in]) => u.affine((3.0 / fan_in as f64).sqrt(), 0.0)?,
                _ => u.affine(0.15, 0.0)?,
            };
            t.to_dtype(dt)
        }

        fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
            candle_core::bail!("`{name}` has no shape")
        }

        fn contains_tensor(&self, _: &str) -> bool {
            false
        }
    }

    /// The CPU inference path and candle's ops agree: several attention blocks and a partial
    /// one (150 queries), padding (packed away on the [CLS] path), a mask with a hole, a fully
    /// masked sequence, shared groups with two inner layers, each activation kind (its own
    /// kernels and the fallback), and the [CLS]-only last layer.
    #[test]
    fn cpu_path_matches_candle_ops() -> Result<()> {
        let dev = Device::Cpu;
        let (batch, len) = (5, 150);
        // Kept keys per sequence: all, a prefix, a short prefix, a prefix with a hole, none.
        let kept: [&dyn Fn(usize) -> bool; 5] = [
            &|_| true,
            &|j| j < 97,
            &|j| j < 5,
            &|j| j < 120 && !(10..20).contains(&j),
            &|_| false,
        ];
        let keep: Vec<f32> = kept
            .iter()
            .flat_map(|k| (0..len).map(move |j| if k(j) { 1.0 } else { 0.0 }))
            .collect();
        let keep = Tensor::from_vec(keep, (batch, len), &dev)?;
        let mask = (keep.affine(-1.0, 1.0)? * f32::MIN as f64)?.reshape((batch, 1, 1, len))?;
        for act in ["gelu_new", "gelu", "relu", "silu"] {
            let cfg = ModelConfig {
                embedding_size: 20,
                hidden_size: 48,
                num_attention_heads: 4,
                intermediate_size: 80,
                num_hidden_layers: 4,
                num_hidden_groups: 2,
                inner_group_num: 2,
                hidden_act: act.into(),
                ..ModelConfig::default()
            };
            let vb = VarBuilder::from_backend(Box::new(Random), DType::F32, dev.clone());
            let encoder = Encoder::load(vb, &cfg)?;
            let embedded =
                Tensor::from_vec(uniform("input", batch * len * 20), (batch, len, 20), &dev)?
                    .affine(3f64.sqrt(), 0.0)?;
            let generic = encoder.run(&embedded, &mask, false, Path::Generic, false)?;
            let fast = encoder.run(&embedded, &mask, false, Path::Auto, false)?;
            let cls = encoder.run(&embedded, &mask, false, Path::Auto, true)?;
            assert_eq!(fast.dims(), &[batch, len, 48]);
            assert_eq!(cls.dims(), &[batch, 48]);
            // Tokens stay distinct (attention is not averaging everything into one state),
            // so a wrong query, key or mask would show.
            let spread = generic.get(0)?.var(0)?.mean_all()?.to_scalar::<f32>()?;
            assert!(spread > 0.01, "{act}: the tokens collapsed ({spread})");
            let d = max_abs_diff(&fast, &generic);
            assert!(d < 2e-5, "{act}: full sequence differs by {d}");
            let d = max_abs_diff(&cls, &generic.narrow(1, 0, 1)?.squeeze(1)?);
            assert!(d < 2e-5, "{act}: [CLS] rows differ by {d}");
        }
        Ok(())
    }

    /// int8 linears stay close to f32 (relative error of the hidden states a few percent at
    /// most after four layers), on every kernel this CPU has.
    #[test]
    fn int8_path_stays_close_to_f32() -> Result<()> {
        use crate::model::quant::Kernel;
        let dev = Device::Cpu;
        let (batch, len) = (3, 70);
        let mask = Tensor::zeros((batch, 1, 1, len), DType::F32, &dev)?;
        let cfg = ModelConfig {
            embedding_size: 20,
            hidden_size: 64,
            num_attention_heads: 4,
            intermediate_size: 128,
            num_hidden_layers: 4,
            num_hidden_groups: 2,
            inner_group_num: 1,
            hidden_act: "gelu".into(),
            ..ModelConfig::default()
        };
        let embedded =
            Tensor::from_vec(uniform("input", batch * len * 20), (batch, len, 20), &dev)?
                .affine(3f64.sqrt(), 0.0)?;
        let vb = VarBuilder::from_backend(Box::new(Random), DType::F32, dev.clone());
        let f32_out = Encoder::load(vb, &cfg)?.run(&embedded, &mask, false, Path::Auto, true)?;
        for kernel in [Kernel::Scalar, Kernel::Avx2, Kernel::Vnni] {
            if !kernel.available() {
                continue;
            }
            let vb = VarBuilder::from_backend(Box::new(Random), DType::F32, dev.clone());
            let mut enc = Encoder::load(vb, &cfg)?;
            enc.quantize(kernel)?;
            let q = enc.run(&embedded, &mask, false, Path::Auto, true)?;
            let err = (&q - &f32_out)?
                .sqr()?
                .sum_all()?
                .sqrt()?
                .to_scalar::<f32>()?;
            let norm = f32_out.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
            eprintln!("{kernel:?}: relative error {:.4}", err / norm);
            assert!(
                err / norm < 0.05,
                "{kernel:?}: relative error {}",
                err / norm
            );
            assert!(err > 0.0, "{kernel:?}: the int8 path did not run");
        }
        Ok(())
    }
}
