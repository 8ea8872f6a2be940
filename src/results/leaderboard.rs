//! The leaderboard: published RACE baselines (checked in at `datasets/published/race.json`,
//! built into the binary) ranked together with every local run of the same split. Dev and test
//! numbers are never ranked together.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tabled::builder::Builder;
use tabled::settings::Style;

use super::{normalize_split, LocalRun, RunSummary};
use crate::data::Task;
use crate::stats::{wilson95, Interval};

/// The published rows of each task, as checked in (`datasets/published/TASK.json`).
pub fn published_json(task: Task) -> &'static str {
    match task {
        Task::Race => include_str!("../../datasets/published/race.json"),
        Task::Dream => include_str!("../../datasets/published/dream.json"),
        Task::Mctest160 => include_str!("../../datasets/published/mctest160.json"),
        Task::Mctest500 => include_str!("../../datasets/published/mctest500.json"),
        Task::Mcscript => include_str!("../../datasets/published/mcscript.json"),
        Task::Reclor => include_str!("../../datasets/published/reclor.json"),
        Task::Cosmosqa => include_str!("../../datasets/published/cosmosqa.json"),
        Task::Quail => include_str!("../../datasets/published/quail.json"),
    }
}

/// One published result (percentages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    pub system: String,
    /// `test`, `dev`, or `any` (ranked with every split).
    pub split: String,
    pub overall: f64,
    #[serde(default)]
    pub middle: Option<f64>,
    #[serde(default)]
    pub high: Option<f64>,
    /// Size of the split evaluated, where the whole split was.
    #[serde(default)]
    pub questions: Option<usize>,
    pub cite: String,
    pub reference: String,
    /// Sub-scores where the source gives them (ReClor's easy/hard, QuAIL's question types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<std::collections::BTreeMap<String, f64>>,
}

#[derive(Deserialize)]
struct PublishedFile {
    rows: Vec<Published>,
}

pub fn published() -> Result<Vec<Published>> {
    published_for(Task::Race)
}

/// The published rows of `task`; every row must name its source.
pub fn published_for(task: Task) -> Result<Vec<Published>> {
    let f: PublishedFile = serde_json::from_str(published_json(task)).with_context(|| {
        format!(
            "datasets/published/{}.json is not valid: fix it and rebuild",
            task.name()
        )
    })?;
    for r in &f.rows {
        if r.cite.trim().is_empty() || r.reference.trim().is_empty() {
            bail!(
                "datasets/published/{}.json: row `{}` has no source: every number needs one",
                task.name(),
                r.system
            );
        }
    }
    Ok(f.rows)
}

/// One leaderboard row (percentages).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub rank: usize,
    pub system: String,
    /// True for runs found under the results folder.
    pub local: bool,
    pub split: String,
    pub overall: f64,
    pub middle: Option<f64>,
    pub high: Option<f64>,
    /// 95% Wilson interval in percent: a local run's own; for a published row derived from the
    /// rounded accuracy and the split's size (approximate); none where the size is unknown.
    pub ci95: Option<Interval>,
    /// overall minus the best row's overall (points, ≤ 0).
    pub delta_best: f64,
    pub questions: Option<usize>,
    /// The citation of a published row; `local: <data>` for a local run.
    pub source: String,
}

fn pct(i: Interval) -> Interval {
    Interval {
        lo: 100.0 * i.lo,
        hi: 100.0 * i.hi,
    }
}

/// A local run's row; `None` for runs that cannot rank (a single shard, no questions).
pub fn local_row(s: &RunSummary) -> Option<Row> {
    if s.shard.is_some() {
        return None;
    }
    let overall = s.accuracy.overall.accuracy?;
    let level = if s.data.level == "all" {
        String::new()
    } else {
        format!(", {} only", s.data.level)
    };
    Some(Row {
        rank: 0,
        system: s.run_id.clone(),
        local: true,
        split: normalize_split(&s.data.split),
        overall: 100.0 * overall,
        middle: s.accuracy.middle.accuracy.map(|v| 100.0 * v),
        high: s.accuracy.high.accuracy.map(|v| 100.0 * v),
        ci95: s.accuracy.overall.ci95.map(pct),
        delta_best: 0.0,
        questions: Some(s.counts.questions),
        source: match &s.settings.protocol {
            Some(p) => format!("local: {}{level}, zero-shot {p}", s.data.path),
            None => format!("local: {}{level}", s.data.path),
        },
    })
}

pub fn published_row(p: &Published) -> Row {
    let ci95 = p.questions.and_then(|n| {
        let correct = (p.overall / 100.0 * n as f64).round() as usize;
        wilson95(correct.min(n), n).map(pct)
    });
    Row {
        rank: 0,
        system: p.system.clone(),
        local: false,
        split: p.split.clone(),
        overall: p.overall,
        middle: p.middle,
        high: p.high,
        ci95,
        delta_best: 0.0,
        questions: p.questions,
        source: p.cite.clone(),
    }
}

/// The ranking for `split` (dev/validation fold together): published rows of that split (and
/// split `any`) with the local runs of that split, best first, ranked and with the distance to
/// the best row.
pub fn leaderboard(split: &str, local: &[LocalRun]) -> Result<Vec<Row>> {
    leaderboard_for(Task::Race, split, local)
}

