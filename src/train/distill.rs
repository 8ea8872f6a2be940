//! Knowledge distillation (`race-eval distill`): soft targets from one or more teachers (models,
//! or run records of `race-eval eval`), and the student's starting point (a smaller pretrained
//! model, every k-th layer of a BERT-family teacher, or an ALBERT with fewer repetitions of its
//! shared layer). The loss itself is [`super::objective::SoftTargets`]; training is
//! [`super::trainer::train`] with [`super::TrainOptions::teachers`] set.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::files;
use super::trainer::{self, TrainOptions, TrainReport};
use crate::data::{self, LoadOptions, Question};
use crate::eval::pipeline::{self, EvalRequest};
use crate::eval::Prediction;
use crate::model::family::Family;
use crate::model::{ModelConfig, Precision};
use crate::results::Run;

/// The file in the output folder with one line per training question: its id, gold option, the
/// averaged teacher probabilities the student was trained on, and each teacher's.
pub const SOFT_TARGETS_FILE: &str = "soft_targets.jsonl";

/// Distillation's hyperparameters (part of [`super::TrainConfig`], so `--resume` checks them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    /// Weight of the soft (teacher) term; `1 - alpha` goes to the gold label's cross-entropy.
    pub alpha: f64,
    /// Softmax temperature of both teacher and student in the soft term.
    pub temperature: f64,
    /// Encoder layers of the student (None: the student model's own).
    pub student_layers: Option<usize>,
}

impl DistillConfig {
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.alpha) {
            bail!("--alpha must be in [0, 1], got {}", self.alpha);
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            bail!("--temperature must be positive, got {}", self.temperature);
        }
        if self.student_layers == Some(0) {
            bail!("--student-layers must be at least 1");
        }
        Ok(())
    }
}

/// Where a teacher's answers came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TeacherSource {
    /// A run record: its folder and id.
    Run { dir: String, run_id: String },
    /// A model evaluated on the training split for this run.
    Model { model: String, weights_hash: String },
}

/// The teachers' probabilities at the run's temperature, per question id.
#[derive(Debug, Clone)]
pub struct Teachers {
    pub sources: Vec<TeacherSource>,
    /// Averaged over teachers.
    pub probs: HashMap<String, Vec<f32>>,
    /// SHA-256 of the soft-targets file's text: part of the run's fingerprint.
    pub hash: String,
    /// The soft-targets file's text.
    pub jsonl: String,
}

/// Softmax of `logits / t`.
pub fn softmax_t(logits: &[f32], t: f64) -> Vec<f32> {
    let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = logits.iter().map(|&z| ((z as f64 - m) / t).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| (x / s) as f32).collect()
}

/// One teacher's logits per question id, with a description of where they live (for errors).
struct TeacherAnswers {
    source: TeacherSource,
    origin: String,
    by_id: HashMap<String, Prediction>,
}

/// Averages the teachers' softmax at `t` over `questions`. Every question must have an answer
/// from every teacher with as many logits as options and the same gold option (else the teacher
/// saw other data): the error names the teacher, the question and the field.
fn average(
    answers: &[TeacherAnswers],
    questions: &[Question],
    data: &Path,
    t: f64,
) -> Result<(HashMap<String, Vec<f32>>, String)> {
    let mut probs = HashMap::new();
    let mut jsonl = String::new();
    for q in questions {
        let mut each = Vec::with_capacity(answers.len());
        for a in answers {
            let p = a.by_id.get(&q.id).with_context(|| {
                format!(
                    "teacher {}: no answer for training question `{}` of --data {}; a teacher run must cover the --split it trains on (evaluate the teacher on it with `race-eval eval`)",
                    a.origin,
                    q.id,
                    data.display()
                )
            })?;
            if p.logits.len() != q.options.len() {
                bail!(
                    "teacher {}: question `{}`, field `logits` has {} values but the question has {} options",
                    a.origin,
                    q.id,
                    p.logits.len(),
                    q.options.len()
                );
            }
            if p.logits.iter().any(|z| !z.is_finite()) {
                bail!(
                    "teacher {}: question `{}`, field `logits` is not finite: {:?}",
                    a.origin,
                    q.id,
                    p.logits
                );
            }
            if p.label != q.label {
                bail!(
                    "teacher {}: question `{}`, field `label` is {} but --data {} says {}: the teacher was evaluated on other data",
                    a.origin,
                    q.id,
                    p.label,
                    data.display(),
                    q.label
                );
            }
            each.push(softmax_t(&p.logits, t));
        }
        let n = each.len() as f32;
        let mean: Vec<f32> = (0..q.options.len())
            .map(|i| each.iter().map(|p| p[i]).sum::<f32>() / n)
            .collect();
        jsonl += &serde_json::to_string(&serde_json::json!({
            "id": q.id,
            "label": q.label,
            "probs": mean,
            "teachers": each,
        }))?;
        jsonl.push('\n');
        probs.insert(q.id.clone(), mean);
    }
    Ok((probs, jsonl))
}

