//! A counter-based random number generator.
//!
//! Every random number is a pure function of `(seed, stream, index)`, so a batch drawn at step
//! `s` is the same whatever the thread count, whether the run was resumed, and on whichever
//! backend draws it (the CUDA kernels use the same mixing function).

/// SplitMix64's finaliser: a bijective 64-bit mixer with full avalanche.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stream of random numbers addressed by index.
#[derive(Clone, Copy, Debug)]
pub struct CounterRng {
    key: u64,
}

impl CounterRng {
    /// `stream` separates independent uses of one seed (training batches, test sets, weights…).
    pub fn new(seed: u64, stream: u64) -> Self {
        CounterRng { key: mix64(mix64(seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_add(stream)) }
    }

    #[inline]
    pub fn u64(&self, index: u64) -> u64 {
        mix64(self.key ^ mix64(index.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
    }

    /// Uniform in [0, 1), 24 random bits.
    #[inline]
    pub fn uniform(&self, index: u64) -> f32 {
        (self.u64(index) >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in [0, 1) as f64, 53 random bits.
    #[inline]
    pub fn uniform_f64(&self, index: u64) -> f64 {
        (self.u64(index) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal by Box–Muller from two uniforms at `2·index` and `2·index + 1`.
    #[inline]
    pub fn normal(&self, index: u64) -> f32 {
        let u1 = 1.0 - self.uniform_f64(2 * index); // (0, 1]
        let u2 = self.uniform_f64(2 * index + 1);
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    /// Uniform integer in [0, n).
    #[inline]
    pub fn below(&self, index: u64, n: u64) -> u64 {
        ((self.u64(index) as u128 * n as u128) >> 64) as u64
    }
}

/// Streams used by the jobs, so that no two uses of a seed overlap.
pub mod streams {
    pub const INIT_WEIGHTS: u64 = 1;
    pub const ENCODING: u64 = 2;
    pub const TRAIN_BATCH: u64 = 3;
    pub const TEST_UNIFORM: u64 = 4;
    pub const TEST_SURFACE: u64 = 5;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_right() {
        let rng = CounterRng::new(7, 1);
        let n = 200_000u64;
        let (mut su, mut sn, mut sn2) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..n {
            su += rng.uniform(i) as f64;
            let z = rng.normal(i) as f64;
            sn += z;
            sn2 += z * z;
        }
        let n = n as f64;
        assert!((su / n - 0.5).abs() < 0.005);
        assert!((sn / n).abs() < 0.01);
        assert!((sn2 / n - 1.0).abs() < 0.02);
    }

    #[test]
    fn streams_differ() {
        let a = CounterRng::new(1, 1);
        let b = CounterRng::new(1, 2);
        let c = CounterRng::new(2, 1);
        assert_ne!(a.u64(0), b.u64(0));
        assert_ne!(a.u64(0), c.u64(0));
        assert_eq!(a.u64(5), CounterRng::new(1, 1).u64(5));
    }
}