/// [`leaderboard`] for `task`: its published rows and the local runs of that task.
pub fn leaderboard_for(task: Task, split: &str, local: &[LocalRun]) -> Result<Vec<Row>> {
    let split = normalize_split(split);
    let mut rows: Vec<Row> = published_for(task)?
        .iter()
        .filter(|p| p.split == split || p.split == "any")
        .map(published_row)
        .collect();
    rows.extend(
        local
            .iter()
            .filter(|(_, s)| s.data.task == task.name())
            .filter_map(|(_, s)| local_row(s))
            .filter(|r| r.split == split),
    );
    let known = ["test", "dev"].contains(&split.as_str())
        || task
            .info()
            .splits
            .iter()
            .any(|s| normalize_split(s) == split);
    if !known {
        bail!(
            "--split {split}: task `{}` has splits {} (dev is also validation)",
            task.name(),
            task.info().splits.join(", ")
        );
    }
    rows.sort_by(|a, b| {
        b.overall
            .total_cmp(&a.overall)
            .then(a.local.cmp(&b.local))
            .then(a.system.cmp(&b.system))
    });
    let best = rows[0].overall;
    for (i, r) in rows.iter_mut().enumerate() {
        r.rank = i + 1;
        r.delta_best = r.overall - best;
    }
    Ok(rows)
}

/// Output formats of `race-eval leaderboard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Markdown,
    Json,
    Csv,
}

const HEADER: [&str; 9] = [
    "#", "system", "overall", "95% CI", "middle", "high", "Δ best", "n", "source",
];

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
}

fn cells(r: &Row) -> Vec<String> {
    vec![
        r.rank.to_string(),
        if r.local {
            format!("* {}", r.system)
        } else {
            r.system.clone()
        },
        format!("{:.1}", r.overall),
        r.ci95
            .map(|i| format!("{:.1}-{:.1}", i.lo, i.hi))
            .unwrap_or_else(|| "-".into()),
        opt(r.middle),
        opt(r.high),
        format!("{:+.1}", r.delta_best),
        r.questions
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into()),
        r.source.clone(),
    ]
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The rows in `format`. Local runs are starred in table and markdown, `local` in json and csv.
pub fn render(rows: &[Row], format: Format) -> Result<String> {
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(rows)? + "\n",
        Format::Csv => {
            let mut out = String::from(
                "rank,system,local,split,overall,ci95_lo,ci95_hi,middle,high,delta_best,questions,source\n",
            );
            for r in rows {
                let f = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_default();
                out += &[
                    r.rank.to_string(),
                    csv_field(&r.system),
                    r.local.to_string(),
                    r.split.clone(),
                    format!("{:.2}", r.overall),
                    f(r.ci95.map(|i| i.lo)),
                    f(r.ci95.map(|i| i.hi)),
                    f(r.middle),
                    f(r.high),
                    format!("{:.2}", r.delta_best),
                    r.questions.map(|n| n.to_string()).unwrap_or_default(),
                    csv_field(&r.source),
                ]
                .join(",");
                out.push('\n');
            }
            out
        }
        Format::Table | Format::Markdown => {
            let mut b = Builder::default();
            b.push_record(HEADER.map(String::from));
            for r in rows {
                b.push_record(cells(r));
            }
            let mut t = b.build();
            if format == Format::Markdown {
                t.with(Style::markdown());
            } else {
                t.with(Style::rounded());
            }
            let mut out = t.to_string() + "\n";
            if rows.iter().any(|r| r.local) {
                out += "* local run\n";
            }
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_rows_parse_and_cite() {
        let p = published().unwrap();
        assert!(p.len() >= 18);
        assert!(p
            .iter()
            .all(|r| !r.cite.is_empty() && !r.reference.is_empty()));
        let albert = p.iter().find(|r| r.system == "ALBERT (ensemble)").unwrap();
        assert_eq!(
            (albert.overall, albert.middle, albert.high),
            (89.4, Some(91.2), Some(88.6))
        );
        // Zero-shot decoder LMs scored by lm-evaluation-harness (RACE-high, last question per
        // article), as the MobiLlama README reports them.
        let pythia = p
            .iter()
            .find(|r| r.system.starts_with("pythia-410m (zero-shot"))
            .unwrap();
        assert_eq!(
            (pythia.overall, pythia.middle, pythia.high),
            (30.71, None, Some(30.71))
        );
    }

    #[test]
    fn dev_and_test_never_mix() {
        let test = leaderboard("test", &[]).unwrap();
        assert!(test.iter().all(|r| r.split == "test" || r.split == "any"));
        assert_eq!(test[0].system, "Human ceiling");
        assert!(test.iter().any(|r| r.system == "Random guess"));
        let dev = leaderboard("validation", &[]).unwrap();
        assert!(dev.iter().all(|r| r.split == "dev" || r.split == "any"));
        assert_eq!(dev[0].system, "ALBERT-xxlarge v2");
        assert!(dev.windows(2).all(|w| w[0].overall >= w[1].overall));
        assert_eq!(dev[0].delta_best, 0.0);
        // A split with no published rows shows chance alone; an unknown split is an error.
        let train = leaderboard("train", &[]).unwrap();
        assert!(train.iter().all(|r| r.split == "any"));
        let e = leaderboard("tset", &[]).unwrap_err().to_string();
        assert!(e.contains("tset") && e.contains("train, dev, test"), "{e}");
    }

    #[test]
    fn csv_quotes_commas() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
