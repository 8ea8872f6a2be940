//! race-eval: evaluate ALBERT on RACE-style multiple-choice reading comprehension.
//!
//! Where things live: [`model`] (ALBERT in candle), [`data`] (RACE loaders and validation),
//! [`features`] (tokenisation and formatting as ALBERT's RACE recipe), [`eval`] (batching,
//! inference, predictions), [`metrics`] (accuracy), [`stats`] (intervals, paired tests), [`results`] (run records,
//! leaderboards, ensembles, shards), [`hub`] (models and datasets from the Hugging Face Hub), [`train`] (fine-tuning:
//! full and head-only), [`cli`] (the command line).

pub mod bench;
pub mod cli;
pub mod data;
pub mod eval;
pub mod features;
pub mod hub;
pub mod metrics;
pub mod model;
pub mod results;
pub mod stats;
pub mod train;
