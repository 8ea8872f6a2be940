//! RACE-style tasks beside RACE: each task is data — its name, the files it reads (the set's
//! own distribution files, and the Hub's parquet copy where one exists), how a row becomes
//! (context, question, options, answer), its option count and splits. Formatting for the model
//! is one rule for every task (ALBERT's run_race: see `features`); each loader only decides
//! what the context and the question are:
//!
//! - DREAM: the dialogue's turns joined by "\n" (`M: …\nW: …`), the answer given as text;
//! - MCTest: the story with its `\newline` markers as newlines, the `one:`/`multiple:` prefix
//!   of each question kept as its category (for breakdowns) and removed from the text;
//! - MCScript: the text, two answers, the one marked `correct="True"`;
//! - ReClor: the context, four answers, `label`;
//! - CosmosQA: the context, `answer0..3`, `label`;
//! - QuAIL: the text body (dev XML) or `context` (JSON lines), four answers, the question type
//!   as category.

mod build;
mod cosmosqa;
mod dream;
mod mcscript;
mod mctest;
mod quail;
mod reclor;
mod xml;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{Dataset, LoadOptions};

/// A task race-eval can evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    Race,
    Dream,
    Mctest160,
    Mctest500,
    Mcscript,
    Reclor,
    Cosmosqa,
    Quail,
}

/// What `race-eval tasks` prints about a task.
#[derive(Debug, Clone, Copy)]
pub struct TaskInfo {
    pub name: &'static str,
    pub title: &'static str,
    /// Options per question.
    pub options: usize,
    /// Splits in the set's own files (with labels).
    pub splits: &'static [&'static str],
    /// The files `--data` may point at.
    pub formats: &'static str,
    /// Columns of the Hub's parquet copy, where there is one.
    pub parquet: Option<&'static str>,
    /// How a row becomes context and question.
    pub context: &'static str,
    pub reference: &'static str,
}

pub const ALL: &[Task] = &[
    Task::Race,
    Task::Dream,
    Task::Mctest160,
    Task::Mctest500,
    Task::Mcscript,
    Task::Reclor,
    Task::Cosmosqa,
    Task::Quail,
];

