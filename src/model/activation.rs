//! The activations transformers accepts for `hidden_act` (its `ACT2CLS` table), in candle.

use anyhow::{bail, Result};
use candle_core::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU with erf (`gelu`, `gelu_python`).
    Gelu,
    /// tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_python_tanh`, `gelu_fast`,
    /// `gelu_accurate`: the same function).
    GeluTanh,
    /// `gelu_10`: exact GELU clipped to [-10, 10].
    Gelu10,
    /// `quick_gelu`: x * sigmoid(1.702 x).
    QuickGelu,
    Relu,
    /// `relu2`: relu(x)^2.
    Relu2,
    Relu6,
    LeakyRelu,
    /// `silu` and `swish`.
    Silu,
    Mish,
    Tanh,
    Sigmoid,
    /// `linear`: identity.
    Linear,
    /// `laplace`: 0.5 * (1 + erf((x - mu) / (sigma * sqrt 2))).
    Laplace,
}

pub const ACTIVATION_NAMES: &[&str] = &[
    "gelu",
    "gelu_python",
    "gelu_new",
    "gelu_pytorch_tanh",
    "gelu_python_tanh",
    "gelu_fast",
    "gelu_accurate",
    "gelu_10",
    "quick_gelu",
    "relu",
    "relu2",
    "relu6",
    "leaky_relu",
    "silu",
    "swish",
    "mish",
    "tanh",
    "sigmoid",
    "linear",
    "laplace",
];

impl Activation {
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "gelu" | "gelu_python" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_python_tanh" | "gelu_fast" | "gelu_accurate" => {
                Self::GeluTanh
            }
            "gelu_10" => Self::Gelu10,
            "quick_gelu" => Self::QuickGelu,
            "relu" => Self::Relu,
            "relu2" => Self::Relu2,
            "relu6" => Self::Relu6,
            "leaky_relu" => Self::LeakyRelu,
            "silu" | "swish" => Self::Silu,
            "mish" => Self::Mish,
            "tanh" => Self::Tanh,
            "sigmoid" => Self::Sigmoid,
            "linear" => Self::Linear,
            "laplace" => Self::Laplace,
            other => bail!(
                "`hidden_act` {other:?} is not supported (learned activations such as prelu/xielu are not); expected one of: {}",
                ACTIVATION_NAMES.join(", ")
            ),
        })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Gelu => x.gelu_erf(),
            Self::GeluTanh => x.gelu(),
            Self::Gelu10 => x.gelu_erf()?.clamp(-10f32, 10f32),
            Self::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
            Self::Relu => x.relu(),
            Self::Relu2 => x.relu()?.sqr(),
            Self::Relu6 => x.clamp(0f32, 6f32),
            Self::LeakyRelu => candle_nn::ops::leaky_relu(x, 0.01),
            Self::Silu => x.silu(),
            Self::Mish => x * softplus(x)?.tanh()?,
            Self::Tanh => x.tanh(),
            Self::Sigmoid => candle_nn::ops::sigmoid(x),
            Self::Linear => Ok(x.clone()),
            Self::Laplace => {
                // The reference's literals (transformers' LaplaceActivation), not 1/sqrt(2).
                #[allow(clippy::approx_constant)]
                let (mu, sigma) = (0.707107f64, 0.282095f64);
                let z = ((x - mu)? / (sigma * std::f64::consts::SQRT_2))?;
                (z.erf()? + 1.0)? * 0.5
            }
        }
    }
}

/// log(1 + e^x), computed stably as max(x, 0) + log(1 + e^-|x|).
fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    let pos = x.relu()?;
    let neg_abs = x.abs()?.neg()?;
    pos + (neg_abs.exp()? + 1.0)?.log()
}
