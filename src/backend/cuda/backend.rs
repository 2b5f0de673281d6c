//! [`CudaBackend`]: the [`Backend`] on one NVIDIA GPU — its state, its construction from
//! [`CudaSettings`], and the trait's entry points, which call the components: [`super::encoding`],
//! [`super::mlp`] (forward and backward, both precisions), [`super::loss`], [`super::adam`].

use super::buffers::{missing, Buffers, Gpu};
use super::gemm::Lt;
use super::graph::GraphState;
use super::loss::host_grad_scale;
use super::occupancy::LOSS_SLOTS;
use super::{cuda_error, CudaSettings, Precision};
use crate::backend::{check_output_grad, check_predict, count_points, Backend, Pass, TrainState};
use crate::encoding::Encoding;
use crate::model::{LayerLayout, Mlp};
use crate::train::{Adam, AdamState, Loss};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaSlice, CudaStream};
use half::f16;
use std::sync::Arc;

/// Points per chunk in `predict`, to bound memory.
const PREDICT_CHUNK: usize = 1 << 16;

/// A [`Backend`] on one NVIDIA GPU. See the module docs for what runs where.
pub struct CudaBackend {
    pub(super) gpu: Gpu,
    pub(super) precision: Precision,
    /// Why the precision asked for is not the one that runs (fp16 needs even hidden widths).
    pub(super) precision_note: Option<String>,
    /// fp16: cuBLASLt for the hidden layers' products with the bias + ReLU fused.
    pub(super) lt: Option<Lt>,
    /// fp16: why cuBLASLt is not used (not loadable, switched off, or a shape it refused).
    pub(super) lt_note: std::cell::RefCell<Option<String>>,
    /// fp16: the captured training part of the occupancy step (see [`super::graph`]).
    pub(super) graph: GraphState,
    pub(super) encoding: Encoding,
    pub(super) sizes: Vec<usize>,
    pub(super) layers: Vec<LayerLayout>,
    pub(super) adam: Adam,
    pub(super) step: u64,
    pub(super) params: CudaSlice<f32>,
    pub(super) params16: Option<CudaSlice<f16>>,
    pub(super) grads: CudaSlice<f32>,
    pub(super) moment1: CudaSlice<f32>,
    pub(super) moment2: CudaSlice<f32>,
    /// B, row-major m×d (one unused element for `none`).
    pub(super) frequencies: CudaSlice<f32>,
    pub(super) train: Option<Buffers>,
    pub(super) infer: Option<Buffers>,
    /// Points in the last forward.
    pub(super) batch: usize,
    /// ∂L/∂Z of the output was scaled by this (fp16 loss scaling); undone in the weight gradients.
    pub(super) grad_scale: f32,
    pub(super) outputs: Vec<f32>,
    /// fp16 `backward`: ∂L/∂output times the loss scale, on the host (kept between steps).
    pub(super) scaled: Vec<f32>,
    /// Mean losses of the last steps, one slot per step between reads (see [`super::occupancy`]).
    pub(super) losses: CudaSlice<f32>,
    /// Timing events of device-resident steps, per loss slot: before sampling, after
    /// labelling, after Adam. Made on first use.
    pub(super) step_events: Vec<[cudarc::driver::CudaEvent; 3]>,
    /// The number of points [`Self::set_resident_points`] left in the training buffers, while
    /// they are still there (anything else that writes `train.points` clears it).
    pub(super) resident: Option<usize>,
    /// The mesh of the device occupancy batches ([`crate::backend::DeviceJobs::upload_mesh`]).
    pub(super) occupancy_mesh: Option<super::winding::DeviceMesh>,
    /// The forward whose activations the training buffers hold (see [`crate::backend::Pass`]).
    pub(super) passes: crate::backend::Passes,
}

