//! [`CudaBackend`]: a whole training step on the GPU — encode, forward, loss, backward, Adam.
//!
//! Dense layers are cuBLAS products (`Z = A·Wᵀ`, `dW = dZᵀ·A`, `dA = dZ·W`, row-major as the
//! CPU backend, through the column-major transposes) followed by our element-wise kernels
//! (bias + ReLU, ReLU mask, bias-gradient column sums in f64, loss, Adam).
//!
//! Two precisions:
//! - fp16 (the default): tensor-core products with fp32 accumulation. Features, hidden
//!   activations and hidden ∂L/∂Z live only in fp16; the hidden forward products go through
//!   cuBLASLt with the bias + ReLU fused into the epilogue (cuBLAS + `bias_relu_h` without it);
//!   one kernel applies the ReLU mask to each ∂L/∂A product and takes the next bias gradient's
//!   column sums; Adam writes the fp16 weight copy in the same pass. Weights, gradients and
//!   Adam moments stay fp32. ∂L/∂output is scaled by a power of two into fp16's range (loss
//!   scaling) and the scale is undone in the weight gradients.
//! - fp32, for checking against the CPU backend.
//!
//! [`occupancy`] adds the device-resident occupancy step: batches sampled and labelled on the
//! GPU, so a training step never leaves the device.

use super::{cuda_error, grid, Precision, Runtime, ONE_BLOCK, THREADS};
use crate::backend::{check_output_grad, check_predict, count_points, Backend, TrainState};
use crate::encoding::Encoding;
use crate::model::{LayerLayout, Mlp};
use crate::sample::Aabb;
use crate::train::{Adam, AdamState, Loss};
use cudarc::cublas::{result as blas_result, sys as blas_sys, CudaBlas};
use cudarc::driver::{
    CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg,
};
use half::f16;
use std::ffi::c_void;
use std::sync::Arc;

/// Points per chunk in `predict`, to bound memory.
const PREDICT_CHUNK: usize = 1 << 16;
/// Blocks of the loss kernels: at most this many f64 partial sums per loss.
const LOSS_BLOCKS: usize = 1024;
/// Rows per partial sum of the bias gradient.
const BIAS_ROWS_PER_PART: usize = 2048;
/// fp16: rows per partial sum of the bias gradient (at least; more when the grid would exceed
/// 65,535 parts).
const FP16_ROWS_PER_PART: usize = 512;
/// fp16 loss scaling: ∂L/∂output from the host is scaled by a power of two so that its largest
/// magnitude lies in (TARGET/2, TARGET] (the device losses scale mean-loss gradients by the
/// batch size, which bounds them by 1 likewise).
const GRAD_SCALE_TARGET: f32 = 1.0;

/// Whether fp16 may use cuBLASLt's fused bias/ReLU epilogues (`$FFVOL_CUDA_LT`, on unless `0`).
pub fn lt_from_env() -> bool {
    std::env::var("FFVOL_CUDA_LT").map_or(true, |v| v != "0")
}

/// Whether fp16 replays the device-resident occupancy step's training part as a CUDA graph
/// (`$FFVOL_CUDA_GRAPH`, on unless `0`).
pub fn graph_from_env() -> bool {
    std::env::var("FFVOL_CUDA_GRAPH").map_or(true, |v| v != "0")
}

/// Whether the full-grid steps of `fit mri` and `fit ct`, when their operator runs on the device,
/// keep the network's outputs and ∂L/∂output there (`$FFVOL_CUDA_RESIDENT`, on unless `0`; off,
/// the step goes through host memory as before, for timing and checking the two paths).
pub fn resident_from_env() -> bool {
    std::env::var("FFVOL_CUDA_RESIDENT").map_or(true, |v| v != "0")
}

/// fp16: rows per bias-gradient part for a batch of `n`.
fn fp16_rows_per_part(n: usize) -> usize {
    FP16_ROWS_PER_PART.max(n.div_ceil(65_535).next_multiple_of(8))
}

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

/// An operand of a matrix product.
enum Operand<'a> {
    F32(CudaView<'a, f32>),
    F16(CudaView<'a, f16>),
}

impl Operand<'_> {
    fn len(&self) -> usize {
        match self {
            Operand::F32(v) => v.len(),
            Operand::F16(v) => v.len(),
        }
    }
}

/// The result of a matrix product.
enum OutOperand<'a, 'b> {
    F32(&'a mut CudaViewMut<'b, f32>),
    F16(&'a mut CudaViewMut<'b, f16>),
}

impl OutOperand<'_, '_> {
    fn len(&self) -> usize {
        match self {
            OutOperand::F32(v) => v.len(),
            OutOperand::F16(v) => v.len(),
        }
    }
}

/// The stream, the cuBLAS handle and the kernels: everything needed to launch work.
struct Gpu {
    rt: Arc<Runtime>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
}

