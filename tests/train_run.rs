//! `race-eval train` end to end on a synthetic task: learning (full and head-only), exact
//! resume, the output folder with `eval --head`, and the faults the issue lists.

mod synthetic;

use std::path::{Path, PathBuf};

use race_eval::data::LevelFilter;
use race_eval::heads::files;
use race_eval::train::{train, Mode, TrainConfig, TrainOptions};

fn options(model: &Path, data: &Path, output: &Path, config: TrainConfig) -> TrainOptions {
    TrainOptions {
        model: model.display().to_string(),
        revision: None,
        data: data.to_path_buf(),
        task: race_eval::data::Task::Race,
        split: "train".into(),
        dev_split: "dev".into(),
        level: LevelFilter::All,
        output: output.to_path_buf(),
        config,
        resume: false,
        cache_dir: None,
        device: "cpu".into(),
        epochs: None,
        eval_batch_size: 32,
        stop_after: None,
        quiet: true,
        teachers: None,
    }
}

fn small_format() -> race_eval::features::FormatConfig {
    race_eval::features::FormatConfig {
        max_seq_len: 48,
        max_qa_len: 16,
    }
}

/// Full fine-tuning of the tiny model on the synthetic task reaches >= 60% dev accuracy
/// (chance: 25%).
#[test]
fn full_finetuning_learns_the_synthetic_task() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = synthetic::repo(synthetic::TINY);
    let data = synthetic::synthetic_task(tmp.path(), &model, 1024, 200);
    let config = TrainConfig {
        mode: Mode::Full,
        lr: 3e-3,
        warmup_steps: 40,
        total_steps: 400,
        batch_size: 16,
        micro_batch_size: 16,
        eval_every: 100,
        save_every: 300,
        seed: 3,
        format: small_format(),
        ..TrainConfig::default()
    };
    let out = tmp.path().join("heads/full");
    let report = train(&options(&model, &data, &out, config))?;
    eprintln!("dev history: {:?}", report.dev_history);
    let first = report.loss_log[..20].iter().map(|p| p.loss).sum::<f64>() / 20.0;
    let n = report.loss_log.len();
    let last = report.loss_log[n - 20..]
        .iter()
        .map(|p| p.loss)
        .sum::<f64>()
        / 20.0;
    eprintln!("mean loss: first 20 steps {first:.4}, last 20 steps {last:.4}");
    let best = report.best.expect("dev was evaluated");
    assert!(
        best.accuracy >= 0.60,
        "best dev accuracy {:.3} < 0.60",
        best.accuracy
    );
    assert!(last < first, "the loss went down");

    // The folder is a model folder: eval --model heads/full gives the best step's accuracy.
    for f in [
        "model.safetensors",
        "meta.json",
        "config.json",
        "tokenizer.json",
        "loss.csv",
        "loss.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} is written");
    }
    let meta = race_eval::heads::read_meta(&out)?;
    assert_eq!(meta.mode, Mode::Full);
    assert_eq!(meta.steps_done, 400);
    assert_eq!(meta.best, Some(best));
    assert_eq!(meta.dev_history, report.dev_history);
    assert_eq!(meta.base_weights_hash.len(), 64);
    assert_eq!(meta.hyperparameters["lr"], 3e-3);
    let csv = std::fs::read_to_string(out.join("loss.csv"))?;
    assert_eq!(csv.lines().count(), 401, "a header and one line per step");
    let evaluated = evaluate(&out, None, &data)?;
    assert!(
        (evaluated - best.accuracy).abs() < 1e-9,
        "{evaluated} vs {best:?}"
    );

    // Head-only on that backbone with its classifier removed: a new head trained on cached
    // pooled features beats chance by far.
    let backbone = tmp.path().join("backbone");
    std::fs::create_dir_all(&backbone)?;
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(out.join(f), backbone.join(f))?;
    }
    let mut tensors = files::load_tensors(&out.join("model.safetensors"))?;
    let all = tensors.len();
    tensors.retain(|name, _| !name.starts_with("classifier."));
    assert_eq!(
        tensors.len(),
        all - 2,
        "classifier.weight and .bias removed"
    );
    files::save_tensors(&backbone.join("model.safetensors"), &tensors)?;
    let head_cfg = TrainConfig {
        mode: Mode::HeadOnly,
        lr: 1e-2,
        warmup_steps: 20,
        total_steps: 200,
        batch_size: 32,
        micro_batch_size: 32,
        eval_every: 50,
        seed: 4,
        format: small_format(),
        ..TrainConfig::default()
    };
    let head_out = tmp.path().join("heads/head-on-tuned");
    let head = train(&options(&backbone, &data, &head_out, head_cfg))?;
    eprintln!(
        "head-only on the fine-tuned backbone: {:?}",
        head.dev_history
    );
    let head_best = head.best.unwrap().accuracy;
    assert!(head_best >= 0.40, "head-only {head_best:.3} vs chance 0.25");
    let evaluated = evaluate(&backbone, Some(&head_out), &data)?;
    assert!(
        (evaluated - head_best).abs() < 1e-9,
        "{evaluated} vs {head_best}"
    );
    Ok(())
}