impl CudaBackend {
    /// A backend on the process's CUDA device (see [`super::runtime`]), or the reason there is none.
    /// fp16 needs even hidden widths; with an odd one the backend runs fp32 and
    /// [`Backend::describe`] says why. `settings` chooses the precision and, in fp16, whether
    /// cuBLASLt's fused epilogues and the occupancy step's CUDA graph are used.
    pub fn new(encoding: Encoding, mlp: Mlp, adam: Adam, settings: CudaSettings) -> crate::Result<Self> {
        let CudaSettings { precision, lt: use_lt, graph: use_graph } = settings;
        // what our kernels do not compute is refused here, before any device work, and never
        // trained as something else
        if encoding.hash.is_some() {
            return Err(crate::Error::Config(
                "the CUDA backend does not run the hashgrid encoding (its kernels are CPU-only so far); \
                 use --device cpu"
                    .into(),
            ));
        }
        if adam.weight_decay != 0.0 {
            return Err(crate::Error::Config(
                "the CUDA backend's Adam has no weight decay; use --device cpu or --weight-decay 0".into(),
            ));
        }
        let rt = super::runtime()
            .map_err(|reason| crate::Error::Config(format!("CUDA is not usable: {reason}")))?;
        if mlp.sizes[0] != encoding.n_features() {
            return Err(crate::Error::Config(format!(
                "the MLP takes {} inputs but the encoding makes {} features",
                mlp.sizes[0],
                encoding.n_features()
            )));
        }
        let stream = rt.ctx.new_stream().map_err(|e| cuda_error("creating a stream", e))?;
        let blas = CudaBlas::new(stream.clone()).map_err(|e| cuda_error("creating a cuBLAS handle", e))?;
        let gpu = Gpu { rt, stream, blas };
        let n = mlp.params.len();
        let mut params = gpu.alloc(n)?;
        gpu.upload(&mlp.params, &mut params)?;
        let mut frequencies = gpu.alloc(encoding.b.len())?;
        gpu.upload(&encoding.b, &mut frequencies)?;
        let layers = mlp.layers();
        let (precision, precision_note) =
            if precision == Precision::Fp16 && layers[..layers.len() - 1].iter().any(|l| l.n_out % 2 != 0) {
                (Precision::Fp32, Some("fp32: fp16 needs even hidden widths".to_string()))
            } else {
                (precision, None)
            };
        let fp16 = precision == Precision::Fp16;
        let graph = GraphState::new(&gpu, fp16, use_graph)?;
        let (lt, lt_note) = if !fp16 {
            (None, None)
        } else if !use_lt {
            (None, Some("cuBLASLt off (CudaSettings::lt)".to_string()))
        } else {
            let major = gpu.rt.arch.trim_start_matches("sm_").parse::<i32>().unwrap_or(0) / 10;
            match Lt::new(gpu.stream.clone(), major) {
                Ok(lt) => (Some(lt), None),
                Err(reason) => (None, Some(reason)),
            }
        };
        let mut be = CudaBackend {
            precision,
            precision_note,
            lt,
            lt_note: std::cell::RefCell::new(lt_note),
            graph,
            encoding,
            layers,
            adam,
            step: 0,
            params16: if fp16 { Some(gpu.alloc(n)?) } else { None },
            grads: gpu.alloc(n)?,
            moment1: gpu.alloc(n)?,
            moment2: gpu.alloc(n)?,
            params,
            frequencies,
            train: None,
            infer: None,
            batch: 0,
            grad_scale: 1.0,
            outputs: vec![],
            scaled: vec![],
            losses: gpu.alloc(LOSS_SLOTS)?,
            step_events: vec![],
            resident: None,
            sizes: mlp.sizes,
            gpu,
            occupancy_mesh: None,
            passes: crate::backend::Passes::default(),
        };
        be.refresh_params16()?;
        Ok(be)
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub(super) fn fp16(&self) -> bool {
        self.precision == Precision::Fp16
    }

    /// Whether fp16's hidden layers go through cuBLASLt (until a shape is refused).
    pub fn uses_lt(&self) -> bool {
        self.lt.is_some() && self.lt_note.borrow().is_none()
    }

    /// Name and architecture of the device, e.g. "NVIDIA H200 (sm_90)".
    pub fn device(&self) -> String {
        format!("{} ({})", self.gpu.rt.device_name, self.gpu.rt.arch)
    }

    /// The stream every launch of this backend is ordered on: device operators that take the
    /// network's outputs on the device (`GpuKspaceOperator::on_stream`, `GpuProjector::on_stream`)
    /// run on it, so no cross-stream synchronisation is needed.
    pub fn stream(&self) -> Arc<CudaStream> {
        self.gpu.stream.clone()
    }

    pub(super) fn check_points(&self, points: &[f32], what: &str) -> crate::Result<usize> {
        let n = count_points(points, self.encoding.dim, what)?;
        if n > i32::MAX as usize / self.layers.iter().map(|l| l.n_in.max(l.n_out)).max().unwrap_or(1) {
            return Err(crate::Error::Input(format!(
                "{what}: {n} points is too many for one batch on the GPU"
            )));
        }
        Ok(n)
    }

    pub(super) fn read_state(&self) -> crate::Result<TrainState> {
        let read = |s: &CudaSlice<f32>| -> crate::Result<Vec<f32>> {
            let mut v = vec![0.0; s.len()];
            self.gpu.download(&s.as_view(), &mut v)?;
            Ok(v)
        };
        Ok(TrainState {
            mlp: Mlp { sizes: self.sizes.clone(), params: read(&self.params)? },
            adam: AdamState { m: read(&self.moment1)?, v: read(&self.moment2)?, step: self.step },
        })
    }
}

impl Backend for CudaBackend {
    fn synchronize(&self) -> crate::Result<()> {
        self.gpu.stream.synchronize().map_err(|e| cuda_error("synchronising the stream", e))
    }