impl Gpu {
    /// Column-major `C (m×n) = alpha · op(A) · op(B)` with fp32 C and accumulation, A and B both
    /// fp32 or both fp16 (tensor cores). Dimensions are checked against the buffers first, so
    /// cuBLAS cannot touch memory outside them.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        tr: (bool, bool),
        mnk: (usize, usize, usize),
        alpha: f32,
        a: (Operand, usize),
        b: (Operand, usize),
        (c, ldc): (&mut CudaViewMut<f32>, usize),
    ) -> crate::Result<()> {
        self.gemm_to(tr, mnk, alpha, a, b, (OutOperand::F32(c), ldc))
    }

    /// [`Self::gemm`] with C fp32 or (fp16 A and B only) fp16; accumulation in fp32.
    #[allow(clippy::too_many_arguments)]
    fn gemm_to(
        &self,
        (ta, tb): (bool, bool),
        (m, n, k): (usize, usize, usize),
        alpha: f32,
        (a, lda): (Operand, usize),
        (b, ldb): (Operand, usize),
        (mut c, ldc): (OutOperand, usize),
    ) -> crate::Result<()> {
        // elements a column-major rows×cols matrix with leading dimension ld spans
        let span = |rows: usize, cols: usize, ld: usize| (cols - 1) * ld + rows;
        let (ar, ac) = if ta { (k, m) } else { (m, k) };
        let (br, bc) = if tb { (n, k) } else { (k, n) };
        let ok = m > 0
            && n > 0
            && k > 0
            && lda >= ar
            && ldb >= br
            && ldc >= m
            && span(ar, ac, lda) <= a.len()
            && span(br, bc, ldb) <= b.len()
            && span(m, n, ldc) <= c.len()
            && [m, n, k, lda, ldb, ldc].iter().all(|&d| d <= i32::MAX as usize);
        if !ok {
            return Err(crate::Error::Config(format!(
                "CUDA gemm: {m}×{n}×{k} (lda {lda}, ldb {ldb}, ldc {ldc}) does not fit buffers of {}, {}, {}",
                a.len(),
                b.len(),
                c.len()
            )));
        }
        let op = |t: bool| {
            if t {
                blas_sys::cublasOperation_t::CUBLAS_OP_T
            } else {
                blas_sys::cublasOperation_t::CUBLAS_OP_N
            }
        };
        let beta = 0.0f32;
        let s = &self.stream;
        let (a_ptr, a_type, _a_sync) = match &a {
            Operand::F32(v) => {
                let (p, g) = v.device_ptr(s);
                (p, blas_sys::cudaDataType_t::CUDA_R_32F, g)
            }
            Operand::F16(v) => {
                let (p, g) = v.device_ptr(s);
                (p, blas_sys::cudaDataType_t::CUDA_R_16F, g)
            }
        };
        let (b_ptr, b_type, _b_sync) = match &b {
            Operand::F32(v) => {
                let (p, g) = v.device_ptr(s);
                (p, blas_sys::cudaDataType_t::CUDA_R_32F, g)
            }
            Operand::F16(v) => {
                let (p, g) = v.device_ptr(s);
                (p, blas_sys::cudaDataType_t::CUDA_R_16F, g)
            }
        };
        if a_type != b_type {
            return Err(crate::Error::Config("CUDA gemm: operands of different types".into()));
        }
        let (c_ptr, c_type, _c_sync) = match &mut c {
            OutOperand::F32(v) => {
                let (p, g) = v.device_ptr_mut(s);
                (p, blas_sys::cudaDataType_t::CUDA_R_32F, g)
            }
            OutOperand::F16(v) => {
                if a_type != blas_sys::cudaDataType_t::CUDA_R_16F {
                    return Err(crate::Error::Config("CUDA gemm: fp16 output needs fp16 operands".into()));
                }
                let (p, g) = v.device_ptr_mut(s);
                (p, blas_sys::cudaDataType_t::CUDA_R_16F, g)
            }
        };
        // SAFETY: the handle is live, the pointers are device allocations on this handle's stream,
        // and the extents were checked above. alpha and beta are host f32, as CUBLAS_COMPUTE_32F
        // requires with the default (host) pointer mode.
        unsafe {
            blas_result::gemm_ex(
                *self.blas.handle(),
                op(ta),
                op(tb),
                m as i32,
                n as i32,
                k as i32,
                (&alpha) as *const f32 as *const c_void,
                a_ptr as *const c_void,
                a_type,
                lda as i32,
                b_ptr as *const c_void,
                b_type,
                ldb as i32,
                (&beta) as *const f32 as *const c_void,
                c_ptr as *mut c_void,
                c_type,
                ldc as i32,
                blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| cuda_error("cublasGemmEx", e))
    }

    fn alloc<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        len: usize,
    ) -> crate::Result<CudaSlice<T>> {
        self.stream
            .alloc_zeros::<T>(len.max(1))
            .map_err(|e| cuda_error(&format!("allocating {len} elements"), e))
    }

    fn upload<T: cudarc::driver::DeviceRepr>(&self, src: &[T], dst: &mut CudaSlice<T>) -> crate::Result<()> {
        if src.len() > dst.len() {
            return Err(crate::Error::Config("CUDA upload larger than its buffer".into()));
        }
        let mut view = dst.slice_mut(0..src.len());
        self.stream.memcpy_htod(src, &mut view).map_err(|e| cuda_error("copying to the device", e))
    }

    /// A new buffer holding `src`.
    fn alloc_from<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        src: &[T],
    ) -> crate::Result<CudaSlice<T>> {
        let mut d = self.alloc(src.len())?;
        self.upload(src, &mut d)?;
        Ok(d)
    }

    fn download<T: cudarc::driver::DeviceRepr>(&self, src: &CudaView<T>, dst: &mut [T]) -> crate::Result<()> {
        if dst.len() != src.len() {
            return Err(crate::Error::Config("CUDA download of the wrong size".into()));
        }
        self.stream.memcpy_dtoh(src, dst).map_err(|e| cuda_error("copying from the device", e))?;
        self.stream.synchronize().map_err(|e| cuda_error("synchronising the stream", e))
    }

    fn to_f16(&self, src: &CudaView<f32>, dst: &mut CudaViewMut<f16>) -> crate::Result<()> {
        let n = src.len() as i64;
        if dst.len() < src.len() {
            return Err(crate::Error::Config("CUDA f32_to_f16: destination too small".into()));
        }
        launch!(self, "f32_to_f16", grid(src.len()), src, &n, dst)
    }

    /// `sample_uniform_box` into `out` (n × 3): point i from counters `first + 3i ..= first + 3i + 2`.
    fn uniform_box(
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

    /// Bias gradient, pass 1: f64 column sums of `dz` (rows × cols) over blocks of
    /// [`BIAS_ROWS_PER_PART`] rows into `partial`; returns the number of parts.
    fn column_sums_partial(
        &self,
        dz: &CudaView<f32>,
        rows: usize,
        cols: usize,
        partial: &mut CudaSlice<f64>,
    ) -> crate::Result<usize> {
        let parts = rows.div_ceil(BIAS_ROWS_PER_PART);
        let cfg = LaunchConfig {
            grid_dim: (cols.div_ceil(32) as u32, parts as u32, 1),
            block_dim: (32, 8, 1),
            shared_mem_bytes: 0,
        };
        let (rows_i, cols_i, rpp) = (rows as i32, cols as i32, BIAS_ROWS_PER_PART as i32);
        let mut partial = partial.slice_mut(0..parts * cols);
        launch!(self, "column_sums_partial", cfg, dz, &rows_i, &cols_i, &rpp, &mut partial)?;
        Ok(parts)
    }

    /// Bias gradient, pass 2: `gb = scale · Σ_part partial` (`parts` × cols partial sums).
    fn column_sums_final(
        &self,
        partial: &CudaSlice<f64>,
        parts: usize,
        cols: usize,
        scale: f32,
        gb: &mut CudaViewMut<f32>,
    ) -> crate::Result<()> {
        let partial = partial.slice(0..parts * cols);
        let (parts_i, cols_i) = (parts as i32, cols as i32);
        launch!(self, "column_sums_final", grid(cols), &partial, &parts_i, &cols_i, &scale, gb)
    }
}

