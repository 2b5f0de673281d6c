//! The occupancy step without the host: the batch of a step is drawn on the device from the
//! same counter RNG as [`crate::job::occupancy::training_batch`] (uniform points bit for bit,
//! near-surface points to the last bit of Box–Muller's log/cos), labelled on the device by the
//! winding-number tree of [`crate::geometry::winding`] (`cuda/winding.cu`, the same traversal
//! and two passes in f64), then encoded, trained on, and the loss left in a device slot. The host
//! launches, and reads the losses (and the step timings) only every few steps.

use super::{grid, missing, rng_key, CudaBackend, Gpu};
use crate::backend::cuda::cuda_error;
use crate::backend::Backend;
use crate::geometry::winding::{WindingNumber, LABEL_BETA, LABEL_RECHECK};
use crate::geometry::TriMesh;
use crate::sample::rng::streams;
use crate::sample::Aabb;
use crate::train::Loss;
use cudarc::driver::PushKernelArg;
use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, LaunchConfig};

/// Losses (and timing events) kept on the device between two reads: the most steps
/// [`CudaBackend::occupancy_step`] can run before [`CudaBackend::read_steps`].
pub const LOSS_SLOTS: usize = 64;

/// Depth of the per-thread traversal stack in `cuda/winding.cu` (`WINDING_STACK`).
pub const WINDING_STACK: usize = 64;

/// Threads per block of the winding kernels: small blocks spread a 32,768-point batch over
/// every SM (one thread per point; traversals of different length finish at different times).
const WINDING_THREADS: u32 = 64;

fn winding_grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(WINDING_THREADS as usize).clamp(1, 1 << 20) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (WINDING_THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// A mesh on the device, ready for sampling near its surface and labelling points against it:
/// the winding-number tree (nodes, leaf triangles, far-field data) and the faces in source order.
/// Made by [`CudaBackend::upload_mesh`]; use it with the backend that made it.
pub struct DeviceMesh {
    nodes: CudaSlice<u32>,
    tris: CudaSlice<f32>,
    far: CudaSlice<f64>,
    faces: CudaSlice<f32>,
    n_nodes: i32,
    n_faces: u64,
    beta2: f64,
    /// The box uniform points are drawn from.
    pub bbox: Aabb,
    /// Depth of the deepest tree node (the stack needs one more slot).
    pub max_depth: usize,
}

impl DeviceMesh {
    pub fn n_faces(&self) -> u64 {
        self.n_faces
    }
}

/// What defines the training batch of one step (see `task::occupancy::training_batch`).
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

/// fp16: the CUDA graph of the occupancy step's training part (encode, forward, loss,
/// backward, Adam): captured once per batch size and set of buffers, on the second step with
/// that key (the first runs as usual, so cuBLAS and cuBLASLt have made their plans), then
/// replayed. The step's values (learning rate, Adam's bias corrections, the loss slot) live in
/// device memory the host writes before each launch. Sampling and labelling stay ordinary
/// launches, so the per-step events (label vs train time) still bracket the graph.
pub struct GraphState {
    enabled: bool,
    /// lr, c1, c2 of the step being launched.
    hyper: Option<CudaSlice<f32>>,
    /// The loss slot of the step being launched.
    pub(super) slot: Option<CudaSlice<i32>>,
    /// cuBLAS's workspace, set on the handle so that captured products allocate nothing.
    _blas_workspace: Option<CudaSlice<u8>>,
    /// (batch, device address of the training buffers' points) the graph was captured for.
    key: Option<(usize, u64)>,
    /// The key of the last uncaptured step (captured on the next step with the same key).
    warm: Option<(usize, u64)>,
    graph: Option<cudarc::driver::CudaGraph>,
    /// Why graphs are off: switched off, or a capture that failed (then never tried again).
    note: Option<String>,
    /// Steps replayed from the graph (for tests and the bench line).
    pub replays: u64,
}

impl GraphState {
    pub(super) fn new(gpu: &Gpu, fp16: bool, wanted: bool) -> crate::Result<Self> {
        let mut g = GraphState {
            enabled: fp16 && wanted,
            hyper: None,
            slot: None,
            _blas_workspace: None,
            key: None,
            warm: None,
            graph: None,
            note: if fp16 && !wanted { Some("CUDA graph off (FFVOL_CUDA_GRAPH=0)".into()) } else { None },
            replays: 0,
        };
        if g.enabled {
            g.hyper = Some(gpu.alloc::<f32>(3)?);
            g.slot = Some(gpu.alloc::<i32>(1)?);
            // cuBLAS must not allocate its workspace while a capture is running: give it one
            let ws = gpu.alloc::<u8>(32 << 20)?;
            let ptr = cudarc::driver::DevicePtr::device_ptr(&ws, &gpu.stream).0;
            // SAFETY: the handle is live, and the workspace outlives it: CudaBackend's `gpu`
            // (the handle) is its first field, so it drops before `graph` (this workspace).
            let r = unsafe {
                cudarc::cublas::sys::cublasSetWorkspace_v2(
                    *gpu.blas.handle(),
                    ptr as *mut std::ffi::c_void,
                    32 << 20,
                )
            };
            if r != cudarc::cublas::sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
                g.enabled = false;
                g.note = Some(format!("CUDA graph off: cublasSetWorkspace failed ({r:?})"));
            }
            g._blas_workspace = Some(ws);
        }
        Ok(g)
    }

    pub(super) fn describe(&self) -> String {
        match (&self.note, self.enabled) {
            (Some(note), _) => format!(", {note}"),
            (None, true) => ", occupancy step as a CUDA graph".into(),
            (None, false) => String::new(),
        }
    }
}

