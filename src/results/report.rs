//! `race-eval report`: a run's provenance, accuracies with intervals and breakdowns as text.

use tabled::builder::Builder;
use tabled::settings::Style;

use super::breakdown::Bucket;
use super::{RunSummary, Score};

fn score_cells(name: &str, s: &Score) -> Vec<String> {
    vec![
        name.to_string(),
        s.accuracy
            .map(|a| format!("{:.2}", 100.0 * a))
            .unwrap_or_else(|| "-".into()),
        s.ci95
            .map(|i| format!("{:.1}-{:.1}", 100.0 * i.lo, 100.0 * i.hi))
            .unwrap_or_else(|| "-".into()),
        format!("{} / {}", s.correct, s.total),
    ]
}

fn table(first: &str, rows: Vec<Vec<String>>) -> String {
    let mut b = Builder::default();
    b.push_record([first, "accuracy %", "95% CI", "correct / total"].map(String::from));
    for r in rows {
        b.push_record(r);
    }
    let mut t = b.build();
    t.with(Style::sharp());
    t.to_string() + "\n"
}

fn buckets(first: &str, v: &[Bucket]) -> String {
    table(
        first,
        v.iter().map(|b| score_cells(&b.name, &b.score)).collect(),
    )
}

/// The whole report of one run.
pub fn render(s: &RunSummary) -> String {
    let mut out = format!(
        "run {} ({}, created {}, race-eval {} at commit {})\n",
        s.run_id,
        s.kind.as_str(),
        s.created,
        s.race_eval.version,
        s.race_eval.git_commit
    );
    out += &format!(
        "model {} ({}), weights sha256 {}{}\n",
        s.model.name,
        if s.model.path.is_empty() {
            "-"
        } else {
            &s.model.path
        },
        s.model.weights_sha256,
        s.model
            .head
            .as_ref()
            .map(|h| format!(", head {h}"))
            .unwrap_or_default()
    );
    out += &format!(
        "data {} ({}, split {}, level {}), sha256 {} over {} file(s)\n",
        s.data.path, s.data.format, s.data.split, s.data.level, s.data.sha256, s.data.files
    );
    if let Some(sh) = s.shard {
        out += &format!("shard {sh} of the data only\n");
    }
    if !s.members.is_empty() {
        out += &format!("made from {}\n", s.members.join(", "));
    }
    out += &format!(
        "{} questions in {} passages, {} skipped\n",
        s.counts.questions, s.counts.passages, s.counts.skipped
    );
    out += &format!(
        "max_seq_len {}, max_qa_len {}, dtype {}, device {}, batch size {}; wall time {:.2} s, {:.2} questions/s\n\n",
        s.settings.max_seq_len,
        s.settings.max_qa_len,
        s.settings.dtype,
        s.settings.device,
        s.settings.batch_size,
        s.timing.wall_secs,
        s.timing.questions_per_sec
    );
    let a = &s.accuracy;
    let mut levels = vec![
        score_cells("overall", &a.overall),
        score_cells("middle", &a.middle),
        score_cells("high", &a.high),
    ];
    if let Some(o) = &a.other {
        levels.push(score_cells("other", o));
    }
    out += &table("level", levels);
    out += "\nby article length (words):\n";
    out += &buckets("words", &s.breakdowns.article_words);
    out += "\nby question kind:\n";
    out += &buckets("kind", &s.breakdowns.question_kind);
    out += "\nby gold option position:\n";
    out += &buckets("gold", &s.breakdowns.gold_option);
    if !s.breakdowns.category.is_empty() {
        out += &format!("\nby {} question category:\n", s.data.task);
        out += &buckets("category", &s.breakdowns.category);
    }
    out
}
