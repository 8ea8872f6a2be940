//! `race-eval download`: fetch a Hub model or dataset into the Hugging Face cache, so that
//! machines without network can run with `HF_HUB_OFFLINE=1`.

use anyhow::Result;

use super::DownloadArgs;
use crate::open;

pub fn run(args: &DownloadArgs) -> Result<()> {
    let got = open::download(
        &args.repo,
        args.revision.as_deref(),
        &open::hub_config(args.quiet),
    )?;
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
