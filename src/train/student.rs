//! A smaller student made from a larger model (`distill --student-layers N`): every (L/N)-th
//! layer of a BERT-family model, or fewer passes through ALBERT's shared layer; its config.json.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::family::Family;
use crate::model::ModelConfig;

/// The teacher layer each student layer starts from: every `L/N`-th, from the bottom
/// (6 -> 3: 0, 2, 4, as DistilBERT's every-other-layer initialisation).
pub fn layer_map(teacher_layers: usize, student_layers: usize) -> Vec<usize> {
    (0..student_layers)
        .map(|j| j * teacher_layers / student_layers)
        .collect()
}

/// How the student is made from the model folder given as `--student`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudentInit {
    /// Layers of the model the student starts from.
    pub from_layers: usize,
    /// Layers of the student.
    pub layers: usize,
    /// For BERT-family students, the source layer of each student layer; ALBERT shares one
    /// layer, so a smaller student only runs it fewer times (None).
    pub layer_map: Option<Vec<usize>>,
}

/// The student's config and initialisation for `--student-layers N` on `base`.
pub fn student_init(base: &ModelConfig, n: usize) -> Result<(ModelConfig, StudentInit)> {
    let l = base.num_hidden_layers;
    if n == 0 || n > l {
        bail!("--student-layers {n}: the student model has {l} layers; pick 1 to {l}");
    }
    let mut config = base.clone();
    config.num_hidden_layers = n;
    if base.family != Family::Albert {
        // One weight group per layer outside ALBERT.
        config.num_hidden_groups = n;
    }
    let layer_map = (base.family != Family::Albert).then(|| layer_map(l, n));
    if base.family == Family::Albert && base.num_hidden_groups > n {
        bail!(
            "--student-layers {n}: this ALBERT has {} layer groups, more than {n} layers; pick at least {}",
            base.num_hidden_groups,
            base.num_hidden_groups
        );
    }
    Ok((
        config,
        StudentInit {
            from_layers: l,
            layers: n,
            layer_map,
        },
    ))
}

/// The student's config.json: the model's own text with `num_hidden_layers` replaced (and
/// DistilBERT's `n_layers`), so every other field stays as the Hub wrote it.
pub fn student_config_json(text: &str, layers: usize) -> Result<String> {
    let mut v: serde_json::Value =
        serde_json::from_str(text).context("the student's config.json is not valid JSON")?;
    let obj = v
        .as_object_mut()
        .context("the student's config.json is not a JSON object")?;
    for key in ["num_hidden_layers", "n_layers"] {
        if obj.contains_key(key) {
            obj.insert(key.to_string(), layers.into());
        }
    }
    Ok(serde_json::to_string_pretty(&v)? + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_maps_take_every_kth_layer() {
        assert_eq!(layer_map(6, 3), [0, 2, 4]);
        assert_eq!(layer_map(12, 6), [0, 2, 4, 6, 8, 10]);
        assert_eq!(layer_map(12, 4), [0, 3, 6, 9]);
        assert_eq!(layer_map(3, 3), [0, 1, 2]);
        assert_eq!(layer_map(5, 1), [0]);
    }

    #[test]
    fn student_config_keeps_other_fields() -> Result<()> {
        let text = r#"{"model_type": "bert", "num_hidden_layers": 6, "hidden_size": 384}"#;
        let out: serde_json::Value = serde_json::from_str(&student_config_json(text, 3)?)?;
        assert_eq!(out["num_hidden_layers"], 3);
        assert_eq!(out["hidden_size"], 384);
        assert_eq!(out["model_type"], "bert");
        Ok(())
    }
}
