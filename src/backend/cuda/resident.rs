//! The device-resident API of the full-grid steps of `fit mri` and `fit ct`: a fixed set of points
//! kept in the training buffers, the forward's outputs left on the device for a device operator,
//! and its ∂L/∂output taken back from the device.

use super::backend::CudaBackend;
use super::buffers::missing;
use super::grid;
use super::loss::grad_scale_for_max;
use crate::backend::check_output_grad;
use cudarc::driver::{CudaView, PushKernelArg};

impl CudaBackend {
    /// Uploads a fixed set of points (a full grid) into the training buffers once, for
    /// [`Self::forward_resident`]; returns their number. They stay until something else writes
    /// the training buffers' points (`forward`, `train_step`, an occupancy step), which clears
    /// [`Self::has_resident_points`]; `predict` uses separate buffers and keeps them.
    pub fn set_resident_points(&mut self, points: &[f32]) -> crate::Result<usize> {
        let n = self.check_points(points, "set_resident_points")?;
        self.resident = None;
        self.passes.end();
        Self::ensure(&mut self.train, &self.gpu, n, self.encoding.dim, &self.layers, true, self.precision)?;
        let bufs = self.train.as_mut().ok_or_else(missing)?;
        self.gpu.upload(points, &mut bufs.points)?;
        self.resident = Some(n);
        Ok(n)
    }

    /// Whether the points of [`Self::set_resident_points`] are still in the training buffers.
    pub fn has_resident_points(&self) -> bool {
        self.resident.is_some()
    }

    /// The forward pass on the resident points: the raw outputs (n × outputs, fp32 in both
    /// precisions) stay on the device, on [`Self::stream`]; nothing is copied to the host. Follow
    /// with [`Self::backward_device_grad`].
    pub fn forward_resident(&mut self) -> crate::Result<CudaView<'_, f32>> {
        let n = self.resident.ok_or_else(|| {
            crate::Error::Config(
                "CUDA forward_resident: no resident points (set_resident_points first)".into(),
            )
        })?;
        self.passes.end();
        let mut bufs = self.train.take().ok_or_else(missing)?;
        let r = self.forward_device(&mut bufs, n);
        self.train = Some(bufs);
        r?;
        self.batch = n;
        let len = n * self.layers[self.layers.len() - 1].n_out;
        let bufs = self.train.as_ref().ok_or_else(missing)?;
        Ok(bufs.acts[self.layers.len() - 1].slice(0..len))
    }

    /// [`crate::backend::Backend::backward`] with ∂L/∂output already on the device (ordered on
    /// [`Self::stream`]) and its largest magnitude `max_abs`, which the caller's loss computed on
    /// the device and read with the loss. fp16 scales the gradient by
    /// [`grad_scale_for_max`]`(max_abs)`, as [`super::loss::host_grad_scale`] would for the same
    /// values; a non-finite `max_abs` is an error in both precisions (the loss diverged).
    pub fn backward_device_grad(&mut self, grad: &CudaView<f32>, max_abs: f32) -> crate::Result<()> {
        let (n, n_out) = (self.batch, self.layers[self.layers.len() - 1].n_out);
        check_output_grad(grad.len(), n, n_out)?;
        let len = n * n_out;
        let scale = grad_scale_for_max(max_abs)?;
        self.grad_scale = if self.fp16() { scale } else { 1.0 };
        let bufs = self.train.as_mut().ok_or_else(missing)?;
        let (len_i, s) = (len as i64, self.grad_scale);
        let mut out = bufs.deltas[0].slice_mut(0..len);
        let gpu = &self.gpu;
        launch!(gpu, "scale_into", grid(len), grad, &len_i, &s, &mut out)?;
        self.backward_device(n)
    }
}
