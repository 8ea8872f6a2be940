//! Run records: every evaluation leaves `results/<run-id>/summary.json` and `predictions.jsonl`,
//! so results can be trusted (hashes of the weights and data, versions, settings) and compared
//! (leaderboards, paired tests, ensembles, merged shards, breakdowns, plots).
//!
//! [`RunSummary`] is the summary's schema; [`Run`] a record on disk; [`summarize`] computes the
//! numbers of a summary from predictions, so eval, ensemble and merge all count alike.

pub mod breakdown;
pub mod compare;
pub mod ensemble;
pub mod leaderboard;
pub mod merge;
pub mod plot;
pub mod predictions;
pub mod report;
pub mod shard;
pub mod time;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::metrics::{Accuracy, LevelScores};
use crate::stats::{wilson95, Interval};
pub use predictions::{read_predictions, scores, scores_norm, write_predictions, Prediction};

pub use breakdown::Breakdowns;
pub use shard::Shard;

pub const SUMMARY_FILE: &str = "summary.json";
pub const PREDICTIONS_FILE: &str = "predictions.jsonl";
/// Version of the summary layout; bumped when fields change meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// The race-eval build that wrote a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildInfo {
    pub version: String,
    /// `git rev-parse HEAD` at build time, or "unknown" outside a git checkout.
    pub git_commit: String,
}

impl BuildInfo {
    pub fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: env!("RACE_EVAL_GIT_COMMIT").to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Short name (the model folder's name), used in run ids and tables.
    pub name: String,
    /// The model folder as given on the command line (empty for ensembles).
    pub path: String,
    /// sha256 over the weight files' bytes, in load order.
    pub weights_sha256: String,
    pub weight_files: Vec<String>,
    /// The head: `--head DIR`, or the fine-tuned model folder and its base; null for a plain model.
    #[serde(default)]
    pub head: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    /// The task (`race`, `dream`, …): runs of different tasks are never compared or merged.
    #[serde(default = "default_task")]
    pub task: String,
    /// `--data` as given.
    pub path: String,
    /// `race-tree` or `jsonl`.
    pub format: String,
    /// sha256 over the bytes of every file read, in read order: two runs with the same hash
    /// read the same data.
    pub sha256: String,
    pub files: usize,
    pub split: String,
    /// `all`, `middle` or `high` (`--level`).
    pub level: String,
}

fn default_task() -> String {
    "race".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub questions: usize,
    pub passages: usize,
    /// Invalid questions left out with --skip-invalid (of the whole data, before sharding).
    pub skipped: usize,
    /// Why each was left out: file, line or passage, field and problem.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_reasons: Vec<String>,
}

/// An accuracy with its 95% Wilson interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub correct: usize,
    pub total: usize,
    /// correct / total; null without questions.
    pub accuracy: Option<f64>,
    pub ci95: Option<Interval>,
}

