//! Zero-shot decoder LMs through `race-eval eval --model FILE.gguf`: the harness protocols on
//! the bundled sample, the cached scoring against plain one-sequence scoring, the harness' left
//! truncation at the context limit, run records read by `report`, `leaderboard` and `compare`,
//! and the refusals. Tests needing SmolLM2's GGUF file print "SKIPPED: ..." without it
//! (`scripts/fetch_smollm2.sh` fetches it).

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Device;
use race_eval::data::{LevelFilter, Task};
use race_eval::eval::lm::{evaluate_lm, LmRequest};
use race_eval::features::harness::{self, Protocol};
use race_eval::model::llama::{Llama, WeightMode};

fn gguf_path() -> Option<PathBuf> {
    let cache = std::env::var_os("RACE_EVAL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/race-eval")))?;
    let p = cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    p.is_file().then_some(p)
}

macro_rules! need_gguf {
    () => {
        match gguf_path() {
            Some(p) => p,
            None => {
                println!("SKIPPED: run scripts/fetch_smollm2.sh to fetch SmolLM2-135M-Instruct.Q4_1.gguf");
                return;
            }
        }
    };
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/sample/test.jsonl")
}

fn request(model: PathBuf, protocol: Protocol, limit: Option<usize>) -> LmRequest {
    LmRequest {
        model: race_eval::open::LmLocation {
            path: model,
            hub: None,
        },
        data: sample(),
        task: Task::Race,
        split: "test".into(),
        level: LevelFilter::All,
        skip_invalid: false,
        protocol,
        limit,
        max_len: None,
        weights: WeightMode::Dequantized,
        quiet: true,
    }
}

fn race_eval(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_race-eval"))
        .args(args)
        .output()
        .unwrap()
}

/// The cached, batched scoring equals running each option as one plain sequence; `pred` and
/// `pred_norm` are the harness' argmaxes of the log-likelihoods.
#[test]
fn cached_scores_equal_plain_sequences() {
    let path = need_gguf!();
    let out = evaluate_lm(&request(path.clone(), Protocol::HarnessAll, Some(3))).unwrap();
    assert_eq!(out.predictions.len(), 3);
    assert_eq!(out.truncated, 0);
    let model = Llama::from_gguf(&path, WeightMode::Dequantized, &Device::Cpu).unwrap();
    let docs = harness::documents(&out.dataset.questions, Protocol::HarnessAll);
    // The three are one article's: the second and third reuse the cache of the prompt before.
    let passage = |i: usize| &out.dataset.questions[docs[i].question].passage_id;
    assert!(passage(0) == passage(1) && passage(1) == passage(2));
    let tok = race_eval::open::open_gguf(&path).unwrap().tokenizer;
    for (p, doc) in out.predictions.iter().zip(&docs) {
        let q = &out.dataset.questions[doc.question];
        assert_eq!(p.id, q.id);
        let ids = harness::encode_doc(&tok, doc).unwrap();
        for (o, cont) in ids.continuations.iter().enumerate() {
            let plain: f32 = model
                .sequence_logprobs(&ids.context, cont)
                .unwrap()
                .iter()
                .sum();
            assert!(
                (plain - p.logits[o]).abs() < 1e-3,
                "{} option {o}: {plain} vs {}",
                p.id,
                p.logits[o]
            );
            assert!(p.logits[o] < 0.0);
        }
        assert_eq!(p.pred, harness::argmax(&p.logits));
        assert_eq!(
            p.pred_norm,
            Some(harness::argmax_norm(&p.logits, &q.options))
        );
    }
}

/// At a context limit shorter than the prompts, each option's input is the harness'
/// `(context + continuation)[-(max_len + 1):][:-1]`, and the run says how many were cut.
#[test]
fn truncates_from_the_left_as_the_harness() {
    let path = need_gguf!();
    let mut req = request(path.clone(), Protocol::HarnessLast, Some(2));
    req.max_len = Some(48);
    let out = evaluate_lm(&req).unwrap();
    assert_eq!(out.truncated, 2);
    assert!(out
        .warnings
        .iter()
        .any(|w| w.contains("truncated from the left")));
    let model = Llama::from_gguf(&path, WeightMode::Dequantized, &Device::Cpu).unwrap();
    let tok = race_eval::open::open_gguf(&path).unwrap().tokenizer;
    let docs = harness::documents(&out.dataset.questions, Protocol::HarnessLast);
    for (p, doc) in out.predictions.iter().zip(&docs) {
        let ids = harness::encode_doc(&tok, doc).unwrap();
        assert!(ids.context.len() > 48);
        for (o, cont) in ids.continuations.iter().enumerate() {
            let whole: Vec<u32> = ids.context.iter().chain(cont).copied().collect();
            let inp = &whole[whole.len() - 49..whole.len() - 1];
            assert_eq!(inp.len(), 48);
            let ctx = &inp[..inp.len() + 1 - cont.len()];
            let want: f32 = model.sequence_logprobs(ctx, cont).unwrap().iter().sum();
            assert!(
                (want - p.logits[o]).abs() < 1e-3,
                "{want} vs {}",
                p.logits[o]
            );
        }
    }
}

