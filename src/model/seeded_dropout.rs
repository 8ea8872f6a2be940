//! Repeatable dropout masks. candle cannot seed its CPU random generator, so training installs a
//! seeded stream on its thread (one seed per micro-batch, derived from the run seed and the
//! step): the same seed gives the same masks, which makes `--resume` bit-exact. Without a stream
//! installed, dropout falls back to candle's own (unseeded) generator.

use std::cell::RefCell;

/// SplitMix64: small, fast, and good enough for dropout masks and shuffling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 24 bits, as an f32.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Mixes several numbers into one seed.
pub fn derive_seed(parts: &[u64]) -> u64 {
    let mut rng = SplitMix64(0x5EED);
    let mut acc = 0u64;
    for &p in parts {
        rng.0 ^= p.wrapping_add(acc);
        acc = rng.next_u64();
    }
    acc
}

thread_local! {
    static STREAM: RefCell<Option<SplitMix64>> = const { RefCell::new(None) };
}

/// Installs (Some) or removes (None) the seeded dropout stream of this thread.
pub fn set_seed(seed: Option<u64>) {
    STREAM.with(|s| *s.borrow_mut() = seed.map(SplitMix64));
}

/// A keep mask scaled by 1 / (1 - p) from the installed stream, or `None` when none is installed.
pub fn mask(len: usize, p: f64) -> Option<Vec<f32>> {
    STREAM.with(|s| {
        let mut s = s.borrow_mut();
        let rng = s.as_mut()?;
        let scale = (1.0 / (1.0 - p)) as f32;
        let p = p as f32;
        Some(
            (0..len)
                .map(|_| if rng.next_f32() >= p { scale } else { 0.0 })
                .collect(),
        )
    })
}
