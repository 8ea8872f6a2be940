//! ALBERT and the BERT family in candle, one concern per file, following transformers'
//! `modeling_albert.py` (and `modeling_bert.py`, `modeling_roberta.py`, `modeling_distilbert.py`,
//! `modeling_electra.py`): [`family`] (what differs between families: tensor names, sharing,
//! positions, head), [`config`], [`embeddings`], [`attention`], [`encoder`] (the one layer
//! recipe), [`backbone`], [`multiple_choice`] (the RACE head), and [`weights`] (checkpoint
//! formats). [`cpu_encoder`] runs the same layers for f32 inference on the CPU on raw buffers,
//! with the kernels in [`kernels`]. [`llama`] is the decoder LM (Llama, Qwen2), whose GGUF
//! linears run in f32 through [`dequant`], a dequantised panel of weight rows at a time.

// The public surface is the re-exports below and the modules a caller names: `config`,
// `family`, `presets`, `weights` (checkpoint formats), `seeded_dropout` (reproducible
// training). The layers and kernels stay inside.
mod activation;
mod attention;
mod attention512;
mod attention_bf16;
mod backbone;
mod bf16;
pub mod config;
mod cpu_encoder;
mod dequant;
mod embeddings;
mod encoder;
pub mod family;
mod kernels;
mod layers;
pub mod llama;
mod multiple_choice;
pub mod presets;
mod quant;
pub mod seeded_dropout;
mod timing;
pub mod weights;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

pub use bf16::Kernel as Bf16Kernel;
pub use config::{ModelConfig, ParamCounts};
pub use family::Family;
pub use multiple_choice::{cross_entropy, MultipleChoiceModel};
pub use quant::Kernel as Int8Kernel;
pub use timing::{linear_gemm_rates, GemmRates};
pub use weights::LoadReport;

/// How the model computes: a float dtype, or int8 linears (dynamic quantisation, CPU only;
/// everything else in f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    Bf16,
    F16,
    Int8,
}

impl Precision {
    /// The dtype the weights load in (int8 quantises from f32).
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 | Precision::Int8 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
            Precision::Int8 => "int8",
        }
    }
}

/// A model folder in the Hub's layout, loaded.
pub struct LoadedModel {
    pub model: MultipleChoiceModel,
    pub config: ModelConfig,
    pub dir: PathBuf,
    pub weight_files: Vec<PathBuf>,
    pub report: LoadReport,
}

impl LoadedModel {
    /// Loads `config.json` and the weights of `dir`. With `varmap`, every tensor is registered
    /// there as a trainable variable.
    pub fn load(
        dir: &Path,
        dtype: DType,
        device: &Device,
        varmap: Option<&VarMap>,
    ) -> Result<Self> {
        Self::load_with_overrides(dir, dtype, device, varmap, HashMap::new())
    }

    /// As [`LoadedModel::load`], with some tensors (canonical names) replaced, e.g. by a head
    /// trained with `race-eval train --head-only`.
    pub fn load_with_overrides(
        dir: &Path,
        dtype: DType,
        device: &Device,
        varmap: Option<&VarMap>,
        overrides: HashMap<String, Tensor>,
    ) -> Result<Self> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let weight_files = weights::find_weight_files(dir)?;
        Self::from_files(dir, config, weight_files, dtype, device, varmap, overrides)
    }

    /// As [`LoadedModel::load_with_overrides`], from a config and weight files already found
    /// (by `open::open_model`), so nothing is parsed or searched twice.
    pub fn from_files(
        dir: &Path,
        config: ModelConfig,
        weight_files: Vec<PathBuf>,
        dtype: DType,
        device: &Device,
        varmap: Option<&VarMap>,
        overrides: HashMap<String, Tensor>,
    ) -> Result<Self> {
        let mut ckpt = weights::Checkpoint::load(&weight_files, config.family)?;
        for (name, tensor) in overrides {
            ckpt.set(&name, tensor);
        }
        let (model, report) = weights::build_from_checkpoint(ckpt, dtype, device, varmap, |vb| {
            MultipleChoiceModel::load(vb, &config)
        })
        .with_context(|| format!("cannot load the model in {}", dir.display()))?;
        Ok(Self {
            model,
            config,
            dir: dir.to_path_buf(),
            weight_files,
            report,
        })
    }
}