/// `eval --model FILE.gguf` writes predictions and a run record naming its protocol, which
/// `report`, `leaderboard` and `compare` read.
#[test]
fn cli_run_record_report_leaderboard_compare() {
    let path = need_gguf!();
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let preds = dir.path().join("p.jsonl");
    let model = path.to_str().unwrap();
    let data = sample();
    let run = |protocol: &str, weights: &str, preds: Option<&Path>| {
        let mut args = vec![
            "eval",
            "--model",
            model,
            "--data",
            data.to_str().unwrap(),
            "--protocol",
            protocol,
            "--weights",
            weights,
            "-q",
            "--output-dir",
            results.to_str().unwrap(),
        ];
        if let Some(p) = preds {
            args.extend(["--predictions", p.to_str().unwrap()]);
        }
        let out = race_eval(&args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout.lines().find(|l| l.starts_with("run: ")).unwrap();
        PathBuf::from(line.trim_start_matches("run: "))
    };
    // The sample has 5 articles: harness-last scores 5 questions.
    let a = run("harness-last", "dequantized", Some(&preds));
    let b = run("harness-last", "dequantize-on-use", None);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["settings"]["protocol"], "harness-last");
    assert_eq!(summary["settings"]["dtype"], "Q4_1 dequantized");
    let n = summary["counts"]["questions"].as_u64().unwrap();
    assert_eq!(n, summary["counts"]["passages"].as_u64().unwrap());
    assert!(summary["accuracy_norm"]["overall"]["total"].as_u64() == Some(n));
    let lines = std::fs::read_to_string(&preds).unwrap();
    assert_eq!(lines.lines().count() as u64, n);
    for l in lines.lines() {
        let p: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(p["logits"].as_array().unwrap().len(), 4);
        assert!(p["pred_norm"].is_u64());
    }

    let report = race_eval(&["report", a.to_str().unwrap(), "--json"]);
    assert!(report.status.success());
    let board = race_eval(&[
        "leaderboard",
        "--results-dir",
        results.to_str().unwrap(),
        "--format",
        "csv",
    ]);
    let board = String::from_utf8_lossy(&board.stdout).to_string();
    assert!(board.contains("zero-shot harness-last"), "{board}");
    // Both weight modes compute in f32: the same answers, so McNemar sees no discordant pair.
    let cmp = race_eval(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--json",
    ]);
    let cmp_out = String::from_utf8_lossy(&cmp.stdout).to_string();
    assert!(cmp.status.success(), "{cmp_out}");
    let v: serde_json::Value = serde_json::from_str(&cmp_out).unwrap();
    assert_eq!(v["only_a"], 0, "{cmp_out}");
    assert_eq!(v["only_b"], 0, "{cmp_out}");

    // Ensembles: two runs of one protocol average; an LM run and an encoder run on the same
    // questions do not.
    let ens = race_eval(&[
        "ensemble",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--output-dir",
        results.to_str().unwrap(),
    ]);
    assert!(
        ens.status.success(),
        "{}",
        String::from_utf8_lossy(&ens.stderr)
    );
    let all = run("harness-all", "dequantized", None);
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/models/tiny-albert");
    let enc = race_eval(&[
        "eval",
        "--model",
        tiny.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "-q",
        "--output-dir",
        results.to_str().unwrap(),
    ]);
    assert!(
        enc.status.success(),
        "{}",
        String::from_utf8_lossy(&enc.stderr)
    );
    let enc_dir = String::from_utf8_lossy(&enc.stdout)
        .lines()
        .find(|l| l.starts_with("run: "))
        .unwrap()
        .trim_start_matches("run: ")
        .to_string();
    let mixed = race_eval(&["ensemble", all.to_str().unwrap(), &enc_dir]);
    assert!(!mixed.status.success());
    let err = String::from_utf8_lossy(&mixed.stderr).to_string();
    assert!(
        err.contains("one protocol only") && err.contains("zero-shot harness-all"),
        "{err}"
    );
    // The same questions, though: compare pairs them.
    let cmp = race_eval(&["compare", all.to_str().unwrap(), &enc_dir]);
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stderr)
    );
}

