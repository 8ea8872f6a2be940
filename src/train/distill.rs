//! Knowledge distillation (`race-eval distill`): soft targets from one or more teachers (models,
//! or run records of `race-eval eval`), and the student's starting point (a smaller pretrained
//! model, every k-th layer of a BERT-family teacher, or an ALBERT with fewer repetitions of its
//! shared layer). The loss itself is [`super::objective::SoftTargets`]; training is
//! [`super::trainer::train`] with [`super::TrainOptions::teachers`] set.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use super::student::{layer_map, student_config_json, student_init, StudentInit};
pub use super::targets::{
    softmax_t, DistillConfig, DistillMeta, TeacherSource, Teachers, SOFT_TARGETS_FILE,
};
use super::trainer::{self, TrainOptions, TrainReport};
use crate::data::Question;
use crate::eval::pipeline::{self, EvalRequest};
use crate::heads::files;
use crate::model::Precision;
use crate::open::OpenedData;
use crate::results::Prediction;
use crate::results::Run;

/// One teacher's logits per question id, with a description of where they live (for errors).
struct TeacherAnswers {
    source: TeacherSource,
    origin: String,
    by_id: HashMap<String, Prediction>,
    /// From evaluating a model teacher, for the caller to show.
    warnings: Vec<String>,
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

fn teacher_answers(spec: &str, opts: &DistillOptions, data: &OpenedData) -> Result<TeacherAnswers> {
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
            warnings: Vec::new(),
        });
    }
    let t = &opts.train;
    let req = EvalRequest {
        model: PathBuf::from(spec),
        revision: None,
        head: None,
        data: t.data.clone(),
        task: t.task,
        split: t.split.clone(),
        level: t.level,
        skip_invalid: false,
        shard: None,
        format: t.config.format,
        batch_size: t.eval_batch_size,
        // The device exactly as the user wrote it (`cuda:1` stays `cuda:1`).
        device: t.device.clone(),
        precision: Precision::F32,
        quiet: t.quiet,
    };
    let not_a_run = || {
        format!(
            "--teacher {spec}: not a run record (no summary.json there or under --results-dir {}), and it cannot be evaluated as a model",
            opts.results_dir.display()
        )
    };
    let hub = crate::open::hub_config(t.quiet);
    let model = crate::open::open_model(spec, None, &hub).with_context(not_a_run)?;
    let out = pipeline::evaluate_opened(&req, model, data.clone()).with_context(not_a_run)?;
    Ok(TeacherAnswers {
        source: TeacherSource::Model {
            model: out.model.pinned(),
            weights_hash: out.model.weights_hash()?.to_string(),
        },
        origin: format!("model {spec}"),
        by_id: by_id(out.predictions),
        warnings: out.warnings,
    })
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
    let hub = crate::open::hub_config(t.quiet);
    let data = crate::open::open_data(&t.data, &t.split, t.level, &hub)
        .with_context(|| format!("--split {}", t.split))?
        .with_task(t.task);
    let ds = data.load(t.level, false)?;
    let answers = opts
        .teachers
        .iter()
        .map(|spec| teacher_answers(spec, opts, &data))
        .collect::<Result<Vec<_>>>()?;
    let (probs, jsonl) = average(&answers, &ds.questions, &t.data, cfg.temperature)?;
    let warnings = answers.iter().flat_map(|a| a.warnings.clone()).collect();
    Ok(Teachers {
        sources: answers.into_iter().map(|a| a.source).collect(),
        probs,
        hash: crate::hash::sha256_str(&jsonl),
        jsonl,
        warnings,
    })
}

/// Runs `race-eval distill`: soft targets, then training with them (written beside the weights).
pub fn distill(mut opts: DistillOptions) -> Result<(TrainReport, Teachers)> {
    // A device this build cannot use is reported before any teacher is evaluated.
    crate::device::parse(&opts.train.device)?;
    let teachers = teachers(&opts)?;
    std::fs::create_dir_all(&opts.train.output)
        .with_context(|| format!("cannot create --output {}", opts.train.output.display()))?;
    files::write_text(&opts.train.output.join(SOFT_TARGETS_FILE), &teachers.jsonl)?;
    opts.train.teachers = Some(teachers.clone());
    let report = trainer::train(&opts.train)?;
    Ok((report, teachers))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Model teachers run on the device as the user wrote it: `cuda:1` stays `cuda:1` (it
    /// used to be turned into a name, `cuda`, and parsed back as device 0).
    #[test]
    fn model_teachers_get_the_device_as_written() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let train = TrainOptions {
            model: root
                .join("datasets/models/tiny-albert")
                .display()
                .to_string(),
            revision: None,
            data: root.join("datasets/sample"),
            task: crate::data::Task::Race,
            split: "test".into(),
            dev_split: "dev".into(),
            level: crate::data::LevelFilter::All,
            output: std::env::temp_dir().join("race-eval-unused"),
            config: super::super::TrainConfig {
                distill: Some(DistillConfig {
                    alpha: 0.5,
                    temperature: 2.0,
                    student_layers: None,
                }),
                ..Default::default()
            },
            resume: false,
            cache_dir: None,
            device: "cuda:1".into(),
            epochs: None,
            eval_batch_size: 8,
            stop_after: None,
            quiet: true,
            teachers: None,
        };
        let opts = DistillOptions {
            teachers: vec![train.model.clone()],
            results_dir: root.join("no-results-here"),
            train,
        };
        if candle_core::utils::cuda_is_available() {
            // A CUDA build would try the GPU itself: nothing to learn from the message.
            return;
        }
        let seen = format!("{:#}", teachers(&opts).unwrap_err());
        assert!(seen.contains("--device cuda:1"), "{seen}");
    }
}
