//! The occupancy step without the host: the batch of a step is drawn on the device from the
//! same counter RNG as [`crate::job::occupancy::training_batch`] (uniform points bit for bit,
//! near-surface points to the last bit of Box–Muller's log/cos), labelled on the device by the
//! winding-number tree of [`crate::geometry::winding`] (`cuda/winding.cu`, the same traversal
//! and two passes in f64), then encoded, trained on, and the loss left in a device slot. The host
//! launches, and reads the losses (and the step timings) only every few steps.

use super::backend::CudaBackend;
use super::buffers::missing;
use super::winding::DeviceMesh;
use super::{cuda_error, grid, rng_key};
use crate::sample::rng::streams;
use crate::train::Loss;
use cudarc::driver::PushKernelArg;

/// Losses (and timing events) kept on the device between two reads: the most steps
/// [`CudaBackend::occupancy_step`] can run before [`CudaBackend::read_steps`].
pub const LOSS_SLOTS: usize = 64;

/// What defines the training batch of one step (see `job::occupancy::training_batch`).
#[derive(Clone, Copy, Debug)]
pub struct BatchParams {
    pub seed: u64,
    pub step: u64,
    pub batch: usize,
    /// The last `n_surface` points of the batch are near-surface points.
    pub n_surface: usize,
    pub surface_sigma: f32,
}

/// What [`CudaBackend::read_steps`] returns for the steps since the last read.
#[derive(Clone, Debug, Default)]
pub struct StepReport {
    /// Mean loss of each step, in order.
    pub losses: Vec<f32>,
    /// Device time spent sampling and labelling, and training (encode, MLP, loss, backward, Adam).
    pub label_seconds: f64,
    pub train_seconds: f64,
}

impl CudaBackend {
    /// Draws and labels the batch of `p.step` into the training buffers (points, targets).
    pub(super) fn draw_batch(&mut self, mesh: &DeviceMesh, p: &BatchParams) -> crate::Result<()> {
        let n = p.batch;
        if self.encoding.dim != 3 {
            return Err(crate::Error::Config("occupancy batches are 3-D; the encoding is not".into()));
        }
        if n == 0 || p.n_surface > n {
            return Err(crate::Error::Input(format!(
                "batch of {n} points with {} near the surface",
                p.n_surface
            )));
        }
        if p.n_surface > 0 && mesh.n_faces == 0 {
            return Err(crate::Error::Input("near-surface points asked of a mesh without faces".into()));
        }
        let widest = self.layers.iter().map(|l| l.n_in.max(l.n_out)).max().unwrap_or(1);
        if n > i32::MAX as usize / widest.max(3) {
            return Err(crate::Error::Input(format!("{n} points is too many for one batch on the GPU")));
        }
        self.resident = None; // the batch overwrites the training buffers' points
        self.passes.end();
        Self::ensure(&mut self.train, &self.gpu, n, 3, &self.layers, true, self.precision)?;
        let gpu = &self.gpu;
        let bufs = self.train.as_mut().ok_or_else(missing)?;
        let key = rng_key(p.seed, streams::TRAIN_BATCH);
        let base = p.step.wrapping_mul(n as u64).wrapping_mul(16);
        let n_uniform = n - p.n_surface;
        if n_uniform > 0 {
            gpu.uniform_box(&mesh.bbox, key, base, n_uniform, &mut bufs.points.slice_mut(0..3 * n_uniform))?;
        }
        if p.n_surface > 0 {
            let first = base.wrapping_add(4 * n as u64);
            let first = first + (first & 1);
            let n_i = p.n_surface as i64;
            let mut out = bufs.points.slice_mut(3 * n_uniform..3 * n);
            launch!(
                gpu,
                "sample_near_surface",
                grid(p.n_surface),
                &key,
                &first,
                &n_i,
                &mesh.faces,
                &mesh.n_faces,
                &p.surface_sigma,
                &mut out
            )?;
        }
        let pts = bufs.points.slice(0..3 * n);
        let mut labels = bufs.targets.slice_mut(0..n);
        Self::label_device(gpu, mesh, &pts, n, &mut labels)
    }