/// Refusals that need no weights.
#[test]
fn refusals() {
    let data = sample();
    let data = data.to_str().unwrap();
    let out = race_eval(&["eval", "--model", "no/such.gguf", "--data", data, "-q"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));
    // Refused before the file is read (an empty file named .gguf).
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("x.gguf");
    std::fs::write(&empty, b"").unwrap();
    let out = race_eval(&[
        "eval",
        "--model",
        empty.to_str().unwrap(),
        "--data",
        data,
        "--shard",
        "0/2",
        "-q",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("run it unsharded"));
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/models/tiny-albert");
    let out = race_eval(&[
        "eval",
        "--model",
        tiny.to_str().unwrap(),
        "--data",
        data,
        "--protocol",
        "harness-last",
        "-q",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("apply to decoder LMs"));
}

/// Continuation log-probabilities `got` within 1e-3 of `want`, token by token.
fn assert_close(got: &[Vec<f32>], want: &[Vec<f32>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.len(), w.len(), "{what}");
        for (a, b) in g.iter().zip(w) {
            assert!((a - b).abs() < 1e-3, "{what}: {a} vs {b}");
        }
    }
}

/// A prompt run in chunks (each attending to the cached keys and values of the ones before)
/// gives the same continuation log-likelihoods as the prompt run whole.
#[test]
fn chunked_prompt_equals_whole_prompt() {
    let path = need_gguf!();
    let model = Llama::from_gguf(&path, WeightMode::DequantizeOnUse, &Device::Cpu).unwrap();
    let ids: Vec<u32> = (0..300u32).map(|i| 200 + (i * 37) % 5000).collect();
    let conts = vec![vec![300, 301, 302], vec![400], vec![500, 501]];
    let whole = model.prompt_chunked(&ids, 10_000).unwrap();
    let want = model.continuation_logprobs(&whole, &conts).unwrap();
    for chunk in [1usize, 7, 128, 299] {
        let c = model.prompt_chunked(&ids[..], chunk).unwrap();
        assert_eq!(c.len(), 300);
        let got = model.continuation_logprobs(&c, &conts).unwrap();
        assert_close(&got, &want, &format!("chunk {chunk}"));
    }
}

/// A prompt that reuses another's cache for the tokens they share gives the same continuation
/// log-likelihoods as the prompt run alone, whatever the two share: a prefix (the next
/// question of an article), everything (the same prompt again: its last token still runs),
/// a longer previous prompt, or nothing.
#[test]
fn reused_prompt_cache_equals_a_fresh_prompt() {
    let path = need_gguf!();
    let model = Llama::from_gguf(&path, WeightMode::DequantizeOnUse, &Device::Cpu).unwrap();
    let ids: Vec<u32> = (0..300u32).map(|i| 200 + (i * 37) % 5000).collect();
    let conts = vec![vec![300, 301, 302], vec![400], vec![500, 501]];
    let fresh = model.prompt(&ids).unwrap();
    let want = model.continuation_logprobs(&fresh, &conts).unwrap();
    let other: Vec<u32> = (0..50u32).map(|i| 7000 + i).collect();
    let longer: Vec<u32> = ids.iter().copied().chain([11, 12, 13]).collect();
    // (previous prompt, tokens expected to run)
    let cases: [(&[u32], usize); 4] = [
        (&ids[..260], 40),
        (&ids[..], 1),
        (&longer[..], 1),
        (&other[..], 300),
    ];
    for (prev, runs) in cases {
        let cache = model.prompt(prev).unwrap();
        let (reused, ran) = model.prompt_reusing(Some((prev, cache)), &ids).unwrap();
        assert_eq!(
            (reused.len(), ran),
            (300, runs),
            "previous of {}",
            prev.len()
        );
        let got = model.continuation_logprobs(&reused, &conts).unwrap();
        assert_close(&got, &want, &format!("previous of {}", prev.len()));
    }
    // A cache that is not the named prompt's is refused.
    let cache = model.prompt(&ids[..10]).unwrap();
    let e = model
        .prompt_reusing(Some((&ids[..20], cache)), &ids)
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .contains("a cache of 10 tokens for a prompt of 20"),
        "{e}"
    );
}