    fn device_jobs(&mut self) -> Option<&mut dyn crate::backend::DeviceJobs> {
        Some(self)
    }

    fn describe(&self) -> String {
        let path = match (&self.precision_note, self.fp16()) {
            (Some(note), _) => format!(", {note}"),
            (None, true) => {
                (match &*self.lt_note.borrow() {
                    None => ", cuBLASLt bias+ReLU epilogues".to_string(),
                    Some(why) => format!(", without cuBLASLt: {why}"),
                }) + &self.graph.describe()
            }
            (None, false) => String::new(),
        };
        format!(
            "cuda {} on {} ({}, kernels {}{path})",
            self.precision.name(),
            self.gpu.rt.device_name,
            self.gpu.rt.arch,
            self.gpu.rt.ptx_origin
        )
    }

    fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    fn forward(&mut self, points: &[f32]) -> crate::Result<(Pass, &[f32])> {
        let n = self.check_points(points, "forward")?;
        self.resident = None;
        self.passes.end();
        Self::ensure(&mut self.train, &self.gpu, n, self.encoding.dim, &self.layers, true, self.precision)?;
        let mut bufs = self.train.take().ok_or_else(missing)?;
        let r = self.gpu.upload(points, &mut bufs.points).and_then(|_| self.forward_device(&mut bufs, n));
        let n_out = self.layers[self.layers.len() - 1].n_out;
        self.outputs.resize(n * n_out, 0.0);
        let r = r.and_then(|_| {
            self.gpu.download(&bufs.acts[self.layers.len() - 1].slice(0..n * n_out), &mut self.outputs)
        });
        self.train = Some(bufs);
        r?;
        self.batch = n;
        Ok((self.passes.start(n), &self.outputs))
    }

    fn backward(&mut self, pass: Pass, d_output: &[f32]) -> crate::Result<()> {
        let n = self.passes.check(pass)?.points();
        check_output_grad(d_output.len(), n, self.layers[self.layers.len() - 1].n_out)?;
        self.grad_scale = if self.fp16() { host_grad_scale(d_output)? } else { 1.0 };
        let bufs = self.train.as_mut().ok_or_else(missing)?;
        if self.grad_scale == 1.0 {
            self.gpu.upload(d_output, &mut bufs.deltas[0])?;
        } else {
            let scale = self.grad_scale;
            self.scaled.clear();
            self.scaled.extend(d_output.iter().map(|g| g * scale));
            self.gpu.upload(&self.scaled, &mut bufs.deltas[0])?;
        }
        self.backward_device(n)
    }

    /// The chunk's gradients on the device, summed with the earlier chunks' on the host (the
    /// same order as the CPU backend: this chunk's, plus the sum before it). The parameters are
    /// small next to a chunk's activations, so the two copies cost little against its products.
    fn backward_accumulate(&mut self, pass: Pass, d_output: &[f32]) -> crate::Result<()> {
        let before = self.gradients()?;
        self.backward(pass, d_output)?;
        let mut sum = self.gradients()?;
        sum.iter_mut().zip(&before).for_each(|(g, b)| *g += b);
        self.gpu.upload(&sum, &mut self.grads)
    }