    /// The batch of `p.step` drawn and labelled on the device, read back (points n × 3, labels):
    /// for tests against `job::occupancy::training_batch`.
    pub fn occupancy_batch(
        &mut self,
        mesh: &DeviceMesh,
        p: &BatchParams,
    ) -> crate::Result<(Vec<f32>, Vec<f32>)> {
        self.draw_batch(mesh, p)?;
        let bufs = self.train.as_ref().ok_or_else(missing)?;
        let mut points = vec![0.0; 3 * p.batch];
        self.gpu.download(&bufs.points.slice(0..3 * p.batch), &mut points)?;
        let mut labels = vec![0.0; p.batch];
        self.gpu.download(&bufs.targets.slice(0..p.batch), &mut labels)?;
        Ok((points, labels))
    }

    /// One occupancy training step on the device: draw and label the batch of `p.step`, encode,
    /// forward, sigmoid cross-entropy, backward, Adam. Nothing is read back: the mean loss goes
    /// to loss slot `slot` (< [`LOSS_SLOTS`]); [`Self::read_steps`] reads slots `0..k`. The
    /// result equals `train_step` on the host batch of `training_batch`.
    pub fn occupancy_step(
        &mut self,
        mesh: &DeviceMesh,
        p: &BatchParams,
        lr: f32,
        slot: usize,
    ) -> crate::Result<()> {
        if slot >= LOSS_SLOTS {
            return Err(crate::Error::Config(format!(
                "loss slot {slot}: at most {LOSS_SLOTS} steps between reads"
            )));
        }
        while self.step_events.len() <= slot {
            let ctx = &self.gpu.rt.ctx;
            let ev = || ctx.new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT));
            let made = (|| Ok::<_, cudarc::driver::DriverError>([ev()?, ev()?, ev()?]))()
                .map_err(|e| cuda_error("creating events", e))?;
            self.step_events.push(made);
        }
        let record = |be: &Self, k: usize| {
            be.step_events[slot][k].record(&be.gpu.stream).map_err(|e| cuda_error("recording an event", e))
        };
        record(self, 0)?;
        self.draw_batch(mesh, p)?;
        record(self, 1)?;
        if self.train_from_graph(p.batch, lr, slot)? {
            return record(self, 2);
        }
        let mut bufs = self.train.take().ok_or_else(missing)?;
        let forward = self.forward_device(&mut bufs, p.batch);
        self.train = Some(bufs);
        forward?;
        self.batch = p.batch;
        self.loss_device(p.batch, Loss::Bce, slot)?;
        self.backward_device(p.batch)?;
        self.adam_step(lr)?;
        record(self, 2)
    }

    /// Waits for the queued steps and reads the losses of slots `0..k` (the last `k` steps of
    /// [`Self::occupancy_step`], in slot order) with their device times.
    pub fn read_steps(&self, k: usize) -> crate::Result<StepReport> {
        if k > LOSS_SLOTS || k > self.step_events.len() {
            return Err(crate::Error::Config(format!(
                "read_steps({k}): only {} slots in use",
                self.step_events.len()
            )));
        }
        let mut losses = vec![0.0f32; k];
        if k > 0 {
            self.gpu.download(&self.losses.slice(0..k), &mut losses)?;
        }
        let mut report = StepReport { losses, ..Default::default() };
        for ev in &self.step_events[..k] {
            let ms = |a: usize, b: usize| {
                ev[a].elapsed_ms(&ev[b]).map_err(|e| cuda_error("reading event times", e))
            };
            report.label_seconds += ms(0, 1)? as f64 / 1e3;
            report.train_seconds += ms(1, 2)? as f64 / 1e3;
        }
        Ok(report)
    }
}
