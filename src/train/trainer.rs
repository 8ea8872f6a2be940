//! A training run in named steps, each short enough to read at once: [`open_inputs`] (model and
//! both splits through [`crate::open`]), [`prepare_data`] (loaded, labelled and tokenised once),
//! [`fingerprint`] (what `--resume` must match), [`build_objective`] (full model or cached head
//! features), [`OutputFolder`] (config, tokenizer, meta.json, checkpoints and resume), and
//! [`run_loop`] (data order, gradient accumulation, clipping, AdamW, dev evaluation).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::cache::{self, FeatureKind};
use super::checkpoint::{self, CheckpointState};
use super::objective::{labels_of, FullModel, Head, Objective, SoftTargets, Split};
use super::optimizer::{clip_grad_norm, AdamW};
use super::student::{self, StudentInit};
use super::targets::{self, DistillMeta};
use super::{DevPoint, Mode, TrainConfig};
use crate::data::{self, LevelFilter};
use crate::features::{Features, TextEncoder};
use crate::heads::{self, files, HeadMeta};
use crate::model::seeded_dropout::{self, derive_seed, SplitMix64};
use crate::model::{weights, ModelConfig, MultipleChoiceModel};
use crate::open::{self, OpenedData, OpenedModel};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossPoint {
    /// Optimizer step, 1-based.
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
}

pub struct TrainOptions {
    /// The model to train, as the user wrote it: a folder or a Hub id (see [`crate::open`]).
    pub model: String,
    pub revision: Option<String>,
    /// `--data` as the user wrote it: a path or `hub:ORG/NAME[/CONFIG][@REV]`.
    pub data: PathBuf,
    /// How the data is read.
    pub task: crate::data::Task,
    pub split: String,
    pub dev_split: String,
    pub level: LevelFilter,
    pub output: PathBuf,
    pub config: TrainConfig,
    pub resume: bool,
    /// Where head-only features are cached (default: `.cache/` next to the output folder).
    pub cache_dir: Option<PathBuf>,
    /// `cpu`, `cuda[:N]` or `metal`, as the user wrote it.
    pub device: String,
    /// Train for this many passes over the training split instead of `config.total_steps`.
    pub epochs: Option<Epochs>,
    pub eval_batch_size: usize,
    /// Stop after this many optimizer steps in this invocation (the schedule still spans
    /// `total_steps`); the checkpoint is saved when stopping, so `--resume` continues.
    pub stop_after: Option<usize>,
    pub quiet: bool,
    /// Soft targets for `config.distill` (made by [`super::distill::teachers`]).
    pub teachers: Option<targets::Teachers>,
}

/// `--epochs`: the run's length in passes over the training split, resolved to steps once the
/// split is loaded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Epochs {
    pub passes: f64,
    /// `--warmup-steps` when given; else 1/12 of the steps, as the recipe's 1,000 of 12,000.
    pub warmup_steps: Option<usize>,
}

