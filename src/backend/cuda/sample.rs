//! Sampling on the device (`cuda/sample.cu`) from the host's counter RNG: the same numbers as
//! [`crate::sample::CounterRng`] and [`crate::sample::uniform_in_box`] draw.

use super::backend::CudaBackend;
use super::buffers::Gpu;
use super::grid;
use crate::sample::Aabb;
use cudarc::driver::{CudaViewMut, PushKernelArg};

/// The device-side key of `CounterRng::new(seed, stream)` (the host type keeps its key private;
/// this is its formula).
pub fn rng_key(seed: u64, stream: u64) -> u64 {
    use crate::sample::rng::mix64;
    mix64(mix64(seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_add(stream))
}

impl Gpu {
    /// `sample_uniform_box` into `out` (n × 3): point i from counters `first + 3i ..= first + 3i + 2`.
    pub(super) fn uniform_box(
        &self,
        bbox: &Aabb,
        key: u64,
        first: u64,
        n: usize,
        out: &mut CudaViewMut<f32>,
    ) -> crate::Result<()> {
        let (lo, hi) = (bbox.min, bbox.max);
        // glam computes the size as max − min in f32, as here
        let size = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
        let n_i = n as i64;
        launch!(
            self,
            "sample_uniform_box",
            grid(n),
            &key,
            &first,
            &n_i,
            &lo[0],
            &lo[1],
            &lo[2],
            &size[0],
            &size[1],
            &size[2],
            out
        )
    }
}

impl CudaBackend {
    /// Points uniform in `bbox` on the device, exactly as [`crate::sample::uniform_in_box`] draws
    /// them from `rng_key` (see [`rng_key`]): point i uses counters `first + 3i ..= first + 3i + 2`.
    /// Returned to the host (n × 3); the training loop will keep them on the device.
    pub fn sample_uniform_box(&self, bbox: &Aabb, key: u64, first: u64, n: usize) -> crate::Result<Vec<f32>> {
        let gpu = &self.gpu;
        let mut out = gpu.alloc::<f32>(3 * n)?;
        gpu.uniform_box(bbox, key, first, n, &mut out.slice_mut(0..3 * n))?;
        let mut host = vec![0.0; 3 * n];
        gpu.download(&out.slice(0..3 * n), &mut host)?;
        Ok(host)
    }

    /// `CounterRng::uniform(first + i)` for i in 0..n, drawn on the device (for tests of the
    /// device RNG against the host one).
    pub fn rng_uniform(&self, key: u64, first: u64, n: usize) -> crate::Result<Vec<f32>> {
        let gpu = &self.gpu;
        let mut out = gpu.alloc::<f32>(n)?;
        let n_i = n as i64;
        launch!(gpu, "rng_uniform_fill", grid(n), &key, &first, &n_i, &mut out)?;
        let mut host = vec![0.0; n];
        gpu.download(&out.slice(0..n), &mut host)?;
        Ok(host)
    }
}