impl CudaBackend {
    /// Turns the occupancy step's CUDA graph off (for tests; `FFVOL_CUDA_GRAPH=0` otherwise).
    pub fn without_graph(mut self) -> Self {
        self.graph.graph = None;
        if self.graph.enabled {
            self.graph.note = Some("CUDA graph off (without_graph)".into());
        }
        self
    }

    /// Whether fp16 occupancy steps replay a CUDA graph, and how many have.
    pub fn graph_replays(&self) -> (bool, u64) {
        (self.graph.enabled && self.graph.note.is_none(), self.graph.replays)
    }

    /// The training part of an occupancy step (the batch is drawn) from the CUDA graph.
    /// Ok(false): not done (first step with this key, or graphs off); the caller runs it as usual.
    fn train_from_graph(&mut self, n: usize, lr: f32, slot: usize) -> crate::Result<bool> {
        if !self.graph.enabled || self.graph.note.is_some() {
            return Ok(false);
        }
        let ptr = {
            let bufs = self.train.as_ref().ok_or_else(missing)?;
            let (p, _sync) = cudarc::driver::DevicePtr::device_ptr(&bufs.points, &self.gpu.stream);
            p
        };
        let key = (n, ptr);
        if self.graph.key != Some(key) {
            self.graph.graph = None;
            self.graph.key = None;
            if self.graph.warm != Some(key) {
                self.graph.warm = Some(key);
                return Ok(false);
            }
        }
        // the step's values, exactly as optimizer_step computes them
        let (c1, c2) = self.adam_corrections(self.step + 1);
        {
            let gpu = &self.gpu;
            gpu.upload(&[lr, c1, c2], self.graph.hyper.as_mut().ok_or_else(missing)?)?;
            gpu.upload(&[slot as i32], self.graph.slot.as_mut().ok_or_else(missing)?)?;
        }
        if self.graph.graph.is_none() {
            match self.capture_train(n) {
                Ok(g) => {
                    self.graph.graph = Some(g);
                    self.graph.key = Some(key);
                }
                Err(reason) => {
                    self.graph.note = Some(format!("CUDA graph off: {reason}"));
                    return Ok(false);
                }
            }
        }
        let g = self.graph.graph.as_ref().ok_or_else(missing)?;
        g.launch().map_err(|e| cuda_error("launching the step's CUDA graph", e))?;
        self.step += 1;
        self.batch = n;
        self.grad_scale = n as f32; // as loss_device sets it for fp16 (one output)
        self.graph.replays += 1;
        Ok(true)
    }