/// What `race-eval distill` needs beyond `race-eval train`'s options.
pub struct DistillOptions {
    /// Run records (folders or ids under `results_dir`) or models.
    pub teachers: Vec<String>,
    pub results_dir: PathBuf,
    /// Options of the training run; `train.model` is the student, `train.config.distill` set.
    pub train: TrainOptions,
}

fn teacher_answers(
    spec: &str,
    opts: &DistillOptions,
    questions: &[Question],
) -> Result<TeacherAnswers> {
    let by_id = |preds: Vec<Prediction>| -> HashMap<String, Prediction> {
        preds.into_iter().map(|p| (p.id.clone(), p)).collect()
    };
    if let Ok(dir) = Run::find(spec, &opts.results_dir) {
        let run = Run::load(&dir.display().to_string(), &opts.results_dir)?;
        let origin = format!(
            "run {} ({})",
            run.id(),
            dir.join(crate::results::PREDICTIONS_FILE).display()
        );
        return Ok(TeacherAnswers {
            source: TeacherSource::Run {
                dir: dir.display().to_string(),
                run_id: run.id().to_string(),
            },
            origin,
            by_id: by_id(run.predictions),
        });
    }
    let t = &opts.train;
    let req = EvalRequest {
        model: PathBuf::from(spec),
        revision: None,
        head: None,
        data: t.data.clone(),
        split: t.split.clone(),
        level: t.level,
        skip_invalid: false,
        shard: None,
        format: t.config.format,
        batch_size: t.eval_batch_size,
        device: device_name(&t.device),
        precision: Precision::F32,
        quiet: t.quiet,
    };
    if !t.quiet {
        eprintln!(
            "teacher {spec}: evaluating it on the {} training questions",
            questions.len()
        );
    }
    let out = pipeline::evaluate(&req).with_context(|| {
        format!(
            "--teacher {spec}: not a run record (no summary.json there or under --results-dir {}), and it cannot be evaluated as a model",
            opts.results_dir.display()
        )
    })?;
    Ok(TeacherAnswers {
        source: TeacherSource::Model {
            model: spec.to_string(),
            weights_hash: crate::hash::sha256_files(&out.weight_files)?,
        },
        origin: format!("model {spec}"),
        by_id: by_id(out.predictions),
    })
}

fn device_name(d: &candle_core::Device) -> String {
    match d {
        candle_core::Device::Cpu => "cpu".into(),
        candle_core::Device::Cuda(_) => "cuda".into(),
        candle_core::Device::Metal(_) => "metal".into(),
    }
}

/// Soft targets for the training split from every teacher (averaged probabilities).
pub fn teachers(opts: &DistillOptions) -> Result<Teachers> {
    let cfg = opts.train.config.distill.as_ref().context(
        "distillation settings are missing (TrainOptions.config.distill): set alpha and temperature",
    )?;
    cfg.validate()?;
    if opts.teachers.is_empty() {
        bail!("--teacher: name at least one teacher (a run record or a model)");
    }
    let t = &opts.train;
    let lo = LoadOptions {
        split: t.split.clone(),
        level: t.level,
        skip_invalid: false,
    };
    let ds = data::load(&t.data, &lo).with_context(|| {
        format!(
            "--split {}: cannot load --data {}",
            t.split,
            t.data.display()
        )
    })?;
    let answers = opts
        .teachers
        .iter()
        .map(|spec| teacher_answers(spec, opts, &ds.questions))
        .collect::<Result<Vec<_>>>()?;
    let (probs, jsonl) = average(&answers, &ds.questions, &t.data, cfg.temperature)?;
    Ok(Teachers {
        sources: answers.into_iter().map(|a| a.source).collect(),
        probs,
        hash: crate::hash::sha256_str(&jsonl),
        jsonl,
    })
}

/// Runs `race-eval distill`: soft targets, then training with them (written beside the weights).
pub fn distill(mut opts: DistillOptions) -> Result<(TrainReport, Teachers)> {
    let teachers = teachers(&opts)?;
    std::fs::create_dir_all(&opts.train.output)
        .with_context(|| format!("cannot create --output {}", opts.train.output.display()))?;
    files::write_text(&opts.train.output.join(SOFT_TARGETS_FILE), &teachers.jsonl)?;
    opts.train.teachers = Some(teachers.clone());
    let report = trainer::train(&opts.train)?;
    Ok((report, teachers))
}

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

/// What meta.json records about a distilled model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillMeta {
    pub teachers: Vec<TeacherSource>,
    pub soft_targets_file: String,
    pub soft_targets_hash: String,
    pub student: Option<StudentInit>,
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
    fn softmax_at_temperature() {
        let p = softmax_t(&[2.0, 0.0, 0.0], 2.0);
        let e = 1f64.exp();
        assert!((p[0] as f64 - e / (e + 2.0)).abs() < 1e-6);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // Large logits do not overflow.
        let p = softmax_t(&[1000.0, 0.0], 1.0);
        assert_eq!(p, [1.0, 0.0]);
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
