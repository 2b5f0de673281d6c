//! Where the network runs.
//!
//! ## Design
//!
//! [`Backend`] works at the level of the network, not of single tensor operations: encode a
//! batch and run the MLP forward, run it backward, take an optimiser step. That level lets a
//! GPU backend fuse whole stages (encoding into the first layer, bias and ReLU into each
//! product, the loss into the last layer) while the CPU backend stays plain and readable. The
//! CPU backend is the reference every other backend is tested against.
//!
//! Training state — parameters, Adam moments, the step count — leaves the device only through
//! [`Backend::state`], for checkpoints and tests.

pub mod cpu;
pub mod cuda;
pub mod select;

use crate::encoding::Encoding;
use crate::model::Mlp;
use crate::train::{AdamState, Loss};

pub use cpu::CpuBackend;
pub use cuda::{BatchParams, StepReport};

use crate::geometry::winding::WindingNumber;
use crate::geometry::TriMesh;
use crate::operator::ct_geometry::Scan;
use crate::operator::fft::{MaskedFft, C64};
use crate::operator::ray::RayProjector;
use crate::operator::GridLoss;
use crate::sample::Aabb;

/// What a backend can run on its device beyond the network, for the jobs that can use it: the
/// occupancy batches drawn, labelled and trained on the device; the grid operators of MRI and CT
/// on the device; the device-resident grid step; and the benchmark's probes. Jobs reach it through
/// [`Backend::device_jobs`], never through a concrete backend.
pub trait DeviceJobs {
    /// Uploads the mesh (unit box) and its winding-number tree for the device batches.
    fn upload_mesh(&mut self, winding: &WindingNumber, mesh: &TriMesh, bbox: Aabb) -> crate::Result<()>;

    /// Inside/outside labels of `points` from the uploaded mesh, and the device seconds.
    fn label_points(&mut self, points: &[[f32; 3]]) -> crate::Result<(Vec<f32>, f64)>;

    /// Queues one occupancy step (draw, label, train, Adam) into loss slot `slot`.
    fn occupancy_step(&mut self, params: &BatchParams, lr: f32, slot: usize) -> crate::Result<()>;

    /// Waits for the `n` queued steps and returns their losses and device times.
    fn read_steps(&mut self, n: usize) -> crate::Result<StepReport>;

    /// The masked-FFT loss of `fit mri` on the device; `resident`: on this backend's stream,
    /// for [`Self::resident_step`].
    fn kspace_operator(
        &mut self,
        op: &MaskedFft,
        measured: &[C64],
        resident: bool,
    ) -> crate::Result<Box<dyn GridLoss>>;

    /// The ray-projector loss of `fit ct` (grid rendering) on the device.
    fn ray_operator(
        &mut self,
        scan: &Scan,
        projector: &RayProjector,
        measured: &[f32],
        resident: bool,
    ) -> crate::Result<Box<dyn GridLoss>>;

    /// One step up to the optimiser with the grid's points kept on the device: forward, `op`'s
    /// loss and ∂L/∂z, backward, all on the device (`op` made here with `resident`). The loss.
    fn resident_step(&mut self, op: &mut dyn GridLoss, points: &[f32]) -> crate::Result<f64>;

    /// Benchmark probes: upload points once, then time the encoding alone.
    fn stage_points(&mut self, points: &[f32]) -> crate::Result<()>;
    fn encode_staged(&mut self, n: usize) -> crate::Result<()>;
}

/// The number of `d`-D points in `points` (row-major n×d); an error naming `what` when there are
/// none or the coordinates are not a whole number of points.
pub(crate) fn count_points(points: &[f32], d: usize, what: &str) -> crate::Result<usize> {
    if points.is_empty() || !points.len().is_multiple_of(d) {
        return Err(crate::Error::Input(format!(
            "{what}: {} coordinates is not a whole number of {d}-D points",
            points.len()
        )));
    }
    Ok(points.len() / d)
}

/// `backward`'s check: `len` output gradients for a forward of `n` points with `n_out` outputs.
pub(crate) fn check_output_grad(len: usize, n: usize, n_out: usize) -> crate::Result<()> {
    if n == 0 || len != n * n_out {
        return Err(crate::Error::Input(format!(
            "backward: got {len} output gradients for a forward of {n} points"
        )));
    }
    Ok(())
}

/// `predict`'s check: `points` coordinates of `d`-D points and `out` outputs, `n_out` per point.
pub(crate) fn check_predict(points: usize, out: usize, d: usize, n_out: usize) -> crate::Result<()> {
    if !points.is_multiple_of(d) || out != points / d * n_out {
        return Err(crate::Error::Input(format!(
            "predict: {points} coordinates and {out} outputs do not match"
        )));
    }
    Ok(())
}

