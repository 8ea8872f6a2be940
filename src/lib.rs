//! race-eval: evaluate ALBERT and BERT-family encoders on RACE-style multiple-choice reading
//! comprehension.
//!
//! Where things live: [`model`] (the encoders in candle; [`model::family`] says what differs
//! between families), [`data`] (RACE loaders and validation), [`features`] (tokenisation and
//! formatting as ALBERT's RACE recipe), [`eval`] (batching, inference, predictions, and a whole
//! evaluation in [`eval::pipeline`]), [`metrics`] (accuracy), [`stats`] (intervals, paired
//! tests), [`results`] (run records, leaderboards, ensembles, shards), [`hub`] (models and
//! datasets from the Hugging Face Hub), [`train`] (fine-tuning: full and head-only), [`bench`]
//! (speed), [`hash`] (the one content hash), [`device`], [`progress`], and [`cli`] (argument
//! parsing and printing only).

pub mod bench;
pub mod cli;
pub mod data;
pub mod device;
pub mod eval;
pub mod features;
pub mod hash;
pub mod hub;
pub mod metrics;
pub mod model;
pub mod progress;
pub mod results;
pub mod stats;
pub mod train;