impl LoadedModel {
    /// Loads a model for inference in `precision`, as `eval` and `bench` run it. On the CPU:
    ///
    /// - bf16: the encoder's linear weights go from the checkpoint file straight into packed
    ///   bf16 (a block of rows at a time, never an f32 copy of the model); everything else
    ///   loads in f32 and runs as in f32. The kernel is AVX512-BF16's where the CPU has it,
    ///   else AVX-512F on the same bf16 weights widened to f32 (warned), else the model runs
    ///   in f32 (warned);
    /// - int8: loads in f32, then quantises the linears and drops their f32 weights (warned,
    ///   and left in f32, where the CPU has no integer kernel).
    ///
    /// Elsewhere the weights load in `precision`'s dtype. Returns the warning, if any: what
    /// ran instead of what was asked.
    pub fn for_inference(
        dir: &Path,
        config: ModelConfig,
        weight_files: Vec<PathBuf>,
        precision: Precision,
        device: &Device,
        overrides: HashMap<String, Tensor>,
    ) -> Result<(Self, Option<String>)> {
        let f32 = DType::F32;
        match precision {
            Precision::Bf16 if device.is_cpu() => {
                let Some(kernel) = Bf16Kernel::detect() else {
                    let loaded =
                        Self::from_files(dir, config, weight_files, f32, device, None, overrides)?;
                    return Ok((
                        loaded,
                        Some("warning: this CPU has no AVX-512: --dtype bf16 runs in f32 (f32 speed and memory)".into()),
                    ));
                };
                let names = encoder::linear_weight_names(&config);
                let mut ckpt =
                    weights::Checkpoint::load_deferring(&weight_files, config.family, &|n| {
                        names.contains(n)
                    })?;
                for (name, tensor) in overrides {
                    ckpt.set(&name, tensor);
                }
                let deferred = ckpt.deferred().clone();
                let (model, report) =
                    weights::build_from_checkpoint(ckpt, f32, device, None, |vb| {
                        let mut m = MultipleChoiceModel::load(vb, &config)?;
                        m.backbone.pack_bf16(kernel, &deferred)?;
                        Ok(m)
                    })
                    .with_context(|| format!("cannot load the model in {}", dir.display()))?;
                let warning = (kernel != Bf16Kernel::Avx512Bf16).then(|| {
                    "warning: this CPU has AVX-512 but not AVX512-BF16: --dtype bf16 runs its bf16 weights widened to f32 (half the weight memory, f32 speed)".to_string()
                });
                let loaded = Self {
                    model,
                    config,
                    dir: dir.to_path_buf(),
                    weight_files,
                    report,
                };
                Ok((loaded, warning))
            }
            Precision::Int8 => {
                let mut loaded =
                    Self::from_files(dir, config, weight_files, f32, device, None, overrides)?;
                let warning = match loaded.quantize_int8()? {
                    Some(_) => None,
                    None => Some(
                        "warning: this CPU has no int8 kernel (AVX2 or AVX-512 VNNI): running in f32"
                            .to_string(),
                    ),
                };
                Ok((loaded, warning))
            }
            _ => {
                let loaded = Self::from_files(
                    dir,
                    config,
                    weight_files,
                    precision.dtype(),
                    device,
                    None,
                    overrides,
                )?;
                Ok((loaded, None))
            }
        }
    }

    /// Quantises the encoder's linears to int8 with the fastest kernel this CPU has. Returns
    /// the kernel, or `None` (the model stays f32) when the CPU has no integer kernel.
    pub fn quantize_int8(&mut self) -> Result<Option<Int8Kernel>> {
        self.model.quantize_int8()
    }
}

impl MultipleChoiceModel {
    /// Quantises the encoder's linears to int8 with the fastest kernel this CPU has. Returns
    /// the kernel, or `None` (the model stays f32) when the CPU has no integer kernel.
    pub fn quantize_int8(&mut self) -> Result<Option<Int8Kernel>> {
        let Some(kernel) = Int8Kernel::detect() else {
            return Ok(None);
        };
        self.backbone.quantize(kernel)?;
        Ok(Some(kernel))
    }

    /// Packs the encoder's linears in bf16 with the fastest bf16 kernel this CPU has (from the
    /// loaded f32 weights, which are dropped). Returns the kernel, or `None` (the model stays
    /// f32) when the CPU has no AVX-512.
    pub fn pack_bf16(&mut self) -> Result<Option<Bf16Kernel>> {
        let Some(kernel) = Bf16Kernel::detect() else {
            return Ok(None);
        };
        self.backbone.pack_bf16(kernel, &HashMap::new())?;
        Ok(Some(kernel))
    }
}

impl MultipleChoiceModel {
    /// Calibrates int8 smoothing (SmoothQuant, see `quant.rs`): `run` runs the quantised model
    /// over calibration inputs while every int8 linear records its input's per channel maxima;
    /// the linears are then requantised with the smoothing factors. A model that is not int8
    /// only runs `run`.
    pub fn calibrate_int8(&mut self, run: impl FnOnce(&Self) -> Result<()>) -> Result<()> {
        self.backbone.start_calibration();
        run(self)?;
        self.backbone.finish_calibration()?;
        Ok(())
    }
}

impl LoadReport {
    /// One warning line when head tensors had to be initialised, as for a backbone-only
    /// checkpoint such as `albert-base-v2`; `None` when the checkpoint was complete.
    pub fn warning(&self) -> Option<String> {
        if self.initialised.is_empty() {
            return None;
        }
        let mut parts: Vec<&str> = Vec::new();
        for name in &self.initialised {
            let part = name.rsplit_once('.').map_or(name.as_str(), |(p, _)| p);
            if !parts.contains(&part) {
                parts.push(part);
            }
        }
        Some(format!(
            "warning: the checkpoint has no {} weights (backbone only); they were initialised randomly, so accuracy is near chance until a head is trained (race-eval train) or given with --head",
            parts.join(" or ")
        ))
    }
}