/// What a [`Backend::forward`] leaves for its backward: which forward it was and how many points
/// it had. [`Backend::backward`] consumes it, so a forward is back-propagated at most once, and a
/// backward whose activations have since been overwritten (by a later forward, a `train_step` or
/// a device step) is an error rather than the gradient of other points.
#[derive(Debug)]
#[must_use = "a forward's pass is consumed by its backward"]
pub struct Pass {
    id: u64,
    points: usize,
}

impl Pass {
    /// Points of the forward.
    pub fn points(&self) -> usize {
        self.points
    }
}

/// A backend's record of its passes: every forward starts one, anything else that overwrites
/// the training activations ends the current one.
#[derive(Debug, Default)]
pub struct Passes {
    current: u64,
}

impl Passes {
    pub fn start(&mut self, points: usize) -> Pass {
        self.current += 1;
        Pass { id: self.current, points }
    }

    /// The training activations were overwritten: no pass is current.
    pub fn end(&mut self) {
        self.current += 1;
    }

    /// `pass`, when it is the current one.
    pub fn check(&self, pass: Pass) -> crate::Result<Pass> {
        if pass.id != self.current {
            return Err(crate::Error::Input(
                "backward: its forward's activations were overwritten by a later forward or training \
                 step; run the forward again"
                    .into(),
            ));
        }
        Ok(pass)
    }
}

/// Everything needed to continue training bit-for-bit: the parameters and the optimiser state.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState {
    pub mlp: Mlp,
    pub adam: AdamState,
}

pub trait Backend {
    /// A short description for logs: "cpu (2 threads)".
    fn describe(&self) -> String;

    /// The encoding this backend applies to query points.
    fn encoding(&self) -> &Encoding;

    /// Encodes `points` (row-major n×d in the unit box) and runs the MLP, keeping what the
    /// backward pass needs. Returns the pass its backward consumes, and the outputs (n×outputs).
    fn forward(&mut self, points: &[f32]) -> crate::Result<(Pass, &[f32])>;

    /// Back-propagates ∂L/∂output (n×outputs) of `pass`, storing ∂L/∂params; an error when
    /// another forward or a training step has run since `pass`'s forward.
    fn backward(&mut self, pass: Pass, d_output: &[f32]) -> crate::Result<()>;

    /// As [`Backend::backward`], adding ∂L/∂params to the stored gradients instead of replacing
    /// them: the chunked steps of [`crate::train::fit`] back-propagate a grid chunk by chunk.
    fn backward_accumulate(&mut self, _pass: Pass, _d_output: &[f32]) -> crate::Result<()> {
        Err(crate::Error::Config(format!(
            "{}: chunked training (accumulated gradients) is not supported on this backend",
            self.describe()
        )))
    }

    /// Free memory on the backend's device, for memory plans (`None` on the host).
    fn device_memory_free(&self) -> Option<u64> {
        None
    }

    /// ∂L/∂params from the last `backward`, in [`Mlp`]'s flat layout; an error when they cannot
    /// be read (a lost device), never stale or empty values.
    fn gradients(&self) -> crate::Result<Vec<f32>>;

    /// One Adam step with the stored gradients.
    fn optimizer_step(&mut self, lr: f32) -> crate::Result<()>;

    /// Outputs for any number of points, in chunks, without keeping anything for backward.
    fn predict(&mut self, points: &[f32], out: &mut [f32]) -> crate::Result<()>;

    /// Parameters and optimiser state; an error when they cannot be read (a lost device), so a
    /// checkpoint is never written from stale state.
    fn state(&self) -> crate::Result<TrainState>;

    /// Optimiser steps taken so far (without reading the device).
    fn step(&self) -> u64;
    fn set_state(&mut self, state: TrainState) -> crate::Result<()>;

    /// Waits until the work queued so far has finished (asynchronous backends); for timing.
    fn synchronize(&self) -> crate::Result<()> {
        Ok(())
    }

    /// The parts of jobs this backend can run on its device beyond the network (occupancy
    /// batches, grid operators, device-resident steps); `None` when it has none (the CPU).
    fn device_jobs(&mut self) -> Option<&mut dyn DeviceJobs> {
        None
    }

    /// A whole training step on host data: forward, loss, backward, Adam. Returns the mean loss.
    /// Backends that can fuse the loss into their kernels override this.
    fn train_step(&mut self, points: &[f32], targets: &[f32], loss: Loss, lr: f32) -> crate::Result<f32> {
        let (pass, outputs) = self.forward(points)?;
        let mut grad = vec![0.0; outputs.len()];
        let value = loss.eval(outputs, targets, &mut grad);
        self.backward(pass, &grad)?;
        self.optimizer_step(lr)?;
        Ok(value)
    }
}