fn eval_args(model: &Path, head: Option<&Path>, data: &Path) -> race_eval::cli::EvalArgs {
    race_eval::cli::EvalArgs {
        model: model.to_path_buf(),
        head: head.map(Path::to_path_buf),
        data: data.to_path_buf(),
        task: race_eval::data::Task::Race,
        split: "dev".into(),
        level: LevelFilter::All,
        predictions: None,
        batch_size: 32,
        max_seq_len: 48,
        max_qa_len: 16,
        skip_invalid: false,
        runtime: race_eval::cli::RuntimeArgs {
            device: "cpu".into(),
            dtype: race_eval::cli::Precision::F32,
        },
        quiet: true,
        revision: None,
        // `evaluate` writes no run record; only `run` does.
        record: race_eval::cli::record::RecordArgs {
            output_dir: std::env::temp_dir(),
            shard: None,
            shard_count: None,
        },
        lm: Default::default(),
    }
}

fn evaluate(model: &Path, head: Option<&Path>, data: &Path) -> anyhow::Result<f64> {
    let out = race_eval::eval::pipeline::evaluate(&eval_args(model, head, data).request())?;
    Ok(out.scores.overall.value().unwrap())
}

/// Head-only training on the frozen tiny fixture backbone (random weights; its accuracy on the
/// task is printed, not asserted: see the full test for head-only beating chance on a backbone
/// that encodes the task); features are cached and reused;
/// `eval --model BASE --head DIR` reproduces the recorded dev accuracy; a head is refused for
/// another base model and as a --model on its own.
#[test]
fn head_only_trains_on_cached_features_and_loads_in_eval() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = synthetic::repo(synthetic::TINY);
    let data = synthetic::synthetic_task(tmp.path(), &model, 1024, 400);
    let config = TrainConfig {
        mode: Mode::HeadOnly,
        lr: 1e-2,
        warmup_steps: 20,
        total_steps: 300,
        batch_size: 32,
        micro_batch_size: 32,
        eval_every: 50,
        save_every: 300,
        seed: 5,
        format: small_format(),
        ..TrainConfig::default()
    };
    let out = tmp.path().join("heads/head");
    let report = train(&options(&model, &data, &out, config.clone()))?;
    eprintln!("head-only dev history: {:?}", report.dev_history);
    assert_eq!(report.cache_hit, Some(false));
    let best = report.best.unwrap();
    assert_eq!(
        report.dev_history.len(),
        6,
        "dev evaluated every 50 of 300 steps"
    );
    let head_file = files::load_tensors(&out.join("head.safetensors"))?;
    let mut names: Vec<_> = head_file.keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        ["classifier.bias", "classifier.weight"],
        "only the head is saved"
    );

    // The second run reads the cache.
    let again = train(&options(
        &model,
        &data,
        &tmp.path().join("heads/again"),
        config.clone(),
    ))?;
    assert_eq!(again.cache_hit, Some(true));
    assert_eq!(again.best, report.best, "same seed, same result");

    let evaluated = evaluate(&model, Some(&out), &data)?;
    assert!(
        (evaluated - best.accuracy).abs() < 1e-9,
        "{evaluated} vs {best:?}"
    );

    // The binary's run record names the head.
    let records = tmp.path().join("records");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_race-eval"))
        .args([
            "eval",
            "--quiet",
            "--split",
            "dev",
            "--max-seq-len",
            "48",
            "--max-qa-len",
            "16",
        ])
        .arg("--model")
        .arg(&model)
        .arg("--head")
        .arg(&out)
        .arg("--data")
        .arg(&data)
        .arg("--output-dir")
        .arg(&records)
        .output()?;
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let run_dir = std::fs::read_dir(&records)?.next().unwrap()?.path();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json"))?)?;
    assert_eq!(
        summary["model"]["head"].as_str(),
        Some(out.display().to_string().as_str())
    );

    // --train-pooler on a backbone without a pooler (a masked-LM checkpoint): the pooler and
    // classifier train on cached [CLS] states, are saved together, and eval applies both.
    let mlm = synthetic::repo("datasets/models/mlm-backbone");
    let pooler_out = tmp.path().join("heads/pooler");
    let pooled = train(&options(
        &mlm,
        &data,
        &pooler_out,
        TrainConfig {
            mode: Mode::HeadPooler,
            total_steps: 40,
            eval_every: 20,
            ..config.clone()
        },
    ))?;
    eprintln!("head+pooler on mlm-backbone: {:?}", pooled.dev_history);
    let mut names: Vec<_> = files::load_tensors(&pooler_out.join("head.safetensors"))?
        .into_keys()
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "albert.pooler.bias",
            "albert.pooler.weight",
            "classifier.bias",
            "classifier.weight"
        ]
    );
    let evaluated = evaluate(&mlm, Some(&pooler_out), &data)?;
    let want = pooled.best.unwrap().accuracy;
    assert!((evaluated - want).abs() < 1e-9, "{evaluated} vs {want}");

    let err = evaluate(
        &synthetic::repo("datasets/models/groups-gelu"),
        Some(&out),
        &data,
    )
    .err()
    .map(|e| format!("{e:#}"))
    .unwrap_or_default();
    assert!(
        err.contains("trained on") && err.contains("base"),
        "a head for another base is refused: {err}"
    );
    // A head folder given as --model opens its base model (from meta.json) with the head.
    let as_model = evaluate(&out, None, &data)?;
    let with_head = evaluate(&model, Some(&out), &data)?;
    assert_eq!(
        as_model, with_head,
        "--model HEAD is --model BASE --head HEAD"
    );
    Ok(())
}

