//! `race-eval download`: fetch a Hub model or dataset into the Hugging Face cache, so that
//! machines without network can run with `HF_HUB_OFFLINE=1`.

use anyhow::Result;

use super::DownloadArgs;
use crate::hub;

pub fn run(args: &DownloadArgs) -> Result<()> {
    let mut cfg = hub::HubConfig::from_env();
    cfg.progress = !args.quiet;
    let got = hub::download(&args.repo, args.revision.as_deref(), &cfg)?;
    println!(
        "{} at commit {}: {} file(s) in {}",
        got.repo.describe(),
        got.commit,
        got.files.len(),
        got.snapshot.display()
    );
    for f in &got.files {
        println!("  {f}");
    }
    Ok(())
}
