//! The RACE-style tasks end to end on small files written here in each set's own format (no
//! licensed text): each evaluates from its own files and, where the Hub has a parquet layout,
//! from the same rows as parquet on the loopback Hub with the same predictions; bad input in
//! each format names file, line or item, and field; any number of options runs through eval,
//! records and the leaderboard.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

fn tiny() -> String {
    manifest()
        .join("datasets/models/tiny-albert")
        .display()
        .to_string()
}

/// A question: text, options, answer index.
type Q = (String, Vec<String>, usize);
/// A passage: id, context, questions.
type Passage = (&'static str, String, Vec<Q>);

/// Passages (context, [(question, options, answer index)]), shared by every format.
fn passages() -> Vec<Passage> {
    let opts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        (
            "p1",
            "The kite is red. Tom flies it on windy days.".to_string(),
            vec![
                (
                    "What colour is the kite?".into(),
                    opts(&["red", "blue", "green", "black"]),
                    0,
                ),
                (
                    "When does Tom fly it?".into(),
                    opts(&["rainy days", "windy days", "hot days", "never"]),
                    1,
                ),
            ],
        ),
        (
            "p2",
            "Ann bakes bread every Sunday morning for her family.".to_string(),
            vec![
                (
                    "What does Ann bake?".into(),
                    opts(&["cake", "pie", "bread", "rice"]),
                    2,
                ),
                (
                    "When does she bake?".into(),
                    opts(&["Monday", "Friday", "Saturday", "Sunday"]),
                    3,
                ),
            ],
        ),
    ]
}

/// The first `n` options of each question (the answer kept among them).
fn with_options(n: usize) -> Vec<Passage> {
    passages()
        .into_iter()
        .map(|(id, ctx, qs)| {
            let qs = qs
                .into_iter()
                .map(|(q, mut o, a)| {
                    let gold = o[a].clone();
                    o.truncate(n);
                    if a >= n {
                        o[n - 1] = gold.clone();
                    }
                    let a = o.iter().position(|x| *x == gold).unwrap();
                    (q, o, a)
                })
                .collect();
            (id, ctx, qs)
        })
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

/// `race-eval eval --task TASK --data DATA --split SPLIT --predictions P`; returns predictions.
fn eval(home: &Path, url: &str, task: &str, data: &str, split: &str) -> Vec<Value> {
    let preds = home.join(format!("preds-{}.jsonl", rand_name()));
    let out = race_eval(
        home,
        url,
        &[
            "eval",
            "--task",
            task,
            "--model",
            &tiny(),
            "--data",
            data,
            "--split",
            split,
            "--predictions",
            preds.to_str().unwrap(),
            "-q",
        ],
        false,
    );
    ok(&out);
    std::fs::read_to_string(&preds)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn rand_name() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst).to_string()
}

fn same_predictions(a: &[Value], b: &[Value]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        for k in ["id", "label", "pred", "category"] {
            assert_eq!(x[k], y[k], "{k}: {x} vs {y}");
        }
        let (lx, ly) = (
            x["logits"].as_array().unwrap(),
            y["logits"].as_array().unwrap(),
        );
        assert_eq!(lx.len(), ly.len());
        for (p, q) in lx.iter().zip(ly) {
            assert!((p.as_f64().unwrap() - q.as_f64().unwrap()).abs() < 1e-5);
        }
    }
}

/// A Hub dataset `race-eval/NAME` with `default/dev-00000-of-00001.parquet`.
fn hub_with(name: &str, bytes: Vec<u8>) -> HubServer {
    HubServer::start(
        vec![HubRepo::new(
            "datasets",
            &format!("race-eval/{name}"),
            &commit_hash(name),
            vec![HubFile::new(
                "default/validation-00000-of-00001.parquet",
                bytes,
            )],
        )],
        None,
    )
}

