//! race-eval: evaluate ALBERT and BERT-family encoders, and zero-shot decoder LMs (Llama
//! architecture, from GGUF files) scored as lm-evaluation-harness does, on RACE-style
//! multiple-choice reading comprehension.
//!
//! The layers, lowest first (imports run one way; `tests/layers.rs` checks it):
//!
//! 1. [`hash`], [`device`], [`progress`], [`paths`]: small shared utilities; [`hub`]: the Hugging Face
//!    Hub's cache and transfers, knowing nothing of models or RACE.
//! 2. [`model`] (the encoders in candle, and the Llama decoder in [`model::llama`]) and [`data`] (RACE loaders and validation), with
//!    [`metrics`] (accuracy) and [`stats`] (intervals, paired tests).
//! 3. [`features`]: tokenisation (tokenizer files, the SentencePiece conversion, GGUF
//!    tokenizers) and formatting as ALBERT's RACE recipe or lm-evaluation-harness' prompts.
//! 4. [`heads`]: head folders written by `train` and their provenance.
//! 5. [`open`]: the one door every command opens models and data through.
//! 6. [`results`]: predictions, run records, leaderboards, comparisons, ensembles, shards,
//!    plots: it knows predictions, never models.
//! 7. [`eval`] (batching, inference, a whole evaluation in [`eval::pipeline`]), [`train`]
//!    (fine-tuning and distillation) and [`bench`] (speed) compose the layers below.
//! 8. [`cli`]: argument parsing and printing only.

pub mod bench;
pub mod cli;
pub mod data;
pub mod device;
pub mod eval;
pub mod features;
pub mod hash;
pub mod heads;
pub mod hub;
pub mod metrics;
pub mod model;
pub mod open;
pub mod paths;
pub mod progress;
pub mod results;
pub mod stats;
pub mod train;