    /// Captures encode, forward, loss (slot from the device), backward and Adam (lr, c1, c2
    /// from the device) for a batch of `n` drawn into the training buffers. Nothing runs.
    fn capture_train(&mut self, n: usize) -> Result<cudarc::driver::CudaGraph, String> {
        if self.layers[self.layers.len() - 1].n_out != 1 {
            return Err("the network has more than one output".into());
        }
        let stream = self.gpu.stream.clone();
        stream
            .begin_capture(cudarc::driver::sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(|e| format!("beginning the capture: {e:?}"))?;
        let saved = (self.grad_scale, self.batch);
        let r = (|| -> crate::Result<()> {
            let mut bufs = self.train.take().ok_or_else(missing)?;
            let f = self.forward_device(&mut bufs, n);
            self.train = Some(bufs);
            f?;
            self.batch = n;
            self.loss_device_to(n, Loss::Bce, None)?;
            self.backward_device(n)?;
            let len = self.params.len() as i64;
            let (b1, b2, eps) = (self.adam.beta1, self.adam.beta2, self.adam.eps);
            let gpu = &self.gpu;
            let hyper = self.graph.hyper.as_ref().ok_or_else(missing)?;
            let p16 = self.params16.as_mut().ok_or_else(missing)?;
            launch!(
                gpu,
                "adam_step_h_dev",
                grid(len as usize),
                &mut self.params,
                &self.grads,
                &mut self.moment1,
                &mut self.moment2,
                &len,
                hyper,
                &b1,
                &b2,
                &eps,
                p16
            )
        })();
        (self.grad_scale, self.batch) = saved;
        let g = stream.end_capture(cudarc::driver::sys::CUgraphInstantiate_flags(0));
        r.map_err(|e| format!("capturing the step: {e}"))?;
        match g {
            Ok(Some(g)) => Ok(g),
            Ok(None) => Err("the capture made no graph".into()),
            Err(e) => Err(format!("ending the capture: {e:?}")),
        }
    }

    /// Uploads `mesh_in_unit`'s faces and `winding`'s tree once; the arrays are those of
    /// [`WindingNumber::export_flat`]. Fails when the tree is deeper than the device stack.
    pub fn upload_mesh(
        &self,
        winding: &WindingNumber,
        mesh_in_unit: &TriMesh,
        bbox: Aabb,
    ) -> crate::Result<DeviceMesh> {
        let flat = winding.export_flat();
        if flat.max_depth + 1 > WINDING_STACK {
            return Err(crate::Error::Config(format!(
                "the mesh's BVH is {} levels deep; the GPU labeller's stack holds {WINDING_STACK}",
                flat.max_depth + 1
            )));
        }
        if flat.nodes.len() > i32::MAX as usize {
            return Err(crate::Error::Config("the mesh is too large for the GPU labeller".into()));
        }
        let n_pos = mesh_in_unit.positions.len();
        let mut faces = Vec::with_capacity(9 * mesh_in_unit.triangles.len());
        for (f, t) in mesh_in_unit.triangles.iter().enumerate() {
            for &v in t {
                let p = mesh_in_unit.positions.get(v as usize).ok_or_else(|| {
                    crate::Error::Input(format!(
                        "face {f} refers to vertex {v} but the mesh has {n_pos} vertices"
                    ))
                })?;
                faces.extend_from_slice(&p.to_array());
            }
        }
        let gpu = &self.gpu;
        let nodes = gpu.alloc_from(flat.nodes.as_flattened())?;
        let tris = gpu.alloc_from(flat.tris.as_flattened())?;
        let faces_d = gpu.alloc_from(&faces)?;
        let far = gpu.alloc_from(flat.far.as_flattened())?;
        // other streams may use the mesh once the copies are done
        self.synchronize()?;
        Ok(DeviceMesh {
            nodes,
            tris,
            far,
            faces: faces_d,
            n_nodes: flat.nodes.len() as i32,
            n_faces: mesh_in_unit.triangles.len() as u64,
            beta2: flat.beta2,
            bbox,
            max_depth: flat.max_depth,
        })
    }

    /// `labels[i]` = 1 when point i (row-major n × 3 on the device) is inside: the two passes of
    /// [`WindingNumber::label_points`].
    fn label_device(
        gpu: &Gpu,
        mesh: &DeviceMesh,
        points: &CudaView<f32>,
        n: usize,
        labels: &mut CudaViewMut<f32>,
    ) -> crate::Result<()> {
        if points.len() < 3 * n || labels.len() < n {
            return Err(crate::Error::Config("CUDA winding_label: buffers too small".into()));
        }
        let (n_i, bc, bf, re) = (n as i64, LABEL_BETA * LABEL_BETA, mesh.beta2, LABEL_RECHECK);
        launch!(
            gpu,
            "winding_label",
            winding_grid(n),
            points,
            &n_i,
            &mesh.nodes,
            &mesh.tris,
            &mesh.far,
            &mesh.n_nodes,
            &bc,
            &bf,
            &re,
            labels
        )
    }

    /// Labels host points on the device (for tests and the benchmark). Returns the labels and
    /// the device time of the labelling kernel alone, in seconds.
    pub fn label_points(&self, mesh: &DeviceMesh, points: &[[f32; 3]]) -> crate::Result<(Vec<f32>, f64)> {
        let n = points.len();
        if n == 0 {
            return Ok((vec![], 0.0));
        }
        let gpu = &self.gpu;
        let mut p = gpu.alloc::<f32>(3 * n)?;
        gpu.upload(points.as_flattened(), &mut p)?;
        let mut out = gpu.alloc::<f32>(n)?;
        let t0 = self.timing_event()?;
        Self::label_device(gpu, mesh, &p.slice(0..3 * n), n, &mut out.slice_mut(0..n))?;
        let t1 = self.timing_event()?;
        let mut host = vec![0.0; n];
        gpu.download(&out.slice(0..n), &mut host)?;
        let ms = t0.elapsed_ms(&t1).map_err(|e| cuda_error("reading event times", e))?;
        Ok((host, ms as f64 / 1e3))
    }

    /// The hierarchical winding numbers of host points at accuracy β² (the tree's own β² gives
    /// [`WindingNumber::winding`]), computed on the device; for tests.
    pub fn winding_numbers(
        &self,
        mesh: &DeviceMesh,
        points: &[[f32; 3]],
        beta2: f64,
    ) -> crate::Result<Vec<f64>> {
        let n = points.len();
        if n == 0 {
            return Ok(vec![]);
        }
        let gpu = &self.gpu;
        let mut p = gpu.alloc::<f32>(3 * n)?;
        gpu.upload(points.as_flattened(), &mut p)?;
        let mut out = gpu.alloc::<f64>(n)?;
        let n_i = n as i64;
        launch!(
            gpu,
            "winding_values",
            winding_grid(n),
            &p,
            &n_i,
            &mesh.nodes,
            &mesh.tris,
            &mesh.far,
            &mesh.n_nodes,
            &beta2,
            &mut out
        )?;
        let mut host = vec![0.0f64; n];
        gpu.download(&out.slice(0..n), &mut host)?;
        Ok(host)
    }

    fn timing_event(&self) -> crate::Result<cudarc::driver::CudaEvent> {
        self.gpu
            .stream
            .record_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| cuda_error("recording an event", e))
    }

