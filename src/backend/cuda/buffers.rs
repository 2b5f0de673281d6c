//! Device memory: [`Gpu`] (the stream, the cuBLAS handle and the kernels a backend launches with,
//! and its allocation and copy helpers) and [`Buffers`], the per-batch buffers of a forward and
//! backward pass in either precision.

use super::backend::CudaBackend;
use super::loss::LOSS_BLOCKS;
use super::mlp::{fp16_rows_per_part, BIAS_ROWS_PER_PART};
use super::{cuda_error, Precision, Runtime};
use crate::model::LayerLayout;
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaSlice, CudaStream, CudaView};
use half::f16;
use std::sync::Arc;

/// The stream, the cuBLAS handle and the kernels: everything needed to launch work.
pub(super) struct Gpu {
    pub(super) rt: Arc<Runtime>,
    pub(super) stream: Arc<CudaStream>,
    pub(super) blas: CudaBlas,
}

impl Gpu {
    pub(super) fn alloc<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        len: usize,
    ) -> crate::Result<CudaSlice<T>> {
        self.stream
            .alloc_zeros::<T>(len.max(1))
            .map_err(|e| cuda_error(&format!("allocating {len} elements"), e))
    }

    pub(super) fn upload<T: cudarc::driver::DeviceRepr>(
        &self,
        src: &[T],
        dst: &mut CudaSlice<T>,
    ) -> crate::Result<()> {
        if src.len() > dst.len() {
            return Err(crate::Error::Config("CUDA upload larger than its buffer".into()));
        }
        let mut view = dst.slice_mut(0..src.len());
        self.stream.memcpy_htod(src, &mut view).map_err(|e| cuda_error("copying to the device", e))
    }

    /// A new buffer holding `src`.
    pub(super) fn alloc_from<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        src: &[T],
    ) -> crate::Result<CudaSlice<T>> {
        let mut d = self.alloc(src.len())?;
        self.upload(src, &mut d)?;
        Ok(d)
    }

    pub(super) fn download<T: cudarc::driver::DeviceRepr>(
        &self,
        src: &CudaView<T>,
        dst: &mut [T],
    ) -> crate::Result<()> {
        if dst.len() != src.len() {
            return Err(crate::Error::Config("CUDA download of the wrong size".into()));
        }
        self.stream.memcpy_dtoh(src, dst).map_err(|e| cuda_error("copying from the device", e))?;
        self.stream.synchronize().map_err(|e| cuda_error("synchronising the stream", e))
    }
}

/// Per-batch device buffers, sized for `cap` points.
pub(super) struct Buffers {
    pub(super) cap: usize,
    pub(super) points: CudaSlice<f32>,
    pub(super) targets: CudaSlice<f32>,
    pub(super) features: CudaSlice<f32>,
    /// Outputs of every layer (post-ReLU for hidden layers).
    pub(super) acts: Vec<CudaSlice<f32>>,
    /// ∂L/∂Z: [output gradient, ping, pong]; empty for inference buffers.
    pub(super) deltas: Vec<CudaSlice<f32>>,
    /// fp16: the features, every hidden activation and the hidden ∂L/∂Z (two ping-pong
    /// buffers); hidden `acts`, `features` and `deltas[1..]` are then one-element placeholders.
    pub(super) features16: Option<CudaSlice<f16>>,
    pub(super) acts16: Vec<CudaSlice<f16>>,
    pub(super) delta16: Option<CudaSlice<f16>>,
    pub(super) delta16b: Option<CudaSlice<f16>>,
    pub(super) partial: CudaSlice<f64>,
}

impl Buffers {
    pub(super) fn new(
        gpu: &Gpu,
        cap: usize,
        dim: usize,
        layers: &[LayerLayout],
        training: bool,
        precision: Precision,
    ) -> crate::Result<Self> {
        if precision == Precision::Fp16 {
            return Self::new_fp16(gpu, cap, dim, layers, training);
        }
        let n_features = layers[0].n_in;
        let n_out = layers[layers.len() - 1].n_out;
        let widest = layers.iter().map(|l| l.n_in.max(l.n_out)).max().unwrap_or(1);
        let widest_out = layers.iter().map(|l| l.n_out).max().unwrap_or(1);
        let mut acts = vec![];
        for layer in layers {
            acts.push(gpu.alloc(cap * layer.n_out)?);
        }
        let deltas = if training {
            vec![gpu.alloc(cap * n_out)?, gpu.alloc(cap * widest)?, gpu.alloc(cap * widest)?]
        } else {
            vec![]
        };
        let parts = cap.div_ceil(BIAS_ROWS_PER_PART);
        Ok(Buffers {
            cap,
            points: gpu.alloc(cap * dim)?,
            targets: gpu.alloc(if training { cap * n_out } else { 1 })?,
            features: gpu.alloc(cap * n_features)?,
            acts,
            deltas,
            features16: None,
            acts16: vec![],
            delta16: None,
            delta16b: None,
            partial: gpu.alloc(LOSS_BLOCKS.max(parts * widest_out))?,
        })
    }

    /// fp16 buffers: fp16 features, fp16 hidden activations, fp16 ∂L/∂Z ping-pong; fp32 only for
    /// the output layer's values and gradient.
    pub(super) fn new_fp16(
        gpu: &Gpu,
        cap: usize,
        dim: usize,
        layers: &[LayerLayout],
        training: bool,
    ) -> crate::Result<Self> {
        let n_features = layers[0].n_in;
        let n_out = layers[layers.len() - 1].n_out;
        let widest = layers.iter().map(|l| l.n_in.max(l.n_out)).max().unwrap_or(1);
        let widest_out = layers.iter().map(|l| l.n_out).max().unwrap_or(1);
        let mut acts = vec![];
        let mut acts16 = vec![];
        for (l, layer) in layers.iter().enumerate() {
            if l + 1 < layers.len() {
                acts.push(gpu.alloc(1)?);
                acts16.push(gpu.alloc(cap * layer.n_out)?);
            } else {
                acts.push(gpu.alloc(cap * layer.n_out)?);
            }
        }
        let deltas =
            if training { vec![gpu.alloc(cap * n_out)?, gpu.alloc(1)?, gpu.alloc(1)?] } else { vec![] };
        let parts = cap.div_ceil(BIAS_ROWS_PER_PART).max(cap.div_ceil(fp16_rows_per_part(cap)));
        Ok(Buffers {
            cap,
            points: gpu.alloc(cap * dim)?,
            targets: gpu.alloc(if training { cap * n_out } else { 1 })?,
            features: gpu.alloc(1)?,
            acts,
            deltas,
            features16: Some(gpu.alloc(cap * n_features)?),
            acts16,
            delta16: if training { Some(gpu.alloc(cap * widest)?) } else { None },
            delta16b: if training { Some(gpu.alloc(cap * widest)?) } else { None },
            partial: gpu.alloc(LOSS_BLOCKS.max(parts * widest_out))?,
        })
    }
}

impl CudaBackend {
    pub(super) fn ensure(
        slot: &mut Option<Buffers>,
        gpu: &Gpu,
        n: usize,
        dim: usize,
        layers: &[LayerLayout],
        training: bool,
        p: Precision,
    ) -> crate::Result<()> {
        if slot.as_ref().is_none_or(|b| b.cap < n) {
            *slot = None; // free the old buffers first
            *slot = Some(Buffers::new(gpu, n, dim, layers, training, p)?);
        }
        Ok(())
    }
}

pub(super) fn missing() -> crate::Error {
    crate::Error::Config("CUDA backend: buffers missing (no forward before backward?)".into())
}
