//! CUDA graph capture of the fp16 occupancy step's training part (see [`GraphState`]).

use super::backend::CudaBackend;
use super::buffers::{missing, Gpu};
use super::cuda_error;
use crate::train::Loss;
use cudarc::driver::CudaSlice;

/// fp16: the CUDA graph of the occupancy step's training part (encode, forward, loss,
/// backward, Adam): captured once per batch size and set of buffers, on the second step with
/// that key (the first runs as usual, so cuBLAS and cuBLASLt have made their plans), then
/// replayed. The step's values (learning rate, Adam's bias corrections, the loss slot) live in
/// device memory the host writes before each launch. Sampling and labelling stay ordinary
/// launches, so the per-step events (label vs train time) still bracket the graph.
pub struct GraphState {
    pub(super) enabled: bool,
    /// lr, c1, c2 of the step being launched.
    pub(super) hyper: Option<CudaSlice<f32>>,
    /// The loss slot of the step being launched.
    pub(super) slot: Option<CudaSlice<i32>>,
    /// cuBLAS's workspace, set on the handle so that captured products allocate nothing.
    pub(super) _blas_workspace: Option<CudaSlice<u8>>,
    /// (batch, device address of the training buffers' points) the graph was captured for.
    pub(super) key: Option<(usize, u64)>,
    /// The key of the last uncaptured step (captured on the next step with the same key).
    pub(super) warm: Option<(usize, u64)>,
    pub(super) graph: Option<cudarc::driver::CudaGraph>,
    /// Why graphs are off: switched off, or a capture that failed (then never tried again).
    pub(super) note: Option<String>,
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
            note: if fp16 && !wanted { Some("CUDA graph off (CudaSettings::graph)".into()) } else { None },
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
    /// Turns the occupancy step's CUDA graph off (for tests; [`super::CudaSettings::graph`] at
    /// construction otherwise).
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
    pub(super) fn train_from_graph(&mut self, n: usize, lr: f32, slot: usize) -> crate::Result<bool> {
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
    pub(super) fn capture_train(&mut self, n: usize) -> Result<cudarc::driver::CudaGraph, String> {
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
            self.adam_step_from_device()
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
}
