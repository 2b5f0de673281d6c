//! The losses on the device (`cuda/loss.cu`): per-sample ∂L/∂output and the mean loss left in a
//! device slot, and the fp16 loss scaling that keeps ∂L/∂output in fp16's range.

use super::backend::CudaBackend;
use super::buffers::missing;
use super::{Precision, ONE_BLOCK, THREADS};
use crate::train::Loss;
use cudarc::driver::{LaunchConfig, PushKernelArg};

/// Blocks of the loss kernels: at most this many f64 partial sums per loss.
pub(super) const LOSS_BLOCKS: usize = 1024;
/// fp16 loss scaling: ∂L/∂output from the host is scaled by a power of two so that its largest
/// magnitude lies in (TARGET/2, TARGET] (the device losses scale mean-loss gradients by the
/// batch size, which bounds them by 1 likewise).
const GRAD_SCALE_TARGET: f32 = 1.0;

/// The power of two that brings the largest |g| of a host gradient into fp16's comfortable
/// range (see [`GRAD_SCALE_TARGET`]); 1 for an all-zero gradient; an error for a non-finite one.
pub fn host_grad_scale(g: &[f32]) -> crate::Result<f32> {
    let max = g.iter().fold(0.0f32, |m, &x| if x.abs() > m || x.is_nan() { x.abs() } else { m });
    grad_scale_for_max(max)
}

/// [`host_grad_scale`]'s rule from the largest |g| alone (the device-resident steps compute it on
/// the device, see [`CudaBackend::backward_device_grad`]): the power of two that brings `max` into
/// (TARGET/2, TARGET]; 1 for 0; an error for a non-finite `max`.
pub fn grad_scale_for_max(max: f32) -> crate::Result<f32> {
    if !max.is_finite() {
        return Err(crate::Error::Input(format!(
            "backward: the output gradient is not finite ({max}); the loss diverged"
        )));
    }
    if max == 0.0 {
        return Ok(1.0);
    }
    // floor(log2(TARGET / max)) from the exponent bits (exact; log2 may round across a power of
    // two), so that scaling the gradient by 2^k scales this by exactly 2^-k
    let r = GRAD_SCALE_TARGET / max;
    let e = if r.is_normal() { ((r.to_bits() >> 23) & 0xff) as i32 - 127 } else { r.log2().floor() as i32 };
    Ok(2f32.powi(e.clamp(-100, 100)))
}

impl CudaBackend {
    /// Mean loss of the last forward against `bufs.targets`, writing ∂L/∂output (× grad_scale) into
    /// `bufs.deltas[0]`; the loss stays on the device in `self.losses[slot]`.
    pub(super) fn loss_device(&mut self, n: usize, loss: Loss, slot: usize) -> crate::Result<()> {
        self.loss_device_to(n, loss, Some(slot))
    }

    /// [`Self::loss_device`]; with `slot` None, the slot is read on the device from the graph
    /// state's `slot` (a captured step).
    pub(super) fn loss_device_to(&mut self, n: usize, loss: Loss, slot: Option<usize>) -> crate::Result<()> {
        if slot.is_some_and(|slot| slot >= self.losses.len()) {
            return Err(crate::Error::Config(format!("CUDA loss slot {slot:?} out of range")));
        }
        let n_out = self.layers[self.layers.len() - 1].n_out;
        let len = n * n_out;
        self.grad_scale = if self.precision == Precision::Fp16 { len as f32 } else { 1.0 };
        let bufs = self.train.as_mut().ok_or_else(missing)?;
        let gpu = &self.gpu;
        let inv_n = 1.0 / len as f32;
        let len_i = len as i32;
        let blocks = len.div_ceil(THREADS as usize).clamp(1, LOSS_BLOCKS);
        let cfg =
            LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
        let z = bufs.acts[self.layers.len() - 1].slice(0..len);
        let y = bufs.targets.slice(0..len);
        let mut g = bufs.deltas[0].slice_mut(0..len);
        let mut partial = bufs.partial.slice_mut(0..blocks);
        let scale = self.grad_scale;
        match loss {
            Loss::Bce => launch!(gpu, "loss_bce", cfg, &z, &y, &len_i, &inv_n, &scale, &mut g, &mut partial)?,
            Loss::Mse => launch!(gpu, "loss_mse", cfg, &z, &y, &len_i, &inv_n, &scale, &mut g, &mut partial)?,
        }
        let partial = bufs.partial.slice(0..blocks);
        let (parts, inv_n64) = (blocks as i32, inv_n as f64);
        match slot {
            Some(slot) => {
                let mut out = self.losses.slice_mut(slot..slot + 1);
                launch!(gpu, "mean_of_partials", ONE_BLOCK, &partial, &parts, &inv_n64, &mut out)
            }
            None => {
                let dev_slot = self.graph.slot.as_ref().ok_or_else(missing)?;
                launch!(
                    gpu,
                    "mean_of_partials_slot",
                    ONE_BLOCK,
                    &partial,
                    &parts,
                    &inv_n64,
                    dev_slot,
                    &mut self.losses
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{grad_scale_for_max, host_grad_scale};

    #[test]
    fn host_grad_scale_brings_the_largest_gradient_just_under_one() {
        for max in [3e-9f32, 1e-4, 0.7, 1.0, 1.5, 123.0, 4e6] {
            let g = [0.0, -max, max / 3.0];
            let s = host_grad_scale(&g).unwrap();
            assert_eq!(s.log2().fract(), 0.0, "{s} is not a power of two");
            let m = max * s;
            assert!(m > 0.5 && m <= 1.0, "max {max}: scaled to {m}");
        }
        // exactly covariant under powers of two
        let g = [0.3f32, -0.77, 0.01];
        let s = host_grad_scale(&g).unwrap();
        for k in [-40, -13, 7, 30] {
            let gk: Vec<f32> = g.iter().map(|x| x * 2f32.powi(k)).collect();
            assert_eq!(host_grad_scale(&gk).unwrap(), s * 2f32.powi(-k));
        }
        assert_eq!(host_grad_scale(&[0.0, 0.0]).unwrap(), 1.0);
        assert!(host_grad_scale(&[1.0, f32::NAN, 2.0]).is_err());
        assert!(host_grad_scale(&[f32::INFINITY]).is_err());
    }

    /// The device-resident step's rule from a maximum alone is the host rule on the same values.
    #[test]
    fn grad_scale_for_max_is_the_host_rule() {
        let g = [0.25f32, -3.5e-3, 1e-7, -0.0];
        for k in [-60, -20, -1, 0, 1, 9, 40] {
            let gk: Vec<f32> = g.iter().map(|x| x * 2f32.powi(k) * 1.37).collect();
            let max = gk.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            assert_eq!(grad_scale_for_max(max).unwrap(), host_grad_scale(&gk).unwrap());
        }
        assert_eq!(grad_scale_for_max(0.0).unwrap(), 1.0);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let e = grad_scale_for_max(bad).unwrap_err().to_string();
            assert!(e.contains("not finite"), "{e}");
        }
    }
}
