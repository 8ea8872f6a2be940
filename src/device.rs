//! Devices by name: `cpu`, `cuda`, `cuda:N`, `metal` (CUDA and Metal behind cargo features).

use anyhow::{bail, Context, Result};
use candle_core::Device;

/// The device named by `spec`, with an error that says how to get it when this build lacks it.
pub fn parse(spec: &str) -> Result<Device> {
    let (kind, index) = match spec.split_once(':') {
        Some((k, i)) => (
            k,
            i.parse::<usize>()
                .with_context(|| format!("--device {spec}: {i:?} is not a device number"))?,
        ),
        None => (spec, 0),
    };
    match kind {
        "cpu" => Ok(Device::Cpu),
        "cuda" if candle_core::utils::cuda_is_available() => Ok(Device::new_cuda(index)?),
        "cuda" => bail!("--device {spec}: this build has no CUDA support; rebuild with `cargo build --release --features cuda`"),
        "metal" if candle_core::utils::metal_is_available() => Ok(Device::new_metal(index)?),
        "metal" => bail!("--device {spec}: this build has no Metal support; rebuild with `cargo build --release --features metal`"),
        other => bail!("--device {other:?} is not a device: use cpu, cuda, cuda:N or metal"),
    }
}