impl Score {
    pub fn new(a: &Accuracy) -> Self {
        Self {
            correct: a.correct,
            total: a.total,
            accuracy: a.value(),
            ci95: wilson95(a.correct, a.total),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelAccuracy {
    pub overall: Score,
    pub middle: Score,
    pub high: Score,
    /// Questions whose ids name neither level (RACE-like data); absent when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<Score>,
}

impl LevelAccuracy {
    pub fn new(s: &LevelScores) -> Self {
        Self {
            overall: Score::new(&s.overall),
            middle: Score::new(&s.middle),
            high: Score::new(&s.high),
            other: (s.other.total > 0).then(|| Score::new(&s.other)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub max_seq_len: usize,
    pub max_qa_len: usize,
    pub dtype: String,
    pub device: String,
    pub batch_size: usize,
    /// How a decoder LM was asked (`harness-last`, `harness-all`); absent for encoders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// End to end: loading, tokenising and the model (summed over members for merge/ensemble).
    pub wall_secs: f64,
    pub model_secs: f64,
    pub questions_per_sec: f64,
}

impl Timing {
    pub fn new(wall_secs: f64, model_secs: f64, questions: usize) -> Self {
        Self {
            wall_secs,
            model_secs,
            questions_per_sec: questions as f64 / wall_secs.max(1e-9),
        }
    }
}

/// How a run came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Eval,
    Ensemble,
    Merge,
}

impl RunKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunKind::Eval => "eval",
            RunKind::Ensemble => "ensemble",
            RunKind::Merge => "merge",
        }
    }
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub schema: u32,
    pub run_id: String,
    pub kind: RunKind,
    /// UTC, RFC 3339.
    pub created: String,
    pub race_eval: BuildInfo,
    pub model: ModelInfo,
    pub data: DataInfo,
    /// Set when this run evaluated one shard only (`eval --shard i/n`).
    pub shard: Option<Shard>,
    /// Runs this one was made from (ensemble members, merged shards), by run id.
    #[serde(default)]
    pub members: Vec<String>,
    pub counts: Counts,
    pub accuracy: LevelAccuracy,
    /// Zero-shot LM runs: accuracy of the length-normalised choice (the harness' `acc_norm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_norm: Option<LevelAccuracy>,
    pub breakdowns: Breakdowns,
    pub settings: Settings,
    pub timing: Timing,
}

/// What a summary says beyond the numbers computed from predictions.
pub struct RunMeta {
    pub kind: RunKind,
    pub model: ModelInfo,
    pub data: DataInfo,
    pub shard: Option<Shard>,
    pub members: Vec<String>,
    pub skipped: usize,
    pub skipped_reasons: Vec<String>,
    pub settings: Settings,
    pub wall_secs: f64,
    pub model_secs: f64,
}

/// The summary of `preds` (counts, accuracies with intervals, breakdowns) with `meta`'s
/// provenance; `run_id` is filled in by [`write_run`].
pub fn summarize(meta: RunMeta, preds: &[Prediction]) -> RunSummary {
    let scores = scores(preds);
    let mut passages: Vec<&str> = preds.iter().map(|p| p.passage_id.as_str()).collect();
    passages.sort_unstable();
    passages.dedup();
    RunSummary {
        schema: SCHEMA_VERSION,
        run_id: String::new(),
        kind: meta.kind,
        created: time::now_rfc3339(),
        race_eval: BuildInfo::current(),
        model: meta.model,
        data: meta.data,
        shard: meta.shard,
        members: meta.members,
        counts: Counts {
            questions: preds.len(),
            passages: passages.len(),
            skipped: meta.skipped,
            skipped_reasons: meta.skipped_reasons,
        },
        accuracy: LevelAccuracy::new(&scores),
        accuracy_norm: scores_norm(preds).map(|s| LevelAccuracy::new(&s)),
        breakdowns: Breakdowns::new(preds),
        settings: meta.settings,
        timing: Timing::new(meta.wall_secs, meta.model_secs, preds.len()),
    }
}

pub use crate::hash::{sha256_files, sha256_str};

/// A name safe in a folder name: letters, digits, `.`, `_` and `-`; anything else becomes `-`.
pub fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches(|c| c == '-' || c == '.').to_string();
    if s.is_empty() {
        "run".into()
    } else {
        s
    }
}

/// The readable base of a run id: `<model>-<split>-<YYYYmmdd-HHMMSS>[-shard<i>of<n>]`.
pub fn run_id_base(summary: &RunSummary, stamp: &str) -> String {
    let mut id = format!(
        "{}-{}-{stamp}",
        sanitize(&summary.model.name),
        sanitize(&summary.data.split)
    );
    if let Some(s) = summary.shard {
        id += &format!("-shard{}of{}", s.index, s.count);
    }
    id
}

/// A run on disk.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    pub summary: RunSummary,
    pub predictions: Vec<Prediction>,
}

/// Writes a new run under `results_dir`: picks a fresh run id (adding `-2`, `-3`, … when the
/// readable one is taken), creates its folder and writes both files. Returns the folder.
pub fn write_run(
    results_dir: &Path,
    mut summary: RunSummary,
    preds: &[Prediction],
) -> Result<PathBuf> {
    fs::create_dir_all(results_dir).with_context(|| {
        format!(
            "cannot create the results folder {} (choose another with --output-dir)",
            results_dir.display()
        )
    })?;
    let base = run_id_base(&summary, &time::now_compact());
    let mut n = 1;
    let (id, dir) = loop {
        let id = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = results_dir.join(&id);
        match fs::create_dir(&dir) {
            Ok(()) => break (id, dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", dir.display()));
            }
        }
    };
    summary.run_id = id.clone();
    // The id is reserved (an empty folder, created atomically, so concurrent runs never share
    // one); the files are written into a hidden folder beside it, which then replaces the
    // empty one in one rename: a reader sees no run or a whole run.
    let tmp = results_dir.join(format!(".{id}.tmp-{}", std::process::id()));
    let write = || -> Result<()> {
        fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        write_predictions(&tmp.join(PREDICTIONS_FILE), preds)?;
        let json = serde_json::to_string_pretty(&summary)?;
        fs::write(tmp.join(SUMMARY_FILE), json + "\n")
            .with_context(|| format!("cannot write {}", tmp.join(SUMMARY_FILE).display()))?;
        fs::rename(&tmp, &dir)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), dir.display()))
    };
    if let Err(e) = write() {
        let _ = fs::remove_dir_all(&tmp);
        let _ = fs::remove_dir(&dir);
        return Err(e);
    }
    Ok(dir)
}