fn bits(path: &Path) -> Vec<(String, Vec<u32>)> {
    let t = files::load_tensors(path).unwrap();
    let mut out: Vec<(String, Vec<u32>)> = t
        .into_iter()
        .map(|(n, t)| {
            let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (n, v.into_iter().map(f32::to_bits).collect())
        })
        .collect();
    out.sort();
    out
}

/// K steps, then --resume for K more, gives bit for bit the weights and optimizer state of 2K
/// steps straight (with dropout on and gradient accumulation).
#[test]
fn resume_continues_bit_exactly() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = synthetic::repo(synthetic::TINY);
    let data = synthetic::synthetic_task(tmp.path(), &model, 40, 16);
    let config = TrainConfig {
        mode: Mode::Full,
        lr: 1e-3,
        warmup_steps: 2,
        total_steps: 8,
        batch_size: 8,
        micro_batch_size: 4,
        eval_every: 3,
        save_every: 100,
        hidden_dropout: Some(0.1),
        classifier_dropout: Some(0.1),
        seed: 9,
        format: small_format(),
        ..TrainConfig::default()
    };
    let straight = tmp.path().join("straight");
    let a = train(&options(&model, &data, &straight, config.clone()))?;
    assert_eq!(a.steps_done, 8);

    let split = tmp.path().join("split");
    let mut first = options(&model, &data, &split, config.clone());
    first.stop_after = Some(4);
    assert_eq!(train(&first)?.steps_done, 4);
    let mut second = options(&model, &data, &split, config.clone());
    second.resume = true;
    let b = train(&second)?;
    assert_eq!(b.steps_done, 8);

    for f in ["weights.safetensors", "optimizer.safetensors"] {
        let x = bits(&straight.join("checkpoint").join(f));
        let y = bits(&split.join("checkpoint").join(f));
        assert_eq!(x.len(), y.len());
        for ((n, u), (_, v)) in x.iter().zip(&y) {
            assert!(u == v, "{f}: `{n}` differs after resume");
        }
    }
    // Logs go through state.json, whose float parsing may differ in the last bit.
    assert_eq!(a.loss_log.len(), b.loss_log.len());
    for (x, y) in a.loss_log.iter().zip(&b.loss_log) {
        assert_eq!(x.step, y.step);
        assert!(
            (x.loss - y.loss).abs() <= 1e-12 * x.loss.abs(),
            "{x:?} vs {y:?}"
        );
        assert!(
            (x.grad_norm - y.grad_norm).abs() <= 1e-12 * x.grad_norm,
            "{x:?} vs {y:?}"
        );
    }
    assert_eq!(a.dev_history, b.dev_history);
    // Dropout is on: a run with another seed ends elsewhere (so the comparison can fail).
    let other = tmp.path().join("other");
    train(&options(
        &model,
        &data,
        &other,
        TrainConfig {
            seed: 10,
            ..config.clone()
        },
    ))?;
    assert_ne!(
        bits(&straight.join("checkpoint/weights.safetensors")),
        bits(&other.join("checkpoint/weights.safetensors"))
    );

    // Resuming with other settings is refused; so is a fresh run into a used folder.
    let mut changed = options(
        &model,
        &data,
        &split,
        TrainConfig {
            lr: 5e-4,
            ..config.clone()
        },
    );
    changed.resume = true;
    let err = format!("{:#}", train(&changed).unwrap_err());
    assert!(err.contains("other settings"), "{err}");
    let err = format!(
        "{:#}",
        train(&options(&model, &data, &split, config)).unwrap_err()
    );
    assert!(err.contains("--resume"), "{err}");
    Ok(())
}