    fn device_memory_free(&self) -> Option<u64> {
        self.gpu.rt.ctx.mem_get_info().ok().map(|(free, _total)| free as u64)
    }

    fn gradients(&self) -> crate::Result<Vec<f32>> {
        let mut v = vec![0.0; self.grads.len()];
        self.gpu.download(&self.grads.as_view(), &mut v)?;
        Ok(v)
    }

    fn optimizer_step(&mut self, lr: f32) -> crate::Result<()> {
        self.adam_step(lr)
    }

    fn predict(&mut self, points: &[f32], out: &mut [f32]) -> crate::Result<()> {
        let d = self.encoding.dim;
        let n_out = self.sizes.last().copied().unwrap_or(1);
        check_predict(points.len(), out.len(), d, n_out)?;
        if points.is_empty() {
            return Ok(());
        }
        let chunk = (points.len() / d).min(PREDICT_CHUNK);
        self.check_points(&points[..chunk * d], "predict")?;
        Self::ensure(&mut self.infer, &self.gpu, chunk, d, &self.layers, false, self.precision)?;
        let mut bufs = self.infer.take().ok_or_else(missing)?;
        let mut r = Ok(());
        for (p, o) in points.chunks(PREDICT_CHUNK * d).zip(out.chunks_mut(PREDICT_CHUNK * n_out)) {
            let n = p.len() / d;
            r = self
                .gpu
                .upload(p, &mut bufs.points)
                .and_then(|_| self.forward_device(&mut bufs, n))
                .and_then(|_| self.gpu.download(&bufs.acts[self.layers.len() - 1].slice(0..n * n_out), o));
            if r.is_err() {
                break;
            }
        }
        self.infer = Some(bufs);
        r
    }

    /// Parameters and Adam state, read from the device; a lost device is the error.
    fn state(&self) -> crate::Result<TrainState> {
        self.read_state()
    }

    fn step(&self) -> u64 {
        self.step
    }

    fn set_state(&mut self, state: TrainState) -> crate::Result<()> {
        let n = self.params.len();
        if state.mlp.sizes != self.sizes
            || state.mlp.params.len() != n
            || state.adam.m.len() != n
            || state.adam.v.len() != n
        {
            return Err(crate::Error::Config(format!(
                "checkpoint network {:?} does not match the configured {:?}",
                state.mlp.sizes, self.sizes
            )));
        }
        self.gpu.upload(&state.mlp.params, &mut self.params)?;
        self.gpu.upload(&state.adam.m, &mut self.moment1)?;
        self.gpu.upload(&state.adam.v, &mut self.moment2)?;
        self.step = state.adam.step;
        self.refresh_params16()?;
        Ok(())
    }

    /// Uploads points and targets once, runs forward, loss, backward and Adam on the device, and
    /// reads back only the loss.
    fn train_step(&mut self, points: &[f32], targets: &[f32], loss: Loss, lr: f32) -> crate::Result<f32> {
        let n = self.check_points(points, "train_step")?;
        let n_out = self.layers[self.layers.len() - 1].n_out;
        if targets.len() != n * n_out {
            return Err(crate::Error::Input(format!("train_step: {} targets for {n} points", targets.len())));
        }
        self.resident = None;
        self.passes.end();
        Self::ensure(&mut self.train, &self.gpu, n, self.encoding.dim, &self.layers, true, self.precision)?;
        let mut bufs = self.train.take().ok_or_else(missing)?;
        let r = self
            .gpu
            .upload(points, &mut bufs.points)
            .and_then(|_| self.gpu.upload(targets, &mut bufs.targets))
            .and_then(|_| self.forward_device(&mut bufs, n));
        self.train = Some(bufs);
        r?;
        self.batch = n;
        self.loss_device(n, loss, 0)?;
        self.backward_device(n)?;
        self.optimizer_step(lr)?;
        let mut value = [0.0f32];
        self.gpu.download(&self.losses.slice(0..1), &mut value)?;
        Ok(value[0])
    }
}