    /// Draws and labels the batch of `p.step` into the training buffers (points, targets).
    fn draw_batch(&mut self, mesh: &DeviceMesh, p: &BatchParams) -> crate::Result<()> {
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
    /// for tests against `task::occupancy::training_batch`.
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
        self.optimizer_step(lr)?;
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

    /// Uploads host points into the inference buffers, for timing [`Self::encode_staged`].
    pub fn stage_points(&mut self, points: &[f32]) -> crate::Result<usize> {
        let n = self.check_points(points, "stage_points")?;
        Self::ensure(&mut self.infer, &self.gpu, n, self.encoding.dim, &self.layers, false, self.precision)?;
        let bufs = self.infer.as_mut().ok_or_else(missing)?;
        self.gpu.upload(points, &mut bufs.points)?;
        Ok(n)
    }

    /// Encodes the first `n` staged points on the device and waits for it (benchmark of the
    /// device encoder alone).
    pub fn encode_staged(&mut self, n: usize) -> crate::Result<()> {
        let mut bufs = self.infer.take().ok_or_else(missing)?;
        let r = if n > bufs.cap {
            Err(crate::Error::Input("encode_staged: more points than staged".into()))
        } else {
            self.encode_device(&mut bufs, n)
        };
        self.infer = Some(bufs);
        r?;
        self.synchronize()
    }
}