/// Reads a run's summary alone.
pub fn read_summary(dir: &Path) -> Result<RunSummary> {
    let path = dir.join(SUMMARY_FILE);
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let summary: RunSummary = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a race-eval run summary (schema {SCHEMA_VERSION})",
            path.display()
        )
    })?;
    summary.check().with_context(|| {
        format!(
            "{}: the numbers do not add up, so the record is damaged or was edited; evaluate again",
            path.display()
        )
    })?;
    Ok(summary)
}

impl RunSummary {
    /// The numbers must add up: correct ≤ total, accuracy = correct / total, the levels sum to
    /// the overall count, which is the number of questions.
    pub fn check(&self) -> Result<()> {
        let a = &self.accuracy;
        let mut levels = vec![
            ("accuracy.overall", &a.overall),
            ("accuracy.middle", &a.middle),
            ("accuracy.high", &a.high),
        ];
        if let Some(o) = &a.other {
            levels.push(("accuracy.other", o));
        }
        for (field, s) in &levels {
            if s.correct > s.total {
                bail!("`{field}`: correct {} exceeds total {}", s.correct, s.total);
            }
            let want = (s.total > 0).then(|| s.correct as f64 / s.total as f64);
            let agrees = match (s.accuracy, want) {
                (Some(x), Some(w)) => x.is_finite() && (x - w).abs() <= 1e-9,
                (None, None) => true,
                _ => false,
            };
            if !agrees {
                bail!(
                    "`{field}.accuracy` is {:?} but correct / total is {}/{}",
                    s.accuracy,
                    s.correct,
                    s.total
                );
            }
        }
        let by_level: usize = levels[1..].iter().map(|(_, s)| s.total).sum();
        if by_level != a.overall.total {
            bail!(
                "the levels count {by_level} questions but `accuracy.overall.total` is {}",
                a.overall.total
            );
        }
        if a.overall.total != self.counts.questions {
            bail!(
                "`accuracy.overall.total` is {} but `counts.questions` is {}",
                a.overall.total,
                self.counts.questions
            );
        }
        Ok(())
    }
}

impl Run {
    /// The run named by `spec`: a run folder (with summary.json), or a run id under
    /// `results_dir`.
    pub fn find(spec: &str, results_dir: &Path) -> Result<PathBuf> {
        let as_path = Path::new(spec);
        if as_path.join(SUMMARY_FILE).is_file() {
            return Ok(as_path.to_path_buf());
        }
        let under = results_dir.join(spec);
        if under.join(SUMMARY_FILE).is_file() {
            return Ok(under);
        }
        if as_path.is_dir() {
            bail!(
                "{spec}: this folder has no {SUMMARY_FILE}, so it is not a run folder (runs are written by `race-eval eval`)"
            );
        }
        bail!(
            "no run `{spec}`: neither a run folder nor a run id under {} (list local runs with `race-eval leaderboard --results-dir {}`, or pass --results-dir)",
            results_dir.display(),
            results_dir.display()
        )
    }

    /// Loads a run (summary and predictions) and checks that the two agree.
    pub fn load(spec: &str, results_dir: &Path) -> Result<Run> {
        let dir = Run::find(spec, results_dir)?;
        let summary = read_summary(&dir)?;
        let predictions = read_predictions(&dir.join(PREDICTIONS_FILE))?;
        if predictions.len() != summary.counts.questions {
            bail!(
                "{}: {PREDICTIONS_FILE} has {} predictions but {SUMMARY_FILE} counts {} questions: the run is incomplete or was edited",
                dir.display(),
                predictions.len(),
                summary.counts.questions
            );
        }
        let from_preds = scores(&predictions).overall;
        let said = &summary.accuracy.overall;
        if (from_preds.correct, from_preds.total) != (said.correct, said.total) {
            bail!(
                "{}: {SUMMARY_FILE} says {} of {} correct but {PREDICTIONS_FILE} has {} of {}: the run was edited; evaluate again",
                dir.display(),
                said.correct,
                said.total,
                from_preds.correct,
                from_preds.total
            );
        }
        Ok(Run {
            dir,
            summary,
            predictions,
        })
    }

