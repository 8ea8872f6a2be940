//! One optimizer step of `race-eval distill`'s loss against torch, for both kinds of smaller
//! student: every other layer of a BERT teacher, and ALBERT with fewer passes through its shared
//! layer. Fixture: tests/fixtures/distill from scripts/make_distill_fixture.py.

mod synthetic;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use race_eval::heads::files;
use race_eval::model::{weights::find_weight_files, ModelConfig};
use race_eval::train::distill::student_init;
use race_eval::train::objective::{sorted_vars, SoftTargets};
use race_eval::train::trainer::{build_student, optimizer_step};
use race_eval::train::{AdamW, AdamWConfig};
use serde_json::Value;

fn tensor3(v: &Value, dev: &Device) -> Tensor {
    let rows: Vec<Vec<Vec<u32>>> = serde_json::from_value(v.clone()).unwrap();
    let (b, c, l) = (rows.len(), rows[0].len(), rows[0][0].len());
    let flat: Vec<u32> = rows.into_iter().flatten().flatten().collect();
    Tensor::from_vec(flat, (b, c, l), dev).unwrap()
}

fn one_step_matches_torch(name: &str) -> anyhow::Result<()> {
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(synthetic::repo(
        "tests/fixtures/distill/steps.json",
    ))?)?;
    let hp = &fixture["hyperparameters"];
    let f = |k: &str| hp[k].as_f64().unwrap();
    let case = &fixture["students"][name];
    let dev = Device::Cpu;
    let model_dir = synthetic::repo(case["model"].as_str().unwrap());
    let base = ModelConfig::from_file(&model_dir.join("config.json"))?;
    let layers = case["student_layers"].as_u64().unwrap() as usize;
    let (mut config, init) = student_init(&base, layers)?;
    let want_map: Option<Vec<usize>> = serde_json::from_value(case["layer_map"].clone())?;
    assert_eq!(
        init.layer_map, want_map,
        "the same layers as torch's student"
    );
    assert_eq!(config.num_hidden_layers, layers);
    config.hidden_dropout_prob = 0.0;
    config.attention_probs_dropout_prob = 0.0;
    config.classifier_dropout_prob = Some(0.0);
    let varmap = VarMap::new();
    let model = build_student(
        &find_weight_files(&model_dir)?,
        &config,
        &dev,
        Some(&varmap),
        init.layer_map.as_deref(),
    )?;
    let vars = sorted_vars(&varmap);
    let mut opt = AdamW::new(
        vars.clone(),
        AdamWConfig {
            beta1: f("beta1"),
            beta2: f("beta2"),
            eps: f("eps"),
            weight_decay: f("weight_decay"),
        },
    )?;
    let micro = case["micro_batches"].as_array().unwrap();
    let batches: Vec<_> = micro
        .iter()
        .map(|m| {
            let labels: Vec<u32> = serde_json::from_value(m["labels"].clone()).unwrap();
            let soft: Vec<Vec<f32>> = serde_json::from_value(m["soft_targets"].clone()).unwrap();
            (
                tensor3(&m["input_ids"], &dev),
                tensor3(&m["token_type_ids"], &dev),
                tensor3(&m["attention_mask"], &dev),
                Tensor::new(labels, &dev).unwrap(),
                SoftTargets {
                    alpha: f("alpha"),
                    temperature: f("temperature"),
                    probs: soft,
                },
            )
        })
        .collect();
    let before: Vec<Vec<f32>> = vars
        .iter()
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    let (loss, norm) = optimizer_step(
        &vars,
        &mut opt,
        batches.len(),
        |i| {
            let (ids, types, mask, labels, soft) = &batches[i];
            let logits = model.forward(ids, types, mask, true)?;
            let idx: Vec<usize> = (0..soft.probs.len()).collect();
            Ok((
                soft.loss(&logits, labels, &idx)?,
                1.0 / batches.len() as f64,
            ))
        },
        f("max_grad_norm"),
        f("lr"),
    )?;
    let want_loss = case["loss"].as_f64().unwrap();
    let want_norm = case["grad_norm"].as_f64().unwrap();
    assert!(
        (loss - want_loss).abs() < 1e-5 * want_loss.max(1.0),
        "{name}: loss {loss} vs torch {want_loss}"
    );
    assert!(
        (norm - want_norm).abs() < 1e-4 * want_norm.max(1e-3),
        "{name}: grad norm {norm} vs torch {want_norm}"
    );
    let reference = files::load_tensors(&synthetic::repo(&format!(
        "tests/fixtures/distill/{name}_step1.safetensors"
    )))?;
    assert_eq!(
        reference.len(),
        vars.len(),
        "{name}: same parameters as torch"
    );
    let (mut worst, mut moved) = ((0f32, String::new()), 0usize);
    for ((n, var), b) in vars.iter().zip(&before) {
        let want = reference
            .get(n)
            .unwrap_or_else(|| panic!("torch has no `{n}`"))
            .flatten_all()?
            .to_vec1::<f32>()?;
        let got = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        if n == "classifier.bias" {
            // Its gradient is zero in exact arithmetic (one shift of every option's logit leaves
            // the softmax as it is), so both sides hold rounding noise, and AdamW's first step
            // (lr·g/(|g|+eps)) moves it by a noise-driven amount up to lr. Only that bound holds.
            let lr = f("lr") as f32;
            for (x, b) in got.iter().chain(&want).zip(b.iter().cycle()) {
                assert!(
                    (x - b).abs() <= lr * 1.001,
                    "{name}: classifier.bias moved {}",
                    x - b
                );
            }
            continue;
        }
        for ((g, w), b) in got.iter().zip(&want).zip(b) {
            if (g - w).abs() > worst.0 {
                worst = ((g - w).abs(), n.clone());
            }
            if (w - b).abs() > 1e-5 {
                moved += 1;
            }
        }
    }
    eprintln!(
        "{name}: loss {loss:.7} (torch {want_loss:.7}), grad norm {norm:.6} (torch {want_norm:.6}), largest weight difference {:.2e} in `{}`, {moved} weights moved",
        worst.0, worst.1
    );
    assert!(
        worst.0 < 1e-5,
        "{name}: `{}` differs by {}",
        worst.1,
        worst.0
    );
    assert!(moved > 10_000, "{name}: only {moved} weights moved");
    Ok(())
}

#[test]
fn every_other_layer_bert_student_matches_torch() -> anyhow::Result<()> {
    one_step_matches_torch("bert")
}

#[test]
fn albert_student_with_fewer_passes_matches_torch() -> anyhow::Result<()> {
    one_step_matches_torch("albert")
}