/// Own files and the Hub's parquet give the same predictions; the run record names the task.
fn own_and_hub(task: &str, data: &Path, split: &str, parquet: Vec<u8>) -> Vec<Value> {
    let home = tempfile::tempdir().unwrap();
    let server = hub_with(task, parquet);
    let own = eval(
        home.path(),
        &server.url,
        task,
        data.to_str().unwrap(),
        split,
    );
    let hub = eval(
        home.path(),
        &server.url,
        task,
        &format!("hub:race-eval/{task}"),
        "dev",
    );
    same_predictions(&own, &hub);
    let runs: Vec<PathBuf> = std::fs::read_dir(home.path().join("results"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    for r in runs {
        let s: Value =
            serde_json::from_slice(&std::fs::read(r.join("summary.json")).unwrap()).unwrap();
        assert_eq!(s["data"]["task"], task);
    }
    own
}

#[test]
fn dream_reads_its_release_and_the_hub_rows_alike() {
    let dir = tempfile::tempdir().unwrap();
    let ps = with_options(3);
    let release: Vec<Value> = ps
        .iter()
        .map(|(id, ctx, qs)| {
            let turns: Vec<String> = ctx.split(". ").map(|t| format!("M: {t}")).collect();
            json!([
                turns,
                qs.iter()
                    .map(|(q, o, a)| json!({"question": q, "choice": o, "answer": o[*a]}))
                    .collect::<Vec<_>>(),
                id
            ])
        })
        .collect();
    let file = write(
        dir.path(),
        "dev.json",
        &Value::Array(release.clone()).to_string(),
    );
    let rows: Vec<Value> = release
        .iter()
        .flat_map(|d| {
            d[1].as_array().unwrap().iter().map(move |q| {
                json!({"dialogue_id": d[2], "dialogue": d[0], "question": q["question"], "choice": q["choice"], "answer": q["answer"]})
            })
        })
        .collect();
    let parquet = parquet_bytes(
        &rows,
        &[
            ("dialogue_id", Col::Str),
            ("dialogue", Col::StrList),
            ("question", Col::Str),
            ("choice", Col::StrList),
            ("answer", Col::Str),
        ],
    );
    let preds = own_and_hub("dream", dir.path(), "dev", parquet);
    assert_eq!(preds.len(), 4);
    assert!(preds
        .iter()
        .all(|p| p["logits"].as_array().unwrap().len() == 3));
    assert_eq!(file.file_name().unwrap(), "dev.json");
}

#[test]
fn mctest_reads_tsv_with_ans_and_the_hub_rows_alike() {
    let dir = tempfile::tempdir().unwrap();
    // MCTest stories have four questions: repeat the two of each passage with other prefixes.
    let (mut tsv, mut ans, mut rows) = (String::new(), String::new(), Vec::new());
    for (id, ctx, qs) in passages() {
        let story = ctx.replace(". ", ".\\newline");
        let mut line = format!("mc160.dev.{id}\tAuthor: x\t{story}");
        let mut letters = Vec::new();
        for (k, prefix) in ["one", "multiple", "one", "multiple"].iter().enumerate() {
            let (q, o, a) = &qs[k % 2];
            let q = format!("{q} ({k})");
            line += &format!("\t{prefix}: {q}\t{}", o.join("\t"));
            let letter = ["A", "B", "C", "D"][*a];
            letters.push(letter);
            rows.push(
                json!({"idx": {"story": format!("mc160.dev.{id}"), "question": k.to_string()},
                "story": story, "question": format!("{prefix}: {q}"),
                "answer_options": {"A": o[0], "B": o[1], "C": o[2], "D": o[3]}, "answer": letter}),
            );
        }
        tsv += &(line + "\n");
        ans += &(letters.join("\t") + "\n");
    }
    write(dir.path(), "mc160.dev.tsv", &tsv);
    write(dir.path(), "mc160.dev.ans", &ans);
    let parquet = parquet_bytes(
        &rows,
        &[
            ("idx", Col::StrStruct(&["story", "question"])),
            ("story", Col::Str),
            ("question", Col::Str),
            ("answer_options", Col::StrStruct(&["A", "B", "C", "D"])),
            ("answer", Col::Str),
        ],
    );
    let preds = own_and_hub("mctest160", dir.path(), "dev", parquet);
    assert_eq!(preds.len(), 8);
    assert_eq!(preds[0]["category"], "one");
    assert_eq!(preds[1]["category"], "multiple");

    // The .ans file must match the stories line for line.
    write(dir.path(), "mc160.dev.ans", ans.lines().next().unwrap());
    let o = race_eval(
        dir.path(),
        "http://127.0.0.1:9",
        &[
            "eval",
            "--task",
            "mctest160",
            "--model",
            &tiny(),
            "--data",
            dir.path().to_str().unwrap(),
            "--split",
            "dev",
        ],
        true,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("mc160.dev.ans")
            && err.contains("1 answer line(s)")
            && err.contains("2 stories"),
        "{err}"
    );
}

#[test]
fn reclor_cosmosqa_and_quail_read_their_releases_and_the_hub_rows_alike() {
    // ReClor: val.json.
    let dir = tempfile::tempdir().unwrap();
    let mut reclor = Vec::new();
    for (id, ctx, qs) in passages() {
        for (k, (q, o, a)) in qs.iter().enumerate() {
            reclor.push(json!({"context": ctx, "question": q, "answers": o, "label": a, "id_string": format!("val_{id}_{k}")}));
        }
    }
    write(
        dir.path(),
        "val.json",
        &Value::Array(reclor.clone()).to_string(),
    );
    let parquet = parquet_bytes(
        &reclor,
        &[
            ("context", Col::Str),
            ("question", Col::Str),
            ("answers", Col::StrList),
            ("label", Col::Int),
            ("id_string", Col::Str),
        ],
    );
    assert_eq!(own_and_hub("reclor", dir.path(), "dev", parquet).len(), 4);

    // Cosmos QA: valid.csv with quotes and a newline inside a field.
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,context,question,answer0,answer1,answer2,answer3,label\n");
    let mut cosmos = Vec::new();
    for (id, ctx, qs) in passages() {
        for (k, (q, o, a)) in qs.iter().enumerate() {
            let ctx = format!("{ctx}\n\"Really,\" she said.");
            let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            csv += &format!(
                "{id}_{k},{},{},{},{}\n",
                quote(&ctx),
                quote(q),
                o.iter().map(|x| quote(x)).collect::<Vec<_>>().join(","),
                a
            );
            cosmos.push(
                json!({"id": format!("{id}_{k}"), "context": ctx, "question": q,
                "answer0": o[0], "answer1": o[1], "answer2": o[2], "answer3": o[3], "label": a}),
            );
        }
    }
    write(dir.path(), "valid.csv", &csv);
    let parquet = parquet_bytes(
        &cosmos,
        &[
            ("id", Col::Str),
            ("context", Col::Str),
            ("question", Col::Str),
            ("answer0", Col::Str),
            ("answer1", Col::Str),
            ("answer2", Col::Str),
            ("answer3", Col::Str),
            ("label", Col::Int),
        ],
    );
    assert_eq!(own_and_hub("cosmosqa", dir.path(), "dev", parquet).len(), 4);

    // QuAIL: challenge.jsonl as its own format, and the Hub's rows.
    let dir = tempfile::tempdir().unwrap();
    let mut quail = Vec::new();
    for (id, ctx, qs) in passages() {
        for (k, (q, o, a)) in qs.iter().enumerate() {
            quail.push(
                json!({"id": format!("{id}_{k}"), "context_id": id, "context": ctx, "question": q,
                "question_type": if k == 0 { "Factual" } else { "Temporal_order" },
                "answers": o, "correct_answer_id": a}),
            );
        }
    }
    let text: String = quail.iter().map(|r| r.to_string() + "\n").collect();
    write(dir.path(), "dev.jsonl", &text);
    let parquet = parquet_bytes(
        &quail,
        &[
            ("id", Col::Str),
            ("context_id", Col::Str),
            ("context", Col::Str),
            ("question", Col::Str),
            ("question_type", Col::Str),
            ("answers", Col::StrList),
            ("correct_answer_id", Col::Int),
        ],
    );
    let preds = own_and_hub("quail", dir.path(), "dev", parquet);
    assert_eq!(preds[0]["category"], "Factual");
}

#[test]
fn mcscript_reads_its_xml_with_two_options() {
    let dir = tempfile::tempdir().unwrap();
    let mut xml = String::from("<?xml version=\"1.0\" ?>\n<data>\n");
    for (n, (_, ctx, qs)) in with_options(2).iter().enumerate() {
        xml += &format!(
            "  <instance id=\"{n}\" scenario=\"s\">\n    <text>{ctx}</text>\n    <questions>\n"
        );
        for (k, (q, o, a)) in qs.iter().enumerate() {
            xml += &format!(
                "      <question id=\"{k}\" text=\"{q}\" type=\"{}\">\n",
                if k == 0 { "text" } else { "commonsense" }
            );
            for (i, opt) in o.iter().enumerate() {
                xml += &format!(
                    "        <answer correct=\"{}\" id=\"{i}\" text=\"{opt}\"/>\n",
                    if i == *a { "True" } else { "False" }
                );
            }
            xml += "      </question>\n";
        }
        xml += "    </questions>\n  </instance>\n";
    }
    xml += "</data>\n";
    write(dir.path(), "dev-data.xml", &xml);
    let home = tempfile::tempdir().unwrap();
    let preds = eval(
        home.path(),
        "http://127.0.0.1:9",
        "mcscript",
        dir.path().to_str().unwrap(),
        "dev",
    );
    assert_eq!(preds.len(), 4);
    assert!(preds
        .iter()
        .all(|p| p["logits"].as_array().unwrap().len() == 2));
    assert_eq!(preds[0]["id"], "instance 0#0");
    assert_eq!(preds[1]["category"], "commonsense");
    // The leaderboard ranks the 2-option run against MCScript's own rows (chance 50%).
    let out = race_eval(
        home.path(),
        "http://127.0.0.1:9",
        &["leaderboard", "--task", "mcscript", "--split", "dev"],
        true,
    );
    let text = ok(&out);
    assert!(
        text.contains("Random guess") && text.contains("50.0") && text.contains("* tiny-albert"),
        "{text}"
    );
    let out = race_eval(
        home.path(),
        "http://127.0.0.1:9",
        &["leaderboard", "--task", "race", "--split", "dev"],
        true,
    );
    assert!(
        !ok(&out).contains("* tiny-albert"),
        "a MCScript run is not ranked on RACE"
    );
}

/// `race-eval eval --task TASK` on `data` fails; the error contains every part.
fn refused(task: &str, data: &Path, split: &str, parts: &[&str]) {
    let home = tempfile::tempdir().unwrap();
    let o = race_eval(
        home.path(),
        "http://127.0.0.1:9",
        &[
            "eval",
            "--task",
            task,
            "--model",
            &tiny(),
            "--data",
            data.to_str().unwrap(),
            "--split",
            split,
            "-q",
        ],
        true,
    );
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(!o.status.success() && !out.contains("overall"), "{out}");
    for p in parts {
        assert!(err.contains(p), "{task}: {p:?} missing from {err}");
    }
}

#[test]
fn bad_input_in_each_format_names_file_line_or_item_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // DREAM: an answer that is none of its choices.
    write(d, "dream/dev.json", &json!([[["M: Hi."], [{"question": "Who?", "choice": ["a", "b", "c"], "answer": "d"}], "5-1"]]).to_string());
    refused(
        "dream",
        &d.join("dream"),
        "dev",
        &[
            "dev.json",
            "passage 5-1",
            "field `answer`",
            "\"d\" is not one of its choices",
        ],
    );
    // MCScript: malformed XML, by line.
    write(
        d,
        "mcs/dev-data.xml",
        "<data>\n  <instance id=\"0\">\n    <text>x</text>\n  </oops>\n</data>\n",
    );
    refused(
        "mcscript",
        &d.join("mcs"),
        "dev",
        &["dev-data.xml:", "malformed XML"],
    );
    // QuAIL: two answers marked correct.
    write(d, "quail/dev.xml", "<data>\n <text id=\"f1\">\n  <text_body>Body.</text_body>\n  <questions>\n   <q id=\"1\" type=\"Factual\">\n    Q?\n    <a id=\"1\" correct=\"True\">x</a>\n    <a id=\"2\" correct=\"True\">y</a>\n   </q>\n  </questions>\n </text>\n</data>\n");
    refused(
        "quail",
        &d.join("quail"),
        "dev",
        &["dev.xml:5", "passage f1", "a@correct", "2 answers"],
    );
    // ReClor: a missing label, by item.
    write(d, "reclor/val.json", &json!([{"context": "c", "question": "q", "answers": ["a", "b", "c", "d"], "id_string": "val_0"}]).to_string());
    refused(
        "reclor",
        &d.join("reclor"),
        "dev",
        &["val.json", "val_0", "field `label`"],
    );
    // Cosmos QA: a label outside the options, by line.
    write(
        d,
        "cosmos/valid.csv",
        "id,context,question,answer0,answer1,answer2,answer3,label\nx1,ctx,q?,a,b,c,d,7\n",
    );
    refused(
        "cosmosqa",
        &d.join("cosmos"),
        "dev",
        &["valid.csv:2", "field `answer`", "outside the 4 options"],
    );
    // A task asked for a split it has no file for says which files it looks for.
    refused(
        "reclor",
        &d.join("reclor"),
        "test",
        &["no file for split `test`", "test.json"],
    );
    // --level belongs to RACE.
    let home = tempfile::tempdir().unwrap();
    let o = race_eval(
        home.path(),
        "http://127.0.0.1:9",
        &[
            "eval",
            "--task",
            "reclor",
            "--model",
            &tiny(),
            "--data",
            d.join("reclor").to_str().unwrap(),
            "--split",
            "dev",
            "--level",
            "high",
        ],
        true,
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("drop --level"));
    // An unknown task lists the known ones.
    let o = race_eval(
        home.path(),
        "http://127.0.0.1:9",
        &["eval", "--task", "squad", "--model", "m", "--data", "d"],
        true,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("squad") && err.contains("dream") && err.contains("quail"),
        "{err}"
    );
}

#[test]
fn tasks_lists_every_task_with_its_files_and_splits() {
    let home = tempfile::tempdir().unwrap();
    let o = race_eval(
        home.path(),
        "http://127.0.0.1:9",
        &["tasks", "--json"],
        true,
    );
    ok(&o);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "race",
            "dream",
            "mctest160",
            "mctest500",
            "mcscript",
            "reclor",
            "cosmosqa",
            "quail"
        ]
    );
    for t in v.as_array().unwrap() {
        assert!(t["options"].as_u64().unwrap() >= 2);
        // Every task's published rows load, each with its source; a chance row is there.
        let task = race_eval::data::Task::from_name(t["name"].as_str().unwrap()).unwrap();
        let rows = race_eval::results::leaderboard::published_for(task).unwrap();
        assert!(rows
            .iter()
            .all(|r| !r.cite.is_empty() && !r.reference.is_empty()));
        let chance = rows
            .iter()
            .find(|r| r.split == "any")
            .expect("a chance row");
        let options = t["options"].as_f64().unwrap();
        assert!(
            (chance.overall - 100.0 / options).abs() < 0.01,
            "{}",
            t["name"]
        );
    }
    // Where a task has published test rows, the leaderboard ranks them; where it has only the
    // chance row, it says so instead of showing a ranking of nothing.
    let board = |task: &str| {
        race_eval(
            home.path(),
            "http://127.0.0.1:9",
            &["leaderboard", "--task", task, "--split", "test"],
            true,
        )
    };
    assert!(ok(&board("reclor")).contains("RoBERTa-large"));
    let o = board("mctest160");
    let text = ok(&o);
    assert!(
        text.contains("Random guess") && text.contains("only chance is shown"),
        "{text}"
    );
    let o = race_eval(
        home.path(),
        "http://127.0.0.1:9",
        &["leaderboard", "--task", "reclor", "--split", "tset"],
        true,
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("--split tset"));
}

