//! Two optimizer steps of the full recipe (accumulation, clipping, AdamW with parameter groups,
//! linear schedule) against torch: tests/fixtures/train from scripts/make_train_fixture.py.

mod synthetic;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use race_eval::heads::files;
use race_eval::model::{cross_entropy, weights::find_weight_files, ModelConfig};
use race_eval::train::objective::sorted_vars;
use race_eval::train::trainer::{build_model, optimizer_step};
use race_eval::train::{AdamW, AdamWConfig, LinearSchedule};
use serde_json::Value;

fn tensor3(v: &Value, dev: &Device) -> Tensor {
    let rows: Vec<Vec<Vec<u32>>> = serde_json::from_value(v.clone()).unwrap();
    let (b, c, l) = (rows.len(), rows[0].len(), rows[0][0].len());
    let flat: Vec<u32> = rows.into_iter().flatten().flatten().collect();
    Tensor::from_vec(flat, (b, c, l), dev).unwrap()
}

#[test]
fn two_adamw_steps_match_torch() -> anyhow::Result<()> {
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(synthetic::repo(
        "tests/fixtures/train/steps.json",
    ))?)?;
    let hp = &fixture["hyperparameters"];
    let f = |k: &str| hp[k].as_f64().unwrap();
    let dev = Device::Cpu;
    let model_dir = synthetic::repo(synthetic::TINY);
    let mut config = ModelConfig::from_file(&model_dir.join("config.json"))?;
    config.hidden_dropout_prob = 0.0;
    config.attention_probs_dropout_prob = 0.0;
    config.classifier_dropout_prob = Some(0.0);
    let varmap = VarMap::new();
    let model = build_model(
        &find_weight_files(&model_dir)?,
        &config,
        &dev,
        Some(&varmap),
    )?;
    let vars = sorted_vars(&varmap);
    let before: HashMap<String, Vec<f32>> = vars
        .iter()
        .map(|(n, v)| {
            (
                n.clone(),
                v.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
            )
        })
        .collect();
    let mut opt = AdamW::new(
        vars.clone(),
        AdamWConfig {
            beta1: f("beta1"),
            beta2: f("beta2"),
            eps: f("eps"),
            weight_decay: f("weight_decay"),
        },
    )?;
    let schedule = LinearSchedule {
        peak_lr: f("lr"),
        warmup_steps: f("warmup_steps") as usize,
        total_steps: f("total_steps") as usize,
    };
    let micro = fixture["micro_batches"].as_array().unwrap();
    let batches: Vec<_> = micro
        .iter()
        .map(|m| {
            let labels: Vec<u32> = serde_json::from_value(m["labels"].clone()).unwrap();
            (
                tensor3(&m["input_ids"], &dev),
                tensor3(&m["token_type_ids"], &dev),
                tensor3(&m["attention_mask"], &dev),
                Tensor::new(labels, &dev).unwrap(),
            )
        })
        .collect();

    let mut moved = 0usize;
    for (step, want) in fixture["steps"].as_array().unwrap().iter().enumerate() {
        let lr = schedule.lr(step);
        assert!(
            (lr - want["lr"].as_f64().unwrap()).abs() < 1e-12,
            "lr at step {step}"
        );
        let (loss, norm) = optimizer_step(
            &vars,
            &mut opt,
            batches.len(),
            |i| {
                let (ids, types, mask, labels) = &batches[i];
                let logits = model.forward(ids, types, mask, true)?;
                Ok((cross_entropy(&logits, labels)?, 1.0 / batches.len() as f64))
            },
            f("max_grad_norm"),
            lr,
        )?;
        let want_loss = want["loss"].as_f64().unwrap();
        assert!(
            (loss - want_loss).abs() < 1e-5,
            "step {}: loss {loss} vs torch {want_loss}",
            step + 1
        );
        let want_norm = want["grad_norm"].as_f64().unwrap();
        assert!(
            (norm - want_norm).abs() < 1e-4 * want_norm.max(1.0),
            "step {}: grad norm {norm} vs torch {want_norm}",
            step + 1
        );
        let reference = files::load_tensors(&synthetic::repo(&format!(
            "tests/fixtures/train/step{}.safetensors",
            step + 1
        )))?;
        assert_eq!(reference.len(), vars.len(), "same parameters as torch");
        let mut worst = (0f32, String::new());
        for (name, var) in &vars {
            let want = reference
                .get(name)
                .unwrap_or_else(|| panic!("torch has no `{name}`"))
                .flatten_all()?
                .to_vec1::<f32>()?;
            let got = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            for ((g, w), b) in got.iter().zip(&want).zip(&before[name]) {
                let d = (g - w).abs();
                if d > worst.0 {
                    worst = (d, name.clone());
                }
                if step == 0 && (w - b).abs() > 1e-5 {
                    moved += 1;
                }
            }
        }
        eprintln!(
            "step {}: loss {loss:.7} (torch {want_loss:.7}), grad norm {norm:.5} (torch {want_norm:.5}), largest weight difference {:.2e} in `{}`",
            step + 1,
            worst.0,
            worst.1
        );
        assert!(
            worst.0 < 1e-5,
            "step {}: weight `{}` differs from torch by {}",
            step + 1,
            worst.1,
            worst.0
        );
    }
    // The comparison has teeth: most weights moved by more than the tolerance in step 1.
    assert!(
        moved > 10_000,
        "only {moved} weights moved by more than 1e-5"
    );
    Ok(())
}
