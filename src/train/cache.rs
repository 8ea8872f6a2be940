//! Head-only training: backbone outputs for every (question, option), computed once with the
//! frozen backbone and cached on disk as safetensors, keyed by the weights hash, the data hash,
//! the formatting and the kind of feature.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use indicatif::ProgressBar;

use crate::eval;
use crate::features::{Features, FormatConfig};
use crate::heads::files;
use crate::model::MultipleChoiceModel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    /// The pooler's output (what the classifier reads).
    Pooled,
    /// The last hidden state of [CLS] (what the pooler reads).
    Cls,
}

impl FeatureKind {
    pub fn name(self) -> &'static str {
        match self {
            FeatureKind::Pooled => "pooled",
            FeatureKind::Cls => "cls",
        }
    }
}

/// The cache file for one (weights, data, formatting, kind).
pub fn cache_path(
    dir: &Path,
    weights_hash: &str,
    data_hash: &str,
    format: &FormatConfig,
    kind: FeatureKind,
) -> PathBuf {
    let fmt = serde_json::to_string(format).expect("serialisable");
    let key = crate::hash::sha256_parts(&[
        "race-eval features v1",
        weights_hash,
        data_hash,
        &fmt,
        kind.name(),
    ]);
    dir.join(format!("{}-{}.safetensors", kind.name(), &key[..24]))
}

/// Backbone outputs (questions, choices, hidden) for `features`, in input order.
pub fn compute(
    model: &MultipleChoiceModel,
    features: &[Features],
    kind: FeatureKind,
    batch_size: usize,
    pad_id: u32,
    device: &Device,
    progress: Option<&ProgressBar>,
) -> Result<Tensor> {
    let mut rows: Vec<Option<Tensor>> = vec![None; features.len()];
    for batch in eval::plan_batches(features, batch_size) {
        let feats: Vec<&Features> = batch.iter().map(|&i| &features[i]).collect();
        let (ids, types, mask) = eval::batch_tensors(&feats, pad_id, device)?;
        let (b, c, l) = ids.dims3()?;
        let flat = |t: &Tensor| t.reshape((b * c, l));
        let cls = model
            .backbone
            .cls_output(&flat(&ids)?, &flat(&types)?, &flat(&mask)?, false)?;
        let out = match kind {
            FeatureKind::Pooled => model.pool(&cls)?,
            FeatureKind::Cls => cls,
        };
        let h = out.dim(1)?;
        let out = out.to_dtype(DType::F32)?.reshape((b, c, h))?;
        for (k, &i) in batch.iter().enumerate() {
            rows[i] = Some(out.get(k)?);
        }
        if let Some(p) = progress {
            p.inc(batch.len() as u64);
        }
    }
    let rows: Vec<Tensor> = rows.into_iter().map(|r| r.expect("every row")).collect();
    Ok(Tensor::stack(&rows, 0)?)
}

/// Features from the cache, or computed and saved there.
pub struct Cached {
    pub features: Tensor,
    /// Whether they came from the cache.
    pub hit: bool,
    /// A cache file that was there but unreadable or stale (and was recomputed).
    pub warning: Option<String>,
}

/// Loads the cached features at `path`, or computes and saves them.
pub fn load_or_compute(
    path: &Path,
    expect_rows: usize,
    compute: impl FnOnce() -> Result<Tensor>,
) -> Result<Cached> {
    let mut warning = None;
    if path.is_file() {
        if let Ok(t) = files::load_tensors(path) {
            if let Some(x) = t.get("features") {
                if x.dims().first() == Some(&expect_rows) {
                    return Ok(Cached {
                        features: x.clone(),
                        hit: true,
                        warning: None,
                    });
                }
            }
        }
        warning = Some(format!(
            "the feature cache {} was unreadable or stale; it was recomputed",
            path.display()
        ));
    }
    let x = compute()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the cache folder {}", dir.display()))?;
    }
    let map = std::collections::HashMap::from([("features".to_string(), x.clone())]);
    files::save_tensors(path, &map)?;
    Ok(Cached {
        features: x,
        hit: false,
        warning,
    })
}