#[test]
fn a_two_option_task_trains_head_only_and_full() {
    let dir = tempfile::tempdir().unwrap();
    let mut xml = String::from("<data>\n");
    for (n, (_, ctx, qs)) in with_options(2).iter().enumerate() {
        xml += &format!("<instance id=\"{n}\"><text>{ctx}</text><questions>\n");
        for (k, (q, o, a)) in qs.iter().enumerate() {
            xml += &format!("<question id=\"{k}\" text=\"{q}\" type=\"text\">");
            for (i, opt) in o.iter().enumerate() {
                let c = if i == *a { "True" } else { "False" };
                xml += &format!("<answer correct=\"{c}\" id=\"{i}\" text=\"{opt}\"/>");
            }
            xml += "</question>\n";
        }
        xml += "</questions></instance>\n";
    }
    xml += "</data>\n";
    write(dir.path(), "train-data.xml", &xml);
    write(dir.path(), "dev-data.xml", &xml);
    let data = dir.path().display().to_string();
    let model = tiny();
    for (name, extra) in [("head", vec!["--head-only"]), ("full", vec![])] {
        let out = dir.path().join(name).display().to_string();
        let mut args = vec![
            "train",
            "--task",
            "mcscript",
            "--model",
            &model,
            "--data",
            &data,
            "--output",
            &out,
            "--steps",
            "2",
            "--eval-every",
            "1",
            "--batch-size",
            "2",
            "--micro-batch-size",
            "2",
            "--max-seq-len",
            "64",
            "--max-qa-len",
            "16",
            "-q",
        ];
        args.extend(extra);
        let text = ok(&race_eval(dir.path(), "http://127.0.0.1:9", &args, true));
        assert!(text.contains("2 steps done"), "{text}");
        let meta: Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(name).join("meta.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(meta["train_questions"], 4);
    }
}