fn err_of(o: &TrainOptions) -> String {
    match train(o) {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn faults_are_reported_clearly() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = synthetic::repo(synthetic::TINY);
    let data = synthetic::synthetic_task(tmp.path(), &model, 40, 16);
    let config = TrainConfig {
        mode: Mode::HeadOnly,
        total_steps: 6,
        warmup_steps: 0,
        batch_size: 8,
        micro_batch_size: 8,
        eval_every: 2,
        save_every: 2,
        format: small_format(),
        ..TrainConfig::default()
    };
    let out = |n: &str| tmp.path().join(n);

    // No training data.
    let empty: PathBuf = tmp.path().join("empty");
    std::fs::create_dir_all(&empty)?;
    std::fs::copy(data.join("dev.jsonl"), empty.join("dev.jsonl"))?;
    let err = err_of(&options(&model, &empty, &out("a"), config.clone()));
    assert!(
        err.contains("--split train") && err.contains("no RACE data"),
        "{err}"
    );

    // Dev split missing.
    let mut o = options(&model, &data, &out("b"), config.clone());
    o.dev_split = "validation2".into();
    let err = err_of(&o);
    assert!(err.contains("--dev-split validation2"), "{err}");

    // Blow-up: warmup makes the first steps harmless (good checkpoints are saved), then an
    // absurd learning rate overflows the head; training stops with a clear message and the last
    // checkpoint saved before stays, finite. (A NaN loss itself: trainer's unit tests.)
    let mut o = options(
        &model,
        &data,
        &out("nan"),
        TrainConfig {
            lr: 1e38,
            warmup_steps: 2,
            ..config.clone()
        },
    );
    o.config.save_every = 1;
    o.config.eval_every = 1;
    let err = err_of(&o);
    assert!(err.contains("training stopped at step"), "{err}");
    assert!(err.contains("no longer finite"), "{err}");
    assert!(err.contains("last good checkpoint"), "{err}");
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        out("nan").join("checkpoint/state.json"),
    )?)?;
    let saved = state["step"].as_u64().unwrap();
    assert!(saved >= 1, "a checkpoint was kept");
    let weights = files::load_tensors(&out("nan").join("checkpoint/weights.safetensors"))?;
    for t in weights.values() {
        let v = t.flatten_all()?.to_vec1::<f32>()?;
        assert!(
            v.iter().all(|x| x.is_finite()),
            "the kept checkpoint is finite"
        );
    }

    // Saving fails (simulated: the temporary checkpoint folder cannot be created): the error
    // says so and the previous checkpoint stays usable; resuming from it then works.
    let mut o = options(&model, &data, &out("disk"), config.clone());
    o.stop_after = Some(2);
    train(&o)?;
    std::fs::write(out("disk").join("checkpoint.tmp"), "in the way")?;
    let mut o = options(&model, &data, &out("disk"), config.clone());
    o.resume = true;
    let err = err_of(&o);
    assert!(err.contains("previous checkpoint is kept"), "{err}");
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        out("disk").join("checkpoint/state.json"),
    )?)?;
    assert_eq!(state["step"], 2, "the step-2 checkpoint is intact");
    std::fs::remove_file(out("disk").join("checkpoint.tmp"))?;
    assert_eq!(train(&o)?.steps_done, 6, "and resumes");

    // A backbone without a pooler cannot give pooled features.
    let err = err_of(&options(
        &synthetic::repo("datasets/models/mlm-backbone"),
        &data,
        &out("c"),
        config,
    ));
    assert!(err.contains("--train-pooler"), "{err}");
    Ok(())
}
