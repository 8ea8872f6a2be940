//! `race-eval info`: configuration and parameter counts from config.json alone.

use anyhow::{Context, Result};

use super::InfoArgs;
use crate::model::{presets, ModelConfig};
use crate::open;

/// The configuration named by `info`'s argument.
/// A released name's config, else the config of a model folder, a config.json or a Hub model
/// (its config.json alone is fetched).
pub fn resolve_config(model: &str, revision: Option<&str>) -> Result<(String, ModelConfig)> {
    if let Some(cfg) = presets::preset(model) {
        return Ok((model.to_string(), cfg));
    }
    let cfg = open::open_config(model, revision, &open::hub_config(true)).with_context(|| {
        format!(
            "{model:?} is neither a released model ({}), a model folder, a config.json, nor a Hub model",
            presets::names().join(", ")
        )
    })?;
    Ok((model.to_string(), cfg))
}

pub fn run(args: &InfoArgs) -> Result<()> {
    let (name, cfg) = resolve_config(&args.model, args.revision.as_deref())?;
    let counts = cfg.param_counts();
    if args.json {
        let v = serde_json::json!({ "model": name, "config": cfg, "params": counts });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "model: {name} ({}, {})",
        cfg.family.model_type(),
        cfg.family.multiple_choice_class()
    );
    println!(
        "hidden {} x {} layers ({} group(s) x {} inner), {} heads, intermediate {}, embedding {}, vocab {}, positions {}, act {}",
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.num_hidden_groups,
        cfg.inner_group_num,
        cfg.num_attention_heads,
        cfg.intermediate_size,
        cfg.embedding_size,
        cfg.vocab_size,
        cfg.max_position_embeddings,
        cfg.hidden_act
    );
    println!("parameters: embeddings {}", counts.embeddings);
    println!("            encoder    {}", counts.encoder);
    println!("            pooler     {}", counts.pooler);
    println!("            backbone   {} (with pooler)", counts.backbone);
    println!(
        "            with multiple-choice head {} ({})",
        counts.multiple_choice,
        cfg.family.multiple_choice_class()
    );
    println!(
        "forward: {:.1} GFLOP per sequence of {} tokens",
        cfg.flops(512.min(cfg.max_sequence_len())) / 1e9,
        512.min(cfg.max_sequence_len())
    );
    Ok(())
}