/// Per-batch device buffers, sized for `cap` points.
struct Buffers {
    cap: usize,
    points: CudaSlice<f32>,
    targets: CudaSlice<f32>,
    features: CudaSlice<f32>,
    /// Outputs of every layer (post-ReLU for hidden layers).
    acts: Vec<CudaSlice<f32>>,
    /// ∂L/∂Z: [output gradient, ping, pong]; empty for inference buffers.
    deltas: Vec<CudaSlice<f32>>,
    /// fp16: the features, every hidden activation and the hidden ∂L/∂Z (two ping-pong
    /// buffers); hidden `acts`, `features` and `deltas[1..]` are then one-element placeholders.
    features16: Option<CudaSlice<f16>>,
    acts16: Vec<CudaSlice<f16>>,
    delta16: Option<CudaSlice<f16>>,
    delta16b: Option<CudaSlice<f16>>,
    partial: CudaSlice<f64>,
}

impl Buffers {
    fn new(
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
    fn new_fp16(
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

/// A [`Backend`] on one NVIDIA GPU. See the module docs for what runs where.
pub struct CudaBackend {
    gpu: Gpu,
    precision: Precision,
    /// Why the precision asked for is not the one that runs (fp16 needs even hidden widths).
    precision_note: Option<String>,
    /// fp16: cuBLASLt for the hidden layers' products with the bias + ReLU fused.
    lt: Option<super::lt::Lt>,
    /// fp16: why cuBLASLt is not used (not loadable, switched off, or a shape it refused).
    lt_note: std::cell::RefCell<Option<String>>,
    /// fp16: the captured training part of the occupancy step (see [`occupancy`]).
    pub(super) graph: occupancy::GraphState,
    encoding: Encoding,
    sizes: Vec<usize>,
    layers: Vec<LayerLayout>,
    adam: Adam,
    step: u64,
    params: CudaSlice<f32>,
    params16: Option<CudaSlice<f16>>,
    grads: CudaSlice<f32>,
    moment1: CudaSlice<f32>,
    moment2: CudaSlice<f32>,
    /// B, row-major m×d (one unused element for `none`).
    frequencies: CudaSlice<f32>,
    train: Option<Buffers>,
    infer: Option<Buffers>,
    /// Points in the last forward.
    batch: usize,
    /// ∂L/∂Z of the output was scaled by this (fp16 loss scaling); undone in the weight gradients.
    grad_scale: f32,
    outputs: Vec<f32>,
    /// fp16 `backward`: ∂L/∂output times the loss scale, on the host (kept between steps).
    scaled: Vec<f32>,
    /// The last state read from or written to the device, returned by `state()` if reading fails.
    last_state: std::cell::RefCell<TrainState>,
    /// Mean losses of the last steps, one slot per step between reads (see [`occupancy`]).
    losses: CudaSlice<f32>,
    /// Timing events of device-resident steps, per loss slot: before sampling, after
    /// labelling, after Adam. Made on first use.
    step_events: Vec<[cudarc::driver::CudaEvent; 3]>,
    /// The number of points [`Self::set_resident_points`] left in the training buffers, while
    /// they are still there (anything else that writes `train.points` clears it).
    pub(super) resident: Option<usize>,
}

impl CudaBackend {
    /// A backend on the process's CUDA device (see [`super::runtime`]), or the reason there is none.
    /// fp16 needs even hidden widths; with an odd one the backend runs fp32 and
    /// [`Backend::describe`] says why.
    pub fn new(encoding: Encoding, mlp: Mlp, adam: Adam, precision: Precision) -> crate::Result<Self> {
        Self::with_lt(encoding, mlp, adam, precision, lt_from_env())
    }

    /// [`Self::new`] with cuBLASLt's fused epilogues in fp16 or not, whatever `$FFVOL_CUDA_LT`
    /// says (parity tests run both in one process).
    pub fn with_lt(
        encoding: Encoding,
        mlp: Mlp,
        adam: Adam,
        precision: Precision,
        use_lt: bool,
    ) -> crate::Result<Self> {
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
        let graph = occupancy::GraphState::new(&gpu, fp16, graph_from_env())?;
        let (lt, lt_note) = if !fp16 {
            (None, None)
        } else if !use_lt {
            (None, Some("cuBLASLt off (FFVOL_CUDA_LT=0)".to_string()))
        } else {
            let major = gpu.rt.arch.trim_start_matches("sm_").parse::<i32>().unwrap_or(0) / 10;
            match super::lt::Lt::new(gpu.stream.clone(), major) {
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
            last_state: std::cell::RefCell::new(TrainState { adam: AdamState::zeros(n), mlp: mlp.clone() }),
            losses: gpu.alloc(occupancy::LOSS_SLOTS)?,
            step_events: vec![],
            resident: None,
            sizes: mlp.sizes,
            gpu,
        };
        be.refresh_params16()?;
        Ok(be)
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    fn fp16(&self) -> bool {
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

    /// Uploads a fixed set of points (a full grid) into the training buffers once, for
    /// [`Self::forward_resident`]; returns their number. They stay until something else writes
    /// the training buffers' points (`forward`, `train_step`, an occupancy step), which clears
    /// [`Self::has_resident_points`]; `predict` uses separate buffers and keeps them.
    pub fn set_resident_points(&mut self, points: &[f32]) -> crate::Result<usize> {
        let n = self.check_points(points, "set_resident_points")?;
        self.resident = None;
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
        let mut bufs = self.train.take().ok_or_else(missing)?;
        let r = self.forward_device(&mut bufs, n);
        self.train = Some(bufs);
        r?;
        self.batch = n;
        let len = n * self.layers[self.layers.len() - 1].n_out;
        let bufs = self.train.as_ref().ok_or_else(missing)?;
        Ok(bufs.acts[self.layers.len() - 1].slice(0..len))
    }

    /// [`Backend::backward`] with ∂L/∂output already on the device (ordered on [`Self::stream`])
    /// and its largest magnitude `max_abs`, which the caller's loss computed on the device and read
    /// with the loss. fp16 scales the gradient by [`grad_scale_for_max`]`(max_abs)`, as
    /// [`host_grad_scale`] would for the same values; a non-finite `max_abs` is an error in both
    /// precisions (the loss diverged).
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

    /// Adam's bias corrections 1/(1 − β1^t), 1/(1 − β2^t) of step `t`, exactly as
    /// src/train/adam.rs computes them.
    fn adam_corrections(&self, t: u64) -> (f32, f32) {
        let t = t as i32;
        let c1 = 1.0 / (1.0 - (self.adam.beta1 as f64).powi(t)) as f32;
        let c2 = 1.0 / (1.0 - (self.adam.beta2 as f64).powi(t)) as f32;
        (c1, c2)
    }

    fn refresh_params16(&mut self) -> crate::Result<()> {
        if let Some(p16) = &mut self.params16 {
            self.gpu.to_f16(&self.params.as_view(), &mut p16.as_view_mut())?;
        }
        Ok(())
    }

    fn ensure(
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

    fn check_points(&self, points: &[f32], what: &str) -> crate::Result<usize> {
        let n = count_points(points, self.encoding.dim, what)?;
        if n > i32::MAX as usize / self.layers.iter().map(|l| l.n_in.max(l.n_out)).max().unwrap_or(1) {
            return Err(crate::Error::Input(format!(
                "{what}: {n} points is too many for one batch on the GPU"
            )));
        }
        Ok(n)
    }

    /// Encodes `bufs.points[..n]` into `bufs.features` (fp32) or `bufs.features16` (fp16).
    fn encode_device(&self, bufs: &mut Buffers, n: usize) -> crate::Result<()> {
        if self.fp16() {
            return self.encode_fp16(bufs, n);
        }
        let f = self.encoding.n_features();
        let pts = bufs.points.slice(0..n * self.encoding.dim);
        self.encode_f32(&pts, n, &mut bufs.features.slice_mut(0..n * f))
    }

    /// Encodes `bufs.points[..n]` and runs every layer into `bufs.acts`.
    fn forward_device(&self, bufs: &mut Buffers, n: usize) -> crate::Result<()> {
        if self.fp16() {
            return self.forward_fp16(bufs, n);
        }
        self.encode_device(bufs, n)?;
        let gpu = &self.gpu;
        let f = self.encoding.n_features();
        let n_i = n as i32;
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (before, rest) = bufs.acts.split_at_mut(l);
            let mut z = rest[0].slice_mut(0..n * layer.n_out);
            let w = Operand::F32(self.params.slice(layer.weight..layer.bias));
            let input =
                if l == 0 { bufs.features.slice(0..n * f) } else { before[l - 1].slice(0..n * layer.n_in) };
            // Zᵀ (out×n, col-major) = W (op T of the in×out col-major view) · Aᵀ (in×n)
            gpu.gemm(
                (true, false),
                (layer.n_out, n, layer.n_in),
                1.0,
                (w, layer.n_in),
                (Operand::F32(input), layer.n_in),
                (&mut z, layer.n_out),
            )?;
            let bias = self.params.slice(layer.bias..layer.bias + layer.n_out);
            let (cols, relu) = (layer.n_out as i32, (l < last) as i32);
            launch!(gpu, "bias_act", grid(n * layer.n_out), &mut z, &bias, &n_i, &cols, &relu)?;
        }
        Ok(())
    }

    /// Back-propagates `bufs.deltas[0]` (∂L/∂output × grad_scale) into `self.grads`.
    fn backward_device(&mut self, n: usize) -> crate::Result<()> {
        if self.fp16() {
            return self.backward_fp16(n);
        }
        let bufs = self.train.as_mut().ok_or_else(missing)?;
        let gpu = &self.gpu;
        let f = self.encoding.n_features();
        let inv_scale = 1.0 / self.grad_scale;
        let n_layers = self.layers.len();
        // index into bufs.deltas of the current ∂L/∂Z
        let mut cur = 0usize;
        for l in (0..n_layers).rev() {
            let layer = self.layers[l];
            let (n_in, n_out) = (layer.n_in, layer.n_out);
            let next = if cur == 1 { 2 } else { 1 };
            // dWᵀ (in×out, col-major) = Aᵀ (in×n) · dZ (op T of the out×n col-major view)
            {
                let mut gw = self.grads.slice_mut(layer.weight..layer.bias);
                let a =
                    if l == 0 { bufs.features.slice(0..n * f) } else { bufs.acts[l - 1].slice(0..n * n_in) };
                let dz = bufs.deltas[cur].slice(0..n * n_out);
                gpu.gemm(
                    (false, true),
                    (n_in, n_out, n),
                    inv_scale,
                    (Operand::F32(a), n_in),
                    (Operand::F32(dz), n_out),
                    (&mut gw, n_in),
                )?;
            }
            // db = column sums of dZ, in f64, in a fixed order
            {
                let dz = bufs.deltas[cur].slice(0..n * n_out);
                let parts = gpu.column_sums_partial(&dz, n, n_out, &mut bufs.partial)?;
                let mut gb = self.grads.slice_mut(layer.bias..layer.bias + n_out);
                gpu.column_sums_final(&bufs.partial, parts, n_out, inv_scale, &mut gb)?;
            }
            if l == 0 {
                break;
            }
            // dAᵀ (in×n, col-major) = Wᵀ (in×out view of W) · dZᵀ (out×n), then the ReLU mask
            {
                let (lo, hi) = bufs.deltas.split_at_mut(next.max(cur));
                let (src, dst) = if cur < next { (&lo[cur], &mut hi[0]) } else { (&hi[0], &mut lo[next]) };
                let mut da = dst.slice_mut(0..n * n_in);
                let w = Operand::F32(self.params.slice(layer.weight..layer.bias));
                let dz = Operand::F32(src.slice(0..n * n_out));
                gpu.gemm((false, false), (n_in, n, n_out), 1.0, (w, n_in), (dz, n_out), (&mut da, n_in))?;
                let below = bufs.acts[l - 1].slice(0..n * n_in);
                let len = (n * n_in) as i64;
                launch!(gpu, "relu_mask", grid(n * n_in), &mut da, &below, &len)?;
            }
            cur = next;
        }
        Ok(())
    }

    /// The fp32 encoder into `feats` (n × features).
    fn encode_f32(&self, pts: &CudaView<f32>, n: usize, feats: &mut CudaViewMut<f32>) -> crate::Result<()> {
        let gpu = &self.gpu;
        let enc = &self.encoding;
        if enc.identity {
            let len = (n * enc.dim) as i64;
            launch!(gpu, "encode_identity", grid(n * enc.dim), pts, &len, feats)
        } else {
            let (n_i, d, m) = (n as i32, enc.dim as i32, enc.frequencies() as i32);
            launch!(
                gpu,
                "encode_fourier",
                grid(n * enc.frequencies()),
                pts,
                &self.frequencies,
                &n_i,
                &d,
                &m,
                &enc.scale,
                feats
            )
        }
    }

    /// fp16: encodes `bufs.points[..n]` straight into the fp16 features.
    fn encode_fp16(&self, bufs: &mut Buffers, n: usize) -> crate::Result<()> {
        let gpu = &self.gpu;
        let enc = &self.encoding;
        let f = enc.n_features();
        let pts = bufs.points.slice(0..n * enc.dim);
        let mut feats = bufs.features16.as_mut().ok_or_else(missing)?.slice_mut(0..n * f);
        if enc.identity {
            let len = (n * enc.dim) as i64;
            launch!(gpu, "encode_identity_h", grid(n * enc.dim), &pts, &len, &mut feats)
        } else {
            let (n_i, d, m) = (n as i32, enc.dim as i32, enc.frequencies() as i32);
            launch!(
                gpu,
                "encode_fourier_h",
                grid(n * enc.frequencies()),
                &pts,
                &self.frequencies,
                &n_i,
                &d,
                &m,
                &enc.scale,
                &mut feats
            )
        }
    }

    /// fp16 forward: fp16 features and hidden activations only. Each hidden product writes fp16
    /// (fp32 accumulation) with cuBLASLt's bias + ReLU epilogue, or through cuBLAS and then
    /// `bias_relu_h` in place; the output layer writes fp32 into `bufs.acts[last]`.
    fn forward_fp16(&self, bufs: &mut Buffers, n: usize) -> crate::Result<()> {
        self.encode_fp16(bufs, n)?;
        let gpu = &self.gpu;
        let f = self.encoding.n_features();
        let n_i = n as i32;
        let last = self.layers.len() - 1;
        let p16 = self.params16.as_ref().ok_or_else(missing)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let w = Operand::F16(p16.slice(layer.weight..layer.bias));
            let (below, rest) = bufs.acts16.split_at_mut(l.min(last));
            let input = if l == 0 {
                bufs.features16.as_ref().ok_or_else(missing)?.slice(0..n * f)
            } else {
                below[l - 1].slice(0..n * layer.n_in)
            };
            let bias = self.params.slice(layer.bias..layer.bias + layer.n_out);
            let cols = layer.n_out as i32;
            let dims = (layer.n_out, n, layer.n_in);
            if l < last {
                let mut z = rest[0].slice_mut(0..n * layer.n_out);
                if let Some(lt) = self.lt.as_ref().filter(|_| self.lt_note.borrow().is_none()) {
                    let w = p16.slice(layer.weight..layer.bias);
                    let b16 = p16.slice(layer.bias..layer.bias + layer.n_out);
                    match lt.matmul_bias_relu(dims, &w, &input, &b16, &mut z) {
                        Ok(()) => continue,
                        // a shape cuBLASLt refuses: cuBLAS and bias_relu_h from here on
                        Err(reason) => *self.lt_note.borrow_mut() = Some(reason),
                    }
                }
                gpu.gemm_to(
                    (true, false),
                    dims,
                    1.0,
                    (w, layer.n_in),
                    (Operand::F16(input), layer.n_in),
                    (OutOperand::F16(&mut z), layer.n_out),
                )?;
                let relu = 1i32;
                launch!(gpu, "bias_relu_h", grid(n * layer.n_out / 2), &mut z, &bias, &n_i, &cols, &relu)?;
            } else {
                let mut z = bufs.acts[l].slice_mut(0..n * layer.n_out);
                gpu.gemm(
                    (true, false),
                    dims,
                    1.0,
                    (w, layer.n_in),
                    (Operand::F16(input), layer.n_in),
                    (&mut z, layer.n_out),
                )?;
                let relu = 0i32;
                launch!(gpu, "bias_act", grid(n * layer.n_out), &mut z, &bias, &n_i, &cols, &relu)?;
            }
        }
        Ok(())
    }

    /// fp16 backward: ∂L/∂Z of the hidden layers only in fp16 (two ping-pong buffers); each
    /// ∂L/∂A product writes fp16 and `relu_mask_colsum_h` masks it in place while summing its
    /// columns for the bias gradient of the layer below.
    fn backward_fp16(&mut self, n: usize) -> crate::Result<()> {
        let bufs = self.train.as_mut().ok_or_else(missing)?;
        let gpu = &self.gpu;
        let f = self.encoding.n_features();
        let n_i = n as i32;
        let inv_scale = 1.0 / self.grad_scale;
        let n_layers = self.layers.len();
        let p16 = self.params16.as_ref().ok_or_else(missing)?;
        let mut d16 = [bufs.delta16.take().ok_or_else(missing)?, bufs.delta16b.take().ok_or_else(missing)?];
        let r = (|| -> crate::Result<()> {
            // the output layer: ∂L/∂Z in fp32 (n × n_out, small) → fp16, and its column sums
            let n_out = self.layers[n_layers - 1].n_out;
            gpu.to_f16(&bufs.deltas[0].slice(0..n * n_out), &mut d16[0].slice_mut(0..n * n_out))?;
            let mut parts =
                gpu.column_sums_partial(&bufs.deltas[0].slice(0..n * n_out), n, n_out, &mut bufs.partial)?;
            let mut cur = 0usize;
            for l in (0..n_layers).rev() {
                let layer = self.layers[l];
                let (n_in, n_out) = (layer.n_in, layer.n_out);
                // dWᵀ (in×out, col-major) = Aᵀ (in×n) · dZ (op T of the out×n col-major view)
                {
                    let mut gw = self.grads.slice_mut(layer.weight..layer.bias);
                    let a = if l == 0 {
                        bufs.features16.as_ref().ok_or_else(missing)?.slice(0..n * f)
                    } else {
                        bufs.acts16[l - 1].slice(0..n * n_in)
                    };
                    let dz = Operand::F16(d16[cur].slice(0..n * n_out));
                    gpu.gemm(
                        (false, true),
                        (n_in, n_out, n),
                        inv_scale,
                        (Operand::F16(a), n_in),
                        (dz, n_out),
                        (&mut gw, n_in),
                    )?;
                }
                // db from the partial column sums made when dZ was
                {
                    let mut gb = self.grads.slice_mut(layer.bias..layer.bias + n_out);
                    gpu.column_sums_final(&bufs.partial, parts, n_out, inv_scale, &mut gb)?;
                }
                if l == 0 {
                    break;
                }
                // dAᵀ (in×n, col-major) = Wᵀ · dZᵀ, in fp16, then the ReLU mask and column sums
                let (lo, hi) = d16.split_at_mut(1);
                let (src, dst) = if cur == 0 { (&lo[0], &mut hi[0]) } else { (&hi[0], &mut lo[0]) };
                let mut da = dst.slice_mut(0..n * n_in);
                let rpp = fp16_rows_per_part(n);
                parts = n.div_ceil(rpp);
                let cfg = LaunchConfig {
                    grid_dim: (n_in.div_ceil(64) as u32, parts as u32, 1),
                    block_dim: (32, 8, 1),
                    shared_mem_bytes: 0,
                };
                let (cols, rpp_i) = (n_in as i32, rpp as i32);
                let mut partial = bufs.partial.slice_mut(0..parts * n_in);
                let w = Operand::F16(p16.slice(layer.weight..layer.bias));
                let dz = Operand::F16(src.slice(0..n * n_out));
                gpu.gemm_to(
                    (false, false),
                    (n_in, n, n_out),
                    1.0,
                    (w, n_in),
                    (dz, n_out),
                    (OutOperand::F16(&mut da), n_in),
                )?;
                let below = bufs.acts16[l - 1].slice(0..n * n_in);
                launch!(gpu, "relu_mask_colsum_h", cfg, &mut da, &below, &n_i, &cols, &rpp_i, &mut partial)?;
                cur = 1 - cur;
            }
            Ok(())
        })();
        let [a, b] = d16;
        bufs.delta16 = Some(a);
        bufs.delta16b = Some(b);
        r
    }

    /// Mean loss of the last forward against `bufs.targets`, writing ∂L/∂output (× grad_scale) into
    /// `bufs.deltas[0]`; the loss stays on the device in `self.losses[slot]`.
    fn loss_device(&mut self, n: usize, loss: Loss, slot: usize) -> crate::Result<()> {
        self.loss_device_to(n, loss, Some(slot))
    }

    /// [`Self::loss_device`]; with `slot` None, the slot is read on the device from the graph
    /// state's `slot` (a captured step).
    fn loss_device_to(&mut self, n: usize, loss: Loss, slot: Option<usize>) -> crate::Result<()> {
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

    /// The features of `points` computed on the device (for parity tests of the encoder).
    pub fn encode(&mut self, points: &[f32]) -> crate::Result<Vec<f32>> {
        let n = self.check_points(points, "encode")?;
        Self::ensure(&mut self.infer, &self.gpu, n, self.encoding.dim, &self.layers, false, self.precision)?;
        let mut bufs = self.infer.take().ok_or_else(missing)?;
        // always the fp32 encoder (fp16 keeps only fp16 features): the check of the formula
        let r = (|| {
            self.gpu.upload(points, &mut bufs.points)?;
            let f = self.encoding.n_features();
            let mut feats = self.gpu.alloc::<f32>(n * f)?;
            self.encode_f32(&bufs.points.slice(0..n * self.encoding.dim), n, &mut feats.slice_mut(0..n * f))?;
            let mut out = vec![0.0; n * f];
            self.gpu.download(&feats.slice(0..n * f), &mut out)?;
            Ok(out)
        })();
        self.infer = Some(bufs);
        r
    }

    fn read_state(&self) -> crate::Result<TrainState> {
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

/// The device-side key of `CounterRng::new(seed, stream)` (the host type keeps its key private;
/// this is its formula).
pub fn rng_key(seed: u64, stream: u64) -> u64 {
    use crate::sample::rng::mix64;
    mix64(mix64(seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_add(stream))
}

fn missing() -> crate::Error {
    crate::Error::Config("CUDA backend: buffers missing (no forward before backward?)".into())
}

impl Backend for CudaBackend {
    fn synchronize(&self) -> crate::Result<()> {
        self.gpu.stream.synchronize().map_err(|e| cuda_error("synchronising the stream", e))
    }

    fn as_cuda_mut(&mut self) -> Option<&mut CudaBackend> {
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

    fn forward(&mut self, points: &[f32]) -> crate::Result<&[f32]> {
        let n = self.check_points(points, "forward")?;
        self.resident = None;
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
        Ok(&self.outputs)
    }

    fn backward(&mut self, d_output: &[f32]) -> crate::Result<()> {
        let n = self.batch;
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

    /// ∂L/∂params of the last backward; empty if the device cannot be read.
    fn gradients(&self) -> Vec<f32> {
        let mut v = vec![0.0; self.grads.len()];
        match self.gpu.download(&self.grads.as_view(), &mut v) {
            Ok(()) => v,
            Err(_) => vec![],
        }
    }

    fn optimizer_step(&mut self, lr: f32) -> crate::Result<()> {
        self.step += 1;
        let (c1, c2) = self.adam_corrections(self.step);
        let n = self.params.len() as i64;
        let (b1, b2, eps) = (self.adam.beta1, self.adam.beta2, self.adam.eps);
        let gpu = &self.gpu;
        if self.fp16() {
            // the fp16 copy of the weights in the same pass
            let p16 = self.params16.as_mut().ok_or_else(missing)?;
            return launch!(
                gpu,
                "adam_step_h",
                grid(n as usize),
                &mut self.params,
                &self.grads,
                &mut self.moment1,
                &mut self.moment2,
                &n,
                &lr,
                &b1,
                &b2,
                &eps,
                &c1,
                &c2,
                p16
            );
        }
        launch!(
            gpu,
            "adam_step",
            grid(n as usize),
            &mut self.params,
            &self.grads,
            &mut self.moment1,
            &mut self.moment2,
            &n,
            &lr,
            &b1,
            &b2,
            &eps,
            &c1,
            &c2
        )
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

    /// Parameters and Adam state, read from the device. If the device cannot be read (it was
    /// lost), the last state successfully read or set is returned; the next fallible call reports
    /// the device error.
    fn state(&self) -> TrainState {
        match self.read_state() {
            Ok(s) => {
                *self.last_state.borrow_mut() = s.clone();
                s
            }
            Err(_) => self.last_state.borrow().clone(),
        }
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
        *self.last_state.borrow_mut() = state;
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

#[path = "occupancy.rs"]
pub mod occupancy;

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
