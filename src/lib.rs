//! race-eval: evaluate ALBERT on RACE-style multiple-choice reading comprehension.
//!
//! Where things live: [`model`] (ALBERT in candle), [`data`] (RACE loaders and validation),
//! [`features`] (tokenisation and formatting as ALBERT's RACE recipe), [`eval`] (batching,
//! inference, predictions), [`metrics`] (accuracy), [`train`] (fine-tuning: full and head-only),
//! [`cli`] (the command line).

pub mod cli;
pub mod data;
pub mod eval;
pub mod features;
pub mod metrics;
pub mod model;
pub mod train;