impl Epochs {
    /// Sets `cfg.total_steps` (and the warmup) for `questions` training questions.
    pub fn apply(&self, cfg: &mut TrainConfig, questions: usize) -> Result<()> {
        let e = self.passes;
        if e.is_nan() || e <= 0.0 {
            bail!("--epochs must be positive, got {e}");
        }
        let per_step = cfg.batch_size.max(1) as f64;
        cfg.total_steps = ((e * questions as f64) / per_step).ceil().max(1.0) as usize;
        cfg.warmup_steps = self.warmup_steps.unwrap_or(cfg.total_steps / 12);
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct TrainReport {
    pub steps_done: usize,
    pub loss_log: Vec<LossPoint>,
    pub dev_history: Vec<DevPoint>,
    pub best: Option<DevPoint>,
    /// Whether the head-only features came from the cache.
    pub cache_hit: Option<bool>,
    pub output: PathBuf,
    /// What the caller should show the user (a collapse to chance), also printed above the
    /// progress bar as it happens.
    pub warnings: Vec<String>,
}

/// Question indices of optimizer step `step`: a fresh permutation every epoch, all derived from
/// the seed, so any step's batch can be recomputed (which is what makes resume exact).
pub struct DataOrder {
    seed: u64,
    n: usize,
    perms: HashMap<usize, Vec<usize>>,
}

impl DataOrder {
    pub fn new(seed: u64, n: usize) -> Self {
        Self {
            seed,
            n,
            perms: HashMap::new(),
        }
    }

    pub fn batch(&mut self, step: usize, batch_size: usize) -> Vec<usize> {
        (step * batch_size..(step + 1) * batch_size)
            .map(|p| {
                let (epoch, k) = (p / self.n, p % self.n);
                let (seed, n) = (self.seed, self.n);
                self.perms.entry(epoch).or_insert_with(|| {
                    let mut rng = SplitMix64(derive_seed(&[seed, 0xDA7A, epoch as u64]));
                    let mut perm: Vec<usize> = (0..n).collect();
                    for i in (1..n).rev() {
                        perm.swap(i, rng.below(i + 1));
                    }
                    perm
                })[k]
            })
            .collect()
    }
}

/// One optimizer step: gradients of `micro` passes accumulated (pass `i` returns its mean loss
/// and its weight, the share of the batch it covers), clipped to `max_norm`, then AdamW at `lr`.
/// Returns (loss, gradient norm before clipping); stops at a non-finite loss before updating.
pub fn optimizer_step(
    vars: &[(String, Var)],
    opt: &mut AdamW,
    micro: usize,
    mut pass: impl FnMut(usize) -> Result<(Tensor, f64)>,
    max_norm: f64,
    lr: f64,
) -> Result<(f64, f64)> {
    let mut grads: HashMap<String, Tensor> = HashMap::new();
    let mut loss = 0.0;
    for i in 0..micro {
        let (l, weight) = pass(i)?;
        let value = l.to_dtype(DType::F32)?.to_scalar::<f32>()? as f64;
        if !value.is_finite() {
            bail!("the loss is {value}");
        }
        loss += weight * value;
        let g = (l * weight)?.backward()?;
        for (name, var) in vars {
            if let Some(gi) = g.get(var.as_tensor()) {
                let sum = match grads.remove(name) {
                    Some(acc) => (acc + gi)?,
                    None => gi.clone(),
                };
                grads.insert(name.clone(), sum);
            }
        }
    }
    let norm = clip_grad_norm(&mut grads, max_norm)?;
    if !norm.is_finite() {
        bail!("the gradient norm is {norm}");
    }
    opt.step(&grads, lr)?;
    // An update can overflow even from finite gradients (an absurd learning rate): stop before
    // such weights reach a checkpoint.
    for (name, var) in vars {
        let sum = var
            .as_tensor()
            .sum_all()?
            .to_dtype(DType::F32)?
            .to_scalar::<f32>()?;
        if !sum.is_finite() {
            bail!("the weights of `{name}` are no longer finite after the update");
        }
    }
    Ok((loss, norm))
}

fn tensors_of(vars: &[(String, Var)]) -> HashMap<String, Tensor> {
    vars.iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect()
}

fn data_hash(ds: &data::Dataset, split: &str, level: LevelFilter) -> Result<String> {
    let files_hash = crate::hash::sha256_files(&ds.files)?;
    Ok(crate::hash::sha256_parts(&[
        &files_hash,
        split,
        &format!("{level:?}"),
    ]))
}

/// A model config with the run's dropout overrides applied.
pub fn effective_config(base: &ModelConfig, cfg: &TrainConfig) -> ModelConfig {
    let mut c = base.clone();
    if let Some(p) = cfg.hidden_dropout {
        c.hidden_dropout_prob = p;
    }
    if let Some(p) = cfg.attention_dropout {
        c.attention_probs_dropout_prob = p;
    }
    if let Some(p) = cfg.classifier_dropout {
        c.classifier_dropout_prob = Some(p);
    }
    c
}

/// Builds the multiple-choice model from `files` with `config`; with `varmap`, every weight
/// becomes trainable. Head tensors missing from the checkpoint are initialised.
pub fn build_model(
    files: &[PathBuf],
    config: &ModelConfig,
    device: &Device,
    varmap: Option<&VarMap>,
) -> Result<MultipleChoiceModel> {
    build_student(files, config, device, varmap, None)
}

/// [`build_model`] for a student whose encoder layer `j` starts from the checkpoint's layer
/// `layer_map[j]` (None: the checkpoint's own layers).
pub fn build_student(
    files: &[PathBuf],
    config: &ModelConfig,
    device: &Device,
    varmap: Option<&VarMap>,
    layer_map: Option<&[usize]>,
) -> Result<MultipleChoiceModel> {
    let mut ckpt = weights::Checkpoint::load(files, config.family)?;
    if let Some(map) = layer_map {
        ckpt.keep_layers(map)?;
    }
    // No warning for missing head tensors: training initialises and trains them.
    let (model, _report) =
        weights::build_from_checkpoint(ckpt, DType::F32, device, varmap, |vb| {
            MultipleChoiceModel::load(vb, config)
        })?;
    Ok(model)
}

/// Initial head tensors: from the checkpoint when present, else transformers' initialisation
/// (normal(0, initializer_range) weights, zero biases) drawn from the run's seed.
fn head_init(
    files: &[PathBuf],
    config: &ModelConfig,
    names: &[(&str, Vec<usize>)],
    seed: u64,
    device: &Device,
) -> Result<VarMap> {
    let ckpt = weights::Checkpoint::load(files, config.family)?;
    let varmap = VarMap::new();
    let mut rng = SplitMix64(derive_seed(&[seed, 0x11EAD]));
    for (name, shape) in names {
        let t = match ckpt.get(name) {
            Some((t, _)) if t.dims() == shape.as_slice() => t.to_dtype(DType::F32)?,
            _ if name.ends_with("bias") => Tensor::zeros(shape.clone(), DType::F32, device)?,
            _ => {
                let n: usize = shape.iter().product();
                let v: Vec<f32> = (0..n)
                    .map(|_| {
                        // Box-Muller
                        let u1 = (rng.next_f32() as f64).max(1e-12);
                        let u2 = rng.next_f32() as f64;
                        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                        (z * config.initializer_range) as f32
                    })
                    .collect();
                Tensor::from_vec(v, shape.clone(), device)?
            }
        };
        let var = Var::from_tensor(&t.to_device(device)?)?;
        varmap.data().lock().unwrap().insert(name.to_string(), var);
    }
    Ok(varmap)
}

fn bar(total: usize, start: usize, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(total as u64);
    b.set_style(
        ProgressStyle::with_template(
            "{spinner} train [{bar:30}] {pos}/{len} steps, {per_sec}, ETA {eta} | {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    b.set_position(start as u64);
    b
}

fn write_loss_csv(path: &Path, log: &[LossPoint], dev: &[DevPoint]) -> Result<()> {
    let dev: HashMap<usize, f64> = dev.iter().map(|d| (d.step, d.accuracy)).collect();
    let mut s = String::from("step,loss,lr,grad_norm,dev_accuracy\n");
    for p in log {
        let acc = dev
            .get(&p.step)
            .map(|a| format!("{a:.6}"))
            .unwrap_or_default();
        s += &format!(
            "{},{:.6},{:.6e},{:.6},{acc}\n",
            p.step, p.loss, p.lr, p.grad_norm
        );
    }
    files::write_text(path, &s)
}

/// Runs `race-eval train` (and `distill`, with `opts.teachers`): the steps below, in order.
pub fn train(opts: &TrainOptions) -> Result<TrainReport> {
    let mut cfg = opts.config.clone();
    if cfg.distill.is_some() != opts.teachers.is_some() {
        bail!("distillation needs both its settings (config.distill) and its soft targets (teachers); use `race-eval distill`");
    }
    if opts.split == opts.dev_split {
        bail!(
            "--split and --dev-split are both `{}`: pick a separate dev split to select checkpoints on",
            opts.split
        );
    }
    let device = crate::device::parse(&opts.device)?;
    let inputs = open_inputs(opts)?;
    let (base_config, student) = student_config(&inputs.model, &cfg)?;
    let config = effective_config(&base_config, &cfg);
    config.validate()?;
    cfg.format.validate(config.max_sequence_len())?;
    let data = prepare_data(opts, &inputs)?;
    if let Some(e) = &opts.epochs {
        e.apply(&mut cfg, data.train.questions.len())?;
    }
    cfg.validate()?;
    let soft = soft_targets(opts, &cfg, &data)?;
    let fingerprint = fingerprint(opts, &cfg, &inputs, &data)?;
    let output = OutputFolder::prepare(opts, &cfg, &inputs, student.as_ref(), &data)?;
    let built = build_objective(opts, &cfg, &config, &inputs, &student, data, soft, &device)?;
    let start = output.resume_or_start(
        opts.resume,
        &fingerprint,
        &cfg,
        built.objective.as_ref(),
        &device,
    )?;
    run_loop(opts, &cfg, built, start, &output)
}

/// The model and both splits, opened once.
pub struct Inputs {
    pub model: OpenedModel,
    pub train: OpenedData,
    pub dev: OpenedData,
}

/// Step 1: open the model (a folder or a Hub id; never a head folder) and the two splits.
pub fn open_inputs(opts: &TrainOptions) -> Result<Inputs> {
    let hub = open::hub_config(opts.quiet);
    let model = open::open_model(&opts.model, opts.revision.as_deref(), &hub)?;
    model.require_whole_model("--model")?;
    let train = open::open_data(&opts.data, &opts.split, opts.level, &hub)
        .with_context(|| format!("--split {}", opts.split))?
        .with_task(opts.task);
    let dev = open::open_data(&opts.data, &opts.dev_split, opts.level, &hub)
        .with_context(|| format!("--dev-split {}", opts.dev_split))?
        .with_task(opts.task);
    Ok(Inputs { model, train, dev })
}

/// The model's config, or a smaller student's (`distill --student-layers`).
fn student_config(
    model: &OpenedModel,
    cfg: &TrainConfig,
) -> Result<(ModelConfig, Option<StudentInit>)> {
    match cfg.distill.as_ref().and_then(|d| d.student_layers) {
        Some(n) => {
            let (c, s) = student::student_init(&model.config, n)?;
            Ok((c, Some(s)))
        }
        None => Ok((model.config.clone(), None)),
    }
}

/// Both splits loaded, labelled and tokenised, each once.
pub struct TrainData {
    pub train: data::Dataset,
    pub dev: data::Dataset,
    pub features: SplitFeatures,
    pub train_hash: String,
    pub dev_hash: String,
    /// Options per question (the same in both splits).
    pub choices: usize,
}

/// Tokenised questions and gold labels of both splits.
pub struct SplitFeatures {
    pub train: Vec<Features>,
    pub dev: Vec<Features>,
    pub train_y: Vec<u32>,
    pub dev_y: Vec<u32>,
}

/// Step 2: load both splits (strictly: a training run never skips questions), label and
/// tokenise them.
pub fn prepare_data(opts: &TrainOptions, inputs: &Inputs) -> Result<TrainData> {
    let train = inputs
        .train
        .load(opts.level, false)
        .with_context(|| format!("--split {}", opts.split))?;
    let dev = inputs
        .dev
        .load(opts.level, false)
        .with_context(|| format!("--dev-split {}", opts.dev_split))?;
    let train_y = labels_of(&train.questions, "training")?;
    let dev_y = labels_of(&dev.questions, "dev")?;
    let (tc, dc) = (
        train.questions[0].options.len(),
        dev.questions[0].options.len(),
    );
    if tc != dc {
        bail!("the training questions have {tc} options but the dev questions {dc}");
    }
    let encoder = TextEncoder::new(inputs.model.load_tokenizer()?)?;
    let format = &opts.config.format;
    let features = SplitFeatures {
        train: encoder.encode_all(&train.questions, format)?,
        dev: encoder.encode_all(&dev.questions, format)?,
        train_y,
        dev_y,
    };
    Ok(TrainData {
        train_hash: data_hash(&train, &opts.split, opts.level)?,
        dev_hash: data_hash(&dev, &opts.dev_split, opts.level)?,
        train,
        dev,
        features,
        choices: tc,
    })
}

/// The teachers' probabilities for each training question, in training order.
fn soft_targets(
    opts: &TrainOptions,
    cfg: &TrainConfig,
    data: &TrainData,
) -> Result<Option<SoftTargets>> {
    let (Some(d), Some(t)) = (&cfg.distill, &opts.teachers) else {
        return Ok(None);
    };
    let probs = data
        .train
        .questions
        .iter()
        .map(|q| {
            t.probs.get(&q.id).cloned().with_context(|| {
                format!(
                    "the soft targets have no entry for training question `{}` of --data {}",
                    q.id,
                    opts.data.display()
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(SoftTargets {
        alpha: d.alpha,
        temperature: d.temperature,
        probs,
    }))
}

/// Step 3: what a checkpoint must match to be resumed: the settings, the weights, both splits
/// and the teachers' targets (not where any of them were read from).
pub fn fingerprint(
    opts: &TrainOptions,
    cfg: &TrainConfig,
    inputs: &Inputs,
    data: &TrainData,
) -> Result<String> {
    let mut parts = vec![
        serde_json::to_string(cfg)?,
        inputs.model.weights_hash()?.to_string(),
        data.train_hash.clone(),
        data.dev_hash.clone(),
    ];
    if let Some(t) = &opts.teachers {
        parts.push(t.hash.clone());
    }
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    Ok(crate::hash::sha256_parts(&parts))
}

/// What the loop trains.
pub struct Built {
    pub objective: Box<dyn Objective>,
    /// Whether the head-only features came from the cache.
    pub cache_hit: Option<bool>,
    /// Options per question (for the collapse-to-chance warning).
    pub choices: usize,
    /// For the caller to show (a stale feature cache).
    pub warnings: Vec<String>,
}

/// Step 4: the objective: the whole model, or a head over features the frozen backbone
/// computes once and caches on disk.
#[allow(clippy::too_many_arguments)]
pub fn build_objective(
    opts: &TrainOptions,
    cfg: &TrainConfig,
    config: &ModelConfig,
    inputs: &Inputs,
    student: &Option<StudentInit>,
    data: TrainData,
    soft: Option<SoftTargets>,
    device: &Device,
) -> Result<Built> {
    let weight_files = &inputs.model.weight_files;
    let SplitFeatures {
        train,
        dev,
        train_y,
        dev_y,
    } = data.features;
    if cfg.mode == Mode::Full {
        let varmap = VarMap::new();
        let map = student.as_ref().and_then(|s| s.layer_map.as_deref());
        let model = build_student(weight_files, config, device, Some(&varmap), map)?;
        return Ok(Built {
            objective: Box::new(FullModel {
                model,
                varmap,
                train: Split {
                    features: train,
                    labels: train_y,
                },
                dev: Split {
                    features: dev,
                    labels: dev_y,
                },
                pad_id: config.pad_token_id,
                device: device.clone(),
                eval_batch_size: opts.eval_batch_size,
                soft,
            }),
            cache_hit: None,
            choices: data.choices,
            warnings: Vec::new(),
        });
    }
    let kind = if cfg.mode == Mode::HeadPooler {
        FeatureKind::Cls
    } else {
        FeatureKind::Pooled
    };
    let dense = config.family.head().dense;
    if kind == FeatureKind::Pooled {
        let ckpt = weights::Checkpoint::load(weight_files, config.family)?;
        if ckpt.get(&format!("{dense}.weight")).is_none() {
            bail!(
                "--model {}: the checkpoint has no `{dense}`, so pooled features would be random; train it too with --train-pooler",
                opts.model
            );
        }
    }
    let model = build_model(weight_files, config, device, None)?;
    let cache_dir = opts.cache_dir.clone().unwrap_or_else(|| {
        opts.output
            .parent()
            .unwrap_or(Path::new("."))
            .join(".cache")
    });
    let weights_hash = inputs.model.weights_hash()?;
    let pad = config.pad_token_id;
    let mut cache_hit = None;
    let mut warnings = Vec::new();
    let mut cached = |f: &[Features], hash: &str, what: &str| {
        let path = cache::cache_path(&cache_dir, weights_hash, hash, &cfg.format, kind);
        let c = cache::load_or_compute(&path, f.len(), || {
            let b = crate::progress::questions(f.len() as u64, opts.quiet, what);
            let x = cache::compute(&model, f, kind, opts.eval_batch_size, pad, device, Some(&b));
            b.finish_and_clear();
            x
        })?;
        cache_hit = Some(cache_hit.unwrap_or(true) && c.hit);
        warnings.extend(c.warning);
        anyhow::Ok(c.features)
    };
    let train_x = cached(&train, &data.train_hash, "caching train features")?;
    let dev_x = cached(&dev, &data.dev_hash, "caching dev features")?;
    let h = config.hidden_size;
    let (dense_w, dense_b) = (format!("{dense}.weight"), format!("{dense}.bias"));
    let mut names = vec![
        ("classifier.weight", vec![1, h]),
        ("classifier.bias", vec![1]),
    ];
    if kind == FeatureKind::Cls {
        names.push((dense_w.as_str(), vec![h, h]));
        names.push((dense_b.as_str(), vec![h]));
    }
    let varmap = head_init(weight_files, config, &names, cfg.seed, device)?;
    let get = |n: &str| varmap.data().lock().unwrap()[n].as_tensor().clone();
    let pooler = (kind == FeatureKind::Cls).then(|| {
        (
            get(&dense_w),
            get(&dense_b),
            config.family.head().activation,
        )
    });
    let classifier = (get("classifier.weight"), get("classifier.bias"));
    Ok(Built {
        objective: Box::new(Head {
            pooler,
            classifier,
            varmap,
            classifier_dropout: config.classifier_dropout(),
            train_x: train_x.to_device(device)?,
            train_y,
            dev_x: dev_x.to_device(device)?,
            dev_y,
            soft,
        }),
        cache_hit,
        choices: data.choices,
        warnings,
    })
}

/// Step 5: the output folder: config.json (a smaller student's), the tokenizer files, and
/// meta.json from the start; checkpoints while training; `--resume` or a refusal to overwrite.
pub struct OutputFolder {
    pub dir: PathBuf,
    pub ckpt_dir: PathBuf,
    /// `head.safetensors` or `model.safetensors`.
    pub weights_file: &'static str,
    /// meta.json without the run's progress (filled in by [`OutputFolder::meta`]).
    template: HeadMeta,
}

impl OutputFolder {
    pub fn prepare(
        opts: &TrainOptions,
        cfg: &TrainConfig,
        inputs: &Inputs,
        student: Option<&StudentInit>,
        data: &TrainData,
    ) -> Result<Self> {
        let dir = opts.output.clone();
        let model = &inputs.model;
        let mut read = model.weight_files.clone();
        read.push(model.dir.join("config.json"));
        read.extend(model.tokenizer.files());
        read.extend(data.train.files.iter().cloned());
        read.extend(data.dev.files.iter().cloned());
        crate::paths::refuse_overwrite(&dir, "--output", &read, true)?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create --output {}", dir.display()))?;
        let ckpt_dir = checkpoint::dir_of(&dir);
        if !opts.resume && (ckpt_dir.exists() || ckpt_dir.with_file_name("checkpoint.old").exists())
        {
            bail!(
                "--output {} already holds a training checkpoint: pass --resume to continue it, or choose another --output",
                dir.display()
            );
        }
        for file in model.tokenizer.files() {
            let name = file
                .file_name()
                .context("a tokenizer file without a name")?;
            std::fs::copy(&file, dir.join(name))
                .with_context(|| format!("cannot copy {} into --output", file.display()))?;
        }
        let config_text = std::fs::read_to_string(model.dir.join("config.json"))?;
        let config_text = match student {
            Some(s) => student::student_config_json(&config_text, s.layers)?,
            None => config_text,
        };
        files::write_text(&dir.join("config.json"), &config_text)?;
        let weights_file = if cfg.mode.is_head() {
            heads::HEAD_FILE
        } else {
            heads::MODEL_FILE
        };
        let distill = opts.teachers.as_ref().map(|t| DistillMeta {
            teachers: t.sources.clone(),
            soft_targets_file: targets::SOFT_TARGETS_FILE.to_string(),
            soft_targets_hash: t.hash.clone(),
            student: student.cloned(),
        });
        let template = HeadMeta {
            race_eval_version: env!("CARGO_PKG_VERSION").to_string(),
            mode: cfg.mode,
            base_model: model.pinned(),
            base_weights_hash: model.weights_hash()?.to_string(),
            hidden_size: model.config.hidden_size,
            weights_file: weights_file.to_string(),
            data: opts.data.display().to_string(),
            split: opts.split.clone(),
            dev_split: opts.dev_split.clone(),
            data_hash: data.train_hash.clone(),
            dev_data_hash: data.dev_hash.clone(),
            train_questions: data.train.questions.len(),
            dev_questions: data.dev.questions.len(),
            hyperparameters: serde_json::to_value(cfg)?,
            steps_done: 0,
            best: None,
            dev_history: Vec::new(),
            distill: distill.map(serde_json::to_value).transpose()?,
        };
        Ok(Self {
            dir,
            ckpt_dir,
            weights_file,
            template,
        })
    }

    /// A fresh state and optimizer, or both read back from the checkpoint with `resume`
    /// (refused when it was made with other settings, weights or data).
    pub fn resume_or_start(
        &self,
        resume: bool,
        fingerprint: &str,
        cfg: &TrainConfig,
        objective: &dyn Objective,
        device: &Device,
    ) -> Result<(CheckpointState, AdamW)> {
        let vars = objective.vars();
        let mut opt = AdamW::new(vars.clone(), cfg.adamw)?;
        let fresh = CheckpointState {
            step: 0,
            fingerprint: fingerprint.to_string(),
            loss_log: Vec::new(),
            dev_history: Vec::new(),
            best: None,
        };
        if !resume {
            return Ok((fresh, opt));
        }
        let (mut saved, weights, moments) = checkpoint::load(&self.ckpt_dir)?;
        if saved.fingerprint != fingerprint {
            bail!(
                "--resume: the checkpoint in {} was made with other settings, model weights or data; rerun with the same options, or train into another --output",
                self.ckpt_dir.display()
            );
        }
        for (name, var) in &vars {
            let t = weights.get(name).with_context(|| {
                format!(
                    "the checkpoint in {} lacks `{name}`",
                    self.ckpt_dir.display()
                )
            })?;
            var.set(&t.to_device(device)?)?;
        }
        opt.load_state(&moments, saved.step)?;
        saved.loss_log.retain(|p| p.step <= saved.step);
        Ok((saved, opt))
    }

    fn meta(&self, state: &CheckpointState) -> HeadMeta {
        HeadMeta {
            steps_done: state.step,
            best: state.best,
            dev_history: state.dev_history.clone(),
            ..self.template.clone()
        }
    }

    /// The best step's weights.
    fn save_weights(&self, vars: &[(String, Var)]) -> Result<()> {
        files::save_tensors(&self.dir.join(self.weights_file), &tensors_of(vars))
    }

    /// meta.json, loss.csv and loss.svg as of `state`.
    fn save_records(&self, state: &CheckpointState) -> Result<()> {
        files::write_json(&self.dir.join(heads::META_FILE), &self.meta(state))?;
        write_loss_csv(
            &self.dir.join("loss.csv"),
            &state.loss_log,
            &state.dev_history,
        )?;
        let loss: Vec<(usize, f64)> = state.loss_log.iter().map(|p| (p.step, p.loss)).collect();
        let dev: Vec<(usize, f64)> = state
            .dev_history
            .iter()
            .map(|d| (d.step, d.accuracy))
            .collect();
        files::write_text(
            &self.dir.join("loss.svg"),
            &crate::results::plot::loss_curve_svg(&loss, &dev),
        )
    }

    /// A resumable checkpoint, then the records.
    fn save_progress(
        &self,
        state: &CheckpointState,
        opt: &AdamW,
        vars: &[(String, Var)],
    ) -> Result<()> {
        checkpoint::save(
            &self.ckpt_dir,
            state,
            &tensors_of(vars),
            &opt.state_tensors(),
        )?;
        self.save_records(state)
    }
}

/// Step 6: the loop: each optimizer step's batch from the seeded data order, gradients
/// accumulated over micro-batches, dev accuracy every `eval_every` steps (the best step's
/// weights kept), a checkpoint every `save_every` steps and at the end.
pub fn run_loop(
    opts: &TrainOptions,
    cfg: &TrainConfig,
    built: Built,
    start: (CheckpointState, AdamW),
    output: &OutputFolder,
) -> Result<TrainReport> {
    let objective = built.objective;
    let (mut state, mut opt) = start;
    let vars = objective.vars();
    let schedule = cfg.schedule();
    let mut order = DataOrder::new(cfg.seed, objective.train_len());
    let micro_sizes: Vec<usize> = (0..cfg.batch_size)
        .step_by(cfg.micro_batch_size)
        .map(|s| cfg.micro_batch_size.min(cfg.batch_size - s))
        .collect();
    let progress = bar(cfg.total_steps, state.step, opts.quiet);
    let first = state.step;
    let stop = opts
        .stop_after
        .map(|n| (first + n).min(cfg.total_steps))
        .unwrap_or(cfg.total_steps);
    let choices = built.choices;
    let mut warnings = built.warnings;
    let mut collapsed = false;
    while state.step < stop {
        let step = state.step;
        let lr = schedule.lr(step);
        let batch = order.batch(step, cfg.batch_size);
        let result = optimizer_step(
            &vars,
            &mut opt,
            micro_sizes.len(),
            |i| {
                let start = i * cfg.micro_batch_size;
                let idx = &batch[start..start + micro_sizes[i]];
                seeded_dropout::set_seed(Some(derive_seed(&[cfg.seed, step as u64, i as u64])));
                let loss = objective.loss(idx);
                seeded_dropout::set_seed(None);
                Ok((loss?, micro_sizes[i] as f64 / cfg.batch_size as f64))
            },
            cfg.max_grad_norm,
            lr,
        );
        let (loss, grad_norm) = match result {
            Ok(x) => x,
            Err(e) => {
                progress.abandon();
                let kept = if output.ckpt_dir.join("state.json").is_file() {
                    format!(
                        "the last good checkpoint ({}) and best weights in {} are kept",
                        output.ckpt_dir.display(),
                        output.dir.display()
                    )
                } else {
                    "no checkpoint had been saved yet".to_string()
                };
                return Err(e).with_context(|| {
                    format!(
                        "training stopped at step {} (lr {lr:.3e}): {kept}; lower --lr or --max-grad-norm, or check the data",
                        step + 1
                    )
                });
            }
        };
        state.step += 1;
        state.loss_log.push(LossPoint {
            step: state.step,
            loss,
            lr,
            grad_norm,
        });
        progress.set_message(format!("loss {loss:.4} lr {lr:.2e}"));
        progress.inc(1);
        if !collapsed {
            if let Some(w) = collapse_warning(&state.loss_log, cfg.warmup_steps, choices) {
                progress.println(format!("warning: {w}"));
                warnings.push(w);
                collapsed = true;
            }
        }
        if state.step.is_multiple_of(cfg.eval_every) || state.step == cfg.total_steps {
            let accuracy = objective.dev_accuracy()?;
            let point = DevPoint {
                step: state.step,
                accuracy,
            };
            state.dev_history.push(point);
            progress.println(format!(
                "step {}: loss {loss:.4}, dev accuracy {:.2}%",
                state.step,
                100.0 * accuracy
            ));
            if state.best.is_none_or(|b| accuracy > b.accuracy) {
                state.best = Some(point);
                output.save_weights(&vars)?;
            }
        }
        if state.step.is_multiple_of(cfg.save_every) || state.step == stop {
            output.save_progress(&state, &opt, &vars)?;
        }
    }
    progress.finish_and_clear();
    if state.step == first {
        // Nothing ran (already complete): still leave a consistent meta.json.
        files::write_json(&output.dir.join(heads::META_FILE), &output.meta(&state))?;
    }
    Ok(TrainReport {
        steps_done: state.step,
        loss_log: state.loss_log,
        dev_history: state.dev_history,
        best: state.best,
        cache_hit: built.cache_hit,
        output: output.dir.clone(),
        warnings,
    })
}

/// Steps past warmup whose mean loss [`collapse_warning`] looks at.
const COLLAPSE_WINDOW: usize = 10;

/// A warning when training has collapsed to chance: past warmup, the mean loss of the last
/// [`COLLAPSE_WINDOW`] steps is within 1% of ln(choices), the loss of predicting every option
/// with equal probability. Small data sets often stay there (transformers too).
pub fn collapse_warning(log: &[LossPoint], warmup: usize, choices: usize) -> Option<String> {
    if choices < 2 {
        return None;
    }
    let past: Vec<&LossPoint> = log.iter().filter(|p| p.step > warmup).collect();
    if past.len() < COLLAPSE_WINDOW {
        return None;
    }
    let recent = &past[past.len() - COLLAPSE_WINDOW..];
    let mean = recent.iter().map(|p| p.loss).sum::<f64>() / recent.len() as f64;
    let chance = (choices as f64).ln();
    ((mean - chance).abs() <= 0.01 * chance).then(|| {
        format!(
            "the loss has stayed at {mean:.4} over steps {}-{}, within 1% of ln({choices}) = {chance:.4}: the model predicts every option alike (chance). Try a higher --lr (or a lower one if it rose there from below), more --warmup-steps, more steps or data, or a larger model; check that the labels match the options",
            recent[0].step,
            recent[recent.len() - 1].step
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::AdamWConfig;

    fn log(losses: &[f64]) -> Vec<LossPoint> {
        losses
            .iter()
            .enumerate()
            .map(|(i, &loss)| LossPoint {
                step: i + 1,
                loss,
                lr: 1e-5,
                grad_norm: 1.0,
            })
            .collect()
    }

    #[test]
    fn collapse_to_chance_is_detected_past_warmup_only() {
        let ln4 = 4f64.ln();
        // Flat at ln 4 (± 0.5%) for 20 steps after 5 warmup steps: collapsed.
        let flat: Vec<f64> = (0..25)
            .map(|i| ln4 * (1.0 + 0.005 * if i % 2 == 0 { 1.0 } else { -1.0 }))
            .collect();
        let w = collapse_warning(&log(&flat), 5, 4).expect("a warning");
        assert!(w.contains("ln(4)") && w.contains("--lr"), "{w}");
        // The same steps all inside warmup: too early to say.
        assert_eq!(collapse_warning(&log(&flat), 20, 4), None);
        // Learning: the loss falls below ln 4 by more than 1%.
        let learning: Vec<f64> = (0..25).map(|i| ln4 - 0.01 * i as f64).collect();
        assert_eq!(collapse_warning(&log(&learning), 5, 4), None);
        // ln 2 for two options, not ln 4.
        let two: Vec<f64> = vec![2f64.ln(); 25];
        assert!(collapse_warning(&log(&two), 5, 2).is_some());
        assert_eq!(collapse_warning(&log(&two), 5, 4), None);
    }

    #[test]
    fn nan_loss_stops_before_any_update() -> Result<()> {
        let var = Var::from_tensor(&Tensor::new(&[1.0f32, 2.0], &Device::Cpu)?)?;
        let vars = vec![("w".to_string(), var.clone())];
        let mut opt = AdamW::new(vars.clone(), AdamWConfig::default())?;
        let err = optimizer_step(
            &vars,
            &mut opt,
            2,
            |i| {
                let l = var.as_tensor().sum_all()?;
                let l = if i == 1 { (l * f64::NAN)? } else { l };
                Ok((l, 0.5))
            },
            1.0,
            0.1,
        )
        .unwrap_err();
        assert!(err.to_string().contains("NaN"), "{err}");
        assert_eq!(var.as_tensor().to_vec1::<f32>()?, [1.0, 2.0]);
        assert_eq!(opt.steps, 0);
        Ok(())
    }

    #[test]
    fn data_order_is_a_permutation_per_epoch() {
        let mut order = DataOrder::new(1, 10);
        let mut epoch: Vec<usize> = (0..5).flat_map(|s| order.batch(s, 2)).collect();
        epoch.sort();
        assert_eq!(epoch, (0..10).collect::<Vec<_>>());
        let again = DataOrder::new(1, 10).batch(7, 2);
        assert_eq!(
            order.batch(7, 2),
            again,
            "any step's batch can be recomputed"
        );
        assert_ne!(DataOrder::new(2, 10).batch(0, 10), order.batch(0, 10));
    }
}