impl Task {
    pub fn from_name(name: &str) -> Result<Task> {
        ALL.iter()
            .copied()
            .find(|t| t.name() == name.to_ascii_lowercase())
            .with_context(|| {
                format!(
                    "--task {name:?} is not a task: use one of {} (`race-eval tasks` lists them)",
                    ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
                )
            })
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn info(self) -> TaskInfo {
        match self {
            Task::Race => TaskInfo {
                name: "race",
                title: "RACE (Lai et al., 2017): English exams for Chinese middle and high school students",
                options: 4,
                splits: &["train", "dev", "test"],
                formats: "RACE's tree (RACE/SPLIT/{middle,high}/*.txt), SPLIT.jsonl (the Hub's rows), SPLIT[-*].parquet",
                parquet: Some("example_id, article, question, options, answer (ehovy/race)"),
                context: "the article; `_` in the question filled by the option",
                reference: "Lai et al., RACE: Large-scale ReAding Comprehension Dataset From Examinations, EMNLP 2017",
            },
            Task::Dream => TaskInfo {
                name: "dream",
                title: "DREAM (Sun et al., 2019): dialogue-based reading comprehension",
                options: 3,
                splits: &["train", "dev", "test"],
                formats: "SPLIT.json (the release: [[turns], [{question, choice, answer}], id] per dialogue), SPLIT[-*].parquet",
                parquet: Some("dialogue_id, dialogue (list), question, choice (list), answer (text) (dataset-org/dream)"),
                context: "the turns joined by \"\\n\"; the answer is the text of one choice",
                reference: "Sun et al., DREAM: A Challenge Dataset and Models for Dialogue-Based Reading Comprehension, TACL 2019",
            },
            Task::Mctest160 | Task::Mctest500 => TaskInfo {
                name: if self == Task::Mctest160 { "mctest160" } else { "mctest500" },
                title: if self == Task::Mctest160 {
                    "MCTest MC160 (Richardson et al., 2013): fictional stories for children"
                } else {
                    "MCTest MC500 (Richardson et al., 2013): fictional stories for children"
                },
                options: 4,
                splits: &["train", "dev", "test"],
                formats: "mcN.SPLIT.tsv with mcN.SPLIT.ans beside it (a folder, or the .tsv itself), SPLIT[-*].parquet",
                parquet: Some("idx, story, question, answer_options {A, B, C, D}, answer (sagnikrayc/mctest)"),
                context: "the story, `\\newline` as newlines; `one:`/`multiple:` kept as the question's category",
                reference: "Richardson, Burges, Renshaw, MCTest: A Challenge Dataset for the Open-Domain Machine Comprehension of Text, EMNLP 2013",
            },
            Task::Mcscript => TaskInfo {
                name: "mcscript",
                title: "MCScript (Ostermann et al., 2018): script knowledge, narrative texts",
                options: 2,
                splits: &["train", "dev", "test"],
                formats: "SPLIT-data.xml (the release)",
                parquet: None,
                context: "the text; the answer marked correct=\"True\"",
                reference: "Ostermann et al., MCScript: A Novel Dataset for Assessing Machine Comprehension Using Script Knowledge, LREC 2018",
            },
            Task::Reclor => TaskInfo {
                name: "reclor",
                title: "ReClor (Yu et al., 2020): logical reasoning questions from standardized tests",
                options: 4,
                splits: &["dev"],
                formats: "val.json (the release; dev = val), SPLIT[-*].parquet",
                parquet: Some("context, question, answers (list), label, id_string"),
                context: "the context",
                reference: "Yu et al., ReClor: A Reading Comprehension Dataset Requiring Logical Reasoning, ICLR 2020",
            },
            Task::Cosmosqa => TaskInfo {
                name: "cosmosqa",
                title: "Cosmos QA (Huang et al., 2019): commonsense reading comprehension",
                options: 4,
                splits: &["dev"],
                formats: "valid.csv (the release; dev = valid), SPLIT[-*].parquet",
                parquet: Some("id, context, question, answer0..answer3, label (cosmos_qa)"),
                context: "the context",
                reference: "Huang et al., Cosmos QA: Machine Reading Comprehension with Contextual Commonsense Reasoning, EMNLP 2019",
            },
            Task::Quail => TaskInfo {
                name: "quail",
                title: "QuAIL (Rogers et al., 2020): question types over four domains",
                options: 4,
                splits: &["dev", "challenge"],
                formats: "dev.xml, challenge.jsonl (the release v1.3), SPLIT[-*].parquet",
                parquet: Some("id, context_id, context, question, question_type, answers (list), correct_answer_id (quail)"),
                context: "the text body; the question type kept as the question's category",
                reference: "Rogers et al., Getting Closer to AI Complete Question Answering: A Set of Prerequisite Real Tasks, AAAI 2020",
            },
        }
    }

    /// Loads `path` for the options' split. RACE keeps its own detection ([`super::load`]).
    pub fn load(self, path: &Path, opts: &LoadOptions) -> Result<Dataset> {
        if self == Task::Race {
            return super::load(path, opts);
        }
        let files = self.files(path, &opts.split)?;
        let mut ds = if files
            .iter()
            .all(|f| f.extension().is_some_and(|e| e == "parquet"))
        {
            let rows = super::parquet::rows(&files)?;
            let mut b = build::Builder::new(self);
            for (file, line, row) in rows {
                self.parquet_row(&mut b, &file, line, &row);
            }
            b.finish(files.clone())
        } else {
            let file = &files[0];
            match self {
                Task::Dream => dream::load(file)?,
                Task::Mctest160 | Task::Mctest500 => mctest::load(self, file)?,
                Task::Mcscript => mcscript::load(file)?,
                Task::Reclor => reclor::load(file)?,
                Task::Cosmosqa => cosmosqa::load(file)?,
                Task::Quail => quail::load(file)?,
                Task::Race => unreachable!("handled above"),
            }
        };
        super::finish_load(&mut ds, opts, path)?;
        Ok(ds)
    }

    /// A parquet row (as JSON) in the Hub copy's columns.
    fn parquet_row(self, b: &mut build::Builder, file: &Path, line: usize, row: &Value) {
        match self {
            Task::Dream => dream::hub_row(b, file, line, row),
            Task::Mctest160 | Task::Mctest500 => mctest::hub_row(b, file, line, row),
            Task::Reclor => reclor::row(b, file, line, row),
            Task::Cosmosqa => cosmosqa::row(b, file, line, row),
            Task::Quail => quail::row(b, file, line, row),
            Task::Race | Task::Mcscript => b.error_at(
                file,
                Some(line),
                None,
                None,
                "this task has no parquet layout",
            ),
        }
    }

    /// The files of `split` under `path` (a file is taken as it is).
    fn files(self, path: &Path, split: &str) -> Result<Vec<PathBuf>> {
        if path.is_file() {
            return Ok(vec![path.to_path_buf()]);
        }
        if !path.is_dir() {
            bail!("--data {}: no such file or folder", path.display());
        }
        let aliases: Vec<&str> = match split {
            "dev" | "validation" | "val" | "valid" => vec!["dev", "validation", "val", "valid"],
            other => vec![other],
        };
        let names: Vec<String> = aliases
            .iter()
            .flat_map(|s| match self {
                Task::Dream => vec![format!("{s}.json")],
                Task::Mctest160 => vec![format!("mc160.{s}.tsv")],
                Task::Mctest500 => vec![format!("mc500.{s}.tsv")],
                Task::Mcscript => vec![format!("{s}-data.xml")],
                Task::Reclor => vec![format!("{s}.json")],
                Task::Cosmosqa => vec![format!("{s}.csv")],
                Task::Quail => vec![format!("{s}.xml"), format!("{s}.jsonl")],
                Task::Race => vec![],
            })
            .collect();
        for n in &names {
            if path.join(n).is_file() {
                return Ok(vec![path.join(n)]);
            }
        }
        let shards = super::parquet::split_files(path, split);
        if !shards.is_empty() {
            return Ok(shards);
        }
        bail!(
            "--task {}: no file for split `{split}` in {}: expected one of {} or {split}[-*].parquet ({}; `race-eval tasks` lists each task's files)",
            self.name(),
            path.display(),
            names.join(", "),
            self.info().formats
        )
    }
}