    pub fn id(&self) -> &str {
        &self.summary.run_id
    }
}

/// A run folder and its summary.
pub type LocalRun = (PathBuf, RunSummary);

/// Every run folder directly under `results_dir` (sorted by name), and a note for each folder
/// whose summary.json cannot be read (so one broken record does not hide the others).
pub fn list_runs(results_dir: &Path) -> Result<(Vec<LocalRun>, Vec<String>)> {
    if !results_dir.is_dir() {
        bail!(
            "--results-dir {}: no such folder (runs are written by `race-eval eval` under --output-dir, default `results`)",
            results_dir.display()
        );
    }
    let mut dirs: Vec<PathBuf> = fs::read_dir(results_dir)
        .with_context(|| format!("cannot list {}", results_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        // Hidden folders are runs still being written.
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .filter(|p| p.join(SUMMARY_FILE).is_file())
        .collect();
    dirs.sort();
    let (mut runs, mut problems) = (Vec::new(), Vec::new());
    for d in dirs {
        match read_summary(&d) {
            Ok(s) => runs.push((d, s)),
            Err(e) => problems.push(format!("{e:#} (left out)")),
        }
    }
    Ok((runs, problems))
}

pub use crate::data::normalize_split;

/// Checks that two runs answered the same questions (same data hash, same question ids with
/// the same gold labels, in the same order), so a paired comparison or an ensemble is valid.
pub fn check_same_questions(a: &Run, b: &Run) -> Result<()> {
    let (sa, sb) = (&a.summary, &b.summary);
    if sa.data.task != sb.data.task {
        bail!(
            "runs {} and {} are of different tasks ({} and {}): only runs of one task can be compared, merged or ensembled",
            a.id(),
            b.id(),
            sa.data.task,
            sb.data.task
        );
    }
    if sa.data.sha256 != sb.data.sha256 {
        bail!(
            "runs {} and {} did not read the same data (data sha256 {}… from {} vs {}… from {}): evaluate both on the same --data, --split and --level",
            a.id(),
            b.id(),
            &sa.data.sha256[..12.min(sa.data.sha256.len())],
            sa.data.path,
            &sb.data.sha256[..12.min(sb.data.sha256.len())],
            sb.data.path
        );
    }
    if sa.data.level != sb.data.level || sa.shard != sb.shard {
        bail!(
            "runs {} and {} saw different subsets of the same data (level {} vs {}, shard {:?} vs {:?}): evaluate both on the same --level and --shard, or merge shards first with `race-eval merge`",
            a.id(),
            b.id(),
            sa.data.level,
            sb.data.level,
            sa.shard,
            sb.shard
        );
    }
    if a.predictions.len() != b.predictions.len() {
        bail!(
            "runs {} and {} have different numbers of questions ({} vs {}): they did not see the same questions",
            a.id(),
            b.id(),
            a.predictions.len(),
            b.predictions.len()
        );
    }
    for (i, (pa, pb)) in a.predictions.iter().zip(&b.predictions).enumerate() {
        if pa.id != pb.id || pa.label != pb.label || pa.logits.len() != pb.logits.len() {
            bail!(
                "runs {} and {} differ at question {} ({} with answer {} and {} options vs {} with answer {} and {} options): they did not see the same questions",
                a.id(),
                b.id(),
                i + 1,
                pa.id,
                pa.label,
                pa.logits.len(),
                pb.id,
                pb.label,
                pb.logits.len()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_readable_names() {
        assert_eq!(sanitize("albert-base-v2"), "albert-base-v2");
        assert_eq!(sanitize("my model/v1"), "my-model-v1");
        assert_eq!(sanitize(".."), "run");
    }

    #[test]
    fn normalize_split_folds_validation() {
        assert_eq!(normalize_split("validation"), "dev");
        assert_eq!(normalize_split("dev"), "dev");
        assert_eq!(normalize_split("test"), "test");
    }
}
