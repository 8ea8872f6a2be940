//! The one door: every command opens its models and data here, so a model or data set that one
//! command takes, every command takes.
//!
//! - [`open_model`]: a local folder, a Hub id `ORG/NAME[@REV]` (or `--revision`), a folder with
//!   only `spiece.model`, a head folder or a fully fine-tuned folder written by `train`. It
//!   returns the folder, config, tokenizer, weight files and their hash (computed once).
//! - [`open_data`]: RACE's tree, JSON lines, a parquet file or folder, or
//!   `hub:ORG/NAME[/CONFIG][@REV]` (`dev` is also `validation`).
//! - [`open_lm`]: a decoder LM in one GGUF file (weights, configuration, tokenizer) or a
//!   transformers Llama/Qwen2 folder; [`locate_decoder`] finds it locally or on the Hub (a Hub id
//!   whose config.json names Llama/Qwen2, or `ORG/NAME/FILE.gguf`).
//! - [`download`]: the same files fetched ahead of time.
//!
//! A mistyped local path is reported as a missing folder or file; only a name that could be a
//! Hub id is looked up on the Hub, and its error says so.

mod data;
mod download;
pub mod lm;
mod model;

pub use data::{open_data, OpenedData};
pub use download::{download, Downloaded};
pub use lm::{
    is_decoder_lm, is_gguf, locate_decoder, open_gguf, open_hf_folder, open_lm, LmLocation,
    OpenedLm,
};
pub use model::{fetch_model, open_config, open_model, plan_model, ModelPlan, OpenedModel};

pub use crate::hub::HubConfig;

/// The Hub settings from the environment, with progress bars unless `quiet`.
pub fn hub_config(quiet: bool) -> HubConfig {
    let mut cfg = HubConfig::from_env();
    cfg.progress = !quiet;
    cfg
}
