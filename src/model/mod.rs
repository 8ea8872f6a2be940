//! ALBERT and the BERT family in candle, one concern per file, following transformers'
//! `modeling_albert.py` (and `modeling_bert.py`, `modeling_roberta.py`, `modeling_distilbert.py`,
//! `modeling_electra.py`): [`family`] (what differs between families: tensor names, sharing,
//! positions, head), [`config`], [`embeddings`], [`attention`], [`encoder`] (the one layer
//! recipe), [`backbone`], [`multiple_choice`] (the RACE head), and [`weights`] (checkpoint
//! formats). [`cpu_encoder`] runs the same layers for f32 inference on the CPU on raw buffers,
//! with the kernels in [`kernels`].

// The public surface is the re-exports below and the modules a caller names: `config`,
// `family`, `presets`, `weights` (checkpoint formats), `seeded_dropout` (reproducible
// training). The layers and kernels stay inside.
mod activation;
mod attention;
mod attention512;
mod backbone;
pub mod config;
mod cpu_encoder;
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

pub use config::{ModelConfig, ParamCounts};
pub use family::Family;
pub use multiple_choice::{cross_entropy, MultipleChoiceModel};
pub use quant::Kernel as Int8Kernel;
pub use timing::linear_gemm_rates;
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
